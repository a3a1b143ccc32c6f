"""LR schedules the harness's methods share, each written against the source it follows.

* :class:`WarmupCosine` and :class:`WarmupStableDecay`: multipliers of the peak LR by optimizer step,
  for ``torch.optim.lr_scheduler.LambdaLR``; the formulas of Hugging Face transformers'
  ``get_cosine_schedule_with_warmup`` and ``get_wsd_schedule`` (tested against them).
* :class:`GreedyLR`: transformers' ``GreedyLR`` (``lr_scheduler_type="greedy"``), rewritten so that the
  harness does not need transformers (tested against it on the same loss sequences).
* :class:`LRRangeTest`: fastai's ``LRFinder`` and its ``valley`` and ``minimum`` suggestions.

Plain Python on plain numbers: every ``state_dict`` holds numbers, strings and lists only, so
``torch.load(..., weights_only=True)`` reads it back.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from torch.optim import Optimizer

__all__ = [
    "DECAY_SHAPES",
    "SUGGESTIONS",
    "GreedyLR",
    "LRRangeTest",
    "WarmupCosine",
    "WarmupStableDecay",
    "minimum",
    "valley",
]

DECAY_SHAPES = ("1-sqrt", "linear")
SUGGESTIONS = ("valley", "minimum")


def _count(value: object, what: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def _real(value: object, what: str, *, low: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if float(value) < low or (strict and float(value) == low):
        raise ValueError(f"{what} must be {'>' if strict else '>='} {low:g}, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# fixed schedules: multipliers for LambdaLR
# ---------------------------------------------------------------------------------------------
class WarmupCosine:
    """Linear warmup from 0 to 1 over ``warmup_steps``, then half a cosine from 1 to 0 at ``total_steps``.

    ``self(step)`` is the multiplier of the peak LR for the batch after ``step`` optimizer steps, as
    ``LambdaLR`` asks: transformers' ``get_cosine_schedule_with_warmup`` (num_cycles 0.5), whose first
    step has LR 0. Past ``total_steps`` it stays 0 (transformers' would rise again).
    """

    def __init__(self, total_steps: int, warmup_steps: int) -> None:
        self.total_steps = _count(total_steps, "total_steps", 1)
        self.warmup_steps = _count(warmup_steps, "warmup_steps")
        if self.warmup_steps >= self.total_steps:
            raise ValueError(
                f"warmup_steps ({warmup_steps}) must be fewer than the budget's total_steps ({total_steps})"
            )

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


class WarmupStableDecay:
    """Warmup-stable-decay: linear warmup from 0 over ``warmup_steps``, the peak LR, then a decay to 0
    over the last ``decay_steps`` of ``total_steps``, shaped ``1 - sqrt(progress)`` (the "1-sqrt"
    cooldown of Hägele et al. 2024, which they found better than linear) or ``1 - progress``.

    transformers' ``get_wsd_schedule`` (warmup_type "linear", min_lr_ratio 0) step for step; 0 after
    the budget.
    """

    def __init__(self, total_steps: int, warmup_steps: int, decay_steps: int, decay: str = "1-sqrt") -> None:
        self.total_steps = _count(total_steps, "total_steps", 1)
        self.warmup_steps = _count(warmup_steps, "warmup_steps")
        self.decay_steps = _count(decay_steps, "decay_steps", 1)
        if decay not in DECAY_SHAPES:
            raise ValueError(f"decay must be one of {', '.join(DECAY_SHAPES)}, got {decay!r}")
        self.decay = decay
        if self.warmup_steps + self.decay_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps ({warmup_steps}) + decay_steps ({decay_steps}) exceed the budget's "
                f"total_steps ({total_steps})"
            )

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        decay_start = self.total_steps - self.decay_steps
        if step < decay_start:
            return 1.0
        if step >= self.total_steps:
            return 0.0
        progress = (step - decay_start) / self.decay_steps
        return max(0.0, 1.0 - math.sqrt(progress) if self.decay == "1-sqrt" else 1.0 - progress)


# ---------------------------------------------------------------------------------------------
# GreedyLR (transformers.optimization.GreedyLR)
# ---------------------------------------------------------------------------------------------
class GreedyLR:
    """GreedyLR: divide the LR by ``factor`` after more than ``patience`` improving steps, multiply it
    by ``factor`` after more than ``patience`` steps without improvement, within [min_lr, max_lr]; after
    ``reset_start`` reductions at ``min_lr`` start over from the initial LR.

    transformers 5's ``GreedyLR`` (``lr_scheduler_type="greedy"``; Subramanian et al., "GreedyLR: A
    Novel Adaptive Learning Rate Scheduler", arXiv 2512.14527) rewritten rule for rule, with its
    defaults, so that the harness does not need transformers; a test feeds both the same losses and
    compares every LR. Differences: one ``min_lr`` and ``max_lr`` for every param group, checked
    arguments, no printing, and a ``state_dict`` of plain values only (it does not hold the optimizer's
    LRs: the optimizer's own state does). ``step(loss)`` returns what it did: ``"increase"``,
    ``"decrease"``, ``"reset"`` or ``"none"``.

    The Trainer steps it after each evaluation with the evaluation loss (``metric_for_best_model``
    "loss"); what a caller passes, and how often, is the caller's choice (see the harness methods).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        mode: str = "min",
        factor: float = 0.95,
        patience: int = 10,
        threshold: float = 1e-6,
        threshold_mode: str = "abs",
        cooldown: int = 0,
        warmup: int = 0,
        min_lr: float = 1e-3,
        max_lr: float = 1.0,
        eps: float = 1e-8,
        smooth: bool = False,
        window_size: int = 50,
        reset_start: int = 500,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.factor = _real(factor, "factor", strict=True)
        if self.factor >= 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        self.min_lr = _real(min_lr, "min_lr")
        self.max_lr = _real(max_lr, "max_lr", strict=True)
        if self.min_lr > self.max_lr:
            raise ValueError(f"min_lr ({min_lr!r}) must be at most max_lr ({max_lr!r})")
        if not isinstance(smooth, bool):
            raise ValueError(f"smooth must be true or false, got {smooth!r}")
        self.optimizer = optimizer
        self.mode = mode
        self.threshold_mode = threshold_mode
        self.patience = _count(patience, "patience")
        self.threshold = _real(threshold, "threshold")
        self.cooldown = _count(cooldown, "cooldown")
        self.warmup = _count(warmup, "warmup")
        self.eps = _real(eps, "eps")
        self.smooth = smooth
        self.window_size = _count(window_size, "window_size", 1)
        self.reset_start_original = _count(reset_start, "reset_start", 1)
        self.initial_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self._start_over()
        self.last_epoch = 0

    def _start_over(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.num_good_epochs = 0
        self.cooldown_counter = 0
        self.warmup_counter = 0
        self.reset_start = self.reset_start_original
        self.window: list[float] = []  # the last window_size values, when smooth
        self.window_sum = 0.0  # their running sum, added and subtracted as transformers does

    def step(self, metrics: float) -> str:
        """Take one value of the watched metric (a loss in mode "min"); adjust the LR; say what it did."""
        current = float(metrics)
        if self.smooth:
            self.window.append(current)
            self.window_sum += current
            if len(self.window) > self.window_size:
                self.window_sum -= self.window.pop(0)
            current = self.window_sum / len(self.window)
        self.last_epoch += 1
        action = "none"
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = self.num_good_epochs = 0
        elif self.warmup_counter > 0:
            self.warmup_counter -= 1
            self.num_bad_epochs = self.num_good_epochs = 0
        else:
            if self._is_better(current):
                self.best = current
                self.num_bad_epochs = 0
                self.num_good_epochs += 1
            else:
                self.num_bad_epochs += 1
                self.num_good_epochs = 0
            if self.num_good_epochs > self.patience:
                action = self._increase()
                self.warmup_counter = self.warmup
                self.num_good_epochs = 0
            elif self.num_bad_epochs > self.patience:
                action = self._reduce()
                self.cooldown_counter = self.cooldown
                self.num_bad_epochs = 0
        return action

    def _is_better(self, current: float) -> bool:
        if self.mode == "min":
            bar = (
                self.best * (1.0 - self.threshold)
                if self.threshold_mode == "rel"
                else self.best - self.threshold
            )
            return current < bar
        bar = (
            self.best * (1.0 + self.threshold) if self.threshold_mode == "rel" else self.best + self.threshold
        )
        return current > bar

    def _reduce(self) -> str:
        all_at_min = True
        for group in self.optimizer.param_groups:
            old = float(group["lr"])
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                group["lr"] = new
            if group["lr"] > self.min_lr:
                all_at_min = False
        if all_at_min:
            self.reset_start -= 1
            if self.reset_start <= 0:
                for group, lr in zip(self.optimizer.param_groups, self.initial_lrs, strict=True):
                    group["lr"] = lr
                self._start_over()
                return "reset"
        return "decrease"

    def _increase(self) -> str:
        for group in self.optimizer.param_groups:
            old = float(group["lr"])
            new = min(old / self.factor, self.max_lr)
            if new - old > self.eps:
                group["lr"] = new
        self.reset_start = self.reset_start_original
        return "increase"

    _STATE = (
        "best",
        "num_bad_epochs",
        "num_good_epochs",
        "cooldown_counter",
        "warmup_counter",
        "reset_start",
        "window",
        "window_sum",
        "last_epoch",
        "initial_lrs",
    )

    def state_dict(self) -> dict[str, Any]:
        """The counters (plain values); the settings are the constructor's, the LRs the optimizer's."""
        return {key: list(value) if isinstance(value, list) else value for key, value in self._items()}

    def _items(self) -> list[tuple[str, Any]]:
        return [(key, getattr(self, key)) for key in self._STATE]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or set(state) != set(self._STATE):
            raise ValueError(f"GreedyLR state must be a dict of {', '.join(self._STATE)}, got {state!r}")
        self.best = float(state["best"])
        for key in ("num_bad_epochs", "num_good_epochs", "cooldown_counter", "warmup_counter", "reset_start"):
            setattr(self, key, _count(state[key], f"GreedyLR state {key}"))
        self.last_epoch = _count(state["last_epoch"], "GreedyLR state last_epoch")
        self.window = [float(v) for v in state["window"]]
        self.window_sum = float(state["window_sum"])
        self.initial_lrs = [float(v) for v in state["initial_lrs"]]


# ---------------------------------------------------------------------------------------------
# the LR range test (fastai's LRFinder)
# ---------------------------------------------------------------------------------------------
def valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's ``valley`` suggestion (its default since 2.5): the LR about two thirds down the longest
    strictly decreasing run of losses (ESRI's rule); the loop as fastai writes it."""
    n = len(losses)
    max_start, max_end = 0, 0
    lengths = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lengths[i] < lengths[j] + 1:
                lengths[i] = lengths[j] + 1
            if lengths[max_end] < lengths[i]:
                max_end = i
                max_start = max_end - lengths[max_end]
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def minimum(lrs: list[float], losses: list[float]) -> float:
    """fastai's ``minimum`` suggestion: a tenth of the LR at the lowest (smoothed) loss."""
    return float(lrs[min(range(len(losses)), key=losses.__getitem__)]) / 10


_SUGGEST = {"valley": valley, "minimum": minimum}


class LRRangeTest:
    """The LR range test (Smith 2017) as fastai's ``Learner.lr_find`` runs it, one step at a time.

    Step ``i`` (from 0) trains at ``start_lr * (end_lr / start_lr) ** (i / num_it)``; after each step
    :meth:`observe` takes its loss and keeps fastai's smoothed loss (an exponential moving average with
    ``beta`` 0.98, debiased). The test ends after ``num_it`` steps, or once the smoothed loss exceeds
    ``stop_factor`` (4) times its minimum; also, unlike fastai 2, at a non-finite loss (fastai 1 did
    too): a NaN would end a harness run. :meth:`suggestion` applies fastai's rule to the recorded
    (LR, smoothed loss) pairs without the first ``num_it // 10`` and the last 5, cut at the first
    non-finite one: ``"valley"`` (fastai's default) or ``"minimum"`` (LR at the minimum / 10).
    Defaults are fastai 2's (``lr_find(start_lr=1e-7, end_lr=10, num_it=100)``).
    """

    def __init__(
        self,
        *,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_it: int = 100,
        stop_factor: float = 4.0,
        beta: float = 0.98,
        suggestion: str = "valley",
    ) -> None:
        self.start_lr = _real(start_lr, "start_lr", strict=True)
        self.end_lr = _real(end_lr, "end_lr", strict=True)
        if self.end_lr <= self.start_lr:
            raise ValueError(f"end_lr ({end_lr!r}) must be above start_lr ({start_lr!r})")
        self.num_it = _count(num_it, "num_it", 1)
        self.stop_factor = _real(stop_factor, "stop_factor", low=1.0, strict=True)
        self.beta = _real(beta, "beta")
        if self.beta >= 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta!r}")
        if suggestion not in SUGGESTIONS:
            raise ValueError(f"suggestion must be one of {', '.join(SUGGESTIONS)}, got {suggestion!r}")
        self.suggestion_rule = suggestion
        self.lrs: list[float] = []  # the LR of each step taken
        self.losses: list[float] = []  # the smoothed loss after it
        self.average = 0.0
        self.best = math.inf
        self.stopped = ""  # why the test ended early, if it did

    def lr_at(self, step: int) -> float:
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / self.num_it)

    @property
    def steps(self) -> int:
        return len(self.lrs)

    @property
    def done(self) -> bool:
        return bool(self.stopped) or self.steps >= self.num_it

    @property
    def lr(self) -> float:
        """The LR of the next step."""
        return self.lr_at(self.steps)

    def observe(self, loss: float) -> bool:
        """The training loss of the step just taken (at :attr:`lr`); True when the test is over."""
        if self.done:
            raise RuntimeError("the LR range test is over; read suggestion()")
        loss = float(loss)
        lr = self.lr
        self.average = loss + self.beta * (self.average - loss)  # torch.lerp(loss, average, beta)
        smoothed = self.average / (1 - self.beta ** (self.steps + 1))
        self.lrs.append(lr)
        self.losses.append(smoothed)
        if not math.isfinite(smoothed):
            self.stopped = f"non-finite loss at LR {lr:.3g}"
            return True
        self.best = min(self.best, smoothed)
        if smoothed > self.stop_factor * self.best:
            self.stopped = (
                f"smoothed loss {smoothed:.4g} > {self.stop_factor:g} x its minimum {self.best:.4g}"
            )
            return True
        return self.done

    def suggestion(self) -> float:
        """fastai's suggestion from the points recorded; ``start_lr`` when no finite loss was seen."""
        cut = slice(self.num_it // 10, max(self.num_it // 10, self.steps - 5))
        lrs, losses = self.lrs[cut], self.losses[cut]
        first_bad = next((i for i, value in enumerate(losses) if math.isnan(value)), len(losses))
        lrs, losses = lrs[:first_bad], losses[:first_bad]
        if not losses:  # a test too short for fastai's cut: every finite point
            pairs = [
                (lr, loss) for lr, loss in zip(self.lrs, self.losses, strict=True) if math.isfinite(loss)
            ]
            if not pairs:
                return self.start_lr
            lrs, losses = [lr for lr, _ in pairs], [loss for _, loss in pairs]
        return _SUGGEST[self.suggestion_rule](lrs, losses)

    def state_dict(self) -> dict[str, Any]:
        return {
            "lrs": list(self.lrs),
            "losses": list(self.losses),
            "average": self.average,
            "best": self.best,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or set(state) != {"lrs", "losses", "average", "best", "stopped"}:
            raise ValueError(
                f"LR range test state must hold lrs, losses, average, best, stopped; got {state!r}"
            )
        if len(state["lrs"]) != len(state["losses"]) or len(state["lrs"]) > self.num_it:
            raise ValueError("LR range test state: lrs and losses must be lists of equal length <= num_it")
        self.lrs = [float(v) for v in state["lrs"]]
        self.losses = [float(v) for v in state["losses"]]
        self.average, self.best = float(state["average"]), float(state["best"])
        self.stopped = str(state["stopped"])
