"""A hostile sweep of step mode and the integrations (issue 17, item 3): inputs a careless or hostile
user would give the plain-loop step mode, the Hugging Face Trainer callback and the Lightning callback.

Prints one line per case: ``case | outcome | verdict``, then the counts. A verdict is one of

* ``clear error``: refused by aalr's own code, with a message (printed) that says what is wrong;
* ``correct``: accepted, and the checks the case makes on the result hold;
* ``DEFECT``: accepted and wrong, refused from deep inside torch/transformers/lightning where aalr
  could have said first what is wrong, or an unexpected error.

Run: ``PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/hostile_sweep_integrations.py [prefix ...]``
(a prefix such as ``hf`` or ``pl.resume`` runs only the cases whose names start with it). Needs
transformers and lightning; each case builds a tiny model on the CPU (a few minutes in all).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import pickle
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aalr import AALR

torch.set_num_threads(1)
logging.getLogger("aalr").setLevel(logging.ERROR)
logging.getLogger("transformers").setLevel(logging.ERROR)
logging.getLogger("lightning").setLevel(logging.ERROR)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")

AALR_SOURCE = os.path.dirname(os.path.abspath(sys.modules["aalr"].__file__))
CASES: list[tuple[str, str, str, Callable[[Path], str | None]]] = []


class Wrong(AssertionError):
    """The case's result is silently wrong."""


def case(name: str, expect: str = "error", names: str = ""):
    """``expect``: "error" (must be refused clearly), "ok" (must work; the case checks the result and
    returns what it saw) or "either" (a clear refusal or a checked success). ``names``: words a clear
    error's message must hold (the file or value it is about)."""

    def register(function: Callable[[Path], str | None]):
        CASES.append((name, expect, names, function))
        return function

    return register


def check(condition: bool, words: str) -> None:
    if not condition:
        raise Wrong(words)


