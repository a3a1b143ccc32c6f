"""The decision machine of AALR (Algorithm 1): plain Python, no torch.

The policy sees one number per epoch, the epoch's training loss, and answers with a
:class:`Decision`: what to do with the model (nothing, save the best checkpoint, restore the
initial weights, restore the best checkpoint) and the LR of the next epoch, as an exponent ``k``
with ``lr = eta0 * 2**k``. Keeping the exponent as an integer makes "the LR is always eta0 times
a power of two" true by construction, and keeps the state plain numbers.

Rules (our defaults; the paper's other readings are options of :class:`AALRConfig`):

Phase 1 (find a stable start), patience ``phase1_patience`` (10):
  an epoch *fails* when its loss is not finite or is above the best loss ``L*`` (equal passes).
  A failure halves the LR, restores the initial weights and optimizer state, sets ``L*`` back to
  the initial loss (``restart_best="initial"``; ``"keep"`` keeps the best loss seen) and resets the
  counter. Otherwise ``L* = L`` and the counter grows. When it reaches the patience: checkpoint,
  phase 2, LR doubled, ``p = 1``.

Phase 2 (optimistic binary exploration):
  decisions fall at the end of windows of ``p + 1`` epochs (``window="p+1"``, the paper's prose and
  its section 4.1) or ``p`` epochs (``window="p"``, its pseudocode). At a window's end: ``L < L*``
  (strict) -> checkpoint, ``L* = L``, double the LR, ``p = 1``. Otherwise the first miss gives one
  more window at the same LR and ``p``; the second halves the LR and doubles ``p`` (and with
  ``rollback=True``, our addition, also restores the best checkpoint).
  A non-finite loss is acted on at the end of the epoch it appears in: restore the best
  checkpoint, halve the LR, double ``p``, start a new window.

``initial_loss=None`` (unknown loss of the initial model): phase 1's first epoch, and the first
epoch after each restart, can then fail only by a non-finite loss; its loss becomes ``L*``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Action = Literal["none", "save_best", "restore_initial", "restore_best"]
ACTIONS: tuple[str, ...] = ("none", "save_best", "restore_initial", "restore_best")
WINDOWS: tuple[str, ...] = ("p+1", "p")
RESTART_BEST: tuple[str, ...] = ("initial", "keep")


@dataclass(frozen=True)
class AALRConfig:
    """The settings of Algorithm 1. One source of defaults; saved with every result.

    Args:
        phase1_patience: consecutive non-failing epochs that end phase 1 (the paper: 10).
        window: ``"p+1"`` (default: windows of p+1 epochs, as the paper's prose and section 4.1)
            or ``"p"`` (the pseudocode's "train for p epochs").
        rollback: also restore the best checkpoint when phase 2 halves the LR after two missed
            windows. The paper restores only on a non-finite loss; a doubled LR can leave a network
            dead with a finite loss, from which halving alone never recovers.
        restart_best: ``L*`` after a phase-1 restart: ``"initial"`` (the initial loss, default: the
            restarted model is the initial one) or ``"keep"`` (the best loss seen so far).
    """

    phase1_patience: int = 10
    window: str = "p+1"
    rollback: bool = False
    restart_best: str = "initial"

    def __post_init__(self) -> None:
        if isinstance(self.phase1_patience, bool) or not isinstance(self.phase1_patience, int):
            raise TypeError(f"phase1_patience must be an int >= 1, got {self.phase1_patience!r}")
        if self.phase1_patience < 1:
            raise ValueError(f"phase1_patience must be >= 1, got {self.phase1_patience}")
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {self.window!r}")
        if not isinstance(self.rollback, bool):
            raise TypeError(f"rollback must be True or False, got {self.rollback!r}")
        if self.restart_best not in RESTART_BEST:
            raise ValueError(f"restart_best must be one of {RESTART_BEST}, got {self.restart_best!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """What the tuner must do after an epoch: first ``action``, then train at ``eta0 * 2**lr_exponent``."""

    action: str
    lr_exponent: int
    reason: str


def check_loss_value(initial_loss: object, name: str = "initial_loss") -> float | None:
    """Validate an optional finite real number (bools and strings are refused)."""
    if initial_loss is None:
        return None
    if isinstance(initial_loss, bool) or not isinstance(initial_loss, numbers.Real):
        raise TypeError(f"{name} must be a finite real number or None, got {initial_loss!r}")
    value = float(initial_loss)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite (the loss of the initial model), got {value}")
    return value


@dataclass
class AALRPolicy:
    """Algorithm 1 as a pure function of the losses seen. ``step(loss)`` once per epoch.

    Example::

        policy = AALRPolicy(initial_loss=2.3)
        for loss in losses:
            decision = policy.step(loss)   # act on decision.action, then set the LR
    """

    initial_loss: float | None = None
    config: AALRConfig = field(default_factory=AALRConfig)
    # Progress; plain numbers so the state round-trips.
    phase: int = 1
    epoch: int = 0
    lr_exponent: int = 0
    best: float | None = None
    stable_epochs: int = 0  # phase 1: consecutive epochs without a failure
    patience: int = 1  # phase 2: p
    window_epoch: int = 0  # phase 2: epochs trained in the current window
    missed_windows: int = 0  # phase 2: windows in a row that ended without improvement (0 or 1)

    def __post_init__(self) -> None:
        self.initial_loss = check_loss_value(self.initial_loss)
        if not isinstance(self.config, AALRConfig):
            raise TypeError(f"config must be an AALRConfig, got {type(self.config).__name__}")
        if self.epoch == 0 and self.best is None:
            self.best = self.initial_loss

    @property
    def window_length(self) -> int:
        return self.patience + 1 if self.config.window == "p+1" else self.patience

    def step(self, loss: float) -> Decision:
        """Take one epoch's training loss; return the decision for the next epoch."""
        loss = float(loss)
        self.epoch += 1
        if self.phase == 1:
            return self._phase1(loss)
        return self._phase2(loss)

    def _phase1(self, loss: float) -> Decision:
        if not math.isfinite(loss) or (self.best is not None and loss > self.best):
            why = "not finite" if not math.isfinite(loss) else f"{loss:.6g} > best {self.best:.6g}"
            self.lr_exponent -= 1
            self.stable_epochs = 0
            if self.config.restart_best == "initial":
                self.best = self.initial_loss
            return Decision(
                "restore_initial",
                self.lr_exponent,
                f"phase 1: loss {why}; halve LR, restart from the initial weights and optimizer",
            )
        self.best = loss
        self.stable_epochs += 1
        if self.stable_epochs < self.config.phase1_patience:
            return Decision(
                "none",
                self.lr_exponent,
                f"phase 1: stable epoch {self.stable_epochs}/{self.config.phase1_patience}",
            )
        self.phase = 2
        self.lr_exponent += 1
        self.patience = 1
        self.window_epoch = 0
        self.missed_windows = 0
        return Decision(
            "save_best",
            self.lr_exponent,
            f"phase 1 done after {self.config.phase1_patience} stable epochs; checkpoint, double LR, p=1",
        )

    def _phase2(self, loss: float) -> Decision:
        if not math.isfinite(loss):
            self.lr_exponent -= 1
            self.patience *= 2
            self.window_epoch = 0
            self.missed_windows = 0
            return Decision(
                "restore_best",
                self.lr_exponent,
                f"phase 2: loss not finite; restore best, halve LR, p={self.patience}",
            )
        self.window_epoch += 1
        if self.window_epoch < self.window_length:
            return Decision(
                "none", self.lr_exponent, f"phase 2: window epoch {self.window_epoch}/{self.window_length}"
            )
        self.window_epoch = 0
        assert self.best is not None  # phase 2 starts with a finite best loss
        if loss < self.best:
            previous = self.best
            self.best = loss
            self.lr_exponent += 1
            self.patience = 1
            self.missed_windows = 0
            return Decision(
                "save_best",
                self.lr_exponent,
                f"phase 2: {loss:.6g} < best {previous:.6g}; checkpoint, double LR, p=1",
            )
        if self.missed_windows == 0:
            self.missed_windows = 1
            return Decision(
                "none",
                self.lr_exponent,
                f"phase 2: {loss:.6g} >= best {self.best:.6g}; one more window at this LR",
            )
        self.missed_windows = 0
        self.lr_exponent -= 1
        self.patience *= 2
        action = "restore_best" if self.config.rollback else "none"
        rollback = "restore best, " if self.config.rollback else ""
        return Decision(
            action,
            self.lr_exponent,
            f"phase 2: {loss:.6g} >= best {self.best:.6g} twice; {rollback}halve LR, p={self.patience}",
        )

    _STATE_KEYS = (
        "initial_loss",
        "phase",
        "epoch",
        "lr_exponent",
        "best",
        "stable_epochs",
        "patience",
        "window_epoch",
        "missed_windows",
    )

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {key: getattr(self, key) for key in self._STATE_KEYS}
        state["config"] = self.config.to_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [key for key in (*self._STATE_KEYS, "config") if key not in state]
        if missing:
            raise ValueError(f"AALR policy state is missing keys {missing}")
        self.config = AALRConfig(**state["config"])
        for key in self._STATE_KEYS:
            setattr(self, key, state[key])
