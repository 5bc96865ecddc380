"""A Hugging Face ``config.json`` read as data, and cleaned of everything that could select code.

``transformers`` can run code that ships with a model (``auto_map`` + ``trust_remote_code``), pick attention
or kernel implementations (some download kernels), or expect quantized weights. The server never does any
of that: a config is parsed with ``json`` only, its ``model_type`` must be an allowed family, keys that ask
for remote code or quantization are REFUSED (the model would not be what its owner meant without them), and
private (``_``-prefixed) keys and implementation selectors are STRIPPED (``save_pretrained`` writes some of
them into ordinary checkpoints; dropping them changes no weight). Size fields are bounded so a config cannot
declare a model too large to build.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lbc_catalog.huggingface import HF_FAMILIES
from lbc_formats.errors import FormatError

MAX_CONFIG_BYTES = 1 << 20  # real configs are a few KiB
# Keys whose presence means the model needs something the server will not do.
REFUSED_KEYS: Mapping[str, str] = {
    "auto_map": "it points at model code shipped with the upload, which the server never runs",
    "trust_remote_code": "the server never runs code that came with a model",
    "custom_pipelines": "it points at pipeline code shipped with the upload, which the server never runs",
    "quantization_config": "quantized weights cannot be sparsified; upload the unquantized model",
}
# Implementation selectors: which attention/kernel code transformers picks (some fetch kernels from a hub).
STRIPPED_KEYS = frozenset(
    {
        "attn_implementation",
        "experts_implementation",
        "use_kernels",
        "kernel_config",
        "use_flash_attention_2",
        "use_flash_attn",
        "use_sdpa",
    }
)
# Upper bounds of the size fields of the allowed families: far above any real model of the class this
# service trains, low enough that a forged config cannot ask for an impossible allocation.
SIZE_LIMITS: Mapping[str, int] = {
    "vocab_size": 1 << 20,
    "hidden_size": 1 << 16,
    "n_embd": 1 << 16,
    "dim": 1 << 16,
    "intermediate_size": 1 << 18,
    "n_inner": 1 << 18,
    "hidden_dim": 1 << 18,
    "num_hidden_layers": 512,
    "n_layer": 512,
    "n_layers": 512,
    "num_attention_heads": 1024,
    "n_head": 1024,
    "n_heads": 1024,
    "num_key_value_heads": 1024,
    "head_dim": 4096,
    "max_position_embeddings": 1 << 20,
    "n_positions": 1 << 20,
    "n_ctx": 1 << 20,
    "type_vocab_size": 1 << 10,
    "image_size": 1 << 13,
    "patch_size": 1 << 12,
    "num_channels": 64,
    "encoder_stride": 1 << 12,
}
MAX_LABELS = 100_000
# The same size under each family's own key (GPT-2 says n_embd, DistilBERT dim, ...).
_SIZE_ALIASES: Mapping[str, tuple[str, ...]] = {
    "hidden": ("hidden_size", "n_embd", "dim"),
    "layers": ("num_hidden_layers", "n_layer", "n_layers"),
    "heads": ("num_attention_heads", "n_head", "n_heads"),
    "intermediate": ("intermediate_size", "n_inner", "hidden_dim"),
    "positions": ("max_position_embeddings", "n_positions"),
    "vocab": ("vocab_size",),
    # A vision model's input: the submit check holds an image dataset to them (lbc_catalog.data_rules).
    "channels": ("num_channels",),
    "image_size": ("image_size",),
}


class HFConfigError(FormatError):
    """A config.json the server will not build a model from; the message names the problem."""


@dataclass(frozen=True)
class CleanConfig:
    """The config to build from, what was stripped from the upload's, and its family."""

    config: dict[str, Any]
    model_type: str
    stripped: tuple[str, ...]

    def sizes(self) -> dict[str, int]:
        """The family-independent sizes a memory estimate needs, from whichever key this family uses
        (hidden, layers, heads, intermediate, positions, vocab; a vision model's patches as tokens)."""
        sizes = {
            name: value
            for name, keys in _SIZE_ALIASES.items()
            if isinstance(
                value := next((self.config[k] for k in keys if isinstance(self.config.get(k), int)), None),
                int,
            )
        }
        image, patch = self.config.get("image_size"), self.config.get("patch_size")
        if isinstance(image, int) and isinstance(patch, int) and patch > 0:
            sizes["tokens"] = (image // patch) ** 2 + 1  # patches and the class token
        return sizes

    @property
    def num_labels(self) -> int | None:
        """Classes of a classification head, when the config names them (``id2label``)."""
        labels = self.config.get("id2label")
        return len(labels) if isinstance(labels, dict) and labels else None


def parse_config(data: bytes) -> CleanConfig:
    """Parse ``config.json`` bytes and clean them (see ``clean_config``)."""
    if len(data) > MAX_CONFIG_BYTES:
        raise HFConfigError(f"config.json is {len(data)} bytes; the limit is {MAX_CONFIG_BYTES}")
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise HFConfigError(f"config.json is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except RecursionError:
        raise HFConfigError("config.json nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise HFConfigError(f"config.json is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    return clean_config(raw)


def clean_config(raw: Any) -> CleanConfig:
    """Check ``raw`` (a parsed config.json) and return the config the server builds from.

    Raises HFConfigError naming every refused key, an unknown or missing ``model_type``, or a size field
    that is not a positive integer within its bound.
    """
    if not isinstance(raw, dict):
        raise HFConfigError(f"config.json must hold a JSON object, got {type(raw).__name__}")
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise HFConfigError("config.json has no model_type; it is needed to know which architecture to build")
    if model_type not in HF_FAMILIES:
        raise HFConfigError(
            f"model_type {model_type!r} is not an allowed architecture; allowed: {', '.join(HF_FAMILIES)}"
        )
    refused = [f"{key} ({why})" for key, why in REFUSED_KEYS.items() if key in raw]
    if refused:
        raise HFConfigError("config.json has keys the server refuses: " + "; ".join(refused))
    stripped = sorted(key for key in raw if key.startswith("_") or key in STRIPPED_KEYS)
    config = {key: value for key, value in raw.items() if key not in stripped}
    problems = [*_size_problems(config), *_label_problems(config)]
    if problems:
        raise HFConfigError("config.json: " + "; ".join(problems))
    return CleanConfig(config, model_type, tuple(stripped))


def _size_problems(config: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, limit in SIZE_LIMITS.items():
        if key not in config or config[key] is None:
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            problems.append(f"{key} must be an integer from 1 to {limit}, got {value!r}")
    return problems


def _label_problems(config: Mapping[str, Any]) -> list[str]:
    labels = config.get("id2label")
    if labels is None:
        return []
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
        return [f"id2label must be an object of at most {MAX_LABELS} labels"]
    if any(not isinstance(v, str) for v in labels.values()):
        return ["id2label values must be strings"]
    return []


def _refuse_constant(name: str) -> float:
    # json accepts NaN/Infinity by default; no size or rate in a config may be one.
    raise HFConfigError(f"config.json holds {name}, which is not valid JSON")