def raised_by_aalr(error: BaseException) -> bool:
    """Whether the innermost frame that raised is aalr's own code."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(AALR_SOURCE)


def run_case(name: str, expect: str, names: str, function: Callable[[Path], str | None]) -> tuple[str, str]:
    quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    with tempfile.TemporaryDirectory() as folder, quiet[0], quiet[1]:
        try:
            seen = function(Path(folder))
        except Wrong as error:
            return f"wrong: {error}", "DEFECT"
        except Exception as error:  # the sweep classifies every outcome
            words = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:220]
            if expect == "ok":
                return f"unexpected {words}", "DEFECT"
            if not raised_by_aalr(error):
                where = traceback.extract_tb(error.__traceback__)[-1]
                return f"{words} (from {Path(where.filename).name}:{where.lineno})", "DEFECT"
            if names not in str(error):
                return f"{words} (does not name {names!r})", "DEFECT"
            return words, "clear error"
    if expect == "error":
        return f"accepted: {seen}", "DEFECT"
    return str(seen or "ok"), "correct"


# =====================================================================================================
# Plain loop, step mode
# =====================================================================================================
def tuner(every: int = 4, **options: Any) -> AALR:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return AALR(model, optimizer, every_n_steps=every, **options)


def train_steps(t: AALR, losses: list[Any]) -> list[dict]:
    return [r for r in (t.observe(loss) for loss in losses) if r is not None]


@case("loop.observe_after_budget", "ok")
def _(tmp):
    t = tuner(4, initial_loss=2.0, total_steps=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = train_steps(t, [1.5] * 16)
    check(len(records) == 4, f"{len(records)} decisions for 16 steps of rounds of 4")
    check(any("past the budget" in str(w.message) for w in caught), "no warning past the budget")
    return "decides on, warns once past the budget"


@case("loop.observe_tensor_with_grad", "ok")
def _(tmp):
    t = tuner(2, initial_loss=2.0)
    w = torch.ones(3, requires_grad=True)
    records = train_steps(t, [(w * 0.5).sum(), (w * 0.5).sum()])
    check(records[0]["loss"] == 1.5 and isinstance(records[0]["loss"], float), str(records[0]["loss"]))
    return "read as a float (detached)"


@case("loop.observe_tensor_shape_2")
def _(tmp):
    tuner().observe(torch.tensor([1.0, 2.0]))


@case("loop.observe_tensor_shape_1")
def _(tmp):
    tuner().observe(torch.tensor([1.0]))


@case("loop.observe_meta_tensor")
def _(tmp):
    tuner().observe(torch.tensor(1.0, device="meta"))


@case("loop.observe_int", "ok")
def _(tmp):
    records = train_steps(tuner(2, initial_loss=3), [2, 1])
    check(records[0]["loss"] == 1.5, str(records))


@case("loop.observe_numpy_float32", "ok")
def _(tmp):
    records = train_steps(tuner(2, initial_loss=3.0), [np.float32(2.0), np.float64(1.0)])
    check(records[0]["loss"] == 1.5, str(records))


@case("loop.observe_numpy_0d_array", "either")
def _(tmp):
    records = train_steps(tuner(2, initial_loss=3.0), [np.array(2.0), np.array(1.0)])
    check(records[0]["loss"] == 1.5, str(records))


@case("loop.observe_str")
def _(tmp):
    tuner().observe("1.5")


@case("loop.observe_none")
def _(tmp):
    tuner().observe(None)


@case("loop.observe_bool")
def _(tmp):
    tuner().observe(True)


@case("loop.observe_complex_tensor")
def _(tmp):
    tuner().observe(torch.tensor(1 + 1j))


@case("loop.observe_bfloat16_tensor", "ok")
def _(tmp):
    records = train_steps(tuner(2, initial_loss=3.0), [torch.tensor(2.0, dtype=torch.bfloat16)] * 2)
    check(records[0]["loss"] == 2.0, str(records))


@case("loop.observe_huge_int")
def _(tmp):
    tuner().observe(10**400)


@case("loop.step_on_step_mode_tuner")
def _(tmp):
    tuner().step(1.0)


@case("loop.observe_on_epoch_tuner")
def _(tmp):
    model = nn.Linear(2, 2)
    AALR(model, torch.optim.SGD(model.parameters(), lr=0.1)).observe(1.0)


@case("loop.step_then_observe_mixed", "ok")
def _(tmp):
    t = tuner(2, initial_loss=2.0)
    t.observe(1.0)
    before = t.state_dict()
    with contextlib.suppress(RuntimeError):
        t.step(1.0)
    check(t.state_dict()["steps"] == before["steps"] and not t.history, "a refused step() changed the state")
    record = t.observe(1.0)
    check(record is not None and record["loss"] == 1.0, str(record))
    return "step() refused and changes nothing; the round goes on"


@case("loop.load_mid_round_state_other_every_n", "ok")
def _(tmp):
    saved = tuner(4, initial_loss=2.0)
    train_steps(saved, [1.5] * 6)  # a decision, then 2 steps into the next round
    state = saved.state_dict()
    t = tuner(2, initial_loss=2.0)
    t.load_state_dict(state)
    records = train_steps(t, [1.4, 1.4])  # the saved round of 4 ends after 2 more steps
    check(len(records) == 1 and records[0]["steps"] == 4, str(records))
    check(t.state_dict()["steps"]["every_n_steps"] == 4, "the saved round's length was not kept")
    return "the saved round of 4 goes on (a warning says so)"


@case("loop.load_full_round_state")
def _(tmp):
    t = tuner(4, initial_loss=2.0)
    state = t.state_dict()
    state["steps"]["round"] = {"total": 4.0, "steps": 4, "recent": [1.0] * 4}
    t.load_state_dict(state)


@case("loop.load_epoch_state_into_step_tuner")
def _(tmp):
    model = nn.Linear(4, 3)
    torch.manual_seed(0)
    epoch = AALR(model, torch.optim.SGD(model.parameters(), lr=0.1))
    tuner(4).load_state_dict(epoch.state_dict())


@case("loop.load_state_negative_steps_seen")
def _(tmp):
    t = tuner(4)
    state = t.state_dict()
    state["steps"]["steps_seen"] = -3
    t.load_state_dict(state)


@case("loop.spike_rollback_every_1", "ok")
def _(tmp):
    t = tuner(1, initial_loss=2.0, phase1_patience=2)
    records = train_steps(t, [1.0, 0.9, 0.8, 1.9, 0.8])
    check(len(records) == 5, f"{len(records)} decisions for 5 steps of rounds of 1")
    check(
        records[3]["spike"] and records[3]["action"] in ("restore_best", "restore_initial"), str(records[3])
    )
    return f"one step past the midpoint is a spike: {records[3]['action']}"


@case("loop.total_steps_not_a_multiple", "ok")
def _(tmp):
    t = tuner(4, initial_loss=2.0, total_steps=10)
    check(t.config.total_epochs == 2, f"{t.config.total_epochs} rounds for total_steps=10 of 4")
    return "2 rounds (the last 2 steps are past the budget)"


@case("loop.spike_rollback_str")
def _(tmp):
    tuner(4, spike_rollback="yes")


@case("loop.every_n_steps_float")
def _(tmp):
    tuner(2.0)


@case("loop.nan_first_step", "ok")
def _(tmp):
    t = tuner(4, initial_loss=2.0)
    record = t.observe(math.nan)
    check(record is not None and record["action"] == "restore_initial" and t.lr == 0.05, str(record))


@case("loop.minus_inf_step", "ok")
def _(tmp):
    t = tuner(4, initial_loss=2.0)
    record = t.observe(-math.inf)
    check(record is not None and record["action"] == "restore_initial", str(record))


@case("loop.observe_inf_tensor_on_grad_graph", "ok")
def _(tmp):
    w = torch.ones((), requires_grad=True)
    record = tuner(4, initial_loss=2.0).observe(w * math.inf)
    check(record is not None and math.isinf(record["loss"]), str(record))


@case("loop.observe_int64_tensor", "ok")
def _(tmp):
    records = train_steps(tuner(2, initial_loss=3.0), [torch.tensor(2), torch.tensor(1)])
    check(records[0]["loss"] == 1.5, str(records))


@case("loop.numpy_every_and_budget", "ok")
def _(tmp):
    t = tuner(np.int64(4), initial_loss=2.0, total_steps=np.int64(16))
    check(t.config.total_epochs == 4, str(t.config.total_epochs))


# =====================================================================================================
# Hugging Face Trainer
# =====================================================================================================
HF_STEPS, VOCAB, LENGTH = 16, 32, 16


def hf():
    import transformers

    transformers.logging.set_verbosity_error()
    from aalr import hf as aalr_hf

    return transformers, aalr_hf


class Counting(torch.utils.data.Dataset):
    def __init__(self, n: int = 64) -> None:
        starts = torch.randint(0, VOCAB, (n, 1), generator=torch.Generator().manual_seed(0))
        self.ids = (starts + torch.arange(LENGTH)) % VOCAB

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def gpt(nan_at: int | None = None):
    transformers, _ = hf()

    class NaNAt(transformers.GPT2LMHeadModel):
        calls = 0

        def forward(self, input_ids=None, labels=None, **kwargs):
            out = super().forward(input_ids=input_ids, labels=labels, **kwargs)
            if self.training:
                self.calls += 1
                if self.calls == nan_at:
                    out.loss = out.loss * torch.full_like(out.loss, math.nan)
            return out

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=16, vocab_size=VOCAB, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    return NaNAt(config)


def hf_args(out: Path, **overrides: Any):
    transformers, _ = hf()
    settings: dict[str, Any] = {
        "output_dir": str(out),
        "max_steps": HF_STEPS,
        "logging_steps": 2,
        "per_device_train_batch_size": 8,
        "learning_rate": 4e-3,
        "lr_scheduler_type": "constant",
        "report_to": [],
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "save_strategy": "no",
        "seed": 0,
        **overrides,
    }
    return transformers.TrainingArguments(**settings)


class LRProbe:
    """A TrainerCallback recording each optimizer step's LR of every param group."""

    def __new__(cls):
        transformers, _ = hf()

        class Probe(transformers.TrainerCallback):
            def __init__(self) -> None:
                self.lrs: dict[int, list[float]] = {}

            def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
                self.lrs[state.global_step + 1] = [float(g["lr"]) for g in optimizer.param_groups]

        return Probe()


