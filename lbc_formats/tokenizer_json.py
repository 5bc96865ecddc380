"""A ``tokenizer.json`` of the ``tokenizers`` library, checked as data (never run): the one check of an
uploaded tokenizer and of the tokenizer in a model directory."""

from __future__ import annotations

from dataclasses import dataclass

from lbc_formats.errors import FormatError
from lbc_formats.json_data import load_json_data

__all__ = [
    "MAX_TOKENIZER_BYTES",
    "MAX_TOKENIZER_DEPTH",
    "TOKENIZER_FILE",
    "TOKENIZER_KEYS",
    "TOKENIZER_MODELS",
    "TOKENIZER_MODEL_FIELDS",
    "TokenizerSummary",
    "check_tokenizer",
]

TOKENIZER_FILE = "tokenizer.json"  # its name in a model directory
MAX_TOKENIZER_BYTES = 64 << 20  # the largest vocabularies' tokenizer.json are ~35 MiB
MAX_TOKENIZER_DEPTH = 32
# What a tokenizer.json written by the `tokenizers` library holds at its top level, and its model types.
TOKENIZER_KEYS = frozenset(
    {
        "version",
        "truncation",
        "padding",
        "added_tokens",
        "normalizer",
        "pre_tokenizer",
        "post_processor",
        "decoder",
        "model",
    }
)
# The fields the tokenizers library cannot parse a model type without (it has defaults for the others);
# tests/lbc_formats/test_tokenizer_json.py holds this table to the library, field by field.
TOKENIZER_MODEL_FIELDS: dict[str, tuple[str, ...]] = {
    "BPE": ("vocab", "merges"),
    "WordPiece": ("vocab", "unk_token", "continuing_subword_prefix", "max_input_chars_per_word"),
    "WordLevel": ("vocab", "unk_token"),
    "Unigram": ("vocab",),
}
TOKENIZER_MODELS = frozenset(TOKENIZER_MODEL_FIELDS)


@dataclass(frozen=True)
class TokenizerSummary:
    """What a checked tokenizer file declares: its model type, vocabulary size and added tokens."""

    model: str
    vocab_size: int | None  # None when the model keeps no vocabulary list or mapping
    added_tokens: int


def check_tokenizer(
    data: bytes, *, what: str, max_bytes: int = MAX_TOKENIZER_BYTES, max_depth: int = MAX_TOKENIZER_DEPTH
) -> TokenizerSummary:
    """``data`` as a tokenizers-library file; :class:`FormatError` naming ``what`` and the problem otherwise."""
    value = load_json_data(data, what=what, max_bytes=max_bytes, max_depth=max_depth)
    if not isinstance(value, dict):
        raise FormatError(f"{what} must hold a JSON object (a tokenizers library file)")
    unknown = sorted(set(value) - TOKENIZER_KEYS)
    if unknown:
        raise FormatError(
            f"{what} has top-level keys a tokenizers file does not have: {', '.join(unknown[:10])}"
        )
    model = value.get("model")
    if not isinstance(model, dict) or model.get("type") not in TOKENIZER_MODELS:
        raise FormatError(
            f"{what} needs a 'model' object whose type is one of {', '.join(sorted(TOKENIZER_MODELS))}"
        )
    missing = [field for field in TOKENIZER_MODEL_FIELDS[model["type"]] if field not in model]
    if missing:
        raise FormatError(
            f"{what}: its {model['type']} model lacks {', '.join(missing)}, without which the tokenizers "
            "library cannot read it"
        )
    vocab = model["vocab"]
    if isinstance(vocab, dict | list) and not vocab:
        raise FormatError(f"{what}: its {model['type']} model has an empty vocabulary, so it encodes nothing")
    added = value.get("added_tokens", [])
    if not isinstance(added, list):
        raise FormatError(f"{what}: added_tokens must be a list")
    return TokenizerSummary(
        model=model["type"],
        vocab_size=len(vocab) if isinstance(vocab, dict | list) else None,
        added_tokens=len(added),
    )
