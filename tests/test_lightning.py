"""AALRCallback: the LR follows the rules for the logged losses, restores are exact, Lightning
checkpoints resume exactly (loaded with weights_only=True), bad settings fail clearly, DDP ranks agree."""

from __future__ import annotations

import atexit
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
            if batch_idx == 0:
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
    assert tuner.policy.finish_epoch == 6  # ceil(0.75 * 8)
    lrs = [record["lr"] for record in tuner.history]
    assert lrs[-1] < lrs[5]  # the finish lowered the LR
    assert "AALR+ finish" in tuner.history[5]["reason"]


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
    def __init__(self, callback: AALRCallback, folder: Path) -> None:
        self.callback, self.folder = callback, folder

    def on_train_end(self, trainer, pl_module) -> None:
        weights = [p.detach().tolist() for p in pl_module.parameters()]
        record = {"history": self.callback.tuner.history, "weights": weights, "sums": pl_module.sums}
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