def hf_trainer(
    out: Path, callback: Any, model=None, optimizers=(None, None), eval_dataset=None, **overrides: Any
):
    transformers, _ = hf()
    probe = LRProbe()
    trainer = transformers.Trainer(
        model=model or gpt(),
        args=hf_args(out, **overrides),
        train_dataset=Counting(),
        eval_dataset=eval_dataset,
        callbacks=[callback, probe],
        optimizers=optimizers,
    )
    trainer.probe = probe
    return trainer


def hf_train(out: Path, callback: Any, resume: Any = None, **overrides: Any):
    trainer = hf_trainer(out, callback, **overrides)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def followed(trainer, tuner) -> None:
    """Each step's LR is the tuner's: eta0, then each decision's next_lr from the step after it."""
    decisions = {r["global_step"]: r for r in tuner.history}
    lr = tuner.history[0]["lr"] if tuner.history else tuner.lr
    for step in sorted(trainer.probe.lrs):
        got = trainer.probe.lrs[step][0]
        check(math.isclose(got, lr, rel_tol=1e-12), f"step {step} trained with LR {got}, the tuner's is {lr}")
        if step in decisions:
            lr = decisions[step]["next_lr"]


def callback(**options: Any):
    _, aalr_hf = hf()
    return aalr_hf.AALRTrainerCallback(**options)


for _value in (0, -1, 2.5, True, "10"):

    @case(f"hf.every_n_steps={_value!r}")
    def _(tmp, value=_value):
        callback(every_n_steps=value)


@case("hf.every_n_steps_not_multiple_of_logging_steps")
def _(tmp):
    hf_trainer(tmp, callback(every_n_steps=3))


for _value in (math.nan, math.inf, "2.0", [2.0]):

    @case(f"hf.initial_loss={_value!r}")
    def _(tmp, value=_value):
        callback(initial_loss=value)


@case("hf.initial_loss_negative", "ok")
def _(tmp):
    check(callback(initial_loss=-1.5).initial_loss == -1.5, "changed")
    return "accepted (a loss may be negative)"


@case("hf.initial_loss_and_compute_initial_loss")
def _(tmp):
    callback(initial_loss=2.0, compute_initial_loss=True)


@case("hf.compute_initial_loss='yes'")
def _(tmp):
    callback(compute_initial_loss="yes")


for _value in (0, 2.5, "max"):

    @case(f"hf.total_steps={_value!r}")
    def _(tmp, value=_value):
        callback(total_steps=value)


@case("hf.unknown_tuner_option_lr")
def _(tmp):
    callback(lr=0.1)


@case("hf.logging_steps_ratio_0.25", "ok")
def _(tmp):
    cb = callback(phase1_patience=2)
    trainer = hf_train(tmp, cb, logging_steps=0.25)
    check([r["global_step"] for r in cb.tuner.history] == [4, 8, 12, 16], str(cb.tuner.history))
    followed(trainer, cb.tuner)
    return "a decision every 4 steps (0.25 of 16)"


@case("hf.logging_steps_ratio_0.3_every_n_5", "either")
def _(tmp):
    cb = callback(every_n_steps=5)
    hf_train(tmp, cb, logging_steps=0.3)  # ceil(0.3 * 16) = 5 steps per log
    check([r["global_step"] for r in cb.tuner.history] == [5, 10, 15], str(cb.tuner.history))


for _value in ("epoch", "no"):

    @case(f"hf.logging_strategy={_value}")
    def _(tmp, value=_value):
        hf_trainer(tmp, callback(), logging_strategy=value)


@case("hf.logging_first_step")
def _(tmp):
    hf_trainer(tmp, callback(), logging_first_step=True)


@case("hf.logging_nan_inf_filter_false")
def _(tmp):
    hf_trainer(tmp, callback(), logging_nan_inf_filter=False)


@case("hf.max_steps_-1_with_epochs", "ok")
def _(tmp):
    cb = callback()
    trainer = hf_train(tmp, cb, max_steps=-1, num_train_epochs=2)  # 8 steps an epoch
    check(cb.tuner.config.total_epochs == 8, f"budget {cb.tuner.config.total_epochs} rounds for 16 steps")
    check(len(cb.tuner.history) == 8, f"{len(cb.tuner.history)} decisions")
    followed(trainer, cb.tuner)
    return "budget of 8 rounds from the epochs' 16 steps"


@case("hf.gradient_accumulation_4", "ok")
def _(tmp):
    cb = callback(every_n_steps=4)
    trainer = hf_train(tmp, cb, gradient_accumulation_steps=4, per_device_train_batch_size=2)
    check([r["global_step"] for r in cb.tuner.history] == [4, 8, 12, 16], str(cb.tuner.history))
    followed(trainer, cb.tuner)


def user_scheduler(tmp, make: Callable[[torch.optim.Optimizer], Any], **options: Any):
    model = gpt()
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3)
    cb = callback(**options)
    trainer = hf_train(tmp, cb, model=model, optimizers=(optimizer, make(optimizer)))
    return trainer, cb


@case("hf.user_lambda_lr_constant", "ok")
def _(tmp):
    trainer, cb = user_scheduler(tmp, lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0))
    followed(trainer, cb.tuner)
    return "the LR is the tuner's"


@case("hf.user_lambda_lr_decaying")
def _(tmp):
    user_scheduler(tmp, lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 0.9**s))


@case("hf.user_cosine_schedule")
def _(tmp):
    transformers, _ = hf()
    user_scheduler(tmp, lambda o: transformers.get_cosine_schedule_with_warmup(o, 2, HF_STEPS))


@case("hf.user_cosine_schedule_allowed", "ok")
def _(tmp):
    transformers, _ = hf()
    trainer, cb = user_scheduler(
        tmp, lambda o: transformers.get_cosine_schedule_with_warmup(o, 2, HF_STEPS), allow_lr_schedule=True
    )
    scheduler = trainer.lr_scheduler
    decisions = {r["global_step"]: r for r in cb.tuner.history}
    lr = cb.tuner.history[0]["lr"]
    for step in sorted(trainer.probe.lrs):
        want = lr * scheduler.lr_lambdas[0](step - 1)
        check(math.isclose(trainer.probe.lrs[step][0], want, rel_tol=1e-9, abs_tol=1e-15), f"step {step}")
        if step in decisions:
            lr = decisions[step]["next_lr"]
    return "LR = tuner's x the schedule's factor"


