"""MobileNetV2 (Sandler et al. 2018): inverted residual blocks with depthwise 3x3 convs."""

import torch
from torch import nn

from ._util import make_divisible

# (expansion t, output channels c, repeats n, first stride s), table 2 of the paper.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise 3x3 -> 1x1 linear projection; residual when the shape is kept."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_ch * expand_ratio
        self.use_residual = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu(in_ch, hidden, 1))
        layers += [
            # Depthwise (groups == channels): one 3x3 filter per channel, so N:M along input channels
            # does not apply; the sparsifier is expected to skip it.
            _conv_bn_relu(hidden, hidden, 3, stride=stride, groups=hidden),
            # Linear bottleneck: no activation after the projection (ReLU would destroy information).
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with a width multiplier; every channel count is rounded to a multiple of 8.
    Designed for 224x224 (total stride 32); any input of at least 32x32 works."""

    def __init__(
        self, *, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0, dropout: float = 0.2
    ) -> None:
        super().__init__()
        in_ch = make_divisible(32 * width)
        # The paper keeps the last conv at 1280 for width < 1 (it is cheap and helps accuracy).
        last_ch = make_divisible(1280 * max(1.0, width))
        layers: list[nn.Module] = [_conv_bn_relu(in_channels, in_ch, 3, stride=2)]
        for t, c, n, s in _SETTINGS:
            out_ch = make_divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
        layers.append(_conv_bn_relu(in_ch, last_ch, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_ch, num_classes))

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))
