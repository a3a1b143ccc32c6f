"""CIFAR ResNets: ResNet-18 (kuangliu/pytorch-cifar) and ResNet-20 (He et al. 2016, option A).

ResNet-18: the model of kuangliu/pytorch-cifar, which uoguelph-mlrg/Cutout copies and the AALR paper
used: 3x3 stem with 64 channels, no max-pool, BasicBlocks [2, 2, 2, 2] at 64/128/256/512 channels,
1x1-conv + BN projection shortcuts where the shape changes, global average pool, one linear layer.
11,173,962 parameters for 3x32x32 inputs and 10 classes. Initialised with PyTorch's defaults, as the
original code is.

ResNet-20: He et al., "Deep Residual Learning for Image Recognition" (2016), Sec. 4.2: a 3x3 stem
with 16 channels, three stages of 3 BasicBlocks at 16/32/64 channels, global average pool, linear.
Shortcuts are option A (identity; where the shape changes, subsample by 2 and zero-pad the new
channels), as in the paper's CIFAR experiments, so the model has no projection parameters:
269,722 for 3x32x32 and 10 classes (the paper's 0.27M). Weights of convs and the linear layer are
Kaiming-normal (fan-in), as in akamaster/pytorch_resnet_cifar10, the common PyTorch port.

Both end in a global average pool (equal to the originals' fixed-size pool at 32x32), so they also
run on other image sizes, e.g. Fashion-MNIST's 28x28, on which the paper trains ResNet-20.

``fmnist-resnet`` is the same family sized for the CPU: He et al.'s CIFAR ResNet of any depth 6n+2
(n blocks per stage) with every width scaled by ``width``; ``depth=20, width=1`` is ResNet-20 itself.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aalr.harness.models.common import check_positive_int, check_width, image_shape, scaled

Shortcut = Literal["A", "B"]


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: subsample spatially by ``stride`` and zero-pad the extra channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = out_channels - in_channels
        self.pad_before = extra // 2
        self.pad_after = extra - extra // 2

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: Shortcut) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """3x3 stem, stages of BasicBlocks (the first stage at stride 1, the others at stride 2), GAP, linear."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stage_widths: tuple[int, ...],
        blocks_per_stage: tuple[int, ...],
        shortcut: Shortcut,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, stage_widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stage_widths[0])
        stages: list[nn.Module] = []
        width_in = stage_widths[0]
        for index, (width, blocks) in enumerate(zip(stage_widths, blocks_per_stage, strict=True)):
            strides = [1 if index == 0 else 2] + [1] * (blocks - 1)
            stage = []
            for stride in strides:
                stage.append(BasicBlock(width_in, width, stride, shortcut))
                width_in = width
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.linear = nn.Linear(width_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.stages(out)
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


def resnet18(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """The CIFAR ResNet-18 of kuangliu/pytorch-cifar (PyTorch default initialisation)."""
    image_shape("resnet18", input_shape, min_size=8)
    return CifarResNet(input_shape[0], num_classes, (64, 128, 256, 512), (2, 2, 2, 2), shortcut="B")


def resnet20(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """He et al.'s CIFAR ResNet-20 with option A shortcuts and Kaiming-normal initialisation."""
    image_shape("resnet20", input_shape, min_size=4)
    return _he_cifar_resnet(input_shape[0], num_classes, (16, 32, 64), blocks=3)


def fmnist_resnet(
    num_classes: int, input_shape: tuple[int, ...], *, depth: int = 8, width: float = 1.0
) -> nn.Module:
    """He et al.'s CIFAR ResNet at depth 6n+2 (default 8: one block a stage), widths 16/32/64 x ``width``.

    Sized for Fashion-MNIST on the CPU: at depth 8 and width 1 it has 75,002 parameters for 1x28x28 and
    10 classes (option A shortcuts, so no projection parameters).
    """
    image_shape("fmnist-resnet", input_shape, min_size=4)
    check_positive_int("fmnist-resnet", "depth", depth)
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"fmnist-resnet: depth must be 6n+2 for an int n >= 1 (8, 14, 20, ...), got {depth!r}"
        )
    scale = check_width("fmnist-resnet", width)
    widths = tuple(scaled(c, scale) for c in (16, 32, 64))
    return _he_cifar_resnet(input_shape[0], num_classes, widths, blocks=(depth - 2) // 6)


def _he_cifar_resnet(in_channels: int, num_classes: int, widths: tuple[int, ...], blocks: int) -> CifarResNet:
    """Option A shortcuts, Kaiming-normal (fan-in) convs and linear layer, as He et al.'s CIFAR ResNets."""
    model = CifarResNet(in_channels, num_classes, widths, (blocks,) * len(widths), shortcut="A")
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight)
    return model
