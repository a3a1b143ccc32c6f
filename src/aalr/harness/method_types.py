"""How the training loop drives each kind of LR method: :class:`Method` and one subclass per kind.

:func:`aalr.harness.methods.build_method` builds them; this module only steps them. Every
``state_dict()`` holds plain values and tensors only and loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingWarmRestarts,
    CyclicLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
)

from aalr.harness.schedules import GreedyLR, LRRangeTest


class Method:
    """One run's LR method: an optimizer plus whatever sets its LR. The training loop drives it.

    Call order per epoch: ``train_mode()``; for each batch ``optimizer.step()`` then
    ``after_batch(loss)``; ``end_epoch(mean_train_loss)``; ``eval_mode()`` before evaluating. ``lr``
    is the LR the next batch uses (param group 0). ``settings`` is a plain dict of every default used,
    for the run's config.

    ``after_batch`` gets the step's training loss as a float where the method says it wants one
    (``wants_step_loss``); otherwise None, so that other methods cost no per-step device sync.
    """

    per_batch: bool = False
    # after_batch needs each step's training loss (a float: one device sync per step)
    wants_step_loss: bool = False
    # The weights evaluated are not the weights trained (schedule-free): the training loop recomputes
    # BatchNorm statistics at the evaluated weights before evaluating.
    refresh_batchnorm: bool = False

    def __init__(self, name: str, optimizer: Optimizer, settings: dict[str, Any]) -> None:
        self.name = name
        self.optimizer = optimizer
        self.settings = settings

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def after_batch(self, loss: float | None = None) -> None:
        """Called after each ``optimizer.step()``, with the step's training loss when
        ``wants_step_loss`` (else None)."""

    def skip_next_batch(self) -> bool:
        """Called before each batch: True leaves it out (drawn from the data, not trained on)."""
        return False

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        """Called once per epoch with its mean training loss; returns ``{"action", "reason"}``."""
        return {"action": "none", "reason": f"LR {self.lr:.6g} (no schedule)"}

    def train_mode(self) -> None:
        """Before training batches (schedule-free swaps to its training weights)."""

    def eval_mode(self) -> None:
        """Before evaluating (schedule-free swaps to its averaged weights)."""

    def state_dict(self) -> dict[str, Any]:
        """Optimizer and schedule/tuner state: plain values and tensors (references to live ones)."""
        state: dict[str, Any] = {"method": self.name, "optimizer": self.optimizer.state_dict()}
        state.update(self._extra_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; load the model's weights separately, as usual."""
        if not isinstance(state, dict):
            raise TypeError(
                f"method state must be a dict from Method.state_dict(), got {type(state).__name__}"
            )
        if state.get("method") != self.name:
            raise ValueError(f"method state is for {state.get('method')!r}, this method is {self.name!r}")
        self.optimizer.load_state_dict(state["optimizer"])
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass


class StepScheduleMethod(Method):
    """MultiStepLR, stepped once per epoch."""

    def __init__(
        self, name: str, optimizer: Optimizer, settings: dict[str, Any], scheduler: MultiStepLR
    ) -> None:
        super().__init__(name, optimizer, settings)
        self.scheduler = scheduler

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        before = self.lr
        self.scheduler.step()
        if self.lr != before:
            return {"action": "decay", "reason": f"milestone: LR {before:.6g} -> {self.lr:.6g}"}
        return {"action": "none", "reason": f"LR {self.lr:.6g} until the next milestone"}

    def _extra_state(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])


