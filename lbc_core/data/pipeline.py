"""load_data: source -> (train, val) split -> train-only normalisation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lbc_catalog.tasks import TEXT_SOURCES

from .arrays import ArrayDataset
from .cifar import load_cifar
from .config import DataConfig
from .digits import load_digits
from .errors import DatasetError
from .imagefolder import load_image_folder
from .mnist import load_mnist
from .npz import load_npz
from .splits import split_dataset, take_first
from .synthetic import make_synthetic
from .text import TokenBlocks, TokenizedTexts, load_corpus_blocks, load_labeled_texts, split_blocks
from .tokenizer import load_tokenizer
from .transforms import Augmentation, compute_normalization, default_crop_padding, normalize

TextData = TokenBlocks | TokenizedTexts


# eq=False: the bundle holds tensors, for which field-wise equality is meaningless.
@dataclass(frozen=True, eq=False)
class DataBundle:
    """Normalised train/val sets plus what a model export must record about them.

    Image data is an ArrayDataset; text data is TokenBlocks (causal LM: ``num_classes`` is the vocabulary)
    or TokenizedTexts, with empty mean/std and ``input_shape`` (block_size,) or (max_length,).
    """

    train: ArrayDataset | TextData
    val: ArrayDataset | TextData
    num_classes: int
    input_shape: tuple[int, ...]  # (C, H, W) or (F,)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    # None unless DataConfig.augment. For the training set only: pass it to make_loader,
    # or call it directly as augment(x_batch, generator).
    augment: Augmentation | None = None
    vocab_size: int | None = None  # text data: the tokenizer's vocabulary
    tokenizer: str | None = None  # text data: which tokenizer made the ids


def load_data(config: DataConfig, scratch_dir: str | os.PathLike[str] | None = None) -> DataBundle:
    """Load, split and normalise the data described by ``config``.

    ``scratch_dir`` receives archive extractions (a temp dir when None); they are
    removed once decoded. Mean/std come from the training split only, so no validation
    information leaks into training.
    """
    if config.source in TEXT_SOURCES:
        return _load_text(config)
    data = _load_source(config, config.path, scratch_dir)
    if config.limit is not None:
        data = take_first(data, config.limit, config.seed)
    if config.val_path is not None:
        # The validation images must come out in the training images' size and mode.
        like = data if config.source == "imagefolder" else None
        val_data = _load_source(config, config.val_path, scratch_dir, like=like)
        train, val = split_dataset(data, val_dataset=val_data)
    else:
        train, val = split_dataset(
            data, val_fraction=config.val_fraction, val_size=config.val_size, seed=config.seed
        )
    if train.num_classes < 2:
        raise DatasetError(f"{data.name}: classification needs at least 2 classes, found {train.classes}")
    augment = None
    if config.augment:
        augment = Augmentation(crop_padding=default_crop_padding(train.input_shape), hflip=config.hflip)
    norm = compute_normalization(train)
    return DataBundle(
        train=normalize(train, norm),
        val=normalize(val, norm),
        num_classes=train.num_classes,
        input_shape=train.input_shape,
        mean=norm.mean,
        std=norm.std,
        classes=list(train.classes),
        augment=augment,
    )


def _load_text(config: DataConfig) -> DataBundle:
    """Tokenize, then split: the corpus's last blocks (or val_path) validate; labeled rows split at random."""
    assert config.path is not None  # DataConfig guarantees a path for text sources
    for location in (config.path, config.val_path):
        if location is not None and not Path(location).exists():
            raise DatasetError(f"{location}: data path does not exist")
    tokenizer = load_tokenizer(config.tokenizer)
    train: TextData
    val: TextData
    if config.source == "text":
        train = load_corpus_blocks(config.path, tokenizer, config.block_size)
        if config.limit is not None:
            train = train.subset(torch.arange(min(config.limit, len(train))))
        if config.val_path is not None:
            val = load_corpus_blocks(config.val_path, tokenizer, config.block_size)
        else:
            if len(train) < 2:
                raise DatasetError(
                    f"{Path(config.path).name}: the corpus fills {len(train)} block of {config.block_size} "
                    "tokens; training and validation need at least one block each (give more text, a "
                    "smaller block_size, or a val_path)"
                )
            n_val = split_blocks(len(train), config.val_fraction, config.val_size)
            cut = len(train) - n_val
            train, val = train.subset(torch.arange(cut)), train.subset(torch.arange(cut, len(train)))
        return DataBundle(
            train=train,
            val=val,
            num_classes=tokenizer.vocab_size,
            input_shape=(config.block_size,),
            mean=(),
            std=(),
            classes=[],
            vocab_size=tokenizer.vocab_size,
            tokenizer=tokenizer.name,
        )
    texts = load_labeled_texts(config.path, tokenizer, config.max_length)
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(config.seed))
    if config.limit is not None:
        order = order[: config.limit]
    if config.val_path is not None:
        train = texts.subset(order)
        val = load_labeled_texts(config.val_path, tokenizer, config.max_length, texts.classes)
    else:
        n_val = split_blocks(len(order), config.val_fraction, config.val_size)
        train, val = texts.subset(order[n_val:]), texts.subset(order[:n_val])
    classes = list(texts.classes)
    return DataBundle(
        train=train,
        val=val,
        num_classes=len(classes),
        input_shape=(config.max_length,),
        mean=(),
        std=(),
        classes=classes,
        vocab_size=tokenizer.vocab_size,
        tokenizer=tokenizer.name,
    )


def _load_source(
    config: DataConfig,
    path: str | None,
    scratch_dir: str | os.PathLike[str] | None,
    like: ArrayDataset | None = None,
) -> ArrayDataset:
    source = config.source
    if source == "digits":
        return load_digits()
    if source == "synthetic":
        spec = config.synthetic
        return make_synthetic(
            spec.num_samples, spec.input_shape, spec.num_classes, config.seed, noise=spec.noise
        )
    assert path is not None  # DataConfig guarantees a path for every other source
    location = Path(path)
    if not location.exists():
        raise DatasetError(f"{location}: data path does not exist")
    if source == "mnist":
        return load_mnist(location, config.split)
    if source == "npz":
        return load_npz(location)
    if source == "imagefolder":
        image_size: int | tuple[int, int] | None = config.image_size
        mode = None
        if like is not None:
            image_size = (like.input_shape[1], like.input_shape[2])
            mode = "L" if like.input_shape[0] == 1 else "RGB"
        return load_image_folder(location, image_size=image_size, mode=mode, scratch_dir=scratch_dir)
    return load_cifar(location, source, config.split, scratch_dir=scratch_dir)
