"""AALRCallback: the LR follows the rules for the logged losses, restores are exact, Lightning
checkpoints resume exactly (loaded with weights_only=True), bad settings fail clearly, DDP ranks agree."""

from __future__ import annotations

import atexit
import copy
import csv
import importlib.util
import json
import math
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip(
    "lightning.pytorch", reason="lightning is not installed (pip install 'aalr[lightning]')"
)

import aalr.lightning  # noqa: E402
import aalr.policy  # noqa: E402
from aalr import AALR, AALRConfig, AALRPolicy  # noqa: E402
from aalr.lightning import AALRCallback  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::PendingDeprecationWarning")
SETTINGS = {"phase1_patience": 2, "rollback": True}
EPOCHS = 16


class Tiny(pl.LightningModule):
    """A 3-class MLP on 64 fixed samples; keeps its own per-epoch mean loss to check what was logged."""

    def __init__(
        self,
        lr: float = 4.0,
        metric: str | None = "train_loss",
        rank_skew: float = 0.0,
        on_epoch: bool = True,
    ) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        self.lr, self.metric, self.rank_skew, self.on_epoch = lr, metric, rank_skew, on_epoch
        self.sums: list[list[float]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        if self.training:  # not the callback's initial-loss pass
            if batch_idx == 0 or not self.sums:  # (a run resumed mid-epoch starts at a later batch)
                self.sums.append([0.0, 0])
            self.sums[-1][0] += loss.item() * len(x)
            self.sums[-1][1] += len(x)
        # rank_skew: under DDP each rank logs a different value (no sync_dist): the tuner must agree
        logged = loss * (1 + self.rank_skew * (2 * self.global_rank - 1))
        if self.metric is not None:  # on_epoch=False: logged per step only (the last batch's value)
            self.log(
                self.metric, logged, on_step=not self.on_epoch, on_epoch=self.on_epoch, batch_size=len(x)
            )
        return loss

    def epoch_means(self) -> list[float]:
        return [total / count for total, count in self.sums]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16)  # no shuffling: runs repeat exactly


