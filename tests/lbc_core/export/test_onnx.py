"""ONNX export for TensorRT: Gemm for every linear layer, exact N:M zeros in the initializers, fp32 and fp16
graphs that onnxruntime runs on CPU within the stated tolerance, and a manifest entry per weight.

Real models throughout: catalog models finalized by the one-shot 2:4 sparsifier, and tiny Hugging Face
models built from configs whose linear weights get magnitude N:M masks along their reduction axis.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import pytest
import torch
import transformers
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from lbc_core.export import ExportError, export_all
from lbc_core.export.onnx_export import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    ONNX_FILE,
    ONNX_FP16_FILE,
    OPSET,
    OnnxExport,
    OnnxInputs,
    export_onnx,
    gemm_ready,
    weight_initializers,
)
from lbc_core.export.onnx_export.gemm import TRANSPOSED_CONV1D
from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern, is_24_compliant_tensor, is_nm_sparse, magnitude_mask
from lbc_core.sparsity.pattern import IN_OUT, linear_view
from lbc_core.sparsity.selection import CONV1D, LINEAR, adapter_for

PATTERN = NMPattern(2, 4)

# Small enough that each export takes seconds; every layer kind of the catalog is there.
CATALOG = {
    "lenet5": ({"num_classes": 10, "in_channels": 1}, (1, 28, 28)),
    "resnet20": ({"num_classes": 10, "width": 0.5}, (3, 32, 32)),
    "vit": ({"num_classes": 10, "depth": 1, "embed_dim": 32, "num_heads": 2, "image_size": 16}, (3, 16, 16)),
    "mlp": ({"num_classes": 10, "input_features": 64, "hidden_dim": 32}, (64,)),
    "mobilenetv2": ({"num_classes": 10, "width": 0.25}, (3, 32, 32)),
}


def _graph(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))


def _initializer(proto: onnx.ModelProto, name: str) -> torch.Tensor:
    for init in proto.graph.initializer:
        if init.name == name:
            return torch.from_numpy(numpy_helper.to_array(init).copy())
    raise AssertionError(f"no initializer {name} in the graph")


def _consumers(proto: onnx.ModelProto, name: str) -> set[str]:
    return {node.op_type for node in proto.graph.node if name in node.input}


def _linear_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if adapter_for(module) in (LINEAR, CONV1D)]


def _check_graphs(
    result: OnnxExport, out: Path, model: nn.Module, sparsified: list[str], pattern: NMPattern = PATTERN
) -> None:
    """What every export must hold: both files verified, Gemm for each linear layer, N:M zeros kept."""
    assert [v.file for v in result.variants] == [ONNX_FILE, ONNX_FP16_FILE]
    assert [v.status for v in result.variants] == ["verified", "verified"], [
        v.reason for v in result.variants
    ]
    assert result.opset == OPSET >= 17
    fp32, fp16 = _graph(out / ONNX_FILE), _graph(out / ONNX_FP16_FILE)
    assert [op.version for op in fp32.opset_import if op.domain in ("", "ai.onnx")] == [OPSET]
    for variant, proto, tolerance in (
        (result.variants[0], fp32, FP32_TOLERANCE),
        (result.variants[1], fp16, FP16_TOLERANCE),
    ):
        assert variant.tolerance == tolerance
        assert variant.checks and all(check.max_abs_error <= check.tolerance for check in variant.checks)
        assert variant.missing_layers == ()
        entries = {init.layer: init for init in variant.initializers if init.layer}
        for layer in _linear_layers(model):
            weight = f"{layer}.weight"
            # A tied LM head reads the embedding's initializer: it is the Gemm's weight all the same.
            if weight in {init.name for init in proto.graph.initializer}:
                assert _consumers(proto, weight) & {"Gemm"}, f"{layer} is not a Gemm in {variant.file}"
        # No linear layer fell back to MatMul against a constant weight.
        constants = {init.name for init in proto.graph.initializer}
        assert not [n.name for n in proto.graph.node if n.op_type == "MatMul" and set(n.input) & constants]
        for layer in sparsified:
            entry = entries[layer]
            assert (entry.sparsified, entry.nm, entry.pattern) == (True, True, str(pattern)), layer
            assert entry.compliant_24 == pattern.is_24_compliant
        for layer, entry in entries.items():
            if layer not in sparsified and entry.op == "Gemm":
                assert entry.pattern is None and not entry.sparsified, layer
    # Exact zeros: the fp32 initializer is zero exactly where the PyTorch weight is (Conv1D transposed;
    # BatchNorm folding scales whole output channels, which keeps every zero and every non-zero).
    for layer in sparsified:
        module = model.get_submodule(layer)
        weight = module.weight.detach()
        if adapter_for(module) is CONV1D:
            weight = linear_view(weight, IN_OUT)
        for proto, dtype in ((fp32, torch.float32), (fp16, torch.float16)):
            stored = _initializer(proto, f"{layer}.weight")
            assert stored.dtype == dtype and stored.shape == weight.shape
            assert torch.equal(stored == 0, weight == 0), layer
            assert is_nm_sparse(stored.float(), PATTERN)


# -- the graph rewrite ----------------------------------------------------------------------------------


def test_gemm_rewrite_computes_the_same_numbers_and_leaves_the_callers_model_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4)).eval()
    ready, layouts = gemm_ready(model)
    assert layouts == {"0": "[out, in]", "2": "[out, in]"}
    assert all(isinstance(m, nn.Linear) for m in (model[0], model[2]))  # the original is untouched
    for shape in ((5, 8), (2, 3, 8), (8,)):
        x = torch.randn(*shape)
        assert torch.equal(ready(x), model(x))
    assert set(ready.state_dict()) == set(model.state_dict())


def test_gemm_rewrite_of_gpt2_conv1d_stores_its_weight_as_out_by_in() -> None:
    config = transformers.GPT2Config(
        vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    ready, layouts = gemm_ready(model)
    # Exactly the layers the engine's adapters call Linear or Conv1D: every Conv1D and the LM head.
    assert set(layouts) == {name for name, m in model.named_modules() if adapter_for(m) in (LINEAR, CONV1D)}
    assert {layouts[name] for name in layouts if name != "lm_head"} == {TRANSPOSED_CONV1D}
    attn = ready.get_submodule("transformer.h.0.attn.c_attn")
    assert layouts["transformer.h.0.attn.c_attn"].startswith("[out, in] (transposed")
    assert torch.equal(attn.weight, model.get_submodule("transformer.h.0.attn.c_attn").weight.t())
    assert ready.lm_head.weight is ready.transformer.wte.weight  # the tie survives the copy
    ids = torch.randint(0, 64, (2, 5))
    # Not bit-equal: Conv1D computes addmm(bias, x, W) and the copy mm(x, W^T) + bias, another summation order.
    torch.testing.assert_close(
        ready(ids, use_cache=False).logits, model(ids, use_cache=False).logits, rtol=0, atol=1e-6
    )


class _ScaledLinear(nn.Linear):
    """A Linear subclass with its own forward (as LoRA or quantized layers have)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * super().forward(x)


