"""Which layers get an N:M mask, and an explicit reason for every layer that does not."""

from __future__ import annotations

import pytest
from torch import nn

from lbc_core.sparsity import (
    LayerPolicy,
    LayerSelectionError,
    LayerTarget,
    NMPattern,
    SkippedLayer,
    select_layers,
)

P24 = NMPattern(2, 4)


class SmallResNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)  # in=3: not divisible by 4 anyway
        self.bn = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 1))
        self.downsample = nn.Conv2d(16, 32, 1, stride=2)
        self.fc = nn.Linear(32, 10)


class AllEligible(nn.Module):
    """Every layer, stem and classifier included, is N:M eligible for 2:4."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(8, 16, 3)
        self.body = nn.Conv2d(16, 16, 3)
        self.head = nn.Linear(16, 8)


def _skipped(selection_skipped: tuple[SkippedLayer, ...]) -> dict[str, str]:
    return {s.name: s.reason for s in selection_skipped}


def test_default_policy_keeps_stem_and_classifier_dense_with_reasons() -> None:
    selection = select_layers(AllEligible(), P24)
    assert selection.names == ["body"]
    reasons = _skipped(selection.skipped)
    assert reasons == {
        "stem": "stem (first layer) kept dense by default",
        "head": "classifier (last layer) kept dense by default",
    }


def test_default_policy_on_a_resnet_like_model_sparsifies_every_inner_conv_including_downsample() -> None:
    selection = select_layers(SmallResNetLike(), P24)
    assert selection.names == ["layer1.0", "layer1.2", "downsample"]
    assert set(_skipped(selection.skipped)) == {"stem", "fc"}


def test_targets_and_skipped_layers_follow_registration_order_and_cover_every_weight_layer() -> None:
    selection = select_layers(SmallResNetLike(), P24)
    covered = sorted([*selection.names, *(s.name for s in selection.skipped)])
    assert covered == sorted(["stem", "layer1.0", "layer1.2", "downsample", "fc"])


def test_stem_and_classifier_can_be_sparsified_by_turning_the_defaults_off() -> None:
    policy = LayerPolicy(keep_stem_dense=False, keep_classifier_dense=False)
    assert select_layers(AllEligible(), P24, policy).names == ["stem", "body", "head"]


def test_explicit_include_of_the_stem_sparsifies_it() -> None:
    selection = select_layers(AllEligible(), P24, LayerPolicy(include=("stem", "body")))
    assert selection.names == ["stem", "body"]
    assert _skipped(selection.skipped) == {"head": "not matched by include patterns"}


def test_explicit_include_of_the_classifier_sparsifies_it() -> None:
    selection = select_layers(AllEligible(), P24, LayerPolicy(include=("*", "head")))
    assert selection.names == ["body", "head"]
    assert _skipped(selection.skipped) == {"stem": "stem (first layer) kept dense by default"}


def test_include_globs_select_by_module_name() -> None:
    selection = select_layers(SmallResNetLike(), P24, LayerPolicy(include=("layer1.*",)))
    assert selection.names == ["layer1.0", "layer1.2"]
    reasons = _skipped(selection.skipped)
    assert reasons["downsample"] == "not matched by include patterns"
    assert reasons["fc"] == "not matched by include patterns"
    assert reasons["stem"] == "not matched by include patterns"


def test_exclude_globs_skip_matching_layers_with_a_reason() -> None:
    selection = select_layers(SmallResNetLike(), P24, LayerPolicy(exclude=("down*", "*.2")))
    assert selection.names == ["layer1.0"]
    reasons = _skipped(selection.skipped)
    assert reasons["downsample"] == "matched by an exclude pattern"
    assert reasons["layer1.2"] == "matched by an exclude pattern"


def test_exclude_wins_over_include() -> None:
    selection = select_layers(AllEligible(), P24, LayerPolicy(include=("body",), exclude=("body",)))
    assert selection.names == []
    assert _skipped(selection.skipped)["body"] == "matched by an exclude pattern"


def test_include_pattern_matching_no_layer_raises_naming_the_pattern() -> None:
    with pytest.raises(
        LayerSelectionError, match=r"include pattern 'blocks\.\*' matches no Linear/Conv2d layer"
    ) as info:
        select_layers(SmallResNetLike(), P24, LayerPolicy(include=("layer1.*", "blocks.*")))
    # The message lists the real layer names so the user can fix the glob.
    assert "layer1.0" in str(info.value)
    assert "downsample" in str(info.value)


def test_include_globs_are_case_sensitive() -> None:
    with pytest.raises(LayerSelectionError, match="'FC'"):
        select_layers(SmallResNetLike(), P24, LayerPolicy(include=("FC",)))


def test_layer_selection_error_is_a_value_error() -> None:
    assert issubclass(LayerSelectionError, ValueError)


def test_depthwise_conv_is_skipped_with_a_reason_mentioning_groups() -> None:
    model = nn.Sequential(
        nn.Conv2d(8, 16, 1), nn.Conv2d(16, 16, 3, groups=16), nn.Conv2d(16, 16, 1), nn.Linear(16, 4)
    )
    selection = select_layers(model, P24)
    assert selection.names == ["2"]
    reason = _skipped(selection.skipped)["1"]
    assert "depthwise" in reason
    assert "groups=16" in reason
    assert "groups must be 1" in reason


def test_grouped_conv_is_skipped_with_a_reason_mentioning_groups() -> None:
    model = nn.Sequential(
        nn.Conv2d(8, 16, 1), nn.Conv2d(16, 32, 3, groups=4), nn.Conv2d(32, 16, 1), nn.Linear(16, 4)
    )
    selection = select_layers(model, P24)
    assert selection.names == ["2"]
    reason = _skipped(selection.skipped)["1"]
    assert "grouped" in reason
    assert "groups=4" in reason


def test_conv_with_input_channels_not_divisible_by_m_is_skipped_naming_the_numbers() -> None:
    model = nn.Sequential(nn.Conv2d(8, 12, 1), nn.Conv2d(12, 16, 3), nn.Conv2d(16, 16, 1), nn.Linear(16, 4))
    selection = select_layers(model, NMPattern(1, 8))
    assert selection.names == ["2"]
    assert _skipped(selection.skipped)["1"] == "input channels 12 are not divisible by M=8"


def test_linear_with_input_features_not_divisible_by_m_is_skipped_naming_the_numbers() -> None:
    model = nn.Sequential(
        nn.Linear(8, 8), nn.Linear(8, 20), nn.Linear(20, 16), nn.Linear(16, 16), nn.Linear(16, 2)
    )
    selection = select_layers(model, NMPattern(2, 16))
    assert selection.names == ["3"]
    reasons = _skipped(selection.skipped)
    assert reasons["1"] == "input features 8 are not divisible by M=16"
    assert reasons["2"] == "input features 20 are not divisible by M=16"


def test_explicitly_included_but_ineligible_layer_is_still_skipped_with_its_reason() -> None:
    model = SmallResNetLike()
    selection = select_layers(model, P24, LayerPolicy(include=("stem", "layer1.0")))
    assert selection.names == ["layer1.0"]
    assert _skipped(selection.skipped)["stem"] == "input channels 3 are not divisible by M=4"


def test_eligibility_depends_on_input_channels_not_output_channels() -> None:
    model = nn.Sequential(nn.Conv2d(8, 8, 1), nn.Conv2d(8, 3, 3), nn.Linear(4, 7), nn.Linear(8, 8))
    # Conv2d(8 -> 3) and Linear(4 -> 7) have reduction dims 8 and 4: eligible for 2:4.
    assert select_layers(model, P24).names == ["1", "2"]


@pytest.mark.parametrize("text", ["2:4", "1:8", "2:16"])
def test_layer_target_counts_numel_over_m_groups_and_describes_the_direction(text: str) -> None:
    pattern = NMPattern.parse(text)
    model = nn.Sequential(nn.Linear(4, 16), nn.Conv2d(16, 32, (3, 5)), nn.Linear(32, 48), nn.Linear(48, 2))
    selection = select_layers(model, pattern)
    by_name = {t.name: t for t in selection.targets}
    assert set(by_name) == {"1", "2"}
    conv, linear = by_name["1"], by_name["2"]
    assert isinstance(conv, LayerTarget)
    assert (conv.kind, conv.shape) == ("Conv2d", (32, 16, 3, 5))
    assert conv.groups == 32 * 16 * 3 * 5 // pattern.m
    assert "input channels" in conv.group_direction
    assert (linear.kind, linear.shape) == ("Linear", (48, 32))
    assert linear.groups == 48 * 32 // pattern.m
    assert "input features" in linear.group_direction


def test_skipped_layers_record_kind_and_shape() -> None:
    selection = select_layers(SmallResNetLike(), P24)
    stem = next(s for s in selection.skipped if s.name == "stem")
    assert (stem.kind, stem.shape) == ("Conv2d", (16, 3, 3, 3))
    fc = next(s for s in selection.skipped if s.name == "fc")
    assert (fc.kind, fc.shape) == ("Linear", (10, 32))


def test_other_layer_types_are_neither_targets_nor_errors() -> None:
    model = nn.Sequential(
        nn.Linear(8, 8), nn.LayerNorm(8), nn.Conv1d(8, 8, 1), nn.Linear(8, 8), nn.Linear(8, 2)
    )
    selection = select_layers(model, P24)
    assert selection.names == ["3"]
    assert {s.name for s in selection.skipped} == {"0", "4"}


@pytest.mark.parametrize(
    "model",
    [
        nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4)),
        nn.Sequential(nn.Conv1d(4, 4, 1), nn.Embedding(10, 4)),
        nn.Module(),
    ],
)
def test_model_without_linear_or_conv2d_raises(model: nn.Module) -> None:
    with pytest.raises(LayerSelectionError, match=r"no nn\.Linear or nn\.Conv2d layer"):
        select_layers(model, P24)
