"""The model swap: whole catalog models on the N:M kernel give the dense model's outputs."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from lbc_core.export import ExportError, export_all, save_compressed
from lbc_core.kernels.registry import CpuNMKernel, DenseKernel, kernels_for, sparse_kernel_for
from lbc_core.kernels.swap import NMLinear, nm_model_from_export, swap_to_nm_kernel
from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern, SparsityConfig, SparsityReport, build_sparsifier
from lbc_core.sparsity.pattern import IN_OUT

pytestmark = pytest.mark.usefixtures("native")


def _finalized(name: str, pattern: NMPattern, **args: object) -> tuple[nn.Module, SparsityReport]:
    torch.manual_seed(0)
    model = build_model(name, **args)
    sparsifier = build_sparsifier(SparsityConfig(method="asp", pattern=pattern))
    sparsifier.prepare(model)
    report = sparsifier.finalize()
    return model.eval(), report


@pytest.mark.parametrize(
    ("name", "args", "input_shape", "pattern"),
    [
        ("mlp", {"input_features": 96, "hidden_dim": 200, "depth": 3}, (96,), "2:4"),
        ("mlp", {"input_features": 96, "hidden_dim": 200, "depth": 3}, (96,), "1:8"),
        ("vit", {"depth": 2, "embed_dim": 96, "num_heads": 3, "image_size": 16}, (3, 16, 16), "2:4"),
        ("vit", {"depth": 2, "embed_dim": 96, "num_heads": 3, "image_size": 16}, (3, 16, 16), "4:8"),
    ],
)
def test_swapped_model_gives_the_dense_outputs(
    name: str, args: dict, input_shape: tuple, pattern: str
) -> None:
    nm = NMPattern.parse(pattern)
    model, report = _finalized(name, nm, **args)
    x = torch.randn(5, *input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        result = swap_to_nm_kernel(model, nm, measure=False)
        actual = model(x)
    sparsified_linears = {layer.name for layer in report.layers if layer.kind == "Linear"}
    assert sparsified_linears and set(result.swapped) == sparsified_linears
    for layer_name in result.swapped:
        assert isinstance(model.get_submodule(layer_name), NMLinear)
    # Stem and classifier stay dense (not N:M), and the result says why.
    for decision in result.kept_dense:
        assert f"not {nm} sparse" in decision.reason
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_bfloat16_model_swaps_and_stays_close() -> None:
    nm = NMPattern(2, 4)
    model, _ = _finalized("mlp", nm, input_features=64, hidden_dim=128, depth=2)
    model = model.to(torch.bfloat16)
    x = torch.randn(3, 64).to(torch.bfloat16)
    with torch.no_grad():
        expected = model(x)
        result = swap_to_nm_kernel(model, nm, measure=False)
        actual = model(x)
    assert result.swapped
    torch.testing.assert_close(actual.float(), expected.float(), rtol=2e-2, atol=2e-2)


def _scripted_timer(milliseconds: list[float]) -> Callable[[Callable[[], object]], float]:
    """Answers the swap's timings in call order (dense, then kernel, per batch size and layer)."""
    answers = itertools.cycle(milliseconds)

    def time_ms(fn: Callable[[], object]) -> float:
        fn()
        return next(answers)

    return time_ms


def test_a_layer_where_the_kernel_is_slower_stays_dense() -> None:
    nm = NMPattern(2, 4)
    model, _ = _finalized("mlp", nm, input_features=64, hidden_dim=128, depth=2)
    # Batch 1: kernel faster (2.0 vs 1.0 ms); batch 8: slower (3.0 vs 4.0 ms).
    slower_at_8 = swap_to_nm_kernel(
        model, nm, batch_sizes=(1, 8), time_ms=_scripted_timer([2.0, 1.0, 3.0, 4.0])
    )
    assert slower_at_8.swapped == ()
    decision = next(d for d in slower_at_8.kept_dense if d.dense_ms)
    assert decision.dense_ms == (2.0, 3.0) and decision.kernel_ms == (1.0, 4.0)
    assert "not faster than dense at batch size(s) 8" in decision.reason
    faster = swap_to_nm_kernel(model, nm, batch_sizes=(1,), time_ms=_scripted_timer([2.0, 1.0]))
    assert faster.swapped and all("2.00x" in d.reason for d in faster.decisions if d.swapped)


def test_real_measurement_decides_from_the_timings() -> None:
    nm = NMPattern(1, 4)
    model, _ = _finalized("mlp", nm, input_features=256, hidden_dim=512, depth=2)
    result = swap_to_nm_kernel(model, nm, batch_sizes=(1,))
    measured = [d for d in result.decisions if d.dense_ms]
    assert measured
    for decision in measured:
        assert decision.swapped == (decision.kernel_ms[0] < decision.dense_ms[0])


def test_model_loads_straight_from_the_compressed_export(tmp_path: Path) -> None:
    nm = NMPattern(2, 8)
    args = {"input_features": 64, "hidden_dim": 96, "depth": 2}
    model, report = _finalized("mlp", nm, **args)
    exported = export_all(
        model,
        report,
        tmp_path,
        architecture="mlp",
        architecture_args={**args, "num_classes": 10, "in_channels": 1},
        metrics={},
        pattern=nm,
    )
    loaded, result = nm_model_from_export(
        exported.file("manifest.json").path, exported.file("model.nm.safetensors").path, measure=False
    )
    assert set(result.swapped) == {layer.name for layer in report.layers}
    x = torch.randn(4, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-4, atol=1e-5)


def test_registry_serves_each_case_with_a_reason() -> None:
    kernel, reason = sparse_kernel_for("cpu", torch.float32, NMPattern(1, 4))
    assert isinstance(kernel, CpuNMKernel) and "cpu-nm serves 1:4" in reason
    none, why = sparse_kernel_for("cpu", torch.float16, NMPattern(2, 4))
    assert none is None
    assert "float32 or bfloat16, not torch.float16" in why and "semi-structured" in why
    served = kernels_for("cpu", torch.bfloat16, NMPattern(2, 4))
    assert isinstance(served[0], CpuNMKernel) and isinstance(served[-1], DenseKernel)
    weight = torch.tensor([[1.0, 0.0, 2.0, 0.0]])
    x = torch.randn(2, 4)
    torch.testing.assert_close(
        served[0].linear(x, served[0].pack(weight, NMPattern(2, 4)), None), x @ weight.T
    )


def test_a_layer_compressed_in_another_layout_than_its_module_is_refused(tmp_path: Path) -> None:
    nm = NMPattern(2, 4)
    args = {"input_features": 64, "hidden_dim": 64, "depth": 3}
    model, report = _finalized("mlp", nm, **args)
    exported = export_all(
        model,
        report,
        tmp_path,
        architecture="mlp",
        architecture_args={**args, "num_classes": 10, "in_channels": 1},
        metrics={},
        pattern=nm,
    )
    name = report.layers[0].name
    # The same tensors, but the square Linear weight recorded (and grouped) as a Conv1D's [in, out].
    state = dict(model.state_dict())
    state[f"{name}.weight"] = state[f"{name}.weight"].t().contiguous()
    relabelled = tmp_path / "relabelled.nm.safetensors"
    save_compressed(state, [layer.name for layer in report.layers], nm, relabelled, {name: IN_OUT})
    manifest = json.loads(exported.file("manifest.json").path.read_text())
    manifest["files"] = [f for f in manifest["files"] if f["name"] != "model.nm.safetensors"]

    with pytest.raises(ExportError, match=rf"layer '{name}' was compressed in layout 'in_out' but"):
        nm_model_from_export(manifest, relabelled, measure=False)