@case("hf.constant_with_warmup")
def _(tmp):
    hf_trainer(tmp, callback(), lr_scheduler_type="constant_with_warmup", warmup_steps=2).train()


@case("hf.default_linear_schedule")
def _(tmp):
    hf_trainer(tmp, callback(), lr_scheduler_type="linear").train()


@case("hf.reduce_lr_on_plateau_user")
def _(tmp):
    user_scheduler(tmp, lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o))


@case("hf.step_lr_user")
def _(tmp):
    user_scheduler(tmp, lambda o: torch.optim.lr_scheduler.StepLR(o, 4))


@case("hf.reduce_lr_on_plateau_type")
def _(tmp):
    overrides = {"eval_strategy": "steps", "eval_steps": 4}  # the Trainer's own condition for the type
    hf_trainer(
        tmp, callback(), lr_scheduler_type="reduce_lr_on_plateau", eval_dataset=Counting(16), **overrides
    ).train()


@case("hf.several_param_groups", "ok")
def _(tmp):
    model = gpt()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "lr": 4e-3}, {"params": rest, "lr": 1e-3}])
    cb = callback(phase1_patience=2)
    trainer = hf_train(tmp, cb, model=model, optimizers=(optimizer, None))
    followed(trainer, cb.tuner)
    for step, lrs in trainer.probe.lrs.items():
        check(math.isclose(lrs[1] / lrs[0], 0.25, rel_tol=1e-12), f"step {step}: group LRs {lrs}")
    return "group 1 stays at 1/4 of group 0"


@case("hf.callback_class_not_instance", "either")
def _(tmp):
    _, aalr_hf = hf()
    transformers, _ = hf()
    trainer = transformers.Trainer(
        model=gpt(), args=hf_args(tmp), train_dataset=Counting(), callbacks=[aalr_hf.AALRTrainerCallback]
    )
    trainer.train()
    cb = next(c for c in trainer.callback_handler.callbacks if isinstance(c, aalr_hf.AALRTrainerCallback))
    check(len(cb.tuner.history) == 8, f"{len(cb.tuner.history)} decisions")
    return "the Trainer makes one with the defaults; it tunes"


@case("hf.same_callback_two_trainers", "ok")
def _(tmp):
    cb = callback()
    first = hf_trainer(tmp / "a", cb)
    second = hf_trainer(tmp / "b", cb, model=gpt())
    first.train()
    first_tuner = cb.tuner
    second.train()  # (its losses differ from a fresh run's: the first run drew from the global RNG)
    check(cb.tuner is not first_tuner and cb.tuner.model is second.model, "the first run's tuner")
    check(len(cb.tuner.history) == 8, f"{len(cb.tuner.history)} decisions")
    followed(second, cb.tuner)
    return "rebuilt for the second Trainer"


@case("hf.train_called_twice", "ok")
def _(tmp):
    cb = callback()
    trainer = hf_trainer(tmp, cb)
    trainer.train()
    trainer.probe.lrs.clear()
    trainer.train()
    check(len(cb.tuner.history) == 8, f"{len(cb.tuner.history)} decisions in the second train()")
    followed(trainer, cb.tuner)
    return "a fresh tuner for the second train()"


@case("hf.two_callbacks_in_one_trainer")
def _(tmp):
    transformers, aalr_hf = hf()
    transformers.Trainer(
        model=gpt(),
        args=hf_args(tmp),
        train_dataset=Counting(),
        callbacks=[aalr_hf.AALRTrainerCallback(), aalr_hf.AALRTrainerCallback()],
    ).train()


def checkpointed(tmp: Path, cb: Any = None, **overrides: Any) -> Path:
    """A run saving every 4 steps; returns its output folder."""
    out = tmp / "run"
    if cb is None:
        trainer = hf_trainer(out, LRProbe(), save_strategy="steps", save_steps=4, **overrides)
    else:
        trainer = hf_trainer(out, cb, save_strategy="steps", save_steps=4, **overrides)
    trainer.train()
    return out


@case("hf.resume_checkpoint_without_callback", "ok")
def _(tmp):
    out = checkpointed(tmp)
    cb = callback()
    trainer = hf_train(out, cb, resume=str(out / "checkpoint-8"), save_strategy="steps", save_steps=4)
    check(len(cb.tuner.history) == 4 and cb.tuner.history[0]["global_step"] == 10, str(cb.tuner.history))
    followed(trainer, cb.tuner)
    return "a fresh tuner from step 8 (warned); its later checkpoints save"


@case("hf.resume_other_every_n_steps", "ok")
def _(tmp):
    out = checkpointed(tmp, callback(every_n_steps=4))
    cb = callback(every_n_steps=2)
    trainer = hf_train(out, cb, resume=str(out / "checkpoint-8"))
    steps = [r["global_step"] for r in cb.tuner.history]
    check(steps == [4, 8, 12, 16] and cb._round_steps == 4, f"decisions at {steps}")
    followed(trainer, cb.tuner)
    return "the checkpoint's round of 4 goes on (warned)"


@case("hf.resume_other_logging_steps", "either")
def _(tmp):
    out = checkpointed(tmp, callback())
    cb = callback()
    trainer = hf_train(out, cb, resume=str(out / "checkpoint-8"), logging_steps=4)
    steps = [r["global_step"] for r in cb.tuner.history]
    check(steps == [2, 4, 6, 8, 10, 12, 14, 16], f"decisions at {steps}")
    followed(trainer, cb.tuner)
    return "the Trainer keeps the checkpoint's logging_steps=2 (it warns); so does the tuner"


def damaged(tmp: Path, write: Callable[[Path], None]):
    out = checkpointed(tmp, callback())
    write(out / "checkpoint-8" / "aalr_tuner.pt")
    hf_train(out, callback(), resume=str(out / "checkpoint-8"))


