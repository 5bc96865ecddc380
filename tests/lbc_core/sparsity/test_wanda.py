"""Wanda N:M: |weight| x input-activation norm per group, calibrated once, then fixed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lbc_core.sparsity import (
    CalibrationError,
    LayerPolicy,
    NMPattern,
    SparsifierStateError,
    SparsityConfig,
    WandaSparsifier,
    build_sparsifier,
    input_norms,
    is_nm_sparse,
    magnitude_mask,
)

EVERY_LAYER = LayerPolicy(keep_stem_dense=False, keep_classifier_dense=False)


def forward(model: nn.Module, *batches: torch.Tensor) -> Callable[[], None]:
    """A calibration forward over ``batches``."""

    def run_forward() -> None:
        for x in batches:
            model(x)

    return run_forward


def calibrated(model: nn.Module, *batches: torch.Tensor, pattern: str = "2:4") -> WandaSparsifier:
    sparsifier = WandaSparsifier(NMPattern.parse(pattern), EVERY_LAYER)
    sparsifier.prepare(model)
    with torch.no_grad():
        sparsifier.calibrate(forward(model, *batches))
    return sparsifier


def test_linear_mask_equals_the_hand_computed_reference() -> None:
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]]))
    x = torch.tensor([[6.0, 1.0, 0.0, 0.1], [8.0, 0.0, 1.0, 0.0]])
    # Input norms: sqrt(36 + 64) = 10, 1, 1, 0.1.
    # Row 0 importance [10, 2, 3, 0.4] keeps inputs 0 and 2; row 1 [40, 3, 2, 0.1] keeps 0 and 1.
    expected = torch.tensor([[True, False, True, False], [True, True, False, False]])
    model = nn.Sequential(layer)

    sparsifier = calibrated(model, x)

    assert torch.equal(sparsifier.masks()["0"], expected)
    # Magnitude alone keeps inputs 2 and 3 of row 0: the activations changed the choice.
    assert not torch.equal(magnitude_mask(layer.parametrizations.weight.original, NMPattern(2, 4)), expected)


def test_conv_mask_uses_each_input_channels_norm_over_all_positions() -> None:
    conv = nn.Conv2d(4, 1, kernel_size=(1, 2), bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [4.0, 1.0, 4.0, 1.0]]).T.reshape(1, 4, 1, 2))
    x = torch.zeros(2, 4, 1, 3)
    x[0, 0, 0, 0] = 1.0  # channel 0: norm 1
    x[0, 1, 0, 1], x[1, 1, 0, 2] = (
        3.0 * 0.6,
        3.0 * 0.8,
    )  # channel 1: norm 3, spread over samples and positions
    x[1, 2, 0, 0] = 0.5  # channel 2: norm 0.5
    x[0, 3, 0, 2] = 2.0  # channel 3: norm 2
    # Tap (0, 0): |w| = 1 everywhere, importance = norms [1, 3, 0.5, 2]: keep channels 1 and 3.
    # Tap (0, 1): |w| [4, 1, 4, 1] x norms = [4, 3, 2, 2]: keep channels 0 and 1.
    expected = torch.zeros(1, 4, 1, 2, dtype=torch.bool)
    expected[0, [1, 3], 0, 0] = True
    expected[0, [0, 1], 0, 1] = True

    sparsifier = calibrated(nn.Sequential(conv), x)

    assert torch.equal(sparsifier.masks()["0"], expected)


def test_linear_norms_cover_every_token_and_every_batch() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(8, 3)
    tokens = torch.randn(5, 7, 8)  # (batch, sequence, features)
    norms = input_norms({"layer": layer}, forward(layer, tokens[:2], tokens[2:]))
    assert torch.allclose(norms["layer"], tokens.reshape(-1, 8).norm(dim=0))


def test_conv_norms_are_per_channel_over_batch_and_positions_in_fp32() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 4, 3).to(torch.bfloat16)
    x = torch.randn(3, 8, 5, 5).to(torch.bfloat16)
    norms = input_norms({"conv": conv}, forward(conv, x))
    assert norms["conv"].dtype == torch.float32
    assert torch.allclose(norms["conv"], x.float().permute(1, 0, 2, 3).reshape(8, -1).norm(dim=1))


def test_wanda_masks_are_exact_n_m_on_a_random_network() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 8))
    sparsifier = calibrated(model, torch.randn(4, 8, 6, 6), pattern="1:4")
    for name, mask in sparsifier.masks().items():
        assert is_nm_sparse(mask.float(), NMPattern(1, 4)), name
        assert int(mask.sum()) == mask.numel() // 4


def test_calibration_sees_the_dense_model_and_the_masks_apply_afterwards() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    x = torch.randn(16, 8)
    dense = model(x).detach()
    outputs: list[torch.Tensor] = []
    sparsifier = WandaSparsifier(NMPattern(2, 4), EVERY_LAYER)
    sparsifier.prepare(model)
    sparsifier.calibrate(lambda: outputs.append(model(x).detach()))
    assert torch.equal(outputs[0], dense)
    assert not torch.allclose(model(x), dense)
    assert sparsifier.metrics()["mask_density"] == 0.5


def test_training_or_finalizing_before_calibration_is_a_state_error() -> None:
    sparsifier = build_sparsifier(SparsityConfig(method="wanda", layers=EVERY_LAYER))
    sparsifier.prepare(nn.Sequential(nn.Linear(8, 4)))
    assert sparsifier.needs_calibration
    with pytest.raises(SparsifierStateError, match="calibrate"):
        sparsifier.on_step_start(0, 0, 1, 0.1)
    with pytest.raises(SparsifierStateError, match="calibrate"):
        sparsifier.finalize()


def test_masks_stay_fixed_while_the_weights_fine_tune_and_are_not_recalibrated() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    sparsifier = calibrated(model, x)
    before = {k: v.clone() for k, v in sparsifier.masks().items()}
    assert not sparsifier.needs_calibration
    with pytest.raises(SparsifierStateError, match="already calibrated"):
        sparsifier.calibrate(lambda: None)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(5):
        sparsifier.on_step_start(0, step, 5, 0.5)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for name, mask in sparsifier.masks().items():
        assert torch.equal(mask, before[name])
    report = sparsifier.finalize()
    assert report.method == "wanda" and report.all_verified


def test_the_calibrated_state_round_trips_so_a_resumed_run_is_not_recalibrated() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4))
    sparsifier = calibrated(model, torch.randn(4, 8))
    state, weights = sparsifier.state_dict(), model.state_dict()
    assert state == {"method": "wanda", "pattern": "2:4", "calibrated": True}

    torch.manual_seed(1)
    resumed_model = nn.Sequential(nn.Linear(8, 4))
    resumed = WandaSparsifier(NMPattern(2, 4), EVERY_LAYER)
    resumed.prepare(resumed_model)
    resumed_model.load_state_dict(weights)  # the mask is a buffer saved with the model
    resumed.load_state_dict(state)
    assert not resumed.needs_calibration
    assert torch.equal(resumed.masks()["0"], sparsifier.masks()["0"])


def test_calibration_removes_its_hooks_even_when_the_forward_fails() -> None:
    layer = nn.Linear(4, 4)

    def failing() -> None:
        layer(torch.ones(1, 4))
        raise RuntimeError("data loader broke")

    with pytest.raises(RuntimeError, match="data loader broke"):
        input_norms({"layer": layer}, failing)
    assert not layer._forward_pre_hooks


def test_a_layer_the_calibration_never_reaches_is_named_in_the_error() -> None:
    used, unused = nn.Linear(4, 4), nn.Linear(4, 4)
    with pytest.raises(CalibrationError, match=r"never reached layer.*unused"):
        input_norms({"used": used, "unused": unused}, forward(used, torch.ones(1, 4)))


def test_a_layer_type_without_an_input_layout_is_refused() -> None:
    with pytest.raises(CalibrationError, match="Bilinear"):
        input_norms({"b": nn.Bilinear(4, 4, 4)}, lambda: None)


def test_calibration_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="calibration_samples"):
        SparsityConfig(method="wanda", calibration_samples=0)
    assert SparsityConfig(method="wanda").uses_calibration
    assert SparsityConfig(method="lbc", score_init="wanda").uses_calibration
    assert not SparsityConfig(method="lbc", score_init="magnitude").uses_calibration
    assert not SparsityConfig(method="asp").uses_calibration
