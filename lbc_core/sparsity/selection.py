"""Which layers of a model get an N:M mask, and why the others do not.

A layer adapter per module type (``nn.Linear`` [out, in], transformers' ``Conv1D`` [in, out], ``nn.Conv2d``)
says where the reduction dimension of its weight is; masks, verification and exports all group along it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from lbc_core.sparsity.pattern import (
    CONV_OUT_IN_KH_KW,
    IN_OUT,
    OUT_IN,
    NMPattern,
    group_direction,
    reduction_size,
)


class LayerSelectionError(ValueError):
    """An include/exclude policy that does not fit the model (e.g. a pattern matching no layer)."""


@dataclass(frozen=True)
class LayerPolicy:
    """Include/exclude by module name (shell-style globs such as ``layer*.conv1`` or ``*.fc?``).

    By default the stem (or patch embedding) and the heads (classifier, LM head, pooler) stay dense, as in
    the LBC authors' runs; the model source names them (see ``DenseDefault``), otherwise the first and the
    last weight layer are taken. Naming one of them in ``include`` sparsifies it anyway.
    """

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    keep_stem_dense: bool = True
    keep_classifier_dense: bool = True


@dataclass(frozen=True)
class DenseDefault:
    """A layer the model source keeps dense unless ``include`` names it: its role and what it is."""

    role: str  # "stem" (governed by keep_stem_dense) | "head" (keep_classifier_dense)
    what: str  # e.g. "LM head", "classifier head", "patch embedding (stem)"


@dataclass(frozen=True)
class LayerAdapter:
    """How a module type stores its weight: the kind shown to users and the weight layout."""

    kind: str  # "Linear" | "Conv1D" | "Conv2d"
    layout: str  # see lbc_core.sparsity.pattern: OUT_IN, IN_OUT, CONV_OUT_IN_KH_KW


LINEAR = LayerAdapter("Linear", OUT_IN)
CONV1D = LayerAdapter("Conv1D", IN_OUT)
CONV2D = LayerAdapter("Conv2d", CONV_OUT_IN_KH_KW)


def _is_transformers_conv1d(module: nn.Module) -> bool:
    # transformers' Conv1D (GPT-2) is a Linear with a transposed [in, out] weight. Recognised by class
    # name and defining package so the engine never imports transformers for plain models; the MRO walk
    # also sees it through the subclass parametrize creates.
    return any(
        cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers.")
        for cls in type(module).__mro__
    )


def adapter_for(module: nn.Module) -> LayerAdapter | None:
    """The adapter of a linear-like module (None for every other module)."""
    if isinstance(module, nn.Linear):
        return LINEAR
    if isinstance(module, nn.Conv2d):
        return CONV2D
    if _is_transformers_conv1d(module) and getattr(module, "weight", None) is not None:
        return CONV1D
    return None


@dataclass(frozen=True)
class LayerTarget:
    name: str
    kind: str  # "Linear" | "Conv1D" | "Conv2d"
    shape: tuple[int, ...]
    groups: int  # number of N:M groups in the weight
    group_direction: str
    layout: str = OUT_IN


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


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Linear-like modules (``nn.Linear``, transformers' ``Conv1D``, ``nn.Conv2d``) in registration order."""
    return [(name, mod) for name, mod in model.named_modules() if adapter_for(mod) is not None]


def layer_layouts(model: nn.Module) -> dict[str, str]:
    """Weight layout of every linear-like layer by name."""
    return {name: adapter.layout for name, mod in model.named_modules() if (adapter := adapter_for(mod))}


def tied_weights(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """For every parameter held under more than one name: each name -> the other names holding it."""
    holders: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        holders.setdefault(id(param), []).append(name)
    return {
        name: tuple(other for other in names if other != name)
        for names in holders.values()
        if len(names) > 1
        for name in names
    }


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _ineligibility(module: nn.Module, adapter: LayerAdapter, pattern: NMPattern) -> str | None:
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            kind = "depthwise" if module.groups == module.in_channels else "grouped"
            return f"{kind} convolution (groups={module.groups}) has no N:M kernel; groups must be 1"
        cin = module.in_channels
        if cin % pattern.m:
            return f"input channels {cin} are not divisible by M={pattern.m}"
        return None
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    size = reduction_size(tuple(weight.shape), adapter.layout)
    if size % pattern.m:
        return f"input features {size} are not divisible by M={pattern.m}"
    return None


def order_dense_defaults(model: nn.Module) -> dict[str, DenseDefault]:
    """The first weight layer as the stem and the last as the classifier: the rule for models whose source
    does not name them (the catalog registers every model's submodules in forward order)."""
    layers = weight_layers(model)
    if not layers:
        return {}
    return {
        layers[0][0]: DenseDefault("stem", "stem (first layer)"),
        layers[-1][0]: DenseDefault("head", "classifier (last layer)"),
    }


def select_layers(
    model: nn.Module,
    pattern: NMPattern,
    policy: LayerPolicy | None = None,
    dense_defaults: Mapping[str, DenseDefault] | None = None,
) -> LayerSelection:
    """Apply ``policy`` to ``model``: the layers to sparsify and every skipped layer with its reason.

    ``dense_defaults`` are the stem and heads as the model source names them; ``None`` takes the first and
    last weight layer. A weight shared with another module (tied embeddings) is skipped: masking it in one
    place would change the other, and untying it would change the model.
    """
    policy = policy or LayerPolicy()
    layers = weight_layers(model)
    if not layers:
        raise LayerSelectionError("the model has no nn.Linear or nn.Conv2d layer to sparsify")
    defaults = order_dense_defaults(model) if dense_defaults is None else dense_defaults
    ties = tied_weights(model)

    for p in policy.include:
        if not any(fnmatch.fnmatchcase(name, p) for name, _ in layers):
            raise LayerSelectionError(
                f"include pattern {p!r} matches no Linear/Conv2d layer; layers are: "
                + ", ".join(name for name, _ in layers[:20])
                + (" ..." if len(layers) > 20 else "")
            )

    targets: list[LayerTarget] = []
    skipped: list[SkippedLayer] = []
    explicit = tuple(p for p in policy.include if p != "*")
    for name, module in layers:
        adapter = adapter_for(module)
        assert adapter is not None  # weight_layers keeps only adapted modules
        kind = adapter.kind
        weight: torch.Tensor = module.weight  # type: ignore[assignment]
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
        default = defaults.get(name)
        keep = policy.keep_stem_dense if default and default.role == "stem" else policy.keep_classifier_dense
        if default is not None and keep and not named_explicitly:
            skip(f"{default.what} kept dense by default")
            continue
        weight_key = f"{name}.weight" if name else "weight"
        if weight_key in ties:
            skip(
                f"weight is tied to {', '.join(ties[weight_key])}; a shared weight is never masked or untied"
            )
            continue
        reason = _ineligibility(module, adapter, pattern)
        if reason:
            skip(reason)
            continue
        targets.append(
            LayerTarget(
                name,
                kind,
                shape,
                weight.numel() // pattern.m,
                group_direction(shape, adapter.layout),
                adapter.layout,
            )
        )
    return LayerSelection(tuple(targets), tuple(skipped))