def test_gemm_rewrite_leaves_convolutions_and_linears_with_their_own_forward_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten(), _ScaledLinear(16, 8), nn.Linear(8, 2)).eval()
    ready, layouts = gemm_ready(model)
    assert layouts == {"3": "[out, in]"}
    assert isinstance(ready[0], nn.Conv2d) and isinstance(ready[2], _ScaledLinear)
    x = torch.randn(2, 3, 2, 2)
    assert torch.equal(ready(x), model(x))


# -- catalog models -------------------------------------------------------------------------------------


def _with_batchnorm_statistics(model: nn.Module) -> nn.Module:
    """BatchNorm scales and statistics like a trained network's, instead of the identity of a fresh one.

    A freshly built MobileNetV2 outputs ~1e-10 (measured), which no tolerance can tell from a wrong graph;
    and folding BatchNorm into Conv must be checked with scales other than 1.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("architecture", list(CATALOG))
def test_catalog_model_round_trips_through_onnxruntime_with_its_n_m_zeros(
    architecture: str, make_finalized: Any, tmp_path: Path
) -> None:
    args, shape = CATALOG[architecture]
    torch.manual_seed(0)
    finalized = make_finalized(_with_batchnorm_statistics(build_model(architecture, **args)), PATTERN)
    sparsified = [layer.name for layer in finalized.report.layers]
    assert sparsified
    x = torch.randn(3, *shape)

    result = export_onnx(
        finalized.model, OnnxInputs.single(x), tmp_path, pattern=PATTERN, sparsified=sparsified
    )

    _check_graphs(result, tmp_path, finalized.model, sparsified)
    assert result.inputs == {"input": ["batch", *shape]}
    # The example, then a batch of one: the batch axis is free.
    assert [check.shapes for check in result.variants[0].checks] == [
        {"input": [3, *shape]},
        {"input": [1, *shape]},
    ]
    # And independently of the exporter's own check: a batch size it never saw.
    session = onnxruntime.InferenceSession(str(tmp_path / ONNX_FILE), providers=["CPUExecutionProvider"])
    other = torch.randn(5, *shape)
    with torch.no_grad():
        expected = finalized.model(other)
    (actual,) = session.run(None, {"input": other.numpy()})
    assert torch.allclose(
        torch.from_numpy(actual),
        expected,
        rtol=0,
        atol=FP32_TOLERANCE * max(1.0, float(expected.abs().max())),
    )


# -- Hugging Face models --------------------------------------------------------------------------------


def _sparsify_hf(model: nn.Module, pattern: NMPattern, skip: tuple[str, ...]) -> list[str]:
    """Magnitude N:M masks on every linear weight but ``skip`` (heads), grouped along the reduction axis."""
    names = []
    with torch.no_grad():
        for name, module in model.named_modules():
            adapter = adapter_for(module)
            if adapter not in (LINEAR, CONV1D) or name.endswith(skip):
                continue
            assert adapter is not None
            # Conv1D stores [in, out]: its layout groups down the columns (its input dimension).
            mask = magnitude_mask(module.weight, pattern, adapter.layout)
            module.weight.mul_(mask.to(module.weight.dtype))
            names.append(name)
    return names


def _tokens(vocab: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, vocab, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0  # a padded second sequence, so the mask is more than a constant
    return {"input_ids": ids, "attention_mask": mask}


def _hf_case(kind: str) -> tuple[nn.Module, OnnxInputs, tuple[str, ...]]:
    if kind == "bert":
        config = transformers.BertConfig(
            vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=32, num_labels=3,
        )  # fmt: skip
        return (
            transformers.BertForSequenceClassification(config),
            OnnxInputs.by_keyword(_tokens(64)),
            ("classifier",),
        )
    if kind == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0
        )
        inputs = OnnxInputs.by_keyword(_tokens(64), options={"use_cache": False})
        return transformers.GPT2LMHeadModel(config), inputs, ("lm_head",)
    if kind == "llama":
        config = transformers.LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=32,
        )  # fmt: skip
        inputs = OnnxInputs.by_keyword(_tokens(64), options={"use_cache": False})
        return transformers.LlamaForCausalLM(config), inputs, ("lm_head",)
    config = transformers.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=5,
    )  # fmt: skip
    inputs = OnnxInputs.by_keyword({"pixel_values": torch.randn(2, 3, 16, 16)})
    return transformers.ViTForImageClassification(config), inputs, ("classifier",)


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama", "vit"])
def test_transformers_model_round_trips_with_gemm_layers_and_n_m_initializers(
    kind: str, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model, inputs, heads = _hf_case(kind)
    model.eval()
    sparsified = _sparsify_hf(model, PATTERN, heads)

    result = export_onnx(model, inputs, tmp_path, pattern=PATTERN, sparsified=sparsified)

    _check_graphs(result, tmp_path, model, sparsified)
    assert result.outputs == ["logits"]
    if kind != "vit":  # token inputs keep both the batch and the sequence axis free, checked by varying each
        assert result.inputs == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
        assert [check.shapes["input_ids"] for check in result.variants[0].checks] == [[2, 6], [1, 6], [2, 5]]
        assert result.notes == ()
    if kind == "gpt2":  # Conv1D weights go out as [out, in] and are the N:M ones TensorRT sees
        entry = next(i for i in result.variants[0].initializers if i.layer == "transformer.h.0.mlp.c_fc")
        assert entry.shape == (128, 32) and entry.nm and entry.compliant_24
        assert entry.layout == "[out, in] (transposed from the checkpoint's Conv1D [in, out])"


def test_a_model_that_fixes_its_length_gets_a_graph_with_only_the_batch_axis_free(tmp_path: Path) -> None:
    from lbc_core.models.causal_lm import TinyCausalLM

    torch.manual_seed(0)
    # Its forward reads int(input_ids.shape[1]): the traced graph only fits the example's length.
    model = TinyCausalLM(vocab_size=64, max_positions=16, embed_dim=32, depth=1, num_heads=2).eval()
    inputs = OnnxInputs.by_keyword({"input_ids": torch.randint(0, 64, (2, 8))})

    result = export_onnx(model, inputs, tmp_path, pattern=PATTERN)

    assert result.inputs == {"input_ids": ["batch", 8]}
    (note,) = result.notes
    assert note.startswith("only the batch axis is free: with other free axes, does not match PyTorch: ")
    assert [v.status for v in result.variants] == ["verified", "verified"]


# -- failures and patterns --------------------------------------------------------------------------------


class _SignFlip(nn.Module):
    """A branch on a tensor's value: torch.export cannot trace it into one graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


