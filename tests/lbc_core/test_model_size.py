"""The torch-free size arithmetic of ``jobs.sizing`` against the models the engine really builds.

Parameter and Linear/Conv2d weight counts must be exact; so must the per-sample output elements of the
Linear/Conv2d layers (counted here with forward hooks), which the activation estimate is built on.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from jobs.catalog import ARCHITECTURES
from jobs.sizing import default_input_shape, model_arguments, model_shape
from lbc_core import pipeline
from lbc_core.models import build_model

# (architecture, args, per-sample input shape or None for the architecture's own): small settings plus
# the defaults (sizes the catalog quotes) and odd widths and sizes that exercise the rounding.
CASES: list[tuple[str, dict[str, Any], tuple[int, ...] | None]] = [
    ("mlp", {}, None),
    ("mlp", {"hidden_sizes": [100, 37, 8], "width": 1.3}, (3, 5, 7)),
    ("mlp", {"depth": 3, "hidden_dim": 50, "num_classes": 7}, (64,)),
    ("lenet5", {}, (1, 28, 28)),
    ("lenet5", {"width": 2.5, "num_classes": 100}, (3, 32, 32)),
    ("lenet5", {}, (1, 8, 8)),
    ("resnet20", {}, (3, 32, 32)),
    ("resnet20", {"width": 0.5}, (1, 9, 13)),
    ("resnet32", {"width": 0.25}, (3, 16, 16)),
    ("resnet56", {}, (1, 8, 8)),
    ("resnet18", {}, None),
    ("resnet18", {"width": 0.25, "num_classes": 10}, (1, 33, 47)),
    ("resnet34", {"width": 0.125}, (3, 64, 64)),
    ("resnet50", {}, None),
    ("resnet50", {"width": 0.25, "num_classes": 17}, (3, 40, 40)),
    ("mobilenetv2", {}, None),
    ("mobilenetv2", {"width": 0.35, "num_classes": 10}, (3, 32, 32)),
    ("mobilenetv2", {"width": 1.4, "dropout": 0.0}, (1, 37, 37)),
    ("vit", {}, None),
    ("vit", {"depth": 2, "embed_dim": 48, "num_heads": 4, "mlp_ratio": 2.5}, (1, 28, 28)),
    ("vit", {"image_size": 16, "patch_size": 8, "depth": 1}, (3, 16, 16)),
]


def _measured(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    outputs: list[int] = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: outputs.append(out[0].numel()))
        for module in model.modules()
        if isinstance(module, nn.Linear | nn.Conv2d)
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    for hook in hooks:
        hook.remove()
    parameters = sum(p.numel() for p in model.parameters())
    weights = sum(
        module.weight.numel() for module in model.modules() if isinstance(module, nn.Linear | nn.Conv2d)
    )
    return parameters, weights, sum(outputs), max(outputs)


@pytest.mark.parametrize(("architecture", "args", "input_shape"), CASES)
def test_estimate_equals_the_built_model(
    architecture: str, args: dict[str, Any], input_shape: tuple[int, ...] | None
) -> None:
    full = model_arguments(architecture, args, input_shape)
    model = build_model(architecture, **full)
    estimated = model_shape(architecture, args, input_shape)
    shape = input_shape or default_input_shape(architecture, full)
    parameters, weights, outputs, largest = _measured(model, shape)
    assert estimated.parameters == parameters
    assert estimated.weight_parameters == weights
    assert estimated.layer_outputs == outputs
    assert estimated.largest_output == largest


def test_every_catalog_architecture_is_covered() -> None:
    assert {case[0] for case in CASES} == set(ARCHITECTURES)


def test_the_issue_examples_are_far_too_big_without_building_them() -> None:
    # mlp hidden_sizes [65536] * 64: about 270 G parameters; resnet50 at width 16: about 6 G.
    assert model_shape("mlp", {"hidden_sizes": [65536] * 64}).parameters > 270 * 10**9
    assert model_shape("resnet50", {"width": 16}).parameters > 6 * 10**9


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
@pytest.mark.parametrize("input_shape", [(1, 8, 8), (3, 32, 32), (64,)])
def test_arguments_are_filled_from_the_data_as_the_engine_does(
    architecture: str, input_shape: tuple[int, ...]
) -> None:
    data = SimpleNamespace(num_classes=7, input_shape=input_shape, vocab_size=None)
    given = {"width": 0.5} if "width" in ARCHITECTURES[architecture].defaults else {}
    engine = pipeline.model_arguments(pipeline.ModelConfig(architecture, given), data)  # type: ignore[arg-type]
    expected = {**ARCHITECTURES[architecture].defaults, **engine}
    assert model_arguments(architecture, given, input_shape, num_classes=7) == expected
