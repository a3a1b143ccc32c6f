"""AALR for the Hugging Face ``Trainer``: a callback that tunes the LR on the Trainer's logged loss.

Needs transformers (``pip install 'aalr[hf]'``). ``import aalr`` never imports this module.

Example::

    args = TrainingArguments(
        output_dir="out",
        max_steps=2000,
        logging_steps=50,                # one AALR decision every 50 optimizer steps (a round)
        lr_scheduler_type="constant",    # AALR sets the LR; a decaying schedule would fight it
    )
    callback = AALRTrainerCallback(compute_initial_loss=True)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train()                      # resume: trainer.train(resume_from_checkpoint=True)
    callback.tuner.load_best()           # optional: the best round's weights

How it meets the Trainer (transformers 5.24's ``trainer.py`` and ``trainer_callback.py``):

* **The unit is the log.** The training loss reaches callbacks only through ``on_log``:
  ``logs["loss"]`` is the mean over the optimizer steps since the last log, already gathered over
  ranks (``_maybe_log_save_evaluate``). So a round is a whole number of logs: ``every_n_steps=None``
  (default) decides once per log (a round of ``logging_steps`` steps); an explicit ``every_n_steps``
  must be a multiple of ``logging_steps``, and the tuner is made with ``every_n_steps //
  logging_steps`` and fed one log mean per ``observe``. Its spike and non-finite checks therefore
  work at the granularity of logs, not steps: a non-finite log ends the round at once, and the
  spike rule judges the mean of the last (up to 5) logs of the round. ``logging_steps=1`` gives the
  tuner every step's loss (and logs every step). The tuner's history counts logs in ``steps`` and
  ``last_step``; the callback adds ``global_step`` (the Trainer's optimizer step) to each record.
* **Where a decision is carried out.** The Trainer calls ``on_log`` for the training loss right
  after ``on_step_end``, and ``on_step_end`` after ``optimizer.step()``, ``lr_scheduler.step()`` and
  ``model.zero_grad()`` at a gradient-accumulation boundary: a safe point for a restore, and before
  the checkpoint of that step is saved (logging comes before saving), so the checkpoint holds the
  decision's weights, LR and tuner state. The callback checks this: a training loss logged at any
  other moment (after ``on_step_begin`` or ``on_substep_end`` with no ``on_step_end`` since) is kept
  and acted on at the next ``on_step_end``.
* **The LR scheduler.** Every scheduler the Trainer makes is a ``LambdaLR``, which sets each
  group's LR to ``base_lr * lambda(step)`` at every step, overwriting the tuner's. The callback sets
  the scheduler's ``base_lrs`` to the tuner's LRs at each decision, so with ``lambda == 1``
  (``lr_scheduler_type="constant"``) the LR is exactly the tuner's. A schedule that is not 1 at
  every step (the Trainer's default ``"linear"``, a warmup) is refused, unless
  ``allow_lr_schedule=True``: its factor then multiplies the tuner's LR. Other schedulers
  (``ReduceLROnPlateau``, ``StepLR`` ...) are refused.
* **A diverged run is told by its weights.** With ``logging_nan_inf_filter=True`` (the default) the
  Trainer logs a NaN or infinite step loss as a mean of the earlier ones, so the logged loss of a
  diverged run can look healthy. With it False, one such step makes every later logged loss NaN:
  the Trainer resets its loss sum by subtracting it from itself, and NaN - NaN is NaN, so no
  restore could ever be seen to succeed. The callback therefore needs the default, and at each
  training log also checks that every parameter of the model is finite (one reduction per log);
  if one is not, the tuner is fed a NaN loss for that log (restore and halve).
* **Resume.** The tuner's state holds tensors (its snapshots), which ``trainer_state.json`` cannot:
  ``on_save`` writes it (``torch.save``, loaded with ``weights_only=True``) as ``aalr_tuner.pt``
  into the checkpoint folder the Trainer has just written, by the processes that write checkpoints
  (``args.should_save``). The callback is an ``ExportableState``, so ``trainer_state.json`` records
  the folder and the step; on resume, where no event says which folder the Trainer loaded, the
  callback reads that record from ``state.stateful_callbacks`` and looks for the file in
  ``args.resume_from_checkpoint``, the recorded folder and ``output_dir/checkpoint-<step>``, taking
  the one saved at the resumed step.
* **Refused:** DeepSpeed and FSDP (and any model with sharded ``DTensor`` parameters): a restore
  loads the full ``state_dict`` into the model and optimizer in place, which sharded or partitioned
  states do not allow. Several optimizers do not arise (the Trainer has one).

Under DDP every rank takes the same decision: the logged loss is the mean over ranks already (so
the tuner's own ``sync_distributed`` averaging is off by default), and ``compute_initial_loss``
sums over all ranks.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import pickle
import warnings
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from aalr.policy import ACTIONS, check_loss_value, is_finite_real
from aalr.tuner import AALR, TUNER_OPTIONS, as_loss, check_settings

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_callback import ExportableState
except ImportError as error:
    raise ImportError("aalr.hf needs transformers: pip install 'aalr[hf]'") from error

logger = logging.getLogger("aalr")

TUNER_FILE = "aalr_tuner.pt"  # in each checkpoint folder of the Trainer
FILE_FORMAT = 1
MAX_STEPS = "max_steps"  # total_steps="max_steps": the Trainer's budget
# Options of aalr.AALR that the callback sets itself (the round and the budget, in the Trainer's units).
_OWN_OPTIONS = ("every_n_steps", "total_steps", "total_rounds")
OPTIONS = tuple(name for name in TUNER_OPTIONS if name not in _OWN_OPTIONS)


class AALRTrainerCallback(TrainerCallback, ExportableState):
    """Sets the LR of the Trainer's optimizer with AALR, deciding on the logged training loss.

    The tuner is built in ``on_train_begin`` (the model, optimizer and LR scheduler exist then, and
    a resumed run has its weights and optimizer state back) and is then ``callback.tuner``. See the
    module's docstring for how it meets the Trainer, and what it needs of ``TrainingArguments``:
    ``logging_strategy="steps"``, ``logging_first_step=False``, ``logging_nan_inf_filter=True``
    (the defaults) and ``lr_scheduler_type="constant"`` (or ``allow_lr_schedule=True``).

    Args:
        every_n_steps: optimizer steps per round (a decision). ``None`` (default): one decision per
            log, every ``logging_steps``; an int must be a multiple of ``logging_steps``.
        initial_loss: the training loss of the initial model (see :class:`aalr.AALR`); ``None``:
            unknown, unless ``compute_initial_loss``.
        compute_initial_loss: measure it when training starts (not on a resume): one pass over the
            Trainer's train dataloader in eval mode without gradients, averaging the model's own
            ``model(**batch).loss`` weighted by batch size, over all ranks. A Trainer that computes
            another loss (``compute_loss_func``, a ``compute_loss`` override) should pass
            ``initial_loss=`` instead; label smoothing is refused.
        total_steps: the budget in optimizer steps, for AALR+'s finish: ``"max_steps"`` (default: the
            Trainer's ``state.max_steps``), an int, or ``None`` (no budget, so no finish). The tuner
            gets ``total_steps // every_n_steps`` rounds.
        allow_lr_schedule: keep a Trainer ``LambdaLR`` schedule that is not constant (a warmup, a
            decay) as a factor on the tuner's LR, instead of refusing it.
        log: add ``aalr/lr`` (the tuner's LR of param group 0 for the coming steps, after this log's
            decision; the Trainer's ``learning_rate`` is the step's just taken), ``aalr/phase``,
            ``aalr/best_loss`` and, at a decision, ``aalr/action`` (its index in
            :data:`aalr.policy.ACTIONS`: 0 none, 1 save_best, 2 restore_initial, 3 restore_best) to
            each training log and its ``state.log_history`` entry. The Trainer calls callbacks in
            order, ``report_to`` integrations first: to have one record these, pass
            ``report_to="none"`` and list it after this callback (``callbacks=[AALRTrainerCallback(),
            TensorBoardCallback()]``). The progress bar and printer come after it. Default True.
        tuner_options: ``rules``, ``max_lr``, ``min_lr``, ``phase1_patience``, ``phase1_share``,
            ``window``, ``rollback``, ``rollback_on``, ``ceiling``, ``restart_best``, ``phase1_failure``,
            ``finish``, ``snapshot_dir``,
            ``sync_distributed`` (default False here: the logged loss is already the mean over
            ranks), ``verbose``, ``spike_rollback``: as for :class:`aalr.AALR`.
    """

    def __init__(
        self,
        every_n_steps: int | None = None,
        initial_loss: float | torch.Tensor | None = None,
        *,
        compute_initial_loss: bool = False,
        total_steps: int | str | None = MAX_STEPS,
        allow_lr_schedule: bool = False,
        log: bool = True,
        **tuner_options: Any,
    ) -> None:
        every_n_steps, total_steps = _plain(every_n_steps), _plain(total_steps)  # NumPy ints, as AALR takes
        if every_n_steps is not None and (
            isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1
        ):
            raise ValueError(
                f"every_n_steps must be None (one decision per log) or an int >= 1 (a multiple of "
                f"logging_steps), got {every_n_steps!r}"
            )
        for name, flag in (
            ("compute_initial_loss", compute_initial_loss),
            ("allow_lr_schedule", allow_lr_schedule),
            ("log", log),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if compute_initial_loss and initial_loss is not None:
            raise ValueError(f"give initial_loss ({initial_loss!r}) or compute_initial_loss=True, not both")
        if (
            total_steps != MAX_STEPS
            and total_steps is not None
            and (isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1)
        ):
            raise ValueError(
                f"total_steps must be {MAX_STEPS!r} (the Trainer's), an int >= 1 or None, got {total_steps!r}"
            )
        unknown = sorted(set(tuner_options) - set(OPTIONS))
        if unknown:
            raise TypeError(
                f"AALRTrainerCallback got unknown options {unknown}; the tuner's options are {list(OPTIONS)} "
                "(the round is every_n_steps and the budget total_steps, both in optimizer steps)"
            )
        check_settings(**tuner_options)
        # state() exports the options into trainer_state.json: plain numbers (a NumPy one fails json.dumps at
        # the first checkpoint save, after training up to it)
        tuner_options = {name: _plain(value) for name, value in tuner_options.items()}
        if tuner_options.get("snapshot_dir") is not None:  # kept as a str: the settings go into JSON
            tuner_options["snapshot_dir"] = os.fspath(tuner_options["snapshot_dir"])
        self.every_n_steps = every_n_steps
        self.initial_loss = (
            None if initial_loss is None else check_loss_value(as_loss(initial_loss, "initial_loss"))
        )
        self.compute_initial_loss = compute_initial_loss
        self.total_steps = total_steps
        self.allow_lr_schedule = allow_lr_schedule
        self.log_decisions = log
        # as given (state() exports them); the tuner gets sync_distributed=False unless given
        self.tuner_options = tuner_options
        self.tuner: AALR | None = None
        self._reset()

    def _reset(self) -> None:
        self.tuner = None
        self._scheduler: Any = None
        self._args: TrainingArguments | None = None
        self._logging_steps = 0  # optimizer steps per log
        self._round_steps = 0  # optimizer steps per round
        self._global_step = 0  # the Trainer's, at the last event
        self._safe = False  # no forward/backward since the last optimizer step and zero_grad
        self._last_log_step = 0  # global step of the last training log
        # log means since the last log at a multiple of logging_steps: (loss x steps sum, steps); only
        # a log that another callback forced in between makes this more than one log
        self._carry = [0.0, 0]
        self._pending: list[float] = []  # losses logged at an unsafe moment, for the next on_step_end
        self._reported = 0  # history records already reported in the logs

    # -- TrainerCallback events --------------------------------------------------------------------
    def on_init_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ):
        _check_args(args, self.every_n_steps)  # fail when the Trainer is made, not when it trains

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ):
        self._reset()
        _check_args(args, self.every_n_steps)
        model, optimizer, scheduler = kwargs.get("model"), kwargs.get("optimizer"), kwargs.get("lr_scheduler")
        if not isinstance(model, nn.Module) or optimizer is None:
            raise RuntimeError(
                "AALRTrainerCallback: on_train_begin got no model or optimizer from the Trainer"
            )
        _check_not_sharded(model)
        self._logging_steps = _whole_steps(state.logging_steps, "logging_steps")
        self._round_steps = self.every_n_steps or self._logging_steps
        if self._round_steps % self._logging_steps:
            raise ValueError(_not_a_multiple(self._round_steps, self._logging_steps))
        name = type(self).__name__
        stateful: dict[str, Any] = state.stateful_callbacks  # type: ignore[assignment]  # a dict once made
        exported = stateful.get(name)
        if isinstance(exported, list):
            raise ValueError(f"the Trainer has {len(exported)} {name}s; one tunes the optimizer's LR")
        saved = None
        if state.global_step > 0:  # the Trainer resumed from a checkpoint (a fresh train() starts at 0)
            saved = self._saved_state(args, state, exported)
            if exported is None:
                # the checkpoint was saved without this callback: transformers' _save_checkpoint expects an
                # entry for every ExportableState callback (KeyError otherwise), so give it one
                stateful[name] = self.state()
        if saved is not None:
            self._check_saved(saved)
        self._scheduler = _lambda_scheduler(
            scheduler, optimizer, self.allow_lr_schedule, args, state.max_steps
        )
        self._args = args
        initial_loss = self.initial_loss
        if saved is None and self.compute_initial_loss:
            if args.label_smoothing_factor:
                raise ValueError(
                    f"compute_initial_loss measures the model's own loss, but the Trainer trains on a loss "
                    f"with label_smoothing_factor={args.label_smoothing_factor}: pass initial_loss= instead"
                )
            initial_loss = model_loss(model, kwargs.get("train_dataloader"))
        options = {"sync_distributed": False, **self.tuner_options}
        budget = self._budget(state.max_steps)
        # The tuner reads each group's LR as its starting LR: the scheduler's unscaled base LRs (a warmup
        # may have scaled the LR to 0 at step 0), or on resume the run's own starting LRs, so that max_lr
        # and min_lr are checked as they were when the run began.
        starting = _starting_lrs(optimizer, self._scheduler, saved)
        if starting is not None:
            _set_lrs(optimizer, starting)
        self.tuner = AALR(
            model,
            optimizer,
            initial_loss=initial_loss,
            every_n_steps=self._round_steps // self._logging_steps,
            total_rounds=budget,
            **options,
        )
        if saved is not None:
            self._load(saved)
        self._sync_scheduler()
        self._global_step = self._last_log_step = state.global_step
        self._safe = True  # the Trainer calls model.zero_grad() just before on_train_begin

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ):
        self._safe = False

    def on_substep_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ):
        self._safe = False

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ):
        # after optimizer.step(), lr_scheduler.step() and model.zero_grad(): a safe point
        self._safe = True
        self._global_step = state.global_step
        pending, self._pending = self._pending, []
        for value in pending:
            self._observe(value, state.global_step)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        if self.tuner is None or not isinstance(logs, dict) or "loss" not in logs:
            return  # not a training log (evaluation, the end-of-training summary)
        loss = float(logs["loss"])
        self._global_step = state.global_step
        steps = state.global_step - self._last_log_step
        self._last_log_step = state.global_step
        if math.isfinite(loss) and not _all_finite(self.tuner.model):
            loss = math.nan  # diverged: the Trainer's filter logs a mean of earlier steps' losses instead
        self._carry = [self._carry[0] + loss * max(steps, 1), self._carry[1] + max(steps, 1)]
        if math.isfinite(loss) and state.global_step % self._logging_steps:
            pass  # a log another callback forced between two of the Trainer's: wait for the next one
        else:
            value = self._carry[0] / self._carry[1] if math.isfinite(loss) else loss
            self._carry = [0.0, 0]
            if self._safe:
                self._observe(value, state.global_step)
            else:
                self._pending.append(value)
        if self.log_decisions:
            self._report(logs, state)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.tuner is None or not args.should_save:
            return
        folder = _checkpoint_folder(args, state.global_step)
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"AALRTrainerCallback saves the tuner in the Trainer's checkpoint folder, but {folder} does "
                "not exist (hyperparameter search's run folders are not supported)"
            )
        path = os.path.join(folder, TUNER_FILE)
        temporary = path + ".tmp"
        torch.save(self.checkpoint_state(state.global_step), temporary)
        os.replace(temporary, path)  # a crash while writing leaves no half-written file under the name

    # -- ExportableState: what trainer_state.json keeps (plain JSON) ----------------------------------
    def state(self) -> dict[str, Any]:
        """The settings (``args``, transformers remakes the callback from them when
        ``restore_callback_states_from_checkpoint=True``) and where the tuner's file is (``attributes``)."""
        saved = self.tuner is not None and self._args is not None
        return {
            "args": {
                "every_n_steps": self.every_n_steps,
                "initial_loss": self.initial_loss,
                "compute_initial_loss": self.compute_initial_loss,
                "total_steps": self.total_steps,
                "allow_lr_schedule": self.allow_lr_schedule,
                "log": self.log_decisions,
                **self.tuner_options,
            },
            "attributes": {
                "aalr_checkpoint": (
                    os.path.abspath(_checkpoint_folder(self._args, self._global_step))
                    if saved and self._args is not None
                    else None
                ),
                "aalr_step": self._global_step if saved else None,
            },
        }

    # -- the checkpoint file -----------------------------------------------------------------------
    def checkpoint_state(self, global_step: int) -> dict[str, Any]:
        """What ``aalr_tuner.pt`` holds: plain values and CPU tensors (``weights_only=True`` safe)."""
        if self.tuner is None:
            raise RuntimeError("AALRTrainerCallback has no tuner yet (it is made when training starts)")
        return {
            "format": FILE_FORMAT,
            "global_step": int(global_step),
            "logging_steps": self._logging_steps,
            "round_steps": self._round_steps,
            "carry": list(self._carry),
            "pending": list(self._pending),
            "tuner": self.tuner.state_dict(),
        }

    def _saved_state(
        self, args: TrainingArguments, state: TrainerState, exported: Any
    ) -> dict[str, Any] | None:
        """The tuner file of the checkpoint the Trainer resumed from; None if it was saved without AALR."""
        attributes = exported.get("attributes", {}) if isinstance(exported, Mapping) else {}
        if attributes.get("aalr_step") is None:
            warnings.warn(
                f"AALRTrainerCallback: the checkpoint of step {state.global_step} holds no AALR state (it "
                "was saved without this callback): the tuner starts afresh from the resumed weights",
                UserWarning,
                stacklevel=2,
            )
            return None
        candidates = list(
            dict.fromkeys(  # in order, each folder once
                folder
                for folder in (
                    args.resume_from_checkpoint,
                    attributes.get("aalr_checkpoint"),
                    _checkpoint_folder(args, state.global_step),
                )
                if isinstance(folder, str)
            )
        )
        for folder in candidates:
            path = os.path.join(folder, TUNER_FILE)
            if not os.path.isfile(path):
                continue
            try:  # weights_only: a pickle's code is never run, it is refused
                saved = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:  # torch's errors (EOF, zip reader, unpickling) do not name the file
                if isinstance(error, pickle.UnpicklingError):  # its advice, weights_only=False, runs the code
                    why = "not a torch.save file of plain values and tensors, and nothing else is unpickled"
                else:
                    why = f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"
                raise ValueError(
                    f"AALRTrainerCallback: {path} is not a tuner file that can be read ({why}); it is "
                    "damaged or was not written by this callback: restore it from a copy, or delete it and "
                    f"the {type(self).__name__} entry of the checkpoint's trainer_state.json to resume with "
                    "a fresh tuner"
                ) from error
            if isinstance(saved, dict) and saved.get("global_step") == state.global_step:
                return saved
        raise FileNotFoundError(
            f"AALRTrainerCallback: resuming at step {state.global_step}, whose checkpoint was saved with "
            f"AALR, but no {TUNER_FILE} of that step is in {candidates}: pass the checkpoint folder as "
            "TrainingArguments(resume_from_checkpoint=...) too, or copy the file there"
        )

    def _check_saved(self, saved: dict[str, Any]) -> None:
        """Before the tuner is made: the file's format, and its units against this run's."""
        if saved.get("format") != FILE_FORMAT:
            raise ValueError(
                f"{TUNER_FILE} has format {saved.get('format')!r}; this version reads {FILE_FORMAT}"
            )
        if saved.get("logging_steps") != self._logging_steps:
            raise ValueError(
                f"the checkpoint's tuner was fed one log every {saved.get('logging_steps')} steps, this "
                f"run logs every {self._logging_steps} (logging_steps): keep "
                f"logging_steps={saved.get('logging_steps')} to resume"
            )
        round_steps = _whole_steps(saved.get("round_steps"), f"{TUNER_FILE}'s round_steps")
        if round_steps % self._logging_steps:
            raise ValueError(
                f"{TUNER_FILE}: its round of {round_steps} steps is not a whole number of logs of "
                f"{self._logging_steps} steps (logging_steps): the file is damaged"
            )
        if round_steps != self._round_steps:
            logger.warning(
                "AALR: resuming with the checkpoint's round of %s steps (every_n_steps=%s given)",
                round_steps,
                self.every_n_steps,
            )
            self._round_steps = round_steps
        carry, pending = saved.get("carry"), saved.get("pending")
        # the carry is a sum of finite log means (a non-finite log resets it); a pending log may be NaN
        if not (
            isinstance(carry, list)
            and len(carry) == 2
            and is_finite_real(carry[0])
            and isinstance(carry[1], int)
            and not isinstance(carry[1], bool)
            and carry[1] >= 0
            and isinstance(pending, list)
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in pending)
        ):
            raise ValueError(
                f"{TUNER_FILE}: carry must be [finite loss sum, steps >= 0] and pending a list of losses, "
                f"got carry={carry!r}, pending={pending!r}: the file is damaged"
            )

    def _load(self, saved: dict[str, Any]) -> None:
        assert self.tuner is not None
        carry, pending = saved["carry"], saved["pending"]
        try:
            self.tuner.load_state_dict(saved["tuner"])
        except (TypeError, ValueError) as error:  # refused before it changed anything: name the file
            kind = TypeError if isinstance(error, TypeError) else ValueError
            raise kind(f"{TUNER_FILE}: {error}") from error
        self._carry = [float(carry[0]), int(carry[1])]
        self._pending = [float(value) for value in pending]
        self._reported = len(self.tuner.history)

    # -- acting ------------------------------------------------------------------------------------
    def _observe(self, value: float, global_step: int) -> None:
        assert self.tuner is not None
        record = self.tuner.observe(value)
        if record is not None:
            record["global_step"] = global_step
            self._sync_scheduler()

    def _sync_scheduler(self) -> None:
        """The tuner set each group's LR; make it the scheduler's base LR, then apply the schedule's
        factor at its current step (1 for a constant schedule), as its next step() will."""
        scheduler = self._scheduler
        if scheduler is None or self.tuner is None:
            return
        # called right after the tuner set every group's LR (when made, loaded, or deciding): read them back
        base = [float(group["lr"]) for group in self.tuner.optimizer.param_groups]
        scheduler.base_lrs = list(base)
        factors = [float(lmbda(scheduler.last_epoch)) for lmbda in scheduler.lr_lambdas]
        _set_lrs(self.tuner.optimizer, [lr * factor for lr, factor in zip(base, factors, strict=True)])

    def _budget(self, max_steps: int) -> int | None:
        total = max_steps if self.total_steps == MAX_STEPS else self.total_steps
        if total is None:
            return None
        if not isinstance(total, int) or total < self._round_steps:
            raise ValueError(
                f"total_steps ({total}{' = the Trainer max_steps' if self.total_steps == MAX_STEPS else ''}) "
                f"must be at least one round of {self._round_steps} optimizer steps (every_n_steps)"
            )
        return total // self._round_steps

    def _report(self, logs: dict[str, Any], state: TrainerState) -> None:
        assert self.tuner is not None
        values: dict[str, float] = {"aalr/lr": self.tuner.lr, "aalr/phase": float(self.tuner.phase)}
        if self.tuner.best_loss is not None:
            values["aalr/best_loss"] = float(self.tuner.best_loss)
        if len(self.tuner.history) > self._reported:
            values["aalr/action"] = float(ACTIONS.index(self.tuner.history[-1]["action"]))
            self._reported = len(self.tuner.history)
        # Trainer.log appended {**logs, "step": ...} to log_history before calling on_log: add them there too,
        # so that trainer_state.json has them
        entry = state.log_history[-1] if state.log_history else None
        if (
            isinstance(entry, dict)
            and entry.get("step") == state.global_step
            and _same(entry.get("loss"), logs["loss"])
        ):
            entry.update(values)
        logs.update(values)


