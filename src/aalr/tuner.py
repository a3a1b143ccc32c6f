"""AALR: binds the decision machine (:mod:`aalr.policy`) to a model and an optimizer.

The tuner carries decisions out: it restores snapshots, sets the LR of every param group
(keeping their ratios to group 0), averages the loss over ranks under ``torch.distributed`` and
keeps a history with the reason of every decision.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
import sys
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from aalr.policy import AALRConfig, AALRPolicy, check_loss_value, is_finite_real, real_as_float
from aalr.rounds import Round, in_rounds
from aalr.snapshot import DirectorySnapshots, MemorySnapshots, SnapshotStore, cpu_copy, state_nbytes

logger = logging.getLogger("aalr")

STATE_FORMAT = 1


def as_loss(value: object, name: str = "loss") -> float:
    """A loss as a float: accepts a Python/NumPy real number or a 0-d tensor, nothing else."""
    if isinstance(value, torch.Tensor):
        if value.ndim != 0:
            raise ValueError(
                f"{name} must be a 0-d tensor (one number), got a tensor of shape {tuple(value.shape)}"
            )
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real number, got a tensor of dtype {value.dtype}")
        if value.is_meta:  # torch's own error comes from deep inside item()
            raise ValueError(f"{name} is a tensor on the meta device, which holds no value")
        return float(value.detach().item())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a float, an int or a 0-d tensor, got {type(value).__name__}: {value!r}"
        )
    return real_as_float(value, name)


def _set_group_lr(group: dict[str, Any], lr: float) -> None:
    # Some optimizers keep the LR as a tensor (capturable / compiled steps): update it in place.
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr


# The tuner's options that are the policy's settings (AALRConfig's), and all its keyword options
# besides the budget (integrations pass them through).
_POLICY_OPTIONS = (
    "phase1_patience",
    "phase1_share",
    "window",
    "rollback",
    "rollback_on",
    "ceiling",
    "restart_best",
    "phase1_failure",
    "finish",
)
TUNER_OPTIONS = (
    "rules",
    "max_lr",
    "min_lr",
    *_POLICY_OPTIONS,
    "snapshot_dir",
    "sync_distributed",
    "verbose",
    "spike_rollback",
    "every_n_steps",
    "total_rounds",
    "total_steps",
)


def check_settings(*, total_epochs: int | None = None, **options: Any) -> None:
    """Check the tuner's settings that need no model or optimizer (an integration's, made before
    training starts); raises as :class:`AALR` would. ``max_lr`` / ``min_lr`` are checked against the
    optimizer's LR only when the tuner is made."""
    unknown = sorted(set(options) - set(TUNER_OPTIONS))
    if unknown:
        raise TypeError(f"unknown AALR options {unknown}; the options are {list(TUNER_OPTIONS)}")
    for name in ("sync_distributed", "verbose", "spike_rollback"):
        if name in options and not isinstance(options[name], bool):
            raise TypeError(f"{name} must be True or False, got {options[name]!r}")
    for name in ("max_lr", "min_lr"):
        _check_bound(options.get(name), name)
    policy_options = {k: v for k, v in options.items() if k in _POLICY_OPTIONS}
    AALRConfig.for_rules(options.get("rules", "plus"), total_epochs=total_epochs, **policy_options)


