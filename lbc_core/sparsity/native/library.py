"""Where the compiled LBC step library lives, how it is built, and loading it into ``torch.ops``.

The library's file name carries a hash of its source, the torch version and the Python ABI, so a build
made for other sources or another torch is never loaded (it would crash or compute something else); such
a build is simply absent and the plain path runs until ``python -m lbc_core.sparsity.native.build``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("lbc_step.cpp")
BUILD_DIR = Path(__file__).with_name("_build")
OPS_NAMESPACE = "lbc_sparsity"


class NativeBuildError(RuntimeError):
    """The fused LBC step could not be compiled (no compiler, or a compiler error)."""


def _tag() -> str:
    digest = hashlib.sha256()
    digest.update(SOURCE.read_bytes())
    digest.update(torch.__version__.encode())
    digest.update((sysconfig.get_config_var("SOABI") or sys.version).encode())
    return digest.hexdigest()[:16]


def library_path() -> Path:
    """The shared library built from the current source for the installed torch."""
    return BUILD_DIR / f"lbc_step-{_tag()}.so"


def _compile_command(output: Path) -> list[str]:
    from torch.utils import cpp_extension  # heavy; only needed when building

    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        raise NativeBuildError("no C++ compiler found (install g++ or set CXX)")
    torch_lib = Path(torch.__file__).parent / "lib"
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    includes = [f"-I{path}" for path in cpp_extension.include_paths()]
    # -fopenmp: at::parallel_for is inlined from ATen's OpenMP header; the OpenMP runtime is torch's own
    # (found through the rpath) so one process never holds two.
    return [
        compiler,
        "-O3",
        # Only the explicit std::fma calls fuse, mirroring ATen op for op (see lbc_step.cpp).
        "-ffp-contract=off",
        "-std=c++17",
        "-shared",
        "-fPIC",
        "-fopenmp",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        *includes,
        str(SOURCE),
        "-o",
        str(output),
        f"-L{torch_lib}",
        f"-Wl,-rpath,{torch_lib}",
        "-lc10",
        "-ltorch_cpu",
    ]


def build(*, force: bool = False) -> Path:
    """Compile the operator library for this torch (a few tens of seconds); returns its path."""
    target = library_path()
    if target.exists() and not force:
        return target
    BUILD_DIR.mkdir(exist_ok=True)
    # Compile beside the target and rename: a concurrent loader never sees a half-written library.
    with tempfile.TemporaryDirectory(dir=BUILD_DIR) as scratch:
        partial = Path(scratch) / target.name
        result = subprocess.run(_compile_command(partial), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise NativeBuildError(f"compiling {SOURCE.name} failed:\n{result.stderr[-4000:]}")
        partial.replace(target)
    for stale in BUILD_DIR.glob("lbc_step-*.so"):
        if stale != target:
            stale.unlink(missing_ok=True)
    _load.cache_clear()  # a process that found no library before may load this one
    return target


@functools.cache
def _load() -> str | None:
    """Load the library once per process; the reason it is unavailable, or None when loaded."""
    if sys.platform != "linux":
        return f"the fused LBC step is built for Linux only (this is {sys.platform})"
    path = library_path()
    if not path.exists():
        return (
            f"not built for this torch and source ({path.name}); run python -m lbc_core.sparsity.native.build"
        )
    try:
        torch.ops.load_library(str(path))
    except OSError as error:
        return f"{path.name} failed to load: {error}"
    return None


def load() -> bool:
    """Whether ``torch.ops.lbc_sparsity`` is available in this process (loads it on first call)."""
    return _load() is None


def load_error() -> str | None:
    """Why :func:`load` is False (None when the operator is loaded)."""
    return _load()