# -- checks ------------------------------------------------------------------------------------------
def _check_args(args: TrainingArguments, every_n_steps: int | None) -> None:
    """Refuse settings under which the tuner would be fed wrong losses or could not restore safely."""
    _check_not_distributed_sharding(args)
    if _value(args.logging_strategy) != "steps":
        raise ValueError(
            f"AALRTrainerCallback decides on the training loss the Trainer logs every logging_steps: it "
            f"needs logging_strategy='steps', got {_value(args.logging_strategy)!r}"
        )
    if args.logging_first_step:
        raise ValueError(
            "AALRTrainerCallback needs logging_first_step=False: the log of step 1 would shift every later "
            "log off the multiples of logging_steps, and the rounds with them"
        )
    if not args.logging_nan_inf_filter:
        raise ValueError(
            "AALRTrainerCallback needs TrainingArguments(logging_nan_inf_filter=True) (the default): with it "
            "False, one NaN step loss makes every later logged loss NaN (the Trainer resets its loss sum by "
            "subtracting it from itself), so the tuner would restore and halve at every round; the callback "
            "tells a diverged run by its weights instead"
        )
    steps = args.logging_steps
    if every_n_steps is not None and isinstance(steps, numbers.Real) and steps >= 1 and every_n_steps % steps:
        raise ValueError(_not_a_multiple(every_n_steps, int(steps)))


