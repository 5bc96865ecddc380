"""Recommendation logic with injected timings: thresholds, per-layer combination, and the GPU branch's
decisions (run on CPU with a stand-in kernel, so no speedup is ever claimed from these numbers)."""

from __future__ import annotations

import pytest
import torch

from lbc_core.benchmark import build_speedup_report, combine_recommendations, recommend
from lbc_core.benchmark.gemm import GemmShape
from lbc_core.benchmark.report import Measurement
from tests.lbc_core.benchmark.conftest import TINY_VIT_INPUT


def test_threshold_is_inclusive_and_configurable(make_timing) -> None:
    dense = make_timing(1.05)
    assert recommend(dense, make_timing(1.0))[1] == "sparse"  # exactly 1.05x
    speedup, choice, reason = recommend(dense, make_timing(1.02))
    assert choice == "dense" and speedup == pytest.approx(1.05 / 1.02)
    assert reason.startswith("sparse kernel slower (or no faster) at this shape/batch")
    assert recommend(dense, make_timing(1.02), min_speedup=1.0)[1] == "sparse"
    assert recommend(dense, make_timing(0.9), min_speedup=1.2)[1] == "dense"


def test_slower_sparse_is_dense_and_missing_sparse_is_not_applicable(make_timing) -> None:
    speedup, choice, _ = recommend(make_timing(1.0), make_timing(4.0))
    assert (speedup, choice) == (0.25, "dense")
    assert recommend(make_timing(1.0), None, unavailable_reason="no kernel here") == (
        None,
        "n/a",
        "no kernel here",
    )
    assert recommend(None, make_timing(1.0))[1] == "n/a"


def _measurement(batch: int, speedup: float | None, choice: str) -> Measurement:
    return Measurement(batch, "float16", GemmShape(batch, 64, 64), None, None, None, speedup, choice, "why")


def test_layer_is_sparse_only_when_every_measurement_wins() -> None:
    assert (
        combine_recommendations([_measurement(1, 1.3, "sparse"), _measurement(64, 1.5, "sparse")])[0]
        == "sparse"
    )
    choice, reason = combine_recommendations([_measurement(1, 0.6, "dense"), _measurement(64, 1.4, "sparse")])
    assert choice == "dense"
    assert "batch 1 float16 (0.60x)" in reason and "faster at batch 64 float16 (1.40x)" in reason
    assert combine_recommendations([_measurement(1, None, "n/a")]) == ("n/a", "why")
    # n/a measurements (e.g. an unsupported dtype) do not veto measured ones.
    assert (
        combine_recommendations([_measurement(1, None, "n/a"), _measurement(8, 1.2, "sparse")])[0] == "sparse"
    )


