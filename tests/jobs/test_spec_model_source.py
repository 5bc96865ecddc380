"""``model.source``: a catalog architecture or a Hugging Face directory, each with only its own fields."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.spec import SpecError, parse_spec

TEXT = {"source": "text", "path": "corpus.txt"}
HF = {"task": "causal-lm", "model": {"source": "huggingface", "path": "models/tiny-llama"}, "dataset": TEXT}


def rejected(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return [str(p) for p in info.value.problems]


def test_a_hugging_face_spec_gets_the_fine_tuning_recipe() -> None:
    spec = parse_spec(HF)
    assert (spec.model.source, spec.model.path, spec.model.architecture) == (
        "huggingface",
        "models/tiny-llama",
        None,
    )
    # A pretrained transformer is fine-tuned: AdamW at a small rate with warm-up (lbc_catalog.tasks).
    assert (spec.train.optimizer, spec.train.lr) == ("adamw", 5e-5)
    assert spec.train.warmup_epochs > 0


def test_catalog_fields_are_refused_for_a_hugging_face_model() -> None:
    lines = rejected({**HF, "model": {**HF["model"], "architecture": "lenet5", "args": {"width": 1}}})
    assert any(line.startswith("model.architecture: is for source catalog") for line in lines), lines
    assert any(line.startswith("model.args: is for source catalog") for line in lines), lines


def test_a_hugging_face_model_needs_its_path_and_a_catalog_one_its_architecture() -> None:
    assert any(
        line.startswith("model.path: ") for line in rejected({**HF, "model": {"source": "huggingface"}})
    )
    lines = rejected({"model": {}, "dataset": {"source": "digits"}})
    assert "model.architecture: is required for source catalog" in lines[0], lines
    lines = rejected({"model": {"architecture": "lenet5", "path": "x"}, "dataset": {"source": "digits"}})
    assert lines[0].startswith("model.path: is for source huggingface"), lines


def test_a_catalog_spec_keeps_its_defaults() -> None:
    spec = parse_spec({"model": {"architecture": "lenet5"}, "dataset": {"source": "digits"}})
    assert (spec.model.source, spec.model.path, spec.train.optimizer) == ("catalog", None, "sgd")
