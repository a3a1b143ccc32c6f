"""One training run, the entry point: :func:`run` and the orchestration around the training loop.

Read top to bottom: :func:`run` validates the settings (:mod:`aalr.harness.config`), locks the output
directory for the whole run (:mod:`aalr.harness.guard`: one writer per directory) and checks it
(:mod:`aalr.harness.rundir`: resume, --force, a run that is finished already), loads the data once and
checks what only the data tell (a grid's split, a last batch of one sample), resolves an LR grid on a
validation split when one is given (:func:`run_validation` for each LR, each resumable on its own),
then trains with :func:`aalr.harness.loop.train_epochs` and writes the summary last. A run that fails
before its first checkpoint leaves its directory as it found it.

Under ``torchrun`` rank 0 alone checks and prepares the output directory and writes to it; every rank
hears its answer (or its error), so that no rank waits for ever on another that has failed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from aalr.harness import distributed, guard, loop, rundir
from aalr.harness.config import RunError, TrainConfig, check_launch, validate
from aalr.harness.numerics import resolve_device

log = logging.getLogger("aalr.harness")


def run(
    config: TrainConfig | dict[str, Any],
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    force: bool = False,
    tensorboard: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train one run into ``out`` and return its summary (also written as ``summary.json``).

    ``tensorboard``: a folder for the run's TensorBoard events (a grid's runs in ``grid/lr<LR>``
    below it). Not a setting of the run: a resume may add, change or drop it."""
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    validate(config)
    if resume and force:
        raise RunError(
            "resume and force contradict each other: --resume continues the run, --force replaces it"
        )
    if not str(out).strip():
        raise RunError("the output directory is an empty string; give a folder name")
    launch = check_launch(config)
    out = Path(out)
    if launch is not None:
        distributed.init_process_group(*launch)
    held: list[guard.OutDirLock] = []  # rank 0's lock on ``out``, held until the run has ended
    try:
        resuming, finished = _resume_state(out, config, resume=resume, force=force, lock_into=held)
        if finished is not None:
            return finished  # a finished run costs no data load
        board = None if tensorboard is None else Path(tensorboard)
        return _load_and_run(out, config, launch, resuming, board)
    finally:
        for lock in held:
            lock.release()


def _load_and_run(
    out: Path,
    config: TrainConfig,
    launch: tuple[distributed.Launch, torch.device] | None,
    resuming: bool,
    tensorboard: Path | None,
) -> dict[str, Any]:
    """Load the data and train; a run that fails before its first checkpoint leaves ``out`` as it was."""
    try:
        # loaded once for the run and its grid's validation runs; a missing or malformed file, or data
        # the settings cannot train on, fail here and the directory is put back as it was (below),
        # even with --force
        dataset = loop.load_data(config)
        loop.check_trainable(config, dataset)
        return _run_in(out, config, launch, dataset, resuming, tensorboard)
    except BaseException:
        if distributed.is_main():
            rundir.undo_failed_start(out, fresh=not resuming)
        raise
    finally:
        if distributed.is_main():
            rundir.drop_replaced(out)


def _run_in(
    out: Path,
    config: TrainConfig,
    launch: tuple[distributed.Launch, torch.device] | None,
    dataset: Any,
    resuming: bool,
    tensorboard: Path | None,
) -> dict[str, Any]:
    from aalr import __version__

    saved_config = {
        **rundir.saved_settings(config),
        "version": __version__,
        "git_commit": rundir.git_commit(),
    }
    if not resuming and distributed.is_main():
        rundir.write_json(out / "config.json", saved_config)
    device = resolve_device(config.device) if launch is None else launch[1]
    context = loop.Context(config=config, device=device, out=out, dataset=dataset, tensorboard=tensorboard)
    grid: dict[str, float] = {}
    searched: list[dict[str, Any]] = []
    lr: float | None
    if isinstance(config.lr, list):
        grid, searched = _search_grid(context, config.lr) if len(config.lr) > 1 else ({}, [])
        # the best validation accuracy (a language model: the lowest validation bits per byte); on a
        # tie, the first LR of the list
        lr = float(max(config.lr, key=lambda value: _grid_rank(grid.get(f"{value:g}"), dataset)))
    else:
        lr = None if config.lr is None else float(config.lr)
    summary = loop.train_epochs(context, lr, resume=resuming)
    if grid:
        summary["lr_grid"] = grid  # validation accuracy per LR; for a language model, validation bpb
        summary["lr_grid_metric"] = "val_bpb" if _is_bytes(dataset) else "val_acc"
        summary["chosen_lr"] = lr
        if _is_bytes(dataset):
            summary["val_bpb"] = grid.get(f"{lr:g}")
        # the LR was chosen by the grid's runs: how they computed is part of how this result was made
        made = [*searched, summary]
        summary["numerics"] = list(dict.fromkeys(way for part in made for way in part.get("numerics", [])))
        summary["numerics_unrecorded_epochs"] = sum(_unrecorded_epochs(part) for part in made)
        if len(summary["numerics"]) > 1 and distributed.is_main():
            log.warning("%s: the grid's runs and the final run computed in %s", out, summary["numerics"])
    if distributed.is_main():
        rundir.write_json(out / "summary.json", summary)
    distributed.barrier()  # when run() returns on any rank, summary.json is there
    return summary