class Probe(pl.Callback):
    """Records the LR and the weights each epoch trains with."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        self.weights.append({k: v.clone() for k, v in pl_module.state_dict().items()})


def fit(module, callbacks, epochs=EPOCHS, ckpt_path=None, checkpoint_dir=None, **trainer_options):
    checkpointing = checkpoint_dir is not None or any(
        isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks
    )
    if checkpoint_dir is not None:
        callbacks = [
            *callbacks,
            pl.callbacks.ModelCheckpoint(
                dirpath=checkpoint_dir,
                filename="e{epoch}",
                auto_insert_metric_name=False,
                save_top_k=-1,
                every_n_epochs=1,
                save_on_train_epoch_end=True,
            ),
        ]
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=checkpointing,
        callbacks=callbacks,
        **trainer_options,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader(), ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    return trainer


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_lr_follows_the_rules_for_the_logged_losses():
    module, probe, callback = Tiny(lr=4.0), Probe(), AALRCallback(compute_initial_loss=True, **SETTINGS)
    fit(module, [callback, probe])
    history = callback.tuner.history
    actions = [record["action"] for record in history]
    assert {"restore_initial", "save_best", "restore_best"} <= set(actions)  # the scenario restores
    # the tuner saw the epoch means that training_step logged
    assert [r["loss"] for r in history] == pytest.approx(module.epoch_means(), rel=1e-6)
    # the LR each epoch trained with is what Algorithm 1 gives for those losses
    policy = AALRPolicy(initial_loss=callback.tuner.policy.initial_loss, config=AALRConfig(**SETTINGS))
    expected = [4.0]
    for record in history[:-1]:
        expected.append(math.ldexp(4.0, policy.step(record["loss"]).lr_exponent))
    assert probe.lrs == expected
    assert [r["lr"] for r in history] == expected
    # restores put back the initial weights, or the weights of the last checkpointed epoch
    # (probe.weights[e] is what epoch e+1 starts from: the weights after epoch e's decision)
    best = None
    for epoch, action in enumerate(actions[:-1], start=1):
        if action == "save_best":
            best = probe.weights[epoch]
        if action == "restore_initial":
            assert_same_state(probe.weights[epoch], probe.weights[0])
        if action == "restore_best":
            assert best is not None
            assert_same_state(probe.weights[epoch], best)


@pytest.mark.parametrize(
    "module",
    [Tiny(metric=None), Tiny(on_epoch=False)],
    ids=["nothing-logged", "logged-per-step-only"],
)
def test_the_default_steps_on_the_mean_of_training_steps_losses_whatever_is_logged(module):
    callback = AALRCallback(compute_initial_loss=True, **SETTINGS)
    fit(module, [callback], epochs=6)
    assert [r["loss"] for r in callback.tuner.history] == pytest.approx(module.epoch_means(), rel=1e-6)


def test_a_monitored_metric_logged_per_step_only_is_the_last_batch():
    # why monitor=None is the default: Lightning keeps only the last step's value of such a metric
    module, callback = Tiny(lr=0.5, on_epoch=False), AALRCallback(monitor="train_loss", **SETTINGS)
    fit(module, [callback], epochs=3)
    losses = [r["loss"] for r in callback.tuner.history]
    assert all(
        loss != pytest.approx(mean, rel=1e-3) for loss, mean in zip(losses, module.epoch_means(), strict=True)
    )


def test_gradient_accumulation_does_not_shrink_the_epoch_loss():
    # Lightning hands callbacks the loss divided by accumulate_grad_batches; the callback undoes that
    module, callback = Tiny(lr=1.0, metric=None), AALRCallback(compute_initial_loss=True, **SETTINGS)
    fit(module, [callback], epochs=4, accumulate_grad_batches=2)
    assert [r["loss"] for r in callback.tuner.history] == pytest.approx(module.epoch_means(), rel=1e-6)


def test_restores_bring_back_weights_and_optimizer_exactly():
    """Two phase-1 restarts from eta0=4 leave the run at LR 1 with the initial weights and a fresh
    optimizer: from there it must repeat, bit for bit, a run that started at LR 1."""
    fast = AALRCallback(compute_initial_loss=True, phase1_patience=2)
    slow = AALRCallback(compute_initial_loss=True, phase1_patience=2)
    fit(Tiny(lr=4.0), [fast], epochs=8)
    fit(Tiny(lr=1.0), [slow], epochs=6)
    assert [r["action"] for r in fast.tuner.history[:2]] == ["restore_initial", "restore_initial"]
    assert [r["loss"] for r in fast.tuner.history[2:]] == [r["loss"] for r in slow.tuner.history]


def test_compute_initial_loss_is_the_mean_loss_of_the_initial_model():
    module = Tiny()
    x, y = loader().dataset.tensors
    with torch.no_grad():
        reference = F.cross_entropy(module.net(x), y).item()
    callback = AALRCallback(compute_initial_loss=True)
    fit(module, [callback], epochs=1)
    assert callback.tuner.policy.initial_loss == pytest.approx(reference, rel=1e-6)
    assert len(module.sums) == 1  # the measuring pass was not counted (nor logged) as training


@pytest.mark.parametrize("resume_after", [1, 6])
def test_resume_from_a_lightning_checkpoint_equals_an_uninterrupted_run(tmp_path, resume_after):
    full_module, full_probe, full = Tiny(), Probe(), AALRCallback(compute_initial_loss=True, **SETTINGS)
    fit(full_module, [full, full_probe], checkpoint_dir=tmp_path)
    later = [r["action"] for r in full.tuner.history[resume_after:]]
    assert any(action.startswith("restore") for action in later)  # a restore after the resume point
    checkpoint = tmp_path / f"e{resume_after - 1}.ckpt"
    saved = torch.load(checkpoint, weights_only=True)  # plain: no pickled objects
    assert any("AALRCallback" in key for key in saved["callbacks"])

    module, probe, resumed = Tiny(), Probe(), AALRCallback(compute_initial_loss=True, **SETTINGS)
    fit(module, [resumed, probe], ckpt_path=checkpoint)
    assert probe.lrs == full_probe.lrs[resume_after:]
    assert resumed.tuner.history == full.tuner.history
    assert_same_state(module.state_dict(), full_module.state_dict())


def test_callback_state_round_trips_through_weights_only_load(tmp_path):
    callback = AALRCallback(compute_initial_loss=True, **SETTINGS)
    fit(Tiny(), [callback], epochs=3)
    torch.save(callback.state_dict(), tmp_path / "state.pt")
    fresh = AALRCallback(**SETTINGS)
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert fresh.state_dict()["tuner"]["history"] == callback.tuner.history
    assert AALRCallback().state_dict() == {}


class Manual(Tiny):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizers = self.optimizers()
        first = optimizers[0] if isinstance(optimizers, list) else optimizers
        loss = F.cross_entropy(self.net(batch[0]), batch[1])
        first.zero_grad()
        self.manual_backward(loss)
        first.step()
        self.log("train_loss", loss, on_epoch=True)


class TwoOptimizers(Manual):
    def configure_optimizers(self):
        return [torch.optim.SGD(self.net[0].parameters(), lr=0.1), torch.optim.SGD(self.net[2].parameters())]


class WithScheduler(Tiny):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}


@pytest.mark.parametrize(
    "module, callback, match",
    [
        (
            Tiny(metric="loss"),
            AALRCallback(monitor="train_loss"),
            r"'train_loss' is not among the logged metrics \['loss'\]",
        ),
        (Manual(), AALRCallback(), "training_step returned no loss this epoch"),
        (TwoOptimizers(), AALRCallback(), "tunes one optimizer; configure_optimizers returned 2"),
        (WithScheduler(), AALRCallback(), r"LR schedulers \['StepLR'\]"),
        (Manual(), AALRCallback(compute_initial_loss=True), "needs automatic optimization"),
    ],
    ids=["missing-metric", "manual-no-loss", "two-optimizers", "scheduler", "manual-optimization"],
)
def test_bad_setups_fail_with_a_clear_error(module, callback, match):
    with pytest.raises(ValueError, match=match):
        fit(module, [callback], epochs=1)


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"monitor": ""}, TypeError, "monitor must be None .* or the name of a logged metric"),
        ({"monitor": 3}, TypeError, "monitor must be None .*, got 3"),
        ({"initial_loss": float("nan")}, ValueError, "initial_loss must be finite"),
        ({"initial_loss": 1.0, "compute_initial_loss": True}, ValueError, "not both"),
        ({"compute_initial_loss": "yes"}, TypeError, "compute_initial_loss must be True or False"),
        ({"phase1_patience": 0}, ValueError, "phase1_patience must be >= 1"),
        ({"window": "q"}, ValueError, "window must be one of"),
        ({"total_epochs": 0}, ValueError, "total_epochs must be None or an integer >= 1, got 0"),
        (
            {"total_epochs": "max"},
            ValueError,
            r"total_epochs must be None, an int >= 1 or 'max_epochs' \(the Trainer's\), got 'max'",
        ),
        ({"phase1_failure": "x"}, ValueError, "phase1_failure must be one of"),
    ],
)
def test_constructor_errors(options, error, match):
    with pytest.raises(error, match=match):
        AALRCallback(**options)


def test_aalr_plus_takes_the_budget_from_max_epochs():
    options = {"phase1_patience": 2, "rollback": True, "phase1_failure": "rollback"}
    callback = AALRCallback(compute_initial_loss=True, total_epochs="max_epochs", **options)
    fit(Tiny(lr=1.0), [callback], epochs=8)
    tuner = callback.tuner
    assert tuner.config.total_epochs == 8 and tuner.config.phase1_failure == "rollback"
    assert tuner.policy.finish_epoch == 4  # the cosine finish: half of 8
    lrs = [record["lr"] for record in tuner.history]
    assert lrs[-1] < lrs[3]  # the finish lowered the LR
    assert "AALR+ finish" in tuner.history[3]["reason"]


def test_total_epochs_max_epochs_needs_a_finite_budget():
    callback = AALRCallback(total_epochs="max_epochs")
    with pytest.raises(ValueError, match=r"needs the Trainer's max_epochs >= 1, got -1"):
        fit(Tiny(), [callback], epochs=-1, max_steps=2)


class GrabMidEpoch(pl.Callback):
    """Takes the AALR callback's state after the second batch of the second epoch."""

    def __init__(self, callback: AALRCallback) -> None:
        self.callback, self.state = callback, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == 1 and batch_idx == 1:
            self.state = self.callback.state_dict()


