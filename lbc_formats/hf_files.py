"""A local Hugging Face model directory as the engine and ``lbc train`` read it.

The rules are ``lbc_formats.hf_directory``'s, the same the service applies to an upload (file list, config,
safetensors headers, side files); this adds what a run needs on top: the family must do the run's task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lbc_catalog.huggingface import hf_class_for
from lbc_formats.errors import FormatError
from lbc_formats.hf_config import CleanConfig, HFConfigError
from lbc_formats.hf_directory import check_model_dir

INDEX = "model.safetensors.index.json"
# The directory checks raise FormatError; the engine names it for what it is here.
HFFileError = FormatError


@dataclass(frozen=True)
class ModelFiles:
    """The files to read: the weight files (one, or the index's shards in order) and the index if any."""

    weights: tuple[str, ...]
    index: str | None


def read_model_dir(directory: Path, task: str) -> tuple[ModelFiles, CleanConfig]:
    """A local model directory's files and cleaned config, checked against ``task``: what both ``lbc train``
    (at spec load) and the engine (before building) accept. Raises FormatError (HFConfigError for the
    config) naming the file and the problem."""
    info = check_model_dir(directory)
    try:
        hf_class_for(info.model_type, task)
    except ValueError as exc:
        raise HFConfigError(str(exc)) from None
    return ModelFiles(info.weights, INDEX if INDEX in info.files else None), info.config
