"""The tokenizer.json check (lbc_formats.tokenizer_json) against the tokenizers library it stands in for:
the API and the model-directory check may not import the library, so a file the library cannot read must
be refused by the check itself, at upload, not by the worker when a job runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tokenizers import Tokenizer, models

from lbc_formats.errors import FormatError
from lbc_formats.tokenizer_json import TOKENIZER_MODEL_FIELDS, TOKENIZER_MODELS, check_tokenizer

VOCAB = {"[UNK]": 0, "a": 1, "b": 2, "ab": 3}


def _real(kind: str) -> dict[str, Any]:
    """A tokenizer of model type ``kind`` as the library writes it."""
    built = {
        "BPE": lambda: models.BPE(vocab=VOCAB, merges=[("a", "b")], unk_token="[UNK]"),
        "WordPiece": lambda: models.WordPiece(vocab=VOCAB, unk_token="[UNK]"),
        "WordLevel": lambda: models.WordLevel(vocab=VOCAB, unk_token="[UNK]"),
        "Unigram": lambda: models.Unigram([(token, 0.0) for token in VOCAB], unk_id=0, byte_fallback=False),
    }[kind]()
    data: dict[str, Any] = json.loads(Tokenizer(built).to_str())
    return data


def _library_reads(data: dict[str, Any]) -> bool:
    try:
        Tokenizer.from_str(json.dumps(data))
    except Exception:  # the library raises its own exception type for every parse failure
        return False
    return True


def test_the_table_covers_every_model_type_the_check_allows() -> None:
    assert set(TOKENIZER_MODEL_FIELDS) == TOKENIZER_MODELS


@pytest.mark.parametrize("kind", sorted(TOKENIZER_MODELS))
def test_the_required_fields_are_exactly_those_the_library_cannot_do_without(kind: str) -> None:
    data = _real(kind)
    assert _library_reads(data)
    assert check_tokenizer(json.dumps(data).encode(), what="t.json").vocab_size == len(VOCAB)
    for field in sorted(set(data["model"]) - {"type"}):
        without = {**data, "model": {k: v for k, v in data["model"].items() if k != field}}
        required = field in TOKENIZER_MODEL_FIELDS[kind]
        assert _library_reads(without) is not required, (kind, field)
        if required:
            with pytest.raises(FormatError, match=f"its {kind} model lacks {field}, without which"):
                check_tokenizer(json.dumps(without).encode(), what="t.json")
        else:
            check_tokenizer(json.dumps(without).encode(), what="t.json")


@pytest.mark.parametrize("kind", sorted(TOKENIZER_MODELS))
def test_an_empty_vocabulary_is_refused(kind: str) -> None:
    data = _real(kind)
    empty = {
        **data,
        "model": {**data["model"], "vocab": {} if isinstance(data["model"]["vocab"], dict) else []},
    }
    with pytest.raises(FormatError, match=f"its {kind} model has an empty vocabulary"):
        check_tokenizer(json.dumps(empty).encode(), what="t.json")
