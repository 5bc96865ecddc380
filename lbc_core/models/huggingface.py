"""A user's Hugging Face model directory as a model source: built from its cleaned config, never from code.

The config is read as data (``lbc_formats.hf_config``), the class comes from the allow-list
(``lbc_catalog.huggingface``), and the model is first built on the META device so every tensor name, shape
and dtype is compared with the safetensors headers before anything is allocated. Then it is built for real
from the cleaned config and the weights are loaded with ``load_state_dict`` under a strict key and shape
check. ``from_pretrained`` and ``trust_remote_code`` are never used on an upload and nothing is fetched
(``HF_HUB_OFFLINE``). transformers is imported only here, and only when a Hugging Face model is used.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lbc_catalog.data_rules import image_fit_problem
from lbc_catalog.huggingface import hf_class_for
from lbc_catalog.tasks import CAUSAL_LM
from lbc_core.models.source import (
    HUGGINGFACE,
    BuiltModel,
    DataFacts,
    ModelSource,
    ModelSourceError,
    state_dict_problems,
)
from lbc_core.sparsity.selection import DenseDefault, tied_weights, weight_layers
from lbc_formats.hf_config import CleanConfig, HFConfigError, clean_config
from lbc_formats.hf_files import HFFileError, ModelFiles, read_model_dir

# Files of the upload copied next to the saved model: what from_pretrained users load beside the weights.
COMPANION_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "generation_config.json",
)
# Top-level submodules that are task heads: initialised fresh when the upload lacks them (or they have
# another class count), and kept dense by default.
HEAD_MODULES = ("classifier", "score", "pre_classifier", "distillation_classifier")
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


@contextmanager
def _offline() -> Iterator[None]:
    # transformers may look things up on the hub for some calls; the server never reaches it.
    before = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_config(clean: CleanConfig, task: str, num_classes: int | None) -> Any:
    """The transformers config object of ``clean``; a classification head sized to the data's classes."""
    with _offline():
        from transformers import AutoConfig

        values = {k: v for k, v in clean.config.items() if k != "model_type"}
        if task != CAUSAL_LM and num_classes is not None and clean.num_labels != num_classes:
            # The class names of another label set would be wrong; the head is initialised fresh.
            values.pop("id2label", None)
            values.pop("label2id", None)
            values["num_labels"] = num_classes
        try:
            return AutoConfig.for_model(clean.model_type, **values)
        except (TypeError, ValueError) as exc:
            raise ModelSourceError(f"config.json cannot configure a {clean.model_type} model: {exc}") from exc


def model_class(model_type: str, task: str) -> type[nn.Module]:
    """The transformers class for ``model_type`` on ``task`` (from the allow-list, looked up by name)."""
    try:
        name = hf_class_for(model_type, task)
    except ValueError as exc:
        raise ModelSourceError(str(exc)) from exc
    with _offline():
        import transformers

        cls: type[nn.Module] = getattr(transformers, name)
    return cls


def instantiate(cls: type[nn.Module], config: Any, device: str | None = None) -> nn.Module:
    """``cls(config)``: the class's own constructor, no hub, no remote code; on ``device`` when given."""
    with _offline():
        try:
            if device is None:
                return cls(config)
            with torch.device(device):
                return cls(config)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelSourceError(f"cannot build {cls.__name__} from config.json: {exc}") from exc


def dense_defaults(model: nn.Module) -> dict[str, DenseDefault]:
    """Patch embeddings (stem), the LM head, poolers and classification heads of a transformers model.

    Embedding tables and positional tables are not linear layers, so they are never candidates.
    """
    defaults = {}
    for name, _ in weight_layers(model):
        parts = name.split(".")
        if parts[0] == "lm_head":
            defaults[name] = DenseDefault("head", "LM head")
        elif parts[0] in HEAD_MODULES:
            defaults[name] = DenseDefault("head", "classification head")
        elif "pooler" in parts:
            defaults[name] = DenseDefault("head", "pooler")
        elif "patch_embeddings" in parts:
            defaults[name] = DenseDefault("stem", "patch embedding (stem)")
    return defaults


@dataclass(frozen=True)
class _HeaderTensor:
    dtype: str
    shape: tuple[int, ...]
    file: str