def test_a_mid_epoch_state_carries_the_epochs_loss_so_far(tmp_path):
    module, callback = Tiny(lr=1.0, metric=None), AALRCallback(compute_initial_loss=True, **SETTINGS)
    grab = GrabMidEpoch(callback)
    fit(module, [callback, grab], epochs=2)
    totals, epoch = grab.state["epoch_loss_totals"], grab.state["epoch_loss_epoch"]
    assert epoch == 1 and totals[1] == 32  # two batches of 16
    torch.save(grab.state, tmp_path / "mid.pt")
    fresh = AALRCallback(**SETTINGS)
    fresh.load_state_dict(torch.load(tmp_path / "mid.pt", weights_only=True))
    assert fresh.state_dict()["epoch_loss_totals"] == totals
    # the sum goes on in the epoch it belongs to, and is dropped in any other
    trainer = types.SimpleNamespace(current_epoch=1, accumulate_grad_batches=1)
    batch = (torch.zeros(16, 4), torch.zeros(16, dtype=torch.long))
    fresh.on_train_batch_end(trainer, module, {"loss": torch.tensor(2.0)}, batch, 2)
    assert fresh.state_dict()["epoch_loss_totals"] == pytest.approx([totals[0] + 32.0, 48])
    fresh.load_state_dict(torch.load(tmp_path / "mid.pt", weights_only=True))
    trainer.current_epoch = 2
    fresh.on_train_batch_end(trainer, module, {"loss": torch.tensor(2.0)}, batch, 0)
    assert (
        fresh.state_dict()["epoch_loss_totals"] == [32.0, 16] and fresh.state_dict()["epoch_loss_epoch"] == 2
    )
    with pytest.raises(
        ValueError, match=r"epoch_loss_totals must be \[loss sum, sample count\], got \[1.0\]"
    ):
        fresh.load_state_dict({**grab.state, "epoch_loss_totals": [1.0]})


@pytest.mark.parametrize("every", [3, 4])  # 4: every checkpoint lands on an epoch's last batch
def test_resume_from_checkpoints_saved_between_batches_equals_an_uninterrupted_run(tmp_path, every):
    def checkpoints(folder):
        return pl.callbacks.ModelCheckpoint(
            dirpath=folder, filename="s{step}", auto_insert_metric_name=False, save_top_k=-1,
            every_n_train_steps=every,
        )  # fmt: skip

    full_module, full = Tiny(metric=None), AALRCallback(compute_initial_loss=True, **SETTINGS)
    fit(full_module, [full, checkpoints(tmp_path)], epochs=6)
    # step 8 (every=4) ends epoch 2 before that epoch's end; step 9 (every=3) is mid-epoch 3, whose
    # first batch was trained before the save: in both, a restart of the data loader would repeat or
    # skip batches, so only a step that ends an epoch is compared here
    step = 8 if every == 4 else 12
    module, resumed = Tiny(metric=None), AALRCallback(compute_initial_loss=True, **SETTINGS)
    fit(module, [resumed], epochs=6, ckpt_path=tmp_path / f"s{step}.ckpt")
    assert resumed.tuner.history == full.tuner.history
    assert_same_state(module.state_dict(), full_module.state_dict())


def test_a_checkpoint_carries_the_sum_over_all_ranks_and_adds_it_once():
    # two ranks simulated: the strategy's reduce doubles (each rank holds the same local sum here)
    callback = AALRCallback(**SETTINGS)
    module = Tiny()
    callback.tuner = AALR(module, torch.optim.SGD(module.parameters(), lr=0.1), phase1_patience=2)
    strategy = types.SimpleNamespace(reduce=lambda t, reduce_op: t.mul_(2))  # in place, as DDP's all_reduce
    trainer = types.SimpleNamespace(current_epoch=3, accumulate_grad_batches=1, strategy=strategy)
    batch = (torch.zeros(16, 4), torch.zeros(16, dtype=torch.long))
    callback.on_train_batch_end(trainer, module, {"loss": torch.tensor(1.5)}, batch, 0)
    checkpoint = {"callbacks": {callback.state_key: callback.state_dict()}}
    assert checkpoint["callbacks"][callback.state_key]["epoch_loss_totals"] == [24.0, 16.0]  # this rank's
    callback.on_save_checkpoint(trainer, module, checkpoint)
    state = checkpoint["callbacks"][callback.state_key]
    assert state["epoch_loss_totals"] == [48.0, 32.0] and state["epoch_loss_epoch"] == 3  # both ranks'
    assert state["epoch_loss_tuner_epoch"] == 0
    assert callback._epoch_totals.tolist() == [24.0, 16.0]  # saving left this rank's own sum alone
    resumed = AALRCallback(**SETTINGS)
    resumed.load_state_dict(state)
    resumed.tuner = callback.tuner
    resumed.on_train_batch_end(trainer, module, {"loss": torch.tensor(0.5)}, batch, 1)
    # after the resume each rank trains one more batch of 16 at loss 0.5: (48 + 2 * 8) / (32 + 2 * 16)
    assert resumed._global_totals(trainer, module) == (64.0, 64.0)


def test_a_batch_without_a_loss_still_marks_the_epoch_as_begun():
    # on_save_checkpoint reduces over ranks when the epoch has begun: every rank must agree on that, also
    # a rank whose training_step returned None for its batch (manual optimization allows it under DDP)
    callback, module = AALRCallback(**SETTINGS), Tiny()
    trainer = types.SimpleNamespace(current_epoch=2, accumulate_grad_batches=1)
    callback.on_train_batch_end(trainer, module, {}, (torch.zeros(16, 4),), 0)
    assert callback._mid_epoch(trainer) and callback._epoch_totals.tolist() == [0.0, 0.0]


