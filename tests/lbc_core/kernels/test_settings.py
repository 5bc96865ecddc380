"""Kernel settings come from the environment in one place and refuse what they cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from lbc_core.kernels.settings import KernelSettings, KernelSettingsError


def test_defaults_and_overrides() -> None:
    assert KernelSettings.from_env({}) == KernelSettings(isa="auto", cxx="c++", build_dir=None)
    settings = KernelSettings.from_env(
        {"LBC_NM_KERNEL_ISA": " AVX2 ", "CXX": "g++", "LBC_NM_CXX": "clang++", "LBC_NM_BUILD_DIR": "/tmp/nm"}
    )
    assert settings == KernelSettings(isa="avx2", cxx="clang++", build_dir=Path("/tmp/nm"))
    assert KernelSettings.from_env({"CXX": "g++-12"}).cxx == "g++-12"


def test_an_unknown_path_is_refused_naming_the_choices() -> None:
    with pytest.raises(
        KernelSettingsError,
        match=r"LBC_NM_KERNEL_ISA='sse2' is not a kernel path; expected one of auto, scalar, avx2, avx512, avx512bf16",
    ):
        KernelSettings.from_env({"LBC_NM_KERNEL_ISA": "sse2"})
