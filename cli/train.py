"""``lbc train SPEC --out DIR``: run a job spec on this machine with a progress bar.

Exit codes: 0 done, 1 the run failed, 2 the spec is invalid, 130 stopped by Ctrl-C (checkpoint written;
the same command resumes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.spec import JobSpec

EXIT_OK, EXIT_FAILED, EXIT_INVALID_SPEC, EXIT_INTERRUPTED = 0, 1, 2, 130

_DESCRIPTION = """\
Train, sparsify and export the job described by SPEC (YAML or JSON) on this machine.

Checkpoints go to DIR/checkpoints after every epoch. Ctrl-C stops cleanly at the next step (a checkpoint
is written, exit code 130); running the same command again resumes from it. A second Ctrl-C aborts at once.
Outputs: DIR/export (sparse checkpoint, masks, compressed N:M form, manifest; model.onnx and
model.fp16.onnx with export.onnx: true), DIR/metrics.json,
DIR/summary.json and DIR/spec.json (the spec with every default filled in).
Relative paths in the spec are resolved against the current directory."""


def _epilog() -> str:
    from jobs.catalog import render_catalog
    from jobs.spec import render_field_docs
    from lbc_catalog.tasks import render_recipes

    return (
        "Job spec fields:\n\n" + render_field_docs() + "\n\n" + render_recipes() + "\n\n" + render_catalog()
    )


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "train",
        help="run a job spec locally",
        description=_DESCRIPTION,
        epilog_factory=_epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="job spec file (.yaml, .yml or .json)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    parser.add_argument(
        "--no-resume", action="store_true", help="start over even if DIR holds a checkpoint of an earlier run"
    )
    parser.add_argument("--device", metavar="DEVICE", help="override train.device (auto, cpu, cuda, cuda:N)")
    parser.add_argument("--quiet", action="store_true", help="no progress output, only the final summary")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from jobs.spec import SpecError

    try:
        spec = read_spec(args.spec, device=args.device)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID_SPEC

    # Heavy imports (torch, the engine) only once the spec is known to be good.
    from cli.progress import ProgressReporter, stop_on_sigint
    from worker.multiprocess import run_spec_processes
    from worker.runner import JobInputError, run_spec

    out = Path(args.out)
    reporter = ProgressReporter(epochs=spec.train.epochs, quiet=args.quiet)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_spec(spec, out / "spec.json")
        with stop_on_sigint(reporter):
            if spec.train.processes > 1:  # the same launcher and relay as the service's workers
                result = run_spec_processes(spec, out, reporter, resume=not args.no_resume)
            else:
                result = run_spec(spec, out, callbacks=[reporter], resume=not args.no_resume)
    except KeyboardInterrupt:
        print("\nlbc train: aborted by a second Ctrl-C; the last epoch checkpoint is kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except JobInputError as exc:
        print(f"lbc train: error: {exc.error_type}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # our reader went away (`lbc train ... | head`): `main` ends quietly with 141
        raise
    except Exception as exc:  # a one-line message instead of a traceback, as for any CLI failure
        print(f"lbc train: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        reporter.close()

    if result.status == "stopped":
        summary = result.summary
        print(
            f"stopped at epoch {summary['epoch'] + 1}, step {summary['step']} "
            f"(checkpoint {out / 'checkpoints'}); run the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(format_summary(spec, result.summary, out))
    return EXIT_OK


def read_spec(path: str, device: str | None = None) -> JobSpec:
    """Load and validate the spec file, apply ``--device``, and check that its local paths exist."""
    from jobs.spec import FieldProblem, SpecError, dump_spec, load_spec, parse_spec

    spec = load_spec(Path(path))
    if device is not None:
        data = dump_spec(spec)
        data["train"]["device"] = device
        spec = parse_spec(data, source=f"{path} with --device {device}")
    local = {
        "model.checkpoint": spec.model.checkpoint,
        "model.path": spec.model.path,
        "dataset.path": spec.dataset.path,
        "dataset.val_path": spec.dataset.val_path,
        "dataset.tokenizer": spec.dataset.tokenizer,
    }
    problems = [
        FieldProblem(field, f"{value} does not exist (relative to {Path.cwd()})")
        for field, value in local.items()
        if value is not None and not Path(value).exists()
    ]
    if not problems and spec.model.path is not None:
        problems += local_model_problems(Path(spec.model.path), spec.task)
    if problems:
        raise SpecError(problems, path)
    return spec


def local_model_problems(directory: Path, task: str) -> list[Any]:
    """A local Hugging Face directory under the upload rules (safetensors only, config read as data, an
    allowed family that can do ``task``): the problem as a spec problem of ``model.path``."""
    from jobs.spec import FieldProblem
    from lbc_formats.hf_config import HFConfigError
    from lbc_formats.hf_files import HFFileError, read_model_dir

    try:
        read_model_dir(directory, task)
    except (HFFileError, HFConfigError) as exc:
        return [FieldProblem("model.path", f"{directory}: {exc}")]
    return []


def _primary_line(summary: dict[str, Any]) -> str:
    """The run's primary metric: val accuracy, or val perplexity for a causal LM."""
    key = (summary.get("primary_metric") or {}).get("name", "val_accuracy")
    label = key.replace("_", " ")
    return f"  {label:<15}{summary[key]:.4f}"


def format_summary(spec: JobSpec, summary: dict[str, Any], out: Path) -> str:
    verified = "yes" if summary.get("verified_nm") else "NO"
    lines = [
        f"done: {spec.model.architecture or spec.model.path} {summary.get('method', spec.sparsity.method)} "
        f"{summary.get('pattern', spec.sparsity.pattern)} on {spec.dataset.source}",
        _primary_line(summary),
        f"  density        {summary['density']:.4f} (non-zero weights / all weights)",
        f"  verified N:M   {verified} ({summary.get('sparsified_layers', 0)} layers sparsified, "
        f"{summary.get('skipped_layers', 0)} kept dense)",
    ]
    if isinstance(summary.get("lr"), int | float):
        lines.append(f"  lr             {summary['lr']:g} ({summary.get('lr_rule', 'given')})")
    onnx = summary.get("onnx")
    if isinstance(onnx, dict):
        lines.append(f"  onnx           {_onnx_line(onnx)}")
    resumed = summary.get("resumed_from")
    if resumed:
        lines.append(f"  resumed from   epoch {resumed['epoch']} after {resumed['step']} of its steps")
    lines.append(f"  files in {out}:")
    for path in sorted(
        p for p in out.rglob("*") if p.is_file() and "checkpoints" not in p.relative_to(out).parts
    ):
        lines.append(f"    {path.relative_to(out).as_posix():<36} {_size(path.stat().st_size)}")
    # Last, where nobody can miss them: a run that did not learn exported a useless model.
    for warning in summary.get("warnings") or ():
        lines.append(f"WARNING ({warning['code']}): {warning['message']}")
    return "\n".join(lines)


def _onnx_line(onnx: dict[str, Any]) -> str:
    if onnx.get("status") != "exported":
        return f"not exported: {onnx.get('reason')}"
    reasons = onnx.get("reasons") or {}
    return ", ".join(
        f"{name} {status}" + (f" ({reasons[name]})" if name in reasons else "")
        for name, status in (onnx.get("files") or {}).items()
    )


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _write_spec(spec: JobSpec, path: Path) -> None:
    import json

    from jobs.spec import dump_spec

    path.write_text(json.dumps(dump_spec(spec), indent=2) + "\n")
