"""A run's output directory and every file in it: what is written, how (atomically), and when it is refused.

Files of a run (see DESIGN.md): ``config.json`` (every setting, package version, git commit),
``metrics.jsonl`` (one line per epoch), ``checkpoint.pt`` (and ``checkpoint.prev.pt``, the one before),
``summary.json`` written last: a run is finished iff ``summary.json`` holds a summary
(:func:`read_summary`, the one judge of that, which the suite runner and the report use too). Every
file is written to a temporary file and renamed, so a kill leaves the old file or the new one, never
half of one; a write that fails (a full disk) is one :class:`WriteError` naming the file, the files
before it intact. Checkpoints load with ``weights_only=True`` only, and a corrupted one falls back to
the previous one.

Before training :func:`prepare_out_dir` (under the lock of :mod:`aalr.harness.guard`, which also
repairs what an interrupted ``--force`` left) refuses another run's directory unless ``--resume``
(same settings) or ``--force`` (the old run is moved aside until the new run has its first
checkpoint, and put back if it fails, or is killed, before one); ``--force`` refuses a folder that
holds anything but a run. Under ``torchrun`` only rank 0 writes here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from aalr.harness import distributed, guard
from aalr.harness.config import RunError, TrainConfig
from aalr.snapshot import atomic_torch_save, atomic_write, fsync_directory

log = logging.getLogger("aalr.harness")

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
CHECKPOINT_KEYS = frozenset(
    {"epoch", "model", "method", "generator", "rng", "rows", "wall_seconds", "status"}
)
REPLACED = guard.REPLACED  # where --force keeps the run it replaces until the new run has a checkpoint
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", CHECKPOINT, PREVIOUS_CHECKPOINT, "grid")
# Names aalr itself leaves in a run's folder besides RUN_FILES (and ".*.tmp", cut-short writes).
OWN_FILES = (guard.LOCK, guard.REPLACED, guard.MOVING, ".write-test")
# Settings that may differ between a run and its resumption (where and how, not what).
RESUMABLE_DIFFERENCES = frozenset(
    {"device", "precision", "channels_last", "data_dir", "progress", "resume", "force", "out"}
)
# Settings every config.json this harness ever wrote holds: what makes a config.json a run's.
RUN_CONFIG_KEYS = ("dataset", "model", "method", "epochs", "batch_size", "seed", "lr")
MIN_FREE_MIB = 50

STATUS_FINISHED = "finished"
STATUS_DIVERGED = "diverged"
SUMMARY_STATUSES = (STATUS_FINISHED, STATUS_DIVERGED)
# Keys every summary.json this harness ever wrote holds, and what each must be.
_NUMBER = (int, float)
SUMMARY_KEYS: dict[str, tuple[type, ...]] = {
    "status": (str,),
    "method": (str,),
    "dataset": (str,),
    "model": (str,),
    "seed": (int,),
    "epochs": (int,),
    "final_test_acc": (*_NUMBER, type(None)),
    "peak_test_acc": (*_NUMBER, type(None)),
    "lr_trajectory": (list,),
    "wall_seconds": _NUMBER,
}


class WriteError(OSError):
    """A file of the run could not be written (a full disk, a vanished mount); the files written
    before it are intact, so the run continues with --resume once the cause is fixed."""


# -- writing files -------------------------------------------------------------------------------
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _json_safe(value: Any) -> Any:
    """NaN/inf become null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _os_error_in(error: BaseException) -> OSError | None:
    """The OSError behind ``error``: itself, or one it was raised while handling (torch's zip writer
    answers a failed write with a RuntimeError of its own about file positions)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn a failed write of ``path`` into one :class:`WriteError` that names it."""
    try:
        yield
    except WriteError:
        raise
    except Exception as error:
        cause = _os_error_in(error)
        if cause is None:
            raise
        failed = WriteError(
            f"cannot write {str(path)!r}: {cause.strerror or cause}; the files written before it are intact"
        )
        failed.errno = cause.errno
        raise failed from None


def atomic_write_text(path: Path, text: str) -> None:
    with _writing(path):
        atomic_write(path, lambda handle: handle.write(text.encode()))


def write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(_json_safe(value), indent=2, sort_keys=True) + "\n")


def write_metrics(out: Path, rows: list[dict[str, Any]]) -> None:
    """``metrics.jsonl``: every epoch's row so far, one JSON object a line, rewritten whole."""
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(_json_safe(r)) + "\n" for r in rows))


