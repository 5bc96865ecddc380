"""How much of LBC's final mask a score prior decides: agreement with the prior's own top-N mask.

One dense model is trained through the pipeline (``--dense-epochs``); LBC then fine-tunes it for
``--epochs`` (t_f = half of them) once per start: uniform, and the magnitude prior at each
``--strengths``. For every sparsified layer the script prints the share of weights whose final
keep/drop decision equals the magnitude top-N mask of the dense checkpoint, and the accuracy of the
exported model. A uniform start agrees by chance only (50 % at 2:4); 100 % means the prior decided
every group and the training signal changed nothing.

Usage
-----
    python experiments/prior_agreement.py --dataset digits --pattern 2:4 --strengths 1,0.1,0.01,0.001
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from lbc_core.export import load_state_dict_file  # noqa: E402
from lbc_core.export.masks import load_masks  # noqa: E402
from lbc_core.pipeline import ModelConfig, RunConfig, run  # noqa: E402
from lbc_core.sparsity import RemovalSchedule, SparsityConfig, magnitude_mask  # noqa: E402
from lbc_core.training import TrainConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import data_config, parse_pattern  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    p.add_argument("--pattern", default="2:4")
    p.add_argument("--strengths", default="1,0.1,0.01,0.001")
    p.add_argument("--dense-epochs", type=int, default=4)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pattern = parse_pattern(args.pattern)
    data = data_config(args.dataset, False)
    model = ModelConfig("lenet5", {"width": 2.0})

    def train(epochs: int) -> TrainConfig:
        return TrainConfig(
            epochs=epochs, batch_size=64, lr=0.05, warmup_epochs=1, seed=args.seed, device="cpu"
        )

    starts = [("uniform", 1.0)] + [("magnitude", float(s)) for s in args.strengths.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="lbc-prior-") as tmp:
        run(RunConfig(model, data, SparsityConfig("dense"), train(args.dense_epochs)), Path(tmp) / "dense")
        checkpoint = Path(tmp) / "dense" / "export" / "model.safetensors"
        dense = load_state_dict_file(checkpoint)
        print(
            f"{args.dataset} lenet5 {pattern}, LBC for {args.epochs} epochs from a {args.dense_epochs}-epoch dense model"
        )
        for score_init, strength in starts:
            sparsity = SparsityConfig(
                "lbc",
                pattern,
                schedule=RemovalSchedule(t_i=0, t_f=max(args.epochs / 2, 1)),
                score_init=score_init,  # type: ignore[arg-type]
                prior_strength=strength,
            )
            out = Path(tmp) / f"{score_init}-{strength:g}"
            result = run(
                RunConfig(replace_checkpoint(model, checkpoint), data, sparsity, train(args.epochs)), out
            )
            masks = load_masks(out / "export" / "masks.safetensors")
            agreement = {
                name: float((mask == magnitude_mask(dense[f"{name}.weight"], pattern)).float().mean())
                for name, mask in masks.items()
            }
            start = "uniform" if score_init == "uniform" else f"magnitude prior, strength {strength:g}"
            cells = ", ".join(f"{name} {100 * value:.1f} %" for name, value in agreement.items())
            print(
                f"  {start:34} acc {100 * result.summary['val_accuracy']:.2f}  agreement: {cells}", flush=True
            )
    return 0


def replace_checkpoint(model: ModelConfig, checkpoint: Path) -> ModelConfig:
    return ModelConfig(model.architecture, model.args, str(checkpoint))


if __name__ == "__main__":
    raise SystemExit(main())
