"""Decoders on the N:M kernel: a transformers Llama and GPT-2 (whose Conv1D stores [in, out]) made 2:4 by
one-shot magnitude masks give the masked dense model's logits and the same greedy tokens with the KV cache."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from lbc_core.kernels.swap import NMLinear, swap_to_nm_kernel
from lbc_core.sparsity import NMPattern, magnitude_mask
from lbc_core.sparsity.selection import adapter_for, weight_layers

pytestmark = pytest.mark.usefixtures("native")

transformers = pytest.importorskip("transformers")

PATTERN = NMPattern(2, 4)
# Logits are compared with these tolerances (measured differences on these models: about 1e-7 in fp32,
# 0 in bf16). fp32: the kernel sums in another order than PyTorch's linear. bf16: both sides accumulate
# in float32 and round each layer's output once, so a difference is at most a few bf16 steps (2**-8 at
# the logits' magnitude, which is below 1 here) where one rounding lands the other way.
TOLERANCES = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (0.0, 2e-2)}  # (rtol, atol)

TINY_LLAMA: dict[str, Any] = {
    "vocab_size": 96,
    "hidden_size": 64,
    "intermediate_size": 176,  # not a multiple of 16: the kernel's padded last row block is exercised
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}
TINY_GPT2: dict[str, Any] = {
    "vocab_size": 96,
    "n_embd": 64,
    "n_layer": 2,
    "n_head": 4,
    "n_positions": 64,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def _one_shot_24(model: nn.Module) -> list[str]:
    """Magnitude 2:4 on every linear-like layer except the LM head, in the layer's own weight layout."""
    masked = []
    with torch.no_grad():
        for name, module in weight_layers(model):
            adapter = adapter_for(module)
            if name == "lm_head" or adapter is None:
                continue
            weight = module.weight
            assert isinstance(weight, torch.Tensor)
            weight.mul_(magnitude_mask(weight, PATTERN, adapter.layout))
            masked.append(name)
    return masked


def _model(kind: str, dtype: torch.dtype) -> tuple[nn.Module, list[str]]:
    torch.manual_seed(0)
    model: nn.Module
    if kind == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA))
    else:
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY_GPT2))
    model = model.to(dtype).eval()
    return model, _one_shot_24(model)


def _greedy(model: Any, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    with torch.no_grad():
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
        )
    return out[:, prompt.shape[1] :]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_decoder_on_the_kernel_matches_the_masked_dense_model(kind: str, dtype: torch.dtype) -> None:
    model, masked = _model(kind, dtype)
    prompt = torch.randint(1, TINY_LLAMA["vocab_size"], (1, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected_logits = model(prompt).logits
    expected_tokens = _greedy(model, prompt, 6)

    result = swap_to_nm_kernel(model, PATTERN, measure=False)

    assert set(result.swapped) == set(masked) and "lm_head" not in result.swapped
    # Llama: q, k, v, o, gate, up, down per layer; GPT-2: c_attn, c_proj, c_fc, mlp.c_proj (all Conv1D).
    assert len(masked) == TINY_LLAMA["num_hidden_layers"] * (7 if kind == "llama" else 4)
    for name in masked:
        assert isinstance(model.get_submodule(name), NMLinear)
    with torch.no_grad():
        actual_logits = model(prompt).logits
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(actual_logits.float(), expected_logits.float(), rtol=rtol, atol=atol)
    # Greedy decoding step by step with the KV cache: identical token ids.
    assert torch.equal(_greedy(model, prompt, 6), expected_tokens)


def test_gpt2_conv1d_that_is_not_nm_stays_dense_with_its_reason() -> None:
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY_GPT2)).eval()
    with torch.no_grad():
        # Masked along its *output* dimension (the [in, out] weight read as if it were [out, in]): not N:M
        # along the inputs, which is what the kernel needs.
        attn = model.transformer.h[0].attn.c_attn
        attn.weight.mul_(magnitude_mask(attn.weight, PATTERN))
    result = swap_to_nm_kernel(model, PATTERN, layer_names=["transformer.h.0.attn.c_attn"], measure=False)
    assert result.swapped == ()
    assert "not 2:4 sparse along its input dimension" in result.kept_dense[0].reason
