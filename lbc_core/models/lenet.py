"""LeNet-5: conv 5x5 -> pool -> conv 5x5 -> pool -> fc 120 -> fc 84 -> fc classes."""

import torch
from torch import nn

from ._util import make_divisible


class LeNet5(nn.Module):
    """LeNet-5 for small grayscale/colour images (28x28 MNIST, 8x8 sklearn digits, 32x32 CIFAR).

    Differences from the 1998 original, and why:
    - 8 and 16 conv channels (not 6 and 16) so N:M groups of up to 8 tile the second conv's inputs;
    - both convs are padded, so an 8x8 input still has a 2x2 map after the second pool;
    - an adaptive pool to a fixed 4x4 grid makes the classifier independent of the input size.
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        c1, c2 = make_divisible(8 * width), make_divisible(16 * width)
        # Multiples of 4 keep the classic 120/84 at width 1 while still fitting 2:4 groups.
        f1, f2 = make_divisible(120 * width, 4), make_divisible(84 * width, 4)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 4 * 4, f1),
            nn.ReLU(inplace=True),
            nn.Linear(f1, f2),
            nn.ReLU(inplace=True),
            nn.Linear(f2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
