"""Fixtures shared by the test folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def _write_cifar10(root: Path, n_train: int = 512, n_test: int = 256) -> Path:
    """Small CIFAR-10 files in the official binary format under ``root``; returns ``root``."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [
        *[(f"data_batch_{i}.bin", n_train // 5) for i in range(1, 6)],
        ("test_batch.bin", n_test),
    ]:
        labels = rng.integers(0, 10, size=(n, 1), dtype=np.uint8)
        # class-dependent brightness so that the task is learnable
        pixels = (rng.integers(0, 128, size=(n, 3072)) + labels * 12).astype(np.uint8)
        (folder / name).write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())
    return root


@pytest.fixture
def write_cifar10() -> Callable[..., Path]:
    """``write_cifar10(root, n_train=512, n_test=256)`` writes small CIFAR-10 files under ``root``."""
    return _write_cifar10
