"""Text data for the text tasks: a corpus tokenized and packed into fixed-length blocks (causal LM), and
labeled texts tokenized, truncated and padded to a fixed length with an attention mask (sequence
classification). Files are read through ``lbc_formats.text``, the same reader the upload validation uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lbc_formats.text import TextDataError, read_corpus, read_labeled

from .errors import DatasetError
from .tokenizer import TextTokenizer

__all__ = ["TokenBlocks", "TokenizedTexts", "load_corpus_blocks", "load_labeled_texts", "split_blocks"]

# Lines per tokenizer call: large enough to keep the library's batch encoding busy, small enough that a
# big corpus never becomes one giant string in the tokenizer.
_LINES_PER_CALL = 2048


# eq=False: these hold tensors, for which field-wise equality is meaningless.
@dataclass(frozen=True, eq=False)
class TokenBlocks:
    """A corpus as ``ids``: N blocks of block_size token ids (int64), each a training sample, from a
    tokenizer with ``vocab_size`` tokens."""

    ids: torch.Tensor
    vocab_size: int
    name: str = "corpus"

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def subset(self, index: torch.Tensor) -> TokenBlocks:
        return TokenBlocks(self.ids.index_select(0, index), self.vocab_size, self.name)


@dataclass(frozen=True, eq=False)
class TokenizedTexts:
    """Labeled texts as ``input_ids`` and ``attention_mask`` (N x max_length) and ``labels`` (N)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str = "texts"

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> TokenizedTexts:
        return TokenizedTexts(
            self.input_ids.index_select(0, index),
            self.attention_mask.index_select(0, index),
            self.labels.index_select(0, index),
            self.classes,
            self.name,
        )


def load_corpus_blocks(path: str | Path, tokenizer: TextTokenizer, block_size: int) -> TokenBlocks:
    """Tokenize the corpus at ``path`` and pack it into blocks of ``block_size`` tokens (the tail that does
    not fill a block is dropped)."""
    path = Path(path)
    try:
        text = read_corpus(path)
    except TextDataError as exc:
        raise DatasetError(str(exc)) from None
    lines = text.splitlines(keepends=True)
    ids: list[int] = []
    for start in range(0, len(lines), _LINES_PER_CALL):
        chunk = "".join(lines[start : start + _LINES_PER_CALL])
        for encoded in tokenizer.encode([chunk], special_tokens=False):
            ids.extend(encoded)
    blocks = len(ids) // block_size
    if blocks < 1:
        raise DatasetError(
            f"{path.name}: the corpus is {len(ids)} tokens long ({tokenizer.name}), too short for one block "
            f"of block_size {block_size}"
        )
    tensor = torch.tensor(ids[: blocks * block_size], dtype=torch.int64).view(blocks, block_size)
    return TokenBlocks(tensor, tokenizer.vocab_size, path.name)


def load_labeled_texts(
    path: str | Path, tokenizer: TextTokenizer, max_length: int, classes: tuple[str, ...] | None = None
) -> TokenizedTexts:
    """Tokenize labeled texts, truncate each to ``max_length`` tokens and pad it to that length.

    ``classes`` maps a validation file's labels onto the training file's ids (its labels must be among them).
    """
    path = Path(path)
    try:
        rows = read_labeled(path)
    except TextDataError as exc:
        raise DatasetError(str(exc)) from None
    found = rows.classes
    labels = list(rows.labels)
    if classes is not None and found != classes:
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted(set(found) - set(index))
        if unknown:
            raise DatasetError(
                f"{path.name}: labels {', '.join(map(repr, unknown[:5]))} do not occur in the training data"
            )
        labels = [index[found[label]] for label in labels]
    encoded = tokenizer.encode(list(rows.texts), special_tokens=True)
    n = len(encoded)
    input_ids = torch.full((n, max_length), tokenizer.pad_id, dtype=torch.int64)
    mask = torch.zeros((n, max_length), dtype=torch.int64)
    for row, ids in enumerate(encoded):
        ids = ids[:max_length]
        if ids:
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
            mask[row, : len(ids)] = 1
    empty = int((mask.sum(dim=1) == 0).sum())
    if empty:
        first = int((mask.sum(dim=1) == 0).nonzero()[0])
        raise DatasetError(f"{path.name}: {empty} text(s) give no tokens (the first is row {first + 1})")
    return TokenizedTexts(
        input_ids, mask, torch.tensor(labels, dtype=torch.int64), classes or found, path.name
    )


def split_blocks(count: int, val_fraction: float, val_size: int | None) -> int:
    """How many samples of ``count`` go to validation: ``val_size``, else the fraction (at least one)."""
    n_val = val_size if val_size is not None else max(1, round(count * val_fraction))
    if n_val >= count:
        raise DatasetError(
            f"{count} sample(s) cannot be split into training and {n_val} validation sample(s): "
            "give more data, a smaller val_size or val_fraction, or a val_path"
        )
    return n_val
