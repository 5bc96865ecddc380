"""The conditions a timing was taken under: device, driver, CUDA, torch, sparse backend, CPU, threads."""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from lbc_core.benchmark.kernels import NO_BACKEND, SparseKernel


@dataclass(frozen=True)
class Environment:
    device: str  # e.g. "cuda:0", "cpu"
    device_name: str
    compute_capability: str | None  # "8.0"; None off CUDA
    driver_version: str | None  # NVIDIA driver, when nvidia-smi can tell
    cuda_version: str | None  # the CUDA runtime PyTorch was built with
    cusparselt_version: int | None
    torch_version: str
    python_version: str
    platform: str
    backend: str  # "cuSPARSELt" | "CUTLASS" | "none"
    sparse_kernels: bool
    sparse_kernel_reason: str
    cpu_model: str
    cpu_threads: int  # torch intra-op threads


def cpu_model() -> str:
    """The CPU's marketing name (``platform.processor()`` is empty on most Linux systems)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def nvidia_driver_version() -> str | None:
    """The driver version from ``nvidia-smi``; PyTorch does not expose it. None when unavailable."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        result = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None


def _cusparselt_version() -> int | None:
    try:
        return torch.backends.cusparselt.version() if torch.backends.cusparselt.is_available() else None
    except (AttributeError, RuntimeError):
        return None


def capture_environment(device: torch.device, kernel: SparseKernel | None, kernel_reason: str) -> Environment:
    on_cuda = device.type == "cuda" and torch.cuda.is_available()
    if on_cuda:
        major, minor = torch.cuda.get_device_capability(device)
        name, capability = torch.cuda.get_device_name(device), f"{major}.{minor}"
    else:
        name, capability = cpu_model() if device.type == "cpu" else device.type, None
    return Environment(
        device=str(device),
        device_name=name,
        compute_capability=capability,
        driver_version=nvidia_driver_version() if on_cuda else None,
        cuda_version=torch.version.cuda,
        cusparselt_version=_cusparselt_version() if on_cuda else None,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        platform=platform.platform(),
        backend=kernel.backend if kernel is not None else NO_BACKEND,
        sparse_kernels=kernel is not None,
        sparse_kernel_reason=kernel_reason,
        cpu_model=cpu_model(),
        cpu_threads=torch.get_num_threads(),
    )