def test_the_owed_step_follows_the_tuners_own_epoch_count():
    # AALR joined a run late: Lightning is at epoch 4, the tuner has taken 1 step; the checkpoint was saved
    # after epoch 3's last batch, with the tuner at 1 step: the step is owed
    module = Tiny()
    callback = AALRCallback(**SETTINGS)
    state = {
        "tuner": {},
        "epoch_loss_totals": [32.0, 16.0],
        "epoch_loss_epoch": 3,
        "epoch_loss_tuner_epoch": 1,
    }
    callback.load_state_dict(state)
    callback.tuner = AALR(module, torch.optim.SGD(module.parameters(), lr=0.1), initial_loss=3.0, **SETTINGS)
    callback.tuner.step(2.5)
    callback._step_a_finished_epoch_from_the_checkpoint(types.SimpleNamespace(current_epoch=4))
    assert [r["loss"] for r in callback.tuner.history] == [2.5, 2.0]
    callback.load_state_dict({**state, "tuner": callback.tuner.state_dict()})  # 2 steps: stepped already
    callback._step_a_finished_epoch_from_the_checkpoint(types.SimpleNamespace(current_epoch=4))
    assert len(callback.tuner.history) == 2


def test_a_callback_reused_to_resume_keeps_the_checkpoints_state(tmp_path):
    module, callback = Tiny(), AALRCallback(compute_initial_loss=True, **SETTINGS)
    fit(module, [callback], checkpoint_dir=tmp_path)
    full = [dict(record) for record in callback.tuner.history]
    fit(Tiny(), [callback], ckpt_path=tmp_path / "e5.ckpt")  # the same instance resumes
    assert callback.tuner.history == full


def test_batch_size_from_training_step_or_a_clear_error():
    from aalr.lightning import _batch_size

    assert _batch_size((torch.zeros(16, 4),), {"loss": torch.tensor(1.0), "batch_size": 5}) == 5
    with pytest.raises(ValueError, match=r"batch_size=0; it must be an int >= 1"):
        _batch_size((torch.zeros(16, 4),), {"loss": torch.tensor(1.0), "batch_size": 0})
    with pytest.raises(ValueError, match=r"cannot tell the batch size of a dict batch .*'batch_size': n"):
        _batch_size({"text": ["a", "b"]})


def test_load_state_dict_error():
    with pytest.raises(ValueError, match="must be a dict with key 'tuner'"):
        AALRCallback().load_state_dict({"other": 1})


def test_import_aalr_does_not_import_lightning():
    code = "import sys, aalr; print(sorted(m for m in sys.modules if 'lightning' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def load_copy_of_aalr_lightning():
    spec = importlib.util.spec_from_file_location("aalr_lightning_copy", aalr.lightning.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_falls_back_to_pytorch_lightning(monkeypatch):
    pytorch_lightning = pytest.importorskip("pytorch_lightning", reason="pytorch_lightning is not installed")
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)  # makes `import lightning.pytorch` fail
    copy = load_copy_of_aalr_lightning()
    assert copy.pl is pytorch_lightning
    assert issubclass(copy.AALRCallback, pytorch_lightning.Callback)


def test_without_lightning_the_import_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.setitem(sys.modules, "pytorch_lightning", None)
    with pytest.raises(ImportError, match=r"pip install 'aalr\[lightning\]'"):
        load_copy_of_aalr_lightning()


class DumpHistory(pl.Callback):
    def __init__(self, callback: AALRCallback, folder: Path, probe: StepProbe | None = None) -> None:
        self.callback, self.folder, self.probe = callback, folder, probe

    def on_train_end(self, trainer, pl_module) -> None:
        weights = [p.detach().tolist() for p in pl_module.parameters()]
        record = {"history": self.callback.tuner.history, "weights": weights, "sums": pl_module.sums}
        if self.probe is not None:  # step mode: what this rank's tuner observed, before averaging
            record["observed"] = self.probe.observed
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
        trainer.strategy.barrier()  # no rank leaves (closing its gloo links) while the other still writes
        # Lightning destroys only NCCL process groups at exit; a gloo one torn down by the interpreter's
        # finalization sometimes aborts the worker ("terminate called without an active exception")
        atexit.register(torch.distributed.destroy_process_group)


@pytest.mark.slow
def test_ddp_ranks_logging_different_losses_take_the_same_decisions(tmp_path):
    """Two gloo ranks, each logging its own loss (skewed apart, no sync_dist): the tuner averages them,
    so both ranks restore and set LRs alike and end with the same weights."""
    callback = AALRCallback(monitor="train_loss", compute_initial_loss=True, phase1_patience=2, rules="paper")
    fit(
        Tiny(lr=4.0, rank_skew=0.2),
        [callback, DumpHistory(callback, tmp_path)],
        epochs=6,
        devices=2,
        strategy="ddp_spawn",
    )
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["weights"] == rank1["weights"]
    assert "restore_initial" in [r["action"] for r in rank0["history"]]
    for mine, theirs in zip(rank0["history"], rank1["history"], strict=True):
        assert mine["local_loss"] != theirs["local_loss"]
        assert (
            mine["loss"] == theirs["loss"] == pytest.approx((mine["local_loss"] + theirs["local_loss"]) / 2)
        )
        assert {k: v for k, v in mine.items() if k != "local_loss"} == {
            k: v for k, v in theirs.items() if k != "local_loss"
        }


@pytest.mark.slow
def test_ddp_ranks_step_on_the_mean_loss_over_all_ranks(tmp_path):
    """monitor=None under DDP: each rank sums its own batches; the tuner sees the mean over both."""
    callback = AALRCallback(compute_initial_loss=True, phase1_patience=2)
    # a checkpoint after every step, mid-epoch too: saving must not change the sums
    checkpoints = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1
    )
    fit(
        Tiny(lr=4.0),
        [callback, DumpHistory(callback, tmp_path), checkpoints],
        epochs=4,
        devices=2,
        strategy="ddp_spawn",
    )
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["history"] == rank1["history"] and rank0["weights"] == rank1["weights"]
    for record, (sum0, n0), (sum1, n1) in zip(rank0["history"], rank0["sums"], rank1["sums"], strict=True):
        assert sum0 / n0 != pytest.approx(sum1 / n1)  # the ranks saw different data
        assert record["loss"] == pytest.approx((sum0 + sum1) / (n0 + n1), rel=1e-6)


