"""finalize(): plain weights with exact N:M zeros, an honest report, and the lifecycle's guard rails."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from lbc_core.sparsity import (
    KEEP_N_SEMANTICS,
    DenseSparsifier,
    LBCSparsifier,
    NMPattern,
    RemovalSchedule,
    ScoreOptimizer,
    Sparsifier,
    SparsifierStateError,
    SparsityConfig,
    SRSTESparsifier,
    build_sparsifier,
)
from lbc_core.sparsity.lbc import pack_bits, unpack_bits

PATTERNS = ["2:4", "1:4", "2:8", "4:8", "1:16"]
METHODS = ["lbc", "srste", "asp"]


class Net(nn.Module):
    """Stem and head stay dense by default; ``conv`` and ``fc`` (multiples of 16) are sparsified."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.conv = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(F.relu(self.stem(x))))
        return self.head(F.relu(self.fc(h.mean(dim=(2, 3)))))


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 6, 6, generator=gen), torch.randint(0, 4, (4,), generator=gen)


def make(method: str, text: str, t_f: float = 2.0) -> tuple[Net, Sparsifier, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = Net()
    config = SparsityConfig(
        method=method, pattern=NMPattern.parse(text), schedule=RemovalSchedule(t_i=0, t_f=t_f)
    )
    sparsifier = build_sparsifier(config)
    sparsifier.prepare(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return model, sparsifier, opt


def train(
    model: Net, sparsifier: Sparsifier, opt: torch.optim.Optimizer, epochs: range, steps: int = 2
) -> None:
    model.train()
    for epoch in epochs:
        for step in range(steps):
            sparsifier.on_step_start(epoch, step, steps, lr=0.05)
            x, y = batch(epoch * steps + step)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()


def group_nonzeros(weight: torch.Tensor, m: int) -> torch.Tensor:
    """Non-zeros per N:M group, computed without the library (conv groups: channels-last)."""
    if weight.dim() == 4:
        weight = weight.permute(0, 2, 3, 1)
    return (weight.reshape(-1, m) != 0).sum(dim=1)


@pytest.mark.parametrize("text", PATTERNS)
@pytest.mark.parametrize("method", METHODS)
def test_finalize_leaves_plain_weights_that_are_exactly_n_m_with_a_verified_report(
    method: str, text: str
) -> None:
    pattern = NMPattern.parse(text)
    model, sparsifier, opt = make(method, text)
    originals = {name: getattr(model, name).parametrizations.weight.original for name in ("conv", "fc")}
    train(model, sparsifier, opt, range(3))  # past t_f for LBC: one combination per group
    model.eval()
    x, _ = batch(99)
    with torch.no_grad():
        before = model(x)

    report = sparsifier.finalize()

    for name in ("conv", "fc"):
        module = getattr(model, name)
        assert not parametrize.is_parametrized(module)
        assert type(module.weight) is nn.Parameter
        assert module.weight is originals[name]  # same Parameter object: the optimizer keeps training it
        weight = module.weight.detach()
        counts = group_nonzeros(weight, pattern.m)
        assert counts.numel() == weight.numel() // pattern.m
        assert int(counts.max()) <= pattern.n
        density = int((weight != 0).sum()) / weight.numel()
        assert density <= pattern.density
        assert density == pytest.approx(pattern.density, abs=0.01)  # only exact zeros could lower it
    for name in ("stem", "head"):
        assert not parametrize.is_parametrized(getattr(model, name))
        assert bool((getattr(model, name).weight != 0).all())  # dense layers stay dense

    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # finalize does not change the trained function

    assert report.method == method
    assert report.pattern == text
    assert report.semantics == KEEP_N_SEMANTICS
    assert report.all_verified
    assert [layer.name for layer in report.layers] == ["conv", "fc"]
    for layer in report.layers:
        weight = getattr(model, layer.name).weight.detach()
        assert layer.shape == tuple(weight.shape)
        assert layer.kind == type(getattr(model, layer.name)).__name__
        assert layer.density == pytest.approx(int((weight != 0).sum()) / weight.numel())
        assert layer.nonzeros == int((weight != 0).sum())
        assert layer.verified_nm
        assert layer.violating_groups == 0
    conv_result, fc_result = report.layers
    assert "input channels" in conv_result.group_direction
    assert "input features" in fc_result.group_direction
    assert {s["name"] for s in report.skipped} == {"stem", "head"}
    assert all(s["reason"] for s in report.skipped)

    selected = model.conv.weight.numel() + model.fc.weight.numel()
    total = sum(p.numel() for p in model.parameters())
    assert report.sparse_params == selected
    assert report.dense_params == total
    assert report.nonzero_params == total - selected + sum(layer.nonzeros for layer in report.layers)
    as_dict = report.to_dict()
    assert as_dict["all_verified"] is True
    assert as_dict["layers"][0]["group_direction"] == conv_result.group_direction


@pytest.mark.parametrize("text", PATTERNS)
def test_lbc_finalize_before_t_f_still_ends_exactly_n_m(text: str) -> None:
    pattern = NMPattern.parse(text)
    model, sparsifier, opt = make("lbc", text, t_f=50)
    train(model, sparsifier, opt, range(2))
    assert isinstance(sparsifier, LBCSparsifier)
    assert sparsifier.alive_per_group > 1  # still far from the end of the schedule
    report = sparsifier.finalize()
    assert report.all_verified
    for name in ("conv", "fc"):
        weight = getattr(model, name).weight.detach()
        assert not parametrize.is_parametrized(getattr(model, name))
        assert int(group_nonzeros(weight, pattern.m).max()) <= pattern.n
        assert int((weight != 0).sum()) / weight.numel() == pytest.approx(pattern.density, abs=0.01)


def test_lbc_finalize_right_after_prepare_ends_exactly_n_m() -> None:
    model, sparsifier, _ = make("lbc", "2:8", t_f=10)
    report = sparsifier.finalize()
    assert report.all_verified
    assert int(group_nonzeros(model.conv.weight.detach(), 8).max()) <= 2


@pytest.mark.parametrize("method", [*METHODS, "dense"])
def test_finalize_twice_raises_a_state_error(method: str) -> None:
    _, sparsifier, _ = make(method, "2:4")
    sparsifier.finalize()
    with pytest.raises(SparsifierStateError, match="prepare"):
        sparsifier.finalize()


@pytest.mark.parametrize("method", [*METHODS, "dense"])
def test_finalize_before_prepare_raises_a_state_error(method: str) -> None:
    sparsifier = build_sparsifier(SparsityConfig(method=method))
    with pytest.raises(SparsifierStateError, match=r"call prepare\(model\) first"):
        sparsifier.finalize()
    with pytest.raises(SparsifierStateError):
        sparsifier.masks()


def test_prepare_twice_raises_a_state_error() -> None:
    model, sparsifier, _ = make("lbc", "2:4")
    with pytest.raises(SparsifierStateError, match="already"):
        sparsifier.prepare(model)


def test_state_error_is_a_runtime_error() -> None:
    assert issubclass(SparsifierStateError, RuntimeError)


def test_dense_method_leaves_weights_untouched_and_lists_every_layer_as_skipped_with_reasons() -> None:
    torch.manual_seed(0)
    model = Net()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    sparsifier = DenseSparsifier(NMPattern(2, 4))
    selection = sparsifier.prepare(model)
    assert selection.targets == ()
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert sparsifier.masks() == {}
    assert sparsifier.metrics()["mask_density"] == 1.0
    report = sparsifier.finalize()
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name])
    assert report.method == "dense"
    assert report.layers == ()
    reasons = {s["name"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {"stem", "conv", "fc", "head"}
    assert reasons["conv"] == "dense method keeps every layer dense"
    assert reasons["fc"] == "dense method keeps every layer dense"
    assert "stem" in reasons["stem"]
    assert "classifier" in reasons["head"]
    assert report.nonzero_params == report.dense_params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("c", [1, 2, 4, 6, 8, 9, 16, 28, 70, 120])
def test_lbc_alive_bits_pack_into_ceil_c_over_8_bytes_and_unpack_losslessly(c: int) -> None:
    gen = torch.Generator().manual_seed(c)
    bits = torch.rand(37, c, generator=gen) < 0.5
    bits[0] = True
    bits[1] = False
    packed = pack_bits(bits)
    assert packed.dtype == torch.uint8
    assert packed.shape == (37, math.ceil(c / 8))
    assert torch.equal(unpack_bits(packed, c), bits)


def test_lbc_alive_bits_are_little_endian_within_each_byte() -> None:
    bits = torch.tensor([[True, False, True, False, False, False, False, False, True, True]])
    assert pack_bits(bits).tolist() == [[0b101, 0b11]]
    assert pack_bits(torch.ones(1, 8, dtype=torch.bool)).tolist() == [[255]]


def _lbc_run(text: str) -> tuple[Net, LBCSparsifier, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = Net()
    sparsifier = LBCSparsifier(NMPattern.parse(text), schedule=RemovalSchedule(t_i=0, t_f=4, power=1))
    sparsifier.prepare(model)
    return model, sparsifier, torch.optim.SGD(model.parameters(), lr=0.05)


@pytest.mark.parametrize("resume_epoch", [2, 5])  # mid-removal, and after scores froze
def test_lbc_state_dict_round_trip_resumes_exactly(resume_epoch: int) -> None:
    model, sparsifier, opt = _lbc_run("2:8")
    train(model, sparsifier, opt, range(resume_epoch))
    saved_state = sparsifier.state_dict()
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    assert saved_state["method"] == "lbc"
    assert saved_state["pattern"] == "2:8"
    assert saved_state["alive_per_group"] == sparsifier.alive_per_group
    assert saved_state["removals"] == sparsifier.removals > 0

    resumed_model, resumed, resumed_opt = _lbc_run("2:8")
    resumed_model.load_state_dict(saved_model)
    resumed.load_state_dict(saved_state)
    assert resumed.alive_per_group == sparsifier.alive_per_group
    assert resumed.removals == sparsifier.removals
    assert resumed.scores_frozen == sparsifier.scores_frozen == (resume_epoch >= 4)
    for name in ("conv", "fc"):
        assert torch.equal(resumed.masks()[name], sparsifier.masks()[name])
        lbc_state = getattr(resumed_model, name).parametrizations.weight[0]
        assert lbc_state.scores_trainable == (not resumed.scores_frozen)

    # Both continue identically: same masks, scores and weights after more training.
    train(model, sparsifier, opt, range(resume_epoch, resume_epoch + 2))
    train(resumed_model, resumed, resumed_opt, range(resume_epoch, resume_epoch + 2))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert resumed.alive_per_group == sparsifier.alive_per_group
    assert resumed.finalize().all_verified


def test_lbc_load_state_dict_rejects_a_different_pattern() -> None:
    model, sparsifier, opt = _lbc_run("2:4")
    train(model, sparsifier, opt, range(1))
    _, other, _ = _lbc_run("2:8")
    with pytest.raises(SparsifierStateError, match=r"lbc 2:4.*not lbc 2:8"):
        other.load_state_dict(sparsifier.state_dict())


def test_lbc_load_state_dict_rejects_a_different_method() -> None:
    _, lbc, _ = _lbc_run("2:4")
    srste = SRSTESparsifier(NMPattern(2, 4))
    srste.prepare(Net())
    with pytest.raises(SparsifierStateError, match=r"srste 2:4.*not lbc 2:4"):
        lbc.load_state_dict(srste.state_dict())
    with pytest.raises(SparsifierStateError, match=r"lbc 2:4.*not srste 2:4"):
        srste.load_state_dict(lbc.state_dict())
    with pytest.raises(SparsifierStateError):
        lbc.load_state_dict({})


def test_lbc_score_optimizer_config_validation() -> None:
    with pytest.raises(ValueError, match="'sgd' or 'adam'"):
        ScoreOptimizer(kind="rmsprop")
    with pytest.raises(ValueError, match=">= 0"):
        ScoreOptimizer(momentum=-0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        ScoreOptimizer(momentum=0.0, nesterov=True)
    assert ScoreOptimizer().exact
    assert not ScoreOptimizer(kind="adam").exact
