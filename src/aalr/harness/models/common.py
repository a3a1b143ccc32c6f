"""Pieces every model shares: the input normalization layer and input-shape checks.

Models take inputs in model units ([0, 1] pixels for images, raw values for MNIST-1D) and normalize
inside, so that adversarial attacks can work in pixel units and clip to [0, 1] without knowing the
data set's statistics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; the identity (mean 0, std 1) when no statistics are given.

    ``mean`` and ``std`` are buffers, so they move with ``.to(device)`` and are saved in the state
    dict: a checkpoint carries the normalization its weights were trained with. They are always
    present (zeros and ones for the identity) so that every model of a given name has the same
    state-dict keys whatever statistics it was built with.

    Args:
        num_channels: C, the size of dim 1 of the input.
        spatial_dims: how many dims follow the channel dim (2 for images, 1 for 1-D signals).
        mean, std: C values each, or both None.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        num_channels: int,
        spatial_dims: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        mean_values, std_values = check_mean_std(mean, std, num_channels)
        view = (num_channels,) + (1,) * spatial_dims
        self.register_buffer("mean", torch.tensor(mean_values, dtype=torch.float32).reshape(view))
        self.register_buffer("std", torch.tensor(std_values, dtype=torch.float32).reshape(view))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def check_mean_std(
    mean: Sequence[float] | None, std: Sequence[float] | None, num_channels: int
) -> tuple[list[float], list[float]]:
    """Validate mean/std for ``num_channels`` channels; return them as lists (identity if both None)."""
    if mean is None and std is None:
        return [0.0] * num_channels, [1.0] * num_channels
    if mean is None or std is None:
        raise ValueError(f"give both mean and std or neither; got mean={mean!r}, std={std!r}")
    values: dict[str, list[float]] = {}
    for label, given in (("mean", mean), ("std", std)):
        # Any iterable of numbers will do (tuple, list, 1-D tensor or array), but not a string.
        if isinstance(given, (str, bytes)) or not isinstance(given, Iterable):
            raise TypeError(f"{label} must be a sequence of {num_channels} floats, got {given!r}")
        as_floats = [float(v) for v in given]
        if len(as_floats) != num_channels:
            raise ValueError(
                f"{label} must have one value per input channel ({num_channels}), "
                f"got {len(as_floats)}: {list(given)!r}"
            )
        if not all(math.isfinite(v) for v in as_floats):
            raise ValueError(f"{label} values must be finite, got {list(given)!r}")
        values[label] = as_floats
    if any(v <= 0.0 for v in values["std"]):
        raise ValueError(f"std values must be > 0, got {list(std)!r}")
    return values["mean"], values["std"]


def image_shape(model_name: str, input_shape: tuple[int, ...], *, min_size: int, multiple: int = 1) -> None:
    """Raise ValueError unless ``input_shape`` is (C, H, W), H and W >= min_size and divisible by multiple."""
    need = f"(C, H, W) with H, W >= {min_size}" + (f" and divisible by {multiple}" if multiple > 1 else "")
    if len(input_shape) != 3:
        raise ValueError(f"{model_name} needs input_shape {need}, got {input_shape}")
    _, height, width = input_shape
    if min(height, width) < min_size or height % multiple or width % multiple:
        raise ValueError(f"{model_name} needs input_shape {need}, got {input_shape}")


def check_positive_int(model_name: str, option: str, value: object) -> int:
    """Raise ValueError unless ``value`` is an int >= 1 (bools refused); return it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{model_name}: {option} must be an int >= 1, got {value!r}")
    return value


def check_width(model_name: str, value: object) -> float:
    """Raise ValueError unless ``value`` (a width multiplier) is a finite number > 0; return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise ValueError(f"{model_name}: width must be a finite number > 0, got {value!r}")
    return float(value)


def check_dropout(model_name: str, value: object) -> float:
    """Raise ValueError unless ``value`` is a number in [0, 1); return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{model_name}: dropout must be in [0, 1), got {value!r}")
    return float(value)


def scaled(channels: int, width: float) -> int:
    """``channels`` times the width multiplier, rounded, at least 1."""
    return max(1, round(channels * width))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (buffers such as BN statistics and Normalize excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
