"""Where the tuner's snapshots (initial weights, best checkpoint) live.

A snapshot is ``{"model": model.state_dict(), "optimizer": optimizer.state_dict()}`` copied to the
CPU, so a GPU model's memory is not doubled. :class:`MemorySnapshots` (default) keeps them in
host memory; :class:`DirectorySnapshots` writes them to files (atomic: temp file, fsync, rename)
and reads them back with ``torch.load(weights_only=True)``.

Copies never alias live tensors: :func:`cpu_copy` is used when taking a snapshot, and the tuner
clones again when restoring, because ``Optimizer.load_state_dict`` keeps CPU tensors as they are
and its later in-place updates would otherwise write into the snapshot.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import torch


def cpu_copy(obj: Any, reuse: Any = None) -> Any:
    """A copy of nested dicts/lists/tuples in which every tensor is a CPU tensor of its own.

    ``reuse``: an earlier copy of the same structure. Its CPU tensors are overwritten in place
    where shape and dtype match, so a snapshot taken every few epochs allocates nothing; copies
    from a GPU go to pinned memory without blocking, then one synchronize (several times faster
    than pageable copies of a large model).
    """
    pending_cuda = [False]
    result = _copy(obj, reuse, pending_cuda)
    if pending_cuda[0]:
        torch.cuda.synchronize()
    return result


def _copy(obj: Any, reuse: Any, pending_cuda: list[bool]) -> Any:
    if isinstance(obj, torch.Tensor):
        source = obj.detach()
        if (
            isinstance(reuse, torch.Tensor)
            and reuse.device.type == "cpu"
            and reuse.shape == source.shape
            and reuse.dtype == source.dtype
        ):
            target = reuse
        elif source.is_cuda:
            target = torch.empty(source.shape, dtype=source.dtype, pin_memory=True)
        else:
            return source.to("cpu", copy=True)
        if source.is_cuda:
            pending_cuda[0] = True
            target.copy_(source, non_blocking=True)
        else:
            target.copy_(source)
        return target
    if isinstance(obj, dict):
        old = reuse if isinstance(reuse, dict) else {}
        return {key: _copy(value, old.get(key), pending_cuda) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        old_items = (
            list(reuse) if isinstance(reuse, list | tuple) and len(reuse) == len(obj) else [None] * len(obj)
        )
        items = [_copy(value, previous, pending_cuda) for value, previous in zip(obj, old_items, strict=True)]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def state_nbytes(obj: Any) -> int:
    """Bytes held by the tensors of a nested structure (snapshot cost reporting)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_nbytes(value) for value in obj.values())
    if isinstance(obj, list | tuple):
        return sum(state_nbytes(value) for value in obj)
    return 0


class SnapshotStore(Protocol):
    def put(self, name: str, state: dict[str, Any]) -> None: ...
    def get(self, name: str) -> dict[str, Any]: ...
    def drop(self, name: str) -> None: ...
    def names(self) -> list[str]: ...


class MemorySnapshots:
    """Snapshots in host (CPU) memory."""

    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}

    def put(self, name: str, state: dict[str, Any]) -> None:
        self._states[name] = state

    def get(self, name: str) -> dict[str, Any]:
        try:
            return self._states[name]
        except KeyError:
            raise KeyError(f"no snapshot named {name!r}; have {sorted(self._states)}") from None

    def drop(self, name: str) -> None:
        self._states.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._states)

    def peek(self, name: str) -> dict[str, Any] | None:
        """The snapshot if held, else None: its tensors may be overwritten in place by the next put."""
        return self._states.get(name)


def fsync_directory(directory: Path) -> None:
    """Make renames inside ``directory`` durable (where the platform allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through a temp file in the same directory: write, fsync, rename, fsync the folder.

    A crash leaves either the old file or the new one, never a truncated one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` with :func:`atomic_write`."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


class DirectorySnapshots:
    """Snapshots as ``<name>.pt`` files in a folder of this store's own; no tensor is kept in memory
    between calls.

    The store never writes into ``parent`` itself: it makes a new folder there
    (``aalr-snapshots-XXXXXXXX``, created exclusively, so no two stores, in one process or several,
    can share one), and removes it when the store is garbage collected or the interpreter exits. A
    user's own files in ``parent`` are never read, written or deleted. A ``parent`` that is a symbolic
    link is refused (a link could lead the tuner's writes anywhere, e.g. into ``/etc`` as root).
    """

    def __init__(self, parent: str | os.PathLike[str]) -> None:
        if not isinstance(parent, str | os.PathLike) or os.fspath(parent) == "":
            raise ValueError(f"snapshot_dir must be the path of a directory, got {parent!r}")
        self.parent = Path(parent)
        if self.parent.is_symlink():
            raise ValueError(
                f"snapshot_dir {str(self.parent)!r} is a symbolic link (to {os.readlink(self.parent)!r}); "
                "give the directory it points to, if that is where the snapshots belong"
            )
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
            self.directory = Path(tempfile.mkdtemp(prefix="aalr-snapshots-", dir=self.parent))
        except OSError as error:
            raise ValueError(
                f"snapshot directory {str(self.parent)!r} cannot be created or written: {error}"
            ) from error
        (self.directory / "README").write_text(
            f"Snapshots of one aalr.AALR tuner (process {os.getpid()}); removed when it ends. "
            "Safe to delete once that process is gone.\n"
        )
        self._names: set[str] = set()
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.directory, True)

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.pt"

    def put(self, name: str, state: dict[str, Any]) -> None:
        atomic_torch_save(state, self._path(name))
        self._names.add(name)

    def get(self, name: str) -> dict[str, Any]:
        path = self._path(name)
        if name not in self._names or not path.exists():
            raise KeyError(f"no snapshot named {name!r} in {str(self.directory)!r}")
        try:
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"snapshot file {str(path)!r} cannot be read safely: {error}") from error
        return state

    def drop(self, name: str) -> None:
        if name in self._names:
            self._path(name).unlink(missing_ok=True)
            self._names.discard(name)

    def names(self) -> list[str]:
        return sorted(self._names)
