"""Where a run's model comes from: one interface for the catalog and for a user's Hugging Face directory.

A source builds the model for a task and the data (weights loaded, checked), names the layers that stay
dense by default (stem, embeddings, heads: the source knows them, registration order does not), records
what rebuilds the architecture without weights (the manifest's ``architecture`` section), and saves the
trained model in the user's own format.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lbc_core.export.sparse_checkpoint import load_state_dict_file
from lbc_core.models import build_model, get_architecture
from lbc_core.sparsity.selection import DenseDefault, order_dense_defaults

CATALOG = "catalog"
HUGGINGFACE = "huggingface"
SOURCES = (CATALOG, HUGGINGFACE)


class ModelSourceError(ValueError):
    """A model that cannot be built or loaded as given; the message names the file, tensor or field.

    Bad input, never a crash: the service reports it to the user and does not retry.
    """


@dataclass(frozen=True)
class DataFacts:
    """What a source needs to know about the data: class count (classification) and one sample's shape."""

    num_classes: int | None
    input_shape: tuple[int, ...] = ()
    vocab_size: int | None = None  # token data: the tokenizer's vocabulary


@dataclass(frozen=True)
class BuiltModel:
    model: nn.Module
    # Layers kept dense unless include names them, with their role (stem / head).
    dense_defaults: Mapping[str, DenseDefault] = field(hash=False)
    # The manifest's "architecture" section: enough to build the same model again without weights.
    record: Mapping[str, Any] = field(hash=False)
    # Tensors the source initialised because the user's weights lack them (a new classification head).
    fresh: tuple[str, ...] = ()


class ModelSource(ABC):
    kind: str
    # Whether ``save`` writes a format of the user's own (published beside our exports).
    writes_user_format: bool = False

    @abstractmethod
    def build(self, data: DataFacts) -> BuiltModel:
        """The model with its starting weights loaded and checked."""

    def save(self, model: nn.Module, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Write the trained (finalized) model in the user's format; the files written (none by default)."""
        return []

    def tokenizer_file(self) -> Path | None:
        """The tokenizer.json that came with the model, if any (text is tokenized with it by default)."""
        return None


@dataclass(frozen=True)
class CatalogSource(ModelSource):
    """A built-in architecture, optionally started from a user's state dict (safetensors or torch file).

    Our ResNet and MobileNetV2 use torchvision's state-dict key names, so torchvision weights load as they
    are. The stem and classifier are the first and last weight layer (catalog models register in forward
    order).
    """

    architecture: str
    args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    checkpoint: str | None = None
    kind = CATALOG

    def arguments(self, data: DataFacts) -> dict[str, Any]:
        """Architecture arguments with the data's class count and input shape filled in."""
        info = get_architecture(self.architecture)
        args = dict(self.args)
        if "num_classes" in info.defaults and data.num_classes is not None:
            args.setdefault("num_classes", data.num_classes)
        shape = data.input_shape
        if "vocab_size" in info.defaults and data.vocab_size is not None:
            args.setdefault("vocab_size", data.vocab_size)
        if "max_positions" in info.defaults and data.vocab_size is not None and shape:
            args.setdefault("max_positions", shape[0])
        if "in_channels" in info.defaults and len(shape) == 3:
            args.setdefault("in_channels", shape[0])
        if "input_features" in info.defaults and shape:
            args.setdefault("input_features", math.prod(shape))
        if "image_size" in info.defaults and len(shape) == 3:
            args.setdefault("image_size", shape[-1])
        if "num_classes" in args and data.num_classes is not None and args["num_classes"] < data.num_classes:
            raise ModelSourceError(
                f"model.num_classes={args['num_classes']} but the dataset has {data.num_classes} classes"
            )
        return args

    def build(self, data: DataFacts) -> BuiltModel:
        args = self.arguments(data)
        model = build_model(self.architecture, **args)
        if self.checkpoint:
            load_dense_weights(model, self.checkpoint)
        return BuiltModel(model, order_dense_defaults(model), {"name": self.architecture, "args": args})


def load_dense_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a dense starting checkpoint, naming every missing, unexpected or mis-shaped tensor."""
    state = load_state_dict_file(path)
    problems = state_dict_problems(model.state_dict(), {k: tuple(v.shape) for k, v in state.items()})
    if problems:
        raise ModelSourceError(f"checkpoint {Path(path).name} does not fit the model: " + "; ".join(problems))
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelSourceError(f"checkpoint {Path(path).name}: tensor {key} contains NaN or infinity")
    model.load_state_dict(state)


def state_dict_problems(
    own: Mapping[str, torch.Tensor],
    given: Mapping[str, tuple[int, ...]],
    optional: frozenset[str] = frozenset(),
) -> list[str]:
    """Missing, unexpected and mis-shaped tensors of ``given`` against ``own`` (names, at most 8 of each).

    ``optional`` names tensors of ``own`` that may be absent (the other end of a tied weight).
    """
    missing = sorted(set(own) - set(given) - optional)
    unexpected = sorted(set(given) - set(own))
    wrong = sorted(k for k in set(own) & set(given) if tuple(own[k].shape) != tuple(given[k]))
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else ""))
    if wrong:
        problems.append(
            "wrong shape " + ", ".join(f"{k} {tuple(given[k])} != {tuple(own[k].shape)}" for k in wrong[:8])
        )
    return problems


def rebuild_skeleton(record: Mapping[str, Any]) -> nn.Module:
    """The architecture a manifest's ``architecture`` section records, with fresh weights.

    Raises ModelSourceError when the record names nothing this library can build.
    """
    source = record.get("source", CATALOG)
    if source == CATALOG:
        try:
            return build_model(record["name"], **record["args"])
        except ValueError as exc:
            raise ModelSourceError(str(exc)) from exc
    if source == HUGGINGFACE:
        from lbc_core.models.huggingface import rebuild_from_record

        return rebuild_from_record(record)
    raise ModelSourceError(f"unknown model source {source!r}; known: {', '.join(SOURCES)}")
