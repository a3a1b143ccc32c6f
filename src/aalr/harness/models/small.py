"""Small models for CPU work: the MNIST-1D CNN, a two-conv CNN for (Fashion-)MNIST, and an MLP.

All keep PyTorch's default initialisation, as their reference code does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aalr.harness.models.common import image_shape


class MNIST1DCNN(nn.Module):
    """The CNN of the MNIST-1D paper (Greydanus 2020; ``ConvBase`` in greydanus/mnist1d).

    Conv1d(C, 25, 5, stride 2, pad 1)-ReLU, Conv1d(25, 25, 3, stride 2, pad 1)-ReLU,
    Conv1d(25, 25, 3, stride 2, pad 1)-ReLU, flatten, Linear. A length-40 signal shrinks to
    19, 10, 5, so for (1, 40) and 10 classes the model has 150 + 1,900 + 1,900 + 1,260 = 5,210
    parameters, the figure the MNIST-1D paper gives for its CNN.
    """

    def __init__(self, in_channels: int, length: int, num_classes: int, channels: int = 25) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.linear = nn.Linear(channels * mnist1d_cnn_output_length(length), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = F.relu(self.conv3(out))
        return self.linear(torch.flatten(out, 1))


def mnist1d_cnn_output_length(length: int) -> int:
    """Length of the signal after the three strided convs of :class:`MNIST1DCNN`."""
    length = (length + 2 - 5) // 2 + 1
    for _ in range(2):
        length = (length + 2 - 3) // 2 + 1
    return length


def mnist1d_cnn(num_classes: int, input_shape: tuple[int, ...], *, channels: int = 25) -> nn.Module:
    """MNIST-1D CNN for (C, L) signals with L >= 3 (the data set's own length is 40)."""
    if len(input_shape) != 2 or input_shape[1] < 3:
        raise ValueError(f"mnist1d-cnn needs input_shape (C, L) with L >= 3, e.g. (1, 40); got {input_shape}")
    _check_positive_int("mnist1d-cnn", "channels", channels)
    return MNIST1DCNN(input_shape[0], input_shape[1], num_classes, channels)


class FashionCNN(nn.Sequential):
    """Two conv-ReLU-maxpool stages (32 and 64 channels, 3x3, padding 1) and an MLP head (128)."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int, scale: float) -> None:
        conv1, conv2, hidden = (max(1, round(c * scale)) for c in (32, 64, 128))
        super().__init__(
            nn.Conv2d(in_channels, conv1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(conv1, conv2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(conv2 * (height // 4) * (width // 4), hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )


def fmnist_cnn(num_classes: int, input_shape: tuple[int, ...], *, width: float = 1.0) -> nn.Module:
    """Small CNN for (C, H, W) images with H, W divisible by 4; ``width`` scales every hidden width."""
    image_shape("fmnist-cnn", input_shape, min_size=4, multiple=4)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not (0 < width < math.inf):
        raise ValueError(f"fmnist-cnn: width must be a finite number > 0, got {width!r}")
    channels, height, image_width = input_shape
    return FashionCNN(channels, height, image_width, num_classes, float(width))


def mlp(num_classes: int, input_shape: tuple[int, ...], *, hidden: int = 256) -> nn.Module:
    """Flatten, then two hidden Linear-ReLU layers of ``hidden`` units, then Linear; any input shape."""
    _check_positive_int("mlp", "hidden", hidden)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def _check_positive_int(model_name: str, option: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{model_name}: {option} must be an int >= 1, got {value!r}")