def _check_not_distributed_sharding(args: TrainingArguments) -> None:
    state_type = _value(getattr(getattr(args, "distributed_state", None), "distributed_type", ""))
    deepspeed = (
        bool(getattr(args, "deepspeed", None))
        or getattr(args, "deepspeed_plugin", None) is not None
        or state_type == "DEEPSPEED"
    )
    if deepspeed:
        raise ValueError(
            "AALRTrainerCallback does not work with DeepSpeed (args.deepspeed is set): a restore loads the "
            "whole model and optimizer state_dict in place, which DeepSpeed's partitioned and wrapped states "
            "do not allow; train without DeepSpeed (DDP works)"
        )
    fsdp = (
        bool(getattr(args, "fsdp", None))
        or getattr(args, "fsdp_plugin_args", None) is not None
        or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")
        or state_type == "FSDP"
    )
    if fsdp:
        raise ValueError(
            f"AALRTrainerCallback does not work with FSDP (args.fsdp="
            f"{_value(getattr(args, 'fsdp', None))!r}): a restore loads the whole model and optimizer "
            "state_dict in place, which sharded parameters do not allow; train without FSDP (DDP works)"
        )


def _check_not_sharded(model: nn.Module) -> None:
    """What the arguments do not show (a model sharded by accelerate's own config, or at load time)."""
    if type(model).__name__ in ("FullyShardedDataParallel", "DeepSpeedEngine") or any(
        type(module).__name__ == "FullyShardedDataParallel" for module in model.modules()
    ):
        raise ValueError(
            f"AALRTrainerCallback cannot restore a {type(model).__name__} model in place (FSDP or "
            "DeepSpeed): a restore loads the whole state_dict"
        )
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch without distributed tensors
        return
    if any(isinstance(p, DTensor) for p in model.parameters()):
        raise ValueError(
            "AALRTrainerCallback cannot restore a model with sharded DTensor parameters (FSDP2 or tensor "
            "parallelism) in place: a restore loads the whole state_dict"
        )


