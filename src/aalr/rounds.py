"""Step mode's round: the losses of the optimizer steps since the last decision, and the spike rule.

Plain Python, no torch, like the policy: the tuner feeds it one (already all-reduced) loss per
optimizer step and asks whether the round is over. A round ends after ``every_n_steps`` steps, at
once on a non-finite step loss, or at once on a *spike*:

    the mean loss of the last ``SPIKE_WINDOW`` steps (fewer if a round is shorter) is nearer the
    initial loss than the best round's loss ``L*``.

A diverging network climbs back towards the loss of an untrained one; noise around ``L*`` stays far
below the midpoint of ``L*`` and the initial loss once training has made progress. So the rule needs
no scale of its own and one constant, the window; it is silent while ``L*`` is still the initial
loss (nothing learnt yet, nothing to tell a spike from). Without a known initial loss the first
round's loss stands in for it.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any

from aalr.policy import is_finite_real, nearer_initial

SPIKE_WINDOW = 5  # steps whose mean loss the spike rule judges: one bad batch alone is not a spike
_EPOCH_WORD = re.compile(r"\bepoch(s?)\b")


def in_rounds(reason: str) -> str:
    """A decision's reason worded in rounds: the policy counts rounds and words them as epochs (its usual
    round); where a round is N optimizer steps, "phase 1: stable epoch 3/10" reads "stable round 3/10"."""
    return _EPOCH_WORD.sub(r"round\1", reason)


@dataclass
class Round:
    """The current round of a step-mode tuner."""

    every_n_steps: int
    total: float = 0.0
    steps: int = 0
    recent: list[float] = field(default_factory=list)  # the last SPIKE_WINDOW step losses

    def __post_init__(self) -> None:
        if isinstance(self.every_n_steps, numbers.Integral) and not isinstance(self.every_n_steps, bool):
            self.every_n_steps = int(self.every_n_steps)  # NumPy and other integral types
        if isinstance(self.every_n_steps, bool) or not isinstance(self.every_n_steps, int):
            raise TypeError(f"every_n_steps must be an int >= 1 or None, got {self.every_n_steps!r}")
        if self.every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {self.every_n_steps}")

    @property
    def window(self) -> int:
        return min(SPIKE_WINDOW, self.every_n_steps)

    @property
    def mean(self) -> float:
        return self.total / self.steps if self.steps else math.nan

    @property
    def full(self) -> bool:
        return self.steps >= self.every_n_steps

    def add(self, loss: float) -> None:
        self.total += loss
        self.steps += 1
        self.recent = [*self.recent, loss][-self.window :]

    def spike(self, best: float | None, initial: float | None) -> str | None:
        """The reason words if the last steps look like a divergence, else None."""
        if best is None or initial is None or not initial > best or len(self.recent) < self.window:
            return None
        recent = sum(self.recent) / len(self.recent)
        if not nearer_initial(recent, best, initial):
            return None
        return (
            f"spike: the last {len(self.recent)} steps' mean loss {recent:.6g} is nearer the initial loss "
            f"{initial:.6g} than the best {best:.6g}"
        )

    def reset(self) -> None:
        self.total, self.steps, self.recent = 0.0, 0, []

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total, "steps": self.steps, "recent": list(self.recent)}

    def load_state_dict(self, state: object, longest: int | None = None) -> None:
        """Refuses a bad state with a ValueError naming what is wrong, before changing anything.
        ``longest``: the most steps a round can last (``every_n_steps``, or more where the tuner lets the
        last round of a budget run on to its end); a saved round in progress has fewer."""
        longest = self.every_n_steps if longest is None else longest
        if not isinstance(state, dict) or set(state) != {"total", "steps", "recent"}:
            raise ValueError(
                f"AALR state: the round must be a dict with total, steps and recent, got {state!r}"
            )
        total, steps, recent = state["total"], state["steps"], state["recent"]
        if not is_finite_real(total):
            raise ValueError(f"AALR state: the round's total must be a finite number, got {total!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps < longest:
            raise ValueError(f"AALR state: the round's steps must be an int in [0, {longest}), got {steps!r}")
        if not isinstance(recent, list) or len(recent) > min(steps, self.window):
            raise ValueError(f"AALR state: the round's recent losses must be a list of <= {self.window}")
        if not all(is_finite_real(value) for value in recent):
            raise ValueError(f"AALR state: the round's recent losses must be finite numbers, got {recent!r}")
        self.total, self.steps, self.recent = float(total), steps, [float(v) for v in recent]
