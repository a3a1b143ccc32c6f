"""Every LR method the harness compares, by name, with the literature's defaults and no tuning.

The AALR paper (Sec. 5) compares AALR with the LR-tuned step schedules published for each model and
with SGDR, CLR, Adam and hypergradient descent, "without tuning the parameters of any other adaptive
approach"; where a paper gives no setting it used PyTorch's schedulers with their defaults. This
module builds each method the same way, plus four later parameter-free optimizers (the ``peers``).

=============  ===========================  ========================================  ====================
name           optimizer                    LR schedule / tuner                       source of defaults
=============  ===========================  ========================================  ====================
aalr           SGD lr 0.1, momentum 0.9,    AALR, rollback=False, stepped per epoch   AALR paper, Alg. 1
               weight decay 5e-4                                                      and Sec. 5.1
aalr-rollback  same                         AALR, rollback=True (halving in phase 2   AALR paper + this
                                            also restores the best weights)           package
aalr-adam      Adam lr 1e-3, betas (0.9,    AALR, rollback=False                      Kingma & Ba 2015
               0.999), weight decay 0                                                 (Adam defaults)
step           SGD as above, lr from        MultiStepLR per epoch, milestones scaled  see STEP_SCHEDULES
               :func:`step_schedule`        to ``epochs`` (published fraction)
const          SGD as above, lr 0.1         none                                      --
sgdr           SGD as above, lr 0.1         CosineAnnealingWarmRestarts T_0=10        Loshchilov & Hutter
                                            epochs, T_mult=2, eta_min=0, stepped      2017 (their CIFAR
                                            per batch at the fractional epoch         runs)
clr            SGD as above (cycle_         CyclicLR triangular, base_lr 0.001,       Smith 2017, Sec. 4.1
               momentum off)                max_lr 0.006, step_size_up = 4 epochs     (CIFAR-10)
                                            of batches, stepped per batch
adam           Adam lr 1e-3, betas (0.9,    none                                      Kingma & Ba 2015
               0.999), weight decay 0
hypergrad      SGDN-HD: alpha0 1e-3,        the LR itself learns by hypergradient     Baydin et al. 2018
               beta 1e-3, momentum 0.9,     descent every batch                       (VGG/CIFAR-10 run)
               Nesterov, weight decay 5e-4
prodigy        prodigyopt.Prodigy lr 1.0,   none (README: "no scheduler or cosine")   Mishchenko &
               weight decay 0 (decoupled),                                            Defazio 2024, README
               no bias correction, no
               safeguard_warmup
dadapt         dadaptation.DAdaptSGD lr     none                                      Defazio & Mishchenko
               1.0, momentum 0.9, weight                                              2023, README
               decay 5e-4
schedulefree   schedulefree.SGDSchedule-    linear warmup over 5% of the steps        Defazio et al. 2024,
               Free lr 1.0, momentum 0.9,   (README: warmup recommended)              README
               weight decay 5e-4
dog            dog.DoG reps_rel 1e-6 (1e-4  none; no iterate averaging               Ivgi et al. 2023,
               with batch norm), lr 1.0,                                              README/docstring
               weight decay 5e-4
=============  ===========================  ========================================  ====================

Choices worth knowing:

* SGD-based methods share one optimizer setting (momentum 0.9, weight decay 5e-4, no Nesterov: the
  CIFAR setting of the codes the paper cites) so that only the LR method differs between them. The
  Cutout code (ResNet-18/WRN) uses Nesterov, and He et al. use weight decay 1e-4; the step schedule
  keeps their LR milestones, not these details. ``hypergrad`` is the exception: it is SGDN-HD, the
  Nesterov variant Baydin et al. ran on VGG/CIFAR-10 (their ``run.sh`` and ``train.py``: alpha0 =
  beta = 1e-3, momentum 0.9; their weight decay 1e-4 is replaced by the shared 5e-4); their
  optimizer's ``hypergrad_lr`` default (1e-6) is not what they ran.
* SGDR: T_0=10, T_mult=2 is one of Loshchilov & Hutter's CIFAR settings; their eta_max for
  WRN-28-10 was, as I recall, 0.05 (not checked against the paper); 0.1 here, as for every SGD method.
* Adam-family optimizers (``adam``, ``aalr-adam``, ``prodigy``) take weight decay 0 unless given, as
  their packages default; SGD-family peers (``dadapt``, ``schedulefree``, ``dog``) take the SGD 5e-4.
* CLR: Smith 2017's CIFAR-10 run (Caffe "full" model, batch 100, from memory) used base_lr 0.001,
  max_lr 0.006 and stepsize 2000 iterations = 4 epochs, inside his advice of 2-10 epochs. ``lr``
  sets ``max_lr`` and ``base_lr`` keeps the 1:6 ratio unless given. Momentum stays 0.9 as in that
  paper (torch's ``cycle_momentum`` comes from the later 1cycle paper).
* dadapt: DAdaptSGD, not DAdaptAdam, because the baselines it stands next to are SGD and (from
  memory) the D-Adaptation paper's CIFAR experiments ran its SGD variant with momentum 0.9.
* schedulefree: the SGD variant, because every baseline here is SGD; lr 1.0 is the package default
  and the low end of the README's "10x-50x the classical SGD rate" (0.1). I am not sure which
  value the paper used for CIFAR-10. Evaluate in :meth:`Method.eval_mode` (averaged weights ``x``);
  with batch norm the running statistics were gathered at ``y``, which the README says to refresh
  on a few training batches before evaluating (the training loop does it: ``refresh_batchnorm``).
* dog: plain DoG (one step size for the whole model, the paper's main variant). The authors stress
  that iterate averaging matters for DoG's final accuracy; it is a separate model copy, so it is
  left out here (the comparison is of LR methods on the trained weights).
* Peer constructors get ``lr`` and ``weight_decay``; other ``**options`` go to their constructors.

``Method.lr`` is "the LR the next batch uses" of param group 0; for the peers it is the effective
step, see each class's docstring. Every ``Method.state_dict()`` holds plain values and tensors only
and loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import inspect
import logging
import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import SGD, Adam, Optimizer
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, CyclicLR, MultiStepLR

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = (
    "aalr",
    "aalr-rollback",
    "aalr-adam",
    "aalr-plus",
    "step",
    "const",
    "sgdr",
    "clr",
    "adam",
    "hypergrad",
    "prodigy",
    "dadapt",
    "schedulefree",
    "dog",
)
PEER_METHODS: tuple[str, ...] = ("prodigy", "dadapt", "schedulefree", "dog")
AALR_METHODS: tuple[str, ...] = ("aalr", "aalr-rollback", "aalr-adam", "aalr-plus")

SGD_MOMENTUM = 0.9
SGD_WEIGHT_DECAY = 5e-4
ADAM_BETAS = (0.9, 0.999)
SGDR_T0_EPOCHS = 10
SGDR_T_MULT = 2
CLR_BASE_LR = 0.001
CLR_MAX_LR = 0.006
CLR_STEP_SIZE_EPOCHS = 4
HYPERGRAD_BETA = 1e-3
SCHEDULEFREE_WARMUP_FRACTION = 0.05
DOG_REPS_REL = 1e-6
DOG_REPS_REL_BATCHNORM = 1e-4

_DEFAULT_LR: dict[str, float | None] = {
    "aalr": 0.1,
    "aalr-rollback": 0.1,
    "aalr-adam": 1e-3,
    "aalr-plus": 0.1,
    "step": None,  # depends on the model: see step_schedule()
    "const": 0.1,
    "sgdr": 0.1,
    "clr": CLR_MAX_LR,
    "adam": 1e-3,
    "hypergrad": 1e-3,
    "prodigy": 1.0,
    "dadapt": 1.0,
    "schedulefree": 1.0,
    "dog": 1.0,
}

# name prefix -> (lr, published milestones, published length, gamma, source). Milestones and length
# share a unit (epochs, or iterations for He et al.); only their ratio is used.
STEP_SCHEDULES: dict[str, tuple[float, tuple[int, ...], int, float, str]] = {
    "resnet18": (
        0.1,
        (60, 120, 160),
        200,
        0.2,
        "DeVries & Taylor 2017 (Cutout code, cited by the AALR paper)",
    ),
    "resnet20": (
        0.1,
        (32000, 48000),
        64000,
        0.1,
        "He et al. 2016, CIFAR-10: /10 at 32k and 48k of 64k iterations",
    ),
    "wrn": (0.1, (60, 120, 160), 200, 0.2, "Zagoruyko & Komodakis 2016"),
    "vgg16": (
        0.05,
        (30, 60, 90, 120, 150, 180, 210, 240, 270),
        300,
        0.5,
        "chengyangfu/pytorch-vgg-cifar10 (cited)",
    ),
    "simplenetv1": (
        0.1,
        (100, 190, 306, 390, 440),
        540,
        0.1,
        "HasanPour et al. 2016 (SimpleNet_Pytorch: milestones of its 540-epoch run; SGD, not its Adadelta)",
    ),
    "small": (0.1, (2, 3), 4, 0.1, "harness rule for small CPU models: /10 at 50% and 75%"),
}
SMALL_MODELS: tuple[str, ...] = ("mnist1d-cnn", "fmnist-cnn", "mlp")


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------
def _check_name(name: object) -> str:
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown method {name!r}; the methods are: {', '.join(METHODS)}")
    return name


def _positive_float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}: {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{what} must be finite and > 0, got {value!r}")
    return number


def _nonnegative_float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}: {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} must be finite and >= 0, got {value!r}")
    return number


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}: {value!r}")
    if int(value) < 1:
        raise ValueError(f"{what} must be >= 1, got {value!r}")
    return int(value)


def _check_options(name: str, options: dict[str, Any], allowed: Iterable[str]) -> None:
    allowed_sorted = sorted(set(allowed))
    unknown = sorted(set(options) - set(allowed_sorted))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for method {name!r}; "
            f"allowed: {', '.join(allowed_sorted) or 'none'}"
        )


def default_lr(name: str) -> float | None:
    """The value ``build_method``'s ``lr`` replaces; ``None`` for ``step`` (it depends on the model)."""
    return _DEFAULT_LR[_check_name(name)]


