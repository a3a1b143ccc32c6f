"""Small models for CPU work: the MNIST-1D CNN, two CNNs for (Fashion-)MNIST, and an MLP.

``fmnist-cnn`` has no normalisation layer; ``fmnist-bn-cnn`` puts BatchNorm after each of its four convs
(the VGG pattern at small size), and ``mlp`` takes LayerNorm and dropout as options, so that the harness has
small tasks that differ in normalisation from the ones AALR+'s rules were chosen on. All keep PyTorch's
default initialisation, as their reference code does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aalr.harness.models.common import check_dropout, check_positive_int, check_width, image_shape, scaled


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
    check_positive_int("mnist1d-cnn", "channels", channels)
    return MNIST1DCNN(input_shape[0], input_shape[1], num_classes, channels)


class FashionCNN(nn.Sequential):
    """Two conv-ReLU-maxpool stages (32 and 64 channels, 3x3, padding 1) and an MLP head (128)."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int, scale: float) -> None:
        conv1, conv2, hidden = (scaled(c, scale) for c in (32, 64, 128))
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
    channels, height, image_width = input_shape
    return FashionCNN(channels, height, image_width, num_classes, check_width("fmnist-cnn", width))


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 conv (padding 1, no bias: the BatchNorm's shift replaces it), BatchNorm, ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]


class FashionBNCNN(nn.Sequential):
    """Two stages of (conv-BN-ReLU x2, maxpool 2) at 32 and 64 channels, then one linear layer.

    For 1x28x28 and 10 classes at width 1: convs 288 + 9,216 + 18,432 + 36,864, BatchNorms 2 x (32 + 32
    + 64 + 64), Linear(64*7*7, 10) 31,370: 96,554 parameters.
    """

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int, scale: float) -> None:
        first, second = scaled(32, scale), scaled(64, scale)
        super().__init__(
            *conv_bn_relu(in_channels, first),
            *conv_bn_relu(first, first),
            nn.MaxPool2d(2),
            *conv_bn_relu(first, second),
            *conv_bn_relu(second, second),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(second * (height // 4) * (width // 4), num_classes),
        )


def fmnist_bn_cnn(num_classes: int, input_shape: tuple[int, ...], *, width: float = 1.0) -> nn.Module:
    """CNN with BatchNorm for (C, H, W) images with H, W divisible by 4; ``width`` scales the channels."""
    image_shape("fmnist-bn-cnn", input_shape, min_size=4, multiple=4)
    channels, height, image_width = input_shape
    return FashionBNCNN(channels, height, image_width, num_classes, check_width("fmnist-bn-cnn", width))


MLP_NORMS = ("none", "layer")


def mlp(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    hidden: int = 256,
    norm: str = "none",
    dropout: float = 0.0,
) -> nn.Module:
    """Flatten, two hidden layers of ``hidden`` units, Linear; any input shape.

    Each hidden layer is Linear, then LayerNorm if ``norm="layer"`` (as in the MLP blocks of tabular
    networks, e.g. Gorishniy et al. 2021's ResNet-like baseline), ReLU, then Dropout if ``dropout`` > 0.
    The defaults (no norm, no dropout) are the plain MLP, with the same layers and state-dict keys as before
    these options existed.
    """
    check_positive_int("mlp", "hidden", hidden)
    if norm not in MLP_NORMS:
        raise ValueError(f"mlp: norm must be one of {', '.join(map(repr, MLP_NORMS))}, got {norm!r}")
    rate = check_dropout("mlp", dropout)
    layers: list[nn.Module] = [nn.Flatten()]
    width_in = math.prod(input_shape)
    for _ in range(2):
        layers.append(nn.Linear(width_in, hidden))
        if norm == "layer":
            layers.append(nn.LayerNorm(hidden))
        layers.append(nn.ReLU())
        if rate > 0:
            layers.append(nn.Dropout(rate))
        width_in = hidden
    layers.append(nn.Linear(hidden, num_classes))
    return nn.Sequential(*layers)
