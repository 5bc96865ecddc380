"""The real GPU path: semi-structured 2:4 kernels on a small ViT (skipped without CUDA)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lbc_core.benchmark import REPORT_SCHEMA_VERSION, build_speedup_report
from lbc_core.export import semi_structured_support
from lbc_core.models import build_model
from tests.lbc_core.benchmark.conftest import finalize

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.filterwarnings("ignore:The PyTorch API of SparseSemiStructuredTensor:UserWarning"),
]

VIT = {"image_size": 16, "patch_size": 4, "depth": 2, "embed_dim": 128, "num_heads": 2}
INPUT = (3, 16, 16)


def test_real_2_4_kernels_on_a_small_vit() -> None:
    torch.manual_seed(0)
    model = build_model("vit", **VIT)
    layers = finalize(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    x = torch.randn(64, *INPUT)
    with torch.no_grad():
        # Labels the fp32 model gets right, so both timed fp16 models should score near 1.
        data = SimpleNamespace(x=x, y=model(x).argmax(1))

    report = build_speedup_report(
        model,
        input_shape=INPUT,
        batch_sizes=(1, 64),
        dtypes=("float16",),
        device="cuda",
        layers=layers,
        eval_data=data,
        warmup=3,
        repeats=5,
        min_repeat_ms=0.2,
    )
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), "the caller's model must not change"
    assert report.to_dict()["schema"] == REPORT_SCHEMA_VERSION
    env = report.environment
    assert env.device.startswith("cuda:") and env.compute_capability is not None
    assert env.torch_version == torch.__version__

    supported, _ = semi_structured_support("cuda")
    if not supported:  # a pre-Ampere GPU: honest dense-only report
        assert not env.sparse_kernels and env.backend == "none"
        assert report.notes[0].startswith("No sparse kernel exists for this device")
        assert all(m.sparse is None for layer in report.layers for m in layer.measurements)
        return

    assert env.sparse_kernels and env.backend in ("cuSPARSELt", "CUTLASS")
    assert [layer.name for layer in report.layers] == layers
    tokens = (16 // 4) ** 2 + 1
    for layer in report.layers:
        assert layer.compliance.compliant
        for m in layer.measurements:
            assert m.dense is not None and m.dense.timer == "cuda-event"
            assert m.sparse is not None, m.reason
            assert m.speedup is not None and m.speedup > 0
            assert m.recommendation in ("sparse", "dense")
            assert m.gemm.m == m.batch_size * tokens
            assert m.padded_m == (None if m.gemm.m % 8 == 0 else m.gemm.m + (-m.gemm.m) % 8)
    (conversion,) = report.end_to_end.conversions
    assert set(layers) <= set(conversion.converted)
    for e in report.end_to_end.measurements:
        assert e.sparse is not None and e.speedup is not None and e.sparse_throughput is not None
    assert report.summary.median_layer_speedup is not None
    assert report.summary.end_to_end_speedup is not None
    accuracy = {a.variant: a.accuracy for a in report.end_to_end.accuracy}
    assert set(accuracy) == {"dense", "sparse"}
    assert abs(accuracy["dense"] - accuracy["sparse"]) <= 0.1
    assert not any(note.startswith("No sparse kernel") for note in report.notes)


def test_cuda_graph_launch_times_replayed_graphs() -> None:
    torch.manual_seed(0)
    model = build_model("vit", **VIT)
    layers = finalize(model)
    report = build_speedup_report(
        model,
        input_shape=INPUT,
        batch_sizes=(8,),
        dtypes=("float16",),
        device="cuda",
        layers=layers,
        warmup=2,
        repeats=5,
        min_repeat_ms=0.2,
        launch="cuda-graph",
    )
    assert report.method.launch == "cuda-graph" and "CUDA graph" in report.method.timer
    timings = [t for layer in report.layers for m in layer.measurements for t in (m.dense, m.sparse) if t]
    timings += [t for m in report.end_to_end.measurements for t in (m.dense, m.sparse) if t]
    assert timings and {t.timer for t in timings} == {"cuda-graph"}
    if report.environment.sparse_kernels:
        assert all(m.sparse is not None for layer in report.layers for m in layer.measurements)
        assert all(m.sparse is not None for m in report.end_to_end.measurements)