def saved_settings(config: TrainConfig, *, validation: bool = False) -> dict[str, Any]:
    """The settings a run's config.json records (besides version and commit) and --resume compares."""
    settings = _json_safe(config.to_dict())
    return {**settings, "validation_split": True} if validation else settings


# -- what a summary is ---------------------------------------------------------------------------
def summary_problem(value: Any) -> str | None:
    """Why ``value`` (a parsed summary.json) is not a run's summary, or None when it is one."""
    if not isinstance(value, dict):
        return f"it holds a JSON {type(value).__name__}, not an object"
    status = value.get("status")
    if status not in SUMMARY_STATUSES:
        return f"its status is {status!r}, not one of {', '.join(SUMMARY_STATUSES)}"
    missing = [key for key in SUMMARY_KEYS if key not in value]
    if missing:
        return f"it lacks {', '.join(missing)}"
    wrong = [
        key
        for key, types in SUMMARY_KEYS.items()
        if not isinstance(value[key], types) or isinstance(value[key], bool)
    ]
    if wrong:
        return "it has " + ", ".join(f"{key} = {value[key]!r}" for key in wrong)
    # an accuracy is a ratio of counts: NaN or inf is never one this harness wrote
    unreal = [
        k
        for k in ("final_test_acc", "peak_test_acc")
        if isinstance(value[k], float) and not math.isfinite(value[k])
    ]
    if unreal:
        return "it has " + ", ".join(f"{key} = {value[key]!r}" for key in unreal)
    return None


def _summary_and_problem(run_dir: Path | str) -> tuple[dict[str, Any] | None, str | None]:
    """The run's summary, or None and why not (None, None: there is no summary.json)."""
    path = Path(run_dir) / "summary.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except UnicodeDecodeError as error:
        return None, f"it is not UTF-8 text ({error})"
    except OSError as error:
        return None, f"it cannot be read ({error})"
    try:
        value = json.loads(text)
    except ValueError as error:
        return None, f"it is not JSON ({error})"
    problem = summary_problem(value)
    return (value, None) if problem is None else (None, problem)


def read_summary(run_dir: Path | str) -> dict[str, Any] | None:
    """The run's ``summary.json`` when it holds a summary (a dict with a known status and the keys
    every finished run writes), else None: missing, unreadable, damaged or not a summary."""
    return _summary_and_problem(run_dir)[0]


def is_finished(run_dir: Path | str) -> bool:
    """A run is finished iff its summary.json holds a summary (train.py writes it last, atomically)."""
    return read_summary(run_dir) is not None


# -- checkpoints ---------------------------------------------------------------------------------
def save_checkpoint(out: Path, state: dict[str, Any]) -> None:
    """Write the new checkpoint completely (temp file, fsync), keep the last good one as .prev.

    The first checkpoint of a run that --force started replaces the old run: its backup goes."""
    path = out / CHECKPOINT
    with _writing(path):
        fd, tmp_name = tempfile.mkstemp(prefix=".checkpoint.", suffix=".tmp", dir=out)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            atomic_torch_save(state, tmp)
            if path.exists():
                os.replace(path, out / PREVIOUS_CHECKPOINT)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_directory(out)  # make both renames durable
    guard.drop_backup(out)


def _zip_is_intact(path: Path) -> str | None:
    """torch.load does not check the archive's CRC-32s, so a flipped byte in tensor data would load
    silently; check them first. Returns the name of the first bad member, or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as error:
        return f"not a zip archive ({error}): truncated or overwritten"
    return None if bad is None else f"corrupted data in {bad}"


def short_error(error: Exception) -> str:
    """One line. torch's refusal of a pickled object spans a page and advises weights_only=False,
    which would run whatever code the file names: it is never shown, only what the file holds."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) or "weights_only" in text or "Weights only" in text:
        names = list(dict.fromkeys(re.findall(r"GLOBAL\s+([\w.]+)", text)))
        held = f" ({', '.join(names)})" if names else ""
        return (
            f"it holds objects{held} that only pickle can load, which can run any code; aalr loads "
            "checkpoints with torch.load(weights_only=True) only and does not load such files"
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(error).__name__}: {first[:200]}"


