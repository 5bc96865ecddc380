"""A small decoder-only transformer language model (GPT layout): token and position embeddings, pre-norm
blocks with causal self-attention, and a language-model head.

It takes ``input_ids`` as a keyword, as ``transformers`` causal LMs do, and returns logits of shape
[batch, tokens, vocab_size]; the causal-LM task shifts the targets. Every projection is an ``nn.Linear``,
so the sparsifier sees all of them; the head is the last one registered (kept dense by default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .vit import Mlp

__all__ = ["CausalSelfAttention", "TinyCausalLM"]


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(x.transpose(1, 2).reshape(B, T, C))


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyCausalLM(nn.Module):
    def __init__(
        self,
        vocab_size: int = 256,
        max_positions: int = 128,
        embed_dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, embed_dim)
        self.position_embedding = nn.Embedding(max_positions, embed_dim)
        self.blocks = nn.Sequential(*[_Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.lm_head = nn.Linear(embed_dim, vocab_size)
        self.max_positions = max_positions

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        # attention_mask is accepted for a transformers-like call; packed blocks and the causal mask need none.
        tokens = int(input_ids.shape[1])
        if tokens > self.max_positions:
            raise ValueError(f"{tokens} tokens per sample, more than max_positions {self.max_positions}")
        positions = torch.arange(tokens, device=input_ids.device)
        x = self.token_embedding(input_ids) + self.position_embedding(positions)
        return self.lm_head(self.norm(self.blocks(x)))
