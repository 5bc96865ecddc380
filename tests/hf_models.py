"""Tiny Hugging Face model directories for tests, built from configs with ``transformers`` (nothing is
downloaded) or written by hand where a test needs a file no library would write."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

TINY_LLAMA = {
    "model_type": "llama",
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}
TINY_BERT = {
    "model_type": "bert",
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "max_position_embeddings": 64,
    "id2label": {"0": "neg", "1": "pos"},
    "label2id": {"neg": 0, "pos": 1},
}


def tokenizer_json() -> str:
    """A real tokenizers-library file: a word-level vocabulary with whitespace splitting."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {
        "[UNK]": 0,
        **{word: i + 1 for i, word in enumerate(["to", "be", "or", "not", "that", "is", "the", "question"])},
    }
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return str(tokenizer.to_str())


def save_tiny_model(
    directory: Path, config: dict[str, Any] | None = None, *, shard_bytes: int | None = None
) -> Path:
    """``save_pretrained`` of a tiny model built from ``config`` (default: Llama), plus a tokenizer.json."""
    import torch
    import transformers

    from lbc_catalog.huggingface import HF_FAMILIES
    from lbc_catalog.tasks import CAUSAL_LM, IMAGE_CLASSIFICATION, SEQUENCE_CLASSIFICATION

    config = dict(config or TINY_LLAMA)
    family = HF_FAMILIES[config["model_type"]]
    task = next(t for t in (CAUSAL_LM, SEQUENCE_CLASSIFICATION, IMAGE_CLASSIFICATION) if t in family.tasks)
    torch.manual_seed(0)
    hf_config = transformers.AutoConfig.for_model(**config)
    model = getattr(transformers, family.classes[task])(hf_config)
    kwargs: dict[str, Any] = {"max_shard_size": shard_bytes} if shard_bytes else {}
    model.save_pretrained(directory, **kwargs)
    (directory / "tokenizer.json").write_text(tokenizer_json())
    return directory


def safetensors_of(
    values: dict[str, tuple[str, list[int], bytes]], header_extra: dict[str, Any] | None = None
) -> bytes:
    """Hand-made safetensors: name -> (dtype, shape, raw little-endian bytes)."""
    header: dict[str, Any] = dict(header_extra or {})
    offset = 0
    for name, (dtype, shape, raw) in values.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    raw_header = json.dumps(header).encode()
    return struct.pack("<Q", len(raw_header)) + raw_header + b"".join(raw for _, _, raw in values.values())


def hand_made_model(**extra_files: bytes) -> dict[str, bytes]:
    """A minimal valid model directory as name -> bytes (config + one weight), plus ``extra_files``."""
    files = {
        "config.json": json.dumps(TINY_LLAMA).encode(),
        "model.safetensors": safetensors_of({"w": ("F32", [2, 2], bytes(16))}),
    }
    files.update(extra_files)
    return files


def write_files(directory: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return directory


def directory_files(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def zip_of(files: dict[str, bytes], prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(prefix + name, data)
    return buffer.getvalue()


def tar_of(files: dict[str, bytes], prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
