"""The global random number generators of Python, NumPy and torch: seeding, and their state as plain values.

A run seeds all three at its start (:func:`seed_everything`) and stores :func:`global_state` in each
checkpoint, so that a resumed run draws exactly what the uninterrupted one would have. The state holds
only strings, numbers, lists and tensors, so the checkpoint loads with ``torch.load(weights_only=True)``.
The run's own generators (data order, augmentation) are not here: they live in the checkpoint directly.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def global_state() -> dict[str, Any]:
    """The state of every global generator (CUDA's too, where there is CUDA), as plain values."""
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [
            str(np_state[0]),
            torch.from_numpy(np.asarray(np_state[1]).copy()),
            *map(float, np_state[2:]),
        ],
        "python": _python_rng_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_rng_plain(state: Any) -> Any:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_global_state(state: dict[str, Any]) -> None:
    """Put every global generator back where :func:`global_state` found it."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
