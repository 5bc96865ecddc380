"""The LBC removal schedule: alive combinations per group decay polynomially from C to 1."""

from __future__ import annotations

import itertools
import math

import pytest

from lbc_core.sparsity import NMPattern, RemovalSchedule


def _reference(t: float, c: int, t_i: float, t_f: float, p: float) -> int:
    """LBC.md's formula, clamped to [1, C]."""
    if t < t_i:
        return c
    if t >= t_f:
        return 1
    return max(1, min(c, 1 + math.ceil((c - 1) * (1 - (t - t_i) / (t_f - t_i)) ** p)))


def test_spec_example_2_4_with_t_f_60_and_power_3_removes_at_epochs_5_10_16_25_60() -> None:
    schedule = RemovalSchedule(t_i=0, t_f=60, power=3)
    c = NMPattern(2, 4).num_combinations
    alive = {t: schedule.alive_per_group(t, c) for t in range(0, 80)}
    assert alive[0] == 6
    assert alive[5] == 5
    assert alive[10] == 4
    assert alive[16] == 3
    assert alive[25] == 2
    assert alive[60] == 1
    transitions = {t: alive[t] for t in range(1, 80) if alive[t] != alive[t - 1]}
    assert transitions == {5: 5, 10: 4, 16: 3, 25: 2, 60: 1}
    assert all(alive[t] == 6 for t in range(0, 5))
    assert all(alive[t] == 2 for t in range(25, 60))
    assert all(alive[t] == 1 for t in range(60, 80))


@pytest.mark.parametrize("text", ["2:4", "1:4", "2:8", "4:8", "1:16", "2:16"])
def test_schedule_starts_with_every_combination_alive_and_ends_with_one(text: str) -> None:
    c = NMPattern.parse(text).num_combinations
    schedule = RemovalSchedule(t_i=0, t_f=10, power=3)
    assert schedule.alive_per_group(0, c) == c
    assert schedule.alive_per_group(10, c) == 1
    assert schedule.alive_per_group(9.999, c) >= 2


@pytest.mark.parametrize("t", [10, 10.5, 11, 100, 1e9])
def test_at_or_after_t_f_one_combination_is_alive(t: float) -> None:
    assert RemovalSchedule(t_i=2, t_f=10).alive_per_group(t, 70) == 1


@pytest.mark.parametrize("c", [2, 4, 6, 16, 28, 70, 120])
def test_with_t_i_positive_every_combination_stays_alive_before_t_i_and_counts_stay_in_1_to_c(c: int) -> None:
    schedule = RemovalSchedule(t_i=5, t_f=20, power=3)
    for step in range(0, 300):
        t = step / 10
        alive = schedule.alive_per_group(t, c)
        assert 1 <= alive <= c
        if t < 5:
            assert alive == c
        assert alive == _reference(t, c, 5, 20, 3)
    assert schedule.alive_per_group(5, c) == c  # (1 - 0)^p == 1: nothing removed yet at t_i itself
    assert schedule.alive_per_group(20, c) == 1


@pytest.mark.parametrize(("text", "m"), [("1:2", 2), ("1:4", 4), ("1:8", 8), ("1:16", 16)])
def test_one_of_m_patterns_have_m_combinations(text: str, m: int) -> None:
    pattern = NMPattern.parse(text)
    assert pattern.num_combinations == m
    schedule = RemovalSchedule(t_i=0, t_f=8, power=3)
    assert schedule.alive_per_group(0, pattern.num_combinations) == m
    assert schedule.alive_per_group(8, pattern.num_combinations) == 1


def test_integer_epochs_are_the_clock_unless_per_step() -> None:
    schedule = RemovalSchedule(t_i=0, t_f=10)
    assert schedule.time(3, step=7, steps_per_epoch=10) == 3.0
    assert isinstance(schedule.time(3), float)


def test_per_step_clock_is_fractional_epochs() -> None:
    schedule = RemovalSchedule(t_i=0, t_f=10, per_step=True)
    assert schedule.time(3, step=0, steps_per_epoch=10) == 3.0
    assert schedule.time(3, step=5, steps_per_epoch=10) == pytest.approx(3.5)
    assert schedule.time(0, step=9, steps_per_epoch=10) == pytest.approx(0.9)
    # Without a known epoch length the clock falls back to whole epochs.
    assert schedule.time(3, step=5, steps_per_epoch=0) == 3.0


def test_per_step_schedule_removes_inside_an_epoch() -> None:
    c = 6
    per_epoch = RemovalSchedule(t_i=0, t_f=2, power=1)
    per_step = RemovalSchedule(t_i=0, t_f=2, power=1, per_step=True)
    # Halfway through epoch 0 (t = 0.5): 1 + ceil(5 * 0.75) = 5 alive, while the epoch clock says 6.
    assert per_epoch.alive_per_group(per_epoch.time(0, 5, 10), c) == 6
    assert per_step.alive_per_group(per_step.time(0, 5, 10), c) == 5
    counts = [per_step.alive_per_group(per_step.time(e, s, 10), c) for e in range(3) for s in range(10)]
    assert counts[0] == 6
    assert counts[-1] == 1
    assert len(set(counts)) == 6  # every count from 6 down to 1 occurs


@pytest.mark.parametrize("power", [0.5, 1.0, 2.0, 3.0, 4.0, 7.5])
def test_power_matches_the_formula(power: float) -> None:
    schedule = RemovalSchedule(t_i=0, t_f=30, power=power)
    for t in range(0, 35):
        assert schedule.alive_per_group(t, 28) == _reference(t, 28, 0, 30, power)


def test_higher_power_removes_earlier() -> None:
    c = 70
    low, high = RemovalSchedule(t_f=20, power=1), RemovalSchedule(t_f=20, power=4)
    for t in range(1, 20):
        assert high.alive_per_group(t, c) <= low.alive_per_group(t, c)
    assert high.alive_per_group(5, c) < low.alive_per_group(5, c)


@pytest.mark.parametrize(
    "schedule",
    [
        RemovalSchedule(t_i=0, t_f=60, power=3),
        RemovalSchedule(t_i=3, t_f=11, power=1),
        RemovalSchedule(t_i=0.5, t_f=2.5, power=0.3, per_step=True),
        RemovalSchedule(t_i=10, t_f=12, power=8),
    ],
)
@pytest.mark.parametrize("c", [2, 6, 28, 70, 120])
def test_alive_count_is_monotone_non_increasing(schedule: RemovalSchedule, c: int) -> None:
    counts = [schedule.alive_per_group(k / 20, c) for k in range(0, 20 * 70)]
    assert all(a >= b for a, b in itertools.pairwise(counts))
    assert counts[0] <= c
    assert counts[-1] == 1


def test_default_schedule_is_valid() -> None:
    schedule = RemovalSchedule()
    assert schedule.alive_per_group(0, 6) == 6
    assert schedule.alive_per_group(1, 6) == 1


@pytest.mark.parametrize(("t_i", "t_f"), [(5, 5), (5, 4), (0, 0), (0, -1)])
def test_t_f_must_come_after_t_i(t_i: float, t_f: float) -> None:
    with pytest.raises(ValueError, match="t_f must be greater than t_i"):
        RemovalSchedule(t_i=t_i, t_f=t_f)


def test_t_i_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="t_i must be >= 0"):
        RemovalSchedule(t_i=-1, t_f=10)


@pytest.mark.parametrize("power", [0, -1, -0.5])
def test_power_must_be_positive(power: float) -> None:
    with pytest.raises(ValueError, match="power must be > 0"):
        RemovalSchedule(t_i=0, t_f=10, power=power)
