"""Fixtures shared by the engine's tests."""

from __future__ import annotations

import shutil

import pytest

from lbc_core.sparsity import native


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