def test_gpu_branch_recommends_per_layer_from_injected_timings(
    tiny_vit, stand_in_kernel, fixed_timer
) -> None:
    model, layers = tiny_vit
    speedups = {
        "blocks.0.attn.qkv": 1.30,
        "blocks.0.attn.proj": 0.40,  # small GEMM: sparse loses
        "blocks.0.mlp.fc1": 1.06,
        "blocks.0.mlp.fc2": 1.04,  # just below the threshold
        "": 1.10,  # whole model
    }
    timer, requests = fixed_timer(speedups)
    report = build_speedup_report(
        model,
        input_shape=TINY_VIT_INPUT,
        batch_sizes=(1, 4),
        dtypes=("float16",),
        pattern="2:4",
        layers=layers,
        timer=timer,
        kernel=stand_in_kernel,
    )
    by_name = {layer.name: layer for layer in report.layers}
    assert [by_name[n].recommendation for n in speedups if n] == ["sparse", "dense", "sparse", "dense"]
    assert report.summary.layers_recommended_dense == ("blocks.0.attn.proj", "blocks.0.mlp.fc2")
    assert report.summary.layers_recommended_sparse == ("blocks.0.attn.qkv", "blocks.0.mlp.fc1")
    assert report.summary.median_layer_speedup == pytest.approx((1.06 + 1.04) / 2)
    assert report.summary.end_to_end_speedup == pytest.approx(1.10)
    assert "2 of 4 sparsified layers are better kept dense" in report.summary.verdict

    qkv = by_name["blocks.0.attn.qkv"].measurements
    tokens = (8 // 4) ** 2 + 1
    assert [m.gemm for m in qkv] == [GemmShape(tokens, 192, 64), GemmShape(4 * tokens, 192, 64)]
    # 5 and 20 rows are padded to the dense operand's multiple of 8 for the sparse call.
    assert [m.padded_m for m in qkv] == [8, 24]
    assert all(m.sparse is not None and m.dense is not None for m in qkv)

    end_to_end = report.end_to_end
    assert [m.speedup for m in end_to_end.measurements] == [pytest.approx(1.10)] * 2
    assert [m.dense_throughput for m in end_to_end.measurements] == [
        pytest.approx(1000.0),
        pytest.approx(4000.0),
    ]
    # The classifier (10 outputs) cannot convert; every block Linear does.
    conversion = end_to_end.conversions[0]
    assert set(conversion.converted) == set(layers)
    assert [s.name for s in conversion.skipped] == ["head"]
    assert report.environment.backend == "stand-in" and report.environment.sparse_kernels
    assert not any("No sparse kernel" in note for note in report.notes)
    # Every timing the report made went through the injected timer: 4 layers x 2 batches x 2 variants + model.
    assert sum(r.scope == "layer" for r in requests) == 16
    assert sum(r.scope == "model" for r in requests) == 4
    # Timed eagerly (the default): the report says so, and says what graph capture would change.
    assert {r.launch for r in requests} == {"eager"} and report.method.launch == "eager"
    assert any("measure that case with launch 'cuda-graph'" in note for note in report.notes)


def test_gpu_branch_marks_convs_fp32_and_ineligible_layers_not_applicable(
    lenet, stand_in_kernel, fixed_timer
) -> None:
    model, layers = lenet
    timer, _ = fixed_timer({})
    report = build_speedup_report(
        model,
        input_shape=(1, 28, 28),
        batch_sizes=(2,),
        dtypes=(torch.float16, torch.float32),
        layers=layers,
        timer=timer,
        kernel=stand_in_kernel,
    )
    conv = next(layer for layer in report.layers if layer.kind == "Conv2d")
    assert {m.reason for m in conv.measurements} == {
        "no semi-structured conv kernel in PyTorch; timed as dense"
    }
    assert conv.recommendation == "n/a"
    assert all(m.dense is not None and m.sparse is None for m in conv.measurements)
    linear = report.layers[1]  # classifier.1: (120, 256), 120 rows are not a multiple of 32
    fp16, fp32 = linear.measurements
    assert fp16.recommendation == "n/a" and "out features must be a multiple of 32" in fp16.reason
    assert fp32.reason == "the 2:4 kernel serves float16, bfloat16; float32 was timed dense only"
    assert report.summary.median_layer_speedup is None
    assert any("no semi-structured (2:4) convolution kernel" in note for note in report.notes)
    assert report.end_to_end.measurements[0].reason == "no Linear layer is eligible for the 2:4 kernel"


def test_a_sparse_kernel_with_wrong_results_is_not_timed(tiny_vit, stand_in_kernel, fixed_timer) -> None:
    model, layers = tiny_vit
    broken = type(stand_in_kernel)(**{**stand_in_kernel.__dict__, "convert_weight": lambda w: w * 2})
    timer, requests = fixed_timer({})
    report = build_speedup_report(
        model,
        input_shape=TINY_VIT_INPUT,
        batch_sizes=(1,),
        dtypes=("float16",),
        layers=layers[:1],
        timer=timer,
        kernel=broken,
    )
    measurement = report.layers[0].measurements[0]
    assert measurement.sparse is None and measurement.recommendation == "n/a"
    assert measurement.reason.startswith("sparse kernel output differs from dense")
    assert not any(r.variant == "sparse" and r.scope == "layer" for r in requests)


def test_per_layer_timings_run_the_layer_with_its_bias(stand_in_kernel, make_timing) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.view(64, 16, 4)[:, :, 2:] = 0  # 2:4
            layer.bias.fill_(1000.0)  # dominates the output: its presence is plain in the mean
    outputs: dict[tuple[str, str], float] = {}

    def timer(request, fn):
        if request.scope == "layer":
            outputs[(request.name, request.variant)] = float(fn().float().mean())
        return make_timing(1.0)

    build_speedup_report(
        model,
        input_shape=(64,),
        batch_sizes=(8,),
        dtypes=("float16",),
        layers=["0", "2"],
        timer=timer,
        kernel=stand_in_kernel,
    )
    assert set(outputs) == {("0", "dense"), ("0", "sparse"), ("2", "dense"), ("2", "sparse")}
    assert all(value == pytest.approx(1000.0, abs=20.0) for value in outputs.values()), outputs
