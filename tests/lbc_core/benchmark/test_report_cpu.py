"""The whole report on CPU: dense timings only, the plain no-kernel wording, and the savings that hold."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lbc_core.benchmark import REPORT_SCHEMA, REPORT_SCHEMA_VERSION, SpeedupReportError, build_speedup_report
from lbc_core.benchmark.report import device_description, no_kernel_note, sparsified_layer_names
from lbc_core.export import compressed_size_report, export_all
from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern, SparsityConfig, build_sparsifier
from tests.lbc_core.benchmark.conftest import LENET_INPUT

# A CPU without the native N:M kernel (test_report_cpu_nm.py covers the CPU that has it).
pytestmark = pytest.mark.usefixtures("no_native_kernel")

NO_KERNEL_NOTE = (
    "No sparse kernel exists for this device (cpu): the timings below are dense; N:M saves model size and FLOPs "
    "here but not time. Speedups need an NVIDIA GPU with sparse tensor cores (Ampere / compute capability 8.0 "
    "or newer) running 2:4 fp16/bf16."
)
FAST: dict[str, Any] = {"warmup": 1, "repeats": 3, "min_repeat_ms": 0.0}


def _validate(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """The subset of JSON Schema REPORT_SCHEMA uses: type, const, enum, anyOf, properties, items."""
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                _validate(value, option, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: matches no option ({errors})")
    if "const" in schema:
        assert value == schema["const"], where
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        checks = {
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list),
            "string": lambda v: isinstance(v, str),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "boolean": lambda v: isinstance(v, bool),
            "null": lambda v: v is None,
        }
        assert any(checks[t](value) for t in types), f"{where}: {value!r} is not {types}"
    if isinstance(value, dict) and "properties" in schema:
        assert sorted(value) == sorted(schema["properties"]), f"{where}: keys {sorted(value)}"
        for key, sub in schema["properties"].items():
            _validate(value[key], sub, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _validate(item, schema["items"], f"{where}[{index}]")


@pytest.fixture
def cpu_report(lenet, monkeypatch):
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the CPU path must never call to_sparse_semi_structured")

    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", forbidden)
    model, layers = lenet
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    report = build_speedup_report(
        model,
        input_shape=LENET_INPUT,
        batch_sizes=(1, 4),
        pattern="2:4",
        accuracy=0.93,
        model_name="lenet5",
        **FAST,
    )
    assert torch.equal(torch.get_rng_state(), rng), "benchmarking advanced the caller's RNG"
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    return model, layers, report


def test_cpu_report_has_dense_timings_and_no_sparse_numbers(cpu_report) -> None:
    _, layers, report = cpu_report
    assert [layer.name for layer in report.layers] == layers
    for layer in report.layers:
        assert layer.recommendation == "n/a"
        for m in layer.measurements:
            assert m.dense is not None and m.dense.median_ms > 0
            assert (m.sparse, m.speedup, m.padded_m) == (None, None, None)
            assert m.recommendation == "n/a"
            assert m.reason.startswith(
                "no sparse kernel on this device (cpu): the native N:M CPU kernel is not available"
            )
    for m in report.end_to_end.measurements:
        assert m.dense is not None and m.dense_throughput is not None
        assert (m.sparse, m.sparse_throughput, m.speedup) == (None, None, None)
    assert report.end_to_end.conversions == ()
    assert report.summary.median_layer_speedup is None
    assert report.summary.end_to_end_speedup is None
    assert report.summary.layers_recommended_dense == ()
    assert report.summary.layers_not_applicable == tuple(layers)


def test_cpu_report_says_plainly_that_no_sparse_kernel_exists(cpu_report) -> None:
    _, _, report = cpu_report
    assert report.notes[0] == NO_KERNEL_NOTE
    assert report.environment.backend == "none" and not report.environment.sparse_kernels
    verdict = report.summary.verdict
    assert verdict.startswith("No sparse kernel exists for this device (cpu)")
    assert "all timings are dense" in verdict
    assert "Ampere / compute capability 8.0 or newer" in verdict
    assert "faster" not in verdict.replace("does not make this model faster", "")


def test_cpu_report_savings_are_exact(cpu_report) -> None:
    model, layers, report = cpu_report
    savings = report.savings
    weights = [model.get_submodule(name).weight for name in layers]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert savings.params_dense == sum(p.numel() for p in model.parameters())
    assert savings.params_nonzero == savings.params_dense - zeros
    assert savings.sparsified_params == sum(w.numel() for w in weights)
    assert savings.sparsified_nonzeros == sum(int((w != 0).sum()) for w in weights)
    sizes = compressed_size_report(model, layers, "2:4")
    assert (savings.checkpoint_dense_bytes, savings.checkpoint_compressed_bytes) == (
        sizes.dense_bytes,
        sizes.compressed_bytes,
    )
    assert savings.checkpoint_ratio == pytest.approx(sizes.ratio) and savings.checkpoint_ratio < 1
    # LeNet at 28x28: conv1 (stem, dense) 2*784*8*25, conv2 (2:4) 2*196*16*200, fc 256->120 (2:4), 120->84 (2:4), 84->10.
    dense = [2 * 784 * 8 * 25, 2 * 196 * 16 * 200, 2 * 256 * 120, 2 * 120 * 84, 2 * 84 * 10]
    assert savings.flops_dense_per_sample == sum(dense)
    assert savings.flops_nm_per_sample == pytest.approx(dense[0] + sum(dense[1:4]) / 2 + dense[4])
    layer = report.layers[0]
    assert (layer.flops_dense, layer.flops_nm, layer.density) == (dense[1], dense[1] / 2, 0.5)
    assert all(layer.compliance.compliant for layer in report.layers)


def test_report_json_round_trips_and_matches_its_schema(cpu_report) -> None:
    _, _, report = cpu_report
    data = report.to_dict()
    assert data["schema"] == REPORT_SCHEMA_VERSION == "lbc.speedup-report/3"
    assert json.loads(report.to_json()) == data
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    _validate(data, REPORT_SCHEMA)
    layer = data["layers"][0]
    assert layer["measurements"][0]["sparse"] is None
    assert layer["measurements"][0]["gemm"] == {"m": 196, "n": 16, "k": 200, "groups": 1}
    assert data["end_to_end"]["accuracy_given"] == 0.93
    assert data["environment"]["torch_version"] == torch.__version__
    assert data["method"]["repeats"] == 3 and data["method"]["dtypes"] == ["float32"]


def test_non_compliant_4_8_model_is_reported_with_what_it_would_take(nm_finalize) -> None:
    torch.manual_seed(0)
    model = build_model("lenet5", num_classes=10, in_channels=1)
    layers = nm_finalize(model, NMPattern(4, 8))
    report = build_speedup_report(
        model, input_shape=LENET_INPUT, batch_sizes=(1,), pattern="4:8", layers=layers, **FAST
    )
    assert not all(layer.compliance.compliant for layer in report.layers)
    bad = next(layer for layer in report.layers if not layer.compliance.compliant)
    assert (
        "4:8 keeps up to 4 in an aligned block of 4; needs 2:4, 1:4, 2:8, 1:8" in bad.compliance.explanation
    )
    assert any(note.startswith("Pattern 4:8 is not 2:4-compliant") for note in report.notes)
    assert "would also need a 2:4-compliant pattern" in report.summary.verdict
    assert report.savings.checkpoint_ratio is not None  # the compressed 4:8 form still exists


def test_layers_are_inferred_from_the_weights(lenet) -> None:
    model, layers = lenet
    assert sparsified_layer_names(model, NMPattern(2, 4)) == layers


def test_accuracy_of_the_timed_model_is_measured_when_data_is_given(lenet) -> None:
    model, layers = lenet

    data = SimpleNamespace(x=torch.randn(20, *LENET_INPUT), y=torch.randint(0, 10, (20,)))
    report = build_speedup_report(
        model, input_shape=LENET_INPUT, batch_sizes=(2,), layers=layers, eval_data=data, **FAST
    )
    (result,) = report.end_to_end.accuracy
    assert (result.variant, result.dtype, result.samples) == ("dense", "float32", 20)
    with torch.no_grad():
        expected = float((model(data.x).argmax(1) == data.y).float().mean())
    assert result.accuracy == pytest.approx(expected)


def test_export_dir_adds_file_sizes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("lenet5", num_classes=10, in_channels=1)
    sparsifier = build_sparsifier(SparsityConfig(method="asp"))
    sparsifier.prepare(model)
    result = export_all(
        model,
        sparsifier.finalize(),
        tmp_path,
        architecture="lenet5",
        architecture_args={},
        metrics={},
        pattern="2:4",
    )
    report = build_speedup_report(
        model, input_shape=LENET_INPUT, batch_sizes=(1,), export_dir=tmp_path, **FAST
    )
    sizes = {f.name: f.bytes for f in report.savings.files}
    assert sizes == {f.name: f.size for f in result.files}


def test_bad_arguments_are_refused_with_the_reason(lenet) -> None:
    model, _ = lenet
    with pytest.raises(SpeedupReportError, match="batch_sizes"):
        build_speedup_report(model, input_shape=LENET_INPUT, batch_sizes=())
    with pytest.raises(SpeedupReportError, match="unknown dtype"):
        build_speedup_report(model, input_shape=LENET_INPUT, dtypes=("float8",))
    with pytest.raises(SpeedupReportError, match="'nope'"):
        build_speedup_report(model, input_shape=LENET_INPUT, layers=["nope"])
    with pytest.raises(SpeedupReportError, match="failed"):
        build_speedup_report(model, input_shape=(3, 5), **FAST)
    with pytest.raises(SpeedupReportError, match="repeats"):
        build_speedup_report(model, input_shape=LENET_INPUT, repeats=0)
    with pytest.raises(SpeedupReportError, match="launch must be one of eager, cuda-graph"):
        build_speedup_report(model, input_shape=LENET_INPUT, launch="graph")
    with pytest.raises(SpeedupReportError, match="needs a CUDA device, not cpu"):
        build_speedup_report(model, input_shape=LENET_INPUT, launch="cuda-graph")
    if not torch.cuda.is_available():
        with pytest.raises(SpeedupReportError, match="CUDA is not available"):
            build_speedup_report(model, input_shape=LENET_INPUT, device="cuda")
    unfinished = build_model("lenet5", num_classes=10, in_channels=1)
    build_sparsifier(SparsityConfig(method="asp")).prepare(unfinished)
    with pytest.raises(SpeedupReportError, match="finalize"):
        build_speedup_report(unfinished, input_shape=LENET_INPUT)


def test_an_older_gpu_is_named_with_its_compute_capability(cpu_report) -> None:
    _, _, report = cpu_report
    turing = dataclasses.replace(
        report.environment, device="cuda:0", device_name="Tesla T4", compute_capability="7.5"
    )
    assert device_description(turing) == "Tesla T4, compute capability 7.5"
    assert no_kernel_note(device_description(turing)).startswith(
        "No sparse kernel exists for this device (Tesla T4, compute capability 7.5): the timings below are dense"
    )
