"""Helpers shared by the model zoo."""


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` (at least ``divisor``), never dropping it by more than 10%.

    N:M sparsity prunes groups of M consecutive input weights, so channel counts that are multiples
    of 8 let both 2:4 and 4:8 patterns tile every layer after the stem.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded
