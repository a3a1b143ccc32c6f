"""AALRTrainerCallback: the Trainer's LR follows the tuner's decisions (a constant schedule does not
overwrite it), a NaN loss is restored at a safe point to the best checkpoint, a resume from a Trainer
checkpoint continues the same tuner, and unsafe or bad settings fail with a clear message."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (pip install 'aalr[hf]')"
)

from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from aalr.hf import TUNER_FILE, AALRTrainerCallback  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
VOCAB, LENGTH = 32, 16
SETTINGS = {"phase1_patience": 2}  # phase 2, and the LR doubling, after 2 rounds
STEPS = 16  # optimizer steps of a run; a log every 2


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: threads only contend (the test machines' cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Counting(torch.utils.data.Dataset):
    """Sequences that count up (mod VOCAB) from a random start: learnt within a few steps."""

    def __init__(self, n: int = 64) -> None:
        starts = torch.randint(0, VOCAB, (n, 1), generator=torch.Generator().manual_seed(0))
        self.ids = (starts + torch.arange(LENGTH)) % VOCAB

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


class NaNAt(GPT2LMHeadModel):
    """GPT-2 whose training forward pass number ``nan_at`` (1-based) returns a NaN loss: with NaN
    gradients too (the weights diverge), or with ``harmless`` the loss's own gradients."""

    nan_at: int | None = None
    harmless = False
    calls = 0

    def forward(self, input_ids: Any = None, labels: Any = None, **kwargs: Any) -> Any:
        out = super().forward(input_ids=input_ids, labels=labels, **kwargs)
        if self.training:
            self.calls += 1
            if self.calls == self.nan_at:
                nan = torch.full_like(out.loss, float("nan"))
                out.loss = out.loss + (nan - out.loss).detach() if self.harmless else out.loss * nan
        return out


def tiny_model(nan_at: int | None = None, harmless: bool = False) -> NaNAt:
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=1,
        n_head=2,
        n_embd=16,
        vocab_size=VOCAB,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = NaNAt(config)
    model.nan_at, model.harmless = nan_at, harmless
    return model


def arguments(out: Path, **overrides: Any) -> TrainingArguments:
    settings: dict[str, Any] = {
        "output_dir": str(out),
        "max_steps": STEPS,
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
    return TrainingArguments(**settings)


class Probe(TrainerCallback):
    """After the AALR callback: the LR each optimizer step uses, the logs as the callbacks after AALR's
    see them, and the weights at each training log and at the start of each step."""

    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}  # optimizer step (1-based) -> param group 0's LR
        self.logs: list[dict[str, Any]] = []
        self.grads_at_logs: list[bool] = []  # every grad None (zero_grad has run) at the log
        self.weights_at_log: dict[int, dict[str, torch.Tensor]] = {}
        self.weights_at_step: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.weights_at_step[state.global_step + 1] = clone(model)

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs[state.global_step + 1] = float(optimizer.param_groups[0]["lr"])

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if "loss" in logs:
            self.logs.append({**logs, "global_step": state.global_step})
            self.grads_at_logs.append(all(p.grad is None for p in model.parameters()))
            self.weights_at_log[state.global_step] = clone(model)


