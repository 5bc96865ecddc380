"""ONNX export of 2:4 models at their catalog sizes: time, file sizes, Gemm/Conv weights found N:M, and how far
onnxruntime on CPU is from PyTorch for the fp32 and fp16 graphs (the bounds the export checks against).

Each model is finalized by the one-shot 2:4 sparsifier (no training: the numbers are about the export), its
BatchNorm layers given trained-like statistics.
Usage: python benchmarks/onnx_export.py [ARCH ...]   (default: mlp lenet5 resnet20 vit mobilenetv2 gpt2)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from lbc_core.export.onnx_export import ONNX_FILE, ONNX_FP16_FILE, OnnxInputs, export_onnx
from lbc_core.models import build_model
from lbc_core.sparsity import NMPattern, SparsityConfig, build_sparsifier, magnitude_mask

PATTERN = NMPattern(2, 4)
CATALOG = {
    "mlp": ({"num_classes": 10}, (784,)),
    "lenet5": ({"num_classes": 10, "in_channels": 1}, (1, 28, 28)),
    "resnet20": ({"num_classes": 10}, (3, 32, 32)),
    "vit": ({"num_classes": 10}, (3, 32, 32)),
    "mobilenetv2": ({"num_classes": 10}, (3, 32, 32)),
}


def catalog_case(name: str) -> tuple[nn.Module, OnnxInputs, list[str]]:
    args, shape = CATALOG[name]
    model = build_model(name, **args)
    with torch.no_grad():  # BatchNorm like a trained network's: fresh MobileNetV2 outputs are ~1e-10
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    sparsifier = build_sparsifier(SparsityConfig(method="asp", pattern=PATTERN))
    sparsifier.prepare(model)
    report = sparsifier.finalize()
    return model.eval(), OnnxInputs.single(torch.randn(4, *shape)), [layer.name for layer in report.layers]


def gpt2_case() -> tuple[nn.Module, OnnxInputs, list[str]]:
    """A GPT-2 of 4 layers, 256 wide (Conv1D weights): 2:4 masks along each weight's input dimension."""
    import transformers

    config = transformers.GPT2Config(
        vocab_size=1024, n_embd=256, n_layer=4, n_head=4, n_positions=128, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    names = []
    with torch.no_grad():
        for name, module in model.named_modules():
            if type(module).__name__ == "Conv1D":  # [in, out]: groups run down the columns
                module.weight.mul_(magnitude_mask(module.weight.t(), PATTERN).t())
                names.append(name)
    ids = torch.randint(0, 1024, (2, 32))
    inputs = OnnxInputs.by_keyword({"input_ids": ids}, options={"use_cache": False})
    return model, inputs, names


def main(names: list[str]) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; pattern {PATTERN}; onnxruntime CPU")
    header = (
        f"{'model':12} {'export s':>8} {'fp32 MiB':>8} {'fp16 MiB':>8} {'N:M/sparsified':>15} "
        f"{'fp32 err':>9} {'fp16 err':>9} {'out max':>8}  status"
    )
    print(header)
    for name in names:
        torch.manual_seed(0)
        model, inputs, sparsified = gpt2_case() if name == "gpt2" else catalog_case(name)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = export_onnx(model, inputs, tmp, pattern=PATTERN, sparsified=sparsified)
            seconds = time.perf_counter() - start
            sizes = [
                (Path(tmp) / file).stat().st_size / 2**20 if (Path(tmp) / file).is_file() else float("nan")
                for file in (ONNX_FILE, ONNX_FP16_FILE)
            ]
        fp32, fp16 = result.variants
        nm = sum(1 for init in fp32.initializers if init.nm and init.sparsified)
        errors = [max((c.max_abs_error for c in v.checks), default=float("nan")) for v in (fp32, fp16)]
        scale = max((c.scale for c in fp32.checks), default=float("nan"))
        print(
            f"{name:12} {seconds:8.1f} {sizes[0]:8.2f} {sizes[1]:8.2f} {f'{nm}/{len(sparsified)}':>15} "
            f"{errors[0]:9.2e} {errors[1]:9.2e} {scale:8.3f}  {fp32.status}/{fp16.status}"
        )


if __name__ == "__main__":
    main(sys.argv[1:] or [*CATALOG, "gpt2"])
