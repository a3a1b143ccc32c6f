"""A run's metrics as TensorBoard events: one call per epoch, with the row the run writes to metrics.jsonl.

:class:`TensorBoardLog` takes exactly the dicts of a run's ``metrics.jsonl`` (one per epoch or
round) and writes them with ``torch.utils.tensorboard.SummaryWriter``, the row's ``epoch`` as the
global step; :func:`write_run` does the same for a finished run folder. Example::

    with TensorBoardLog(Path("tb/my-run")) as tb:
        for row in rows:        # {"epoch": 1, "lr": 0.1, "train_loss": 2.19, ..., "action": ...}
            tb.epoch(row)

Tags (stable: dashboards and scripts key on them)

==========================  ==========================================================
row key                     tag
==========================  ==========================================================
``lr``                      ``lr``: the LR the epoch trained at
``next_lr``                 ``lr/next``: the LR the method set for the next epoch
``train_<x>``, ``test_<x>`` ``train/<x>``, ``test/<x>`` (``train/loss``, ``test/loss``,
                            ``test/acc``; a grid's validation runs hold their validation
                            split in ``test``)
``<attack>_acc``            ``robust/<attack>_acc`` (``robust/fgsm_acc``,
                            ``robust/pgd_acc``): accuracy under attack, on the epochs that
                            measured it
``seconds``, ``*seconds``   ``time/<key>``: wall-clock seconds, not a result
any other number            its key, unchanged
``action``                  ``aalr/action``: a scalar code (:data:`ACTION_CODES`), so a
                            restore lines up with the LR plot's steps
``action`` and ``reason``   ``aalr/decision``: text, ``"<action>: <reason>"`` (TensorBoard
                            lists it as ``aalr/decision/text_summary``)
==========================  ==========================================================

Action codes: ``none`` 0, ``save_best`` 1, ``restore_initial`` 2, ``restore_best`` 3 (AALR's), then
the schedules' ``decay`` 4 and ``restart`` 5; an action not listed is written as -1 (its text
still names it). Strings other than these two (e.g. ``numerics``) and bools are not written.

A non-finite number (a diverged loss, an LR that became NaN) and ``null`` (how metrics.jsonl
holds them) are both written as NaN, so a live log and one made from the file afterwards agree
(TensorBoard serves such a point as NaN; it is not dropped).

Resume and rewrite: the folder is opened on the first row written, with ``purge_step`` at that
row's epoch, so events an earlier writer left at that epoch or later (a session killed after its
last checkpoint, a run replaced with ``--force``, the same run written again) are hidden: every
epoch shows once, as last written. A folder's event files are read in the order of their names,
which start with the second they were opened in.

TensorBoard may show only a sample of a tag's text entries (10 with ``--load_fast=false``); to see
every decision, start it with ``tensorboard --logdir DIR --samples_per_plugin text=0``.

The ``tensorboard`` package is imported only when a log is made, so the rest of the harness (the
report too) works without it; without it, :class:`TensorBoardUnavailable` (a ValueError: the CLI
exits with code 2) says how to install it.
"""

from __future__ import annotations

import json
import math
import numbers
import types
from pathlib import Path
from typing import Any

__all__ = [
    "ACTION_CODES",
    "MISSING_PACKAGE",
    "TensorBoardLog",
    "TensorBoardUnavailable",
    "require_tensorboard",
    "tag_for",
    "write_run",
]

ACTION_CODES = {
    "none": 0,
    "save_best": 1,
    "restore_initial": 2,
    "restore_best": 3,
    "decay": 4,
    "restart": 5,
}
UNKNOWN_ACTION_CODE = -1
ACTION_TAG = "aalr/action"
DECISION_TAG = "aalr/decision"
MISSING_PACKAGE = "--tensorboard needs the package 'tensorboard': pip install 'aalr[harness]'"

_STEP_KEY = "epoch"
_DECISION_KEYS = ("action", "reason")
_NAMED_TAGS = {"lr": "lr", "next_lr": "lr/next"}
_SPLITS = ("train", "test")


class TensorBoardUnavailable(ValueError):
    """The ``tensorboard`` package is not installed (a ValueError, so the CLI exits with code 2)."""


def require_tensorboard() -> None:
    """Raise :class:`TensorBoardUnavailable` unless the ``tensorboard`` package can be used: for a
    command line to check ``--tensorboard`` before any run starts."""
    _summary_writer_class()