def clone(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train(
    out: Path,
    callback: AALRTrainerCallback | None,
    model: torch.nn.Module | None = None,
    resume: str | bool | None = None,
    **overrides: Any,
) -> tuple[Trainer, Probe]:
    probe = Probe()
    callbacks = [probe] if callback is None else [callback, probe]
    trainer = Trainer(
        model=model or tiny_model(),
        args=arguments(out, **overrides),
        train_dataset=Counting(),
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer, probe


def expected_lrs(eta0: float, history: list[dict[str, Any]], steps: int) -> dict[int, float]:
    """The LR of each optimizer step from the tuner's decisions: eta0, then each decision's next_lr from
    the step after it."""
    lrs, lr, decisions = {}, eta0, {record["global_step"]: record for record in history}
    for step in range(1, steps + 1):
        lrs[step] = lr
        if step in decisions:
            lr = decisions[step]["next_lr"]
    return lrs


@pytest.mark.parametrize(("every_n_steps", "accumulation"), [(None, 1), (4, 2)])
def test_lr_follows_the_tuners_decisions_on_the_logged_losses(tmp_path, every_n_steps, accumulation):
    callback = AALRTrainerCallback(every_n_steps, **SETTINGS)
    trainer, probe = train(tmp_path, callback, gradient_accumulation_steps=accumulation)
    tuner, round_steps = callback.tuner, every_n_steps or 2
    history = tuner.history
    assert [r["global_step"] for r in history] == list(range(round_steps, STEPS + 1, round_steps))
    # the LR each step trained with is the tuner's: the constant LambdaLR did not reset it
    assert probe.lrs == expected_lrs(4e-3, history, STEPS)
    assert len(set(probe.lrs.values())) >= 3  # doublings in phase 2, then AALR+'s finish
    assert trainer.lr_scheduler.base_lrs[0] == tuner.lr == trainer.optimizer.param_groups[0]["lr"]
    # each round's loss is the mean of its logs' losses
    per_round = round_steps // 2
    losses = [log["loss"] for log in probe.logs]
    for index, record in enumerate(history):
        assert record["steps"] == per_round
        assert record["loss"] == pytest.approx(
            sum(losses[index * per_round : (index + 1) * per_round]) / per_round
        )
    # decided in on_log, after the optimizer step and zero_grad, before the next step
    assert all(probe.grads_at_logs)
    # what the tuner decided reaches the callbacks after it, and trainer_state's log history
    decided = {r["global_step"]: r for r in history}
    for log in probe.logs:
        assert log["aalr/lr"] == pytest.approx(probe.lrs.get(log["global_step"] + 1, tuner.lr))
        assert ("aalr/action" in log) == (log["global_step"] in decided)
    history_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["aalr/phase"] for entry in history_logs] == [log["aalr/phase"] for log in probe.logs]


def test_a_schedule_kept_with_allow_lr_schedule_multiplies_the_tuners_lr(tmp_path):
    callback = AALRTrainerCallback(allow_lr_schedule=True, **SETTINGS)
    trainer, probe = train(tmp_path, callback, lr_scheduler_type="constant_with_warmup", warmup_steps=6)
    tuner_lrs = expected_lrs(4e-3, callback.tuner.history, STEPS)
    warmup = trainer.lr_scheduler.lr_lambdas[0]
    assert callback.tuner.eta0 == 4e-3  # the unscaled LR, not the warmup's 0 at step 0
    for step, lr in probe.lrs.items():
        assert lr == pytest.approx(tuner_lrs[step] * warmup(step - 1), rel=1e-12)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"lr_scheduler_type": "linear"}, r"lr_scheduler_type='linear'\) scales it by 0.9375 at step 1"),
        ({"lr_scheduler_type": "constant_with_warmup", "warmup_steps": 2}, "allow_lr_schedule=True"),
    ],
)
def test_a_schedule_that_would_fight_the_tuner_is_refused(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        train(tmp_path, AALRTrainerCallback(), **overrides)


def test_a_scheduler_that_is_not_a_lambda_lr_is_refused(tmp_path):
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5)
    trainer = Trainer(
        model=model,
        args=arguments(tmp_path),
        train_dataset=Counting(),
        optimizers=(optimizer, scheduler),
        callbacks=[AALRTrainerCallback()],
    )
    with pytest.raises(ValueError, match="scheduler is a StepLR, which would change it too"):
        trainer.train()


def test_a_diverged_run_restores_the_best_checkpoint_at_the_next_safe_point(tmp_path):
    # steps 1-6 train well (phase 2 from the round ending at step 4); step 7's loss is NaN and its update
    # makes the weights NaN. The Trainer's filter logs a finite loss for steps 7-8; the weights tell.
    # the "steps" finish (at 75 %): the fault at half the budget falls outside it, so the halving is exact
    callback = AALRTrainerCallback(**SETTINGS, finish="steps")
    _, probe = train(tmp_path, callback, model=tiny_model(nan_at=7))
    assert all(math.isfinite(log["loss"]) for log in probe.logs)  # logging_nan_inf_filter at work
    history = {r["global_step"]: r for r in callback.tuner.history}
    restore = history[8]
    assert math.isnan(restore["loss"])
    assert restore["action"] == "restore_best" and "not finite" in restore["reason"]
    assert restore["next_lr"] == restore["lr"] / 2
    best_at = max(step for step, r in history.items() if step < 8 and r["action"] == "save_best")
    best = probe.weights_at_log[best_at]  # the weights when the best checkpoint was taken
    assert not all(torch.isfinite(v).all() for v in probe.weights_at_step[8].values())  # diverged
    for weights in (probe.weights_at_log[8], probe.weights_at_step[9]):  # restored, and trained on from there
        assert weights.keys() == best.keys()
        assert all(torch.equal(weights[k], best[k]) for k in best)
    assert probe.grads_at_logs[3]  # the restore came after zero_grad
    later = [r for step, r in history.items() if step > 8]
    assert later and all(math.isfinite(r["loss"]) for r in later)  # training went on from the checkpoint


