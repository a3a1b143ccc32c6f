"""How a run computes, apart from what it computes: the device, the precision and the memory layout.

A run's ``device`` ("auto", "cpu", "cuda[:N]"), ``precision`` (one of :data:`PRECISIONS`) and
``channels_last`` settings are resolved here into what this session does: a :class:`torch.device`,
"fp32" or "bf16" autocast (weights, optimizer state and the loss stay fp32), and whether image models
and batches are laid out channels_last. :func:`describe` names the result ("cpu bf16 channels_last"),
the label each epoch's metrics line records, because a resumed run may compute otherwise. On the CPU
bf16 is fast only with bf16 instructions, which :func:`cpu_has_bf16` looks for. Nothing here reads
a run's settings object or touches files: plain values in, plain values out.
"""

from __future__ import annotations

import contextlib
import logging
import platform
from typing import Any

import torch

log = logging.getLogger("aalr.harness")

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """What a run with ``precision`` (one of :data:`PRECISIONS`) does on ``device``: "fp32" or "bf16"."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (x86: AVX512-BF16 or AMX; Arm: oneDNN's check); elsewhere
    bf16 is emulated, slowly.

    On x86 not oneDNN's ``_is_mkldnn_bf16_supported``: it is true on any AVX512 CPU, where bf16 is
    emulated. torch.cpu has no Arm check, so there oneDNN's answer (the BF16 extension) is taken.
    """
    try:  # private functions: looked up with care, and a failure means "not known to have it"
        if platform.machine().lower() in ("aarch64", "arm64"):
            return _onednn_has_bf16()
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    except (AttributeError, RuntimeError):
        return False


def _onednn_has_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def warn_if_bf16_is_emulated(precision: str, device: torch.device) -> None:
    """Warn (it is allowed) when a run asks for bf16 on a CPU that would emulate it."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        log.warning(
            "precision bf16: this CPU shows neither AVX512-BF16 nor AMX, so bf16 is likely emulated and "
            "slower than fp32"
        )


def resolve_channels_last(
    channels_last: bool | None, device: torch.device, input_shape: tuple[int, ...]
) -> bool:
    """Whether a run lays out its model and batches channels_last: image inputs only (C, H, W); ``None``
    (auto) means on CUDA only."""
    if len(input_shape) != 3:
        return False
    return channels_last if channels_last is not None else device.type == "cuda"


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` when ``precision`` (resolved, see :func:`resolve_precision`) says so."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def describe(device: torch.device, precision: str, channels_last: bool, ranks: int) -> str:
    """How this session computes, e.g. "cuda bf16 channels_last 4 ranks": recorded with every epoch.

    The number of ranks is part of it (when more than one): BatchNorm sees each rank's share of a batch.
    """
    return " ".join(
        [
            device.type,
            precision,
            *(["channels_last"] if channels_last else []),
            *([f"{ranks} ranks"] * (ranks > 1)),
        ]
    )
