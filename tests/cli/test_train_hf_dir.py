"""``lbc train`` reads a local Hugging Face directory under the upload rules when it loads the spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers

from cli.train import read_spec
from jobs.spec import SpecError


@pytest.fixture()
def bert_dir(tmp_path: Path) -> Path:
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    transformers.BertModel(config).save_pretrained(tmp_path / "bert")
    return tmp_path / "bert"


def spec_file(tmp_path: Path, model_dir: Path, task: str) -> str:
    (tmp_path / "data.txt").write_text("some text\n")
    dataset = {"source": "text", "path": str(tmp_path / "data.txt")}
    if task == "sequence-classification":
        (tmp_path / "data.jsonl").write_text('{"text": "a", "label": 0}\n')
        dataset = {"source": "labeled-text", "path": str(tmp_path / "data.jsonl")}
    spec = {"task": task, "model": {"source": "huggingface", "path": str(model_dir)}, "dataset": dataset}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return str(tmp_path / "spec.json")


def test_a_safe_directory_of_a_family_that_does_the_task_is_accepted(tmp_path: Path, bert_dir: Path) -> None:
    spec = read_spec(spec_file(tmp_path, bert_dir, "sequence-classification"))
    assert spec.model.path == str(bert_dir)


def test_a_family_that_cannot_do_the_task_is_refused_at_spec_load(tmp_path: Path, bert_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"model.path: .*a bert model cannot do task 'causal-lm'"):
        read_spec(spec_file(tmp_path, bert_dir, "causal-lm"))


def test_a_pickle_in_the_directory_is_refused_with_the_reason(tmp_path: Path, bert_dir: Path) -> None:
    (bert_dir / "pytorch_model.bin").write_bytes(b"\x80\x04.")
    with pytest.raises(
        SpecError,
        match=r"model.path: .*pytorch_model.bin is refused: PyTorch .bin weights: a .bin is a pickle",
    ):
        read_spec(spec_file(tmp_path, bert_dir, "sequence-classification"))
