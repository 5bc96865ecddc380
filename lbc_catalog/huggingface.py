"""The Hugging Face ``transformers`` architectures a user may upload, and the class built for each task.

Only architectures that the ``transformers`` package itself defines are listed: the server builds them from
the cleaned ``config.json`` with the class named here, never with code that came with a model. Every family
listed has its layer layout checked by the engine's layer adapters (which dimension of each weight is the
reduction dimension; which weights are tied).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lbc_catalog.tasks import CAUSAL_LM, IMAGE_CLASSIFICATION, SEQUENCE_CLASSIFICATION


@dataclass(frozen=True)
class HFFamily:
    """One allowed ``model_type``: the ``transformers`` class to build for each task it supports."""

    model_type: str
    description: str
    # task name -> transformers class name (looked up on the transformers package, never imported by name
    # from user input).
    classes: Mapping[str, str] = field(hash=False)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.classes)


def _family(model_type: str, description: str, **classes: str) -> HFFamily:
    by_task = {
        {"image": IMAGE_CLASSIFICATION, "sequence": SEQUENCE_CLASSIFICATION, "causal": CAUSAL_LM}[k]: v
        for k, v in classes.items()
    }
    return HFFamily(model_type, description, MappingProxyType(by_task))


HF_FAMILIES: Mapping[str, HFFamily] = MappingProxyType(
    {
        family.model_type: family
        for family in (
            _family("bert", "BERT encoder", sequence="BertForSequenceClassification"),
            _family("roberta", "RoBERTa encoder", sequence="RobertaForSequenceClassification"),
            _family("distilbert", "DistilBERT encoder", sequence="DistilBertForSequenceClassification"),
            _family(
                "gpt2",
                "GPT-2 decoder (Conv1D layers store weights as [in, out])",
                causal="GPT2LMHeadModel",
                sequence="GPT2ForSequenceClassification",
            ),
            _family(
                "llama",
                "Llama decoder",
                causal="LlamaForCausalLM",
                sequence="LlamaForSequenceClassification",
            ),
            _family(
                "qwen2",
                "Qwen2 decoder",
                causal="Qwen2ForCausalLM",
                sequence="Qwen2ForSequenceClassification",
            ),
            _family(
                "mistral",
                "Mistral decoder",
                causal="MistralForCausalLM",
                sequence="MistralForSequenceClassification",
            ),
            _family("vit", "Vision Transformer", image="ViTForImageClassification"),
            _family("deit", "DeiT vision transformer", image="DeiTForImageClassification"),
        )
    }
)


def hf_class_for(model_type: str, task: str) -> str:
    """The transformers class name for ``model_type`` on ``task``; ValueError naming the choices otherwise."""
    family = HF_FAMILIES.get(model_type)
    if family is None:
        raise ValueError(
            f"model_type {model_type!r} is not an allowed architecture; allowed: {', '.join(HF_FAMILIES)}"
        )
    name = family.classes.get(task)
    if name is None:
        raise ValueError(
            f"a {model_type} model cannot do task {task!r}; it supports: {', '.join(family.tasks)}"
        )
    return name
