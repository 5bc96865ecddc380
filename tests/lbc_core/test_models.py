"""Tests for the model zoo in lbc_core.models: registry, shapes, layer ordering and family details."""

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lbc_core.models import (
    ArchitectureInfo,
    UnknownArchitectureError,
    build_model,
    get_architecture,
    list_architectures,
)
from lbc_core.models.mobilenetv2 import MobileNetV2
from lbc_core.models.resnet import BasicBlock, Bottleneck, ResNet
from lbc_core.models.resnet_cifar import CifarResNet
from lbc_core.models.vit import Attention, Block, VisionTransformer

ALL_NAMES = [
    "mlp",
    "lenet5",
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenetv2",
    "vit",
]

# Cheap-but-representative configurations, so tests that loop over every architecture stay fast.
SMALL: dict[str, dict] = {
    "mlp": {"hidden_dim": 32},
    "lenet5": {},
    "resnet20": {"width": 0.5},
    "resnet32": {"width": 0.5},
    "resnet56": {"width": 0.5},
    "resnet18": {"width": 0.25},
    "resnet34": {"width": 0.25},
    "resnet50": {"width": 0.25},
    "mobilenetv2": {"width": 0.25},
    "vit": {"depth": 2, "embed_dim": 48},
}


def _input(
    name: str, batch: int = 2, in_channels: int | None = None, size: int | None = None
) -> torch.Tensor:
    info = get_architecture(name)
    c = info.defaults["in_channels"] if in_channels is None else in_channels
    if name == "mlp":
        return torch.randn(batch, info.defaults["input_features"])
    h = info.input_size[0] if size is None else size
    return torch.randn(batch, c, h, h)


