"""Finalized N:M models, a deterministic timer and a stand-in sparse kernel for the benchmark tests.

The stand-in kernel lets the GPU branch of the report (sparse timings, padding, recommendations,
end-to-end conversion) run on CPU; it is never used to claim a speedup, only to test the logic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
import torch
from torch import nn

from lbc_core.benchmark import SparseKernel, Timing, TimingRequest
from lbc_core.export import SemiStructuredResult, SkippedConversion, semi_structured_ineligibility
from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern, SparsityConfig, build_sparsifier

TINY_VIT = {"image_size": 8, "patch_size": 4, "depth": 1, "embed_dim": 64, "num_heads": 2}
TINY_VIT_INPUT = (3, 8, 8)
LENET_INPUT = (1, 28, 28)


def finalize(model: nn.Module, pattern: NMPattern | None = None) -> list[str]:
    """One-shot magnitude (ASP) N:M (2:4 by default) on ``model``; returns the sparsified layer names."""
    sparsifier = build_sparsifier(SparsityConfig(method="asp", pattern=pattern or NMPattern(2, 4)))
    sparsifier.prepare(model)
    report = sparsifier.finalize()
    model.eval()
    return [layer.name for layer in report.layers]


@pytest.fixture
def lenet() -> tuple[nn.Module, list[str]]:
    torch.manual_seed(0)
    model = build_model("lenet5", num_classes=10, in_channels=1)
    return model, finalize(model)


@pytest.fixture
def tiny_vit() -> tuple[nn.Module, list[str]]:
    torch.manual_seed(0)
    model = build_model("vit", **TINY_VIT)
    return model, finalize(model)


def timing(ms: float) -> Timing:
    return Timing(median_ms=ms, p10_ms=ms * 0.9, p90_ms=ms * 1.1, repeats=5, inner=1, timer="perf_counter")


def _fixed_timer(
    sparse_speedups: Mapping[str, float], dense_ms: float = 1.0
) -> tuple[Callable[[TimingRequest, Callable[[], object]], Timing], list[TimingRequest]]:
    """A timer answering dense = ``dense_ms`` and sparse = dense / speedup (by layer name; "" = model).

    It calls ``fn`` once, so the code under test still runs; the requests are recorded.
    """
    requests: list[TimingRequest] = []

    def timer(request: TimingRequest, fn: Callable[[], object]) -> Timing:
        fn()
        requests.append(request)
        if request.variant == "dense":
            return timing(dense_ms)
        return timing(dense_ms / sparse_speedups.get(request.name, 1.0))

    return timer, requests


@pytest.fixture
def fixed_timer() -> Callable[
    ..., tuple[Callable[[TimingRequest, Callable[[], object]], Timing], list[TimingRequest]]
]:
    return _fixed_timer


@pytest.fixture
def make_timing() -> Callable[[float], Timing]:
    return timing


@pytest.fixture
def nm_finalize() -> Callable[..., list[str]]:
    return finalize


def _fake_convert_model(model: nn.Module, dtype: torch.dtype) -> SemiStructuredResult:
    converted: list[str] = []
    skipped: list[SkippedConversion] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            reason = semi_structured_ineligibility(module, dtype)
            if reason is None:
                converted.append(name)
            else:
                skipped.append(SkippedConversion(name, reason))
    return SemiStructuredResult(
        "cpu", str(dtype), "stand-in", tuple(converted), tuple(converted), tuple(skipped), None
    )


@pytest.fixture
def stand_in_kernel() -> SparseKernel:
    return SparseKernel(
        backend="stand-in",
        description="stand-in kernel for tests (dense math)",
        dtypes=(torch.float16, torch.bfloat16),
        convert_weight=lambda weight: weight.clone(),
        convert_model=_fake_convert_model,
    )


@pytest.fixture
def no_native_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A CPU where the native N:M kernel cannot be built (no compiler): the report has no sparse kernel."""
    scratch = tmp_path_factory.mktemp("no-kernel")
    monkeypatch.setenv("LBC_NM_CXX", str(scratch / "no-such-compiler"))
    monkeypatch.setenv("LBC_NM_BUILD_DIR", str(scratch / "build"))