class SGDRMethod(Method):
    """CosineAnnealingWarmRestarts at the fractional epoch, stepped after every batch.

    The fraction counts batches of this epoch over ``steps_per_epoch``; ``end_epoch`` lands on the
    whole epoch, so a last short batch or a batch count that differs from ``steps_per_epoch`` does
    not shift the restarts.
    """

    per_batch = True

    def __init__(
        self,
        name: str,
        optimizer: Optimizer,
        settings: dict[str, Any],
        scheduler: CosineAnnealingWarmRestarts,
        steps_per_epoch: int,
    ) -> None:
        super().__init__(name, optimizer, settings)
        self.scheduler = scheduler
        self.steps_per_epoch = steps_per_epoch
        self.epochs_done = 0
        self.batches_done = 0  # in the current epoch

    def after_batch(self, loss: float | None = None) -> None:
        self.batches_done += 1
        self.scheduler.step(self.epochs_done + self.batches_done / self.steps_per_epoch)

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        self.epochs_done += 1
        self.batches_done = 0
        self.scheduler.step(self.epochs_done)
        if self.scheduler.T_cur == 0:
            return {
                "action": "restart",
                "reason": f"warm restart: LR {self.lr:.6g}, next cycle {self.scheduler.T_i} epochs",
            }
        return {"action": "none", "reason": f"cosine annealing: LR {self.lr:.6g}"}

    def _extra_state(self) -> dict[str, Any]:
        return {
            "scheduler": self.scheduler.state_dict(),
            "epochs_done": self.epochs_done,
            "batches_done": self.batches_done,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        self.epochs_done = int(state["epochs_done"])
        self.batches_done = int(state["batches_done"])


class CyclicMethod(Method):
    """CyclicLR, stepped after every batch."""

    per_batch = True

    def __init__(
        self, name: str, optimizer: Optimizer, settings: dict[str, Any], scheduler: CyclicLR
    ) -> None:
        super().__init__(name, optimizer, settings)
        self.scheduler = scheduler

    def after_batch(self, loss: float | None = None) -> None:
        self.scheduler.step()

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        return {"action": "none", "reason": f"cyclic LR, now {self.lr:.6g}"}

    def _extra_state(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        # CyclicLR.load_state_dict pops a key from the dict it is given: hand it a copy.
        self.scheduler.load_state_dict(dict(state["scheduler"]))


class AALRMethod(Method):
    """An optimizer whose LR the AALR tuner sets once per epoch (it may restore weights then).

    With a tuner in step mode (made with ``every_n_steps`` = the steps of an epoch, for
    ``spike_rollback``), each step's loss goes to ``tuner.observe``: a round ends at the epoch's last
    step as before (on the mean of its step losses), or at once on a spike or a non-finite loss, which
    restores the best checkpoint and halves the LR mid-epoch. ``end_epoch`` then only reports the
    decisions taken during the epoch. After a spike the next round again lasts ``every_n_steps``
    steps, so later rounds end mid-epoch: decisions stay one a round, not one an epoch.

    ``spike_skip`` = N: the training loop owns the data, so here the batches that follow a spike can be
    left out (as PaLM skipped a few hundred batches after each spike): the next N batches are drawn but
    not trained on, up to the end of the epoch (or round) the spike fell in, so that every epoch trains
    at least the batches up to its spike, and a checkpoint (taken at epochs' ends) never holds a skip in
    progress.
    """

    def __init__(
        self, name: str, optimizer: Optimizer, settings: dict[str, Any], tuner: Any, *, spike_skip: int = 0
    ) -> None:
        super().__init__(name, optimizer, settings)
        self.tuner = tuner
        self.step_mode = tuner.round is not None
        self.wants_step_loss = self.step_mode
        self.decisions: list[dict[str, Any]] = []  # step mode: taken since the last end_epoch
        self.spike_skip = spike_skip
        self.to_skip = 0  # batches still to leave out in this epoch

    def after_batch(self, loss: float | None = None) -> None:
        if not self.step_mode:
            return
        if loss is None:
            raise RuntimeError(f"{self.name} with spike_rollback needs each step's loss: after_batch(loss)")
        record = self.tuner.observe(loss)
        if record is not None:
            self.decisions.append(record)
            if record.get("spike"):
                self.to_skip = self.spike_skip

    def skip_next_batch(self) -> bool:
        if self.to_skip <= 0:
            return False
        self.to_skip -= 1
        return True

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        self.to_skip = 0  # a skip ends with the epoch (round) its spike fell in
        if not self.step_mode:
            record = self.tuner.step(train_loss)
            return {"action": str(record["action"]), "reason": str(record["reason"])}
        made, self.decisions = self.decisions, []
        if not made:
            round_ = self.tuner.round
            return {
                "action": "none",
                "reason": f"round in progress: {round_.steps} of {round_.every_n_steps} steps, "
                f"LR {self.lr:.6g}",
            }
        restores = [r for r in made if str(r["action"]).startswith("restore")]
        shown = restores[0] if restores else made[-1]
        reason = "; ".join(f"step {r['last_step']}: {r['reason']}" for r in made)
        return {"action": str(shown["action"]), "reason": reason}

    def _extra_state(self) -> dict[str, Any]:
        return {"tuner": self.tuner.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.tuner.load_state_dict(state["tuner"])


class HypergradMethod(Method):
    """SGDN-HD: the LR changes inside every ``optimizer.step()``; ``lr`` is the current alpha."""

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        return {"action": "none", "reason": f"hypergradient LR now {self.lr:.6g}"}


class ProdigyMethod(Method):
    """Prodigy. ``lr`` reports the effective Adam step ``d * lr`` (times Adam's bias correction when
    ``use_bias_correction`` is on), the multiplier of the next step's normalized direction."""

    @property
    def lr(self) -> float:
        group = self.optimizer.param_groups[0]
        scale = 1.0
        if group["use_bias_correction"]:
            beta1, beta2 = group["betas"]
            k = group["k"]
            scale = ((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1))
        return float(group["d"]) * float(group["lr"]) * scale

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        return {"action": "none", "reason": f"Prodigy d*lr now {self.lr:.6g}"}


class DAdaptMethod(Method):
    """DAdaptSGD. ``lr`` reports ``d * lr / |g_0|``, the step the next batch's gradient is scaled by
    (it moves the ``z`` sequence that the weights average towards). ``|g_0|``, the first gradient's
    norm, is known after the first step; 0.0 until then."""

    @property
    def lr(self) -> float:
        group = self.optimizer.param_groups[0]
        if "g0_norm" not in group or not group["g0_norm"]:
            return 0.0
        return float(group["d"]) * float(group["lr"]) / float(group["g0_norm"])

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        return {"action": "none", "reason": f"D-Adaptation step now {self.lr:.6g}"}


class DoGMethod(Method):
    """DoG. ``lr`` reports ``eta`` of the last step (the next one also depends on the next gradient's
    norm, so it is not known before it); 0.0 before the first step."""

    @property
    def lr(self) -> float:
        etas = self.optimizer.param_groups[0].get("eta")
        if not etas:
            return 0.0
        return float(etas[0])

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        return {"action": "none", "reason": f"DoG eta now {self.lr:.6g}"}


class ScheduleFreeMethod(Method):
    """Schedule-free SGD or AdamW. ``train_mode``/``eval_mode`` switch the weights between ``y``
    (where gradients are taken) and the average ``x`` (what is evaluated). ``lr`` is the next step's
    LR, warmup included. Built in train mode, so a loop that never calls ``train_mode`` still
    trains. BatchNorm statistics gathered at ``y`` do not fit ``x``: the package's README recomputes
    them on a few training batches before evaluating, and so does the harness
    (``refresh_batchnorm``)."""

    refresh_batchnorm = True

    @property
    def lr(self) -> float:
        group = self.optimizer.param_groups[0]
        k, warmup = int(group["k"]), int(group["warmup_steps"])
        scale = (k + 1) / warmup if k < warmup else 1.0
        return float(group["lr"]) * scale

    def train_mode(self) -> None:
        self.optimizer.train()  # type: ignore[attr-defined]

    def eval_mode(self) -> None:
        self.optimizer.eval()  # type: ignore[attr-defined]

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        return {"action": "none", "reason": f"schedule-free LR {self.lr:.6g}"}


class BudgetScheduleMethod(Method):
    """A schedule over the run's whole budget of optimizer steps (``LambdaLR`` with a
    :mod:`aalr.harness.schedules` multiplier, or ``OneCycleLR``), stepped after every batch.

    The LR of the batch after ``k`` steps is the schedule's value at ``k``; after ``total_steps``
    steps the scheduler is no longer stepped (OneCycleLR would raise), so a loop that runs longer keeps
    the last LR.
    """

    per_batch = True

    def __init__(
        self,
        name: str,
        optimizer: Optimizer,
        settings: dict[str, Any],
        scheduler: LRScheduler,
        total_steps: int,
    ) -> None:
        super().__init__(name, optimizer, settings)
        self.scheduler = scheduler
        self.total_steps = total_steps

    def after_batch(self, loss: float | None = None) -> None:
        if self.scheduler.last_epoch < self.total_steps:
            self.scheduler.step()

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        return {
            "action": "none",
            "reason": f"{self.settings['schedule']}: step {self.scheduler.last_epoch} of {self.total_steps}, "
            f"LR {self.lr:.6g}",
        }

    def _extra_state(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(dict(state["scheduler"]))


class RangeTestOneCycleMethod(Method):
    """fastai's recipe: an LR range test (:class:`aalr.harness.schedules.LRRangeTest`) on the run's
    first steps, then the weights and the optimizer's state as they were before it, and OneCycleLR up
    to the suggested LR over the rest of the budget.

    The test's steps are the loop's own first batches (they count in the budget, and their losses
    in the first epochs' mean training loss); ``settings["range_test_steps"]`` says how many there
    were once it has ended, and the end's ``reason`` names them and the LR suggested. The copy of the
    weights taken at construction (on the CPU) is part of the state until the test ends.
    """

    per_batch = True

    def __init__(
        self,
        name: str,
        optimizer: Optimizer,
        settings: dict[str, Any],
        model: nn.Module,
        test: LRRangeTest,
        total_steps: int,
        onecycle: dict[str, Any],
    ) -> None:
        super().__init__(name, optimizer, settings)
        self.model = model
        self.test = test
        self.total_steps = total_steps
        self.onecycle = onecycle
        self.max_lr: float | None = None
        self.scheduler: OneCycleLR | None = None
        self.snapshot: dict[str, Any] | None = {
            "model": {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()},
            "optimizer": copy.deepcopy(optimizer.state_dict()),
        }
        self.ended_this_epoch = False
        self._set_lr(test.lr)

    @property
    def wants_step_loss(self) -> bool:  # type: ignore[override]
        return self.scheduler is None  # the test watches the loss; the one-cycle does not

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def after_batch(self, loss: float | None = None) -> None:
        if self.scheduler is not None:
            if self.scheduler.last_epoch < self.scheduler.total_steps:
                self.scheduler.step()
            return
        if loss is None:
            raise RuntimeError(f"{self.name} needs each step's loss during its range test: after_batch(loss)")
        if self.test.observe(loss):
            self._start_onecycle()
        else:
            self._set_lr(self.test.lr)

    def _start_onecycle(self) -> None:
        assert self.snapshot is not None
        self.model.load_state_dict(self.snapshot["model"])
        self.optimizer.load_state_dict(self.snapshot["optimizer"])
        self.snapshot = None
        self.max_lr = self.test.suggestion()
        self.scheduler = self._make_onecycle(self.max_lr)
        self.settings.update(range_test_steps=self.test.steps, max_lr=self.max_lr)
        self.ended_this_epoch = True

    def _make_onecycle(self, max_lr: float) -> OneCycleLR:
        return OneCycleLR(
            self.optimizer,
            max_lr=max_lr,
            total_steps=max(1, self.total_steps - self.test.steps),
            **self.onecycle,
        )

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        if self.scheduler is None:
            return {
                "action": "none",
                "reason": f"LR range test: {self.test.steps} of {self.test.num_it} steps, LR {self.lr:.6g}",
            }
        if self.ended_this_epoch:
            self.ended_this_epoch = False
            why = f" ({self.test.stopped})" if self.test.stopped else ""
            return {
                "action": "restore_initial",
                "reason": f"LR range test over {self.test.steps} steps{why} suggests max LR "
                f"{self.max_lr:.6g} ({self.test.suggestion_rule}); weights and optimizer restored; "
                f"one-cycle over {self.scheduler.total_steps} steps, LR now {self.lr:.6g}",
            }
        return {
            "action": "none",
            "reason": f"one-cycle to max LR {self.max_lr:.6g}: step {self.scheduler.last_epoch} of "
            f"{self.scheduler.total_steps}, LR {self.lr:.6g}",
        }

    def _extra_state(self) -> dict[str, Any]:
        return {
            "range_test": self.test.state_dict(),
            "snapshot": self.snapshot,
            "max_lr": self.max_lr,
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "ended_this_epoch": self.ended_this_epoch,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.test.load_state_dict(state["range_test"])
        snapshot = state["snapshot"]
        self.snapshot = None if snapshot is None else copy.deepcopy(snapshot)
        self.ended_this_epoch = bool(state["ended_this_epoch"])
        if state["scheduler"] is None:
            self.scheduler, self.max_lr = None, None
            return
        self.max_lr = float(state["max_lr"])
        self.scheduler = self._make_onecycle(self.max_lr)  # it sets the groups' LRs: load them again
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(dict(state["scheduler"]))
        self.settings.update(range_test_steps=self.test.steps, max_lr=self.max_lr)


class GreedyMethod(Method):
    """GreedyLR (:class:`aalr.harness.schedules.GreedyLR`), stepped once per epoch (or round) with
    that epoch's mean training loss."""

    def __init__(self, name: str, optimizer: Optimizer, settings: dict[str, Any], greedy: GreedyLR) -> None:
        super().__init__(name, optimizer, settings)
        self.greedy = greedy

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        before = self.lr
        done = self.greedy.step(train_loss)
        action = {"decrease": "decay", "reset": "restart", "increase": "increase"}.get(done, "none")
        if self.lr == before and done != "reset":
            action = "none"  # at a bound: nothing changed
        greedy = self.greedy
        return {
            "action": action,
            "reason": f"GreedyLR on training loss {train_loss:.6g} ({done}): LR {before:.6g} -> "
            f"{self.lr:.6g}; best {greedy.best:.6g}, {greedy.num_good_epochs} better / "
            f"{greedy.num_bad_epochs} worse in a row, patience {greedy.patience}",
        }

    def _extra_state(self) -> dict[str, Any]:
        return {"greedy": self.greedy.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.greedy.load_state_dict(state["greedy"])
