"""AALR for Lightning: a callback that steps the tuner on the epoch's training loss, or every N
optimizer steps (``interval="step"``).

Needs Lightning (``pip install 'aalr[lightning]'``): ``lightning.pytorch``, or ``pytorch_lightning``
when only that is installed. ``import aalr`` never imports this module.

Example::

    class Model(lightning.pytorch.LightningModule):
        def training_step(self, batch, batch_idx):
            loss = ...
            return loss  # the callback averages these over the epoch; no logging needed

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)  # no LR scheduler

    trainer = Trainer(max_epochs=100, callbacks=[AALRCallback(compute_initial_loss=True)])
    trainer.fit(Model(), train_loader)

    # or a decision every 500 optimizer steps, AALR+'s budget from max_steps:
    callback = AALRCallback(interval="step", every_n_steps=500, total_steps="max_steps", initial_loss=2.3)
    Trainer(max_steps=100_000, callbacks=[callback]).fit(Model(), train_loader)
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch

from aalr.policy import ACTIONS, check_loss_value
from aalr.rounds import Round
from aalr.tuner import AALR, _budget, as_loss, check_settings

try:
    import lightning.pytorch as pl
except ImportError:
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError as error:
        raise ImportError(
            "aalr.lightning needs Lightning: pip install 'aalr[lightning]' (or install pytorch_lightning)"
        ) from error


# the installed flavour's (lightning.pytorch or pytorch_lightning) helpers; looked up once, not every batch
_pl_data = importlib.import_module(pl.__name__ + ".utilities.data")

MAX_EPOCHS = "max_epochs"  # total_epochs="max_epochs": the Trainer's budget
MAX_STEPS = "max_steps"  # interval="step", total_steps="max_steps": the Trainer's budget
INTERVALS = ("epoch", "step")


class _Carried(NamedTuple):
    """An epoch's loss sum so far over all ranks, from a checkpoint saved before the epoch's end."""

    total: float
    samples: float
    epoch: int  # Lightning's current_epoch when it was saved
    tuner_epoch: int | None  # the tuner's epoch count then (None: a state saved before it was kept)


class AALRCallback(pl.Callback):
    """Sets the LR of the (single) optimizer with AALR once per training epoch, or every
    ``every_n_steps`` optimizer steps with ``interval="step"`` (see *Step mode* below).

    The tuner is built when training starts (``on_train_start``: the optimizer exists, and a
    resumed run has its weights and optimizer state back by then) on the LightningModule and its
    optimizer. At the end of each training epoch it steps on the epoch's training loss; a restore
    goes through the LightningModule's and the optimizer's ``load_state_dict``. A ``ModelCheckpoint``
    saving at the end of the training epoch (its default with validation once an epoch or none)
    saves after the step; one saving earlier (``every_n_train_steps``, ``val_check_interval < 1``)
    saves the epoch's loss sum so far instead, and a resume takes the step then (tested).

    The epoch's loss is, by default (``monitor=None``), the mean of the losses ``training_step``
    returned that epoch (automatic or manual optimization), weighted by batch size (Lightning's
    guess from the batch, or ``"batch_size"`` in a dict that training_step returns) and summed over
    all ranks (what the harness uses): no logging needed. Lightning hands callbacks that loss divided
    by ``accumulate_grad_batches``; the callback multiplies it back. A checkpoint saved in the middle
    of an epoch carries the sum so far over all ranks; a resume from it sees the whole epoch if the
    data loader resumes where it was (a plain ``DataLoader`` restarts, so Lightning repeats that
    epoch's first batches, and they count twice; Lightning warns of this). With ``monitor="name"``
    it reads ``trainer.callback_metrics[name]`` instead (another loss than the one returned, or a
    training_step that returns nothing); log that metric with ``on_epoch=True``: a metric logged per
    step only (Lightning's default in training_step) holds the last batch's value, which the callback
    cannot tell apart. With a monitored metric, a resume from a checkpoint saved before an epoch's end
    is not exact: Lightning does not restore the metric's epoch mean, so that epoch's step uses only
    the batches after the resume, or is lost when the save came after its last batch.

    Under DDP every rank takes the same decision (the tuner averages the value over ranks). The
    tuner's state rides in Lightning checkpoints (plain values and tensors: loads with
    ``weights_only=True``).

    Step mode (``interval="step", every_n_steps=N``): the tuner decides every N optimizer steps (a
    round, :meth:`aalr.AALR.observe`), across epoch boundaries. The callback feeds it in
    ``on_train_batch_end`` of each batch after which Lightning's ``global_step`` advanced (Lightning
    counts it once per optimizer step, after ``optimizer.step()`` returned: with
    ``accumulate_grad_batches=k``, every k batches and at each epoch's last batch); the loss is the
    mean over that step's micro-batches (unweighted, as Lightning's accumulated gradient weighs them;
    the division by ``accumulate_grad_batches`` undone). That hook runs between two optimizer steps
    (the next one zeroes the gradients first) and before a ``ModelCheckpoint`` saves at this step, so
    a restore there is safe and a checkpoint holds the state after it. A non-finite loss, or a spike,
    ends the round at once, acted on as a non-finite round (a restore, and half the LR).

    ``monitor="name"`` in step mode reads the metric as logged at that batch: log it in
    ``training_step`` at every batch with ``on_step=True``; a batch that did not log it is an error
    (Lightning would hand on an earlier batch's value). The budget is ``total_steps`` (an int, or
    ``"max_steps"``: the Trainer's) or ``total_rounds``. Under DDP the tuner averages every step's
    loss over the ranks, so they all end a round at the same step: training_step must give a loss at
    every batch on every rank (a rank without one raises, and the others wait for it until the
    process group's timeout).

    Resuming in step mode: the tuner's state, with the current round's losses so far, rides in the
    checkpoint. From a checkpoint saved at an epoch's last batch (``every_n_train_steps`` saves after
    the optimizer step) the resumed run's history and weights equal an uninterrupted run's (tested
    with saves in the middle of a round, with and without gradient accumulation). A checkpoint saved
    in the middle of an epoch restores the same tuner state (tested), but a plain ``DataLoader``
    restarts the epoch, so the batches trained after the resume are not an uninterrupted run's
    (Lightning warns); only a loader that resumes where it was can make that exact. A save between the
    micro-batches of one optimizer step (none of ``every_n_train_steps``' saves) does not hold their
    losses (Lightning saves no gradients either).

    Args:
        monitor: ``None`` (default): the batch-size-weighted mean of training_step's losses (see
            above); or the name of a logged training loss, logged with ``on_epoch=True`` (pass
            ``batch_size=`` to ``self.log`` when Lightning cannot tell it from the batch) and
            ``sync_dist=True`` under DDP; in step mode, logged with ``on_step=True`` at every batch.
        interval: ``"epoch"`` (default: a decision at each training epoch's end) or ``"step"`` (a
            decision every ``every_n_steps`` optimizer steps).
        every_n_steps: step mode's round, in optimizer steps (required with ``interval="step"``, refused
            without it).
        initial_loss: the training loss of the initial model (see :class:`aalr.AALR`); ``None``:
            unknown, unless ``compute_initial_loss``.
        compute_initial_loss: measure it when training starts: one pass over the train dataloader,
            in eval mode without gradients, averaging what ``training_step`` returns (weighted by
            batch size, over all ranks). Needs automatic optimization; its ``self.log`` calls are
            ignored during that pass.
        total_epochs: the epoch budget (see :class:`aalr.AALR`): an int, ``"max_epochs"`` (the
            Trainer's ``max_epochs``, read when training starts), or ``None`` (default: no budget, so
            no AALR+ finish). With the default rules, ``total_epochs="max_epochs"`` gives AALR+ as the
            harness's ``aalr-plus`` runs it. Epoch mode only.
        total_steps: step mode's budget in optimizer steps: an int (>= ``every_n_steps``), ``"max_steps"``
            (the Trainer's ``max_steps``, read when training starts; an unbounded Trainer is an error), or
            ``None`` (default). Or give ``total_rounds=R`` (a tuner option).
        log: log ``aalr/lr``, ``aalr/phase``, ``aalr/best_loss`` and ``aalr/action`` (the action's
            index in :data:`aalr.policy.ACTIONS`: 0 none, 1 save_best, 2 restore_initial, 3 restore_best)
            with ``log_dict`` at each epoch's end, so every logger (TensorBoard, CSV, ...) records
            them; ``aalr/lr`` and ``aalr/phase`` also go to the progress bar. Default True. In step
            mode they are logged with ``on_step=True`` at every optimizer step, as the state then: the
            LR of the next step, and the action of the last decision (from the first one on); loggers
            write step metrics every ``Trainer(log_every_n_steps=...)`` steps (default 50), so pass 1
            to record every decision there (``tuner.history`` always has them all, with ``last_step``).
        tuner_options: ``rules``, ``max_lr``, ``min_lr``, ``phase1_patience``, ``phase1_share``,
            ``window``, ``rollback``, ``rollback_on``, ``ceiling``, ``restart_best``, ``phase1_failure``,
            ``finish``, ``snapshot_dir``,
            ``sync_distributed``, ``verbose``, ``spike_rollback``, ``total_rounds``: as for
            :class:`aalr.AALR`.
    """

    def __init__(
        self,
        monitor: str | None = None,
        initial_loss: float | torch.Tensor | None = None,
        *,
        interval: str = "epoch",
        every_n_steps: int | None = None,
        compute_initial_loss: bool = False,
        total_epochs: int | str | None = None,
        total_steps: int | str | None = None,
        log: bool = True,
        **tuner_options: Any,
    ) -> None:
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise TypeError(
                f"monitor must be None (the mean of training_step's losses) or the name of a logged "
                f"metric (a non-empty str), got {monitor!r}"
            )
        for name, flag in (("compute_initial_loss", compute_initial_loss), ("log", log)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if compute_initial_loss and initial_loss is not None:
            raise ValueError(f"give initial_loss ({initial_loss!r}) or compute_initial_loss=True, not both")
        self.initial_loss = (
            None if initial_loss is None else check_loss_value(as_loss(initial_loss, "initial_loss"))
        )
        # Fails here, when the callback is made, rather than at the start of training.
        budget = _check_interval(interval, every_n_steps, total_epochs, total_steps, tuner_options)
        if isinstance(total_epochs, str) and total_epochs != MAX_EPOCHS:
            raise ValueError(
                f"total_epochs must be None, an int >= 1 or {MAX_EPOCHS!r} (the Trainer's), "
                f"got {total_epochs!r}"
            )
        if interval == "epoch":
            budget = None if isinstance(total_epochs, str) else total_epochs
        check_settings(total_epochs=budget, **tuner_options)
        self.interval = interval
        self.log_decisions = log
        self.monitor = monitor
        self.compute_initial_loss = compute_initial_loss
        self.tuner_options: dict[str, Any] = (
            {"total_epochs": total_epochs, **tuner_options}
            if interval == "epoch"
            else {"every_n_steps": every_n_steps, "total_steps": total_steps, **tuner_options}
        )
        self.tuner: AALR | None = None
        self._pending_state: dict[str, Any] | None = None  # from a checkpoint, before the tuner exists
        # monitor=None: this rank's (loss x batch size sum, sample count) so far of epoch _totals_epoch,
        # on the module's device; and (sum, count, epoch) over all ranks from a checkpoint
        self._epoch_totals: torch.Tensor | None = None
        self._totals_epoch = -1
        self._carried: _Carried | None = None
        self._step = _StepLoss()  # interval="step": the micro-batch losses of the current optimizer step

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # A callback reused for another fit starts clean: Lightning restores a checkpoint's state after
        # setup, into _pending_state, which on_train_start loads into the tuner it builds.
        if stage == "fit":
            self.tuner, self._pending_state = None, None
            self._epoch_totals, self._totals_epoch, self._carried = None, -1, None
            self._step = _StepLoss()

    # -- hooks ---------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = self._single_optimizer(trainer)
        initial_loss = self.initial_loss
        if self._pending_state is None and self.compute_initial_loss:
            initial_loss = training_set_loss(trainer, pl_module)
        options = dict(self.tuner_options)
        if self.interval == "step":
            options["total_steps"] = _trainer_max_steps(trainer, options["total_steps"])
        elif options["total_epochs"] == MAX_EPOCHS:
            max_epochs = trainer.max_epochs
            if max_epochs is None or max_epochs < 1:
                raise ValueError(
                    f"AALRCallback(total_epochs='max_epochs') needs the Trainer's max_epochs >= 1, got "
                    f"{max_epochs!r}; set Trainer(max_epochs=N) or pass total_epochs=N"
                )
            options["total_epochs"] = int(max_epochs)
        self.tuner = AALR(pl_module, optimizer, initial_loss=initial_loss, **options)
        if self._pending_state is not None:
            self.tuner.load_state_dict(self._pending_state)
            self._pending_state = None
        # a resumed run starts at the checkpoint's global step; the optimizer steps from here are counted
        self._step.last_global_step = trainer.global_step
        self._step_a_finished_epoch_from_the_checkpoint(trainer)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.interval == "step":
            self._observe_optimizer_step(trainer, pl_module, outputs)
            return
        if self.monitor is not None:
            return
        if self._epoch_totals is None or self._totals_epoch != trainer.current_epoch:
            # made on every rank at every batch, even one without a loss, so that on_save_checkpoint's
            # decision to reduce is the same on all ranks
            self._epoch_totals = _accumulator(pl_module.device)
            self._totals_epoch = trainer.current_epoch
        loss = _returned_loss(outputs)
        if loss is None:  # training_step skipped this batch (returned None)
            return
        size = _batch_size(batch, outputs)
        # Lightning divides the loss it hands on by accumulate_grad_batches (its documented behaviour)
        scale = size * trainer.accumulate_grad_batches if pl_module.automatic_optimization else size
        self._epoch_totals[0] += loss.to(self._epoch_totals) * scale  # stays on the device: no sync per batch
        self._epoch_totals[1] += size

    def _observe_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any
    ) -> None:
        """interval="step": add this batch's loss to its optimizer step's; once the optimizer has stepped,
        the tuner observes the mean over that step's micro-batches (and may restore, and set the LR)."""
        if self.tuner is None:
            raise RuntimeError("AALRCallback: a training batch ended before on_train_start built the tuner")
        loss: torch.Tensor | None
        if self.monitor is not None:
            loss = self._monitored_step_value(trainer)
        else:
            loss = _returned_loss(outputs)
            if loss is not None and pl_module.automatic_optimization:
                loss = loss * trainer.accumulate_grad_batches  # undo Lightning's division, as epoch mode does
        if loss is not None:
            self._step.add(loss, pl_module.device)
        # Lightning counts global_step once per optimizer step, after optimizer.step() returned: unchanged,
        # this batch was a micro-batch of gradient accumulation (or manual optimization did not step)
        if trainer.global_step == self._step.last_global_step:
            return
        self._step.last_global_step = trainer.global_step
        mean = self._step.take()
        if mean is None:
            raise ValueError(
                f"AALRCallback(interval='step'): training_step returned no loss for the batches of optimizer "
                f"step {trainer.global_step}; return the loss from training_step at every batch, or log it "
                "with self.log(name, loss, on_step=True) and pass monitor=name"
            )
        self.tuner.observe(mean)
        self._log_step(pl_module)

    def _monitored_step_value(self, trainer: pl.Trainer) -> torch.Tensor:
        """The monitored metric as logged at this batch. Lightning keeps a metric's last value until it
        is logged again, and each ``self.log`` stores a new tensor: one seen before was not logged now."""
        assert self.monitor is not None
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            raise ValueError(
                f"AALRCallback: the training loss {self.monitor!r} is not among the logged metrics "
                f"{sorted(metrics)}; with interval='step' log it in training_step at every batch with "
                f"self.log({self.monitor!r}, loss, on_step=True), or pass monitor=None (the returned loss)"
            )
        value = torch.as_tensor(metrics[self.monitor])
        last = self._step.last_monitored
        if last is not None and value.data_ptr() == last.data_ptr():
            raise ValueError(
                f"AALRCallback: {self.monitor!r} was not logged at this batch (global step "
                f"{trainer.global_step}): it holds an earlier batch's value; with interval='step' log it in "
                f"training_step at every batch with self.log({self.monitor!r}, loss, on_step=True)"
            )
        self._step.last_monitored = value
        return value.detach()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval == "step":
            return  # rounds are counted in optimizer steps, across epochs
        if self.tuner is None:
            raise RuntimeError("AALRCallback: the training epoch ended before on_train_start built the tuner")
        if self.monitor is None:
            total, count = self._global_totals(trainer, pl_module)
            self._epoch_totals, self._carried = None, None
            if count == 0:
                raise ValueError(
                    "AALRCallback: training_step returned no loss this epoch (it returned None for every "
                    "batch); return the loss from training_step (with manual optimization too), or log "
                    "it with self.log(name, loss, on_epoch=True) and pass monitor=name"
                )
            self._log(pl_module, self.tuner.step(total / count))
            return
        self._carried = None
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            raise ValueError(
                f"AALRCallback: the training loss {self.monitor!r} is not among the logged metrics "
                f"{sorted(metrics)}; log it in training_step with self.log({self.monitor!r}, loss, "
                f"on_epoch=True) (and sync_dist=True under DDP), or pass monitor=<its name>"
            )
        self._log(pl_module, self.tuner.step(metrics[self.monitor]))

    def _log(self, pl_module: pl.LightningModule, record: dict[str, Any]) -> None:
        if not self.log_decisions:
            return
        # every rank holds the same values (one decision on the all-reduced loss): no sync needed
        values = {"aalr/lr": record["next_lr"], "aalr/phase": float(self.tuner.phase if self.tuner else 0)}
        pl_module.log_dict(values, prog_bar=True, on_step=False, on_epoch=True)
        more = {"aalr/action": float(ACTIONS.index(record["action"]))}
        if record["best"] is not None:
            more["aalr/best_loss"] = float(record["best"])
        pl_module.log_dict(more, on_step=False, on_epoch=True)

    def _log_step(self, pl_module: pl.LightningModule) -> None:
        """interval="step": the tuner's state after every optimizer step. Lightning repeats a step metric
        in later steps' rows of the epoch until it is logged again, so logging at decisions only would
        show a stale value where a new epoch had cleared it: every step it is."""
        if not self.log_decisions or self.tuner is None:
            return
        tuner = self.tuner
        values = {"aalr/lr": tuner.lr, "aalr/phase": float(tuner.phase)}
        pl_module.log_dict(values, prog_bar=True, on_step=True, on_epoch=False)
        more = {}
        if tuner.best_loss is not None:
            more["aalr/best_loss"] = float(tuner.best_loss)
        if tuner.history:
            more["aalr/action"] = float(ACTIONS.index(tuner.history[-1]["action"]))
        if more:
            pl_module.log_dict(more, on_step=True, on_epoch=False)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # state_dict holds this rank's sum; Lightning writes rank 0's. In the middle of an epoch, put the
        # sum over all ranks in the checkpoint instead. Every rank runs this (trainer.save_checkpoint must
        # be called on all of them), and the condition is the same on every rank: no deadlock.
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if self.interval == "step":  # a step-mode state is the tuner's alone: nothing to add over ranks
            return
        if self.monitor is not None or state is None or not self._mid_epoch(trainer):
            return
        total, count = self._global_totals(trainer, pl_module)
        state["epoch_loss_totals"] = [total, count]
        state["epoch_loss_epoch"] = trainer.current_epoch
        if self.tuner is not None:
            state["epoch_loss_tuner_epoch"] = self.tuner.policy.epoch

    def _mid_epoch(self, trainer: pl.Trainer) -> bool:
        return self._epoch_totals is not None and self._totals_epoch == trainer.current_epoch

    def _global_totals(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[float, float]:
        """This epoch's (loss sum, sample count) over all ranks, with what a checkpoint carried in."""
        local = self._epoch_totals if self._mid_epoch(trainer) else None
        totals = trainer.strategy.reduce(  # every rank calls this; DDP's all_reduce works in place: a copy
            local.clone() if local is not None else _accumulator(pl_module.device), reduce_op="sum"
        )
        carried_total, carried_samples = self._carried_of(trainer.current_epoch)
        return float(totals[0].item()) + carried_total, float(totals[1].item()) + carried_samples

    def _carried_of(self, epoch: int) -> tuple[float, float]:
        """The (sum, sample count) a checkpoint carried in for ``epoch``; zeros for any other epoch."""
        if self._carried is None or self._carried.epoch != epoch:
            return 0.0, 0.0
        return self._carried.total, self._carried.samples

    def _step_a_finished_epoch_from_the_checkpoint(self, trainer: pl.Trainer) -> None:
        """A checkpoint saved after an epoch's last batch but before its end (``every_n_train_steps``
        landing there) holds that epoch's whole sum, and Lightning resumes with the next epoch without
        ending this one: take the step it missed. A sum of the epoch that resumes waits for its end."""
        carried, self._carried = self._carried, None
        if carried is None or self.tuner is None or self.monitor is not None or self.interval == "step":
            return
        # the tuner's own epoch count when the sum was saved (older states: Lightning's epoch, which equals
        # it unless AALR joined the run late)
        owed_at = carried.epoch if carried.tuner_epoch is None else carried.tuner_epoch
        if carried.epoch == trainer.current_epoch:
            self._carried = carried
        elif (
            carried.epoch < trainer.current_epoch
            and self.tuner.policy.epoch == owed_at
            and carried.samples > 0
        ):
            self.tuner.step(carried.total / carried.samples)

    # -- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The tuner's state (plain values and tensors), or a loaded one not yet used; and, saved in
        the middle of an epoch, the epoch's loss sum so far (in a Lightning checkpoint: over all ranks)."""
        state: dict[str, Any] = {}
        if self.tuner is not None:
            state["tuner"] = self.tuner.state_dict()
        elif self._pending_state is not None:
            state["tuner"] = self._pending_state
        if not state:
            return state
        tuner_epoch = None if self.tuner is None else self.tuner.policy.epoch
        if self._epoch_totals is not None:
            local_total, local_samples = self._epoch_totals.detach().cpu().tolist()
            carried_total, carried_samples = self._carried_of(self._totals_epoch)
            state["epoch_loss_totals"] = [local_total + carried_total, local_samples + carried_samples]
            state["epoch_loss_epoch"] = self._totals_epoch
        elif self._carried is not None:
            state["epoch_loss_totals"] = [self._carried.total, self._carried.samples]
            state["epoch_loss_epoch"] = self._carried.epoch
            tuner_epoch = self._carried.tuner_epoch
        if "epoch_loss_totals" in state and tuner_epoch is not None:
            state["epoch_loss_tuner_epoch"] = tuner_epoch
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning calls this before training starts (the tuner is built then) or, for some
        strategies, after; both orders end with the tuner in the saved state."""
        if not isinstance(state_dict, Mapping) or "tuner" not in state_dict:
            raise ValueError(
                f"AALRCallback state must be a dict with key 'tuner', got {type(state_dict).__name__} "
                f"with keys {sorted(state_dict) if isinstance(state_dict, Mapping) else []}"
            )
        totals, epoch = state_dict.get("epoch_loss_totals"), state_dict.get("epoch_loss_epoch", -1)
        tuner_epoch = state_dict.get("epoch_loss_tuner_epoch")
        if totals is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
            raise ValueError(f"AALRCallback state: epoch_loss_epoch must be an int, got {epoch!r}")
        if tuner_epoch is not None and (isinstance(tuner_epoch, bool) or not isinstance(tuner_epoch, int)):
            raise ValueError(
                f"AALRCallback state: epoch_loss_tuner_epoch must be an int, got {tuner_epoch!r}"
            )
        if totals is not None and not (
            isinstance(totals, (list, tuple))
            and len(totals) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in totals)
            and totals[1] >= 0
        ):
            raise ValueError(
                f"AALRCallback state: epoch_loss_totals must be [loss sum, sample count], got {totals!r}"
            )
        if self.tuner is not None:
            self.tuner.load_state_dict(state_dict["tuner"])
        else:
            self._pending_state = state_dict["tuner"]
        # the sum over all ranks so far: added once, after this epoch's own sums are reduced
        self._epoch_totals = None
        self._carried = (
            None if totals is None else _Carried(float(totals[0]), float(totals[1]), epoch, tuner_epoch)
        )

    # -- helpers -------------------------------------------------------------------------------------
    @staticmethod
    def _single_optimizer(trainer: pl.Trainer) -> torch.optim.Optimizer:
        if trainer.lr_scheduler_configs:
            names = [type(config.scheduler).__name__ for config in trainer.lr_scheduler_configs]
            raise ValueError(
                f"AALRCallback sets the LR itself, but configure_optimizers also returned LR schedulers "
                f"{names}; return the optimizer alone"
            )
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise ValueError(
                f"AALRCallback tunes one optimizer; configure_optimizers returned {len(optimizers)}"
            )
        return optimizers[0]


class _StepLoss:
    """interval="step": the losses of the micro-batches of the optimizer step under way, summed on the
    device (read once per optimizer step, by the tuner), and the global step the last step ended at."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0
        self.last_global_step = 0
        self.last_monitored: torch.Tensor | None = None  # monitor: the value read at the last batch

    def add(self, loss: torch.Tensor, device: torch.device) -> None:
        if self.total is None:
            self.total = _accumulator(device)[0]
        self.total += loss.reshape(()).to(self.total)
        self.count += 1

    def take(self) -> torch.Tensor | None:
        """The mean loss of the step's micro-batches (None: none had a loss); starts the next step."""
        total, count = self.total, self.count
        self.total, self.count = None, 0
        return None if total is None or count == 0 else total / count


def _returned_loss(outputs: Any) -> torch.Tensor | None:
    """The loss training_step returned, as Lightning hands it on (None: the batch had none)."""
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    if loss is None:
        return None
    loss = torch.as_tensor(loss).detach()
    if loss.numel() != 1:
        raise ValueError(
            f"AALRCallback: training_step returned a loss of shape {tuple(loss.shape)}; it must be a "
            "scalar (or pass monitor=<a logged metric>)"
        )
    return loss.reshape(())


def _check_interval(
    interval: object,
    every_n_steps: object,
    total_epochs: object,
    total_steps: object,
    options: Mapping[str, Any],
) -> int | None:
    """Checks the interval and the settings that go with it; returns step mode's budget in rounds (None:
    no budget, or the Trainer's ``max_steps``, known when training starts) for the policy's checks."""
    if interval not in INTERVALS:
        raise ValueError(
            "interval must be 'epoch' (a decision at each training epoch's end) or 'step' (a decision every "
            f"every_n_steps optimizer steps), got {interval!r}"
        )
    if interval == "epoch":
        for name, value in (("every_n_steps", every_n_steps), ("total_steps", total_steps)):
            if value is not None:
                raise ValueError(
                    f"{name}={value!r} is for interval='step' (rounds of optimizer steps): pass "
                    f"interval='step' too, or leave {name} out to decide once per epoch"
                )
        return None
    if every_n_steps is None:
        raise ValueError("interval='step' needs every_n_steps=N, the optimizer steps of a round")
    every_n_steps = Round(every_n_steps).every_n_steps  # type: ignore[arg-type]  # raises naming a bad value
    if total_epochs is not None:
        raise ValueError(
            "interval='step' takes its budget in optimizer steps or rounds: pass total_steps (an int or "
            f"{MAX_STEPS!r}) or total_rounds, not total_epochs={total_epochs!r}"
        )
    total_rounds = options.get("total_rounds")
    if isinstance(total_steps, str):
        if total_steps != MAX_STEPS:
            raise ValueError(
                f"total_steps must be None, an int >= every_n_steps or {MAX_STEPS!r} (the Trainer's), "
                f"got {total_steps!r}"
            )
        if total_rounds is not None:
            raise ValueError(
                f"give one budget, total_steps={MAX_STEPS!r} or total_rounds={total_rounds!r}, not both"
            )
        return None
    return _budget(None, total_rounds, total_steps, every_n_steps)[1]  # type: ignore[arg-type]


def _trainer_max_steps(trainer: pl.Trainer, total_steps: int | str | None) -> int | None:
    """total_steps, with ``"max_steps"`` read from the Trainer."""
    if total_steps != MAX_STEPS:
        return None if total_steps is None else int(total_steps)
    max_steps = trainer.max_steps
    if max_steps is None or max_steps < 1:
        raise ValueError(
            f"AALRCallback(total_steps='max_steps') needs the Trainer's max_steps >= 1, got {max_steps!r} "
            "(unbounded); set Trainer(max_steps=N), or pass total_steps=N or total_rounds=R"
        )
    return int(max_steps)


@contextmanager
def _logging_ignored(pl_module: pl.LightningModule) -> Iterator[None]:
    """``self.log`` inside training_step would log the measuring pass as a training step: mute it."""
    pl_module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    pl_module.log_dict = lambda *args, **kwargs: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        del pl_module.log
        del pl_module.log_dict


def training_set_loss(trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
    """The mean of ``training_step``'s loss over the train dataloader (eval mode, no gradients), over
    all ranks: the initial loss AALR needs, measured the way the harness measures it."""
    if not pl_module.automatic_optimization:
        raise ValueError(
            "compute_initial_loss needs automatic optimization (training_step returning the loss); "
            "measure the initial loss yourself and pass initial_loss="
        )
    from lightning_utilities.core.apply_func import apply_to_collection

    loader = trainer.train_dataloader
    if loader is None:
        raise ValueError("compute_initial_loss: the trainer has no train dataloader")
    device = pl_module.device
    was_training = pl_module.training
    pl_module.eval()
    total = _accumulator(device)  # loss sum, sample count
    try:
        with torch.no_grad(), _logging_ignored(pl_module):
            for index, batch in enumerate(loader):
                batch = apply_to_collection(batch, torch.Tensor, lambda t: t.to(device))
                out = pl_module.training_step(batch, index)
                loss = out["loss"] if isinstance(out, Mapping) else out
                if loss is None:
                    continue
                size = _batch_size(batch, out)
                total[0] += as_loss(loss, "training_step's loss") * size
                total[1] += size
    finally:
        pl_module.train(was_training)
    total = trainer.strategy.reduce(total, reduce_op="sum")
    if total[1].item() == 0:
        raise ValueError("compute_initial_loss: training_step returned no loss for any batch")
    value = float(total[0].item()) / float(total[1].item())
    if not math.isfinite(value):
        raise ValueError(f"compute_initial_loss: the initial model's training loss is {value}")
    return value


def _accumulator(device: torch.device) -> torch.Tensor:
    """(loss sum, sample count) zeros: float64, except on Apple's MPS, which has none."""
    return torch.zeros(2, dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)


def _batch_size(batch: Any, outputs: Any = None) -> int:
    """``outputs["batch_size"]`` when training_step returned one, else Lightning's guess from the batch."""
    given = outputs.get("batch_size") if isinstance(outputs, Mapping) else None
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise ValueError(
                f"AALRCallback: training_step returned batch_size={given!r}; it must be an int >= 1"
            )
        return given
    try:
        return int(_pl_data.extract_batch_size(batch))
    except Exception as error:  # Lightning's MisconfigurationException, whose advice is about self.log
        raise ValueError(
            f"AALRCallback cannot tell the batch size of a {type(batch).__name__} batch ({error}); return "
            "{'loss': loss, 'batch_size': n} from training_step, or pass monitor=<a metric logged with "
            "batch_size=n>"
        ) from error
