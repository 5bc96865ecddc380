"""Speedup report of an N:M model on this machine's hardware (prints a table; optionally writes JSON/HTML/SVG).

Either builds a zoo model with a random one-shot 2:4 (ASP magnitude) mask, or loads an export directory
(manifest.json plus model.nm.safetensors through lbc_core.export.rebuild_model, or model.safetensors).
Usage:
  python benchmarks/speedup_report.py --arch vit --batch-sizes 1,64 [--device cuda] [--dtypes float16,bfloat16]
  python benchmarks/speedup_report.py --export-dir runs/quickstart/export --json report.json --html report.html
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lbc_core.benchmark import (
    architecture_input_shape,
    build_speedup_report,
    render_html,
    render_svg_chart,
    render_text,
)
from lbc_core.export import (
    CHECKPOINT_FILE,
    COMPRESSED_FILE,
    MANIFEST_FILE,
    load_state_dict_file,
    read_manifest,
    rebuild_model,
)
from lbc_core.models import build_model
from lbc_core.sparsity import LayerPolicy, NMPattern, SparsityConfig, build_sparsifier


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _random_nm_model(arch: str, args: dict[str, Any], pattern: NMPattern) -> tuple[nn.Module, list[str]]:
    """A zoo model with a one-shot magnitude N:M mask (random weights: timings do not depend on values)."""
    model = build_model(arch, **args)
    sparsifier = build_sparsifier(SparsityConfig(method="asp", pattern=pattern, layers=LayerPolicy()))
    sparsifier.prepare(model)
    report = sparsifier.finalize()
    return model.eval(), [layer.name for layer in report.layers]


def _exported_model(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    manifest = read_manifest(directory / MANIFEST_FILE)
    if (directory / COMPRESSED_FILE).is_file():
        return rebuild_model(manifest, directory / COMPRESSED_FILE), manifest
    arch = manifest["architecture"]
    model = build_model(arch["name"], **arch["args"])
    model.load_state_dict(load_state_dict_file(directory / CHECKPOINT_FILE), strict=True)
    return model.eval(), manifest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="lenet5", help="zoo architecture (ignored with --export-dir)")
    parser.add_argument("--arch-args", default="{}", help="JSON keyword arguments, e.g. '{\"depth\": 4}'")
    parser.add_argument(
        "--pattern", default="2:4", help="N:M pattern of the random mask (ignored with --export-dir)"
    )
    parser.add_argument("--export-dir", type=Path, help="an export directory holding manifest.json")
    parser.add_argument("--batch-sizes", type=_ints, default=[1, 32])
    parser.add_argument(
        "--dtypes", default="", help="comma-separated; default float16 on sparse GPUs, else float32"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--min-speedup", type=float, default=1.05)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write speedup_report.json here")
    parser.add_argument("--html", type=Path, help="write the HTML page here")
    parser.add_argument("--svg", type=Path, help="write the per-layer chart here")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)

    accuracy = None
    if options.export_dir is not None:
        model, manifest = _exported_model(options.export_dir)
        name, args = manifest["architecture"]["name"], manifest["architecture"]["args"]
        pattern = NMPattern.parse(manifest["pattern"]["text"])
        layers = [layer["name"] for layer in manifest["layers"]]
        value = (manifest.get("metrics") or {}).get("val_accuracy")
        accuracy = float(value) if isinstance(value, int | float) else None
        # The job's own input size when the manifest records it; the architecture's default otherwise.
        recorded = (manifest.get("data") or {}).get("input_shape")
        input_shape = tuple(recorded) if recorded else architecture_input_shape(name, args)
    else:
        name, args = options.arch, json.loads(options.arch_args)
        pattern = NMPattern.parse(options.pattern)
        model, layers = _random_nm_model(name, args, pattern)
        input_shape = architecture_input_shape(name, args)

    report = build_speedup_report(
        model,
        input_shape=input_shape,
        batch_sizes=options.batch_sizes,
        dtypes=[d for d in options.dtypes.split(",") if d.strip()] or None,
        device=options.device,
        pattern=pattern,
        layers=layers,
        accuracy=accuracy,
        export_dir=options.export_dir,
        model_name=name,
        warmup=options.warmup,
        repeats=options.repeats,
        min_speedup=options.min_speedup,
    )
    print(render_text(report), end="")
    for path, text in ((options.json, report.to_json()), (options.html, render_html(report))):
        if path is not None:
            path.write_text(text + ("\n" if not text.endswith("\n") else ""), encoding="utf-8")
    if options.svg is not None:
        options.svg.write_text(render_svg_chart(report), encoding="utf-8")


if __name__ == "__main__":
    main()
