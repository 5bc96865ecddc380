"""Model zoo: small, readable reference architectures and their builders, by catalog name.

The catalog entries (names, defaults, input sizes) live in ``lbc_catalog.architectures``. Every model
registers its submodules in forward order, so the first Linear/Conv2d in ``named_modules()`` is the stem
(or patch embedding) and the last one is the classifier head: the catalog model source names both as the
layers that stay dense by default (``lbc_core.models.source``).
"""

import math
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any

from torch import nn

from lbc_catalog.architectures import ARCHITECTURES, ArchitectureEntry

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


# The catalog entry (name, description, defaults, input size) is the one in lbc_catalog; the engine adds
# only the builder.
ArchitectureInfo = ArchitectureEntry


class UnknownArchitectureError(ValueError):
    """Raised for an architecture name that is not registered."""


# name -> builder. Builders receive every key of the catalog entry's defaults.
_BUILDERS: Mapping[str, Callable[..., nn.Module]] = MappingProxyType(
    {
        "mlp": MLP,
        "lenet5": LeNet5,
        "resnet20": resnet20,
        "resnet32": resnet32,
        "resnet56": resnet56,
        "resnet18": resnet18,
        "resnet34": resnet34,
        "resnet50": resnet50,
        "mobilenetv2": MobileNetV2,
        "vit": VisionTransformer,
    }
)

_POSITIVE_INTS = frozenset(
    {"num_classes", "in_channels", "input_features", "hidden_dim", "depth", "image_size", "patch_size"}
    | {"embed_dim", "num_heads"}
)
_POSITIVE_FLOATS = frozenset({"width", "mlp_ratio"})


def list_architectures() -> list[ArchitectureInfo]:
    """All catalog architectures, in catalog order (small to large, per family)."""
    return list(ARCHITECTURES.values())


def get_architecture(name: str) -> ArchitectureInfo:
    """The registered architecture called ``name``; raises UnknownArchitectureError otherwise."""
    entry = ARCHITECTURES.get(name) if isinstance(name, str) else None
    if entry is None:
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}; valid choices: {', '.join(ARCHITECTURES)}"
        )
    return entry


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
    return _BUILDERS[name](**args)


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
