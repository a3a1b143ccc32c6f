"""The decision machine of AALR (Algorithm 1): plain Python, no torch.

The policy sees one number per epoch, the epoch's training loss, and answers with a
:class:`Decision`: what to do with the model (nothing, save the best checkpoint, restore the
initial weights, restore the best checkpoint) and the LR of the next epoch, as an exponent ``k``
with ``lr = eta0 * 2**k``. Keeping the exponent as an integer makes "the LR is always eta0 times
a power of two" true by construction, and keeps the state plain numbers.

Two named sets of rules (:data:`RULES`; ``rules=`` of :class:`aalr.AALR`): ``"paper"``, Algorithm 1
as below, and ``"plus"`` (AALR+, the tuner's default, the recommended rules): ``rollback=True``,
``phase1_failure="rollback"`` and, given a budget, the ``"cosine"`` finish. A bare ``AALRConfig()``
is the paper's rules (its ``finish`` acts only with ``total_epochs``).

Rules (our readings where the paper is ambiguous; the others are options of :class:`AALRConfig`):

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

AALR+ (``total_epochs`` given; our addition): a finish that uses the budget, since Algorithm 1
knows nothing of how many epochs remain and a short run often stops in a high-LR window.
``finish="steps"``: at 75 % of the epochs restore the best checkpoint unless the current loss is
better (then it becomes the checkpoint), multiply the LR by 0.1, stop exploring, and multiply by
0.1 again at 90 %. ``finish="linear"``: once the phase-2 window in progress (in phase 1: the
stable epochs still needed) would not end before the budget does, do the same restore-unless-better
and decay the LR linearly towards zero over the epochs that remain (no constant but the budget).
``finish="cosine"``: at half the budget the same restore-unless-better (a restore also takes the LR
back to the one that trained the checkpoint, if lower), then a cosine decay of the LR towards zero over
the epochs that remain.
If the finish falls on a non-finite epoch, it still starts there when a checkpoint exists: the
epoch's restore-and-halve happens and the finish's factor applies on top. Without a checkpoint
(phase 1 with restarts, or before any stable epoch), a non-finite epoch, or a failed one with no
stable epoch since the (re)start, restarts first and the finish starts after; a failed epoch that
follows stable ones starts the finish from the current weights, which a restart would throw away.
A non-finite loss during the finish still restores the best checkpoint and halves.

``phase1_failure="rollback"`` (our addition; AALR+ in the harness uses it): a phase-1 failure
after a stable epoch restores the last stable epoch's checkpoint, halves the LR and starts phase 2
with ``p = 2``, instead of restarting from the initial weights. With a budget, a restart throws
away every epoch trained so far, and a single epoch's small rise (noise, late in phase 1) is a
poor signal to judge the LR by; phase 2's windows are a better one.

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
FINISHES: tuple[str, ...] = ("steps", "linear", "cosine", "none")
PHASE1_FAILURES: tuple[str, ...] = ("restart", "rollback")
ROLLBACK_ON: tuple[str, ...] = ("miss", "collapse")
NON_FINITE = "loss not finite"  # the words of every decision on a non-finite loss
FINISH_STEPS = ((0.75, 0.1), (0.90, 0.01))  # ("steps" finish) fraction of the budget -> LR scale
FINISH_COSINE_START = 0.5  # ("cosine" finish) the fraction of the budget at which it starts

# The named sets of rules (``rules=`` of :class:`aalr.AALR` and :meth:`AALRConfig.for_rules`): the settings
# each one fixes. Every other setting keeps its default. "plus" (AALR+, the recommended rules) is what
# the harness runs as ``aalr-plus``; "paper" is Algorithm 1 of the paper exactly.
RULES: dict[str, dict[str, Any]] = {
    "plus": {"rollback": True, "phase1_failure": "rollback", "finish": "cosine"},
    "paper": {"rollback": False, "phase1_failure": "restart", "finish": "none"},
}


@dataclass(frozen=True)
class AALRConfig:
    """The settings of Algorithm 1. One source of defaults; saved with every result.

    Args:
        phase1_patience: consecutive non-failing epochs that end phase 1 (the paper: 10).
        phase1_share: with a budget (``total_epochs``), phase 1 ends after at most this share of it in
            stable epochs (at least 1): :attr:`phase1_epochs`. None (default, the paper): always
            ``phase1_patience``. A short run otherwise spends its whole budget in phase 1, never
            exploring a larger LR.
        window: ``"p+1"`` (default: windows of p+1 epochs, as the paper's prose and section 4.1)
            or ``"p"`` (the pseudocode's "train for p epochs").
        rollback: also restore the best checkpoint when phase 2 halves the LR after two missed
            windows. The paper restores only on a non-finite loss; a doubled LR can leave a network
            dead with a finite loss, from which halving alone never recovers.
        rollback_on: when ``rollback`` restores on a halving: ``"miss"`` (default: every halving after
            two missed windows) or ``"collapse"`` (only when the window's loss is nearer the initial
            loss than ``L*``, :func:`nearer_initial`: a network the doubled LR broke, not a noisy miss,
            which keeps training from where it is at the halved LR).
        ceiling: after a halving from exponent ``c``, doubling back to ``c`` needs ``n`` improving
            windows in a row at ``c - 1`` first, ``n`` = 1 after the first halving from ``c`` and twice
            as many after each further one (a doubling that keeps failing is tried ever less often).
            False (default): every improving window doubles.
        restart_best: ``L*`` after a phase-1 restart: ``"initial"`` (the initial loss, default: the
            restarted model is the initial one) or ``"keep"`` (the best loss seen so far).
        phase1_failure: what a phase-1 failure does: ``"restart"`` (the paper: halve the LR and
            start again from the initial weights and optimizer state) or ``"rollback"`` (our
            addition, the default of AALR+: every stable phase-1 epoch is checkpointed; a failure
            after one restores it, halves the LR and goes on to phase 2 with ``p = 2``, as a phase-2
            halving does. Nothing trained is thrown away, and phase 2's windows, not one epoch,
            judge the LR from there. A failure before any stable epoch restarts as in the paper).
        total_epochs: the epoch budget, for the AALR+ finish (None: the paper's rules, unchanged).
        finish: how AALR+ ends the run: ``"steps"``, ``"linear"``, ``"cosine"`` (see the module docstring) or
            ``"none"`` (no finish even with a budget: ``total_epochs`` then only warns when a step
            runs past it).
        max_exponent, min_exponent: bounds on ``k`` in ``lr = eta0 * 2**k`` (None: unbounded). A
            doubling or halving that would leave them holds ``k`` at the bound (the decision's reason
            says so); everything else (patience, windows, restores) goes on as without bounds. The
            tuner derives them from ``max_lr`` / ``min_lr``.
    """

    phase1_patience: int = 10
    phase1_share: float | None = None
    window: str = "p+1"
    rollback: bool = False
    rollback_on: str = "miss"
    ceiling: bool = False
    restart_best: str = "initial"
    phase1_failure: str = "restart"
    total_epochs: int | None = None
    finish: str = "steps"
    max_exponent: int | None = None
    min_exponent: int | None = None

    @classmethod
    def for_rules(cls, rules: str, **settings: Any) -> AALRConfig:
        """The config of a named set of rules (:data:`RULES`), with ``settings`` on top; a setting
        given as ``None`` takes the rules' value (so callers can pass their optional arguments through)."""
        if rules not in RULES:
            raise ValueError(f"rules must be one of {tuple(RULES)}, got {rules!r}")
        chosen = {
            **RULES[rules],
            **{k: v for k, v in settings.items() if v is not None or k not in RULES[rules]},
        }
        return cls(**chosen)

    def __post_init__(self) -> None:
        for name in (
            "phase1_patience",
            "total_epochs",
            "max_exponent",
            "min_exponent",
        ):  # NumPy and other integral types become int
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):
                object.__setattr__(self, name, int(value))
        if isinstance(self.phase1_patience, bool) or not isinstance(self.phase1_patience, int):
            raise TypeError(f"phase1_patience must be an int >= 1, got {self.phase1_patience!r}")
        if self.phase1_patience < 1:
            raise ValueError(f"phase1_patience must be >= 1, got {self.phase1_patience}")
        if self.phase1_share is not None:
            share = self.phase1_share
            if isinstance(share, bool) or not isinstance(share, numbers.Real):
                raise TypeError(f"phase1_share must be None or a number in (0, 1], got {share!r}")
            if not 0 < float(share) <= 1:
                raise ValueError(f"phase1_share must be None or in (0, 1], got {share!r}")
            object.__setattr__(self, "phase1_share", float(share))
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {self.window!r}")
        if not isinstance(self.rollback, bool):
            raise TypeError(f"rollback must be True or False, got {self.rollback!r}")
        if self.rollback_on not in ROLLBACK_ON:
            raise ValueError(f"rollback_on must be one of {ROLLBACK_ON}, got {self.rollback_on!r}")
        if not isinstance(self.ceiling, bool):
            raise TypeError(f"ceiling must be True or False, got {self.ceiling!r}")
        if self.restart_best not in RESTART_BEST:
            raise ValueError(f"restart_best must be one of {RESTART_BEST}, got {self.restart_best!r}")
        if self.phase1_failure not in PHASE1_FAILURES:
            raise ValueError(f"phase1_failure must be one of {PHASE1_FAILURES}, got {self.phase1_failure!r}")
        if self.total_epochs is not None and (
            isinstance(self.total_epochs, bool)
            or not isinstance(self.total_epochs, int)
            or self.total_epochs < 1
        ):
            raise ValueError(f"total_epochs must be None or an integer >= 1, got {self.total_epochs!r}")
        if self.finish not in FINISHES:
            raise ValueError(f"finish must be one of {FINISHES}, got {self.finish!r}")
        for name in ("max_exponent", "min_exponent"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be None or an int, got {value!r}")
        if self.max_exponent is not None and self.max_exponent < 0:
            raise ValueError(
                f"max_exponent must be >= 0 (the LR may not start above its bound), got {self.max_exponent}"
            )
        if self.min_exponent is not None and self.min_exponent > 0:
            raise ValueError(
                f"min_exponent must be <= 0 (the LR may not start below its bound), got {self.min_exponent}"
            )

    @property
    def phase1_epochs(self) -> int:
        """The stable epochs that end phase 1: ``phase1_patience``, or with a budget and
        ``phase1_share``, at most that share of the budget (rounded down, at least 1)."""
        if self.phase1_share is None or self.total_epochs is None:
            return self.phase1_patience
        share = math.floor(self.total_epochs * self.phase1_share + 1e-9)  # 0.3 * 10 is 2.9999999999999996
        return max(1, min(self.phase1_patience, share))

    @property
    def finishes(self) -> bool:
        """Whether the AALR+ finish applies: a budget and a finish other than ``"none"``."""
        return self.total_epochs is not None and self.finish != "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """What the tuner must do after an epoch: first ``action``, then train at
    ``eta0 * 2**lr_exponent * lr_scale`` (``lr_scale`` is 1 except in the AALR+ finish)."""

    action: str
    lr_exponent: int
    reason: str
    lr_scale: float = 1.0


def nearer_initial(loss: float, best: float | None, initial: float | None) -> bool:
    """Whether ``loss`` is nearer the initial loss than the best ``L*`` (a collapse, not a noisy miss):
    above their midpoint, once training has made progress (``initial > best``); False otherwise."""
    if best is None or initial is None or not initial > best:
        return False
    return loss > (best + initial) / 2


def is_finite_real(value: object) -> bool:
    """A real number (not a bool) that is finite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def real_as_float(value: numbers.Real, name: str) -> float:
    """``float(value)``, with an int too large for a float reported as a ValueError naming ``name``."""
    try:
        return float(value)
    except OverflowError as error:
        raise ValueError(f"{name} must fit in a float, got an int of {len(str(value))} digits") from error


def check_loss_value(initial_loss: object, name: str = "initial_loss") -> float | None:
    """Validate an optional finite real number (bools and strings are refused)."""
    if initial_loss is None:
        return None
    if isinstance(initial_loss, bool) or not isinstance(initial_loss, numbers.Real):
        raise TypeError(f"{name} must be a finite real number or None, got {initial_loss!r}")
    value = real_as_float(initial_loss, name)
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
    finish_epoch: int | None = None  # AALR+: the epoch whose decision started the finish
    # ``ceiling``: the exponent a halving last came down from, how many halvings came from it in a row,
    # and the improving windows in a row below it since the last
    ceiling_exponent: int | None = None
    ceiling_failures: int = 0
    ceiling_wins: int = 0
    best_exponent: int | None = None  # the exponent that trained the best checkpoint (the "cosine" finish)

    def __post_init__(self) -> None:
        self.initial_loss = check_loss_value(self.initial_loss)
        if not isinstance(self.config, AALRConfig):
            raise TypeError(f"config must be an AALRConfig, got {type(self.config).__name__}")
        if self.epoch == 0 and self.best is None:
            self.best = self.initial_loss

    @property
    def window_length(self) -> int:
        return self.patience + 1 if self.config.window == "p+1" else self.patience

    @property
    def needs_initial_snapshot(self) -> bool:
        """Whether a restart from the initial weights can still come (the tuner frees them when not)."""
        # the finish never restarts (it checkpoints when it starts, even in phase 1)
        return self.phase == 1 and self.finish_epoch is None and not self._phase1_checkpointed

    @property
    def has_checkpoint(self) -> bool:
        """Whether a best checkpoint exists: phase 2, the AALR+ finish, or a stable phase-1 epoch with
        ``phase1_failure="rollback"``."""
        return self.phase == 2 or self.finish_epoch is not None or self._phase1_checkpointed

    @property
    def _phase1_checkpointed(self) -> bool:
        # phase1_failure="rollback" checkpoints every stable phase-1 epoch, and a failure after one leaves
        # phase 1; so in phase 1 a checkpoint exists exactly when the stable count is above zero
        return self.config.phase1_failure == "rollback" and self.stable_epochs > 0

    @property
    def lr_scale(self) -> float:
        """The AALR+ finish's factor on ``eta0 * 2**k`` for the next epoch (1 outside the finish)."""
        total, start = self.config.total_epochs, self.finish_epoch
        if total is None or start is None or not self.config.finishes:
            return 1.0
        if self.config.finish == "linear":
            return max(total - self.epoch, 0) / (total - start + 1)
        if self.config.finish == "cosine":  # past the budget (a run that goes on): 0, as "linear"
            span = total - start + 1
            return (
                0.0
                if span < 1
                else 0.5 * (1.0 + math.cos(math.pi * min(self.epoch - start + 1, span) / span))
            )
        scale = 1.0
        for fraction, factor in FINISH_STEPS:
            if self.epoch >= _milestone(total, fraction):
                scale = factor
        return scale

    def step(self, loss: float, diverged: str | None = None) -> Decision:
        """Take one epoch's (round's) training loss; return the decision for the next one.

        ``diverged``: the round was cut short by a divergence seen within it (a spike, in the tuner's
        step mode), with these words as its reason: it is acted on as a non-finite loss is.
        """
        loss = math.nan if diverged else float(loss)
        decision = self._step(loss)
        if diverged:  # every non-finite rule says "loss not finite"; say what happened instead
            decision = Decision(
                decision.action,
                decision.lr_exponent,
                decision.reason.replace(NON_FINITE, diverged),
                decision.lr_scale,
            )
        return decision

    def _step(self, loss: float) -> Decision:
        self.epoch += 1
        exponent_before, stable_before = self.lr_exponent, self.stable_epochs
        if self.finish_epoch is not None:
            decision = self._finishing(loss)
        elif self.phase == 1:
            decision = self._phase1(loss)
        else:
            decision = self._phase2(loss)
        if self.finish_epoch is None and self._finish_due(loss, decision, stable_before):
            decision = self._start_finish(loss, decision, doubled=self.lr_exponent > exponent_before)
        if decision.action == "save_best":
            self.best_exponent = exponent_before
        reason = decision.reason + self._hold_at_bounds()
        return Decision(decision.action, self.lr_exponent, reason, self.lr_scale)

    def _hold_at_bounds(self) -> str:
        """Hold ``k`` within the config's bounds; the words to add to the decision's reason."""
        high, low = self.config.max_exponent, self.config.min_exponent
        if high is not None and self.lr_exponent > high:
            self.lr_exponent = high
            return " (LR held at its upper bound)"
        if low is not None and self.lr_exponent < low:
            self.lr_exponent = low
            return " (LR held at its lower bound)"
        return ""

    # -- AALR+ ---------------------------------------------------------------------------------
    def _finish_due(self, loss: float, decision: Decision, stable_before: int) -> bool:
        total = self.config.total_epochs
        if total is None or not self.config.finishes:
            return False
        if decision.action == "restore_initial" and (not math.isfinite(loss) or stable_before == 0):
            # A failure with no checkpoint to go back to: on a non-finite epoch there are no weights to
            # keep; with no stable epoch since the (re)start they are worse than the initial ones and one
            # epoch is lost. So the restart comes first; the finish starts on the next epoch that allows it.
            # (After stable epochs a finite failure starts the finish from the current weights: a
            # restart would throw the stable epochs away.) With a checkpoint, the finish starts on
            # time, from the restored checkpoint and the halved LR.
            return False
        if self.config.finish == "steps":
            return self.epoch >= _milestone(total, FINISH_STEPS[0][0])
        if self.config.finish == "cosine":
            return self.epoch >= _milestone(total, FINISH_COSINE_START)
        # "linear": once the window in progress (or the one just begun) would not end before the budget;
        # in phase 1 the window is the rest of the stable epochs it needs
        if self.phase == 2:
            remaining = self.window_length - self.window_epoch
        else:
            remaining = self.config.phase1_epochs - self.stable_epochs
        return self.epoch < total and self.epoch + remaining >= total

    def _start_finish(self, loss: float, decision: Decision, *, doubled: bool) -> Decision:
        self.finish_epoch = self.epoch
        why = f"AALR+ finish ({self.config.finish}) at epoch {self.epoch}/{self.config.total_epochs}"
        if not math.isfinite(loss):  # _finish_due: only with a checkpoint, which the decision restores
            return Decision(
                "restore_best", self.lr_exponent, f"{why}: loss not finite; restore the best checkpoint"
            )
        if decision.action == "save_best":
            if doubled:
                self.lr_exponent -= 1  # take back the doubling: decay from the LR that just improved
            return Decision("save_best", self.lr_exponent, f"{why}: this epoch improved; checkpoint")
        if self.phase == 1 or self.best is None or loss < self.best:
            # phase 1 has no best checkpoint yet; and a loss better than the best becomes the checkpoint.
            # Either way the checkpoint is the current weights, so L* is their loss (in phase 1 after a
            # failure it is above the L* the failure compared with)
            self.best = loss
            return Decision("save_best", self.lr_exponent, f"{why}: current loss {loss:.6g}; checkpoint")
        if self.config.finish == "cosine" and self.best_exponent is not None:
            # a long decay from an LR still being tried (a doubling's window) would train at it for
            # epochs: decay from the LR that trained the restored checkpoint instead
            self.lr_exponent = min(self.lr_exponent, self.best_exponent)
        return Decision("restore_best", self.lr_exponent, f"{why}: restore the best checkpoint")

    def _finishing(self, loss: float) -> Decision:
        if not math.isfinite(loss):
            self.lr_exponent -= 1
            return Decision(
                "restore_best", self.lr_exponent, "AALR+ finish: loss not finite; restore best, halve LR"
            )
        if self.best is None or loss < self.best:
            self.best = loss
            return Decision(
                "save_best", self.lr_exponent, f"AALR+ finish: {loss:.6g} is the best; checkpoint"
            )
        return Decision("none", self.lr_exponent, "AALR+ finish")

    def _phase1(self, loss: float) -> Decision:
        if not math.isfinite(loss) or (self.best is not None and loss > self.best):
            why = "not finite" if not math.isfinite(loss) else f"{loss:.6g} > best {self.best:.6g}"
            checkpointed = self._phase1_checkpointed
            self.lr_exponent -= 1
            self.stable_epochs = 0
            if checkpointed:  # L* stays: it is the restored checkpoint's loss
                self._enter_phase2(patience=2)
                return Decision(
                    "restore_best",
                    self.lr_exponent,
                    f"phase 1: loss {why}; restore the last stable epoch, halve LR, phase 2 with p=2",
                )
            if self.config.restart_best == "initial":
                self.best = self.initial_loss
            return Decision(
                "restore_initial",
                self.lr_exponent,
                f"phase 1: loss {why}; halve LR, restart from the initial weights and optimizer",
            )
        self.best = loss
        self.stable_epochs += 1
        if self.stable_epochs < self.config.phase1_epochs:
            why = f"phase 1: stable epoch {self.stable_epochs}/{self.config.phase1_epochs}"
            if self.config.phase1_failure == "rollback":
                return Decision("save_best", self.lr_exponent, f"{why}; checkpoint")
            return Decision("none", self.lr_exponent, why)
        self.lr_exponent += 1
        self._enter_phase2(patience=1)
        return Decision(
            "save_best",
            self.lr_exponent,
            f"phase 1 done after {self.config.phase1_epochs} stable epochs; checkpoint, double LR, p=1",
        )

    def _enter_phase2(self, patience: int) -> None:
        self.phase = 2
        self.patience = patience
        self.window_epoch = 0
        self.missed_windows = 0

    def _halving_from_here(self) -> None:
        """``ceiling``: count a phase-2 halving from the current exponent (before it is halved)."""
        if self.ceiling_exponent == self.lr_exponent:
            self.ceiling_failures += 1
        else:
            self.ceiling_exponent, self.ceiling_failures = self.lr_exponent, 1
        self.ceiling_wins = 0

    def _phase2(self, loss: float) -> Decision:
        if not math.isfinite(loss):
            self._halving_from_here()
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
            self.patience = 1
            self.missed_windows = 0
            if self.config.ceiling and self.ceiling_exponent == self.lr_exponent + 1:
                self.ceiling_wins += 1
                needed = 2 ** (self.ceiling_failures - 1)
                if self.ceiling_wins < needed:
                    return Decision(
                        "save_best",
                        self.lr_exponent,
                        f"phase 2: {loss:.6g} < best {previous:.6g}; checkpoint, p=1, LR kept: improving "
                        f"window {self.ceiling_wins}/{needed} before retrying the LR that failed "
                        f"{self.ceiling_failures} times",
                    )
            self.ceiling_wins = 0
            self.lr_exponent += 1
            return Decision(
                "save_best",
                self.lr_exponent,
                f"phase 2: {loss:.6g} < best {previous:.6g}; checkpoint, double LR, p=1",
            )
        self.ceiling_wins = 0  # improving windows count in a row
        if self.missed_windows == 0:
            self.missed_windows = 1
            return Decision(
                "none",
                self.lr_exponent,
                f"phase 2: {loss:.6g} >= best {self.best:.6g}; one more window at this LR",
            )
        self.missed_windows = 0
        self._halving_from_here()
        self.lr_exponent -= 1
        self.patience *= 2
        restore = self.config.rollback and (
            self.config.rollback_on == "miss" or nearer_initial(loss, self.best, self.initial_loss)
        )
        action = "restore_best" if restore else "none"
        rollback = "restore best, " if restore else ""
        if self.config.rollback and not restore:
            rollback = "no collapse: keep training, "
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
        "finish_epoch",
        "ceiling_exponent",
        "ceiling_failures",
        "ceiling_wins",
        "best_exponent",
    )

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {key: getattr(self, key) for key in self._STATE_KEYS}
        state["config"] = self.config.to_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # states saved before AALR+ (the finish) and the ceiling existed
        state = {
            "finish_epoch": None,
            "ceiling_exponent": None,
            "ceiling_failures": 0,
            "ceiling_wins": 0,
            "best_exponent": None,
            **state,
        }
        missing = [key for key in (*self._STATE_KEYS, "config") if key not in state]
        if missing:
            raise ValueError(f"AALR policy state is missing keys {missing}")
        if not isinstance(state["config"], dict):
            raise ValueError(f"AALR policy state: config must be a dict, got {state['config']!r}")
        try:
            config = AALRConfig(**state["config"])
        except TypeError as error:
            raise ValueError(f"AALR policy state: bad config {state['config']!r}: {error}") from error
        _check_policy_state(state)  # everything is checked before anything is changed
        self.config = config
        for key in self._STATE_KEYS:
            value = state[key]
            if key in ("initial_loss", "best") and value is not None:
                value = float(value)
            setattr(self, key, value)


def _check_policy_state(state: dict[str, Any]) -> None:
    """Refuse a corrupted policy state with a message naming the key, the value and what is allowed."""

    def is_int(value: object, low: int | None = None) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and (low is None or value >= low)

    def bad(key: str, allowed: str) -> ValueError:
        return ValueError(f"AALR policy state: {key} must be {allowed}, got {state[key]!r}")

    if state["phase"] not in (1, 2) or isinstance(state["phase"], bool):
        raise bad("phase", "1 or 2")
    for key, low in (("epoch", 0), ("stable_epochs", 0), ("window_epoch", 0), ("patience", 1)):
        if not is_int(state[key], low):
            raise bad(key, f"an int >= {low}")
    if state["patience"] & (state["patience"] - 1):
        raise bad("patience", "a power of two")
    if not is_int(state["lr_exponent"]):
        raise bad("lr_exponent", "an int")
    if state["missed_windows"] not in (0, 1) or isinstance(state["missed_windows"], bool):
        raise bad("missed_windows", "0 or 1")
    if state["finish_epoch"] is not None and not is_int(state["finish_epoch"], 1):
        raise bad("finish_epoch", "None or an int >= 1")
    for key in ("ceiling_exponent", "best_exponent"):
        if state[key] is not None and not is_int(state[key]):
            raise bad(key, "None or an int")
    for key in ("ceiling_failures", "ceiling_wins"):
        if not is_int(state[key], 0):
            raise bad(key, "an int >= 0")
    for key in ("initial_loss", "best"):
        if state[key] is not None and not is_finite_real(state[key]):
            raise bad(key, "None or a finite number")


def _milestone(total: int, fraction: float) -> int:
    """The epoch (1-based, after whose step) at which a fraction of the budget is reached."""
    return max(1, math.ceil(fraction * total))
