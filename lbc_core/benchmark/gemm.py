"""The GEMM each Linear and Conv2d layer runs at a given input size, and its dense and N:M FLOPs.

Every layer is read as ``Y[M, N] = X[M, K] @ W[N, K]^T``. A Linear's M counts all of its input rows
(batch x tokens for a transformer); a Conv2d is its implicit GEMM (im2col): M = batch x Ho x Wo,
K = in/groups x kh x kw, N = out. Shapes come from forward hooks on one real forward pass, so convs
see the spatial sizes the model actually produces (strides, padding, pooling included).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from lbc_core.models import get_architecture


class GemmShapeError(ValueError):
    """The model could not be run at the requested input shape, or a layer could not be read as a GEMM."""


@dataclass(frozen=True)
class GemmShape:
    """``M x N x K``: M rows of inputs, N outputs, K the reduction (the dimension N:M groups run along)."""

    m: int
    n: int
    k: int
    groups: int = 1  # grouped conv: ``groups`` GEMMs of N/groups outputs each, same total work

    @property
    def flops(self) -> int:
        """Dense multiply-adds counted as 2 FLOPs each."""
        return 2 * self.m * self.n * self.k

    def nm_flops(self, density: float) -> float:
        """FLOPs of an ideal N:M kernel that skips every pruned weight: ``flops x density``."""
        return self.flops * density


@dataclass(frozen=True)
class LayerGemm:
    """One layer's GEMM per sample, recorded from a forward pass at batch size 1."""

    name: str
    kind: str  # "Linear" | "Conv2d"
    weight_shape: tuple[int, ...]
    # The layer's input for one sample (batch dimension dropped), e.g. (tokens, features) or (C, H, W).
    sample_input_shape: tuple[int, ...]
    rows_per_sample: int  # M at batch size 1
    n: int
    k: int
    groups: int
    calls: int  # times the layer ran in one forward pass (weight sharing runs a GEMM more than once)

    def at_batch(self, batch_size: int) -> GemmShape:
        """The GEMM at ``batch_size``: M grows linearly with the batch, N and K are fixed by the weight."""
        return GemmShape(m=self.rows_per_sample * batch_size, n=self.n, k=self.k, groups=self.groups)

    def dense_flops(self, batch_size: int = 1) -> int:
        return self.at_batch(batch_size).flops * self.calls

    def nm_flops(self, density: float, batch_size: int = 1) -> float:
        return self.at_batch(batch_size).nm_flops(density) * self.calls


def _gemm_of(name: str, module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> LayerGemm:
    if isinstance(module, nn.Linear):
        k = module.in_features
        return LayerGemm(
            name=name,
            kind="Linear",
            weight_shape=(module.out_features, k),
            sample_input_shape=tuple(inputs.shape[1:]),
            # Batch size is 1, so every row of the input (tokens, positions, ...) belongs to the sample.
            rows_per_sample=inputs.numel() // k,
            n=module.out_features,
            k=k,
            groups=1,
            calls=1,
        )
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        # The output's spatial size is what im2col produces, whatever stride/padding/dilation made it.
        ho, wo = int(output.shape[-2]), int(output.shape[-1])
        return LayerGemm(
            name=name,
            kind="Conv2d",
            weight_shape=tuple(module.weight.shape),
            sample_input_shape=tuple(inputs.shape[1:]),
            rows_per_sample=ho * wo,
            n=module.out_channels,
            k=module.in_channels // module.groups * kh * kw,
            groups=module.groups,
            calls=1,
        )
    raise GemmShapeError(
        f"layer {name!r} is a {type(module).__name__}; only Linear and Conv2d are GEMMs here"
    )


def gemm_layers(model: nn.Module) -> list[tuple[str, nn.Linear | nn.Conv2d]]:
    """Linear and Conv2d layers in registration order (the layers N:M sparsity can apply to)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def layer_gemms(
    model: nn.Module,
    sample_input_shape: Sequence[int],
    *,
    layers: Iterable[str] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, LayerGemm]:
    """Per-layer GEMMs from one forward pass of a random batch of 1 (in eval mode, without gradients).

    ``sample_input_shape`` excludes the batch dimension, e.g. ``(3, 32, 32)``. Layers the forward pass
    never reaches are absent from the result. The model's train/eval mode is restored afterwards.
    """
    wanted = None if layers is None else set(layers)
    modules = {name: m for name, m in gemm_layers(model) if wanted is None or name in wanted}
    if wanted is not None and (missing := sorted(wanted - set(modules))):
        raise GemmShapeError(f"no Linear/Conv2d layer named {', '.join(map(repr, missing))} in the model")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    found: dict[str, LayerGemm] = {}

    def hook_for(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not args or not isinstance(args[0], torch.Tensor) or not isinstance(output, torch.Tensor):
                return
            gemm = _gemm_of(name, module, args[0], output)
            previous = found.get(name)
            found[name] = gemm if previous is None else _one_more_call(previous)

        return hook

    shape = tuple(int(s) for s in sample_input_shape)
    handles = [module.register_forward_hook(hook_for(name)) for name, module in modules.items()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            # A private generator: reading shapes must not advance the caller's global RNG.
            generator = torch.Generator(device=device).manual_seed(0)
            model(torch.randn((1, *shape), generator=generator, device=device, dtype=dtype))
    except Exception as exc:  # any model error: report the input shape that caused it
        raise GemmShapeError(
            f"a forward pass with input shape (1, {', '.join(map(str, shape))}) failed: {exc}"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: found[name] for name in modules if name in found}


def _one_more_call(gemm: LayerGemm) -> LayerGemm:
    return replace(gemm, calls=gemm.calls + 1)


def architecture_input_shape(name: str, args: Mapping[str, Any]) -> tuple[int, ...]:
    """The per-sample input shape a zoo architecture is built for, from its registered defaults and ``args``."""
    info = get_architecture(name)
    merged = {**info.defaults, **args}
    if info.input_size == (0, 0):  # flat-input MLP
        return (int(merged["input_features"]),)
    height, width = info.input_size
    if "image_size" in merged:  # the ViT's position embedding fixes its input size
        height = width = int(merged["image_size"])
    return (int(merged["in_channels"]), height, width)
