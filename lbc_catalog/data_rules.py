"""Rules about the data a job reads that the service checks at submit and the engine applies when it
loads: written once here (plain Python), so the two can never disagree."""

from __future__ import annotations

from typing import TypeVar

__all__ = [
    "BYTE_VOCABULARY",
    "image_fit_problem",
    "samples_to_split",
    "tokenizer_in_use",
    "val_size_problem",
]

# Text without a tokenizer.json is read as UTF-8 bytes: one token per byte value.
BYTE_VOCABULARY = 256

T = TypeVar("T")


def tokenizer_in_use(named: T | None, models_own: T | None) -> T | None:
    """Which tokenizer reads a job's text: the one the data names (``dataset.tokenizer``), else the
    model's own ``tokenizer.json``; None means UTF-8 bytes (:data:`BYTE_VOCABULARY` tokens)."""
    return named if named is not None else models_own


def samples_to_split(samples: int, limit: int | None) -> int:
    """How many samples reach the train/validation split: ``limit`` keeps at most that many."""
    return samples if limit is None else min(samples, limit)


def val_size_problem(samples: int, val_size: int) -> str | None:
    """Why ``val_size`` validation samples cannot be taken from ``samples`` (None when they can): both
    training and validation need at least one."""
    if 1 <= val_size < samples:
        return None
    if samples < 2:
        return f"{samples} sample(s) cannot be split into training and validation"
    return f"must be in [1, {samples - 1}] (the data has {samples} samples), got {val_size}"


def image_fit_problem(
    shape: tuple[int, ...], channels: int | None, size: int | None
) -> tuple[str, str] | None:
    """Why images of ``shape`` ([C, H, W]) cannot feed a vision model reading ``channels`` channels of
    ``size`` x ``size`` pixels (None: either is not fixed by its config): ``("channels" | "size", message)``."""
    if channels is not None and shape[0] != channels:
        return "channels", f"the images have {shape[0]} channels but the model reads {channels}"
    if size is not None and tuple(shape[1:]) != (size, size):
        return "size", (
            f"the images are {shape[1]}x{shape[2]} but the model reads {size}x{size} "
            "(dataset.image_size resizes them)"
        )
    return None