class ManualSkipping(Manual):
    """Manual optimization that returns its loss, except rank 0 for each epoch's first batch."""

    def training_step(self, batch, batch_idx):
        super().training_step(batch, batch_idx)  # trains (every rank takes part in the gradient sync)
        loss = F.cross_entropy(self.net(batch[0]), batch[1]).detach()
        return None if (self.global_rank == 0 and batch_idx == 0) else loss


@pytest.mark.slow
def test_ddp_a_rank_without_a_loss_for_a_batch_does_not_stall_a_checkpoint(tmp_path):
    # on_save_checkpoint reduces over ranks mid-epoch; a rank that skipped its batch must join in, or the
    # other waits for ever (here: until the 60 s timeout, which fails the test)
    from datetime import timedelta

    callback = AALRCallback(initial_loss=1.2, phase1_patience=2)
    checkpoints = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1
    )
    strategy = pl.strategies.DDPStrategy(start_method="spawn", timeout=timedelta(seconds=60))
    fit(ManualSkipping(), [callback, DumpHistory(callback, tmp_path), checkpoints], epochs=2, devices=2,
        strategy=strategy)  # fmt: skip
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(rank0["history"]) == 2 and rank0["history"] == rank1["history"]


def test_decisions_go_through_log_dict_to_every_logger(tmp_path):
    callback = AALRCallback(compute_initial_loss=True, phase1_patience=2)
    trainer = pl.Trainer(
        max_epochs=5,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=pl.loggers.CSVLogger(tmp_path, name="csv"),
        callbacks=[callback],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Tiny(lr=4.0), loader())
    assert callback.tuner.config.phase1_failure == "rollback"  # the default rules: AALR+
    history = callback.tuner.history
    for key in ("aalr/lr", "aalr/phase"):
        assert key in trainer.progress_bar_metrics
    rows = list(csv.DictReader((Path(trainer.logger.log_dir) / "metrics.csv").open()))
    logged = [row for row in rows if row.get("aalr/lr")]
    assert [float(row["aalr/lr"]) for row in logged] == [r["next_lr"] for r in history]
    assert [float(row["aalr/best_loss"]) for row in logged] == pytest.approx([r["best"] for r in history])
    actions = [aalr.policy.ACTIONS[int(float(row["aalr/action"]))] for row in logged]
    assert actions == [r["action"] for r in history]
    assert {"restore_initial", "save_best"} <= set(actions)  # the run shows more than one kind of decision


def test_log_false_logs_nothing(tmp_path):
    callback = AALRCallback(compute_initial_loss=True, log=False)
    trainer = fit(Tiny(lr=1.0), [callback], epochs=2)
    assert not any(key.startswith("aalr/") for key in trainer.callback_metrics)


# -- interval="step": a decision every N optimizer steps ------------------------------------------------


class StepTiny(Tiny):
    """Tiny that keeps each training batch's loss; ``nan_at``: the loss of that optimizer step (1-based)
    is NaN (its gradients too, so the step ruins the weights and the momentum)."""

    def __init__(self, lr: float = 4.0, nan_at: int | None = None, **options) -> None:
        super().__init__(lr=lr, **options)
        self.nan_at = nan_at
        self.batch_losses: list[float] = []

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.nan_at is not None and self.global_step + 1 == self.nan_at:
            loss = loss * float("nan")
        if self.training:
            self.batch_losses.append(loss.item())
        self.log("both_loss", loss, on_step=True, on_epoch=True, batch_size=len(batch[0]))
        return loss


