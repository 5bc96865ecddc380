"""GEMM shapes from real forward passes: Linear rows, conv implicit GEMMs, ViT tokens, and FLOPs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lbc_core.benchmark import GemmShape, GemmShapeError, architecture_input_shape, layer_gemms
from lbc_core.models import build_model


def test_linear_gemm_is_batch_by_in_by_out() -> None:
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    gemms = layer_gemms(model, (64,))
    first = gemms["0"]
    assert (first.kind, first.rows_per_sample, first.k, first.n) == ("Linear", 1, 64, 32)
    assert first.at_batch(16) == GemmShape(m=16, n=32, k=64)
    assert gemms["2"].at_batch(16) == GemmShape(m=16, n=10, k=32)


def test_conv_gemm_uses_the_output_size_produced_by_stride_and_padding() -> None:
    conv = nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1)
    gemm = layer_gemms(nn.Sequential(conv), (8, 32, 32))["0"]
    # 32x32 input, stride 2, padding 1 -> 16x16 output; im2col rows = batch * 16 * 16, K = 8 * 3 * 3.
    assert gemm.at_batch(4) == GemmShape(m=4 * 16 * 16, n=16, k=8 * 9)
    assert gemm.sample_input_shape == (8, 32, 32)

    unpadded = layer_gemms(nn.Sequential(nn.Conv2d(8, 16, kernel_size=5)), (8, 32, 32))["0"]
    assert unpadded.at_batch(1) == GemmShape(m=28 * 28, n=16, k=8 * 25)


def test_conv_after_pooling_sees_the_reduced_spatial_size() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1))
    gemms = layer_gemms(model, (3, 20, 20))
    assert gemms["0"].rows_per_sample == 400
    assert gemms["2"].rows_per_sample == 100
    assert gemms["2"].sample_input_shape == (8, 10, 10)


def test_grouped_conv_reduces_over_its_group_only() -> None:
    gemm = layer_gemms(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8)), (8, 6, 6))["0"]
    assert gemm.at_batch(1) == GemmShape(m=36, n=8, k=9, groups=8)
    assert gemm.dense_flops() == 2 * 36 * 8 * 9


def test_vit_linear_rows_count_tokens() -> None:
    model = build_model("vit", image_size=16, patch_size=4, depth=1, embed_dim=64, num_heads=2)
    gemms = layer_gemms(model, (3, 16, 16))
    tokens = (16 // 4) ** 2 + 1  # patches plus the cls token
    assert gemms["blocks.0.attn.qkv"].at_batch(8) == GemmShape(m=8 * tokens, n=192, k=64)
    assert gemms["blocks.0.mlp.fc2"].at_batch(2) == GemmShape(m=2 * tokens, n=64, k=256)
    assert gemms["head"].at_batch(8) == GemmShape(m=8, n=10, k=64)  # classifies the cls token only
    assert gemms["patch_embed"].at_batch(1) == GemmShape(m=16, n=64, k=3 * 16)


def test_flop_arithmetic() -> None:
    shape = GemmShape(m=32, n=64, k=128)
    assert shape.flops == 2 * 32 * 64 * 128
    assert shape.nm_flops(0.5) == shape.flops / 2
    assert shape.nm_flops(0.25) == shape.flops / 4
    gemm = layer_gemms(nn.Sequential(nn.Linear(128, 64)), (128,))["0"]
    assert gemm.dense_flops(32) == shape.flops
    assert gemm.nm_flops(0.5, 32) == shape.flops / 2


def test_a_layer_run_twice_counts_twice() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(16, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc(x))

    gemm = layer_gemms(Shared(), (16,))["fc"]
    assert gemm.calls == 2
    assert gemm.dense_flops() == 2 * (2 * 1 * 16 * 16)


def test_mode_is_restored_and_only_requested_layers_are_hooked() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4)).train()
    gemms = layer_gemms(model, (8,), layers=["1"])
    assert list(gemms) == ["1"]
    assert model.training
    assert not model[0]._forward_hooks and not model[1]._forward_hooks


def test_errors_name_the_problem() -> None:
    with pytest.raises(GemmShapeError, match=r"input shape \(1, 5\) failed"):
        layer_gemms(nn.Sequential(nn.Linear(8, 8)), (5,))
    with pytest.raises(GemmShapeError, match="'nope'"):
        layer_gemms(nn.Sequential(nn.Linear(8, 8)), (8,), layers=["nope"])


def test_architecture_input_shapes() -> None:
    assert architecture_input_shape("lenet5", {"in_channels": 1}) == (1, 28, 28)
    assert architecture_input_shape("resnet20", {}) == (3, 32, 32)
    assert architecture_input_shape("mlp", {"input_features": 64}) == (64,)
    assert architecture_input_shape("vit", {"image_size": 16}) == (3, 16, 16)
