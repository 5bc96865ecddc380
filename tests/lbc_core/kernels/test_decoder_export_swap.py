"""Decoders loaded straight from their compressed N:M export onto the kernel, whatever the weight layout:
a tiny GPT-2 (transformers Conv1D, stored [in, out]) and a tiny Llama (nn.Linear, [out, in]), trained a few
LBC steps from a saved directory as a job trains them, exported, then rebuilt by ``nm_model_from_export``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from lbc_core.export import export_all, rebuild_model
from lbc_core.kernels.packing import pack_weight
from lbc_core.kernels.swap import NMLinear, nm_model_from_export, reduction_weight
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig, build_sparsifier
from lbc_core.sparsity.pattern import IN_OUT, OUT_IN
from lbc_core.sparsity.selection import adapter_for

from .test_decoder_swap import TINY_GPT2, TINY_LLAMA

pytestmark = pytest.mark.usefixtures("native")

transformers = pytest.importorskip("transformers")

PATTERN = NMPattern(2, 4)
VOCAB = 96


def _train_and_export(kind: str, tmp_path: Path) -> tuple[Any, Path, Path]:
    """A few LBC steps on the saved model (loss on random tokens), finalized and exported."""
    from lbc_catalog.huggingface import CAUSAL_LM
    from lbc_core.models.huggingface import HuggingFaceSource
    from lbc_core.models.source import DataFacts
    from tests.hf_models import save_tiny_model

    config = {**(TINY_GPT2 if kind == "gpt2" else TINY_LLAMA), "model_type": kind}
    save_tiny_model(tmp_path / "upload", config)
    built = HuggingFaceSource(str(tmp_path / "upload"), CAUSAL_LM).build(DataFacts(None, ()))
    model = built.model
    sparsifier = build_sparsifier(
        SparsityConfig(method="lbc", pattern=PATTERN, schedule=RemovalSchedule(t_i=0, t_f=1))
    )
    sparsifier.prepare(model, built.dense_defaults)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    generator = torch.Generator().manual_seed(0)
    for step in range(3):
        sparsifier.on_step_start(step // 2, step % 2, 2, 1e-3)
        ids = torch.randint(0, VOCAB, (2, 10), generator=generator)
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    report = sparsifier.finalize()
    exported = export_all(
        model.eval(),
        report,
        tmp_path / "export",
        architecture=built.record["name"],
        architecture_args=dict(built.record["args"]),
        source_record=built.record,
        metrics={},
        pattern=PATTERN,
    )
    return report, exported.file("manifest.json").path, exported.file("model.nm.safetensors").path


@pytest.mark.parametrize(("kind", "layout"), [("gpt2", IN_OUT), ("llama", OUT_IN)])
def test_decoder_from_its_compressed_export_runs_every_sparse_layer_on_the_kernel(
    kind: str, layout: str, tmp_path: Path
) -> None:
    report, manifest, compressed = _train_and_export(kind, tmp_path)
    sparsified = {layer.name for layer in report.layers}
    assert sparsified and {layer.layout for layer in report.layers} == {layout}
    dense = rebuild_model(manifest, compressed)
    kinds = {type(dense.get_submodule(name)).__name__ for name in sparsified}
    assert kinds == ({"Conv1D"} if kind == "gpt2" else {"Linear"})

    loaded, result = nm_model_from_export(manifest, compressed, measure=False)

    assert set(result.swapped) == sparsified and not result.kept_dense
    for name in sparsified:
        layer = loaded.get_submodule(name)
        assert isinstance(layer, NMLinear), name
        # Packed from the stored values and positions: the same bytes as packing the dense weight's
        # [out, in] view, so nothing was lost to the layout.
        source: nn.Module = dense.get_submodule(name)
        view = reduction_weight(source)
        assert view is not None and adapter_for(source) is not None
        direct = pack_weight(view.detach().contiguous(), PATTERN)
        assert torch.equal(layer.values, direct.values) and torch.equal(layer.codes, direct.codes), name
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = dense(ids).logits, loaded(ids).logits
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
