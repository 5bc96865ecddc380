"""CIFAR-style ResNet-20/32/56 (He et al. 2016, section 4.2) with 1x1-conv projection shortcuts."""

from typing import Any

import torch
from torch import nn

from ._util import make_divisible


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        # Option B (1x1 conv projection) rather than the paper's zero-padding option A: it adds real
        # conv weights at each stage transition, which the sparsifier can prune like any other conv.
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """ResNet with depth 6n+2: a 3x3 stem, three stages of n BasicBlocks (16, 32, 64 channels times
    ``width``, strides 1, 2, 2), global average pooling and a linear classifier. Designed for 32x32
    inputs; any input of at least 4x4 works because of the global pool."""

    def __init__(
        self, depth: int = 20, *, num_classes: int = 10, in_channels: int = 3, width: float = 1.0
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (20, 32, 56, ...), got {depth}")
        blocks_per_stage = (depth - 2) // 6
        base = make_divisible(16 * width)
        self.conv1 = nn.Conv2d(in_channels, base, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_stage(base, base, blocks_per_stage, stride=1)
        self.layer2 = self._make_stage(base, 2 * base, blocks_per_stage, stride=2)
        self.layer3 = self._make_stage(2 * base, 4 * base, blocks_per_stage, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * base, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _make_stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet20(**kwargs: Any) -> CifarResNet:
    return CifarResNet(20, **kwargs)


def resnet32(**kwargs: Any) -> CifarResNet:
    return CifarResNet(32, **kwargs)


def resnet56(**kwargs: Any) -> CifarResNet:
    return CifarResNet(56, **kwargs)
