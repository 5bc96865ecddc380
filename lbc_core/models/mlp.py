"""A plain multi-layer perceptron: flatten -> [Linear -> ReLU] * depth -> Linear classifier."""

from collections.abc import Sequence

import torch
from torch import nn

from ._util import make_divisible


class MLP(nn.Module):
    """MLP over flat inputs of ``input_features`` values (e.g. 784 = 1x28x28 MNIST).

    Hidden sizes are ``hidden_sizes`` if given, else ``depth`` layers of ``hidden_dim``; each is scaled by
    ``width`` and rounded to a multiple of 8 so N:M groups tile the next layer's inputs. ``in_channels`` is
    accepted for a uniform interface only: the input is flattened, so ``input_features`` already counts
    the channels.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        input_features: int = 784,
        hidden_dim: int = 256,
        depth: int = 2,
        hidden_sizes: Sequence[int] | None = None,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        sizes = list(hidden_sizes) if hidden_sizes is not None else [hidden_dim] * depth
        if not sizes:
            raise ValueError("MLP needs at least one hidden layer (depth >= 1 or a non-empty hidden_sizes)")
        self.in_channels = in_channels
        self.input_features = input_features
        layers: list[nn.Module] = []
        prev = input_features
        for size in sizes:
            hidden = make_divisible(size * width)
            layers += [nn.Linear(prev, hidden), nn.ReLU(inplace=True)]
            prev = hidden
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        # torch._assert (not `if ...: raise`) keeps the check traceable by torch.fx / torch.export.
        torch._assert(
            x.shape[1] == self.input_features,
            f"MLP expects {self.input_features} input features per sample, got {x.shape[1]}",
        )
        return self.classifier(self.features(x))
