"""A Hugging Face config.json is data: allowed families only, remote code refused, selectors stripped."""

import json

import pytest

from lbc_catalog.huggingface import HF_FAMILIES, hf_class_for
from lbc_catalog.tasks import CAUSAL_LM, IMAGE_CLASSIFICATION
from lbc_formats.hf_config import HFConfigError, clean_config, parse_config


def _config(**extra: object) -> bytes:
    return json.dumps({"model_type": "llama", "hidden_size": 64, "vocab_size": 100, **extra}).encode()


def test_a_plain_config_is_kept_as_it_is() -> None:
    clean = parse_config(_config())
    assert clean.config == {"model_type": "llama", "hidden_size": 64, "vocab_size": 100}
    assert clean.model_type == "llama"
    assert clean.stripped == ()


def test_private_keys_and_implementation_selectors_are_stripped_and_named() -> None:
    clean = parse_config(
        _config(_name_or_path="/x", _attn_implementation="flash", attn_implementation="sdpa")
    )
    assert clean.stripped == ("_attn_implementation", "_name_or_path", "attn_implementation")
    assert set(clean.config) == {"model_type", "hidden_size", "vocab_size"}


@pytest.mark.parametrize("key", ["auto_map", "trust_remote_code", "quantization_config", "custom_pipelines"])
def test_keys_asking_for_remote_code_or_quantization_are_refused(key: str) -> None:
    with pytest.raises(HFConfigError, match=key):
        parse_config(_config(**{key: {"AutoModel": "modeling_evil.Evil"}}))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1, 2]", "JSON object"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"model_type": "llama", "hidden_size": NaN}', "NaN"),
        (json.dumps({"hidden_size": 4}).encode(), "no model_type"),
        (json.dumps({"model_type": "evilnet"}).encode(), "'evilnet' is not an allowed architecture"),
        (_config(vocab_size=10**12), "vocab_size must be an integer from 1 to"),
        (_config(hidden_size=True), "hidden_size must be an integer"),
        (_config(num_hidden_layers=0), "num_hidden_layers must be an integer"),
        (_config(id2label=["a"]), "id2label must be an object"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
        (b" " * (2 << 20), "the limit is"),
    ],
)
def test_a_config_that_cannot_be_built_from_names_its_problem(data: bytes, message: str) -> None:
    with pytest.raises(HFConfigError, match=message):
        parse_config(data)


def test_clean_config_refuses_what_is_not_an_object() -> None:
    with pytest.raises(HFConfigError, match="JSON object"):
        clean_config("llama")


def test_every_family_names_a_class_per_task_and_mismatches_name_the_choices() -> None:
    assert hf_class_for("gpt2", CAUSAL_LM) == "GPT2LMHeadModel"
    assert all(family.tasks for family in HF_FAMILIES.values())
    with pytest.raises(ValueError, match="supports: image-classification"):
        hf_class_for("vit", CAUSAL_LM)
    with pytest.raises(ValueError, match="not an allowed architecture"):
        hf_class_for("evilnet", IMAGE_CLASSIFICATION)


def test_every_allowed_family_is_a_class_that_transformers_defines() -> None:
    import transformers

    for family in HF_FAMILIES.values():
        for name in family.classes.values():
            assert hasattr(transformers, name), name
