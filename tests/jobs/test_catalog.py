"""The torch-free architecture catalog (lbc_catalog) is what both the service and the engine read."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobs.catalog import (
    ARCHITECTURES,
    check_model_args,
    list_architectures,
    render_catalog,
    weight_layer_names,
)
from lbc_core import models


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_catalog_architecture_builds_in_the_engine_with_its_defaults(name: str) -> None:
    assert models.get_architecture(name) is ARCHITECTURES[name]
    if name not in {"resnet50", "resnet34", "mobilenetv2"}:  # large: built by the layer-table test
        models.build_model(name)


def test_the_engine_lists_exactly_the_catalog() -> None:
    assert models.list_architectures() == list_architectures()
    assert set(models._BUILDERS) == set(ARCHITECTURES)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_default_arguments_pass_the_catalog_rules(name: str) -> None:
    assert check_model_args(name, dict(ARCHITECTURES[name].defaults)) == []


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("lenet5", {"num_classes": 100_000, "in_channels": 1024, "width": 0.25}),
        ("mlp", {"hidden_sizes": [8, 16], "input_features": 64, "depth": 1}),
        ("vit", {"image_size": 16, "patch_size": 8, "embed_dim": 16, "num_heads": 4, "mlp_ratio": 2}),
        ("mobilenetv2", {"dropout": 0.0, "width": 0.5}),
    ],
)
def test_arguments_the_catalog_accepts_build_in_the_engine(name: str, args: dict[str, object]) -> None:
    assert check_model_args(name, args) == []
    models.build_model(name, **args)


def test_render_catalog_names_every_architecture() -> None:
    text = render_catalog()
    assert all(f"  {name}: " in text for name in ARCHITECTURES)


def test_jobs_imports_neither_torch_nor_the_engine() -> None:
    code = (
        "import sys, jobs, jobs.spec, jobs.catalog; "
        "bad = [m for m in ('torch', 'lbc_core', 'fastapi') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spec_choices_match_the_engine() -> None:
    from typing import get_args

    from jobs import spec
    from lbc_core import data, sparsity, training

    assert spec.METHODS == sparsity.METHODS == get_args(spec.SparsitySpec.model_fields["method"].annotation)
    # Both read the sources from lbc_catalog.tasks; the schema offers exactly those.
    assert spec.SOURCES == data.SOURCES
    assert spec.DatasetSpec.model_json_schema()["properties"]["source"]["enum"] == list(spec.SOURCES)
    assert get_args(spec.TrainSpec.model_fields["optimizer"].annotation) == training.OPTIMIZERS
    assert get_args(spec.TrainSpec.model_fields["lr_schedule"].annotation) == training.LR_SCHEDULES
    assert spec.MAX_M == sparsity.pattern.MAX_M
    assert get_args(spec.SparsitySpec.model_fields["score_init"].annotation) == sparsity.SCORE_INITS


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("lenet5", {"width": 0.5, "num_classes": 3, "in_channels": 3}),
        ("resnet20", {"width": 0.5, "in_channels": 1}),
        ("mobilenetv2", {"width": 0.5, "num_classes": 5}),
        ("vit", {"image_size": 16, "patch_size": 8, "embed_dim": 16, "num_heads": 4}),
        ("mlp", {"input_features": 64, "hidden_dim": 8}),
    ],
)
def test_layer_names_depend_only_on_the_structural_arguments(name: str, args: dict[str, object]) -> None:
    """What lets the API check include patterns from the catalog for any non-structural arguments."""
    from lbc_core.sparsity.selection import weight_layers

    built = [layer for layer, _ in weight_layers(models.build_model(name, **args))]
    assert weight_layer_names(name, args) == tuple(built)
    assert weight_layer_names(name, {**args, "depth": 3}) is None
