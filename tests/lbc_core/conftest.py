"""Fixtures shared by the engine's tests: the fused LBC operator, the real corpus and a tokenizer trained
on it here with the tokenizers library (nothing downloaded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lbc_core.sparsity import native

SHAKESPEARE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"


@pytest.fixture(scope="session")
def fused_lbc_step() -> None:
    """The fused LBC operator, built here if the install did not build it (seconds when cached).

    Without a C++ compiler there is nothing to build and the tests that compare it with the plain path
    cannot run; with one, a failed build or load is a failure.
    """
    if not native.load():
        if shutil.which("c++") is None and shutil.which("g++") is None:
            pytest.skip("no C++ compiler: the fused LBC step cannot be built here")
        native.build()
    assert native.load(), native.load_error()


@pytest.fixture(scope="session")
def shakespeare() -> Path:
    if not SHAKESPEARE.is_file():
        pytest.fail(f"the tiny Shakespeare corpus is missing at {SHAKESPEARE}")
    return SHAKESPEARE


@pytest.fixture(scope="session")
def bpe_tokenizer(tmp_path_factory: pytest.TempPathFactory, shakespeare: Path) -> Path:
    """A byte-level BPE tokenizer.json (vocabulary 512, a [PAD] token) trained on the first 200 kB."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=["[PAD]"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    text = shakespeare.read_text(encoding="utf-8")[:200_000]
    tokenizer.train_from_iterator(text.splitlines(keepends=True), trainer)
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    tokenizer.save(str(path))
    return path
