"""White-box L-inf attacks (FGSM, PGD-k) for adversarial training and robust evaluation.

The paper's Tables 3 and 4 train against, and report accuracy under, FGSM and PGD (k = 10) in an
L-inf ball of radius epsilon around inputs in [0, 1] (Madry et al. 2018), with cross entropy.

We implement these by hand rather than using torchattacks: it depends on torchvision, whose wheels pull
a CUDA build of torch. How they are checked (tests/harness/test_attacks.py):

* each fast, batched attack is compared with a slow, obviously-correct reference version
  (``_fgsm_reference``, ``_pgd_reference``) that loops over samples and takes each one's gradient on
  its own, from the same random start (drawn once by ``_random_start``);
* for a linear model with cross entropy, FGSM is compared with its closed form
  ``x + epsilon * sign(W^T (softmax(Wx + b) - onehot(y)))``.

Conventions:

* Inputs ``x`` are floats in [0, 1] of any shape ``(N, ...)`` (models normalize inside). Outputs are
  detached, of ``x``'s dtype, with ``||x_adv - x||_inf <= epsilon`` and ``0 <= x_adv <= 1`` (each
  step is clamped to ``[max(x - epsilon, 0), min(x + epsilon, 1)]``).
* The loss is ``loss_fn(logits, y)`` reduced by the mean over the batch, as in training. Only the
  sign of its gradient is used, which a positive scale (1/N) does not change.
* Gradients come from ``torch.autograd.grad`` with respect to the input only, so parameters'
  ``.grad`` fields are never touched. The model's train/eval mode is left as the caller set it
  (in train mode, BatchNorm running statistics see the attack's forward passes).
* Half-precision logits (under ``torch.autocast``) are cast to float32 before the loss.
* PGD returns the last iterate (Madry et al.), not the iterate of highest loss.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ATTACK_KINDS", "AttackConfig", "attack", "fgsm", "pgd", "robust_accuracy"]

ATTACK_KINDS: tuple[str, ...] = ("fgsm", "pgd")

LossFn = Callable[[Tensor, Tensor], Tensor]


def _check_epsilon(epsilon: object) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise TypeError(f"epsilon must be a real number in [0, 1], got {epsilon!r}")
    value = float(epsilon)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"epsilon must be in [0, 1] (pixel units, inputs in [0, 1]), got {epsilon!r}")
    return value


def _check_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha (step size) must be a real number > 0, got {alpha!r}")
    value = float(alpha)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"alpha (step size) must be finite and > 0, got {alpha!r}")
    return value


def _check_steps(steps: object) -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"steps must be an integer >= 1, got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    return int(steps)


def _check_fgsm_alpha(alpha: float | None, random_start: bool) -> float | None:
    """FGSM's step is epsilon without a random start, and alpha with one (Wong et al. 2020)."""
    if random_start:
        if alpha is None:
            raise ValueError(
                "FGSM with random_start=True needs alpha, the step taken from the random start "
                "(Wong et al. 2020 use alpha = 1.25 * epsilon), got alpha=None"
            )
        return _check_alpha(alpha)
    if alpha is not None:
        raise ValueError(
            f"FGSM uses alpha only with random_start=True (its step is epsilon otherwise), got "
            f"alpha={alpha!r} with random_start=False: drop alpha or set random_start=True"
        )
    return None


def _check_inputs(x: Tensor, y: Tensor) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor with values in [0, 1], got {_describe(x)}")
    if x.ndim < 1 or not isinstance(y, Tensor) or y.ndim < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"x of shape (N, ...) and y of shape (N, ...) must have the same N, got x {_describe(x)} "
            f"and y {_describe(y)}"
        )
    if x.numel() > 0:
        low, high = (float(v) for v in torch.aminmax(x.detach()))
        if not (low >= 0.0 and high <= 1.0):  # also rejects NaN
            raise ValueError(f"x must have values in [0, 1] (models normalize inside), got [{low}, {high}]")


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return repr(value)


