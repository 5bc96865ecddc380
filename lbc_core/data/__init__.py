"""Datasets for N:M sparsity training: loaders, splits, normalisation and batching.

Entry points: :class:`DataConfig` -> :func:`load_data` -> :class:`DataBundle`, then
:func:`make_loader` for mini-batches. Every malformed or unsafe input raises
:class:`DatasetError`. The individual loaders are exported for direct use.
"""

from .archives import ArchiveLimits, extract_archive
from .arrays import ArrayDataset
from .cifar import load_cifar
from .config import SOURCES, DataConfig
from .digits import load_digits
from .errors import DatasetError
from .imagefolder import load_image_folder
from .loader import BatchLoader, make_loader
from .mnist import load_mnist
from .npz import load_npz
from .pipeline import DataBundle, load_data
from .safe_pickle import restricted_loads
from .splits import check_compatible, split_dataset, take_first
from .synthetic import SyntheticSpec, make_synthetic
from .text import TokenBlocks, TokenizedTexts, load_corpus_blocks, load_labeled_texts
from .tokenizer import ByteTokenizer, TextTokenizer, load_tokenizer
from .transforms import Augmentation, Normalization, augment_batch, compute_normalization, normalize

__all__ = [
    "SOURCES",
    "ArchiveLimits",
    "ArrayDataset",
    "Augmentation",
    "BatchLoader",
    "ByteTokenizer",
    "DataBundle",
    "DataConfig",
    "DatasetError",
    "Normalization",
    "SyntheticSpec",
    "TextTokenizer",
    "TokenBlocks",
    "TokenizedTexts",
    "augment_batch",
    "check_compatible",
    "compute_normalization",
    "extract_archive",
    "load_cifar",
    "load_corpus_blocks",
    "load_data",
    "load_digits",
    "load_image_folder",
    "load_labeled_texts",
    "load_mnist",
    "load_npz",
    "load_tokenizer",
    "make_loader",
    "make_synthetic",
    "normalize",
    "restricted_loads",
    "split_dataset",
    "take_first",
]