@case("hf.tuner_file_not_a_torch_file", names="aalr_tuner.pt")
def _(tmp):
    damaged(tmp, lambda path: path.write_text("{not json"))


@case("hf.tuner_file_json", names="aalr_tuner.pt")
def _(tmp):
    damaged(tmp, lambda path: path.write_text(json.dumps({"format": 1, "global_step": 8})))


@case("hf.tuner_file_empty", names="aalr_tuner.pt")
def _(tmp):
    damaged(tmp, lambda path: path.write_bytes(b""))


@case("hf.tuner_file_truncated", names="aalr_tuner.pt")
def _(tmp):
    damaged(tmp, lambda path: path.write_bytes(path.read_bytes()[:200]))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/aalr_sweep_was_unpickled",))


@case("hf.tuner_file_malicious_pickle", names="aalr_tuner.pt")
def _(tmp):
    marker = Path("/tmp/aalr_sweep_was_unpickled")
    marker.unlink(missing_ok=True)
    try:
        damaged(tmp, lambda path: torch.save({"format": 1, "global_step": 8, "x": Evil()}, path))
    finally:
        if marker.exists():
            marker.unlink()
            raise Wrong("the pickle was unpickled: it ran code")


@case("hf.tuner_file_plain_pickle", names="aalr_tuner.pt")
def _(tmp):
    damaged(tmp, lambda path: path.write_bytes(pickle.dumps({"format": 1, "global_step": 8})))


def edited(tmp: Path, edit: Callable[[dict], None]):
    def write(path: Path) -> None:
        saved = torch.load(path, weights_only=True)
        edit(saved)
        torch.save(saved, path)

    damaged(tmp, write)


@case("hf.tuner_file_format_2", names="aalr_tuner.pt")
def _(tmp):
    edited(tmp, lambda s: s.update(format=2))


@case("hf.tuner_file_carry_str", names="aalr_tuner.pt")
def _(tmp):
    edited(tmp, lambda s: s.update(carry=["a", 1]))


@case("hf.tuner_file_carry_nan", names="aalr_tuner.pt")
def _(tmp):
    edited(tmp, lambda s: s.update(carry=[math.nan, 2]))


@case("hf.tuner_file_pending_str", names="aalr_tuner.pt")
def _(tmp):
    edited(tmp, lambda s: s.update(pending=["x"]))


@case("hf.tuner_file_round_steps_str", names="aalr_tuner.pt")
def _(tmp):
    edited(tmp, lambda s: s.update(round_steps="4"))


@case("hf.tuner_file_round_steps_not_multiple", names="aalr_tuner.pt")
def _(tmp):
    edited(tmp, lambda s: s.update(round_steps=3))


@case("hf.tuner_file_tuner_str")
def _(tmp):
    edited(tmp, lambda s: s.update(tuner="x"))


@case("hf.tuner_file_tuner_history_int")
def _(tmp):
    edited(tmp, lambda s: s["tuner"].update(history=3))


@case("hf.tuner_file_a_list")
def _(tmp):
    damaged(tmp, lambda path: torch.save([1, 2], path))


@case("hf.tuner_file_other_step")
def _(tmp):
    edited(tmp, lambda s: s.update(global_step=4))


@case("hf.tuner_file_missing")
def _(tmp):
    damaged(tmp, lambda path: path.unlink())


@case("hf.trainer_state_aalr_step_edited", "either")
def _(tmp):
    out = checkpointed(tmp, callback())
    path = out / "checkpoint-8" / "trainer_state.json"
    state = json.loads(path.read_text())
    state["stateful_callbacks"]["AALRTrainerCallback"]["attributes"]["aalr_step"] = "eight"
    path.write_text(json.dumps(state))
    cb = callback()
    hf_train(out, cb, resume=str(out / "checkpoint-8"))
    steps = [r["global_step"] for r in cb.tuner.history]
    check(steps == [2, 4, 6, 8, 10, 12, 14, 16], f"decisions at {steps}")
    return "the tuner file of step 8 is found and taken (the record only says one was saved)"


@case("hf.save_only_model_resume", "either")
def _(tmp):
    out = checkpointed(tmp, callback(), save_only_model=True)
    cb = callback()
    trainer = hf_train(out, cb, resume=str(out / "checkpoint-8"), save_only_model=True)
    followed(trainer, cb.tuner)
    return "resumed; the LR is the tuner's"


@case("hf.restore_callback_states_from_checkpoint", "ok")
def _(tmp):
    out = checkpointed(tmp, callback(every_n_steps=4, phase1_patience=2))
    cb = callback()  # remade from the checkpoint's settings by the Trainer
    trainer = hf_trainer(out, cb, restore_callback_states_from_checkpoint=True)
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-8"))
    used = next(c for c in trainer.callback_handler.callbacks if type(c).__name__ == "AALRTrainerCallback")
    check(used.every_n_steps == 4 and used.tuner is not None, f"every_n_steps {used.every_n_steps}")
    check([r["global_step"] for r in used.tuner.history] == [4, 8, 12, 16], str(used.tuner.history))
    return "remade with the checkpoint's settings; continues"


@case("hf.nan_loss_mid_run", "ok")
def _(tmp):
    cb = callback(phase1_patience=2)
    trainer = hf_train(tmp, cb, model=gpt(nan_at=9))
    nan = [r for r in cb.tuner.history if r["reason"].startswith("phase") and "not finite" in r["reason"]]
    check(len(nan) == 1 and nan[0]["global_step"] == 10, str([r["reason"] for r in cb.tuner.history]))
    check(all(torch.isfinite(p).all() for p in trainer.model.parameters()), "non-finite weights at the end")
    followed(trainer, cb.tuner)
    return "the diverged log restores and halves; the weights end finite"


@case("hf.fp16_on_cpu", "either")
def _(tmp):
    cb = callback()
    trainer = hf_train(tmp, cb, fp16=True)
    followed(trainer, cb.tuner)


@case("hf.bf16_on_cpu", "ok")
def _(tmp):
    cb = callback(phase1_patience=2)
    trainer = hf_train(tmp, cb, bf16=True)
    followed(trainer, cb.tuner)
    check(len(cb.tuner.history) == 8, str(len(cb.tuner.history)))


