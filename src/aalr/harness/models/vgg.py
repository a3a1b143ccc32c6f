"""VGG16 for CIFAR, with and without batch normalization (chengyangfu/pytorch-vgg-cifar10).

The AALR paper took its VGG16 from chengyangfu/pytorch-vgg-cifar10, so this is that model: the 13
3x3 convs of Simonyan & Zisserman's configuration D (64, 64, M, 128, 128, M, 256 x3, M, 512 x3, M,
512 x3, M; convs with bias, each followed by BN in ``vgg16-bn``), then the classifier
Dropout(0.5)-Linear(512, 512)-ReLU-Dropout(0.5)-Linear(512, 512)-ReLU-Linear(512, classes).
Parameters for 3x32x32 and 10 classes: 14,714,688 (convs) + 262,656 + 262,656 + 5,130 = 15,245,130;
``vgg16-bn`` adds 2 x 4,224 BN weights and biases: 15,253,578. (The often-quoted ~14.7M is the
variant with a single Linear(512, classes) classifier, e.g. kuangliu/pytorch-cifar; not this one.)
Initialisation as in that code: convs normal with std sqrt(2 / (9 * out_channels)) (Kaiming normal,
fan-out) and zero bias; linear and BN layers keep PyTorch's defaults.

Five 2x2 max-pools bring 32x32 to 1x1; for larger inputs (H and W multiples of 32) the flattened
feature map is wider and the first linear layer grows with it, as the original's flatten implies.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aalr.harness.models.common import image_shape

CONFIG_D: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


class VGG(nn.Module):
    """VGG features of a configuration (ints are conv widths, "M" a 2x2 max-pool) and a 3-layer classifier."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_cells: int,
        config: tuple[int | str, ...],
        batch_norm: bool,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width_in = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            width = int(item)
            layers.append(nn.Conv2d(width_in, width, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU())
            width_in = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(width_in * spatial_cells, 512),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d) and module.bias is not None:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _vgg16(name: str, num_classes: int, input_shape: tuple[int, ...], batch_norm: bool) -> nn.Module:
    image_shape(name, input_shape, min_size=32, multiple=32)
    channels, height, width = input_shape
    return VGG(channels, num_classes, (height // 32) * (width // 32), CONFIG_D, batch_norm)


def vgg16(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """VGG16 (configuration D) without batch normalization."""
    return _vgg16("vgg16", num_classes, input_shape, batch_norm=False)


def vgg16_bn(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """VGG16 (configuration D) with batch normalization after every conv."""
    return _vgg16("vgg16-bn", num_classes, input_shape, batch_norm=True)
