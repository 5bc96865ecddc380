"""How the CPU N:M kernel is built and which ISA path it runs, read from the environment in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ISA_CHOICES = ("auto", "scalar", "avx2", "avx512", "avx512bf16")
ISA_ENV = "LBC_NM_KERNEL_ISA"
CXX_ENV = "LBC_NM_CXX"
BUILD_DIR_ENV = "LBC_NM_BUILD_DIR"


class KernelSettingsError(ValueError):
    """A kernel setting in the environment that cannot be used."""


@dataclass(frozen=True)
class KernelSettings:
    """``isa``: the path the kernel runs (``auto`` picks the best this CPU has; forcing a path it lacks is
    an error at the first call). ``cxx``: the C++ compiler. ``build_dir``: where the library is built
    (None: ``lbc_core/kernels/native/build`` when writable, else the user's cache directory)."""

    isa: str = "auto"
    cxx: str = "c++"
    build_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.isa not in ISA_CHOICES:
            raise KernelSettingsError(
                f"{ISA_ENV}={self.isa!r} is not a kernel path; expected one of {', '.join(ISA_CHOICES)}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KernelSettings:
        env = os.environ if environ is None else environ
        build_dir = env.get(BUILD_DIR_ENV)
        return cls(
            isa=env.get(ISA_ENV, "auto").strip().lower() or "auto",
            # CXX is the usual name; LBC_NM_CXX wins so the kernel's compiler can differ from the rest.
            cxx=env.get(CXX_ENV) or env.get("CXX") or "c++",
            build_dir=Path(build_dir) if build_dir else None,
        )