@dataclass(frozen=True)
class AttackConfig:
    """One attack's settings; ``to_dict()`` is stored with every adversarial run's results.

    Args:
        kind: ``"fgsm"`` or ``"pgd"``.
        epsilon: radius of the L-inf ball, in pixel units (inputs are in [0, 1]), e.g. 8/255.
        alpha: step size. FGSM uses it only with ``random_start`` (Wong et al. 2020: a uniform start
            in the ball, then one step of alpha); PGD requires it.
        steps: PGD's number of iterations k; FGSM takes exactly one step, so it must be 1.
        random_start: start from a uniform point in the ball. ``None`` resolves to False for FGSM
            and True for PGD (Madry et al. 2018); the resolved value is what is stored.

    Example:
        >>> cfg = AttackConfig("pgd", epsilon=8 / 255, alpha=2 / 255, steps=10)
        >>> cfg.random_start
        True
    """

    kind: str
    epsilon: float
    alpha: float | None = None
    steps: int = 1
    random_start: bool | None = None

    def __post_init__(self) -> None:
        if self.kind not in ATTACK_KINDS:
            raise ValueError(f"unknown attack kind {self.kind!r}; expected one of {ATTACK_KINDS}")
        epsilon = _check_epsilon(self.epsilon)
        steps = _check_steps(self.steps)
        random_start = self.random_start
        if random_start is None:
            random_start = self.kind == "pgd"
        elif not isinstance(random_start, bool):
            raise TypeError(f"random_start must be True, False or None, got {random_start!r}")
        alpha: float | None
        if self.kind == "fgsm":
            if steps != 1:
                raise ValueError(f"FGSM takes one step, so steps must be 1, got steps={steps}")
            alpha = _check_fgsm_alpha(self.alpha, random_start)
        else:
            if self.alpha is None:
                raise ValueError("PGD needs alpha, the step size (e.g. epsilon / 4), got alpha=None")
            alpha = _check_alpha(self.alpha)
            if not random_start and alpha * steps < epsilon:
                warnings.warn(
                    f"PGD without random start cannot reach the ball's boundary: alpha * steps = "
                    f"{alpha} * {steps} = {alpha * steps} < epsilon = {epsilon}; use alpha * steps >= "
                    "epsilon",
                    UserWarning,
                    stacklevel=3,
                )
        # Store plain, resolved values so that to_dict() says exactly what ran.
        object.__setattr__(self, "epsilon", epsilon)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "random_start", random_start)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready); ``AttackConfig(**cfg.to_dict()) == cfg``."""
        return dataclasses.asdict(self)


def _random_start(x: Tensor, epsilon: float, generator: torch.Generator | None = None) -> Tensor:
    """A uniform point of the ball around ``x``, clamped to [0, 1] (Madry et al.; Wong et al.).

    Drawn on the generator's device and moved to ``x``'s, so a CPU generator gives the same start
    whatever device the data are on.
    """
    device = generator.device if generator is not None else x.device
    noise = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    return (x + (2.0 * noise - 1.0) * epsilon).clamp(0.0, 1.0)


def _input_gradient(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn) -> Tensor:
    """Gradient of the mean loss with respect to the input only (parameters' .grad untouched)."""
    with torch.enable_grad():  # attacks must work inside a caller's torch.no_grad() evaluation
        x = x.detach().requires_grad_(True)
        logits = model(x)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        loss = loss_fn(logits, y)
        if loss.ndim != 0:
            raise ValueError(
                f"loss_fn must return a scalar (mean over the batch), got shape {tuple(loss.shape)}"
            )
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _signed_steps(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epsilon: float,
    x_start: Tensor,
    step_size: float,
    steps: int,
    loss_fn: LossFn,
) -> Tensor:
    """``steps`` signed-gradient ascent steps from ``x_start``, each projected on the ball and [0, 1]."""
    x = x.detach()
    lower = (x - epsilon).clamp(min=0.0)
    upper = (x + epsilon).clamp(max=1.0)
    x_adv = x_start.detach()
    for _ in range(steps):
        grad = _input_gradient(model, x_adv, y, loss_fn)
        x_adv = torch.clamp(x_adv + step_size * grad.sign(), min=lower, max=upper)
    return x_adv.detach()


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epsilon: float,
    *,
    alpha: float | None = None,
    random_start: bool = False,
    loss_fn: LossFn = F.cross_entropy,
    generator: torch.Generator | None = None,
) -> Tensor:
    """FGSM: ``x + epsilon * sign(grad_x L)`` (Goodfellow et al. 2015), clamped to [0, 1].

    With ``random_start`` (Wong et al. 2020, "fast is better than free"): a uniform start in the
    ball, then one step of ``alpha``, projected back on the ball and [0, 1].
    """
    epsilon = _check_epsilon(epsilon)
    step_size = _check_fgsm_alpha(alpha, random_start)
    _check_inputs(x, y)
    if random_start:
        assert step_size is not None
        x_start = _random_start(x.detach(), epsilon, generator)
    else:
        x_start, step_size = x, epsilon
    return _signed_steps(model, x, y, epsilon, x_start, step_size, 1, loss_fn)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epsilon: float,
    *,
    alpha: float,
    steps: int,
    random_start: bool = True,
    loss_fn: LossFn = F.cross_entropy,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PGD-k (Madry et al. 2018): ``steps`` steps ``x <- Proj(x + alpha * sign(grad_x L))``.

    The projection is on the L-inf ball of radius ``epsilon`` around ``x`` intersected with [0, 1];
    the start is uniform in the ball when ``random_start``. Returns the last iterate.
    """
    epsilon = _check_epsilon(epsilon)
    alpha = _check_alpha(alpha)
    steps = _check_steps(steps)
    _check_inputs(x, y)
    x_start = _random_start(x.detach(), epsilon, generator) if random_start else x
    return _signed_steps(model, x, y, epsilon, x_start, alpha, steps, loss_fn)


def attack(
    model: nn.Module, x: Tensor, y: Tensor, config: AttackConfig, generator: torch.Generator | None = None
) -> Tensor:
    """Adversarial examples for ``(x, y)`` with the attack ``config`` describes."""
    if not isinstance(config, AttackConfig):
        raise TypeError(f"config must be an AttackConfig, got {type(config).__name__}")
    random_start = bool(config.random_start)  # resolved to a bool by AttackConfig
    if config.kind == "fgsm":
        return fgsm(
            model, x, y, config.epsilon, alpha=config.alpha, random_start=random_start, generator=generator
        )
    assert config.alpha is not None  # AttackConfig requires it for PGD
    return pgd(
        model,
        x,
        y,
        config.epsilon,
        alpha=config.alpha,
        steps=config.steps,
        random_start=random_start,
        generator=generator,
    )


def robust_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    config: AttackConfig,
    *,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> float:
    """Fraction of samples in [0, 1] still classified correctly after the attack.

    ``y`` holds class indices; a sample counts as correct when the argmax of the model's logits on its
    adversarial example equals its label. Calling ``model.eval()`` first is the caller's job.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(y, Tensor) or y.ndim != 1 or y.is_floating_point() or y.is_complex():
        raise ValueError(f"y must be a 1-D tensor of class indices, got {_describe(y)}")
    if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"x must be a non-empty tensor of shape (N, ...) with N = len(y) = {y.shape[0]}, "
            f"got {_describe(x)}"
        )
    correct = 0
    for start in range(0, x.shape[0], batch_size):
        x_batch, y_batch = x[start : start + batch_size], y[start : start + batch_size]
        x_adv = attack(model, x_batch, y_batch, config, generator=generator)
        with torch.no_grad():
            correct += int((model(x_adv).argmax(dim=1) == y_batch).sum())
    return correct / x.shape[0]


