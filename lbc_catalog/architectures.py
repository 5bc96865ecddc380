"""The catalog's built-in architectures as plain data: names, descriptions, defaults, input sizes, argument
ranges and the layer names each builds.

The one source of truth: ``jobs`` validates specs with it without importing torch, and ``lbc_core.models``
pairs each name with its builder (a name without a builder, or a builder without a name, fails at lookup).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class ArchitectureEntry:
    name: str
    description: str
    # Every accepted keyword argument with its default (read-only).
    defaults: Mapping[str, Any] = field(hash=False)
    # Default (H, W) input the architecture is designed for; (0, 0): flat input of any size (MLP).
    input_size: tuple[int, int]


def _entry(name: str, description: str, input_size: tuple[int, int], **defaults: Any) -> ArchitectureEntry:
    return ArchitectureEntry(name, description, MappingProxyType(defaults), input_size)


_CIFAR = {"num_classes": 10, "in_channels": 3, "width": 1.0}
_IMAGENET = {"num_classes": 1000, "in_channels": 3, "width": 1.0}

ARCHITECTURES: Mapping[str, ArchitectureEntry] = MappingProxyType(
    {
        entry.name: entry
        for entry in (
            _entry(
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
            _entry(
                "lenet5",
                "LeNet-5 with padded convs and adaptive pooling (28x28 MNIST, 8x8 digits, 32x32).",
                (28, 28),
                num_classes=10,
                in_channels=1,
                width=1.0,
            ),
            _entry("resnet20", "CIFAR ResNet-20 (3x3 BasicBlocks, 0.27M params).", (32, 32), **_CIFAR),
            _entry("resnet32", "CIFAR ResNet-32 (3x3 BasicBlocks, 0.46M params).", (32, 32), **_CIFAR),
            _entry("resnet56", "CIFAR ResNet-56 (3x3 BasicBlocks, 0.85M params).", (32, 32), **_CIFAR),
            _entry("resnet18", "ImageNet ResNet-18 (BasicBlocks, 11.7M params).", (224, 224), **_IMAGENET),
            _entry("resnet34", "ImageNet ResNet-34 (BasicBlocks, 21.8M params).", (224, 224), **_IMAGENET),
            _entry("resnet50", "ImageNet ResNet-50 (Bottlenecks, 25.6M params).", (224, 224), **_IMAGENET),
            _entry(
                "mobilenetv2",
                "MobileNetV2 with inverted residuals and depthwise convs (3.5M params).",
                (224, 224),
                **_IMAGENET,
                dropout=0.2,
            ),
            _entry(
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
        )
    }
)

# Accepted ranges of every architecture argument. The engine only asks for positive values; the upper
# bounds reject absurd sizes at submit time instead of in an out-of-memory worker.
INT_ARG_RANGES: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "num_classes": (2, 100_000),
        "in_channels": (1, 1024),
        "input_features": (1, 1 << 24),
        "hidden_dim": (1, 65_536),
        "depth": (1, 1000),
        "image_size": (1, 4096),
        "patch_size": (1, 4096),
        "embed_dim": (1, 65_536),
        "num_heads": (1, 1024),
    }
)
FLOAT_ARG_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {"width": (0.0, 16.0), "mlp_ratio": (0.0, 64.0)}  # exclusive lower, inclusive upper bound
)
MAX_HIDDEN_LAYERS = 64
_ARG_HELP: Mapping[str, str] = MappingProxyType(
    {
        "num_classes": "output classes (default: the dataset's class count)",
        "in_channels": "input channels (default: the dataset's)",
        "input_features": "values per flattened sample (default: the dataset's)",
        "image_size": "input side length (default: the dataset's)",
        "width": "channel width multiplier",
        "depth": "number of hidden layers (mlp), blocks (vit) or ResNet depth",
        "hidden_dim": "hidden layer size",
        "hidden_sizes": "explicit hidden layer sizes (overrides hidden_dim and depth)",
        "patch_size": "patch side length; must divide image_size",
        "embed_dim": "token dimension; must be divisible by num_heads",
        "num_heads": "attention heads",
        "mlp_ratio": "MLP hidden size / embed_dim",
        "dropout": "classifier dropout probability",
    }
)


def list_architectures() -> list[ArchitectureEntry]:
    """Every built-in architecture, in the engine's registration order."""
    return list(ARCHITECTURES.values())


def architecture_names() -> list[str]:
    return list(ARCHITECTURES)


