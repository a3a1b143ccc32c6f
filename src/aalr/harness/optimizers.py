"""The optimizers and optimizer settings the harness's methods share.

``sgd``, ``adam`` and ``adamw`` build torch's SGD, Adam and AdamW from a method's options (popping
those they use and recording every value in a plain dict); :class:`SGDHD` is hypergradient descent
(Baydin et al. 2018), with :class:`SGDHDReference`, its slow float64 version, to test it against.
The ``*_float``/``*_int`` checks raise the messages every method's settings share.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import SGD, Adam, AdamW, Optimizer

SGD_MOMENTUM = 0.9
ADAM_BETAS = (0.9, 0.999)
HYPERGRAD_BETA = 1e-3
SGD_OPTIONS = ("momentum", "nesterov")  # the options sgd() takes
ADAM_OPTIONS = ("betas", "eps")  # the options adam() and adamw() take
# AdamW's decoupled weight decay for the methods built on it: 0.05, the value of the DeiT, Swin and
# ConvNeXt recipes (Touvron et al. 2021; Liu et al. 2021, 2022) and of timm's AdamW training scripts;
# torch's AdamW default is 0.01, Loshchilov & Hutter's own values depend on the run length.
ADAMW_WEIGHT_DECAY = 0.05


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------
def positive_float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}: {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{what} must be finite and > 0, got {value!r}")
    return number


def nonnegative_float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}: {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} must be finite and >= 0, got {value!r}")
    return number


def positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}: {value!r}")
    if int(value) < 1:
        raise ValueError(f"{what} must be >= 1, got {value!r}")
    return int(value)


def check_momentum(value: object) -> float:
    """SGD's momentum: a real number in [0, 1) (NaN, a string or a bool is a mistake, not a setting)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"momentum must be a number in [0, 1), got {value!r}")
    return float(value)


def check_flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {value!r}")
    return value


def sgd(
    params: list[nn.Parameter], lr: float, weight_decay: float, options: dict[str, Any]
) -> tuple[SGD, dict[str, Any]]:
    """torch's SGD; pops ``momentum`` (default 0.9) and ``nesterov`` (default off) from ``options``.
    Returns the optimizer and every value it was given, for the method's settings."""
    momentum = check_momentum(options.pop("momentum", SGD_MOMENTUM))
    nesterov = check_flag(options.pop("nesterov", False), "nesterov")
    optimizer = SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    return optimizer, {
        "optimizer": "SGD",
        "lr": lr,
        "momentum": momentum,
        "nesterov": nesterov,
        "weight_decay": weight_decay,
    }


def adam(
    params: list[nn.Parameter], lr: float, weight_decay: float, options: dict[str, Any]
) -> tuple[Adam, dict[str, Any]]:
    """torch's Adam; pops ``betas`` (default 0.9, 0.999) and ``eps`` (default 1e-8) from ``options``.
    Returns the optimizer and every value it was given, for the method's settings."""
    return _adam_family(Adam, params, lr, weight_decay, options)


def _adam_family(
    cls: Any, params: list[nn.Parameter], lr: float, weight_decay: float, options: dict[str, Any]
) -> Any:
    """``cls`` (Adam or AdamW) with the options of :func:`adam`, and the values it was given."""
    betas, eps = _adam_options(options)
    optimizer = cls(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return optimizer, {
        "optimizer": cls.__name__,
        "lr": lr,
        "betas": list(betas),
        "eps": eps,
        "weight_decay": weight_decay,
    }


def _adam_options(options: dict[str, Any]) -> tuple[tuple[float, float], float]:
    """Pop and check ``betas`` (default 0.9, 0.999) and ``eps`` (default 1e-8) from ``options``."""
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
    eps = positive_float(options.pop("eps", 1e-8), "eps")
    return betas, eps


def adamw(
    params: list[nn.Parameter], lr: float, weight_decay: float, options: dict[str, Any]
) -> tuple[AdamW, dict[str, Any]]:
    """torch's AdamW (decoupled weight decay); takes the options of :func:`adam`, with its defaults."""
    return _adam_family(AdamW, params, lr, weight_decay, options)


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
        positive_float(lr, "lr")
        nonnegative_float(hypergrad_lr, "hypergrad_lr")
        nonnegative_float(weight_decay, "weight_decay")
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