def _prunable(model: nn.Module) -> list[tuple[str, nn.Linear | nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


# --------------------------------------------------------------------------------------------- registry


def test_registry_lists_every_architecture_once() -> None:
    infos = list_architectures()
    assert [i.name for i in infos] == ALL_NAMES
    for info in infos:
        assert isinstance(info, ArchitectureInfo)
        assert get_architecture(info.name) is info
        assert info.description
        assert {"num_classes", "in_channels"} <= set(info.defaults)
        assert len(info.input_size) == 2
    assert get_architecture("mlp").input_size == (0, 0)
    assert get_architecture("lenet5").input_size == (28, 28)
    assert get_architecture("resnet20").input_size == (32, 32)
    assert get_architecture("resnet50").input_size == (224, 224)
    assert get_architecture("vit").input_size == (32, 32)


def test_info_is_immutable_and_hashable() -> None:
    info = get_architecture("resnet20")
    with pytest.raises(TypeError):
        info.defaults["width"] = 2.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        info.name = "x"  # type: ignore[misc]
    assert len({info, get_architecture("resnet20")}) == 1


def test_vit_defaults_are_deit_tiny_like() -> None:
    d = get_architecture("vit").defaults
    assert (d["image_size"], d["patch_size"], d["depth"], d["embed_dim"], d["num_heads"], d["mlp_ratio"]) == (
        32,
        4,
        6,
        192,
        3,
        4.0,
    )


def test_width_is_accepted_by_conv_and_mlp_families() -> None:
    for name in ALL_NAMES:
        assert ("width" in get_architecture(name).defaults) == (name != "vit")


@pytest.mark.parametrize("bad", ["resnet", "ResNet20", "", None])
def test_unknown_architecture_names_valid_choices(bad: object) -> None:
    with pytest.raises(UnknownArchitectureError) as exc:
        get_architecture(bad)  # type: ignore[arg-type]
    assert isinstance(exc.value, ValueError)
    for name in ALL_NAMES:
        assert name in str(exc.value)
    with pytest.raises(UnknownArchitectureError):
        build_model(bad)  # type: ignore[arg-type]


def test_unknown_kwarg_is_named() -> None:
    with pytest.raises(ValueError, match="bogus"):
        build_model("resnet20", bogus=1)
    with pytest.raises(ValueError, match="width"):  # ViT has no width multiplier
        build_model("vit", width=2.0)


@pytest.mark.parametrize(
    ("name", "kwargs", "named"),
    [
        ("resnet20", {"num_classes": 0}, "num_classes"),
        ("mlp", {"num_classes": -3}, "num_classes"),
        ("lenet5", {"num_classes": 2.5}, "num_classes"),
        ("lenet5", {"num_classes": True}, "num_classes"),
        ("resnet18", {"in_channels": 0}, "in_channels"),
        ("resnet20", {"width": 0}, "width"),
        ("mobilenetv2", {"width": -1.0}, "width"),
        ("lenet5", {"width": math.nan}, "width"),
        ("mlp", {"width": math.inf}, "width"),
        ("resnet20", {"width": "1"}, "width"),
        ("mlp", {"depth": 0}, "depth"),
        ("mlp", {"hidden_sizes": []}, "hidden_sizes"),
        ("mlp", {"hidden_sizes": [64, 0]}, "hidden_sizes"),
        ("mlp", {"input_features": 0}, "input_features"),
        ("mobilenetv2", {"dropout": 1.0}, "dropout"),
        ("vit", {"mlp_ratio": 0}, "mlp_ratio"),
        ("vit", {"num_heads": 0}, "num_heads"),
        ("vit", {"embed_dim": 190}, "num_heads"),
        ("vit", {"image_size": 30}, "patch_size"),
    ],
)
def test_invalid_values_are_rejected_naming_the_argument(name: str, kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        build_model(name, **kwargs)


def test_cifar_resnet_rejects_bad_depth() -> None:
    with pytest.raises(ValueError, match="6n"):
        CifarResNet(21)


# ------------------------------------------------------------------------------------------ forward pass

# (name, kwargs, input shape): default input sizes plus the other sizes each family claims to support.
FORWARD_CASES = [
    ("mlp", {}, (2, 1, 28, 28)),
    ("mlp", {"input_features": 64, "hidden_sizes": [64, 32]}, (2, 1, 8, 8)),
    ("mlp", {"input_features": 3 * 32 * 32, "in_channels": 3, "depth": 3, "hidden_dim": 64}, (2, 3, 32, 32)),
    ("lenet5", {}, (2, 1, 28, 28)),
    ("lenet5", {}, (2, 1, 8, 8)),
    ("lenet5", {"in_channels": 3}, (2, 3, 32, 32)),
    ("resnet20", {}, (2, 3, 32, 32)),
    ("resnet20", {"in_channels": 1}, (2, 1, 28, 28)),
    ("resnet20", {"in_channels": 1}, (2, 1, 8, 8)),
    ("resnet32", {"width": 0.5}, (2, 3, 32, 32)),
    ("resnet56", {"width": 0.5}, (2, 3, 32, 32)),
    ("resnet18", {"width": 0.25}, (2, 3, 224, 224)),
    ("resnet18", {"width": 0.25, "in_channels": 1}, (2, 1, 32, 32)),
    ("resnet34", {"width": 0.25}, (2, 3, 64, 64)),
    ("resnet50", {"width": 0.25}, (1, 3, 224, 224)),
    ("resnet50", {}, (2, 3, 64, 64)),  # full width, once
    ("resnet50", {"width": 0.25, "in_channels": 1}, (2, 1, 32, 32)),
    ("mobilenetv2", {"width": 0.5}, (2, 3, 224, 224)),
    ("mobilenetv2", {"width": 0.5, "in_channels": 1}, (2, 1, 32, 32)),
    ("vit", {}, (2, 3, 32, 32)),
    ("vit", {"image_size": 28, "in_channels": 1, "depth": 2}, (2, 1, 28, 28)),
    (
        "vit",
        {"image_size": 224, "patch_size": 16, "depth": 1, "embed_dim": 64, "num_heads": 2},
        (1, 3, 224, 224),
    ),
]


@pytest.mark.parametrize(("name", "kwargs", "shape"), FORWARD_CASES)
def test_forward_shape(name: str, kwargs: dict, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, **kwargs)
    out = _forward(model, torch.randn(shape))
    assert out.shape == (shape[0], 7)
    assert torch.isfinite(out).all()


def test_forward_in_train_mode_backpropagates() -> None:
    # Training mode exercises BatchNorm batch statistics and the autograd path through every family.
    for name in ALL_NAMES:
        model = build_model(name, **SMALL[name])
        x = _input(name, size=32 if name not in ("mlp", "lenet5") else None)
        model(x).sum().backward()
        assert all(p.grad is not None for p in model.parameters()), name


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_in_channels_sets_stem(name: str, in_channels: int) -> None:
    model = build_model(name, in_channels=in_channels, **SMALL[name])
    _, stem = _prunable(model)[0]
    if name == "mlp":
        assert (
            isinstance(stem, nn.Linear) and stem.in_features == 784
        )  # flat input: channels are in the count
    else:
        assert isinstance(stem, nn.Conv2d) and stem.in_channels == in_channels


def test_mlp_rejects_wrong_feature_count() -> None:
    with pytest.raises(AssertionError, match="784"):
        _forward(build_model("mlp"), torch.randn(2, 64))


def test_vit_rejects_wrong_image_size() -> None:
    with pytest.raises(AssertionError, match="32x32"):
        _forward(build_model("vit", **SMALL["vit"]), torch.randn(2, 3, 28, 28))


# ------------------------------------------------------------------------------------ structure/ordering

STEM_AND_HEAD = {
    "mlp": ("features.0", "classifier"),
    "lenet5": ("features.0", "classifier.5"),
    "resnet20": ("conv1", "fc"),
    "resnet32": ("conv1", "fc"),
    "resnet56": ("conv1", "fc"),
    "resnet18": ("conv1", "fc"),
    "resnet34": ("conv1", "fc"),
    "resnet50": ("conv1", "fc"),
    "mobilenetv2": ("features.0.0", "classifier.1"),
    "vit": ("patch_embed", "head"),
}


@pytest.mark.parametrize("name", ALL_NAMES)
def test_first_layer_is_stem_and_last_is_head(name: str) -> None:
    model = build_model(name, num_classes=7, **SMALL[name])
    layers = _prunable(model)
    (first_name, first), (last_name, last) = layers[0], layers[-1]
    assert (first_name, last_name) == STEM_AND_HEAD[name]
    assert isinstance(last, nn.Linear) and last.out_features == 7
    if name == "mlp":
        assert isinstance(first, nn.Linear)
    else:
        assert isinstance(first, nn.Conv2d)
        assert first.in_channels == get_architecture(name).defaults["in_channels"]

    # The declaration order must match execution order at both ends: record calls with hooks.
    calls: list[str] = []
    for n, m in layers:
        m.register_forward_hook(lambda *_, n=n: calls.append(n))
    _forward(model, _input(name, batch=1, size=32 if name not in ("mlp", "lenet5") else None))
    assert calls[0] == first_name
    assert calls[-1] == last_name
    assert set(calls) == {n for n, _ in layers}  # every declared layer is actually used


@pytest.mark.parametrize("name", ALL_NAMES)
def test_inner_layers_fit_nm_groups(name: str) -> None:
    # Every layer the sparsifier prunes by default (all but first and last) has an input dimension that
    # 2:4 groups tile, at the default width and at a reduced one.
    variants = [SMALL[name]] if name == "vit" else [{**SMALL[name], "width": w} for w in (1.0, 0.5)]
    for kwargs in variants:
        for n, m in _prunable(build_model(name, **kwargs))[1:-1]:
            if isinstance(m, nn.Conv2d) and m.groups > 1:
                continue  # depthwise: one input channel per filter, not N:M prunable along inputs
            fan_in = m.in_features if isinstance(m, nn.Linear) else m.in_channels
            assert fan_in % 4 == 0, f"{name} {kwargs}: {n} has fan-in {fan_in}"


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if n != "vit"])
def test_width_multiplier_changes_parameter_count(name: str) -> None:
    lo, hi = (0.25, 0.5) if name in ("resnet34", "resnet50") else (0.5, 1.0)
    small = _n_params(build_model(name, width=lo))
    large = _n_params(build_model(name, width=hi))
    assert small < large


def test_reference_parameter_counts() -> None:
    # Match the published / torchvision layouts at width 1.
    assert _n_params(build_model("resnet18")) == 11_689_512
    assert _n_params(build_model("mobilenetv2")) == 3_504_872
    assert _n_params(build_model("lenet5")) < 60_000


def test_cifar_resnet_depths_and_downsample_convs() -> None:
    for name, depth in [("resnet20", 20), ("resnet32", 32), ("resnet56", 56)]:
        model = build_model(name)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        downsample = [m for m in convs if m.kernel_size == (1, 1)]
        # stem + 2 convs per block, plus one 1x1 projection entering stages 2 and 3.
        assert len(convs) - len(downsample) == depth - 1
        assert [(m.in_channels, m.out_channels, m.stride) for m in downsample] == [
            (16, 32, (2, 2)),
            (32, 64, (2, 2)),
        ]


def test_resnet_blocks_and_downsample() -> None:
    r18 = build_model("resnet18", width=0.25)
    assert sum(isinstance(m, BasicBlock) for m in r18.modules()) == 8
    assert sum(isinstance(m, BasicBlock) and m.downsample is not None for m in r18.modules()) == 3

    r50 = build_model("resnet50", width=0.25)
    assert isinstance(r50, ResNet)
    blocks = [m for m in r50.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16
    with_ds = [b for b in blocks if b.downsample is not None]
    assert len(with_ds) == 4  # first block of every stage, including stage 1 (64 -> 256 channels)
    for b in with_ds:
        assert isinstance(b.downsample, nn.Sequential)
        conv = b.downsample[0]
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
        assert conv.out_channels == 4 * b.conv1.out_channels
    stem = r50.conv1
    assert stem.kernel_size == (7, 7) and stem.stride == (2, 2)
    assert r50.fc.in_features == 2048 // 4


def test_mobilenetv2_has_depthwise_convs() -> None:
    model = build_model("mobilenetv2")
    assert isinstance(model, MobileNetV2)
    depthwise = [
        m
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels
    ]
    assert len(depthwise) == 17  # one per inverted residual block
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert m.out_channels % 8 == 0
    small = build_model("mobilenetv2", width=0.35)
    assert all(m.out_channels % 8 == 0 for m in small.modules() if isinstance(m, nn.Conv2d))


def test_vit_layer_names_and_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_model("vit", **SMALL["vit"])
    assert isinstance(model, VisionTransformer)
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    assert len(blocks) == 2
    for i, block in enumerate(blocks):
        assert model.get_submodule(f"blocks.{i}") is block
        for leaf in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
            assert isinstance(model.get_submodule(f"blocks.{i}.{leaf}"), nn.Linear)
    assert blocks[0].attn.qkv.out_features == 3 * 48
    assert blocks[0].mlp.fc1.out_features == 4 * 48
    assert isinstance(model.get_submodule("head"), nn.Linear)
    patch = model.get_submodule("patch_embed")
    assert isinstance(patch, nn.Conv2d) and patch.kernel_size == patch.stride == (4, 4)
    assert model.pos_embed.shape == (1, 64 + 1, 48)

    calls: list[tuple[int, ...]] = []
    real_sdpa = F.scaled_dot_product_attention

    def counting_sdpa(q: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(tuple(q.shape))
        return real_sdpa(q, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_sdpa)
    _forward(model, _input("vit"))
    assert calls == [(2, 3, 65, 16)] * 2  # (batch, heads, tokens, head_dim) once per block


def test_vit_attention_matches_reference() -> None:
    torch.manual_seed(0)
    attn = Attention(dim=12, num_heads=3)
    x = torch.randn(2, 5, 12)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    heads = [t.reshape(2, 5, 3, 4).transpose(1, 2) for t in (q, k, v)]
    weights = torch.softmax(heads[0] @ heads[1].transpose(-2, -1) / 2.0, dim=-1)
    expected = attn.proj((weights @ heads[2]).transpose(1, 2).reshape(2, 5, 12))
    torch.testing.assert_close(attn(x), expected)


# ------------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("name", ALL_NAMES)
def test_init_is_deterministic_under_manual_seed(name: str) -> None:
    def build(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_model(name, **SMALL[name]).state_dict()

    a, b, c = build(0), build(0), build(1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
