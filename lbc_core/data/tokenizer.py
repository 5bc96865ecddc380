"""Tokenizers for text tasks: a model's own ``tokenizer.json`` read with the ``tokenizers`` library, or
UTF-8 bytes when a run names none.

``tokenizers`` is imported here only, and only when a tokenizer file is loaded: image runs never need it.
A tokenizer file is data (JSON), checked first as uploads and model directories check it
(``lbc_formats.tokenizer_json``); the library parses it without running any code that came with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from lbc_catalog.data_rules import BYTE_VOCABULARY
from lbc_formats.errors import FormatError
from lbc_formats.tokenizer_json import MAX_TOKENIZER_BYTES, TOKENIZER_FILE, check_tokenizer

from .errors import DatasetError

__all__ = ["ByteTokenizer", "JsonTokenizer", "TextTokenizer", "load_tokenizer"]

# Tried in order for the padding id when the tokenizer file configures no padding.
_PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>", "<|endoftext|>", "</s>", "<eos>")


class TextTokenizer(Protocol):
    """What the text loaders need of a tokenizer."""

    name: str
    vocab_size: int
    pad_id: int

    def encode(self, texts: Sequence[str], *, special_tokens: bool) -> list[list[int]]: ...


class ByteTokenizer:
    """Every UTF-8 byte is a token (vocabulary 256, padding id 0): for models trained from scratch."""

    name = "utf-8 bytes"
    vocab_size = BYTE_VOCABULARY
    pad_id = 0

    def encode(self, texts: Sequence[str], *, special_tokens: bool) -> list[list[int]]:
        return [list(text.encode("utf-8")) for text in texts]


class JsonTokenizer:
    """A Hugging Face ``tokenizer.json`` (any model the ``tokenizers`` library describes)."""

    def __init__(self, tokenizer: Any, name: str) -> None:
        self._tokenizer = tokenizer
        self.name = name
        self.vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))
        padding = tokenizer.padding
        if padding and isinstance(padding.get("pad_id"), int):
            self.pad_id = int(padding["pad_id"])
        else:
            found = (tokenizer.token_to_id(token) for token in _PAD_TOKENS)
            # Padded positions are masked out of attention and loss, so any id serves when none is named.
            self.pad_id = next((i for i in found if i is not None), 0)

    def encode(self, texts: Sequence[str], *, special_tokens: bool) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=special_tokens)
        return [list(encoding.ids) for encoding in encodings]


def load_tokenizer(path: str | Path | None) -> TextTokenizer:
    """The tokenizer at ``path`` (a ``tokenizer.json`` file, or a directory holding one); bytes when None."""
    if path is None:
        return ByteTokenizer()
    location = Path(path)
    if location.is_dir():
        location = location / TOKENIZER_FILE
    if not location.is_file():
        raise DatasetError(f"{location}: no tokenizer file there (expected {TOKENIZER_FILE})")
    size = location.stat().st_size
    if size > MAX_TOKENIZER_BYTES:
        raise DatasetError(f"{location.name}: tokenizer file of {size} bytes, over {MAX_TOKENIZER_BYTES}")
    text = location.read_bytes()
    try:
        check_tokenizer(text, what=location.name)
    except FormatError as exc:
        raise DatasetError(str(exc)) from None
    from tokenizers import Tokenizer  # optional dependency: only text runs with a tokenizer file need it

    try:
        tokenizer = Tokenizer.from_str(text.decode("utf-8"))
    except Exception as exc:  # the library raises its own exception type for every malformed file
        message = " ".join(str(exc).split())[:300]
        raise DatasetError(
            f"{location.name}: not a tokenizer the tokenizers library can read ({message})"
        ) from None
    return JsonTokenizer(tokenizer, location.name)
