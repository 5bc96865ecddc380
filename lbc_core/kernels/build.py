"""Compile the native N:M kernel (``native/``) into a shared library that ``torch.ops.load_library`` loads.

Each ISA file gets its own ``-m`` flags and nothing else does: a library compiled with AVX-512 as a whole
would let the compiler use AVX-512 in the scalar fallback and the dispatcher, which then die with SIGILL on
CPUs without it. The library is keyed by a hash of the sources, flags, compiler and torch build, so a
changed source or another torch version builds afresh and a stale binary is never loaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from lbc_core.kernels.settings import KernelSettings

logger = logging.getLogger(__name__)

NATIVE_DIR = Path(__file__).resolve().parent / "native"
LIBRARY_NAME = "liblbc_nm.so"
COMMON_FLAGS = ("-O3", "-std=c++20", "-fPIC", "-fvisibility=hidden", "-Wall")


@dataclass(frozen=True)
class Source:
    """``optional``: a compiler that cannot compile it (flags it does not know) builds the library without
    it; the dispatcher then lists that path as not built (its block function is a weak symbol)."""

    name: str
    flags: tuple[str, ...] = ()
    x86_only: bool = False
    optional: bool = False


SOURCES = (
    Source("nm_linear.cpp"),
    Source("nm_block_scalar.cpp"),
    Source("nm_block_avx2.cpp", ("-mavx2", "-mfma"), x86_only=True),
    Source("nm_block_avx512.cpp", ("-mavx512f", "-mavx2", "-mfma"), x86_only=True),
    # -mavx512bf16 needs GCC >= 10 or Clang >= 9: an older compiler still builds every other path.
    Source(
        "nm_block_avx512bf16.cpp",
        ("-mavx512f", "-mavx512bw", "-mavx512bf16", "-mavx2", "-mfma"),
        x86_only=True,
        optional=True,
    ),
)
HEADERS = ("nm_block.h",)


class KernelBuildError(RuntimeError):
    """The native kernel could not be built (no compiler, a compile error, an unsupported platform)."""


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def _sources() -> tuple[Source, ...]:
    return tuple(s for s in SOURCES if _is_x86() or not s.x86_only)


def _torch_flags() -> tuple[list[str], list[str]]:
    from torch.utils.cpp_extension import include_paths, library_paths

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    compile_flags = [f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-DTORCH_API_INCLUDE_EXTENSION_H"]
    compile_flags += [f"-I{p}" for p in include_paths()]
    if _is_x86():
        compile_flags.append("-DLBC_NM_HAVE_X86")
    link_flags: list[str] = []
    for lib in library_paths():
        link_flags += [f"-L{lib}", f"-Wl,-rpath,{lib}"]
    link_flags += ["-lc10", "-ltorch_cpu", "-ltorch"]
    if "OpenMP" in torch.__config__.parallel_info().split("ATen parallel backend:")[-1]:
        # ATen's parallel_for is inline OpenMP code in this torch build; at run time libgomp.so.1 resolves
        # to the copy torch already loaded, so both share one thread pool.
        compile_flags.append("-fopenmp")
        link_flags.append("-fopenmp")
    return compile_flags, link_flags


def _build_key(cxx: str, compile_flags: list[str], link_flags: list[str]) -> str:
    digest = hashlib.sha256()
    for part in (cxx, torch.__version__, sysconfig.get_platform(), *compile_flags, *link_flags):
        digest.update(part.encode() + b"\0")
    for source in _sources():
        digest.update(source.name.encode() + b"\0" + " ".join(source.flags).encode() + b"\0")
        digest.update((NATIVE_DIR / source.name).read_bytes())
    for header in HEADERS:
        digest.update((NATIVE_DIR / header).read_bytes())
    return digest.hexdigest()[:16]


def default_build_dir() -> Path:
    """``native/build`` inside the source tree when writable (an editable install), else a user cache."""
    in_tree = NATIVE_DIR / "build"
    try:
        in_tree.mkdir(exist_ok=True)
        if os.access(in_tree, os.W_OK):
            return in_tree
    except OSError:
        pass
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "lbc-sparsity" / "nm-kernel"


def library_path(settings: KernelSettings) -> Path:
    """Where the library for these settings, sources and torch build lives (built or not)."""
    compile_flags, link_flags = _torch_flags()
    root = settings.build_dir or default_build_dir()
    # Keyed by the compiler as configured, not its resolved path, so a library built earlier still loads
    # where no compiler is installed (a slim runtime image).
    return root / _build_key(settings.cxx, compile_flags, link_flags) / LIBRARY_NAME


def _resolve_compiler(cxx: str) -> str:
    found = shutil.which(cxx)
    if found is None:
        raise KernelBuildError(f"no C++ compiler: {cxx!r} was not found (set LBC_NM_CXX or CXX)")
    return found


def _run(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def build(settings: KernelSettings | None = None, *, force: bool = False) -> Path:
    """Build the library unless an identical build exists; return its path. Raises KernelBuildError.

    An optional source that fails to compile is left out with a warning in the log (the build key stays
    the same, so the compiler is not asked again for these sources and settings)."""
    settings = settings or KernelSettings.from_env()
    target = library_path(settings)
    if target.exists() and not force:
        return target
    cxx = _resolve_compiler(settings.cxx)
    compile_flags, link_flags = _torch_flags()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix="tmp-") as scratch:
        objects: list[Path] = []
        jobs: list[tuple[Source, subprocess.Popen[str]]] = []
        for source in _sources():
            obj = Path(scratch) / (source.name + ".o")
            objects.append(obj)
            command = [cxx, *COMMON_FLAGS, *source.flags, *compile_flags, "-c", str(NATIVE_DIR / source.name)]
            jobs.append((source, _run([*command, "-o", str(obj)])))
        failures = []
        linked: list[Path] = []
        for (source, job), obj in zip(jobs, objects, strict=True):
            output, _ = job.communicate()
            if job.returncode == 0:
                linked.append(obj)
            elif source.optional:
                lines = output.strip().splitlines() or [f"exit status {job.returncode}"]
                reason = next((line for line in lines if "error" in line), lines[-1])
                logger.warning(
                    "N:M kernel built without %s (its path is unavailable): %s", source.name, reason
                )
            else:
                failures.append(f"{source.name}:\n{output[-4000:]}")
        if failures:
            raise KernelBuildError("compiling the N:M kernel failed:\n" + "\n".join(failures))
        partial = Path(scratch) / LIBRARY_NAME
        link = _run([cxx, "-shared", *map(str, linked), *link_flags, "-o", str(partial)])
        output, _ = link.communicate()
        if link.returncode != 0:
            raise KernelBuildError(f"linking the N:M kernel failed:\n{output[-4000:]}")
        # Atomic: a concurrent loader sees the old state or the whole library, never half of it.
        os.replace(partial, target)
    return target