def _headers(directory: Path, files: ModelFiles) -> dict[str, _HeaderTensor]:
    """Every tensor's dtype and shape from the safetensors headers (no tensor data read)."""
    from safetensors import safe_open

    tensors: dict[str, _HeaderTensor] = {}
    for name in files.weights:
        try:
            with safe_open(str(directory / name), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - a safe_open handle is not a mapping
                    piece = handle.get_slice(key)
                    if key in tensors:
                        raise ModelSourceError(f"tensor {key} is stored twice ({tensors[key].file}, {name})")
                    tensors[key] = _HeaderTensor(piece.get_dtype(), tuple(piece.get_shape()), name)
        except ModelSourceError:
            raise
        except Exception as exc:  # safetensors raises its own error types for damaged headers
            raise ModelSourceError(f"{name} is not a readable safetensors file: {exc}") from exc
    if files.index is not None:
        _check_index(directory / files.index, tensors)
    return tensors


def _check_index(path: Path, tensors: Mapping[str, _HeaderTensor]) -> None:
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelSourceError(f"{path.name} is not a safetensors index with a weight_map: {exc}") from exc
    if not isinstance(weight_map, dict):
        raise ModelSourceError(f"{path.name}: weight_map must be an object")
    wrong = sorted(k for k, v in weight_map.items() if k not in tensors or tensors[k].file != v)
    unlisted = sorted(set(tensors) - set(weight_map))
    if wrong or unlisted:
        raise ModelSourceError(
            f"{path.name} does not match the shards: "
            + "; ".join(
                part
                for part in (
                    "listed but not in that shard: " + ", ".join(wrong[:8]) if wrong else "",
                    "in a shard but not listed: " + ", ".join(unlisted[:8]) if unlisted else "",
                )
                if part
            )
        )


@dataclass(frozen=True)
class WeightPlan:
    """How the upload's tensors map onto the built model: renamed keys, fresh heads, tied partners."""

    rename: Mapping[str, str] = field(hash=False)  # file key -> model key
    fresh: tuple[str, ...]  # model keys the upload lacks (or has with another class count): a new head
    dtype: torch.dtype


def checkpoint_names(
    model: nn.Module, keys: Iterable[str], own: Mapping[str, torch.Tensor]
) -> dict[str, str]:
    """File key -> model key, as transformers' own loader maps them: its renamings of legacy checkpoint names
    (ViT's ``attention.attention.query`` is ``attention.q_proj`` in the module) and the base-model prefix (a
    bare ``BertModel`` saved without ``bert.``). Conversions that split or merge tensors are refused."""
    with _offline():
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

        transforms = get_model_conversion_mapping(model)  # type: ignore[arg-type]
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    prefix = getattr(model, "base_model_prefix", None) or None
    rename = {}
    for key in keys:
        target, converted = rename_source_key(key, renamings, converters, prefix, dict(own))
        if converted is not None:
            raise ModelSourceError(f"tensor {key} needs a split/merge conversion that is not supported")
        rename[key] = target
    return rename


def plan_weights(model: nn.Module, headers: Mapping[str, _HeaderTensor]) -> WeightPlan:
    """Compare the model (on META: nothing allocated) with the headers; ModelSourceError naming problems."""
    own = model.state_dict()
    rename = checkpoint_names(model, headers, own)
    given = {rename[k]: h.shape for k, h in headers.items()}
    head_keys = {k for k in own if k.split(".")[0] in HEAD_MODULES}
    fresh = sorted(k for k in head_keys if k not in given or tuple(own[k].shape) != given[k])
    ties = tied_weights(model)
    # Of a tied group the file holds one name (save_pretrained drops the duplicates).
    optional = frozenset(
        k for k, partners in ties.items() if k not in given and any(p in given for p in partners)
    )
    kept = {k: v for k, v in given.items() if k not in fresh}
    problems = state_dict_problems({k: v for k, v in own.items() if k not in fresh}, kept, optional)
    floats = {h.dtype for h in headers.values() if h.dtype in _DTYPES}
    others = sorted(f"{k} ({h.dtype})" for k, h in headers.items() if h.dtype not in _DTYPES)
    if others:
        problems.append("tensors of a dtype that is not a float: " + ", ".join(others[:8]))
    if len(floats) > 1:
        problems.append("tensors mix dtypes " + ", ".join(sorted(floats)) + "; one dtype is needed")
    if problems:
        raise ModelSourceError(
            "the weights do not fit the architecture of config.json: " + "; ".join(problems)
        )
    dtype = _DTYPES[floats.pop()] if floats else torch.float32
    return WeightPlan(rename, tuple(fresh), dtype)


def _load_tensors(directory: Path, files: ModelFiles, plan: WeightPlan) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for name in files.weights:
        for key, tensor in load_file(str(directory / name)).items():
            target = plan.rename[key]
            if target in plan.fresh:
                continue
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ModelSourceError(f"{name}: tensor {key} contains NaN or infinity")
            state[target] = tensor
    return state


@dataclass(frozen=True)
class HuggingFaceSource(ModelSource):
    """A local Hugging Face directory: ``config.json`` + ``model.safetensors`` (or shards and their index)."""

    path: str
    task: str
    kind = HUGGINGFACE
    writes_user_format = True

    def read_config(self) -> tuple[ModelFiles, CleanConfig]:
        directory = Path(self.path)
        try:
            return read_model_dir(directory, self.task)
        except (HFFileError, HFConfigError) as exc:
            raise ModelSourceError(f"{directory.name}: {exc}") from exc

    def build(self, data: DataFacts) -> BuiltModel:
        directory = Path(self.path)
        files, clean = self.read_config()
        cls = model_class(clean.model_type, self.task)
        config = build_config(clean, self.task, data.num_classes)
        _check_data_fits(config, data)
        headers = _headers(directory, files)
        plan = plan_weights(instantiate(cls, config, device="meta"), headers)
        config.dtype = plan.dtype
        model = instantiate(cls, config).to(plan.dtype)
        state = _load_tensors(directory, files, plan)
        # strict=False only for the heads and tie partners plan_weights allowed; anything else was an error.
        result = model.load_state_dict(state, strict=False)
        missing = sorted(set(result.missing_keys) - set(plan.fresh) - set(tied_weights(model)))
        if missing or result.unexpected_keys:
            raise ModelSourceError(
                f"weights did not load: missing {missing}, unexpected {result.unexpected_keys}"
            )
        record = {
            "source": HUGGINGFACE,
            "name": cls.__name__,
            "args": {},
            "task": self.task,
            "model_type": clean.model_type,
            "config": json.loads(config.to_json_string(use_diff=False)),
            "stripped_config_keys": list(clean.stripped),
            "fresh_tensors": list(plan.fresh),
        }
        return BuiltModel(model, dense_defaults(model), record, plan.fresh)

    def tokenizer_file(self) -> Path | None:
        own = Path(self.path) / "tokenizer.json"
        return own if own.is_file() else None

    def save(self, model: nn.Module, out_dir: str | os.PathLike[str]) -> list[Path]:
        """``save_pretrained`` into ``out_dir`` (original key names, exact zeros) plus the upload's
        tokenizer, preprocessor and generation files; from_pretrained loads the directory as it is."""
        return save_pretrained_dir(model, out_dir, Path(self.path))


def _check_data_fits(config: Any, data: DataFacts) -> None:
    """Data the model cannot read is named here, not as an index or shape error in the first step."""
    vocab = getattr(config, "vocab_size", None)
    if data.vocab_size is not None and isinstance(vocab, int) and data.vocab_size > vocab:
        raise ModelSourceError(
            f"the tokenizer has {data.vocab_size} tokens but the model's vocab_size is {vocab}; use the "
            "model's own tokenizer.json (dataset.tokenizer)"
        )
    shape = data.input_shape
    if len(shape) == 3 and data.vocab_size is None:
        channels, size = getattr(config, "num_channels", None), getattr(config, "image_size", None)
        unfit = image_fit_problem(
            shape, channels if isinstance(channels, int) else None, size if isinstance(size, int) else None
        )
        if unfit is not None:
            raise ModelSourceError(unfit[1])


def save_pretrained_dir(model: nn.Module, out_dir: str | os.PathLike[str], upload: Path | None) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _offline():
        model.save_pretrained(str(out))  # type: ignore[operator]
    for name in COMPANION_FILES:
        if upload is not None and (upload / name).is_file():
            shutil.copyfile(upload / name, out / name)
    return sorted(p for p in out.iterdir() if p.is_file())


def rebuild_from_record(record: Mapping[str, Any]) -> nn.Module:
    """The model a manifest's Hugging Face record describes, built from its (re-cleaned) config."""
    try:
        clean = clean_config(record["config"])
        cls = model_class(clean.model_type, record["task"])
    except (HFConfigError, KeyError, TypeError) as exc:
        raise ModelSourceError(f"the manifest's Hugging Face record cannot be rebuilt: {exc}") from exc
    config = build_config(clean, record["task"], None)
    model = instantiate(cls, config)
    dtype = getattr(config, "dtype", None)
    return model.to(dtype) if isinstance(dtype, torch.dtype) else model
