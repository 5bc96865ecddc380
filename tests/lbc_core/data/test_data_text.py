"""Text data: corpora packed into blocks, labeled texts padded with a mask, and every bad file named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lbc_core.data import DataConfig, DatasetError, load_data
from lbc_core.data.tokenizer import ByteTokenizer, load_tokenizer


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_a_corpus_is_packed_into_blocks_and_the_last_blocks_validate(tmp_path: Path) -> None:
    corpus = _write(tmp_path / "c.txt", "abcdefghij" * 5)  # 50 bytes: 6 blocks of 8, 2 bytes dropped
    data = load_data(DataConfig(source="text", path=str(corpus), block_size=8, val_size=2))
    assert data.vocab_size == 256 and data.tokenizer == "utf-8 bytes"
    expected = torch.tensor(list(b"abcdefghij" * 5)[:48]).view(6, 8)
    assert torch.equal(data.train.ids, expected[:4])
    assert torch.equal(data.val.ids, expected[4:])


def test_a_jsonl_corpus_joins_its_documents(tmp_path: Path) -> None:
    corpus = _write(tmp_path / "c.jsonl", '{"text": "ab"}\n\n{"text": "cd", "id": 3}\n')
    data = load_data(DataConfig(source="text", path=str(corpus), block_size=2, val_size=1))
    assert bytes(torch.cat([data.train.ids, data.val.ids]).flatten().tolist()) == b"ab\n\ncd"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("c.txt", b"caf\xe9\n", r"c\.txt: not UTF-8 text \(invalid byte at line 1"),
        ("c.txt", b"  \n\n ", r"c\.txt: the corpus is empty"),
        ("c.jsonl", b'{"body": "x"}\n', r'c\.jsonl: line 1 has no "text" field'),
        ("c.jsonl", b'{"text": 3}\n', r'line 1: "text" must be a string, got int'),
        ("c.jsonl", b"not json\n", r"c\.jsonl: line 1 is not a JSON object"),
        ("c.txt", b"short", r"c\.txt: the corpus is 5 tokens long \(utf-8 bytes\), too short for one block"),
        ("c.txt", b"x" * 20, r"fills 1 block of 16 tokens; training and validation need at least one block"),
    ],
)
def test_bad_corpora_are_refused_naming_the_problem(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(DatasetError, match=message):
        load_data(DataConfig(source="text", path=str(path), block_size=16))


def test_labeled_texts_are_truncated_padded_and_masked(tmp_path: Path) -> None:
    rows = [{"text": "hello world", "label": "pos"}, {"text": "no", "label": "neg"}] * 5
    path = _write(tmp_path / "t.jsonl", "\n".join(json.dumps(r) for r in rows))
    data = load_data(DataConfig(source="labeled-text", path=str(path), max_length=4, val_size=2))
    assert data.classes == ["neg", "pos"] and data.num_classes == 2
    ids = torch.cat([data.train.input_ids, data.val.input_ids])
    mask = torch.cat([data.train.attention_mask, data.val.attention_mask])
    labels = torch.cat([data.train.labels, data.val.labels]).tolist()
    for row, label in enumerate(labels):
        if label == 1:  # "hello world" truncated to 4 bytes
            assert ids[row].tolist() == list(b"hell") and mask[row].tolist() == [1, 1, 1, 1]
        else:  # "no" padded with the byte tokenizer's padding id 0
            assert ids[row].tolist() == [*b"no", 0, 0] and mask[row].tolist() == [1, 1, 0, 0]


def test_csv_labels_that_spell_integers_are_class_ids(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", 'id,text,label\n1,"a, b",2\n2,c,0\n3,d,2\n4,e,0\n')
    data = load_data(DataConfig(source="labeled-text", path=str(path), max_length=4, val_size=1))
    assert data.classes == ["0", "1", "2"]
    assert sorted(torch.cat([data.train.labels, data.val.labels]).tolist()) == [0, 0, 2, 2]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "t.csv",
            "body,label\nx,1\ny,0\n",
            r"t\.csv: the CSV header has no 'text' column \(columns: body, label\)",
        ),
        ("t.jsonl", '{"text": "x"}\n', r't\.jsonl: line 1 has no "label" field'),
        (
            "t.jsonl",
            '{"text": "x", "label": 1}\n{"text": "y", "label": "b"}\n',
            r"line 2: labels mix integers",
        ),
        ("t.jsonl", '{"text": "x", "label": 1}\n{"text": "y", "label": 1}\n', r"needs at least 2 classes"),
        ("t.jsonl", '{"text": "x", "label": [1]}\n', r'"label" must be an integer or a string, got list'),
        ("t.csv", "text,label\nx,1,extra\n", r"t\.csv: row 2 has 3 cells, the header 2"),
        (
            "t.jsonl",
            '{"text": "", "label": 0}\n{"text": "b", "label": 1}\n{"text": "c", "label": 1}\n',
            r"give no tokens",
        ),
    ],
)
def test_bad_labeled_texts_are_refused_naming_the_problem(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(DatasetError, match=message):
        load_data(DataConfig(source="labeled-text", path=str(path), max_length=8, val_size=1))


def test_a_tokenizer_file_is_read_as_json_and_refused_when_it_is_not(
    tmp_path: Path, bpe_tokenizer: Path
) -> None:
    tokenizer = load_tokenizer(bpe_tokenizer)
    assert tokenizer.vocab_size == 512 and tokenizer.pad_id == 0  # [PAD] is the first special token
    assert load_tokenizer(bpe_tokenizer.parent).vocab_size == 512  # a model directory holding one
    assert isinstance(load_tokenizer(None), ByteTokenizer)
    with pytest.raises(DatasetError, match=r"tokenizer\.json is not valid JSON text"):
        load_tokenizer(_write(tmp_path / "tokenizer.json", b"\x80PK not json"))
    # The checks of uploads and model directories (lbc_formats.tokenizer_json), then the library's own.
    with pytest.raises(DatasetError, match=r"other\.json needs a 'model' object whose type is one of BPE"):
        load_tokenizer(_write(tmp_path / "other.json", '{"model": 3}'))
    with pytest.raises(DatasetError, match=r"other\.json: its BPE model lacks merges"):
        load_tokenizer(_write(tmp_path / "other.json", '{"model": {"type": "BPE", "vocab": {"a": 0}}}'))
    with pytest.raises(DatasetError, match=r"not a tokenizer the tokenizers library can read"):
        load_tokenizer(
            _write(tmp_path / "other.json", '{"model": {"type": "BPE", "vocab": 3, "merges": []}}')
        )
    with pytest.raises(DatasetError, match="no tokenizer file there"):
        load_tokenizer(tmp_path / "missing")


def test_text_options_are_refused_for_image_sources() -> None:
    with pytest.raises(DatasetError, match="tokenizer is only used by sources text, labeled-text"):
        DataConfig(source="digits", tokenizer="t.json")
    with pytest.raises(DatasetError, match="block_size must be >= 1"):
        DataConfig(source="text", path="c.txt", block_size=0)