def _resume_state(
    out: Path,
    config: TrainConfig,
    *,
    resume: bool,
    force: bool,
    validation: bool = False,
    lock_into: list[guard.OutDirLock] | None = None,
) -> tuple[bool, dict[str, Any] | None]:
    """Rank 0 checks and prepares ``out`` (first locking it, into ``lock_into``, when given); every
    rank learns whether the run resumes and, when it has finished already, its summary."""

    def look() -> dict[str, Any]:
        if lock_into is not None:
            lock_into.append(guard.lock_out_dir(out))  # before anything there is read or written
        return rundir.look_before_run(out, config, resume=resume, force=force, validation=validation)

    state = _rank0_decides(look)
    return bool(state["resuming"]), state["summary"]


def _rank0_decides(look: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``look()`` (which checks and prepares the output directory) on rank 0 only; its answer, or its
    error, on every rank. A single process just calls it."""
    if not distributed.active():
        return look()
    answer: dict[str, Any] = {}
    failure: Exception | None = None
    if distributed.is_main():
        try:
            answer = look()
        except Exception as error:  # the other ranks must hear of it, or they would wait for ever
            failure = error
            answer = {"error": str(error)}
    answer = distributed.broadcast_json(answer)
    if failure is not None:
        raise failure
    if "error" in answer:
        raise RunError(f"rank 0: {answer['error']}")
    return answer


def _is_bytes(dataset: Any) -> bool:
    return getattr(dataset, "kind", "classes") == "bytes"


def _grid_rank(score: float | None, dataset: Any) -> float:
    """Larger is better: a validation accuracy, or minus a validation bpb (None: a run that failed)."""
    if score is None:
        return -math.inf
    return -score if _is_bytes(dataset) else score


def _search_grid(context: loop.Context, lrs: list[float]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Train each LR on the training data less a validation split; score each by final validation
    accuracy (a language model: by final validation bits per byte, on the data set's own validation
    part of the text). Returns the scores and the runs' summaries."""
    scores: dict[str, float] = {}
    summaries = []
    for lr in lrs:
        sub_config = dataclasses.replace(context.config, lr=lr, progress=False)
        sub_out = context.out / "grid" / f"lr{lr:g}"
        sub_tensorboard = None if context.tensorboard is None else context.tensorboard / "grid" / f"lr{lr:g}"
        summary = run_validation(sub_config, sub_out, context.dataset, tensorboard=sub_tensorboard)
        finished = summary["status"] == loop.STATUS_FINISHED
        if _is_bytes(context.dataset):
            bpb = summary.get("final_test_bpb")
            scores[f"{lr:g}"] = bpb if finished and bpb is not None and math.isfinite(bpb) else math.inf
            log.info("grid %s lr=%g: validation bpb %.4f", context.config.method, lr, scores[f"{lr:g}"])
            summaries.append(summary)
            continue
        scores[f"{lr:g}"] = summary["final_test_acc"] if finished else 0.0
        log.info("grid %s lr=%g: validation accuracy %.4f", context.config.method, lr, scores[f"{lr:g}"])
        summaries.append(summary)
    return scores, summaries


def _unrecorded_epochs(summary: dict[str, Any]) -> int:
    """Epochs of a run whose numerics were not recorded (all of them for a summary from before it was)."""
    if "numerics" not in summary:
        return int(summary.get("epochs") or 0)
    return int(summary.get("numerics_unrecorded_epochs") or 0)


def run_validation(
    config: TrainConfig, out: Path, dataset: Any = None, *, tensorboard: Path | None = None
) -> dict[str, Any]:
    """A run on the validation split (resumable on its own): its 'test' set is held-out training data."""

    resuming, finished = _resume_state(out, config, resume=True, force=False, validation=True)
    if finished is not None:
        return finished
    if not resuming and distributed.is_main():
        rundir.write_json(out / "config.json", rundir.saved_settings(config, validation=True))
    launch = check_launch(config)
    device = resolve_device(config.device) if launch is None else launch[1]
    context = loop.Context(config=config, device=device, out=out, dataset=dataset, tensorboard=tensorboard)
    summary = loop.train_epochs(
        context, config.lr if isinstance(config.lr, float | int) else None, resume=resuming, validation=True
    )
    if distributed.is_main():
        rundir.write_json(out / "summary.json", summary)
    return summary
