"""Whether the uploads a job names fit each other and the spec, from what their validation recorded.

Pure functions over stored upload summaries (no database, no files): the submit route calls them once
every referenced upload is known to exist and to be of the right kind. Each refuses only what the worker
would certainly refuse later, by the same rule (``lbc_catalog.data_rules``), so a job is never turned
away that could have run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.admission import data_shape
from jobs.spec import JobSpec
from lbc_catalog.data_rules import (
    BYTE_VOCABULARY,
    image_fit_problem,
    samples_to_split,
    tokenizer_in_use,
    val_size_problem,
)
from lbc_catalog.tasks import TEXT_SOURCES
from lbc_formats.tokenizer_json import TOKENIZER_FILE

__all__ = ["image_fit", "upload_fit_problems", "val_size_fit_problem", "vocabulary_fit_problem"]

Summaries = Mapping[str, Mapping[str, Any]]  # spec field naming an upload -> that upload's summary


def upload_fit_problems(spec: JobSpec, summaries: Summaries) -> list[tuple[str, str]]:
    """``(field, message)`` for every way the named uploads contradict each other or the spec."""
    problems = [
        val_size_fit_problem(spec, summaries.get("dataset.path")),
        vocabulary_fit_problem(spec, summaries),
        image_fit(spec, summaries),
    ]
    return [problem for problem in problems if problem is not None]


def _samples(spec: JobSpec, summary: Mapping[str, Any]) -> int | None:
    """The samples the worker loads from a dataset upload: the chosen split's where it records splits."""
    splits = summary.get("splits")
    if isinstance(splits, dict) and splits:
        split = spec.dataset.split
        if split is None and len(splits) == 1:
            split = next(iter(splits))
        chosen = splits.get(split) if split is not None else None
        count = chosen.get("samples") if isinstance(chosen, dict) else None
    else:
        count = summary.get("samples")  # a text corpus records none: its blocks depend on the tokenizer
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def val_size_fit_problem(spec: JobSpec, dataset: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``dataset.val_size`` must leave a training sample in the uploaded data (after ``limit``); it is
    ignored with ``val_path``, and ``val_fraction`` always leaves one."""
    val_size = spec.dataset.val_size
    if dataset is None or val_size is None or spec.dataset.val_path is not None:
        return None
    samples = _samples(spec, dataset)
    if samples is None:
        return None
    problem = val_size_problem(samples_to_split(samples, spec.dataset.limit), val_size)
    return None if problem is None else ("dataset.val_size", f"dataset {spec.dataset.path}: {problem}")


def vocabulary_fit_problem(spec: JobSpec, summaries: Summaries) -> tuple[str, str] | None:
    """The tokenizer that will read a Hugging Face model's text must not make ids past its ``vocab_size``.

    The tokenizer is chosen as the worker chooses it (``tokenizer_in_use``). An uploaded tokenizer's
    recorded vocabulary is a lower bound of its size (added tokens may be new or not), so only a sure
    overflow is refused; the model's own tokenizer.json is not measured at upload and is left to the worker.
    """
    model = summaries.get("model.path")
    if model is None or spec.model.source != "huggingface" or spec.dataset.source not in TEXT_SOURCES:
        return None
    vocab = (model.get("sizes") or {}).get("vocab")
    if not isinstance(vocab, int):
        return None
    named = summaries.get("dataset.tokenizer")
    if spec.dataset.tokenizer is not None and named is None:  # refused as a reference already
        return None
    own = TOKENIZER_FILE if TOKENIZER_FILE in (model.get("files") or []) else None
    chosen = tokenizer_in_use(named, own)
    if chosen is None:
        if vocab >= BYTE_VOCABULARY:
            return None
        return (
            "dataset.tokenizer",
            f"model {spec.model.path} has vocab_size {vocab} and no {TOKENIZER_FILE}, so its text would be "
            f"read as UTF-8 bytes ({BYTE_VOCABULARY} tokens); upload the model's tokenizer "
            f"(lbc upload dataset --format tokenizer) and name it in dataset.tokenizer",
        )
    if not isinstance(chosen, Mapping):  # the model's own tokenizer.json: measured by the worker
        return None
    tokens = chosen.get("vocab_size")
    if not isinstance(tokens, int) or tokens <= vocab:
        return None
    return (
        "dataset.tokenizer",
        f"tokenizer {spec.dataset.tokenizer} has {tokens} tokens but model {spec.model.path}'s vocab_size "
        f"is {vocab}; use the model's own tokenizer",
    )


def image_fit(spec: JobSpec, summaries: Summaries) -> tuple[str, str] | None:
    """Images must have the channels and the square size a Hugging Face vision model's config fixes.

    The shape is the source's, or the one the upload recorded (npz, MNIST, CIFAR); an image folder's
    channels are known only once read, so only its size is checked (``dataset.image_size``, else its
    first image's, which the worker resizes the others to).
    """
    model = summaries.get("model.path")
    if model is None or spec.model.source != "huggingface" or spec.dataset.source in TEXT_SOURCES:
        return None
    sizes = model.get("sizes") or {}
    channels = sizes.get("channels") if isinstance(sizes.get("channels"), int) else None
    size = sizes.get("image_size") if isinstance(sizes.get("image_size"), int) else None
    dataset = summaries.get("dataset.path")
    shape = data_shape(spec, dataset)
    if shape is None and spec.dataset.source == "imagefolder":
        recorded = (dataset or {}).get("image_size")
        if spec.dataset.image_size is not None:
            shape, channels = (0, spec.dataset.image_size, spec.dataset.image_size), None
        elif isinstance(recorded, list) and len(recorded) == 2:
            shape, channels = (0, int(recorded[0]), int(recorded[1])), None
    if shape is None or len(shape) != 3:
        return None
    unfit = image_fit_problem(shape, channels, size)
    if unfit is None:
        return None
    kind, message = unfit
    field = "dataset.image_size" if kind == "size" and spec.dataset.source == "imagefolder" else "model.path"
    return field, f"model {spec.model.path}: {message}"
