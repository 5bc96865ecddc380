"""Hugging Face models of every allowed family: built from a saved directory, sparsified, exported, loaded back.

Each tiny model is made by transformers from a config (nothing downloaded), saved with save_pretrained, then
run through the engine: source -> sparsifier -> training steps -> finalize -> exports. The sparse model must
load with AutoModelFor<Task>.from_pretrained as it is and compute exactly what our own rebuilt model
(manifest + compressed N:M form) computes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from torch import nn

from lbc_catalog.tasks import CAUSAL_LM, IMAGE_CLASSIFICATION, SEQUENCE_CLASSIFICATION
from lbc_core.export import export_all, rebuild_model
from lbc_core.models.huggingface import HuggingFaceSource
from lbc_core.models.source import DataFacts, ModelSourceError
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig, build_sparsifier
from lbc_core.sparsity.pattern import IN_OUT, magnitude_mask, to_groups
from lbc_core.sparsity.selection import LayerPolicy

VOCAB = 64
PATTERN = NMPattern(2, 4)
TEXT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
DECODER = {**TEXT, "vocab_size": VOCAB, "max_position_embeddings": 64, "num_key_value_heads": 1}
ENCODER = {**TEXT, "vocab_size": VOCAB, "max_position_embeddings": 64}
VISION = {**TEXT, "image_size": 16, "patch_size": 4, "num_channels": 3}


@dataclass(frozen=True)
class Family:
    model_type: str
    upload_class: str  # what the user saved
    task: str
    config: dict[str, Any]
    num_classes: int | None = None

    @property
    def id(self) -> str:
        return f"{self.model_type}-{self.upload_class}"


FAMILIES = [
    # A bare BERT encoder, fine-tuned for sequence classification: the head is new and reported.
    Family("bert", "BertModel", SEQUENCE_CLASSIFICATION, ENCODER, num_classes=3),
    Family(
        "roberta",
        "RobertaForSequenceClassification",
        SEQUENCE_CLASSIFICATION,
        {**ENCODER, "max_position_embeddings": 72, "num_labels": 2},
        num_classes=2,
    ),
    Family(
        "distilbert",
        "DistilBertForSequenceClassification",
        SEQUENCE_CLASSIFICATION,
        {
            "vocab_size": VOCAB,
            "dim": 32,
            "n_layers": 2,
            "n_heads": 2,
            "hidden_dim": 64,
            "max_position_embeddings": 64,
            "num_labels": 2,
        },
        num_classes=2,
    ),
    Family(
        "gpt2",
        "GPT2LMHeadModel",
        CAUSAL_LM,
        {"vocab_size": VOCAB, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64},
    ),
    Family("llama", "LlamaForCausalLM", CAUSAL_LM, {**DECODER, "tie_word_embeddings": True}),
    Family("qwen2", "Qwen2ForCausalLM", CAUSAL_LM, DECODER),
    Family("mistral", "MistralForCausalLM", CAUSAL_LM, DECODER),
    # ViT pretrained with 5 classes, fine-tuned on data with 3: the head is re-initialised and reported.
    Family("vit", "ViTForImageClassification", IMAGE_CLASSIFICATION, {**VISION, "num_labels": 5}, 3),
    Family("deit", "DeiTForImageClassification", IMAGE_CLASSIFICATION, {**VISION, "num_labels": 3}, 3),
]
AUTO = {
    CAUSAL_LM: "AutoModelForCausalLM",
    SEQUENCE_CLASSIFICATION: "AutoModelForSequenceClassification",
    IMAGE_CLASSIFICATION: "AutoModelForImageClassification",
}


def save_upload(family: Family, directory: Path, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.AutoConfig.for_model(family.model_type, **family.config)
    model = getattr(transformers, family.upload_class)(config)
    model.save_pretrained(directory)
    # A real tokenizers file (copied to the output as it is): a word-level vocabulary of the model's size.
    vocab = {f"w{i}": i for i in range(min(VOCAB, 16))}
    Tokenizer(WordLevel(vocab, unk_token="w0")).save(str(directory / "tokenizer.json"))
    return model


def inputs_for(family: Family, batch: int = 4, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if family.task == IMAGE_CLASSIFICATION:
        return {"pixel_values": torch.randn(batch, 3, 16, 16, generator=generator)}
    return {"input_ids": torch.randint(0, VOCAB, (batch, 12), generator=generator)}


def loss_of(family: Family, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    if family.task == CAUSAL_LM:
        return model(**inputs, labels=inputs["input_ids"]).loss
    labels = torch.arange(inputs[next(iter(inputs))].shape[0]) % (family.num_classes or 2)
    return model(**inputs, labels=labels).loss


def sparsify(family: Family, upload: Path, out: Path, method: str = "lbc") -> tuple[Any, Any, Any]:
    source = HuggingFaceSource(str(upload), family.task)
    built = source.build(DataFacts(family.num_classes, ()))
    model = built.model
    sparsifier = build_sparsifier(
        SparsityConfig(method=method, pattern=PATTERN, schedule=RemovalSchedule(t_i=0, t_f=1))
    )
    selection = sparsifier.prepare(model, built.dense_defaults)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(3):
        sparsifier.on_step_start(step // 2, step % 2, 2, 1e-3)
        loss = loss_of(family, model, inputs_for(family, seed=step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    report = sparsifier.finalize()
    model.eval()
    exports = export_all(
        model,
        report,
        out / "export",
        architecture=built.record["name"],
        architecture_args=dict(built.record["args"]),
        source_record=built.record,
        metrics={},
        pattern=PATTERN,
    )
    source.save(model, out / "hf_model")
    return built, selection, exports


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.id)
def test_family_round_trips_through_lbc_to_from_pretrained_with_exact_nm(
    family: Family, tmp_path: Path
) -> None:
    save_upload(family, tmp_path / "upload")
    built, selection, exports = sparsify(family, tmp_path / "upload", tmp_path / "out")
    model = built.model

    assert selection.targets, "every family has sparsifiable layers"
    assert exports.manifest["verified"] is True
    # Heads (LM head, classifier, pooler) and patch embeddings stay dense; tied weights are never masked.
    names = set(selection.names)
    assert not any(n.split(".")[0] in {"lm_head", "classifier", "score", "pre_classifier"} for n in names)
    assert not any("pooler" in n or "patch_embeddings" in n for n in names)
    for target in selection.targets:
        weight = model.get_submodule(target.name).weight.detach()
        groups = to_groups(weight, PATTERN.m, target.layout)
        assert int(((groups != 0).sum(dim=1) > PATTERN.n).sum()) == 0, target.name
    if family.model_type == "gpt2":
        # Conv1D stores [in, out]: groups must run down its columns (the input dimension), not its rows.
        conv1d = [t for t in selection.targets if t.kind == "Conv1D"]
        assert conv1d and all(t.layout == IN_OUT for t in conv1d)
        weight = model.get_submodule(conv1d[0].name).weight.detach()
        assert int(((weight.t().reshape(-1, 4) != 0).sum(dim=1) > 2).sum()) == 0
        assert int(((weight.reshape(-1, 4) != 0).sum(dim=1) > 2).sum()) > 0  # rows are not the groups
        assert {layer["layout"] for layer in exports.manifest["layers"]} >= {IN_OUT}

    auto = getattr(transformers, AUTO[family.task])
    loaded = auto.from_pretrained(tmp_path / "out" / "hf_model").eval()
    rebuilt = rebuild_model(exports.manifest, tmp_path / "out" / "export" / "model.nm.safetensors")
    assert (tmp_path / "out" / "hf_model" / "tokenizer.json").is_file()
    with torch.no_grad():
        inputs = inputs_for(family, seed=7)
        ours, theirs, again = model(**inputs).logits, loaded(**inputs).logits, rebuilt(**inputs).logits
    assert torch.equal(theirs, again)
    assert torch.equal(ours, again)
    for name in selection.names:  # exact zeros under the original key names
        assert torch.equal(loaded.get_submodule(name).weight, model.get_submodule(name).weight)
    if getattr(model.config, "tie_word_embeddings", False) and family.task == CAUSAL_LM:
        for candidate in (loaded, rebuilt):
            assert candidate.get_output_embeddings().weight is candidate.get_input_embeddings().weight


def test_a_new_classification_head_is_initialised_and_reported(tmp_path: Path) -> None:
    bert, vit = FAMILIES[0], FAMILIES[7]
    save_upload(bert, tmp_path / "bert")
    save_upload(vit, tmp_path / "vit")
    built = HuggingFaceSource(str(tmp_path / "bert"), bert.task).build(DataFacts(3))
    assert built.fresh == ("classifier.bias", "classifier.weight")
    assert built.model.config.num_labels == 3
    built = HuggingFaceSource(str(tmp_path / "vit"), vit.task).build(DataFacts(3))
    assert built.fresh == ("classifier.bias", "classifier.weight")  # 5 classes in the upload, 3 in the data


def test_loaded_weights_equal_the_upload(tmp_path: Path) -> None:
    family = FAMILIES[4]
    original = save_upload(family, tmp_path / "up")
    built = HuggingFaceSource(str(tmp_path / "up"), family.task).build(DataFacts(None))
    theirs = original.state_dict()
    for key, tensor in built.model.state_dict().items():
        assert torch.equal(tensor, theirs[key]), key


def _rewrite(directory: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    from safetensors.torch import load_file, save_file

    state = dict(load_file(str(directory / "model.safetensors")))
    edit(state)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s.pop("model.layers.0.mlp.up_proj.weight"), "missing model.layers.0.mlp.up_proj.weight"),
        (lambda s: s.update({"extra.weight": torch.zeros(2)}), "unexpected extra.weight"),
        (
            lambda s: s.update({"model.norm.weight": torch.ones(16)}),
            r"wrong shape model.norm.weight \(16,\) != \(32,\)",
        ),
        (
            lambda s: s.update({"model.norm.weight": torch.ones(32, dtype=torch.float16)}),
            "mix dtypes",
        ),
    ],
    ids=["missing", "unexpected", "mis-shaped", "mixed-dtype"],
)
def test_weights_that_do_not_fit_are_refused_naming_the_tensor(
    tmp_path: Path, edit: Callable[[dict[str, torch.Tensor]], None], expected: str
) -> None:
    family = FAMILIES[4]
    save_upload(family, tmp_path / "up")
    _rewrite(tmp_path / "up", edit)
    with pytest.raises(ModelSourceError, match=expected):
        HuggingFaceSource(str(tmp_path / "up"), family.task).build(DataFacts(None))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: (d / "pytorch_model.bin").write_bytes(b"\x80\x04."),
            r"pytorch_model.bin is refused: PyTorch .bin weights: a .bin is a pickle",
        ),
        (
            lambda d: (d / "model.pt2").write_bytes(b"PK"),
            r"model.pt2 is refused: a .pt2 exported program can run code",
        ),
        (lambda d: (d / "modeling_evil.py").write_text("import os"), "never runs code"),
        (lambda d: (d / "model.safetensors").unlink(), "no weights"),
        (
            lambda d: (d / "config.json").write_text(
                json.dumps({**json.loads((d / "config.json").read_text()), "auto_map": {"AutoModel": "x.Y"}})
            ),
            "auto_map",
        ),
    ],
    ids=["pickle", "pt2", "code", "no-weights", "remote-code-config"],
)
def test_unsafe_or_incomplete_directories_are_refused_with_the_reason(
    tmp_path: Path, change: Callable[[Path], Any], expected: str
) -> None:
    family = FAMILIES[4]
    save_upload(family, tmp_path / "up")
    change(tmp_path / "up")
    with pytest.raises(ModelSourceError, match=expected):
        HuggingFaceSource(str(tmp_path / "up"), family.task).build(DataFacts(None))


def test_a_task_the_family_cannot_do_is_refused(tmp_path: Path) -> None:
    save_upload(FAMILIES[0], tmp_path / "up")
    with pytest.raises(ModelSourceError, match="cannot do task 'causal-lm'"):
        HuggingFaceSource(str(tmp_path / "up"), CAUSAL_LM).build(DataFacts(None))


def test_sharded_weights_load_and_a_wrong_index_is_refused(tmp_path: Path) -> None:
    family = FAMILIES[5]
    original = save_upload(family, tmp_path / "up")
    (tmp_path / "up" / "model.safetensors").unlink()  # one set of weights: the shards replace the file
    original.save_pretrained(tmp_path / "up", max_shard_size="20KB")
    assert (tmp_path / "up" / "model.safetensors.index.json").is_file()
    built = HuggingFaceSource(str(tmp_path / "up"), family.task).build(DataFacts(None))
    assert torch.equal(built.model.model.norm.weight, original.model.norm.weight)
    index = json.loads((tmp_path / "up" / "model.safetensors.index.json").read_text())
    key = next(iter(index["weight_map"]))
    index["weight_map"][key] = "model-99999-of-99999.safetensors"
    (tmp_path / "up" / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelSourceError, match="missing"):
        HuggingFaceSource(str(tmp_path / "up"), family.task).build(DataFacts(None))


def test_tied_lm_head_is_skipped_with_the_reason_when_included(tmp_path: Path) -> None:
    family = FAMILIES[3]  # gpt2: lm_head.weight is transformer.wte.weight
    save_upload(family, tmp_path / "up")
    built = HuggingFaceSource(str(tmp_path / "up"), family.task).build(DataFacts(None))
    sparsifier = build_sparsifier(
        SparsityConfig(method="asp", pattern=PATTERN, layers=LayerPolicy(include=("lm_head", "*")))
    )
    selection = sparsifier.prepare(built.model, built.dense_defaults)
    skipped = {s.name: s.reason for s in selection.skipped}
    assert "tied to transformer.wte.weight" in skipped["lm_head"]
    assert "lm_head" not in selection.names


def test_wanda_weighs_conv1d_rows_by_their_input_norms(tmp_path: Path) -> None:
    """GPT-2's Conv1D weight is [in, out]: input feature j's norm scales row j, groups run down columns."""
    family = FAMILIES[3]
    save_upload(family, tmp_path / "up")
    built = HuggingFaceSource(str(tmp_path / "up"), family.task).build(DataFacts(None))
    model = built.model.eval()
    sparsifier = build_sparsifier(SparsityConfig(method="wanda", pattern=PATTERN))
    selection = sparsifier.prepare(model, built.dense_defaults)
    name = next(t.name for t in selection.targets if t.kind == "Conv1D")
    module = model.get_submodule(name)
    seen: list[torch.Tensor] = []
    hook = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().reshape(-1, 32)))
    inputs = inputs_for(family, seed=3)

    def run_forward() -> None:
        with torch.no_grad():
            model(**inputs)

    sparsifier.calibrate(run_forward)
    hook.remove()
    weight = module.parametrizations.weight.original.detach()
    norms = torch.cat(seen).float().square().sum(dim=0).sqrt()
    expected = magnitude_mask(weight.abs() * norms[:, None], PATTERN, IN_OUT)
    assert torch.equal(sparsifier.masks()[name], expected)
    report = sparsifier.finalize()
    assert report.all_verified


def test_data_the_model_cannot_read_is_refused_before_training(tmp_path: Path) -> None:
    save_upload(FAMILIES[4], tmp_path / "llama")
    with pytest.raises(
        ModelSourceError, match="the tokenizer has 256 tokens but the model's vocab_size is 64"
    ):
        HuggingFaceSource(str(tmp_path / "llama"), CAUSAL_LM).build(DataFacts(None, (32,), vocab_size=256))
    save_upload(FAMILIES[7], tmp_path / "vit")
    with pytest.raises(ModelSourceError, match="the images are 28x28 but the model reads 16x16"):
        HuggingFaceSource(str(tmp_path / "vit"), IMAGE_CLASSIFICATION).build(DataFacts(3, (3, 28, 28)))
    with pytest.raises(ModelSourceError, match="the images have 1 channels but the model reads 3"):
        HuggingFaceSource(str(tmp_path / "vit"), IMAGE_CLASSIFICATION).build(DataFacts(3, (1, 16, 16)))


def test_a_vit_directory_runs_through_the_pipeline_and_loads_with_from_pretrained(tmp_path: Path) -> None:
    from lbc_core.data import DataConfig
    from lbc_core.data.synthetic import SyntheticSpec
    from lbc_core.pipeline import ModelConfig, RunConfig, run
    from lbc_core.training import TrainConfig

    family = FAMILIES[7]  # pretrained with 5 classes; the data has 3
    save_upload(family, tmp_path / "vit")
    config = RunConfig(
        model=ModelConfig(source="huggingface", path=str(tmp_path / "vit")),
        data=DataConfig(source="synthetic", synthetic=SyntheticSpec(96, (3, 16, 16), 3)),
        sparsity=SparsityConfig(method="srste", pattern=PATTERN),
        train=TrainConfig(epochs=1, batch_size=32, optimizer="adamw", lr=1e-3, device="cpu"),
    )
    result = run(config, tmp_path / "run")
    assert result.status == "succeeded" and result.summary["verified_nm"]
    manifest = json.loads((tmp_path / "run" / "export" / "manifest.json").read_text())
    assert manifest["architecture"]["source"] == "huggingface"
    assert manifest["extra"]["fresh_tensors"] == ["classifier.bias", "classifier.weight"]
    assert result.summary["fresh_tensors"] == ["classifier.bias", "classifier.weight"]
    skipped = {s["name"]: s["reason"] for s in manifest["skipped"]}
    assert skipped["classifier"] == "classification head kept dense by default"
    assert (
        skipped["vit.embeddings.patch_embeddings.projection"]
        == "patch embedding (stem) kept dense by default"
    )
    loaded = transformers.AutoModelForImageClassification.from_pretrained(
        tmp_path / "run" / "export" / "hf_model"
    )
    rebuilt = rebuild_model(manifest, tmp_path / "run" / "export" / "model.nm.safetensors")
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(pixel_values=pixels).logits, rebuilt(pixel_values=pixels).logits)
    assert loaded.config.num_labels == 3