def _fgsm_reference(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epsilon: float,
    *,
    alpha: float | None = None,
    start: Tensor | None = None,
    loss_fn: LossFn = F.cross_entropy,
) -> Tensor:
    """Slow FGSM for tests (float32/float64 models): one sample at a time.

    ``start`` is a random start (from ``_random_start``), or None for none.
    """
    out = []
    for i in range(x.shape[0]):
        xi, yi = x[i : i + 1], y[i : i + 1]
        if start is None:
            x_adv, step = xi.clone(), epsilon
        else:
            assert alpha is not None
            x_adv, step = start[i : i + 1].clone(), alpha
        x_adv.requires_grad_(True)
        loss = loss_fn(model(x_adv), yi)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + step * grad.sign()
        x_adv = torch.min(torch.max(x_adv, xi - epsilon), xi + epsilon)
        out.append(x_adv.clamp(0.0, 1.0))
    return torch.cat(out)


def _pgd_reference(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epsilon: float,
    *,
    alpha: float,
    steps: int,
    start: Tensor | None = None,
    loss_fn: LossFn = F.cross_entropy,
) -> Tensor:
    """Slow PGD for tests (float32/float64 models): one sample at a time.

    ``start`` is a random start (from ``_random_start``), or None to start at ``x``.
    """
    out = []
    for i in range(x.shape[0]):
        xi, yi = x[i : i + 1], y[i : i + 1]
        x_adv = (xi if start is None else start[i : i + 1]).clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = loss_fn(model(x_adv), yi)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = x_adv.detach() + alpha * grad.sign()
            x_adv = torch.min(torch.max(x_adv, xi - epsilon), xi + epsilon)
            x_adv = x_adv.clamp(0.0, 1.0)
        out.append(x_adv)
    return torch.cat(out)
