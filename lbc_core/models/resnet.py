"""ImageNet-style ResNet-18/34 (BasicBlock) and ResNet-50 (Bottleneck), after torchvision's layout."""

from typing import Any

import torch
from torch import nn

from ._util import make_divisible


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, out_planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride, as in "ResNet v1.5") -> 1x1 expand by 4, plus the shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    # A 1x1 conv projection wherever the shape changes (it is a real conv the sparsifier can prune).
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class ResNet(nn.Module):
    """7x7 stride-2 stem + 3x3 max pool, four stages (64, 128, 256, 512 base channels times ``width``,
    strides 1, 2, 2, 2), adaptive average pool and a linear classifier. Designed for 224x224; any input
    of at least 32x32 works (the total stride is 32)."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        base = make_divisible(64 * width)
        self.conv1 = nn.Conv2d(in_channels, base, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.in_planes = base
        self.layer1 = self._make_stage(block, base, layers[0], stride=1)
        self.layer2 = self._make_stage(block, 2 * base, layers[1], stride=2)
        self.layer3 = self._make_stage(block, 4 * base, layers[2], stride=2)
        self.layer4 = self._make_stage(block, 8 * base, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * base * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_stage(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        layers: list[nn.Module] = [block(self.in_planes, planes, stride)]
        self.in_planes = planes * block.expansion
        layers += [block(self.in_planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(**kwargs: Any) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


def resnet34(**kwargs: Any) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)