class StepProbe(pl.Callback):
    """Place it after the AALR callback. Per optimizer step: the LR it trained with, what the tuner observed
    (with the global step then), and the weights and optimizer state after the callback acted."""

    def __init__(self, callback: AALRCallback) -> None:
        self.callback = callback
        self.lrs: list[float] = []
        self.observed: list[tuple[int, float]] = []
        self.states: dict[int, dict] = {}
        self.start: dict | None = None  # the tuner's step-mode state when training started

    def on_train_start(self, trainer, pl_module) -> None:
        tuner = self.callback.tuner
        self.start = copy.deepcopy(tuner.state_dict()["steps"])
        observe = tuner.observe

        def spy(loss):
            self.observed.append((trainer.global_step, float(loss)))
            return observe(loss)

        tuner.observe = spy
        self._keep(trainer, pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step not in self.states:
            self._keep(trainer, pl_module)

    def _keep(self, trainer, pl_module) -> None:
        optimizer = trainer.optimizers[0].state_dict()["state"]
        self.states[trainer.global_step] = {
            "model": {k: v.clone() for k, v in pl_module.state_dict().items()},
            "optimizer": {i: {k: v.clone() for k, v in s.items()} for i, s in optimizer.items()},
        }


def step_callback(**options) -> AALRCallback:
    return AALRCallback(interval="step", compute_initial_loss=True, **{**SETTINGS, **options})


def assert_restores_match_the_snapshots(history: list[dict], probe: StepProbe) -> None:
    """After a restore the weights and optimizer state are the initial ones, or those right after the
    step whose decision took the best checkpoint."""
    best = None
    for record in history:
        after = probe.states[record["last_step"]]
        if record["action"] == "save_best":
            best = after
        if record["action"] == "restore_initial":
            assert_same_state(after["model"], probe.states[0]["model"])
            assert after["optimizer"] == {}  # the initial optimizer: no momentum yet
        if record["action"] == "restore_best":
            assert best is not None
            assert_same_state(after["model"], best["model"])
            assert after["optimizer"].keys() == best["optimizer"].keys()
            for index, state in after["optimizer"].items():
                assert_same_state(state, best["optimizer"][index])


def test_step_mode_decides_every_n_optimizer_steps_and_changes_the_lr_only_then():
    callback = step_callback(every_n_steps=3, spike_rollback=False)
    module, probe = StepTiny(lr=4.0, metric=None), StepProbe(callback)
    trainer = fit(module, [callback, probe], epochs=6)  # 24 steps, 4 an epoch: rounds span epochs
    history = callback.tuner.history
    assert trainer.global_step == callback.tuner.steps_seen == len(probe.lrs) == 24
    assert [r["last_step"] for r in history] == list(range(3, 25, 3))
    # the tuner saw each step's loss, once per step, and decided on the mean of the round's three
    assert [step for step, _ in probe.observed] == list(range(1, 25))
    assert [value for _, value in probe.observed] == pytest.approx(module.batch_losses, rel=1e-6)
    for record in history:
        last = record["last_step"]
        assert record["loss"] == pytest.approx(sum(module.batch_losses[last - 3 : last]) / 3, rel=1e-6)
    # the LR of each optimizer step is what the rules give for the rounds' losses, changed at round ends only
    policy = AALRPolicy(initial_loss=callback.tuner.policy.initial_loss, config=callback.tuner.config)
    expected, lr = [], 4.0
    for record in history:
        expected += [lr] * 3
        lr = math.ldexp(4.0, policy.step(record["loss"]).lr_exponent)
    assert probe.lrs == expected
    changes = [step for step in range(1, 24) if probe.lrs[step] != probe.lrs[step - 1]]
    assert changes and all(step % 3 == 0 for step in changes)
    actions = {r["action"] for r in history}
    assert {"restore_initial", "save_best"} <= actions and actions & {"restore_best", "none"}
    assert_restores_match_the_snapshots(history, probe)


@pytest.mark.parametrize("accumulate", [2, 3])  # 3: an epoch's 4 batches make steps of 3 and 1 batches
def test_step_mode_counts_optimizer_steps_and_averages_their_micro_batches(accumulate):
    callback = step_callback(every_n_steps=2, spike_rollback=False)
    module, probe = StepTiny(lr=1.0, metric=None), StepProbe(callback)
    trainer = fit(module, [callback, probe], epochs=4, accumulate_grad_batches=accumulate)
    assert trainer.global_step == callback.tuner.steps_seen == len(probe.lrs) == 8  # 2 an epoch, not 4
    assert [step for step, _ in probe.observed] == list(range(1, 9))
    assert [r["last_step"] for r in callback.tuner.history] == [2, 4, 6, 8]
    groups = [(0, 2), (2, 4)] if accumulate == 2 else [(0, 3), (3, 4)]
    losses = module.batch_losses
    means = [sum(losses[4 * e + a : 4 * e + b]) / (b - a) for e in range(4) for a, b in groups]
    # the loss each micro-batch trained on, not Lightning's loss / accumulate_grad_batches
    assert [value for _, value in probe.observed] == pytest.approx(means, rel=1e-6)


def test_step_mode_a_nan_loss_ends_the_round_and_restores_the_best_checkpoint_at_once():
    callback = step_callback(every_n_steps=4)
    module, probe = StepTiny(lr=1.0, metric=None, nan_at=15), StepProbe(callback)
    fit(module, [callback, probe], epochs=6)
    history = callback.tuner.history
    (record,) = [r for r in history if r["last_step"] == 15]
    assert math.isnan(record["loss"]) and record["steps"] == 3  # step 15 is the 3rd of the round of 13-16
    assert record["phase"] == 2 and record["action"] == "restore_best"
    assert record["next_lr"] == record["lr"] / 2
    saved = max(r["last_step"] for r in history if r["action"] == "save_best" and r["last_step"] < 15)
    assert_same_state(probe.states[15]["model"], probe.states[saved]["model"])
    assert all(torch.isfinite(v).all() for v in probe.states[15]["model"].values())
    assert_restores_match_the_snapshots(history, probe)
    # the next round has its four steps from there
    assert [r["last_step"] for r in history if r["last_step"] > 15][:2] == [19, 23]


def step_checkpoints(folder: Path, every: int):
    return pl.callbacks.ModelCheckpoint(
        dirpath=folder, filename="s{step}", auto_insert_metric_name=False, save_top_k=-1,
        every_n_train_steps=every,
    )  # fmt: skip


def callback_state(checkpoint: Path) -> dict:
    saved = torch.load(checkpoint, weights_only=True)  # plain: no pickled objects
    (state,) = [value for key, value in saved["callbacks"].items() if "AALRCallback" in key]
    return state


# a checkpoint at each epoch's end (4 batches: 4 optimizer steps, or 2 accumulating 2 batches); the steps
# resumed from are in the middle of a round of 3
@pytest.mark.parametrize("accumulate, step", [(1, 4), (1, 8), (2, 2)])
def test_step_mode_resume_at_an_epochs_end_equals_an_uninterrupted_run(tmp_path, accumulate, step):
    full_module, full = StepTiny(lr=4.0, metric=None), step_callback(every_n_steps=3)
    full_probe = StepProbe(full)
    every = 4 // accumulate
    checkpoints = step_checkpoints(tmp_path, every)
    fit(full_module, [full, full_probe, checkpoints], epochs=6, accumulate_grad_batches=accumulate)
    assert any(r["action"].startswith("restore") for r in full.tuner.history if r["last_step"] > step)
    state = callback_state(tmp_path / f"s{step}.ckpt")
    assert state["tuner"]["steps"]["steps_seen"] == step
    assert state["tuner"]["steps"]["round"]["steps"] == step % 3 > 0  # the round's losses so far ride along

    module, resumed = StepTiny(lr=4.0, metric=None), step_callback(every_n_steps=3)
    probe = StepProbe(resumed)
    fit(
        module,
        [resumed, probe],
        epochs=6,
        ckpt_path=tmp_path / f"s{step}.ckpt",
        accumulate_grad_batches=accumulate,
    )
    assert probe.start == state["tuner"]["steps"]
    assert probe.lrs == full_probe.lrs[step:]
    assert resumed.tuner.history == full.tuner.history
    assert_same_state(module.state_dict(), full_module.state_dict())


class GrabAtStep(pl.Callback):
    """Copies the AALR callback's state after the given optimizer step (place it after the callback)."""

    def __init__(self, callback: AALRCallback, step: int) -> None:
        self.callback, self.step, self.state = callback, step, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.state is None:
            self.state = copy.deepcopy(self.callback.state_dict())


def test_step_mode_a_mid_epoch_checkpoint_holds_the_tuners_state_and_a_resume_takes_it_up(tmp_path):
    callback = step_callback(every_n_steps=4)
    grab = GrabAtStep(callback, 9)
    fit(StepTiny(lr=1.0, metric=None), [callback, grab, step_checkpoints(tmp_path, 3)], epochs=4)
    state = callback_state(tmp_path / "s9.ckpt")  # after the first batch of the third epoch
    assert state.keys() == {"tuner"} and state["tuner"]["steps"] == grab.state["tuner"]["steps"]
    assert state["tuner"]["steps"]["round"]["steps"] == 1 and state["tuner"]["steps"]["steps_seen"] == 9
    assert state["tuner"]["history"] == grab.state["tuner"]["history"]
    fresh = step_callback(every_n_steps=4)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    # the resume goes on from that round (Lightning restarts the plain DataLoader's epoch: the batches differ
    # from the uninterrupted run's, so only the counting is compared)
    resumed = step_callback(every_n_steps=4)
    probe = StepProbe(resumed)
    trainer = fit(StepTiny(lr=1.0, metric=None), [resumed, probe], epochs=4, ckpt_path=tmp_path / "s9.ckpt")
    assert probe.start == state["tuner"]["steps"]
    assert resumed.tuner.history[: len(state["tuner"]["history"])] == state["tuner"]["history"]
    assert resumed.tuner.steps_seen == trainer.global_step > 9
    assert [step for step, _ in probe.observed] == list(range(10, trainer.global_step + 1))
    assert (
        resumed.tuner.history[len(state["tuner"]["history"])]["last_step"] == 12
    )  # 3 steps after the resume


@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("monitor", ["train_loss", "both_loss"])  # logged on_step only; on_step and on_epoch
def test_step_mode_monitor_reads_the_metric_as_logged_at_each_batch(monitor, accumulate):
    module = StepTiny(lr=1.0, on_epoch=False)  # logs train_loss with on_step=True only
    callback = AALRCallback(
        monitor=monitor, interval="step", every_n_steps=2, initial_loss=1.1, spike_rollback=False, **SETTINGS
    )
    probe = StepProbe(callback)
    fit(module, [callback, probe], epochs=3, accumulate_grad_batches=accumulate)
    losses = module.batch_losses
    means = [sum(losses[i : i + accumulate]) / accumulate for i in range(0, len(losses), accumulate)]
    assert [value for _, value in probe.observed] == pytest.approx(means, rel=1e-6)
    assert len(callback.tuner.history) == len(means) // 2


class LogsEveryOtherBatch(Tiny):
    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self.net(batch[0]), batch[1])
        if batch_idx % 2 == 0:
            self.log("train_loss", loss, on_step=True, on_epoch=False)
        return loss


