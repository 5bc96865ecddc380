"""Regression guard on the one method ordering the digits sweep established robustly (docs/results.md).

Sweep: experiments/compare.py --dataset digits --models lenet5 --epochs 8 --seeds 0,1,2,3,4, all
patterns. Among the LBC-vs-baseline orderings, the only one that held for EVERY seed with a margin
larger than a few validation images was 1:16: LBC (from scratch, t_f = 4 of 8 epochs) 93.3-95.5 %
vs SR-STE (from scratch) 27.0-48.5 %, minimum paired gap 46.5 points. LBC starts dense and removes
combinations gradually, so it trains at 6 % density; SR-STE is 1:16-sparse from the first step and
does not leave the initial plateau within 8 epochs. The ordering asked about first (LBC >= one-shot
magnitude at 2:4) did NOT hold (LBC lower in 4 of 5 seeds), so it is not tested.

If this fails because SR-STE got better at 1:16, that is news to report, not a bug to hide:
rerun the sweep and update docs/results.md and this guard together.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _compare_module():
    spec = importlib.util.spec_from_file_location("experiments_compare", REPO / "experiments" / "compare.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_lbc_beats_srste_at_1_of_16_on_digits_one_seed(tmp_path: Path) -> None:
    compare = _compare_module()
    from lbc_core.data import load_data

    val = load_data(compare.data_config("digits", augment=False)).val
    common = dict(
        dataset="digits",
        model="lenet5",
        width=2.0,
        pattern=compare.parse_pattern("1:16"),
        seed=0,
        epochs=8,
        lr=0.05,
        batch_size=64,
        augment=False,
        val=val,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the sweep (--threads 1); also avoids OpenMP spinning on busy machines
    try:
        lbc = compare.one_run(method="lbc", work=tmp_path / "lbc", **common)
        srste = compare.one_run(method="srste", work=tmp_path / "srste", **common)
    finally:
        torch.set_num_threads(threads)

    assert lbc["verified_nm"] and srste["verified_nm"]
    assert lbc["val_accuracy"] == pytest.approx(lbc["pipeline_val_accuracy"], abs=1e-9)
    # Sweep, 5 seeds: LBC >= 93.3 %, gap >= 46.5 points. Guards with slack for thread nondeterminism.
    assert lbc["val_accuracy"] >= 0.90, f"LBC 1:16 on digits reached only {lbc['val_accuracy']:.4f}"
    gap = lbc["val_accuracy"] - srste["val_accuracy"]
    assert gap >= 0.25, (
        f"LBC {lbc['val_accuracy']:.4f} vs SR-STE {srste['val_accuracy']:.4f} at 1:16: the ordering the "
        "digits sweep established (gap >= 0.465 on every seed) no longer holds"
    )