def test_without_the_trainers_nan_filter_one_nan_step_makes_every_later_log_nan(tmp_path):
    # why the callback needs logging_nan_inf_filter=True: the weights stay finite here, yet the Trainer's
    # loss sum, reset by subtracting it from itself, stays NaN
    model = tiny_model(nan_at=3, harmless=True)
    _, probe = train(tmp_path, None, model=model, max_steps=8, logging_nan_inf_filter=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [math.isnan(log["loss"]) for log in probe.logs] == [False, True, True, True]


def test_a_loss_logged_mid_step_is_acted_on_at_the_next_step_end(tmp_path):
    callback = AALRTrainerCallback()
    trainer = Trainer(
        model=tiny_model(), args=arguments(tmp_path), train_dataset=Counting(), callbacks=[callback]
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=STEPS)
    state, control = TrainerState(max_steps=STEPS, logging_steps=2), TrainerControl()
    events = {"model": trainer.model, "optimizer": trainer.optimizer, "lr_scheduler": trainer.lr_scheduler}
    callback.on_train_begin(trainer.args, state, control, **events)
    initial = clone(trainer.model)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)
    state.global_step = 2
    callback.on_step_begin(trainer.args, state, control, **events)  # a forward/backward may follow
    callback.on_log(trainer.args, state, control, logs={"loss": float("nan")}, **events)
    assert callback.tuner.history == []  # not acted on with gradients possibly pending
    state.global_step = 3
    callback.on_step_end(trainer.args, state, control, **events)
    (record,) = callback.tuner.history
    assert record["action"] == "restore_initial" and record["global_step"] == 3
    assert all(torch.equal(v, initial[k]) for k, v in trainer.model.state_dict().items())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A run with checkpoints at steps 8 and 16, its callback and its final weights."""
    out = tmp_path_factory.mktemp("uninterrupted")
    callback = AALRTrainerCallback(compute_initial_loss=True, **SETTINGS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer, _ = train(out, callback, **SAVES)
    finally:
        torch.set_num_threads(threads)
    return out, callback, clone(trainer.model)


SAVES = {"save_strategy": "steps", "save_steps": 8}


def moved_checkpoint(source: Path, out: Path) -> Path:
    """A copy of a checkpoint folder under ``out``, as if moved there: trainer_state.json's record of
    where the tuner's file was saved points to a folder that no longer exists."""
    copy = out / source.name
    shutil.copytree(source, copy)
    state_file = copy / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["stateful_callbacks"]["AALRTrainerCallback"]["attributes"]["aalr_checkpoint"] = str(out / "gone")
    state_file.write_text(json.dumps(state))
    return copy


@pytest.mark.parametrize("how", ["path", "moved", "restore_callback_states"])
def test_resume_from_a_trainer_checkpoint_continues_the_same_tuner(tmp_path, uninterrupted, how):
    first, straight, weights = uninterrupted
    saved = torch.load(first / "checkpoint-8" / TUNER_FILE, weights_only=True)
    assert saved["global_step"] == 8 and saved["tuner"]["history"] == straight.tuner.history[:4]
    callback = AALRTrainerCallback(compute_initial_loss=True, **SETTINGS)
    if how == "path":  # into another output_dir: the file is where trainer_state.json says it was saved
        resumed, _ = train(tmp_path, callback, resume=str(first / "checkpoint-8"), **SAVES)
    elif how == "moved":  # resume_from_checkpoint=True: the last checkpoint in output_dir, moved there
        moved_checkpoint(first / "checkpoint-8", tmp_path)
        resumed, _ = train(tmp_path, callback, resume=True, **SAVES)
    else:  # transformers replaces the callback by one made from state()["args"]: that one tunes
        options = {**SAVES, "restore_callback_states_from_checkpoint": True}
        resumed, _ = train(tmp_path, callback, resume=str(first / "checkpoint-8"), **options)
        assert callback.tuner is None
        (callback,) = [c for c in resumed.callback_handler.callbacks if isinstance(c, AALRTrainerCallback)]
        assert callback.compute_initial_loss and callback.tuner_options == SETTINGS
    assert callback.tuner.history == straight.tuner.history  # the decisions, LRs, losses and reasons
    assert callback.tuner.state_dict()["policy"] == straight.tuner.state_dict()["policy"]
    final = resumed.model.state_dict()
    assert all(torch.equal(final[k], weights[k]) for k in weights)


