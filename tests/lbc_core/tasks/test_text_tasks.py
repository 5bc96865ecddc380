"""The text tasks: causal-LM loss and perplexity and sequence-classification batches against hand
computation, and short real runs on the Shakespeare corpus that learn."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from lbc_core.data import DataConfig, load_data
from lbc_core.data.text import TokenBlocks
from lbc_core.models.causal_lm import TinyCausalLM
from lbc_core.sparsity import NMPattern, RemovalSchedule, SparsityConfig, build_sparsifier
from lbc_core.tasks import Batch, CausalLM, SequenceClassification, TaskError, get_task
from lbc_core.training import TrainConfig, Trainer, evaluate

LM = CausalLM()
CLS = SequenceClassification()


def test_causal_lm_predicts_each_next_token_and_reports_perplexity() -> None:
    # One block of 3 tokens [1, 0, 1] over a vocabulary of 2: positions 0 and 1 predict tokens 0 and 1.
    ids = torch.tensor([[1, 0, 1]])
    logits = torch.tensor([[[0.0, 2.0], [1.0, 0.0], [5.0, 5.0]]])  # the last position predicts nothing
    batch = Batch(ids, ids)
    nll = [math.log(1 + math.exp(2.0)), math.log(1 + math.exp(1.0))]
    assert LM.count(batch) == 2
    assert float(LM.loss(logits, batch, reduction="sum")) == pytest.approx(sum(nll), rel=1e-6)
    metrics = LM.summarize({"loss": sum(nll), "count": 2})
    assert metrics["perplexity"] == pytest.approx(math.exp(sum(nll) / 2))
    assert LM.primary_metric.key == "val_perplexity" and not LM.primary_metric.higher_is_better


def test_causal_lm_names_logits_of_the_wrong_shape() -> None:
    ids = torch.zeros(2, 4, dtype=torch.int64)
    with pytest.raises(TaskError, match=r"\[batch, tokens, vocabulary\]; got \[2, 7\]"):
        LM.loss(torch.zeros(2, 7), Batch(ids, ids))


def test_sequence_classification_calls_the_model_with_ids_and_mask() -> None:
    data = type(
        "Texts",
        (),
        {
            "input_ids": torch.tensor([[5, 6, 0], [7, 0, 0]]),
            "attention_mask": torch.tensor([[1, 1, 0], [1, 0, 0]]),
            "labels": torch.tensor([1, 0]),
        },
    )()
    batch = CLS.batch(data, torch.tensor([1]))
    args, kwargs = CLS.model_inputs(batch)
    assert args == ()
    assert torch.equal(kwargs["input_ids"], torch.tensor([[7, 0, 0]]))
    assert torch.equal(kwargs["attention_mask"], torch.tensor([[1, 0, 0]]))
    assert torch.equal(batch.targets, torch.tensor([0]))
    assert get_task("sequence-classification").primary_metric.key == "val_accuracy"


def test_a_tiny_causal_lm_learns_shakespeare_while_lbc_makes_it_2_to_4(
    shakespeare: Path, bpe_tokenizer: Path
) -> None:
    data = load_data(
        DataConfig(
            source="text", path=str(shakespeare), tokenizer=str(bpe_tokenizer), block_size=32, limit=500
        )
    )
    assert data.vocab_size == 512 and data.input_shape == (32,)
    assert len(data.train) == 400 and len(data.val) == 100  # the last 20 % of the blocks validate
    torch.manual_seed(0)
    model = TinyCausalLM(vocab_size=512, max_positions=32, embed_dim=32, depth=1, num_heads=2)
    sparsifier = build_sparsifier(
        SparsityConfig(method="lbc", pattern=NMPattern(2, 4), schedule=RemovalSchedule(0, 1, per_step=True))
    )
    sparsifier.prepare(model)
    before = evaluate(model, data.val, device=torch.device("cpu"), task=LM)
    config = TrainConfig(epochs=2, batch_size=16, optimizer="adamw", lr=1e-2, warmup_epochs=0.2, device="cpu")
    outcome = Trainer(model, sparsifier, config, data.train, data.val, task=LM).fit()
    perplexities = [record["val_perplexity"] for record in outcome.history]
    # Measured: 603 untrained (a uniform guess over 512 tokens scores 512), 179 and 156 after each epoch.
    assert before["perplexity"] > 400
    assert perplexities[-1] < 0.4 * before["perplexity"], perplexities
    assert {"train_loss", "train_perplexity", "val_loss", "val_perplexity"} <= set(outcome.history[-1])
    report = sparsifier.finalize()
    assert report.all_verified and len(report.layers) > 0


class _BagOfTokens(nn.Module):
    """Mean of the embeddings of the real (unmasked) tokens, then a linear classifier."""

    def __init__(self, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 32)
        self.hidden = nn.Linear(32, 32)
        self.head = nn.Linear(32, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)
        return self.head(torch.relu(self.hidden(pooled)))


def test_sequence_classification_learns_which_play_character_speaks(
    tmp_path: Path, shakespeare: Path, bpe_tokenizer: Path
) -> None:
    # Real lines labelled by their speaker, for the two speakers with the most lines of at least 5 words.
    speaker, rows = "", []
    for line in shakespeare.read_text(encoding="utf-8").splitlines():
        if line.endswith(":") and line[:-1].replace(" ", "").isalpha():
            speaker = line[:-1]
        elif len(line.split()) >= 5 and speaker:
            rows.append((line, speaker))
    top = [name for name, _ in Counter(s for _, s in rows).most_common(2)]
    picked = [{"text": text, "label": who} for text, who in rows if who in top][:1200]
    path = tmp_path / "lines.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in picked), encoding="utf-8")

    data = load_data(
        DataConfig(source="labeled-text", path=str(path), tokenizer=str(bpe_tokenizer), max_length=24)
    )
    assert data.classes == sorted(top)  # string labels map to ids in sorted order
    assert data.train.input_ids.shape[1] == 24
    torch.manual_seed(0)
    model = _BagOfTokens(512, 2)
    sparsifier = build_sparsifier(SparsityConfig(method="dense"))
    sparsifier.prepare(model)
    config = TrainConfig(epochs=6, batch_size=32, optimizer="adamw", lr=1e-2, device="cpu")
    outcome = Trainer(model, sparsifier, config, data.train, data.val, task=CLS).fit()
    majority = float(torch.bincount(data.val.labels).max()) / len(data.val)
    assert outcome.history[-1]["val_accuracy"] > majority + 0.03, (outcome.history[-1], majority)


def test_a_language_model_at_a_uniform_guess_s_perplexity_did_not_learn() -> None:
    blocks = TokenBlocks(torch.zeros(2, 8, dtype=torch.int64), vocab_size=512)
    train = TrainConfig(optimizer="adamw", lr=0.5, batch_size=16)
    (warning,) = LM.learning_warnings([], {"loss": 6.2, "perplexity": 490.0}, train, blocks)
    assert warning.code == "did_not_learn"
    assert (
        "validation perplexity 490.0 is near that of a uniform guess over its 512 tokens" in warning.message
    )
    assert "try a lower train.lr" in warning.message
    assert LM.learning_warnings([], {"loss": 5.0, "perplexity": 156.0}, train, blocks) == []
