"""SimpleNet v1 (Hasanpour et al., "Let's keep it simple", 2016) for CIFAR: 13 conv layers, ~5.48M.

Layer list (conv widths; k1 marks a 1x1 conv, every other conv is 3x3 with padding 1; P is a 2x2
max-pool followed by Dropout2d(0.1)):

    64, 128, 128, 128, P, 128, 128, 256, P, 256, 256, P, 512, 2048 k1, 256 k1, P, 256

then a global max-pool, Dropout(0.1) and Linear(256, classes). Every conv has a bias and is followed
by BatchNorm(eps 1e-5, momentum 0.05) and ReLU. This follows the PyTorch port the AALR paper used
(Coderx7/SimpleNet_Pytorch: BN after all 13 convs, Xavier-uniform conv weights with ReLU gain,
dropout 0.1) with the pooling of the original Caffe model (Coderx7/SimpleNet, CIFAR-10
train_val.prototxt: pools after the 4th, 7th, 9th and 12th conv, 1x1 convs unpadded). The port's
early versions had an extra max-pool after the 512-wide conv, which its author later called a
mistake (SimpleNet_Pytorch issue #5); pools have no parameters, so the count is the same either way:
5,498,378 for 3x32x32 and 10 classes, against the paper's 5.48M (the Caffe model has no BN on its
two 1x1 convs, 4,608 parameters fewer).

Four pools bring 32x32 to 2x2, so H and W must be at least 16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aalr.harness.models.common import image_shape

# (out_channels, kernel_size) for convs, "P" for max-pool + Dropout2d.
LAYERS: tuple[tuple[int, int] | str, ...] = (
    (64, 3), (128, 3), (128, 3), (128, 3), "P",
    (128, 3), (128, 3), (256, 3), "P",
    (256, 3), (256, 3), "P",
    (512, 3), (2048, 1), (256, 1), "P",
    (256, 3),
)  # fmt: skip


class SimpleNetV1(nn.Module):
    """SimpleNet v1: plain conv-BN-ReLU stack, global max-pool, dropout, linear."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width_in = in_channels
        for item in LAYERS:
            if isinstance(item, str):
                layers += [nn.MaxPool2d(kernel_size=2, stride=2), nn.Dropout2d(p=dropout)]
                continue
            width, kernel = item
            layers += [
                nn.Conv2d(width_in, width, kernel, padding=kernel // 2),
                nn.BatchNorm2d(width, eps=1e-5, momentum=0.05),
                nn.ReLU(),
            ]
            width_in = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(p=dropout)
        self.classifier = nn.Linear(width_in, num_classes)
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain("relu"))

    def forward(self, x: Tensor) -> Tensor:
        out = self.features(x)
        out = torch.flatten(F.adaptive_max_pool2d(out, 1), 1)
        return self.classifier(self.dropout(out))


def simplenetv1(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """SimpleNet v1 for CIFAR-sized inputs (H, W >= 16)."""
    image_shape("simplenetv1", input_shape, min_size=16)
    return SimpleNetV1(input_shape[0], num_classes)