@pytest.mark.parametrize(
    "module, match",
    [
        (Tiny(on_epoch=True), r"'train_loss' is not among the logged metrics \[\]; with interval='step' log"),
        (LogsEveryOtherBatch(), r"'train_loss' was not logged at this batch \(global step 2\)"),
    ],
    ids=["logged-per-epoch", "logged-every-other-batch"],
)
def test_step_mode_monitor_refuses_a_metric_not_logged_at_every_batch(module, match):
    callback = AALRCallback(monitor="train_loss", interval="step", every_n_steps=2, initial_loss=1.1)
    with pytest.raises(ValueError, match=match):
        fit(module, [callback], epochs=2)


def test_step_mode_logs_the_tuners_state_at_every_optimizer_step(tmp_path):
    callback = step_callback(every_n_steps=3)
    probe = StepProbe(callback)
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=pl.loggers.CSVLogger(tmp_path, name="csv"),
        log_every_n_steps=1,
        callbacks=[callback, probe],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(StepTiny(lr=4.0, metric=None), loader())
    history = callback.tuner.history
    assert {"restore_initial", "save_best"} <= {r["action"] for r in history}
    rows = list(csv.DictReader((Path(trainer.logger.log_dir) / "metrics.csv").open()))
    rows = [row for row in rows if row.get("aalr/lr")]
    assert [int(row["step"]) for row in rows] == list(range(12))  # Lightning's row of optimizer step s + 1
    # the LR the next step trains with
    assert [float(row["aalr/lr"]) for row in rows] == [*probe.lrs[1:], callback.tuner.lr]
    # the state after the last decision so far: its action, the best loss and the phase it left
    phase_after = [*(r["phase"] for r in history[1:]), callback.tuner.phase]
    for index, row in enumerate(rows):
        decided = [i for i, r in enumerate(history) if r["last_step"] <= index + 1]
        if not decided:  # before the first decision: no action yet, L* is the initial loss
            assert row["aalr/action"] == "" and float(row["aalr/phase"]) == 1
            assert float(row["aalr/best_loss"]) == pytest.approx(callback.tuner.policy.initial_loss, rel=1e-6)
            continue
        last = decided[-1]
        assert aalr.policy.ACTIONS[int(float(row["aalr/action"]))] == history[last]["action"]
        assert float(row["aalr/best_loss"]) == pytest.approx(history[last]["best"], rel=1e-6)
        assert float(row["aalr/phase"]) == phase_after[last]
    for key in ("aalr/lr", "aalr/phase"):
        assert key in trainer.progress_bar_metrics


class ManualReturning(Manual):
    """Manual optimization, one optimizer step a batch, returning the batch's loss after the step."""

    def training_step(self, batch, batch_idx):
        super().training_step(batch, batch_idx)
        return F.cross_entropy(self.net(batch[0]), batch[1]).detach()