def _summary_writer_class() -> type:
    """``SummaryWriter``, imported here so that only a TensorBoard log needs the package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # torch.utils.tensorboard raises ImportError for a missing or old one
        raise TensorBoardUnavailable(MISSING_PACKAGE) from error
    return SummaryWriter


def tag_for(key: str) -> str:
    """The tag a numeric row key is written under (see the module docstring)."""
    if key in _NAMED_TAGS:
        return _NAMED_TAGS[key]
    if key.endswith("seconds"):
        return f"time/{key}"
    split, _, rest = key.partition("_")
    if split in _SPLITS and rest:
        return f"{split}/{rest}"
    if key.endswith("_acc"):
        return f"robust/{key}"
    return key


def _as_scalar(value: object) -> float | None:
    """A number (not a bool) as a float, non-finite ones and None as NaN; None for anything else."""
    if value is None:
        return math.nan  # metrics.jsonl holds a non-finite number as null
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else math.nan


def _epoch_of(row: dict[str, Any]) -> int:
    epoch = row.get(_STEP_KEY)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"a metrics row needs 'epoch', an int >= 0 (the step); got {epoch!r}")
    return epoch


class TensorBoardLog:
    """Writes a run's metrics rows, one per epoch, as TensorBoard events in ``log_dir``.

    Args:
        log_dir: the folder of this run's event files (made when missing). One run per folder:
            TensorBoard shows each folder as a run.

    Raises:
        TensorBoardUnavailable: the ``tensorboard`` package is not installed.
        ValueError: ``log_dir`` is a file.

    Nothing is written until the first :meth:`epoch`; its epoch is the ``purge_step``, so a resumed
    run (first row at the epoch after its checkpoint) hides what an earlier session wrote from
    there on instead of showing those epochs twice. Rows must come in increasing epochs. Each row is
    flushed to disk when written, so TensorBoard shows a run while it trains. Under torch.distributed
    only rank 0 should write rows (a log made on another rank and never written to leaves no file).

    Example::

        with TensorBoardLog(Path("tb/run")) as tb:   # before the first epoch
            ...
            tb.epoch(row)                            # after each epoch, with its metrics.jsonl row
    """

    def __init__(self, log_dir: Path | str) -> None:
        self._writer_class = _summary_writer_class()
        self.log_dir = Path(log_dir)
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise ValueError(f"TensorBoard log folder {str(self.log_dir)!r} is a file, not a folder")
        self.log_dir.mkdir(parents=True, exist_ok=True)  # an unusable path fails now, not after an epoch
        self._writer: Any = None
        self._last_epoch: int | None = None
        self._closed = False

    @property
    def last_epoch(self) -> int | None:
        """The epoch of the last row written, or None before the first."""
        return self._last_epoch

    def epoch(self, row: dict[str, Any]) -> None:
        """Write one metrics row (a dict as in metrics.jsonl) at step ``row["epoch"]``."""
        if self._closed:
            raise ValueError(f"the TensorBoard log in {str(self.log_dir)!r} is closed")
        step = _epoch_of(row)
        if self._last_epoch is not None and step <= self._last_epoch:
            raise ValueError(
                f"metrics row for epoch {step} after epoch {self._last_epoch}: rows must come in "
                "increasing epochs"
            )
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.log_dir), purge_step=step)
        writer = self._writer
        for key, value in row.items():
            if key == _STEP_KEY or key in _DECISION_KEYS:
                continue
            scalar = _as_scalar(value)
            if scalar is not None:
                writer.add_scalar(tag_for(key), scalar, global_step=step)
        if "action" in row:
            action = str(row["action"])
            writer.add_scalar(ACTION_TAG, ACTION_CODES.get(action, UNKNOWN_ACTION_CODE), global_step=step)
            writer.add_text(DECISION_TAG, f"{action}: {row.get('reason', '')}", global_step=step)
        writer.flush()
        self._last_epoch = step

    def close(self) -> None:
        """Flush and close the event file; safe to call twice."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._closed = True

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.close()


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"no {path.name} in {str(path.parent)!r}: not a run folder")
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise ValueError(f"{path}, line {number}: not valid JSON ({error})") from error
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def write_run(run_dir: Path | str, log_dir: Path | str) -> int:
    """Write the ``metrics.jsonl`` of the run in ``run_dir`` as TensorBoard events in ``log_dir``.

    The events are those a :class:`TensorBoardLog` writes while the run trains; writing a run again
    (into the same ``log_dir``) hides the earlier copy rather than doubling it. Returns the number of
    rows written.

    Raises:
        FileNotFoundError: ``run_dir`` has no metrics.jsonl.
        ValueError: a line is not a JSON object, or its epochs do not increase.
        TensorBoardUnavailable: the ``tensorboard`` package is not installed.
    """
    rows = _read_rows(Path(run_dir) / "metrics.jsonl")
    with TensorBoardLog(log_dir) as log:
        for row in rows:
            log.epoch(row)
    return len(rows)
