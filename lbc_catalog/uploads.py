"""The formats an uploaded dataset can have (the ``format`` field of ``POST /v1/datasets``)."""

from __future__ import annotations

from lbc_catalog.tasks import TEXT_SOURCES

__all__ = ["DATASET_FORMATS"]

# A dataset upload's format is the dataset source it feeds (text and labeled-text included), plus
# tokenizer: a tokenizer.json that text sources name in dataset.tokenizer.
DATASET_FORMATS = ("mnist", "npz", "imagefolder", "cifar10", "cifar100", *TEXT_SOURCES, "tokenizer")
