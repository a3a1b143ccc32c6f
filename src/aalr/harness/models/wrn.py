"""Wide ResNets (Zagoruyko & Komodakis, "Wide Residual Networks", 2016) for CIFAR.

The layout of xternalz/WideResNet-pytorch, which uoguelph-mlrg/Cutout uses and the AALR paper took
its WRN code from: a 3x3 stem with 16 channels, three groups of (depth - 4) / 6 pre-activation
blocks (BN-ReLU-conv3x3, BN-ReLU-[dropout]-conv3x3) at 16k/32k/64k channels (strides 1, 2, 2),
a 1x1-conv shortcut on the pre-activated input where the width changes, then BN-ReLU, global
average pool and one linear layer. Initialisation as in that code: convs Kaiming-normal with
fan-out, BN weight 1 and bias 0, linear bias 0.

WRN-28-10 (dropout 0.3, the paper's "WRN-28-10 with dropout"): 36,479,194 parameters for 3x32x32
and 10 classes (Zagoruyko & Komodakis report 36.5M). WRN-34-10 is the same family at depth 34, as
in Madry et al.'s adversarial training, without dropout: 46,160,474 parameters. (Some PyTorch copies
of the adversarial-training WRN-34-10, e.g. TRADES, declare an extra block group that forward never
uses; it is left out here.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aalr.harness.models.common import check_dropout, image_shape


class WideBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3, BN-ReLU-dropout-conv3x3, plus a shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut: nn.Conv2d | None = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv1(activated)
        out = F.relu(self.bn2(out))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        # As in the original: the projection sees the pre-activated input, the identity the raw one.
        residual = x if self.shortcut is None else self.shortcut(activated)
        return out + residual


class WideResNet(nn.Module):
    """WRN-depth-widen_factor for CIFAR-sized inputs."""

    def __init__(
        self, in_channels: int, num_classes: int, depth: int, widen_factor: int, dropout: float
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        blocks = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        groups: list[nn.Module] = []
        for group_index, stride in enumerate((1, 2, 2)):
            width_in, width = widths[group_index], widths[group_index + 1]
            group = [WideBlock(width_in, width, stride, dropout)]
            group += [WideBlock(width, width, 1, dropout) for _ in range(blocks - 1)]
            groups.append(nn.Sequential(*group))
        self.groups = nn.Sequential(*groups)
        self.bn = nn.BatchNorm2d(widths[3])
        self.linear = nn.Linear(widths[3], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.groups(self.conv1(x))
        out = F.relu(self.bn(out))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


def wrn_28_10(num_classes: int, input_shape: tuple[int, ...], *, dropout: float = 0.3) -> nn.Module:
    """WRN-28-10 with dropout 0.3 between the convs of each block (the Cutout/AALR setting)."""
    image_shape("wrn-28-10", input_shape, min_size=4)
    return WideResNet(input_shape[0], num_classes, 28, 10, check_dropout("wrn-28-10", dropout))


def wrn_34_10(num_classes: int, input_shape: tuple[int, ...], *, dropout: float = 0.0) -> nn.Module:
    """WRN-34-10 without dropout, as used for Madry-style adversarial training."""
    image_shape("wrn-34-10", input_shape, min_size=4)
    return WideResNet(input_shape[0], num_classes, 34, 10, check_dropout("wrn-34-10", dropout))