def _scaled_milestones(published: tuple[int, ...], total: int, epochs: int) -> list[int]:
    # Round half up in integers (no float error); a milestone never falls before epoch 1, and
    # milestones that land on the same epoch stay repeated so that the total decay is kept.
    return [max(1, (2 * milestone * epochs + total) // (2 * total)) for milestone in published]


def step_schedule(model_name: str, epochs: int) -> tuple[float, list[int], float]:
    """The model's published step schedule scaled to ``epochs``: ``(lr, milestones, gamma)``.

    Milestones keep their published fraction of the run (rounded half up to whole epochs). Unknown
    model names get the small-model rule (/10 at 50% and 75%) and a logged note.
    """
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    epochs = _positive_int(epochs, "epochs")
    key = _step_schedule_key(model_name)
    lr, published, total, gamma, _ = STEP_SCHEDULES[key]
    return lr, _scaled_milestones(published, total, epochs), gamma


def _step_schedule_key(model_name: str) -> str:
    name = model_name.lower()
    if name.startswith("wrn"):
        return "wrn"
    if name.startswith("vgg16"):
        return "vgg16"
    if name in ("resnet18", "resnet20", "simplenetv1"):
        return name
    if name not in SMALL_MODELS:
        logger.warning(
            "no published step schedule for model %r; using the small-model rule (/10 at 50%% and 75%%)",
            model_name,
        )
    return "small"


# --------------------------------------------------------------------------------------------
# hypergradient descent (Baydin et al. 2018)
# --------------------------------------------------------------------------------------------
class SGDHD(Optimizer):
    """SGD whose LR learns by hypergradient descent: SGD-HD, or SGDN-HD with momentum (Baydin et al. 2018).

    Before each step ``alpha_t = alpha_{t-1} + beta * <g_t, u_{t-1}>`` where ``g_t`` is the gradient
    (weight decay included) and ``u_{t-1}`` the previous update direction: the previous gradient for
    plain SGD, the momentum buffer for heavy ball, ``g + mu * buf`` for Nesterov. Then
    ``theta -= alpha_t * u_t``. Momentum follows the authors' code (``buf = mu * buf + g``, the first
    buffer is the gradient). One LR for the whole model, as in their code, so one param group only.
    Parameters without a gradient are skipped (neither in the dot product nor updated). Alpha is not
    clipped, as in the authors' code: it can shrink to 0 and below when gradients keep opposing.

    Args:
        params: the parameters to optimize (one group).
        lr: the initial LR ``alpha_0``.
        hypergrad_lr: ``beta``, the LR of the LR.
        momentum, dampening, nesterov, weight_decay: as in ``torch.optim.SGD``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        hypergrad_lr: float = HYPERGRAD_BETA,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        _positive_float(lr, "lr")
        _nonnegative_float(hypergrad_lr, "hypergrad_lr")
        _nonnegative_float(weight_decay, "weight_decay")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening 0")
        defaults = dict(
            lr=float(lr),
            hypergrad_lr=float(hypergrad_lr),
            momentum=float(momentum),
            dampening=float(dampening),
            weight_decay=float(weight_decay),
            nesterov=bool(nesterov),
        )
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(
                f"SGDHD keeps one LR for all parameters: give one param group, got {len(self.param_groups)}"
            )

    def _previous_direction(self, param: torch.Tensor) -> torch.Tensor | None:
        group = self.param_groups[0]
        state = self.state[param]
        # With heavy-ball momentum the last direction is the momentum buffer: no copy is kept.
        if group["momentum"] != 0 and not group["nesterov"]:
            return state.get("momentum_buffer")
        return state.get("direction")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return loss
        if any(p.grad.is_sparse for p in params):
            raise RuntimeError("SGDHD does not support sparse gradients")
        raw_grads = [p.grad for p in params]
        weight_decay = group["weight_decay"]
        grads: list[torch.Tensor] = (
            list(torch._foreach_add(raw_grads, params, alpha=weight_decay))
            if weight_decay != 0
            else raw_grads
        )

        pairs = [
            (g, u)
            for g, p in zip(grads, params, strict=True)
            if (u := self._previous_direction(p)) is not None
        ]
        if pairs:
            hypergradient = torch.stack([torch.dot(g.flatten(), u.flatten()) for g, u in pairs]).sum()
            group["lr"] = float(group["lr"]) + group["hypergrad_lr"] * float(hypergradient)
        lr = float(group["lr"])

        momentum = group["momentum"]
        directions: list[torch.Tensor]
        if momentum != 0:
            known = [i for i, p in enumerate(params) if "momentum_buffer" in self.state[p]]
            if known:
                buffers = [self.state[params[i]]["momentum_buffer"] for i in known]
                torch._foreach_mul_(buffers, momentum)
                torch._foreach_add_(buffers, [grads[i] for i in known], alpha=1.0 - group["dampening"])
            for p, g in zip(params, grads, strict=True):
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.clone(g).detach()
            buffers = [self.state[p]["momentum_buffer"] for p in params]
            if group["nesterov"]:
                directions = list(torch._foreach_add(grads, buffers, alpha=momentum))
                for p, d in zip(params, directions, strict=True):
                    self.state[p]["direction"] = d
            else:
                directions = buffers
        else:
            # p.grad may be zeroed in place before the next step: keep a copy.
            directions = [torch.clone(g).detach() for g in grads] if weight_decay == 0 else grads
            for p, d in zip(params, directions, strict=True):
                self.state[p]["direction"] = d
        torch._foreach_add_(params, directions, alpha=-lr)
        return loss


class SGDHDReference(Optimizer):
    """Slow, obviously correct SGD-HD/SGDN-HD: one flat float64 vector, as in the authors' code.

    For testing :class:`SGDHD` only. Assumes the same parameters have gradients at every step.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        hypergrad_lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            hypergrad_lr=hypergrad_lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        grad = torch.cat([p.grad.to(torch.float64).flatten() for p in params])
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * torch.cat([p.to(torch.float64).flatten() for p in params])
        state = self.state[params[0]]
        if "direction" in state:
            group["lr"] = group["lr"] + group["hypergrad_lr"] * float(torch.dot(grad, state["direction"]))
        if group["momentum"] != 0:
            if "buffer" not in state:
                state["buffer"] = grad.clone()
            else:
                state["buffer"] = group["momentum"] * state["buffer"] + (1 - group["dampening"]) * grad
            if group["nesterov"]:
                direction = grad + group["momentum"] * state["buffer"]
            else:
                direction = state["buffer"].clone()
        else:
            direction = grad.clone()
        state["direction"] = direction
        offset = 0
        for p in params:
            count = p.numel()
            new_value = p.to(torch.float64) - group["lr"] * direction[offset : offset + count].view_as(p)
            p.copy_(new_value.to(p.dtype))
            offset += count
        return None


# --------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------
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


class _StepScheduleMethod(Method):
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


class _SGDRMethod(Method):
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


class _CyclicMethod(Method):
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


class _AALRMethod(Method):
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


class _HypergradMethod(Method):
    """SGDN-HD: the LR changes inside every ``optimizer.step()``; ``lr`` is the current alpha."""

    def end_epoch(self, train_loss: float) -> dict[str, str]:
        return {"action": "none", "reason": f"hypergradient LR now {self.lr:.6g}"}


class _ProdigyMethod(Method):
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


class _DAdaptMethod(Method):
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


class _DoGMethod(Method):
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


class _ScheduleFreeMethod(Method):
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


# --------------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------------
_SGD_OPTIONS = ("momentum", "nesterov")
_ADAM_OPTIONS = ("betas", "eps")


def _momentum(value: object) -> float:
    """SGD's momentum: a real number in [0, 1) (NaN, a string or a bool is a mistake, not a setting)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"momentum must be a number in [0, 1), got {value!r}")
    return float(value)


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {value!r}")
    return value


def _sgd(
    params: list[nn.Parameter], lr: float, weight_decay: float, options: dict[str, Any]
) -> tuple[SGD, dict[str, Any]]:
    momentum = _momentum(options.pop("momentum", SGD_MOMENTUM))
    nesterov = _flag(options.pop("nesterov", False), "nesterov")
    optimizer = SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    return optimizer, {
        "optimizer": "SGD",
        "lr": lr,
        "momentum": momentum,
        "nesterov": nesterov,
        "weight_decay": weight_decay,
    }


def _adam(
    params: list[nn.Parameter], lr: float, weight_decay: float, options: dict[str, Any]
) -> tuple[Adam, dict[str, Any]]:
    raw_betas = options.pop("betas", ADAM_BETAS)
    if (
        not isinstance(raw_betas, list | tuple)
        or len(raw_betas) != 2
        or any(isinstance(b, bool) or not isinstance(b, int | float) or not 0.0 <= b < 1.0 for b in raw_betas)
    ):
        raise ValueError(
            f"betas must be a list of two numbers in [0, 1), e.g. [0.9, 0.999], got {raw_betas!r}"
        )
    betas = (float(raw_betas[0]), float(raw_betas[1]))
    eps = _positive_float(options.pop("eps", 1e-8), "eps")
    optimizer = Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return optimizer, {
        "optimizer": "Adam",
        "lr": lr,
        "betas": list(betas),
        "eps": eps,
        "weight_decay": weight_decay,
    }


def _import_peer(name: str, module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(
            f"method {name!r} needs the package {module!r}; install the optional extra: "
            "pip install 'aalr[peers]'"
        ) from error


def _constructor_options(cls: type, exclude: Iterable[str]) -> list[str]:
    skip = {"self", *exclude}
    return [p for p in inspect.signature(cls).parameters if p not in skip]


def _check_peer_option_types(name: str, cls: type, options: dict[str, Any]) -> None:
    """A peer's option must have the kind of its constructor's default: the packages check little
    themselves, so a string or NaN would otherwise fail (or train on garbage) only once training runs."""
    parameters = inspect.signature(cls).parameters
    for key, value in options.items():
        default = parameters[key].default
        if isinstance(default, bool):
            _flag(value, f"{name} option {key}")
        elif isinstance(default, int | float):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or math.isnan(value)
                or (math.isinf(value) and not math.isinf(default))
            ):
                raise ValueError(f"{name} option {key} must be a finite number, got {value!r}")
            if default >= 0 and value < 0:
                raise ValueError(f"{name} option {key} must be >= 0, got {value!r}")


def _plain(options: dict[str, Any]) -> dict[str, Any]:
    """Options as JSON-friendly values for ``Method.settings`` (paths become strings)."""
    return {
        key: value if isinstance(value, (bool, int, float, str, list, tuple, type(None))) else str(value)
        for key, value in options.items()
    }


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def build_method(
    name: str,
    model: nn.Module,
    *,
    epochs: int,
    steps_per_epoch: int,
    model_name: str,
    lr: float | None = None,
    weight_decay: float | None = None,
    initial_loss: float | None = None,
    **options: Any,
) -> Method:
    """Build method ``name`` for ``model`` with the literature's defaults (see the module docstring).

    Args:
        name: one of :data:`METHODS`.
        model: the module to train (its parameters that require grad go to the optimizer).
        epochs: the run's length (scales the step schedule, the schedule-free warmup).
        steps_per_epoch: optimizer steps per epoch (per-batch schedules count in these).
        model_name: the model's registry name (chooses the step schedule).
        lr: replaces :func:`default_lr` (for ``step`` the schedule's starting LR, for ``clr`` max_lr,
            for the peers the package's ``lr`` multiplier).
        weight_decay: replaces the method's default weight decay.
        initial_loss: the initial model's training loss, for the AALR methods (ignored by others).
        options: method-specific settings; an unknown one is a ValueError that lists those allowed.
    """
    name = _check_name(name)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    epochs = _positive_int(epochs, "epochs")
    steps_per_epoch = _positive_int(steps_per_epoch, "steps_per_epoch")
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    if lr is not None:
        lr = _positive_float(lr, "lr")
    if weight_decay is not None:
        weight_decay = _nonnegative_float(weight_decay, "weight_decay")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters that require grad; there is nothing to optimize")
    options = dict(options)
    adam_family = name in ("aalr-adam", "adam", "prodigy")
    wd = weight_decay if weight_decay is not None else (0.0 if adam_family else SGD_WEIGHT_DECAY)
    settings: dict[str, Any] = {"method": name}
    total_steps = epochs * steps_per_epoch

    if name in AALR_METHODS:
        from aalr.tuner import AALR  # the library; imported here so the non-AALR methods never need it

        tuner_options = _constructor_options(
            AALR, ("model", "optimizer", "initial_loss", "rollback", "rules")
        )
        if name == "aalr-plus":  # AALR+: rollback in both phases and the finish over this run's epochs
            options = {"total_epochs": epochs, "phase1_failure": "rollback", **options}
        optimizer_options = _ADAM_OPTIONS if name == "aalr-adam" else _SGD_OPTIONS
        _check_options(name, options, (*optimizer_options, *tuner_options))
        eta0 = lr if lr is not None else _DEFAULT_LR[name]
        assert eta0 is not None
        optimizer_factory = _adam if name == "aalr-adam" else _sgd
        optimizer, optimizer_settings = optimizer_factory(params, eta0, wd, options)
        rollback = name in ("aalr-rollback", "aalr-plus")
        # aalr-plus runs the library's default rules; the others keep the paper's (their committed results)
        rules = "plus" if name == "aalr-plus" else "paper"
        tuner = AALR(model, optimizer, initial_loss=initial_loss, rules=rules, rollback=rollback, **options)
        settings.update(optimizer_settings, schedule="AALR", rollback=rollback, **_plain(options))
        settings["initial_loss"] = None if initial_loss is None else float(initial_loss)
        return _AALRMethod(name, optimizer, settings, tuner)

    if name == "step":
        _check_options(name, options, _SGD_OPTIONS)
        start_lr, milestones, gamma = step_schedule(model_name, epochs)
        optimizer, optimizer_settings = _sgd(params, lr if lr is not None else start_lr, wd, options)
        scheduler = MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
        source = STEP_SCHEDULES[_step_schedule_key(model_name)][4]
        settings.update(
            optimizer_settings, schedule="MultiStepLR", milestones=milestones, gamma=gamma, source=source
        )
        return _StepScheduleMethod(name, optimizer, settings, scheduler)

    if name == "const":
        _check_options(name, options, _SGD_OPTIONS)
        optimizer, optimizer_settings = _sgd(params, lr if lr is not None else 0.1, wd, options)
        settings.update(optimizer_settings, schedule="constant")
        return Method(name, optimizer, settings)

    if name == "sgdr":
        _check_options(name, options, (*_SGD_OPTIONS, "t0_epochs", "t_mult", "eta_min"))
        t0_epochs = _positive_int(options.pop("t0_epochs", SGDR_T0_EPOCHS), "t0_epochs")
        t_mult = _positive_int(options.pop("t_mult", SGDR_T_MULT), "t_mult")
        eta_min = _nonnegative_float(options.pop("eta_min", 0.0), "eta_min")
        optimizer, optimizer_settings = _sgd(params, lr if lr is not None else 0.1, wd, options)
        sgdr = CosineAnnealingWarmRestarts(optimizer, T_0=t0_epochs, T_mult=t_mult, eta_min=eta_min)
        settings.update(
            optimizer_settings,
            schedule="CosineAnnealingWarmRestarts",
            t0_epochs=t0_epochs,
            t_mult=t_mult,
            eta_min=eta_min,
        )
        return _SGDRMethod(name, optimizer, settings, sgdr, steps_per_epoch)

    if name == "clr":
        _check_options(name, options, (*_SGD_OPTIONS, "base_lr", "step_size_epochs", "mode"))
        max_lr = lr if lr is not None else CLR_MAX_LR
        base_lr = _positive_float(options.pop("base_lr", max_lr * CLR_BASE_LR / CLR_MAX_LR), "base_lr")
        if base_lr >= max_lr:
            raise ValueError(f"clr needs base_lr < max_lr (lr), got base_lr {base_lr} and max_lr {max_lr}")
        step_size_epochs = _positive_int(
            options.pop("step_size_epochs", CLR_STEP_SIZE_EPOCHS), "step_size_epochs"
        )
        mode = options.pop("mode", "triangular")
        if mode not in ("triangular", "triangular2"):
            raise ValueError(f"clr mode must be 'triangular' or 'triangular2', got {mode!r}")
        optimizer, optimizer_settings = _sgd(params, base_lr, wd, options)
        cyclic = CyclicLR(
            optimizer,
            base_lr=base_lr,
            max_lr=max_lr,
            step_size_up=step_size_epochs * steps_per_epoch,
            mode=mode,
            cycle_momentum=False,
        )
        settings.update(
            optimizer_settings,
            schedule="CyclicLR",
            base_lr=base_lr,
            max_lr=max_lr,
            step_size_up=step_size_epochs * steps_per_epoch,
            mode=mode,
        )
        return _CyclicMethod(name, optimizer, settings, cyclic)

    if name == "adam":
        _check_options(name, options, _ADAM_OPTIONS)
        optimizer, optimizer_settings = _adam(params, lr if lr is not None else 1e-3, wd, options)
        settings.update(optimizer_settings, schedule="constant")
        return Method(name, optimizer, settings)

    if name == "hypergrad":
        _check_options(name, options, ("hypergrad_lr", "momentum", "nesterov"))
        alpha0 = lr if lr is not None else 1e-3
        beta = _nonnegative_float(options.pop("hypergrad_lr", HYPERGRAD_BETA), "hypergrad_lr")
        momentum = _momentum(options.pop("momentum", SGD_MOMENTUM))
        nesterov = _flag(options.pop("nesterov", momentum != 0), "nesterov")
        hd = SGDHD(
            params, lr=alpha0, hypergrad_lr=beta, momentum=momentum, weight_decay=wd, nesterov=nesterov
        )
        settings.update(
            optimizer="SGDHD",
            lr=alpha0,
            hypergrad_lr=beta,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=wd,
            schedule="hypergradient",
        )
        return _HypergradMethod(name, hd, settings)

    multiplier = lr if lr is not None else 1.0
    # The peers differ only in their package, their own defaults and the Method class that drives them.
    if name == "schedulefree":
        options.setdefault("warmup_steps", round(SCHEDULEFREE_WARMUP_FRACTION * total_steps))
    if name in ("dadapt", "schedulefree"):
        options.setdefault("momentum", SGD_MOMENTUM)
    if name == "dog":  # the authors' rule: reps_rel 1e-6, or 1e-4 when the model uses batch normalization
        options.setdefault("reps_rel", DOG_REPS_REL_BATCHNORM if _has_batchnorm(model) else DOG_REPS_REL)
    module_name, class_name, schedule, method_cls = _PEERS[name]
    peer_cls = getattr(_import_peer(name, module_name), class_name)
    _check_options(name, options, _constructor_options(peer_cls, ("params", "lr", "weight_decay")))
    _check_peer_option_types(name, peer_cls, options)
    optimizer = peer_cls(params, lr=multiplier, weight_decay=wd, **options)
    if name == "schedulefree":
        optimizer.train()
    settings.update(
        optimizer=f"{module_name}.{class_name}",
        lr=multiplier,
        weight_decay=wd,
        schedule=schedule,
        **({"averaging": False} if name == "dog" else {}),
        **_plain(options),
    )
    return method_cls(name, optimizer, settings)


# name -> (package module, optimizer class, schedule as recorded, the Method class that drives it)
_PEERS: dict[str, tuple[str, str, str, type[Method]]] = {
    "prodigy": ("prodigyopt", "Prodigy", "constant", _ProdigyMethod),
    "dadapt": ("dadaptation", "DAdaptSGD", "constant", _DAdaptMethod),
    "schedulefree": ("schedulefree", "SGDScheduleFree", "warmup only", _ScheduleFreeMethod),
    "dog": ("dog", "DoG", "none", _DoGMethod),
}

_SGD = "SGD (momentum 0.9, weight decay 5e-4)"
_DESCRIPTIONS: dict[str, str] = {
    "aalr": f"{_SGD} from LR 0.1; AALR sets the LR every epoch, no rollback (Algorithm 1 of "
    "'A Simple Dynamic Learning Rate Tuning Algorithm for Automated Training of DNNs', ICLR 2020 submission)",
    "aalr-rollback": "as aalr, with rollback=True: when phase 2 halves the LR it also restores the best "
    "weights (this package's addition to the ICLR 2020 submission's Algorithm 1)",
    "aalr-plus": "AALR+: as aalr-rollback, with phase1_failure='rollback' (a phase-1 failure restores the "
    "last stable epoch, halves the LR and goes to phase 2, instead of restarting from the initial weights) "
    "and the budget-aware finish over the run's epochs (total_epochs = --epochs; finish 'steps': at 75% "
    "restore the best checkpoint unless the current loss is better, LR x0.1, stop exploring; x0.1 again "
    "at 90%; this package's additions to the ICLR 2020 AALR submission)",
    "aalr-adam": "Adam (lr 1e-3, betas 0.9/0.999, no weight decay) with AALR setting its LR every epoch "
    "(AALR paper; Adam: Kingma & Ba, ICLR 2015)",
    "step": f"{_SGD} with the model's published step schedule, scaled to the run: ResNet-18 and WRN 0.1, "
    "x0.2 at 30/60/80% (DeVries & Taylor 2017; Zagoruyko & Komodakis 2016), ResNet-20 0.1, x0.1 at "
    "50/75% (He et al. 2016), VGG16 0.05, x0.5 every 10% (chengyangfu/pytorch-vgg-cifar10), "
    "SimpleNetV1 0.1, x0.1 at 100/190/306/390/440 of 540 (HasanPour et al. 2016), others x0.1 at 50/75%",
    "const": f"{_SGD} at a constant LR 0.1",
    "sgdr": f"{_SGD}, cosine annealing with warm restarts from 0.1, T_0 10 epochs, T_mult 2, "
    "stepped per batch (Loshchilov & Hutter, ICLR 2017)",
    "clr": f"{_SGD}, triangular cyclical LR 0.001-0.006, half cycle 4 epochs, stepped per batch "
    "(Smith, WACV 2017)",
    "adam": "Adam, lr 1e-3, betas 0.9/0.999, no weight decay, constant (Kingma & Ba, ICLR 2015)",
    "hypergrad": "SGDN-HD: Nesterov SGD (momentum 0.9, weight decay 5e-4) whose LR (from 1e-3) follows "
    "the hypergradient with beta 1e-3 (Baydin et al., ICLR 2018)",
    "prodigy": "Prodigy, lr 1.0, no weight decay, no schedule "
    "(Mishchenko & Defazio, ICML 2024; pip prodigyopt)",
    "dadapt": "D-Adapted SGD, lr 1.0, momentum 0.9, weight decay 5e-4, no schedule "
    "(Defazio & Mishchenko, ICML 2023; pip dadaptation)",
    "schedulefree": "schedule-free SGD, lr 1.0, momentum 0.9, weight decay 5e-4, 5% linear warmup, "
    "evaluated at the averaged weights (Defazio et al., NeurIPS 2024; pip schedulefree)",
    "dog": "DoG, reps_rel 1e-6 (1e-4 with batch norm), weight decay 5e-4, no iterate averaging "
    "(Ivgi, Hinder & Carmon, ICML 2023; pip dog-optimizer)",
}


def describe(name: str) -> str:
    """One line for the README: the optimizer, the schedule and its defaults, and the paper."""
    return f"{_check_name(name)}: {_DESCRIPTIONS[name]}"