class AALR:
    """The Automated Adaptive Learning Rate tuner, for any torch optimizer.

    Call :meth:`step` once per round (an epoch, or N optimizer steps) with that round's mean
    training loss; the tuner may restore weights and optimizer state, and sets the next round's LR.

    Args:
        model: the module being trained; its ``state_dict`` is what snapshots hold.
        optimizer: any ``torch.optim.Optimizer``. ``eta0`` is param group 0's LR now; every group
            keeps its current ratio to group 0.
        initial_loss: the training loss of the initial model (e.g. :func:`aalr.mean_loss` over the
            training set), the first best loss ``L*``. ``None``: unknown; the first epoch of phase 1
            (and of each restart) then fails only on a non-finite loss.
        rules: ``"plus"`` (default, the recommended rules, AALR+: ``rollback=True``,
            ``phase1_failure="rollback"`` and, when ``total_epochs`` is given, the budget-aware
            ``finish="cosine"``) or ``"paper"`` (Algorithm 1 of the paper exactly: no rollback,
            phase-1 restarts, no finish). An option given explicitly overrides the rules' value.
        total_epochs: the budget in epochs (rounds): AALR+'s finish uses it, and a step past it
            warns. ``None``: no budget.
        every_n_steps, total_rounds, total_steps: step mode (call :meth:`observe` every optimizer
            step): a decision every ``every_n_steps`` steps, on their mean loss, and the budget as
            rounds or steps. The budget is kept in steps (``total_rounds * every_n_steps``): the last
            round runs on to ``total_steps``, and a round that a spike or a non-finite loss ended early
            gives its untaken steps to the end of the run, so the finish ends on the last step.
        spike_rollback: step mode: end the round at once on a spike (see :mod:`aalr.rounds`).
        max_lr, min_lr: optional bounds on param group 0's LR (other groups keep their ratio): a
            doubling above ``max_lr`` or a halving below ``min_lr`` holds the LR at the last power of
            two times ``eta0`` within the bound. The AALR+ finish's decay multiplies on top.
        phase1_patience, phase1_share, window, rollback, rollback_on, ceiling, restart_best,
            phase1_failure, finish: see :class:`aalr.AALRConfig` (``rollback``, ``phase1_failure``,
            ``finish`` and ``phase1_share`` default to the rules' values).
        snapshot_dir: keep snapshots as files in this directory instead of CPU memory.
        sync_distributed: under ``torch.distributed``, decide on the mean loss over ranks (default),
            so every rank takes the same decision; the initial loss is averaged over ranks too.
        verbose: log every decision at WARNING (Python prints it with no logging set up). By
            default restores and restarts are logged at WARNING and the other decisions at INFO,
            on the ``"aalr"`` logger (under ``torch.distributed``, by rank 0 only).

    Example::

        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        tuner = aalr.AALR(model, optimizer, initial_loss=aalr.mean_loss(model, loader), total_epochs=30)
        for epoch in range(30):
            loss = train_one_epoch(model, optimizer)   # mean training loss of the epoch
            tuner.step(loss)                           # may restore weights; sets the next LR
        tuner.load_best()                              # the best checkpoint back into the model

    Snapshots: the construction-time weights and optimizer state (the restart point of phase 1,
    freed once no restart can come) and the best checkpoint, copied to the CPU.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        initial_loss: float | torch.Tensor | None = None,
        *,
        rules: str = "plus",
        total_epochs: int | None = None,
        every_n_steps: int | None = None,
        total_rounds: int | None = None,
        total_steps: int | None = None,
        spike_rollback: bool = True,
        max_lr: float | None = None,
        min_lr: float | None = None,
        phase1_patience: int = 10,
        phase1_share: float | None = None,
        window: str = "p+1",
        rollback: bool | None = None,
        rollback_on: str = "miss",
        ceiling: bool = False,
        restart_best: str = "initial",
        phase1_failure: str | None = None,
        finish: str | None = None,
        snapshot_dir: str | os.PathLike[str] | None = None,
        sync_distributed: bool = True,
        verbose: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        for attribute in ("param_groups", "state_dict", "load_state_dict"):
            if not hasattr(optimizer, attribute):
                raise TypeError(
                    f"optimizer must be a torch.optim.Optimizer (it lacks {attribute!r}), "
                    f"got {type(optimizer).__name__}"
                )
        groups = optimizer.param_groups
        if len(groups) == 0:
            raise ValueError("optimizer has no param groups; give it the model's parameters")
        lrs = [float(group["lr"]) for group in groups]
        for index, lr in enumerate(lrs):
            if not math.isfinite(lr) or lr < 0:
                raise ValueError(f"param group {index} has LR {lr}; LRs must be finite and >= 0")
        if lrs[0] <= 0:
            raise ValueError(f"param group 0's LR is eta0 and must be > 0, got {lrs[0]}")
        check_settings(sync_distributed=sync_distributed, verbose=verbose, spike_rollback=spike_rollback)
        _check_parameters(model, optimizer)
        self.round = None if every_n_steps is None else Round(every_n_steps)
        self._budget_name, budget = _budget(total_epochs, total_rounds, total_steps, every_n_steps)
        # Step mode with a budget counts it in steps, so that the finish ends at the run's last step
        # whatever cut rounds short: see _round_ends and _rebudget.
        self.total_steps: int | None = None
        if self.round is not None and budget is not None:
            self.total_steps = (
                int(total_steps) if total_steps is not None else budget * self.round.every_n_steps
            )
        # Without bounds, a long run of non-finite losses would halve the LR to exactly 0.0, and a long
        # run of improvements double it past float's range (then even ``lr`` raises): every group's LR
        # stays a positive, finite, normal float.
        float_range = _float_range_exponents(lrs)
        loss0 = None if initial_loss is None else check_loss_value(as_loss(initial_loss, "initial_loss"))
        config = AALRConfig.for_rules(
            rules,
            phase1_patience=phase1_patience,
            phase1_share=phase1_share,
            window=window,
            rollback=rollback,
            rollback_on=rollback_on,
            ceiling=ceiling,
            restart_best=restart_best,
            phase1_failure=phase1_failure,
            total_epochs=budget,
            finish=finish,
            max_exponent=_tightest(min, lr_exponent_bound(lrs[0], max_lr, "max_lr"), float_range[0]),
            min_exponent=_tightest(max, lr_exponent_bound(lrs[0], min_lr, "min_lr"), float_range[1]),
        )

        self.model = model
        self.optimizer = optimizer
        self.sync_distributed = sync_distributed
        self.verbose = verbose
        self.spike_rollback = spike_rollback
        self.steps_seen = 0  # step mode: optimizer steps observed
        if loss0 is not None:  # every rank must start from the same L*, or their decisions drift apart
            loss0 = self._mean_over_ranks(loss0)
        self.policy = AALRPolicy(initial_loss=loss0, config=config)
        # each group's own starting LR: its LR is group_eta0 * 2**k (* the finish's scale), which keeps
        # the groups' ratios and, unlike lr * ratio, is exact (no 0.30000000000000004)
        self.group_eta0 = list(lrs)
        self._warned_past_budget = False
        self.history: list[dict[str, Any]] = []
        self.snapshots: SnapshotStore = (
            MemorySnapshots() if snapshot_dir is None else DirectorySnapshots(snapshot_dir)
        )
        self.snapshots.put("initial", self._capture())

    # -- what users read ---------------------------------------------------------------------
    @property
    def config(self) -> AALRConfig:
        return self.policy.config

    @property
    def eta0(self) -> float:
        """Param group 0's starting LR."""
        return self.group_eta0[0]

    @property
    def lr(self) -> float:
        """The LR of param group 0 for the next epoch: ``eta0 * 2**k`` (times the AALR+ finish's scale)."""
        return self._lr_from(self.eta0)

    def _lr_from(self, eta0: float) -> float:
        """The next epoch's LR of a param group that started at ``eta0``: exact, ``eta0 * 2**k * scale``."""
        return math.ldexp(eta0, self.policy.lr_exponent) * self.policy.lr_scale

    @property
    def phase(self) -> int:
        """1 (the stable start) or 2 (exploration): where the rules stand. The AALR+ finish keeps the phase
        it began in (with a short budget it can begin in phase 1); :attr:`finishing` says it has begun."""
        return self.policy.phase

    @property
    def finishing(self) -> bool:
        """True from the decision that began the AALR+ finish (``total_epochs`` given, rules with a finish):
        the LR only decays from there."""
        return self.policy.finish_epoch is not None

    @property
    def best_loss(self) -> float | None:
        return self.policy.best

    @property
    def patience(self) -> int:
        return self.policy.patience

    @property
    def epoch(self) -> int:
        return self.policy.epoch

    def snapshot_nbytes(self) -> int:
        """Bytes of tensor data the snapshots hold now (host memory or disk)."""
        return sum(state_nbytes(self.snapshots.get(name)) for name in self.snapshots.names())

    # -- the step ----------------------------------------------------------------------------
    def step(self, loss: float | torch.Tensor) -> dict[str, Any]:
        """Take the round's (epoch's) mean training loss; act; set the next round's LR. Returns the
        history record. In step mode (``every_n_steps``) call :meth:`observe` every step instead."""
        if self.round is not None:
            raise RuntimeError(
                f"this tuner decides every {self.round.every_n_steps} optimizer steps: call observe(loss) "
                "after each step, not step(loss) (or make it without every_n_steps)"
            )
        local = as_loss(loss)
        return self._decide(self._mean_over_ranks(local), local)

    def observe(self, loss: float | torch.Tensor) -> dict[str, Any] | None:
        """Step mode: take one optimizer step's training loss, after ``optimizer.step()``.

        Every ``every_n_steps`` calls the tuner decides on the mean of those losses (a round): it may
        restore weights and optimizer state, and sets the LR of the next round. A non-finite loss, or
        a spike (see :mod:`aalr.rounds`; ``spike_rollback=False`` turns the rule off), ends the round
        at once, acted on as a non-finite round: restore the best checkpoint (in phase 1: restart or
        roll back) and halve the LR. Returns the decision's history record, or None mid-round.

        The loss is read as a float each step (a GPU sync; most loops do it anyway, to log it). Under
        ``torch.distributed`` it is averaged over ranks each step, so that every rank ends its rounds
        at the same step.
        """
        if self.round is None:
            raise RuntimeError(
                "observe(loss) is for a tuner that decides every N optimizer steps: make it with "
                "every_n_steps=N, or call step(loss) once per epoch"
            )
        value = self._mean_over_ranks(as_loss(loss))
        before = self.round.state_dict()
        self.round.add(value)
        diverged = None
        if math.isfinite(value) and self.spike_rollback:
            initial = (
                self.policy.initial_loss if self.policy.initial_loss is not None else self._first_round_loss
            )
            diverged = self.round.spike(self.policy.best, initial)
        if math.isfinite(value) and diverged is None and not self._round_ends(self.steps_seen + 1):
            self.steps_seen += 1
            return None
        mean = self.round.mean if math.isfinite(value) else value
        try:
            record = self._decide(mean, mean, diverged=diverged)
        except BaseException:
            self.round.load_state_dict(before)  # the step is not counted: it can be observed again
            raise
        self.steps_seen += 1
        record["steps"] = self.round.steps
        record["last_step"] = self.steps_seen
        record["spike"] = diverged is not None
        self.round.reset()
        self._rebudget()
        return record

    def _round_ends(self, seen: int) -> bool:
        """Whether the round ends at step ``seen`` (no spike, no non-finite loss): after every_n_steps
        steps; with a step budget, the round that would leave fewer than every_n_steps steps before
        the budget's end goes on to it, so that the last decision falls on the run's last step."""
        assert self.round is not None
        if self.total_steps is None or seen >= self.total_steps:
            return self.round.full or seen == self.total_steps
        return self.round.full and self.total_steps - seen >= self.round.every_n_steps

    def _rebudget(self) -> None:
        """Keep the policy's budget of rounds equal to the rounds decided plus those the steps left
        will make. A round cut short (a spike, a non-finite loss) leaves more steps than it took from
        its every_n_steps: they go to the last round, or once they make a whole round, to one more
        round, so the finish ends at ``total_steps`` instead of training its last steps at LR 0."""
        if self.total_steps is None or self.round is None:
            return
        left = self.total_steps - self.steps_seen
        if left <= 0:
            return  # at the end (or past it: the budget stays, and the next decision warns)
        budget = self.policy.epoch + max(1, left // self.round.every_n_steps)
        if budget != self.policy.config.total_epochs:
            self.policy.config = dataclasses.replace(self.policy.config, total_epochs=budget)

    @property
    def _first_round_loss(self) -> float | None:
        """Without an initial loss, the first decided round's loss stands in for it (the spike rule)."""
        for record in self.history:
            if math.isfinite(record["loss"]):
                return float(record["loss"])
        return None

    def _decide(self, value: float, local: float, diverged: str | None = None) -> dict[str, Any]:
        groups = len(self.optimizer.param_groups)
        if groups != len(self.group_eta0):  # before anything changes: the step can be retried
            raise ValueError(
                f"the optimizer has {groups} param groups, but the tuner was made for "
                f"{len(self.group_eta0)}; param groups cannot be added or removed while AALR tunes the "
                "optimizer (make a new tuner)"
            )
        budget = self.config.total_epochs
        if budget is not None and self.policy.epoch >= budget and not self._warned_past_budget:
            self._warned_past_budget = True
            given = self._budget_name
            warnings.warn(
                f"AALR: round {self.policy.epoch + 1} is past the budget of {budget} rounds ({given}); the "
                f"tuner goes on deciding, but AALR+'s finish has ended: give {given.split('=')[0]} the run's "
                "whole length",
                UserWarning,
                stacklevel=3,
            )
        lr_before = self.lr
        phase_before = self.phase
        policy_before = self.policy.state_dict()
        decision = self.policy.step(value, diverged=diverged)
        try:
            if decision.action == "restore_initial":
                self._restore("initial")
            elif decision.action == "restore_best":
                self._restore("best")
            if not self.policy.needs_initial_snapshot and "initial" in self.snapshots.names():
                # no restart can come any more (phase 2, or a phase-1 checkpoint to roll back to): free the
                # restart point before taking the best checkpoint, so the two are never held at once (peak
                # memory: one snapshot, not two)
                self.snapshots.drop("initial")
            if decision.action == "save_best":
                # Reuse the previous best snapshot's CPU buffers: no allocation, pinned copies from a GPU.
                memory = isinstance(self.snapshots, MemorySnapshots)
                previous = self.snapshots.peek("best") if memory else None  # type: ignore[attr-defined]
                self.snapshots.put("best", self._capture(reuse=previous))
        except BaseException:
            # the decision could not be carried out: the policy forgets this epoch, so that the step
            # can be retried once the cause is fixed, and the tuner never believes in a restore or a
            # checkpoint that did not happen
            self.policy.load_state_dict(policy_before)
            raise
        self._apply_lr()
        record: dict[str, Any] = {
            "epoch": self.policy.epoch,
            "phase": phase_before,
            "loss": value,
            "best": self.policy.best,
            "lr": lr_before,
            "next_lr": self.lr,
            "patience": self.policy.patience,
            "action": decision.action,
            "reason": decision.reason,
        }
        if self.round is not None:
            # the rules count rounds, and the policy words its reasons in epochs: say rounds in step mode
            # ("phase 1: stable round 3/10"); "epoch" stays in the record, as in epoch mode, for one key
            record["round"] = record["epoch"]
            record["reason"] = in_rounds(decision.reason)
        if value != local and not (math.isnan(value) and math.isnan(local)):
            record["local_loss"] = local
        self.history.append(record)
        self._log(record)
        return record

    def _log(self, record: dict[str, Any]) -> None:
        """Restores and restarts at WARNING (seen with no logging set up), the rest at INFO (or WARNING
        with ``verbose``); under torch.distributed by rank 0 only, since every rank decides alike."""
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        restored = record["action"] in ("restore_initial", "restore_best")
        level = logging.WARNING if restored or self.verbose else logging.INFO
        logger.log(
            level,
            "AALR round %d: loss %.6g, %s (lr %.6g -> %.6g)",
            record["epoch"],
            record["loss"],
            record["reason"],
            record["lr"],
            record["next_lr"],
        )

    def load_best(self) -> bool:
        """Load the best checkpoint's weights and optimizer state into the model and optimizer.

        Call it when training ends, to keep the weights of the best round rather than the last one's.
        Returns True if a checkpoint was loaded, False if there is none (phase 1 under the paper's
        rules keeps none: there the current weights are those of the best loss so far, since every
        stable round lowers ``L*`` and a failure restarts from the initial weights). The tuner's
        state is unchanged, so training may go on.
        """
        if "best" not in self.snapshots.names():
            return False
        self._restore("best")
        return True

    # -- acting ------------------------------------------------------------------------------
    def _capture(self, reuse: dict[str, Any] | None = None) -> dict[str, Any]:
        reuse = reuse or {}
        return {
            "model": cpu_copy(self.model.state_dict(), reuse.get("model")),
            "optimizer": cpu_copy(self.optimizer.state_dict(), reuse.get("optimizer")),
        }

    def _restore(self, name: str) -> None:
        snapshot = self.snapshots.get(name)
        # load_state_dict copies model tensors into the live parameters; the optimizer keeps the
        # tensors it is given when they already sit on the right device, so give it a copy.
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(cpu_copy(snapshot["optimizer"]))

    @property
    def lr_ratios(self) -> list[float]:
        """Each param group's LR over group 0's (fixed when the tuner is made)."""
        return [lr / self.eta0 for lr in self.group_eta0]

    def _apply_lr(self) -> None:
        for group, eta0 in zip(self.optimizer.param_groups, self.group_eta0, strict=True):
            _set_group_lr(group, self._lr_from(eta0))

    def _mean_over_ranks(self, loss: float) -> float:
        if not (self.sync_distributed and dist.is_available() and dist.is_initialized()):
            return loss
        backend = str(dist.get_backend())
        device = (
            torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend else torch.device("cpu")
        )
        total = torch.tensor([loss], dtype=torch.float64, device=device)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return float(total.item()) / dist.get_world_size()

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly, snapshots included: plain values and CPU tensors.

        Safe to ``torch.save`` and to read back with ``torch.load(..., weights_only=True)``. Like
        torch's own ``state_dict``, it refers to the tuner's tensors (the snapshots, which a later
        checkpoint overwrites in place): save it, or copy it, right away.
        """
        return {
            "format": STATE_FORMAT,
            "group_eta0": list(self.group_eta0),
            "policy": self.policy.state_dict(),
            "history": [dict(record) for record in self.history],
            "snapshots": {name: self.snapshots.get(name) for name in self.snapshots.names()},
            **({} if self.round is None else {"steps": self._steps_state()}),
        }

    def _steps_state(self) -> dict[str, Any]:
        assert self.round is not None
        return {
            "every_n_steps": self.round.every_n_steps,
            "steps_seen": self.steps_seen,
            "round": self.round.state_dict(),
            "total_steps": self.total_steps,
        }

    def _checked_round(self, steps: object) -> tuple[Round | None, int, int | None]:
        """The round, steps seen and step budget of a saved state, checked against this tuner's mode.
        A state saved before the step budget was kept has none: this tuner's is taken."""
        if self.round is None and steps is None:
            return None, 0, None
        if self.round is None or steps is None:
            saved = "decides every N steps" if steps is not None else "decides once per step(loss) call"
            mine = "without" if self.round is None else f"with every_n_steps={self.round.every_n_steps}"
            raise ValueError(f"AALR state is of a tuner that {saved}; this one was made {mine}")
        keys = {"every_n_steps", "steps_seen", "round"}
        if not isinstance(steps, dict) or not keys <= set(steps) <= {*keys, "total_steps"}:
            raise ValueError(
                "AALR state: steps must be a dict of every_n_steps, steps_seen, round (and total_steps), "
                f"got {steps!r}"
            )
        every, seen = steps["every_n_steps"], steps["steps_seen"]
        total = steps.get("total_steps", self.total_steps)
        if isinstance(seen, bool) or not isinstance(seen, int) or seen < 0:
            raise ValueError(f"AALR state: steps_seen must be an int >= 0, got {seen!r}")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 1):
            raise ValueError(f"AALR state: total_steps must be None or an int >= 1, got {total!r}")
        try:
            saved_round = Round(every)
        except (TypeError, ValueError) as error:
            raise ValueError(f"AALR state: {error}") from error
        # with a step budget the last round goes on to its end: up to 2 * every_n_steps - 1 steps
        saved_round.load_state_dict(steps["round"], longest=2 * every - 1 if total is not None else every)
        if every != self.round.every_n_steps:
            logger.warning(
                "AALR: resuming with the saved every_n_steps=%d (constructed with %d)",
                every,
                self.round.every_n_steps,
            )
        if total != self.total_steps:
            logger.warning(
                "AALR: resuming with the saved budget total_steps=%s (constructed with %s)",
                total,
                self.total_steps,
            )
        return saved_round, seen, total

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`. Load the model's and optimizer's own state as usual too."""
        if not isinstance(state, dict):
            raise TypeError(f"AALR state must be a dict from AALR.state_dict(), got {type(state).__name__}")
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"AALR state has format {state.get('format')!r}; this version reads {STATE_FORMAT}"
            )
        # Check everything first, change nothing until all of it is known to be good.
        missing = [key for key in ("policy", "history", "snapshots") if key not in state]
        if "group_eta0" not in state and not {"eta0", "lr_ratios"} <= set(state):
            missing.insert(0, "group_eta0")
        if missing:
            raise ValueError(f"AALR state is missing keys {missing}; have {sorted(state)}")
        group_eta0 = state["group_eta0"] if "group_eta0" in state else _group_eta0_of_old_state(state)
        if (
            not isinstance(group_eta0, list | tuple)
            or not group_eta0
            or not all(is_finite_real(lr) and lr >= 0 for lr in group_eta0)
            or group_eta0[0] == 0
        ):
            raise ValueError(
                "AALR state: group_eta0 (each param group's starting LR) must be a list of finite numbers "
                f">= 0, the first > 0, got {group_eta0!r}"
            )
        if len(group_eta0) != len(self.optimizer.param_groups):
            raise ValueError(
                f"AALR state has {len(group_eta0)} param groups, "
                f"the optimizer has {len(self.optimizer.param_groups)}"
            )
        history = state["history"]
        if not isinstance(history, list) or not all(isinstance(record, dict) for record in history):
            raise ValueError(f"AALR state: history must be a list of dicts, got {type(history).__name__}")
        snapshots = state["snapshots"]
        if not isinstance(snapshots, dict) or not set(snapshots) <= {"initial", "best"}:
            raise ValueError(
                f"AALR state: snapshots must be a dict with keys among ['best', 'initial'], got "
                f"{sorted(snapshots) if isinstance(snapshots, dict) else type(snapshots).__name__}"
            )
        for name, snapshot in snapshots.items():
            self._check_snapshot(name, snapshot)
        if not isinstance(state["policy"], dict):
            raise ValueError(f"AALR state: policy must be a dict, got {type(state['policy']).__name__}")
        policy = AALRPolicy()  # a scratch copy: validates, raises ValueError naming what is wrong
        policy.load_state_dict(state["policy"])
        if policy.needs_initial_snapshot and "initial" not in snapshots:
            raise ValueError("AALR state: phase 1 can still restart, but the state has no 'initial' snapshot")
        if policy.has_checkpoint and "best" not in snapshots:
            where = (
                "phase 2" if policy.phase == 2 else "a checkpoint was taken (phase-1 rollback or the finish)"
            )
            raise ValueError(f"AALR state: {where}, but the state has no 'best' snapshot")
        # in step mode the tuner moves the policy's budget of rounds itself (_rebudget): not a setting
        saved_config = policy.config
        if self.total_steps is not None:
            saved_config = dataclasses.replace(saved_config, total_epochs=self.policy.config.total_epochs)
        if saved_config != self.policy.config:
            logger.warning(
                "AALR: resuming with the saved settings %s (constructed with %s)",
                policy.config,
                self.policy.config,
            )
        saved_round, steps_seen, total_steps = self._checked_round(state.get("steps"))
        copies = {name: cpu_copy(snapshot) for name, snapshot in snapshots.items()}
        self.policy = policy  # the checked copy; nothing can fail from here on
        self.round, self.steps_seen, self.total_steps = saved_round, steps_seen, total_steps
        self.group_eta0 = [float(lr) for lr in group_eta0]
        self.history = [dict(record) for record in history]
        for name in self.snapshots.names():
            self.snapshots.drop(name)
        for name, snapshot in copies.items():
            self.snapshots.put(name, snapshot)
        self._apply_lr()

    def _check_snapshot(self, name: str, snapshot: object) -> None:
        """A snapshot must fit this model and optimizer: same keys and shapes, same param groups."""
        if not isinstance(snapshot, dict) or set(snapshot) != {"model", "optimizer"}:
            raise ValueError(
                f"AALR state: snapshot {name!r} must be a dict with keys 'model' and 'optimizer'"
            )
        live = self.model.state_dict()
        saved = snapshot["model"]
        if not isinstance(saved, dict) or saved.keys() != live.keys():
            keys = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
            raise ValueError(
                f"AALR state: snapshot {name!r} is of another model: its keys {keys} are not the "
                f"model's {sorted(live)}"
            )
        for key, tensor in live.items():
            if not isinstance(tensor, torch.Tensor):  # extra state (get_extra_state) may be anything
                continue
            if not isinstance(saved[key], torch.Tensor) or saved[key].shape != tensor.shape:
                shape = tuple(saved[key].shape) if isinstance(saved[key], torch.Tensor) else saved[key]
                raise ValueError(
                    f"AALR state: snapshot {name!r} is of another model: {key!r} has shape {shape}, "
                    f"the model's has {tuple(tensor.shape)}"
                )
        optimizer_state = snapshot["optimizer"]
        groups = optimizer_state.get("param_groups") if isinstance(optimizer_state, dict) else None
        live_groups = self.optimizer.state_dict()["param_groups"]
        if (
            not isinstance(groups, list)
            or not all(isinstance(g, dict) for g in groups)
            or [len(g.get("params", ())) for g in groups] != [len(g["params"]) for g in live_groups]
        ):
            raise ValueError(
                f"AALR state: snapshot {name!r}'s optimizer state does not match the optimizer's param groups"
            )
        # Another kind of optimizer has other settings (SGD's momentum, Adam's betas): loading its state
        # would break this optimizer's next step. Keys this torch added since are allowed to be missing.
        unknown = sorted({key for g in groups for key in g} - {key for g in live_groups for key in g})
        if unknown:
            raise ValueError(
                f"AALR state: snapshot {name!r} is of another optimizer: its param groups have settings "
                f"{unknown} that this {type(self.optimizer).__name__} does not have"
            )


def _group_eta0_of_old_state(state: dict[str, Any]) -> list[float]:
    """States saved before ``group_eta0`` kept ``eta0`` and each group's ratio to it."""
    eta0, ratios = state["eta0"], state["lr_ratios"]
    if not (is_finite_real(eta0) and eta0 > 0):
        raise ValueError(f"AALR state: eta0 must be a finite number > 0, got {eta0!r}")
    if not isinstance(ratios, list | tuple) or not all(is_finite_real(r) and r >= 0 for r in ratios):
        raise ValueError(f"AALR state: lr_ratios must be a list of finite numbers >= 0, got {ratios!r}")
    return [float(eta0) * float(ratio) for ratio in ratios]


def lr_exponent_bound(eta0: float, bound: float | None, name: str) -> int | None:
    """The exponent ``k`` of the last LR ``eta0 * 2**k`` on the allowed side of ``max_lr`` / ``min_lr``."""
    if bound is None:
        return None
    bound = _check_bound(bound, name)
    if name == "max_lr":
        if bound < eta0:
            raise ValueError(f"max_lr ({bound}) must be >= the optimizer's LR, eta0 = {eta0}")
        k = math.floor(math.log2(bound) - math.log2(eta0))
        while _scaled(eta0, k + 1) <= bound:  # log2's rounding, either way
            k += 1
        while _scaled(eta0, k) > bound:
            k -= 1
        return k
    if bound > eta0:
        raise ValueError(f"min_lr ({bound}) must be <= the optimizer's LR, eta0 = {eta0}")
    k = math.ceil(math.log2(bound) - math.log2(eta0))
    while _scaled(eta0, k - 1) >= bound:
        k -= 1
    while _scaled(eta0, k) < bound:
        k += 1
    return k


def _scaled(eta0: float, k: int) -> float:
    """``eta0 * 2**k``, infinite where it leaves float's range."""
    try:
        return math.ldexp(eta0, k)
    except OverflowError:
        return math.inf


def _budget(
    total_epochs: int | None, total_rounds: int | None, total_steps: int | None, every_n_steps: int | None
) -> tuple[str, int | None]:
    """The budget in rounds, and how the user gave it (for messages)."""
    given = {
        name: value
        for name, value in (
            ("total_epochs", total_epochs),
            ("total_rounds", total_rounds),
            ("total_steps", total_steps),
        )
        if value is not None
    }
    if len(given) > 1:
        raise ValueError(f"give one budget, total_epochs, total_rounds or total_steps, not {sorted(given)}")
    if not given:
        return "", None
    ((name, value),) = given.items()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
    value = int(value)
    if name != "total_steps":
        return f"{name}={value}", value
    if every_n_steps is None:
        raise ValueError("total_steps needs every_n_steps (the steps of a round); or give total_epochs")
    if value < every_n_steps:
        raise ValueError(f"total_steps ({value}) must be at least every_n_steps ({every_n_steps}): one round")
    return f"total_steps={value}", value // every_n_steps


def _tightest(pick: Any, bound: int | None, float_bound: int) -> int:
    return float_bound if bound is None else pick(bound, float_bound)


def _float_range_exponents(group_lrs: list[float]) -> tuple[int, int]:
    """The exponents ``k`` within which ``lr * 2**k`` stays a finite normal float for every group."""
    positive = [lr for lr in group_lrs if lr > 0]
    high = lr_exponent_bound(max(positive), sys.float_info.max, "max_lr")
    low = lr_exponent_bound(min(positive), sys.float_info.min, "min_lr")
    assert high is not None and low is not None
    return high, low


def _check_parameters(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """The optimizer must train this model: a restore loads the model's state_dict, so an optimizer over
    other tensors, or an empty param group, would leave what trains untouched."""
    owned = {id(p) for p in model.parameters()}
    if not owned:
        raise ValueError(f"model {type(model).__name__} has no parameters: there is nothing to tune")
    for index, group in enumerate(optimizer.param_groups):
        params = list(group["params"])
        if not params:
            raise ValueError(f"param group {index} of the optimizer has no parameters")
        foreign = sum(id(p) not in owned for p in params)
        if foreign:
            raise ValueError(
                f"param group {index} of the optimizer holds {foreign} of {len(params)} tensors that are not "
                "parameters of the model: give the optimizer model.parameters() (restores load the model's "
                "state, so they could not bring those tensors back)"
            )


def _check_bound(bound: object, name: str) -> float:
    if bound is None:
        return math.nan
    value = float(bound) if isinstance(bound, numbers.Real) and not isinstance(bound, bool) else math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be None or a finite number > 0, got {bound!r}")
    return value