def test_step_mode_with_manual_optimization_counts_its_optimizer_steps():
    callback = AALRCallback(
        interval="step", every_n_steps=3, initial_loss=1.1, spike_rollback=False, **SETTINGS
    )
    probe = StepProbe(callback)
    trainer = fit(ManualReturning(), [callback, probe], epochs=3)
    assert trainer.global_step == callback.tuner.steps_seen == len(probe.observed) == 12
    assert [r["last_step"] for r in callback.tuner.history] == [3, 6, 9, 12]


def test_step_mode_without_a_loss_for_a_step_fails_naming_it():
    callback = AALRCallback(interval="step", every_n_steps=3, initial_loss=1.1)
    with pytest.raises(
        ValueError, match=r"training_step returned no loss for the batches of optimizer step 1"
    ):
        fit(Manual(), [callback], epochs=1)  # logs its loss, returns nothing


@pytest.mark.parametrize(
    "options, rounds",
    [({"total_steps": "max_steps"}, 8), ({"total_steps": 12}, 4), ({"total_rounds": 5}, 5)],
)
def test_step_mode_budget_in_optimizer_steps_or_rounds(options, rounds):
    callback = step_callback(every_n_steps=3, phase1_failure="rollback", **options)
    fit(StepTiny(lr=1.0, metric=None), [callback], epochs=-1, max_steps=24)
    tuner = callback.tuner
    assert tuner.config.total_epochs == rounds and tuner.policy.finish_epoch == math.ceil(0.5 * rounds)
    finish = tuner.history[tuner.policy.finish_epoch - 1]
    assert "AALR+ finish" in finish["reason"]


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"interval": "batch"}, ValueError, r"interval must be 'epoch' .* or 'step' .*, got 'batch'"),
        ({"every_n_steps": 5}, ValueError, r"every_n_steps=5 is for interval='step'"),
        ({"total_steps": 100}, ValueError, r"total_steps=100 is for interval='step'"),
        ({"interval": "step"}, ValueError, r"interval='step' needs every_n_steps=N"),
        ({"interval": "step", "every_n_steps": 0}, ValueError, r"every_n_steps must be >= 1, got 0"),
        ({"interval": "step", "every_n_steps": "3"}, TypeError, r"every_n_steps must be an int >= 1 .*'3'"),
        (
            {"interval": "step", "every_n_steps": 3, "total_epochs": 10},
            ValueError,
            r"pass total_steps .* or total_rounds, not total_epochs=10",
        ),
        (
            {"interval": "step", "every_n_steps": 3, "total_steps": "max"},
            ValueError,
            r"total_steps must be None, an int >= every_n_steps or 'max_steps' \(the Trainer's\), got 'max'",
        ),
        (
            {"interval": "step", "every_n_steps": 3, "total_steps": 2},
            ValueError,
            r"total_steps \(2\) must be at least every_n_steps \(3\)",
        ),
        (
            {"interval": "step", "every_n_steps": 3, "total_steps": "max_steps", "total_rounds": 4},
            ValueError,
            r"give one budget, total_steps='max_steps' or total_rounds=4, not both",
        ),
    ],
)
def test_step_mode_constructor_errors(options, error, match):
    with pytest.raises(error, match=match):
        AALRCallback(**options)


def test_step_mode_takes_numpy_integers_as_the_tuner_does():
    # found by the hostile sweep of the integrations: an AssertionError, where AALR itself takes them
    np = pytest.importorskip("numpy")
    callback = AALRCallback(
        interval="step", every_n_steps=np.int64(4), total_steps=np.int64(8), initial_loss=1.2
    )
    fit(StepTiny(metric=None), [callback], epochs=2)  # 8 optimizer steps
    assert [record["last_step"] for record in callback.tuner.history] == [4, 8]
    assert callback.tuner.config.total_epochs == 2


def test_total_steps_max_steps_needs_a_bounded_trainer():
    callback = AALRCallback(interval="step", every_n_steps=2, total_steps="max_steps")
    with pytest.raises(
        ValueError, match=r"needs the Trainer's max_steps >= 1, got -1 .*Trainer\(max_steps=N\)"
    ):
        fit(Tiny(), [callback], epochs=1)


def test_a_step_mode_checkpoint_is_refused_by_an_epoch_mode_callback(tmp_path):
    fit(
        StepTiny(lr=1.0, metric=None),
        [step_callback(every_n_steps=2), step_checkpoints(tmp_path, 4)],
        epochs=1,
    )
    with pytest.raises(ValueError, match=r"decides every N steps; this one was made without"):
        fit(Tiny(), [AALRCallback(**SETTINGS)], epochs=2, ckpt_path=tmp_path / "s4.ckpt")


@pytest.mark.slow
def test_ddp_step_mode_ranks_take_the_same_decisions_at_the_same_steps(tmp_path):
    """Two gloo ranks, each on its own half of the data: the tuner averages every step's loss over them, so
    both end each round, restore and set the LR at the same step, and end with the same weights."""
    callback = step_callback(every_n_steps=2)
    probe = StepProbe(callback)
    # a checkpoint after every step: saving must not need a collective, nor change what is observed
    checkpoints = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1
    )
    fit(
        StepTiny(lr=4.0, metric=None),
        [callback, probe, DumpHistory(callback, tmp_path, probe), checkpoints],
        epochs=6,
        devices=2,
        strategy="ddp_spawn",
    )
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["history"] == rank1["history"] and rank0["weights"] == rank1["weights"]
    assert any(r["action"].startswith("restore") for r in rank0["history"])
    steps = list(range(1, 13))  # 32 samples a rank, 2 batches an epoch, 6 epochs
    assert [s for s, _ in rank0["observed"]] == [s for s, _ in rank1["observed"]] == steps
    local0, local1 = ([value for _, value in rank["observed"]] for rank in (rank0, rank1))
    assert all(a != pytest.approx(b) for a, b in zip(local0, local1, strict=True))  # different losses
    for record in rank0["history"]:
        last, n = record["last_step"], record["steps"]
        mean = sum(local0[last - n : last]) / (2 * n) + sum(local1[last - n : last]) / (2 * n)
        assert record["loss"] == pytest.approx(mean, rel=1e-9)
