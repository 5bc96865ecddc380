"""Model zoo: small, readable reference architectures and a registry to build them by name.

Every model takes ``num_classes`` and ``in_channels`` keyword arguments and registers its submodules in
forward order, so the first Linear/Conv2d in ``named_modules()`` is the stem (or patch embedding) and
the last one is the classifier head; the sparsifier relies on this to keep both dense by default.
"""

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any

from torch import nn

from .lenet import LeNet5
from .mlp import MLP
from .mobilenetv2 import MobileNetV2
from .resnet import ResNet, resnet18, resnet34, resnet50
from .resnet_cifar import CifarResNet, resnet20, resnet32, resnet56
from .vit import VisionTransformer

__all__ = [
    "MLP",
    "ArchitectureInfo",
    "CifarResNet",
    "LeNet5",
    "MobileNetV2",
    "ResNet",
    "UnknownArchitectureError",
    "VisionTransformer",
    "build_model",
    "get_architecture",
    "list_architectures",
]


@dataclass(frozen=True)
class ArchitectureInfo:
    name: str  # e.g. "resnet20"
    description: str
    # Every accepted keyword argument with its default (read-only).
    defaults: Mapping[str, Any] = field(hash=False)
    # Default (H, W) the architecture is designed for; (0, 0) means a flat input of any size (MLP).
    input_size: tuple[int, int]


class UnknownArchitectureError(ValueError):
    """Raised for an architecture name that is not registered."""


def _info(name: str, description: str, input_size: tuple[int, int], **defaults: Any) -> ArchitectureInfo:
    return ArchitectureInfo(name, description, MappingProxyType(defaults), input_size)


_CIFAR = {"num_classes": 10, "in_channels": 3, "width": 1.0}
_IMAGENET = {"num_classes": 1000, "in_channels": 3, "width": 1.0}

# name -> (info, builder). Builders receive every key of info.defaults.
_REGISTRY: Mapping[str, tuple[ArchitectureInfo, Callable[..., nn.Module]]] = MappingProxyType(
    {
        info.name: (info, builder)
        for info, builder in (
            (
                _info(
                    "mlp",
                    "Multi-layer perceptron on flattened inputs (input_features values per sample).",
                    (0, 0),
                    num_classes=10,
                    in_channels=1,
                    input_features=784,
                    hidden_dim=256,
                    depth=2,
                    hidden_sizes=None,
                    width=1.0,
                ),
                MLP,
            ),
            (
                _info(
                    "lenet5",
                    "LeNet-5 with padded convs and adaptive pooling (28x28 MNIST, 8x8 digits, 32x32).",
                    (28, 28),
                    num_classes=10,
                    in_channels=1,
                    width=1.0,
                ),
                LeNet5,
            ),
            (
                _info("resnet20", "CIFAR ResNet-20 (3x3 BasicBlocks, 0.27M params).", (32, 32), **_CIFAR),
                resnet20,
            ),
            (
                _info("resnet32", "CIFAR ResNet-32 (3x3 BasicBlocks, 0.46M params).", (32, 32), **_CIFAR),
                resnet32,
            ),
            (
                _info("resnet56", "CIFAR ResNet-56 (3x3 BasicBlocks, 0.85M params).", (32, 32), **_CIFAR),
                resnet56,
            ),
            (
                _info("resnet18", "ImageNet ResNet-18 (BasicBlocks, 11.7M params).", (224, 224), **_IMAGENET),
                resnet18,
            ),
            (
                _info("resnet34", "ImageNet ResNet-34 (BasicBlocks, 21.8M params).", (224, 224), **_IMAGENET),
                resnet34,
            ),
            (
                _info("resnet50", "ImageNet ResNet-50 (Bottlenecks, 25.6M params).", (224, 224), **_IMAGENET),
                resnet50,
            ),
            (
                _info(
                    "mobilenetv2",
                    "MobileNetV2 with inverted residuals and depthwise convs (3.5M params).",
                    (224, 224),
                    **_IMAGENET,
                    dropout=0.2,
                ),
                MobileNetV2,
            ),
            (
                _info(
                    "vit",
                    "Small ViT/DeiT (DeiT-Tiny layout at 32x32: 4x4 patches, 6 blocks, dim 192, 3 heads).",
                    (32, 32),
                    num_classes=10,
                    in_channels=3,
                    image_size=32,
                    patch_size=4,
                    depth=6,
                    embed_dim=192,
                    num_heads=3,
                    mlp_ratio=4.0,
                ),
                VisionTransformer,
            ),
        )
    }
)

_POSITIVE_INTS = frozenset(
    {"num_classes", "in_channels", "input_features", "hidden_dim", "depth", "image_size", "patch_size"}
    | {"embed_dim", "num_heads"}
)
_POSITIVE_FLOATS = frozenset({"width", "mlp_ratio"})


def list_architectures() -> list[ArchitectureInfo]:
    """All registered architectures, in registration order (small to large, per family)."""
    return [info for info, _ in _REGISTRY.values()]


def get_architecture(name: str) -> ArchitectureInfo:
    """The registered architecture called ``name``; raises UnknownArchitectureError otherwise."""
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    if entry is None:
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}; valid choices: {', '.join(_REGISTRY)}"
        )
    return entry[0]


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build architecture ``name`` with its defaults overridden by ``kwargs``.

    Raises UnknownArchitectureError for an unknown name and ValueError naming the argument for an
    unknown keyword argument or an invalid value.
    """
    info = get_architecture(name)
    unknown = sorted(set(kwargs) - set(info.defaults))
    if unknown:
        raise ValueError(
            f"{name}: unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(info.defaults)}"
        )
    args = {key: _validate(name, key, value) for key, value in {**info.defaults, **kwargs}.items()}
    return _REGISTRY[name][1](**args)


def _validate(arch: str, key: str, value: Any) -> Any:
    """Check one argument and return it in canonical form (int / float / tuple)."""
    if key in _POSITIVE_INTS:
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{arch}: {key} must be a positive integer, got {value!r}")
        return int(value)
    if key in _POSITIVE_FLOATS:
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{arch}: {key} must be a positive finite number, got {value!r}")
        return float(value)
    if key == "dropout":
        if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= float(value) < 1:
            raise ValueError(f"{arch}: dropout must be in [0, 1), got {value!r}")
        return float(value)
    if key == "hidden_sizes":
        if value is None:
            return None
        if (
            not isinstance(value, list | tuple)
            or not value
            or any(isinstance(v, bool) or not isinstance(v, Integral) or v < 1 for v in value)
        ):
            raise ValueError(
                f"{arch}: hidden_sizes must be a non-empty list of positive integers, got {value!r}"
            )
        return tuple(int(v) for v in value)
    raise AssertionError(f"no validator for {arch} argument {key!r}")  # registry bug, not user input