def check_model_args(architecture: str, args: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems with ``args`` for ``architecture`` as ``(argument name, message)`` pairs; empty when fine.

    ``architecture`` must be a catalog name. Arguments that are omitted take the architecture's default
    (or, for the data-dependent ones, the dataset's value at run time), so only given ones are checked.
    """
    entry = ARCHITECTURES[architecture]
    problems: list[tuple[str, str]] = []
    for key, value in args.items():
        if key not in entry.defaults:
            problems.append(
                (key, f"unknown argument for {architecture}; accepted: {', '.join(entry.defaults)}")
            )
            continue
        message = _check_value(key, value)
        if message:
            problems.append((key, message))
    if architecture == "vit" and not problems:
        patch = args.get("patch_size", entry.defaults["patch_size"])
        if "image_size" in args and args["image_size"] % patch:
            problems.append(("patch_size", f"patch_size {patch} must divide image_size {args['image_size']}"))
        embed = args.get("embed_dim", entry.defaults["embed_dim"])
        heads = args.get("num_heads", entry.defaults["num_heads"])
        if embed % heads:
            problems.append(("num_heads", f"embed_dim {embed} must be divisible by num_heads {heads}"))
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _check_value(key: str, value: Any) -> str | None:
    if key in INT_ARG_RANGES:
        low, high = INT_ARG_RANGES[key]
        if not _is_int(value) or not low <= value <= high:
            return f"must be an integer in [{low}, {high}], got {value!r}"
        return None
    if key in FLOAT_ARG_RANGES:
        low_f, high_f = FLOAT_ARG_RANGES[key]
        if not _is_real(value) or not low_f < float(value) <= high_f:
            return f"must be a number in ({low_f:g}, {high_f:g}], got {value!r}"
        return None
    if key == "dropout":
        if not _is_real(value) or not 0.0 <= float(value) < 1.0:
            return f"must be a number in [0, 1), got {value!r}"
        return None
    if key == "hidden_sizes":
        if value is None:
            return None
        low, high = INT_ARG_RANGES["hidden_dim"]
        if (
            not isinstance(value, list | tuple)
            or not 1 <= len(value) <= MAX_HIDDEN_LAYERS
            or not all(_is_int(v) and low <= v <= high for v in value)
        ):
            return f"must be null or a list of 1 to {MAX_HIDDEN_LAYERS} integers in [{low}, {high}], got {value!r}"
        return None
    raise AssertionError(f"catalog has no rule for argument {key!r}")  # catalog bug, not user input


# Arguments that change which layers exist (and so their names); every other argument only changes sizes.
STRUCTURAL_ARGS = frozenset({"depth", "hidden_sizes"})


@lru_cache(maxsize=1)
def catalog_layers() -> Mapping[str, Any]:
    """``catalog_layers.json``: every architecture's weight layers at its default arguments, with the
    layers each M sparsifies (generated from the engine, checked by tests/api/test_models_endpoint.py)."""
    text = resources.files("lbc_catalog").joinpath("catalog_layers.json").read_text(encoding="utf-8")
    return MappingProxyType(json.loads(text))


@lru_cache(maxsize=1)
def _layer_table() -> Mapping[str, tuple[str, ...]]:
    table = catalog_layers()["architectures"]
    return MappingProxyType(
        {name: tuple(layer["name"] for layer in layers) for name, layers in table.items()}
    )


def weight_layer_names(architecture: str, args: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Names of the Linear/Conv2d layers ``architecture`` builds with ``args`` (from ``catalog_layers.json``).

    ``None`` when an argument changes the layer structure (depth, hidden_sizes): then only the engine,
    building the model, knows the names.
    """
    if STRUCTURAL_ARGS & set(args):
        return None
    return _layer_table().get(architecture)


def argument_help(key: str) -> str:
    return _ARG_HELP.get(key, "")


def render_catalog() -> str:
    """The architectures and their arguments with defaults, for ``--help`` texts."""
    lines = ["Architectures (model.architecture) and their arguments (model.args, with defaults):"]
    for entry in ARCHITECTURES.values():
        size = (
            "flat input"
            if entry.input_size == (0, 0)
            else f"{entry.input_size[0]}x{entry.input_size[1]} input"
        )
        lines.append(f"  {entry.name}: {entry.description} [{size}]")
        args = ", ".join(f"{key}={value!r}" for key, value in entry.defaults.items())
        lines.append(f"      {args}")
    return "\n".join(lines)
