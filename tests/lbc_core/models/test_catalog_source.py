"""The catalog source: built-in architectures, a user's state dict, and torchvision's key layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lbc_core.models.source import CatalogSource, DataFacts, ModelSourceError, rebuild_skeleton


def torchvision_resnet50_layout(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's ``resnet50().state_dict()``, written from its documented structure:
    a 7x7 stem conv1/bn1, layer1..layer4 of 3/4/6/3 Bottlenecks (conv1 1x1, conv2 3x3, conv3 1x1 with
    expansion 4, bn1..bn3, downsample.0 conv + downsample.1 bn in each stage's first block) and fc."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True), start=1):
        for block in range(blocks):
            p = f"layer{stage}.{block}"
            shapes[f"{p}.conv1.weight"] = (width, inplanes, 1, 1)
            bn(f"{p}.bn1", width)
            shapes[f"{p}.conv2.weight"] = (width, width, 3, 3)
            bn(f"{p}.bn2", width)
            shapes[f"{p}.conv3.weight"] = (width * 4, width, 1, 1)
            bn(f"{p}.bn3", width * 4)
            if block == 0:
                shapes[f"{p}.downsample.0.weight"] = (width * 4, inplanes, 1, 1)
                bn(f"{p}.downsample.1", width * 4)
            inplanes = width * 4
    shapes["fc.weight"] = (num_classes, 2048)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def test_a_torchvision_layout_resnet50_state_dict_loads_into_the_catalog_resnet50(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    state = {
        key: (torch.randn(shape, generator=generator) if shape else torch.tensor(5))
        for key, shape in torchvision_resnet50_layout().items()
    }
    save_file(state, str(tmp_path / "resnet50.safetensors"))
    built = CatalogSource("resnet50", checkpoint=str(tmp_path / "resnet50.safetensors")).build(
        DataFacts(1000, (3, 224, 224))
    )
    loaded = built.model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[key], state[key]) for key in state)
    assert {name: d.role for name, d in built.dense_defaults.items()} == {"conv1": "stem", "fc": "head"}
    assert built.record == {"name": "resnet50", "args": {"num_classes": 1000, "in_channels": 3}}


def test_a_state_dict_of_another_layout_is_refused_naming_the_tensors(tmp_path: Path) -> None:
    state = {key: torch.zeros(shape) for key, shape in torchvision_resnet50_layout(10).items()}
    save_file(state, str(tmp_path / "r.safetensors"))
    with pytest.raises(ModelSourceError, match=r"wrong shape fc.bias \(10,\) != \(1000,\)"):
        CatalogSource("resnet50", {"num_classes": 1000}, str(tmp_path / "r.safetensors")).build(
            DataFacts(10, (3, 224, 224))
        )


def test_the_record_rebuilds_the_same_architecture() -> None:
    built = CatalogSource("lenet5").build(DataFacts(3, (1, 8, 8)))
    again = rebuild_skeleton(built.record)
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in built.model.state_dict().items()
    }
    with pytest.raises(ModelSourceError, match="unknown model source 'zoo'"):
        rebuild_skeleton({"source": "zoo", "name": "x", "args": {}})
