"""How the training loop drives each kind of LR method: :class:`Method` and one subclass per kind.

:func:`aalr.harness.methods.build_method` builds them; this module only steps them. Every
``state_dict()`` holds plain values and tensors only and loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, CyclicLR, MultiStepLR


class Method:
    """One run's LR method: an optimizer plus whatever sets its LR. The training loop drives it.

    Call order per epoch: ``train_mode()``; for each batch ``optimizer.step()`` then ``after_batch()``;
    ``end_epoch(mean_train_loss)``; ``eval_mode()`` before evaluating. ``lr`` is the LR the next batch
    uses (param group 0). ``settings`` is a plain dict of every default used, for the run's config.
    """

    per_batch: bool = False
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

    def after_batch(self) -> None:
        """Called after each ``optimizer.step()``."""

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

    def after_batch(self) -> None:
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

    def after_batch(self) -> None:
        self.scheduler.step()

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        return {"action": "none", "reason": f"cyclic LR, now {self.lr:.6g}"}

    def _extra_state(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        # CyclicLR.load_state_dict pops a key from the dict it is given: hand it a copy.
        self.scheduler.load_state_dict(dict(state["scheduler"]))


class AALRMethod(Method):
    """An optimizer whose LR the AALR tuner sets once per epoch (it may restore weights then)."""

    def __init__(self, name: str, optimizer: Optimizer, settings: dict[str, Any], tuner: Any) -> None:
        super().__init__(name, optimizer, settings)
        self.tuner = tuner

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        record = self.tuner.step(train_loss)
        return {"action": str(record["action"]), "reason": str(record["reason"])}

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
    """Schedule-free SGD. ``train_mode``/``eval_mode`` switch the weights between ``y`` (where gradients
    are taken) and the average ``x`` (what is evaluated). ``lr`` is the next step's LR, warmup
    included. Built in train mode, so a loop that never calls ``train_mode`` still trains. BatchNorm
    statistics gathered at ``y`` do not fit ``x``: the package's README recomputes them on a few
    training batches before evaluating, and so does the harness (``refresh_batchnorm``)."""

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