def test_resume_without_the_tuners_file_says_where_it_looked(tmp_path, uninterrupted):
    (moved_checkpoint(uninterrupted[0] / "checkpoint-8", tmp_path) / TUNER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=f"no {TUNER_FILE} of that step is in"):
        train(tmp_path, AALRTrainerCallback(**SETTINGS), resume=True, **SAVES)


class RunsCode:
    """A pickle that would run code when unpickled (it must never be)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def damaged(path: Path, how: str) -> None:
    if how == "text":
        path.write_text("{not a torch file")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:  # "code": a pickle whose loading would create the marker file
        torch.save({"format": 1, "global_step": 8, "x": RunsCode(path.parent / "ran")}, path)


# found by the hostile sweep of the integrations: torch's own errors (UnpicklingError, EOFError, a zip
# reader's RuntimeError) came from deep inside torch.load without naming the file
@pytest.mark.parametrize("how", ["text", "empty", "truncated", "code"])
def test_a_damaged_tuner_file_is_refused_naming_it_and_never_unpickled(tmp_path, uninterrupted, how):
    checkpoint = moved_checkpoint(uninterrupted[0] / "checkpoint-8", tmp_path)
    damaged(checkpoint / TUNER_FILE, how)
    with pytest.raises(ValueError, match=f"{checkpoint / TUNER_FILE} is not a tuner file that can be read"):
        train(tmp_path, AALRTrainerCallback(**SETTINGS), resume=True, **SAVES)
    assert not (checkpoint / "ran").exists()


# found by the hostile sweep: a NaN carry was taken (the next log became NaN: a restore and a halving for
# nothing), a round not of whole logs was floored, and a carry of text failed after the tuner was loaded
@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"carry": [math.nan, 2]}, r"carry must be \[finite loss sum, steps >= 0\].*carry=\[nan, 2\]"),
        ({"carry": ["a", 1]}, r"carry must be .*carry=\['a', 1\]"),
        ({"pending": ["x"]}, r"pending a list of losses.*pending=\['x'\]"),
        ({"round_steps": 3}, r"its round of 3 steps is not a whole number of logs of 2 steps"),
        ({"tuner": "x"}, f"{TUNER_FILE}: AALR state must be a dict"),
    ],
)
def test_an_edited_tuner_file_is_refused_naming_it(tmp_path, uninterrupted, edit, match):
    checkpoint = moved_checkpoint(uninterrupted[0] / "checkpoint-8", tmp_path)
    saved = torch.load(checkpoint / TUNER_FILE, weights_only=True)
    torch.save({**saved, **edit}, checkpoint / TUNER_FILE)
    with pytest.raises((TypeError, ValueError), match=match):
        train(tmp_path, AALRTrainerCallback(**SETTINGS), resume=True, **SAVES)


def test_numpy_numbers_are_taken_and_exported_as_plain_json():
    # found by the hostile sweep: NumPy ints were refused as every_n_steps ("got 4"), and a NumPy option
    # made the first checkpoint save fail in json.dumps, after training up to it
    np = pytest.importorskip("numpy")
    callback = AALRTrainerCallback(np.int64(4), total_steps=np.int64(16), phase1_patience=np.int64(2))
    assert callback.every_n_steps == 4 and callback.total_steps == 16
    exported = json.loads(json.dumps(callback.state()))["args"]
    assert exported["every_n_steps"] == 4 and exported["phase1_patience"] == 2


def test_resume_from_a_checkpoint_saved_without_aalr_starts_the_tuner_there(tmp_path):
    train(tmp_path, None, max_steps=8, **SAVES)
    callback = AALRTrainerCallback(**SETTINGS)
    with pytest.warns(UserWarning, match="holds no AALR state"):
        train(tmp_path, callback, resume=True, **SAVES)
    assert [r["global_step"] for r in callback.tuner.history] == list(range(10, STEPS + 1, 2))
    assert (tmp_path / f"checkpoint-{STEPS}" / TUNER_FILE).is_file()  # the next save found its entry


def test_deepspeed_is_refused_when_the_trainer_is_made(tmp_path):
    args = arguments(tmp_path)
    args.deepspeed = {"train_batch_size": 8}  # what TrainingArguments(deepspeed=...) sets (needs deepspeed)
    with pytest.raises(ValueError, match=r"does not work with DeepSpeed \(args.deepspeed is set\)"):
        Trainer(model=tiny_model(), args=args, train_dataset=Counting(), callbacks=[AALRTrainerCallback()])


def test_fsdp_is_refused_when_training_starts(tmp_path, monkeypatch):
    trainer = Trainer(
        model=tiny_model(),
        args=arguments(tmp_path),
        train_dataset=Counting(),
        callbacks=[AALRTrainerCallback()],
    )
    trainer.args.fsdp = True  # the Trainer itself accepts FSDP only under torch.distributed
    with pytest.raises(ValueError, match=r"does not work with FSDP \(args.fsdp=True\)"):
        trainer.train()
    trainer.args.fsdp = None
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # `accelerate launch --use_fsdp`
    with pytest.raises(ValueError, match="does not work with FSDP"):
        trainer.train()


@pytest.mark.parametrize(
    ("callback", "overrides", "match"),
    [
        ({}, {"logging_nan_inf_filter": False}, r"needs TrainingArguments\(logging_nan_inf_filter=True\)"),
        ({}, {"logging_first_step": True}, "needs logging_first_step=False"),
        ({}, {"logging_strategy": "epoch"}, "needs logging_strategy='steps', got 'epoch'"),
        ({"every_n_steps": 3}, {}, "every_n_steps=3 must be a multiple of logging_steps=2"),
    ],
)
def test_bad_training_arguments_fail_when_the_trainer_is_made(tmp_path, callback, overrides, match):
    with pytest.raises(ValueError, match=match):
        Trainer(
            model=tiny_model(),
            args=arguments(tmp_path, **overrides),
            train_dataset=Counting(),
            callbacks=[AALRTrainerCallback(**callback)],
        )


@pytest.mark.parametrize(
    ("callback", "overrides", "match"),
    [
        # a fraction of max_steps: 0.375 * 16 = 6 steps per log, known when training starts
        (
            {"every_n_steps": 4},
            {"logging_steps": 0.375},
            "every_n_steps=4 must be a multiple of logging_steps=6",
        ),
        ({"every_n_steps": 4, "total_steps": 3}, {}, r"total_steps \(3\) must be at least one round of 4"),
        ({"every_n_steps": 32}, {}, r"total_steps \(16 = the Trainer max_steps\) must be at least one round"),
        ({"compute_initial_loss": True}, {"label_smoothing_factor": 0.1}, "label_smoothing_factor=0.1"),
        ({"max_lr": 1e-3}, {}, r"max_lr \(0.001\) must be >= the optimizer's LR"),
    ],
)
def test_bad_settings_fail_when_training_starts(tmp_path, callback, overrides, match):
    with pytest.raises(ValueError, match=match):
        train(tmp_path, AALRTrainerCallback(**callback), **overrides)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"every_n_steps": 0}, ValueError, r"every_n_steps must be None .* got 0"),
        ({"total_steps": "all"}, ValueError, "total_steps must be 'max_steps'.* got 'all'"),
        ({"total_epochs": 3}, TypeError, r"unknown options \['total_epochs'\]"),
        ({"rules": "fast"}, ValueError, "rules must be one of"),
        ({"initial_loss": 2.0, "compute_initial_loss": True}, ValueError, "not both"),
        ({"log": 1}, TypeError, "log must be True or False, got 1"),
    ],
)
def test_constructor_errors(options, error, match):
    with pytest.raises(error, match=match):
        AALRTrainerCallback(**options)


def test_compute_initial_loss_is_the_models_mean_loss_and_leaves_the_rng_alone(tmp_path):
    callback = AALRTrainerCallback(compute_initial_loss=True, **SETTINGS)
    plain = AALRTrainerCallback(**SETTINGS)
    _, measured = train(tmp_path / "a", callback, max_steps=4)
    _, unmeasured = train(tmp_path / "b", plain, max_steps=4)
    model, data = tiny_model(), Counting()
    with torch.no_grad():
        batch = {k: torch.stack([data[i][k] for i in range(len(data))]) for k in ("input_ids", "labels")}
        expected = float(model(**batch).loss)  # every sample has the same number of tokens
    assert callback.tuner.policy.initial_loss == pytest.approx(expected, rel=1e-5)
    assert [log["loss"] for log in measured.logs] == [log["loss"] for log in unmeasured.logs]


def test_import_aalr_does_not_import_transformers():
    code = "import sys, aalr; print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