def load_checkpoint(out: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint, or None when there is none.

    A corrupted or unsafe file is reported (naming it) and the previous one is tried; when every
    checkpoint present is unreadable the run stops with an error: never a silent restart.
    """
    errors = []
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = out / name
        if not path.exists():
            continue
        try:
            bad = _zip_is_intact(path)
            if bad is not None:
                raise ValueError(bad)
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
            missing = sorted(CHECKPOINT_KEYS - set(state)) if isinstance(state, dict) else ["all"]
            if missing:
                raise ValueError(f"it lacks {', '.join(missing)}: not a checkpoint of this harness")
        except Exception as error:  # truncated, corrupted, or holding pickled objects
            message = f"checkpoint {str(path)!r} cannot be loaded safely ({short_error(error)})"
            log.error(message)
            errors.append(message)
            continue
        if errors:
            log.warning("resuming from the previous checkpoint %s", path)
        return state
    if errors:
        raise RunError("; ".join(errors) + "; no good checkpoint is left (--force starts the run over)")
    return None


def load_checkpoint_on_every_rank(out: Path) -> dict[str, Any] | None:
    """Every rank reads the checkpoint itself (the output directory must be on a shared file system);
    the ranks then check that they read the same epoch, so they cannot train apart."""
    error: RunError | None = None
    checkpoint: dict[str, Any] | None = None
    try:
        checkpoint = load_checkpoint(out)
    except RunError as caught:
        if not distributed.active():
            raise
        error = caught
    epoch = -2 if error is not None else -1 if checkpoint is None else int(checkpoint["epoch"])
    low, high = distributed.min_max_over_ranks(epoch)
    if error is not None:
        raise error
    if low != high:
        raise RunError(
            f"the ranks read different checkpoints in {str(out)!r} (epochs {low} to {high}; -1: none, "
            "-2: unreadable); the output directory must be on a file system that every node shares"
        )
    return checkpoint


# -- the directory before, and after, a run ------------------------------------------------------
def check_writable(out: Path) -> None:
    """Create ``out`` if needed and check that it can be written and has room; before any training."""
    try:
        if out.exists() and not out.is_dir():
            raise RunError(f"output path {str(out)!r} exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise RunError(f"output directory {str(out)!r} is not writable: {error}") from error
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_MIB * 2**20:
        raise RunError(
            f"output directory {str(out)!r} has only {free // 2**20} MiB free; "
            f"need at least {MIN_FREE_MIB} MiB"
        )


def _run_config(path: Path) -> tuple[Any, str | None]:
    """The parsed config.json, and why it is not a run's settings (None when it is one)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return None, f"cannot read {str(path)!r}: {error}"
    if not isinstance(saved, dict):
        return saved, f"{str(path)!r} holds {type(saved).__name__}, not a run's settings"
    missing = [key for key in RUN_CONFIG_KEYS if key not in saved]
    if missing:
        return saved, (f"{str(path)!r} holds an object without {', '.join(missing)}, not a run's settings")
    return saved, None


def _foreign_entries(out: Path) -> list[str]:
    """What in ``out`` is neither a run's file nor one aalr leaves there itself."""
    found = []
    for path in sorted(out.iterdir()):
        name = path.name
        if name in OWN_FILES or (name.startswith(".") and name.endswith(".tmp")):
            continue
        if name not in RUN_FILES:
            found.append(name)
        elif name == "grid" and not path.is_dir():
            found.append("grid (not a folder)")
        elif name == "grid":
            found += [
                f"grid/{p.name}"
                for p in sorted(path.iterdir())
                if not (p.is_dir() and p.name.startswith("lr"))
            ]
        elif path.is_dir():
            found.append(f"{name} (a folder)")
    return found


def prepare_out_dir(
    out: Path,
    config: TrainConfig,
    *,
    resume: bool,
    force: bool,
    validation: bool = False,
) -> bool:
    """Check the directory before training; return True when it holds a run to resume. The caller
    holds the directory's lock (:func:`aalr.harness.guard.lock_out_dir`).

    First repairs what an interrupted ``--force`` left (:func:`aalr.harness.guard.recover`). A
    config.json that is not a run's settings is never resumed, replaced or deleted. Another run's
    directory is refused unless ``resume`` (same settings; a grid's validation run and a normal run never
    match) or ``force`` (start over: the old run is moved aside, see :mod:`aalr.harness.guard`; a
    folder that also holds other files is refused). A run's files without a config.json are refused
    unless ``force``: they can be neither compared nor overwritten safely.
    """
    check_writable(out)
    guard.recover(out, RUN_FILES)
    present = [name for name in RUN_FILES if os.path.lexists(out / name)]
    if not present:
        return False
    folders = [name for name in present if name != "grid" and (out / name).is_dir()]
    if folders:  # not a run's: a file aalr writes cannot be written there
        raise RunError(
            f"{', '.join(str(out / n) for n in folders)} is a folder where aalr writes a file; move it "
            "away or give another --out"
        )
    config_path = out / "config.json"
    saved: Any = None
    if "config.json" in present:
        saved, problem = _run_config(config_path)
        if problem is not None:
            raise RunError(f"{problem}; aalr neither resumes nor replaces such a folder: give another --out")
    if force:
        foreign = _foreign_entries(out)
        if foreign:
            raise RunError(
                f"--force replaces a run only, and {str(out)!r} also holds {', '.join(foreign)}; move "
                "that away first or give another --out"
            )
        for stale in out.glob(".*.tmp"):  # left by a write that a kill interrupted
            stale.unlink(missing_ok=True)
        guard.move_aside(out, present)
        return False
    if saved is None:
        raise RunError(
            f"output directory {str(out)!r} holds {', '.join(present)} but no config.json: a run's files "
            "without its settings can be neither resumed nor overwritten safely; use --force to replace "
            "them (they are kept until the new run has its first checkpoint) or give another --out"
        )
    if not resume:
        raise RunError(
            f"output directory {str(out)!r} holds another run (config.json); use --resume to continue it "
            "or --force to overwrite it"
        )
    mine = saved_settings(config, validation=validation)
    differences = sorted(
        key
        for key in set(saved) | set(mine)
        if key not in RESUMABLE_DIFFERENCES
        and key not in ("version", "git_commit")
        and saved.get(key) != mine.get(key)
    )
    if differences:
        # a value the command did not give is the default: say so, or "given 30" reads as the user's
        defaults = saved_settings(TrainConfig(), validation=validation)

        def given(key: str) -> str:
            value = mine.get(key)
            return f"{value!r} (the default)" if value == defaults.get(key) else repr(value)

        shown = ", ".join(f"{k}: saved {saved.get(k)!r}, this command {given(k)}" for k in differences)
        raise RunError(
            f"--resume with settings that differ from the saved run in {str(out)!r}: {shown}; to continue "
            f"it, repeat the command that started it (its settings are in {str(config_path)!r}); to start "
            "a new run in this folder instead, use --force in place of --resume (the saved run is kept "
            "until the new one's first checkpoint)"
        )
    for stale in out.glob(".*.tmp"):  # left by a write that a kill interrupted
        stale.unlink(missing_ok=True)
    return True


def look_before_run(
    out: Path, config: TrainConfig, *, resume: bool, force: bool, validation: bool = False
) -> dict[str, Any]:
    """:func:`prepare_out_dir`, and the summary of a run that has finished already:
    ``{"resuming": bool, "summary": dict | None}``. A summary.json that is damaged or not a summary
    (:func:`read_summary`) means the run is finished again, which is said."""
    resuming = prepare_out_dir(out, config, resume=resume, force=force, validation=validation)
    if resuming:
        summary, problem = _summary_and_problem(out)
        if summary is not None:
            return {"resuming": True, "summary": summary}
        if problem is not None:
            again = "from its checkpoint" if guard.has_checkpoint(out) else "from the start (no checkpoint)"
            log.warning(
                "%s is not a run's summary (%s); finishing the run again %s",
                out / "summary.json",
                problem,
                again,
            )
    return {"resuming": resuming, "summary": None}


def nothing_to_resume(out: Path) -> bool:
    """True when ``out`` holds no run at all, not even one an interrupted --force moved aside."""
    return not any(os.path.lexists(out / name) for name in (*RUN_FILES, guard.REPLACED, guard.MOVING))


def _grid_has_checkpoint(out: Path) -> bool:
    grid = out / "grid"
    return grid.is_dir() and any(guard.has_checkpoint(sub) for sub in grid.iterdir() if sub.is_dir())


def undo_failed_start(out: Path, *, fresh: bool) -> None:
    """A run that failed before its first checkpoint leaves ``out`` as it found it: the run --force
    was replacing put back; no config.json (nor grid runs) that would make a retry look like another
    run. Grid runs that have checkpoints are kept, with the config.json: --resume continues them."""
    if guard.has_checkpoint(out):
        return  # it trained: resumable with --resume
    if (out / guard.REPLACED).exists():
        guard.restore_backup(out, RUN_FILES)
        log.warning("the run failed before its first checkpoint; the run it replaced is back in %s", out)
        return
    if not fresh:
        return
    if _grid_has_checkpoint(out):
        log.warning("%s: the grid's runs so far are kept; --resume continues them", out)
        return
    for name in ("config.json", "metrics.jsonl"):
        (out / name).unlink(missing_ok=True)
    if (out / "grid").is_dir():
        shutil.rmtree(out / "grid")


def drop_replaced(out: Path) -> None:
    """Delete the run --force replaced once the new run has a checkpoint (before one, keep it)."""
    guard.drop_backup(out)