@case("hf.torch_compile_eager", "either")
def _(tmp):
    cb = callback(phase1_patience=2)
    trainer = hf_train(tmp, cb, torch_compile=True, torch_compile_backend="eager", model=gpt(nan_at=9))
    followed(trainer, cb.tuner)
    check(all(torch.isfinite(p).all() for p in trainer.model.parameters()), "non-finite weights at the end")


@case("hf.deepspeed_args")
def _(tmp):
    trainer = hf_trainer(tmp, callback())
    trainer.args.deepspeed = {"zero_optimization": {"stage": 2}}
    trainer.train()


@case("hf.fsdp_args")
def _(tmp):
    trainer = hf_trainer(tmp, callback())
    trainer.args.fsdp = "full_shard"
    trainer.train()


@case("hf.learning_rate_0")
def _(tmp):
    hf_trainer(tmp, callback(), learning_rate=0.0).train()


@case("hf.max_steps_below_a_round")
def _(tmp):
    hf_trainer(tmp, callback(every_n_steps=8), max_steps=6).train()


@case("hf.eval_logs_ignored", "ok")
def _(tmp):
    cb = callback()
    trainer = hf_trainer(tmp, cb, eval_strategy="steps", eval_steps=3, eval_dataset=Counting(16))
    trainer.train()
    check(len(cb.tuner.history) == 8, f"{len(cb.tuner.history)} decisions with evaluations between")
    followed(trainer, cb.tuner)


@case("hf.initial_loss_numpy_and_tensor", "ok")
def _(tmp):
    check(callback(initial_loss=np.float32(2.5)).initial_loss == 2.5, "numpy")
    w = torch.tensor(2.5, requires_grad=True)
    check(callback(initial_loss=w * 1).initial_loss == 2.5, "tensor")


@case("hf.every_n_steps_numpy_int", "ok")
def _(tmp):
    cb = callback(every_n_steps=np.int64(4), total_steps=np.int64(16))
    trainer = hf_train(tmp, cb)
    check([r["global_step"] for r in cb.tuner.history] == [4, 8, 12, 16], str(cb.tuner.history))
    followed(trainer, cb.tuner)
    return "NumPy integers taken, as the plain tuner takes them"


@case("hf.numpy_tuner_options_saved", "either")
def _(tmp):
    cb = callback(phase1_patience=np.int64(2), max_lr=np.float64(1.0), initial_loss=np.float32(3.5))
    out = checkpointed(tmp, cb)
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    check(state["stateful_callbacks"]["AALRTrainerCallback"]["args"]["phase1_patience"] == 2, "not saved")
    return "checkpoints save (trainer_state.json holds plain numbers)"


@case("hf.initial_loss=True")
def _(tmp):
    callback(initial_loss=True)


@case("hf.total_steps_none_no_finish", "ok")
def _(tmp):
    cb = callback(total_steps=None)
    hf_train(tmp, cb)
    check(cb.tuner.config.total_epochs is None and len(cb.tuner.history) == 8, str(cb.tuner.config))


@case("hf.logging_steps_1_every_4", "ok")
def _(tmp):
    cb = callback(every_n_steps=4, phase1_patience=2)
    trainer = hf_train(tmp, cb, logging_steps=1)
    check([r["global_step"] for r in cb.tuner.history] == [4, 8, 12, 16], str(cb.tuner.history))
    followed(trainer, cb.tuner)


@case("hf.snapshot_dir_path", "ok")
def _(tmp):
    cb = callback(snapshot_dir=tmp / "snapshots", phase1_patience=2)
    hf_train(tmp / "out", cb)
    check(any((tmp / "snapshots").iterdir()), "nothing in snapshot_dir")


# =====================================================================================================
# Lightning
# =====================================================================================================
def lightning():
    import lightning.pytorch as pl

    from aalr import lightning as aalr_pl

    return pl, aalr_pl


def pl_module(kind: str = "plain", **settings: Any):
    pl, _ = lightning()
    import torch.nn.functional as F

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
            self.calls = 0
            self.automatic_optimization = kind not in ("manual", "two")

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            if self.training:
                self.calls += 1
            if settings.get("nan_at") == self.calls and self.training:
                loss = loss * math.nan
            if settings.get("none_every") and self.calls % settings["none_every"] == 0 and self.training:
                return None
            if kind in ("manual", "two"):
                optimizer = self.optimizers()
                optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer
                optimizer.zero_grad()
                self.manual_backward(loss)
                optimizer.step()
            return loss

        def configure_optimizers(self):
            sgd = torch.optim.SGD(self.parameters(), lr=settings.get("lr", 0.5), momentum=0.9)
            if kind == "two":
                return sgd, torch.optim.SGD(self.parameters(), lr=0.1)
            if kind == "scheduler":
                return {"optimizer": sgd, "lr_scheduler": torch.optim.lr_scheduler.StepLR(sgd, 2)}
            return sgd

        def validation_step(self, batch, batch_idx):
            return None

    return Tiny()


class NoParameters:
    def __new__(cls):
        pl, _ = lightning()

        class Empty(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.dummy = nn.Parameter(torch.zeros(()), requires_grad=False)

            def training_step(self, batch, batch_idx):
                return torch.tensor(1.0, requires_grad=True)

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return Empty()


def pl_loader(n: int = 64, batch: int = 8):
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=batch)


class StepCounter:
    """A Lightning callback counting optimizer steps and recording each step's LR."""

    def __new__(cls):
        pl, _ = lightning()

        class Counter(pl.Callback):
            def __init__(self) -> None:
                self.lrs: dict[int, float] = {}

            def on_before_optimizer_step(self, trainer, pl_module, optimizer):
                self.lrs[trainer.global_step + 1] = float(optimizer.param_groups[0]["lr"])

        return Counter()


