"""The submit-time fit checks over stored upload summaries (``jobs.upload_fit``), without a server."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.spec import JobSpec, parse_spec
from jobs.upload_fit import upload_fit_problems, val_size_fit_problem, vocabulary_fit_problem
from lbc_catalog.data_rules import samples_to_split, tokenizer_in_use, val_size_problem

LLAMA = {"model_type": "llama", "sizes": {"vocab": 64}, "files": ["config.json", "model.safetensors"]}


def _spec(dataset: dict[str, Any], **overrides: Any) -> JobSpec:
    body: dict[str, Any] = {
        "model": {"architecture": "lenet5"},
        "dataset": dataset,
        "sparsity": {"method": "lbc", "n": 2, "m": 4},
        **overrides,
    }
    return parse_spec(body)


def _text_spec(tokenizer: str | None = None) -> JobSpec:
    dataset = {"source": "text", "path": "c0ffee", **({"tokenizer": tokenizer} if tokenizer else {})}
    return _spec(dataset, task="causal-lm", model={"source": "huggingface", "path": "m0de1"})


def test_val_size_must_leave_a_training_sample_after_the_limit() -> None:
    assert val_size_problem(20, 19) is None
    assert val_size_problem(20, 20) == "must be in [1, 19] (the data has 20 samples), got 20"
    assert val_size_problem(1, 1) == "1 sample(s) cannot be split into training and validation"
    assert (samples_to_split(20, None), samples_to_split(20, 50), samples_to_split(20, 5)) == (20, 20, 5)


@pytest.mark.parametrize(
    ("dataset", "summary", "expected"),
    [
        ({"val_size": 20}, {"samples": 20}, "must be in [1, 19] (the data has 20 samples), got 20"),
        ({"val_size": 19}, {"samples": 20}, None),
        ({"val_size": 20, "val_path": "0ther"}, {"samples": 20}, None),  # val_path: val_size is ignored
        ({"val_fraction": 0.9}, {"samples": 2}, None),  # a fraction always leaves one sample
        # MNIST: the chosen split's samples, or the only split's
        (
            {"source": "mnist", "split": "t10k", "val_size": 100},
            {"splits": {"t10k": {"samples": 100}}},
            "got 100",
        ),
        ({"source": "mnist", "val_size": 50}, {"splits": {"t10k": {"samples": 100}}}, None),
        ({"source": "mnist", "val_size": 100}, {"splits": {"a": {"samples": 9}, "b": {"samples": 9}}}, None),
        ({"source": "cifar10", "val_size": 100}, {"splits": {"train": {"files": ["data_batch_1"]}}}, None),
    ],
)
def test_val_size_against_the_recorded_samples(
    dataset: dict[str, Any], summary: dict[str, Any], expected: str | None
) -> None:
    spec = _spec({"source": "npz", "path": "d474", **dataset})
    problem = val_size_fit_problem(spec, summary)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem[0] == "dataset.val_size" and expected in problem[1]


def test_a_text_corpus_records_no_samples_so_its_val_size_is_left_to_the_worker() -> None:
    spec = _spec({"source": "text", "path": "c0ffee", "val_size": 10**6}, task="causal-lm",
                 model={"source": "huggingface", "path": "m0de1"})  # fmt: skip
    assert val_size_fit_problem(spec, {"layout": "plain", "characters": 10}) is None


def test_the_tokenizer_is_chosen_as_the_worker_chooses_it() -> None:
    assert tokenizer_in_use("named", "own") == "named"
    assert tokenizer_in_use(None, "own") == "own"
    assert tokenizer_in_use(None, None) is None


def test_bytes_overflow_a_model_without_a_tokenizer_file() -> None:
    problem = vocabulary_fit_problem(_text_spec(), {"model.path": LLAMA})
    assert problem is not None and problem[0] == "dataset.tokenizer"
    assert "vocab_size 64 and no tokenizer.json" in problem[1] and "256 tokens" in problem[1]
    wide = {**LLAMA, "sizes": {"vocab": 256}}
    assert vocabulary_fit_problem(_text_spec(), {"model.path": wide}) is None


def test_the_models_own_tokenizer_is_left_to_the_worker_and_a_named_one_is_measured() -> None:
    with_own = {**LLAMA, "files": [*LLAMA["files"], "tokenizer.json"]}
    assert vocabulary_fit_problem(_text_spec(), {"model.path": with_own}) is None
    big, small = {"vocab_size": 65}, {"vocab_size": 64}
    named = _text_spec(tokenizer="70ken")
    problem = vocabulary_fit_problem(named, {"model.path": with_own, "dataset.tokenizer": big})
    assert problem == (
        "dataset.tokenizer",
        "tokenizer 70ken has 65 tokens but model m0de1's vocab_size is 64; use the model's own tokenizer",
    )
    assert vocabulary_fit_problem(named, {"model.path": LLAMA, "dataset.tokenizer": small}) is None
    # A named tokenizer that is not there was refused as a reference: not measured as the model's own.
    assert vocabulary_fit_problem(named, {"model.path": LLAMA}) is None
    assert (
        vocabulary_fit_problem(named, {"model.path": LLAMA, "dataset.tokenizer": {"vocab_size": None}})
        is None
    )


def test_catalog_models_and_image_data_have_no_vocabulary_to_check() -> None:
    spec = _spec({"source": "npz", "path": "d474"})
    assert upload_fit_problems(spec, {"dataset.path": {"samples": 20}}) == []


def test_image_shape_against_a_vision_models_recorded_config() -> None:
    vit = {"model_type": "vit", "sizes": {"channels": 3, "image_size": 32}}
    spec = _spec({"source": "npz", "path": "d474"}, model={"source": "huggingface", "path": "v17"})
    fits = {"model.path": vit, "dataset.path": {"input_shape": [3, 32, 32]}}
    assert upload_fit_problems(spec, fits) == []
    grey = {"model.path": vit, "dataset.path": {"input_shape": [1, 32, 32]}}
    assert upload_fit_problems(spec, grey) == [
        ("model.path", "model v17: the images have 1 channels but the model reads 3")
    ]
    folder = _spec(
        {"source": "imagefolder", "path": "d474", "image_size": 64},
        model={"source": "huggingface", "path": "v17"},
    )
    problems = upload_fit_problems(folder, {"model.path": vit, "dataset.path": {"image_size": [32, 32]}})
    assert problems == [
        (
            "dataset.image_size",
            "model v17: the images are 64x64 but the model reads 32x32 (dataset.image_size resizes them)",
        )
    ]
    # Uploaded before channels and image size were recorded: nothing to hold the data to.
    assert (
        upload_fit_problems(spec, {"model.path": {"sizes": {}}, "dataset.path": {"input_shape": [1, 8, 8]}})
        == []
    )
