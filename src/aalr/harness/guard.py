"""Who may write to a run's output directory, and how ``--force`` replaces a run without ever losing it.

**One writer.** :func:`lock_out_dir` takes an exclusive ``flock`` on :data:`LOCK` in the directory and
holds it for the whole run (rank 0 under ``torchrun``): a second ``aalr train`` on the same ``--out``
is refused, naming the process that holds it. The kernel drops the lock when its process dies, however
it dies, so a lock file left by a killed run blocks nothing; a run that ends removes it.

**Never lose a run.** ``--force`` moves the old run's files into :data:`MOVING`, then renames that
folder to :data:`REPLACED` (one atomic rename: the backup is complete). The new run writes its files;
once its first checkpoint exists, :func:`drop_backup` deletes the backup. Every other state a kill can
leave is repaired by :func:`recover`, which runs first on every start, under the lock:

- :data:`MOVING` exists: files were being moved aside (or back); each file is in one place or the
  other, never both, so they all go back: the old run, whole.
- :data:`REPLACED` exists and the directory has a checkpoint: the new run had replaced the old one
  (the backup's deletion was cut short); the backup is deleted.
- :data:`REPLACED` exists and there is no checkpoint: the new run never got going; its files are
  deleted and the old run is put back (rename to :data:`MOVING` first, so that a kill while moving
  back is the first case, not this one).

The same restore runs when a new run fails before its first checkpoint (:func:`restore_backup`).
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
from pathlib import Path

from aalr.harness.config import RunError

log = logging.getLogger("aalr.harness")

LOCK = ".aalr.lock"
# The run --force replaces, complete, until the new run has its first checkpoint.
REPLACED = ".replaced-by-force"
# Files on their way into (or back out of) the backup.
MOVING = ".replaced-by-force.moving"
CHECKPOINTS = ("checkpoint.pt", "checkpoint.prev.pt")


# -- the lock ------------------------------------------------------------------------------------
class OutDirInUse(RunError):
    """Another process holds the output directory's lock."""


class OutDirLock:
    """An exclusive ``flock`` on ``out/.aalr.lock``; :meth:`release` it (or let the process end)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file, then unlock. Removing it first is safe: a process that opened the
        file meanwhile finds, once it holds the lock, that the path names another file (or none)
        and opens again (see :func:`lock_out_dir`)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # an unremovable lock file blocks nothing once unlocked
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _not_writable(out: Path, error: OSError) -> RunError:
    return RunError(f"output directory {str(out)!r} is not writable: {error}")


def lock_out_dir(out: Path) -> OutDirLock:
    """Create ``out`` if needed and lock it for this process, before anything is read or written there.

    Raises :class:`RunError` when another process holds it (naming that process), or when ``out``
    cannot be made or written.
    """
    try:
        if out.exists() and not out.is_dir():
            raise RunError(f"output path {str(out)!r} exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _not_writable(out, error) from error
    path = out / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise _not_writable(out, error) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _holder(fd)
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutDirInUse(
                    f"output directory {str(out)!r} is in use by another aalr run ({holder}); wait for "
                    "it to end, or give another --out"
                ) from None
            raise RunError(f"cannot lock output directory {str(out)!r}: {error}") from error
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder released and removed this file meanwhile: lock the path's file
    try:
        os.ftruncate(fd, 0)
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    except OSError:
        pass  # a full disk: the lock holds all the same, only its holder goes unnamed
    return OutDirLock(path, fd)


def _holder(fd: int) -> str:
    """Who holds the lock, as its file says."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {int(info['pid'])} on {info['host']}, since {info['started']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "a process that has not said which yet"


# -- the backup of the run --force replaces ------------------------------------------------------
def move_aside(out: Path, names: list[str]) -> None:
    """Move ``names`` (the old run's files and folders) into the backup, in one commit (a rename)."""
    moving = out / MOVING
    moving.mkdir()
    for name in names:
        os.replace(out / name, moving / name)
    _fsync_dir(moving)
    os.rename(moving, out / REPLACED)
    _fsync_dir(out)


def has_checkpoint(out: Path) -> bool:
    return any((out / name).exists() for name in CHECKPOINTS)


def recover(out: Path, new_run_files: tuple[str, ...]) -> None:
    """Repair what an interrupted ``--force`` left (see the module's docstring); a no-op otherwise.

    ``new_run_files``: the names a new run writes, deleted when the old run is put back.
    """
    moving, replaced = out / MOVING, out / REPLACED
    for path in (moving, replaced):
        if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
            raise RunError(
                f"{str(path)!r} is not a folder that aalr made (it keeps a run --force replaces there); "
                "move it away or give another --out"
            )
    if moving.exists() and replaced.exists():
        raise RunError(
            f"{str(out)!r} holds both {MOVING} and {REPLACED}, which aalr never leaves together; the "
            f"replaced run's files are in those two folders: put them back by hand"
        )
    if moving.exists():
        _move_back(out)
        log.warning("%s: an interrupted --force had begun to move the run aside; it is back in place", out)
    elif replaced.exists():
        if has_checkpoint(out):
            drop_backup(out)
            log.warning("%s: deleted the run that an interrupted --force had replaced", out)
        else:
            restore_backup(out, new_run_files)
            log.warning(
                "%s: a --force run stopped before its first checkpoint; the run it was replacing is "
                "back in place",
                out,
            )


def restore_backup(out: Path, new_run_files: tuple[str, ...]) -> None:
    """Delete the new run's files and put the backup back (the new run has no checkpoint)."""
    for name in new_run_files:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for stale in out.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    os.rename(out / REPLACED, out / MOVING)  # from here on, a kill leaves the state _move_back repairs
    _move_back(out)


def _move_back(out: Path) -> None:
    moving = out / MOVING
    for path in sorted(moving.iterdir()):
        if os.path.lexists(out / path.name):
            raise RunError(
                f"{str(out / path.name)!r} and {str(path)!r} both exist: the run that --force was "
                f"replacing is in {str(moving)!r}; aalr will not choose between them, move them by hand"
            )
        os.replace(path, out / path.name)
    moving.rmdir()
    _fsync_dir(out)


def drop_backup(out: Path) -> None:
    """Delete the replaced run once the new run has a checkpoint (before one, keep it)."""
    if has_checkpoint(out) and (out / REPLACED).exists():
        shutil.rmtree(out / REPLACED)


def _fsync_dir(directory: Path) -> None:
    from aalr.snapshot import fsync_directory

    fsync_directory(directory)