def pl_fit(module, cb, epochs: int = 2, ckpt_path=None, extra=(), val=None, **options: Any):
    pl, _ = lightning()
    counter = StepCounter()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in extra),
        callbacks=[cb, counter, *extra],
        **options,
    )
    trainer.fit(module, pl_loader(), val, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    trainer.counter = counter
    return trainer


def pl_followed(trainer, tuner) -> None:
    decisions = {r["last_step"]: r for r in tuner.history}
    lr = tuner.history[0]["lr"] if tuner.history else tuner.lr
    start = min(trainer.counter.lrs, default=1) - 1
    for step in sorted(trainer.counter.lrs):
        got = trainer.counter.lrs[step]
        check(math.isclose(got, lr, rel_tol=1e-12), f"step {step} trained with LR {got}, the tuner's is {lr}")
        if step - start in decisions:
            lr = decisions[step - start]["next_lr"]


def pl_callback(**options: Any):
    _, aalr_pl = lightning()
    return aalr_pl.AALRCallback(**options)


for _value in ("steps", "Epoch", None, "batch"):

    @case(f"pl.interval={_value!r}")
    def _(tmp, value=_value):
        pl_callback(interval=value)


for _value in (0, 2.5, True, "4", None):

    @case(f"pl.step_every_n_steps={_value!r}")
    def _(tmp, value=_value):
        pl_callback(interval="step", every_n_steps=value)


@case("pl.every_n_steps_with_epoch_interval")
def _(tmp):
    pl_callback(every_n_steps=4)


@case("pl.total_steps_with_epoch_interval")
def _(tmp):
    pl_callback(total_steps=4)


@case("pl.total_epochs_with_step_interval")
def _(tmp):
    pl_callback(interval="step", every_n_steps=4, total_epochs=3)


@case("pl.total_steps_below_a_round")
def _(tmp):
    pl_callback(interval="step", every_n_steps=4, total_steps=3)


@case("pl.total_steps_max_steps_unbounded")
def _(tmp):
    pl_fit(pl_module(), pl_callback(interval="step", every_n_steps=4, total_steps="max_steps"), max_steps=-1)


@case("pl.monitor_empty")
def _(tmp):
    pl_callback(monitor="")


@case("pl.log_yes")
def _(tmp):
    pl_callback(log="yes")


@case("pl.initial_loss_nan")
def _(tmp):
    pl_callback(initial_loss=math.nan)


@case("pl.accumulate_4_above_every_2", "ok")
def _(tmp):
    cb = pl_callback(interval="step", every_n_steps=2, initial_loss=1.2)
    trainer = pl_fit(pl_module(), cb, accumulate_grad_batches=4)  # 8 batches an epoch: 2 steps
    check(trainer.global_step == 4 and len(cb.tuner.history) == 2, f"{len(cb.tuner.history)} decisions")
    pl_followed(trainer, cb.tuner)
    return "rounds of 2 optimizer steps (8 batches)"


@case("pl.accumulate_3_not_dividing_every_4", "ok")
def _(tmp):
    cb = pl_callback(interval="step", every_n_steps=4, initial_loss=1.2)
    trainer = pl_fit(pl_module(), cb, epochs=3, accumulate_grad_batches=3)  # 3 steps an epoch (3+3+2)
    check(trainer.global_step == 9, str(trainer.global_step))
    check([r["last_step"] for r in cb.tuner.history] == [4, 8], str(cb.tuner.history))
    pl_followed(trainer, cb.tuner)
    return "rounds of 4 optimizer steps across epochs (the short last step counts as one)"


@case("pl.manual_optimization_step_mode", "ok")
def _(tmp):
    cb = pl_callback(interval="step", every_n_steps=4, initial_loss=1.2)
    trainer = pl_fit(pl_module("manual"), cb)
    check(trainer.global_step == 16 and len(cb.tuner.history) == 4, f"{len(cb.tuner.history)}")
    pl_followed(trainer, cb.tuner)


@case("pl.manual_optimization_epoch_mode", "ok")
def _(tmp):
    cb = pl_callback(initial_loss=1.2)
    pl_fit(pl_module("manual"), cb, epochs=3)
    check(len(cb.tuner.history) == 3, f"{len(cb.tuner.history)}")


@case("pl.two_optimizers_manual")
def _(tmp):
    pl_fit(pl_module("two"), pl_callback())


@case("pl.scheduler_in_configure_optimizers")
def _(tmp):
    pl_fit(pl_module("scheduler"), pl_callback(interval="step", every_n_steps=2))


@case("pl.training_step_none_some_batches_epoch", "ok")
def _(tmp):
    cb = pl_callback(initial_loss=1.2)
    pl_fit(pl_module(none_every=3), cb, epochs=2)
    check(len(cb.tuner.history) == 2 and math.isfinite(cb.tuner.history[0]["loss"]), str(cb.tuner.history))


@case("pl.training_step_none_some_batches_step", "either")
def _(tmp):
    cb = pl_callback(interval="step", every_n_steps=2, initial_loss=1.2)
    trainer = pl_fit(pl_module(none_every=3), cb, epochs=2)
    check(
        len(cb.tuner.history) == trainer.global_step // 2,
        f"{len(cb.tuner.history)} for {trainer.global_step}",
    )


@case("pl.nan_loss_step_mode", "ok")
def _(tmp):
    cb = pl_callback(interval="step", every_n_steps=4, initial_loss=1.2, phase1_patience=2)
    trainer = pl_fit(pl_module(nan_at=6), cb)
    check(cb.tuner.history[1]["last_step"] == 6 and "not finite" in cb.tuner.history[1]["reason"], "no")
    check(all(torch.isfinite(p).all() for p in trainer.lightning_module.parameters()), "non-finite weights")


@case("pl.nan_loss_epoch_mode", "ok")
def _(tmp):
    cb = pl_callback(initial_loss=1.2)
    trainer = pl_fit(pl_module(nan_at=3), cb, epochs=3)
    check("not finite" in cb.tuner.history[0]["reason"], str(cb.tuner.history[0]))
    check(all(torch.isfinite(p).all() for p in trainer.lightning_module.parameters()), "non-finite weights")


def pl_checkpoint(tmp: Path, cb: Any, **options: Any) -> Path:
    pl, _ = lightning()
    saver = pl.callbacks.ModelCheckpoint(dirpath=tmp, filename="e{epoch}", save_top_k=-1, every_n_epochs=1)
    pl_fit(pl_module(), cb if cb is not None else StepCounter(), epochs=2, extra=[saver], **options)
    return sorted(tmp.glob("*.ckpt"))[-1]


@case("pl.resume_checkpoint_without_callback", "ok")
def _(tmp):
    ckpt = pl_checkpoint(tmp, None)
    cb = pl_callback(interval="step", every_n_steps=4, initial_loss=1.2)
    trainer = pl_fit(pl_module(), cb, epochs=4, ckpt_path=ckpt)
    check(len(cb.tuner.history) == 4 and cb.tuner.history[0]["last_step"] == 4, str(cb.tuner.history))
    pl_followed(trainer, cb.tuner)
    return "a fresh tuner from the checkpoint's weights"


@case("pl.resume_other_every_n_steps", "ok")
def _(tmp):
    ckpt = pl_checkpoint(tmp, pl_callback(interval="step", every_n_steps=4, initial_loss=1.2))
    cb = pl_callback(interval="step", every_n_steps=2, initial_loss=1.2)
    pl_fit(pl_module(), cb, epochs=3, ckpt_path=ckpt)
    check(cb.tuner.round.every_n_steps == 4, "the checkpoint's round was dropped")
    check([r["last_step"] for r in cb.tuner.history] == [4, 8, 12, 16, 20, 24], str(cb.tuner.history))
    return "the checkpoint's round of 4 goes on (warned)"


@case("pl.resume_step_checkpoint_in_epoch_mode")
def _(tmp):
    ckpt = pl_checkpoint(tmp, pl_callback(interval="step", every_n_steps=4, initial_loss=1.2))
    pl_fit(pl_module(), pl_callback(initial_loss=1.2), epochs=3, ckpt_path=ckpt)


@case("pl.fit_twice_same_trainer", "ok")
def _(tmp):
    cb = pl_callback(interval="step", every_n_steps=4, initial_loss=1.2)
    trainer = pl_fit(pl_module(), cb)
    module = pl_module()
    trainer.fit(module, pl_loader())  # max_epochs reached: nothing more trains
    check(cb.tuner is None or cb.tuner.model is module, "the tuner holds the first run's model")
    return "the second fit trains nothing and holds no stale tuner"


@case("pl.fit_twice_new_trainer", "ok")
def _(tmp):
    cb = pl_callback(interval="step", every_n_steps=4, initial_loss=1.2)
    pl_fit(pl_module(), cb)
    module = pl_module()
    trainer = pl_fit(module, cb)
    check(cb.tuner.model is module and len(cb.tuner.history) == 4, str(len(cb.tuner.history)))
    pl_followed(trainer, cb.tuner)


@case("pl.val_check_interval_0.5", "ok")
def _(tmp):
    cb = pl_callback(initial_loss=1.2)
    pl_fit(pl_module(), cb, val=pl_loader(), val_check_interval=0.5)
    check(len(cb.tuner.history) == 2, str(len(cb.tuner.history)))


@case("pl.limit_train_batches_0.5_step", "ok")
def _(tmp):
    cb = pl_callback(interval="step", every_n_steps=4, total_steps="max_steps", initial_loss=1.2)
    trainer = pl_fit(pl_module(), cb, epochs=10, max_steps=12, limit_train_batches=0.5)
    check(trainer.global_step == 12 and len(cb.tuner.history) == 3, str(len(cb.tuner.history)))
    check(cb.tuner.config.total_epochs == 3, str(cb.tuner.config.total_epochs))


@case("pl.limit_train_batches_0", "either")
def _(tmp):
    cb = pl_callback(initial_loss=1.2)
    pl_fit(pl_module(), cb, limit_train_batches=0)
    check(cb.tuner is None or not cb.tuner.history, "decided without training")
    return "nothing trains, nothing is decided"


@case("pl.model_without_trainable_parameters", "either")
def _(tmp):
    cb = pl_callback(initial_loss=1.2)
    pl_fit(NoParameters(), cb)
    check(len(cb.tuner.history) == 2, str(len(cb.tuner.history)))


@case("pl.monitor_missing_step_mode")
def _(tmp):
    pl_fit(pl_module(), pl_callback(interval="step", every_n_steps=4, monitor="nope"))


@case("pl.compute_initial_loss_manual")
def _(tmp):
    pl_fit(pl_module("manual"), pl_callback(compute_initial_loss=True))


@case("pl.every_n_steps_numpy_int", "ok")
def _(tmp):
    cb = pl_callback(interval="step", every_n_steps=np.int64(4), total_steps=np.int64(16), initial_loss=1.2)
    trainer = pl_fit(pl_module(), cb)
    check(len(cb.tuner.history) == 4 and cb.tuner.config.total_epochs == 4, str(cb.tuner.config))
    pl_followed(trainer, cb.tuner)


@case("pl.resume_epoch_checkpoint_in_step_mode")
def _(tmp):
    ckpt = pl_checkpoint(tmp, pl_callback(initial_loss=1.2))
    pl_fit(pl_module(), pl_callback(interval="step", every_n_steps=4), epochs=3, ckpt_path=ckpt)


@case("pl.step_monitor_logged_on_epoch_only")
def _(tmp):
    module = pl_module()
    step = module.training_step

    def logging_step(batch, batch_idx):
        loss = step(batch, batch_idx)
        module.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    module.training_step = logging_step
    pl_fit(module, pl_callback(interval="step", every_n_steps=4, monitor="train_loss"))


@case("pl.observe_loss_int_dtype_epoch", "ok")
def _(tmp):
    cb = pl_callback(initial_loss=2)
    pl_fit(pl_module(), cb)
    check(cb.tuner.policy.initial_loss == 2.0, str(cb.tuner.policy.initial_loss))


# =====================================================================================================
def main(prefixes: list[str]) -> int:
    selected = [c for c in CASES if not prefixes or any(c[0].startswith(p) for p in prefixes)]
    counts: dict[str, int] = {}
    for name, expect, names, function in selected:
        outcome, verdict = run_case(name, expect, names, function)
        counts[verdict] = counts.get(verdict, 0) + 1
        print(f"{name} | {outcome} | {verdict}", flush=True)
    print(f"\n{len(selected)} cases: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    return 1 if counts.get("DEFECT") else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