def test_an_unexportable_model_keeps_its_other_exports_and_the_manifest_says_why(
    lenet: Any, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    out.mkdir()
    (out / ONNX_FILE).write_bytes(b"stale")  # from an earlier export into the same directory
    lenet.model.classifier.append(_SignFlip())  # layer names (and the report) stay as they are

    result = export_all(
        lenet.model,
        lenet.report,
        out,
        architecture="lenet5",
        architecture_args={},
        metrics={},
        pattern=PATTERN,
        onnx=OnnxInputs.single(torch.randn(2, 1, 28, 28)),
    )

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["onnx"]["status"] == "failed"
    assert manifest["onnx"]["reason"].startswith("ExportError: model.onnx: export failed: ")
    assert [f.name for f in result.files] == [
        "model.safetensors",
        "masks.safetensors",
        "model.nm.safetensors",
        "manifest.json",
    ]
    assert manifest["verified"] is True
    assert not (out / ONNX_FILE).exists() and not (out / ONNX_FP16_FILE).exists()


def test_fp16_overflow_drops_only_the_fp16_file_and_names_the_error(tmp_path: Path) -> None:
    torch.manual_seed(0)
    # Activations near 1e8: fine in fp32, infinite in fp16 (largest finite value 65504).
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    with torch.no_grad():
        model[0].weight.mul_(1e6)
    x = torch.rand(2, 16) * 10
    result = export_onnx(model, OnnxInputs.single(x), tmp_path, pattern=PATTERN)
    fp32, fp16 = result.variants
    assert fp32.status == "verified" and (tmp_path / ONNX_FILE).is_file()
    assert fp16.status == "failed" and not (tmp_path / ONNX_FP16_FILE).exists()
    assert fp16.reason is not None and "does not match PyTorch" in fp16.reason and "inf" in fp16.reason


def test_without_the_onnx_extra_the_export_says_what_to_install(
    lenet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # what an environment without it imports
    with pytest.raises(ExportError, match=r"needs onnxscript: pip install 'lbc-sparsity\[onnx\]'"):
        export_onnx(lenet.model, OnnxInputs.single(torch.randn(2, 1, 28, 28)), tmp_path, pattern=PATTERN)
    assert list(tmp_path.iterdir()) == []


def test_example_inputs_are_checked_before_anything_is_exported() -> None:
    with pytest.raises(ValueError, match="has 2 axes; no axis 2"):
        OnnxInputs({"x": torch.zeros(2, 3)}, {"x": {2: "batch"}})
    with pytest.raises(ValueError, match="names inputs that are not given: y"):
        OnnxInputs({"x": torch.zeros(2, 3)}, {"y": {0: "batch"}})
    with pytest.raises(ValueError, match="at least one example input"):
        OnnxInputs({})


# -- reading N:M and 2:4 back from a graph -----------------------------------------------------------------


def _weight_graph(weights: dict[str, tuple[str, torch.Tensor, dict[str, int]]]) -> onnx.ModelProto:
    nodes, inits = [], []
    for name, (op, tensor, attrs) in weights.items():
        inits.append(numpy_helper.from_array(tensor.numpy(), f"{name}.weight"))
        nodes.append(helper.make_node(op, ["x", f"{name}.weight"], [f"{name}_out"], name=name, **attrs))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    outs = [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None) for name in weights]
    return helper.make_model(helper.make_graph(nodes, "g", [x], outs, inits))


def test_initializers_are_read_along_each_nodes_reduction_axis() -> None:
    torch.manual_seed(0)

    def nm(shape: tuple[int, ...], pattern: NMPattern) -> torch.Tensor:
        weight = torch.randn(*shape)
        return weight * magnitude_mask(weight, pattern)

    w48 = nm((8, 16), NMPattern(4, 8))  # [out, in]: 4:8 is not 2:4 unless by chance
    proto = _weight_graph(
        {
            "gemm_t": ("Gemm", nm((8, 16), PATTERN), {"transB": 1}),  # [out, in]
            "gemm_n": ("Gemm", nm((8, 16), PATTERN).t().contiguous(), {"transB": 0}),  # [in, out]
            "matmul": ("MatMul", nm((6, 16), PATTERN).t().contiguous(), {}),  # [in, out]
            "wrong_axis": ("Gemm", nm((8, 16), PATTERN).t().contiguous(), {"transB": 1}),  # groups on out
            "conv": ("Conv", nm((8, 16, 3, 3), PATTERN), {}),
            "gemm48": ("Gemm", w48, {"transB": 1}),
            "odd": ("Gemm", torch.randn(4, 6), {"transB": 1}),  # 6 inputs: no groups of 4
        }
    )
    layers = {"gemm_t", "gemm_n", "matmul", "wrong_axis", "conv", "gemm48", "odd"}
    found = {
        i.name.removesuffix(".weight"): i for i in weight_initializers(proto, PATTERN, layers, {"gemm_t"})
    }

    assert {name: i.nm for name, i in found.items()} == {
        "gemm_t": True, "gemm_n": True, "matmul": True, "wrong_axis": False, "conv": True,
        "gemm48": False, "odd": False,
    }  # fmt: skip
    assert found["gemm_t"].sparsified and not found["gemm_n"].sparsified
    assert (found["gemm_t"].layout, found["gemm_n"].layout, found["matmul"].layout) == (
        "[out, in]",
        "[in, out]",
        "[in, out]",
    )
    assert found["conv"].layout == "[out, in, kh, kw]"
    assert found["gemm_t"].pattern == "2:4" and found["wrong_axis"].pattern is None
    assert found["gemm48"].compliant_24 == is_24_compliant_tensor(w48)
    assert found["odd"].compliant_24 is False and found["conv"].compliant_24 is True
    assert weight_initializers(proto, NMPattern(4, 8), layers, set())[5].nm is True  # gemm48 under 4:8
