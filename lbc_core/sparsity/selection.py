"""Which layers of a model get an N:M mask, and why the others do not."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from lbc_core.sparsity.pattern import NMPattern, group_direction


class LayerSelectionError(ValueError):
    """An include/exclude policy that does not fit the model (e.g. a pattern matching no layer)."""


@dataclass(frozen=True)
class LayerPolicy:
    """Include/exclude by module name (shell-style globs such as ``layer*.conv1`` or ``*.fc?``).

    By default the first weight layer (the stem or patch embedding) and the last one (the
    classifier) stay dense, as in the LBC authors' runs; naming one of them in ``include``
    sparsifies it anyway.
    """

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    keep_stem_dense: bool = True
    keep_classifier_dense: bool = True


@dataclass(frozen=True)
class LayerTarget:
    name: str
    kind: str  # "Linear" | "Conv2d"
    shape: tuple[int, ...]
    groups: int  # number of N:M groups in the weight
    group_direction: str


@dataclass(frozen=True)
class SkippedLayer:
    name: str
    kind: str
    shape: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class LayerSelection:
    targets: tuple[LayerTarget, ...]
    skipped: tuple[SkippedLayer, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.targets]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Linear | nn.Conv2d]]:
    """``nn.Linear`` and ``nn.Conv2d`` modules in registration order."""
    return [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.Linear | nn.Conv2d)]


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _ineligibility(module: nn.Module, pattern: NMPattern) -> str | None:
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            kind = "depthwise" if module.groups == module.in_channels else "grouped"
            return f"{kind} convolution (groups={module.groups}) has no N:M kernel; groups must be 1"
        cin = module.in_channels
        if cin % pattern.m:
            return f"input channels {cin} are not divisible by M={pattern.m}"
        return None
    if isinstance(module, nn.Linear):
        if module.in_features % pattern.m:
            return f"input features {module.in_features} are not divisible by M={pattern.m}"
        return None
    return f"{type(module).__name__} is not supported"


def select_layers(model: nn.Module, pattern: NMPattern, policy: LayerPolicy | None = None) -> LayerSelection:
    """Apply ``policy`` to ``model``: the layers to sparsify and every skipped layer with its reason."""
    policy = policy or LayerPolicy()
    layers = weight_layers(model)
    if not layers:
        raise LayerSelectionError("the model has no nn.Linear or nn.Conv2d layer to sparsify")

    for p in policy.include:
        if not any(fnmatch.fnmatchcase(name, p) for name, _ in layers):
            raise LayerSelectionError(
                f"include pattern {p!r} matches no Linear/Conv2d layer; layers are: "
                + ", ".join(name for name, _ in layers[:20])
                + (" ..." if len(layers) > 20 else "")
            )

    stem, classifier = layers[0][0], layers[-1][0]
    targets: list[LayerTarget] = []
    skipped: list[SkippedLayer] = []
    explicit = tuple(p for p in policy.include if p != "*")
    for name, module in layers:
        kind = type(module).__name__
        weight: torch.Tensor = module.weight
        shape = tuple(weight.shape)

        def skip(reason: str, name: str = name, kind: str = kind, shape: tuple[int, ...] = shape) -> None:
            skipped.append(SkippedLayer(name, kind, shape, reason))

        if not _matches(name, policy.include):
            skip("not matched by include patterns")
            continue
        if _matches(name, policy.exclude):
            skip("matched by an exclude pattern")
            continue
        named_explicitly = _matches(name, explicit)
        if policy.keep_stem_dense and name == stem and not named_explicitly:
            skip("stem (first layer) kept dense by default")
            continue
        if policy.keep_classifier_dense and name == classifier and not named_explicitly:
            skip("classifier (last layer) kept dense by default")
            continue
        reason = _ineligibility(module, pattern)
        if reason:
            skip(reason)
            continue
        targets.append(LayerTarget(name, kind, shape, weight.numel() // pattern.m, group_direction(shape)))
    return LayerSelection(tuple(targets), tuple(skipped))