def _lambda_scheduler(
    scheduler: Any, optimizer: Any, allow_schedule: bool, args: TrainingArguments, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """The Trainer's scheduler if the callback can keep it in step with the tuner; refuses the others."""
    if scheduler is None:
        return None
    fix = "use TrainingArguments(lr_scheduler_type='constant')"
    if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        raise ValueError(
            f"AALRTrainerCallback sets the LR itself, but the Trainer's LR scheduler is a "
            f"{type(scheduler).__name__}, which would change it too: {fix} (or pass no scheduler)"
        )
    if (
        scheduler.optimizer is not optimizer
        and getattr(optimizer, "optimizer", None) is not scheduler.optimizer
    ):
        raise ValueError("AALRTrainerCallback: the Trainer's LR scheduler drives another optimizer")
    if not allow_schedule:
        for step in range(max_steps + 1):
            factors = [float(lmbda(step)) for lmbda in scheduler.lr_lambdas]
            if any(factor != 1.0 for factor in factors):
                raise ValueError(
                    f"AALRTrainerCallback sets the LR itself, but the Trainer's LR schedule "
                    f"(lr_scheduler_type={_value(args.lr_scheduler_type)!r}) scales it by {factors[0]:.6g} "
                    f"at step {step}, which would fight the tuner's decisions: {fix}, or pass "
                    "AALRTrainerCallback(allow_lr_schedule=True) to keep the schedule as a factor on "
                    "AALR's LR"
                )
    return scheduler


# -- helpers -----------------------------------------------------------------------------------------
def _starting_lrs(optimizer: Any, scheduler: Any, saved: dict[str, Any] | None) -> list[float] | None:
    if saved is not None:
        group_eta0 = (
            saved.get("tuner", {}).get("group_eta0") if isinstance(saved.get("tuner"), dict) else None
        )
        if isinstance(group_eta0, list) and len(group_eta0) == len(optimizer.param_groups):
            return [float(lr) for lr in group_eta0]
    if scheduler is not None:
        return [float(lr) for lr in scheduler.base_lrs]
    return None


def _set_lrs(optimizer: Any, lrs: list[float]) -> None:
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        if isinstance(group["lr"], torch.Tensor):  # capturable / compiled optimizers keep it as a tensor
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def _checkpoint_folder(args: TrainingArguments, global_step: int) -> str:
    """Where Trainer._save_checkpoint writes the checkpoint of ``global_step`` (outside a search)."""
    return os.path.join(str(args.output_dir), f"checkpoint-{global_step}")


def _whole_steps(value: Any, name: str) -> int:
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    if not (number >= 1 and number.is_integer()):
        raise ValueError(
            f"AALRTrainerCallback needs {name} to be a whole number of steps >= 1, got {value!r}"
        )
    return int(number)


def _not_a_multiple(every_n_steps: int, logging_steps: int) -> str:
    return (
        f"every_n_steps={every_n_steps} must be a multiple of logging_steps={logging_steps}: the Trainer "
        "hands callbacks the training loss only when it logs, so a round is a whole number of logs"
    )


def _all_finite(model: nn.Module) -> bool:
    """Whether every parameter is finite: one reduction per parameter, one device sync in all."""
    flags = [torch.isfinite(p.detach()).all() for p in model.parameters()]
    return bool(torch.stack(flags).all().item()) if flags else True


def _plain(value: Any) -> Any:
    """A NumPy (or other) integer or real number as Python's int or float; anything else as it is."""
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _value(setting: Any) -> Any:
    """An enum setting (IntervalStrategy, SchedulerType, DistributedType) as the string users type."""
    return getattr(setting, "value", setting)


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def model_loss(model: nn.Module, loader: Any) -> float:
    """The mean of ``model(**batch).loss`` over ``loader`` (eval mode, no gradients), weighted by batch
    size and summed over all ranks under ``torch.distributed``: the initial loss AALR needs.

    The global CPU RNG is kept as it was, so that the training run's data order does not depend on
    whether the loss was measured."""
    if loader is None:
        raise ValueError("compute_initial_loss: the Trainer has no train dataloader")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    total = torch.zeros(2, dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            for batch in loader:
                if not isinstance(batch, Mapping):
                    raise TypeError(
                        f"compute_initial_loss needs batches that are dicts of model inputs, got "
                        f"{type(batch).__name__}; pass initial_loss= instead"
                    )
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                out = model(**batch)
                loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
                if loss is None:
                    raise ValueError(
                        "compute_initial_loss: the model returned no loss (does the batch hold labels?); "
                        "pass initial_loss= instead"
                    )
                size = _batch_size(batch)
                total[0] += as_loss(loss, "the model's loss") * size
                total[1] += size
    finally:
        model.train(was_training)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    if total[1].item() == 0:
        raise ValueError("compute_initial_loss: the train dataloader gave no samples")
    value = float(total[0].item()) / float(total[1].item())
    if not math.isfinite(value):
        raise ValueError(f"compute_initial_loss: the initial model's training loss is {value}")
    return value


def _batch_size(batch: Mapping[str, Any]) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return int(value.shape[0])
    raise ValueError("compute_initial_loss cannot tell the batch size: no tensor in the batch")
