"""Turn one or more ``runs.jsonl`` files from ``experiments/compare.py`` into markdown tables and a plot.

    python experiments/report.py experiments/results/digits/runs.jsonl [more.jsonl ...] \
        [--plot docs/results/digits.svg] [--md out.md]

Tables: accuracy mean ± sample std (n-1) over seeds of the EXPORTED model, per dataset × model ×
pattern × method, plus per-method cost (median seconds per training epoch, peak RSS) and, per
pattern, how many seeds each method beat another (paired by seed).

Plot: matplotlib is not a dependency of this project. If it is importable, a PNG is written;
otherwise a small SVG is written by hand (same content: mean accuracy per pattern and method with
±std error bars).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

ORDER = [
    "dense",
    "asp",
    "wanda",
    "srste",
    "lbc",
    "lbc_dense",
    "lbc_magnitude",
    "lbc_wanda",
    "lbc_revival",
    "lbc_revival_grad",
]
PATTERN_ORDER = ["2:4", "1:4", "2:8", "4:8", "1:16"]
COLORS = {
    "dense": "#7f7f7f",
    "asp": "#1f77b4",
    "srste": "#ff7f0e",
    "lbc": "#2ca02c",
    "lbc_dense": "#9467bd",
    "lbc_revival": "#8c564b",
    "lbc_revival_grad": "#e377c2",
    "wanda": "#17becf",
    "lbc_magnitude": "#bcbd22",
    "lbc_wanda": "#d62728",
}
NAMES = {
    "dense": "dense",
    "asp": "one-shot magnitude + FT",
    "srste": "SR-STE",
    "lbc": "LBC",
    "lbc_dense": "LBC from dense ckpt",
    "lbc_revival": "LBC, revival removal",
    "lbc_revival_grad": "LBC, revival removal + dead gradient",
    "wanda": "Wanda + FT",
    "lbc_magnitude": "LBC from dense ckpt, magnitude prior",
    "lbc_wanda": "LBC from dense ckpt, Wanda prior",
}


def load(paths: list[Path]) -> list[dict[str, Any]]:
    records = []
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def _label(r: dict[str, Any]) -> str:
    return r.get("label", r["method"])


def _order_key(label: str) -> tuple[int, str]:
    base = label.split("(")[0]
    return (ORDER.index(base) if base in ORDER else len(ORDER), label)


def _pattern_key(p: str) -> tuple[int, str]:
    return (PATTERN_ORDER.index(p) if p in PATTERN_ORDER else len(PATTERN_ORDER), p)


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def group(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]]:
    out: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        out[(r["dataset"], r["model"], r["pattern"])][_label(r)].append(r)
    return out


def accuracy_table(records: list[dict[str, Any]]) -> str:
    groups = group(records)
    labels = sorted({_label(r) for r in records}, key=_order_key)
    head = "| dataset | model | pattern | " + " | ".join(NAMES.get(m, m) for m in labels) + " |"
    lines = [head, "|" + "---|" * (3 + len(labels))]
    for ds, model, pat in sorted(groups, key=lambda k: (k[0], k[1], _pattern_key(k[2]))):
        cells = []
        row = groups[(ds, model, pat)]
        best = max((mean_std([x["val_accuracy"] for x in row[m]])[0] for m in labels if m in row), default=0)
        for m in labels:
            if m not in row:
                cells.append("–")
                continue
            mean, std = mean_std([100 * x["val_accuracy"] for x in row[m]])
            text = f"{mean:.2f} ± {std:.2f} (n={len(row[m])})"
            if abs(mean - 100 * best) < 1e-9 and m != "dense":
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {ds} | {model} | {pat} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table(records: list[dict[str, Any]]) -> str:
    by: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by[(r["dataset"], r["model"], _label(r))].append(r)
    lines = [
        "| dataset | model | method | runs | median s / train epoch (mean over runs) | "
        "peak RSS MiB (mean) | RSS at run start MiB (mean) | peak − start MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ds, model, m in sorted(by, key=lambda k: (k[0], k[1], _order_key(k[2]))):
        rs = by[(ds, model, m)]
        sec = statistics.fmean(r["median_epoch_seconds"] for r in rs)
        peak = statistics.fmean(r["peak_rss_mib"] for r in rs)
        start = statistics.fmean(r.get("rss_before_mib", float("nan")) for r in rs)
        lines.append(
            f"| {ds} | {model} | {NAMES.get(m, m)} | {len(rs)} | {sec:.3f} | {peak:.0f} | {start:.0f} | "
            f"{peak - start:.0f} |"
        )
    return "\n".join(lines)


def revival_table(records: list[dict[str, Any]]) -> str:
    """The removal ablation: revivals counted during training and the final training mask."""
    by: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["method"] in ("lbc", "lbc_revival", "lbc_revival_grad"):
            by[(r["dataset"], r["model"], r["pattern"], _label(r))].append(r)
    lines = [
        "| dataset | model | pattern | removal | n | accuracy % | revivals per run (min–max) | "
        "runs with a revival | final mask exactly N:M | closest margin (min over runs) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ds, model, pat, m in sorted(by, key=lambda k: (k[0], k[1], _pattern_key(k[2]), _order_key(k[3]))):
        rs = by[(ds, model, pat, m)]
        mean, std = mean_std([100 * r["val_accuracy"] for r in rs])
        permanent = m.split("(")[0] == "lbc"
        if permanent:
            revivals, revived_runs, exact = "0 (by construction)", "–", "yes (by construction)"
        else:
            counts = [int(r["revivals"]) for r in rs]
            revivals = f"{statistics.fmean(counts):.1f} ({min(counts)}–{max(counts)})"
            revived_runs = f"{sum(c > 0 for c in counts)}/{len(rs)}"
            exact = f"{sum(r['mask_exactly_nm'] == 1.0 for r in rs)}/{len(rs)}"
        margins = [r["closest_revival_margin"] for r in rs if r.get("closest_revival_margin") is not None]
        margin = "–" if permanent or not margins else f"{min(margins):+.3g}"
        lines.append(
            f"| {ds} | {model} | {pat} | {NAMES.get(m, m)} | {len(rs)} | {mean:.2f} ± {std:.2f} | "
            f"{revivals} | {revived_runs} | {exact} | {margin} |"
        )
    return "\n".join(lines)


def paired_table(records: list[dict[str, Any]], a: str, b: str) -> str:
    """Per pattern: seeds where a > b, a == b, a < b (paired by seed), and the mean difference."""
    groups = group(records)
    lines = [
        f"| dataset | model | pattern | {NAMES.get(a, a)} > {NAMES.get(b, b)} | tie | < | "
        "mean diff (pp) | min diff (pp) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ds, model, pat in sorted(groups, key=lambda k: (k[0], k[1], _pattern_key(k[2]))):
        row = groups[(ds, model, pat)]
        if a not in row or b not in row:
            continue
        sa = {r["seed"]: r["val_accuracy"] for r in row[a]}
        sb = {r["seed"]: r["val_accuracy"] for r in row[b]}
        diffs = [100 * (sa[s] - sb[s]) for s in sorted(set(sa) & set(sb))]
        if not diffs:
            continue
        win = sum(d > 1e-9 for d in diffs)
        lose = sum(d < -1e-9 for d in diffs)
        lines.append(
            f"| {ds} | {model} | {pat} | {win} | {len(diffs) - win - lose} | {lose} | "
            f"{statistics.fmean(diffs):+.2f} | {min(diffs):+.2f} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- plots


def _series(records: list[dict[str, Any]], dataset: str, model: str):
    groups = group(records)
    patterns = sorted({k[2] for k in groups if k[0] == dataset and k[1] == model}, key=_pattern_key)
    labels = sorted(
        {_label(r) for r in records if r["dataset"] == dataset and r["model"] == model}, key=_order_key
    )
    data = {}
    for m in labels:
        data[m] = []
        for p in patterns:
            rs = groups[(dataset, model, p)].get(m, [])
            data[m].append(mean_std([100 * r["val_accuracy"] for r in rs]) if rs else None)
    return patterns, labels, data


def plot_png(records: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    combos = sorted({(r["dataset"], r["model"]) for r in records})
    fig, axes = plt.subplots(1, len(combos), figsize=(6 * len(combos), 4), squeeze=False)
    for ax, (ds, model) in zip(axes[0], combos, strict=True):
        patterns, labels, data = _series(records, ds, model)
        width = 0.8 / max(len(labels), 1)
        for i, m in enumerate(labels):
            xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(patterns))]
            pts = [(x, v) for x, v in zip(xs, data[m], strict=True) if v]
            ax.bar(
                [x for x, _ in pts],
                [v[0] for _, v in pts],
                width,
                yerr=[v[1] for _, v in pts],
                label=NAMES.get(m, m),
                color=COLORS.get(m.split("(")[0]),
            )
        ax.set_xticks(range(len(patterns)), patterns)
        ax.set_title(f"{ds} / {model}")
        ax.set_ylabel("val accuracy of exported model (%)")
        lows = [v[0] - v[1] for m in labels for v in data[m] if v]
        ax.set_ylim(max(0, min(lows) - 1), 100)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def plot_svg(records: list[dict[str, Any]], path: Path) -> None:
    combos = sorted({(r["dataset"], r["model"]) for r in records})
    pw, ph, ml, mt, mb = 520, 300, 55, 30, 70
    width = pw * len(combos)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{ph}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{ph}" fill="white"/>',
    ]
    for c, (ds, model) in enumerate(combos):
        ox = c * pw
        patterns, labels, data = _series(records, ds, model)
        vals = [v for m in labels for v in data[m] if v]
        lo = math.floor(min(v[0] - v[1] for v in vals) - 0.5)
        hi = math.ceil(max(v[0] + v[1] for v in vals) + 0.2)
        hi = min(max(hi, lo + 1), 100)
        plot_w, plot_h = pw - ml - 20, ph - mt - mb

        def y(v: float, lo: int = lo, hi: int = hi, plot_h: int = plot_h) -> float:
            return mt + plot_h * (1 - (min(max(v, lo), hi) - lo) / (hi - lo))

        parts.append(
            f'<text x="{ox + pw / 2}" y="18" text-anchor="middle" font-size="13">'
            f"{ds} / {model}: exported-model val accuracy (%), mean ± std</text>"
        )
        step = max(1, (hi - lo) // 6)
        for t in range(lo, hi + 1, step):
            parts.append(
                f'<line x1="{ox + ml}" x2="{ox + ml + plot_w}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                f'stroke="#ddd"/><text x="{ox + ml - 5}" y="{y(t) + 4:.1f}" text-anchor="end">{t}</text>'
            )
        slot = plot_w / max(len(patterns), 1)
        bw = slot * 0.8 / max(len(labels), 1)
        for j, p in enumerate(patterns):
            cx = ox + ml + slot * (j + 0.5)
            parts.append(f'<text x="{cx:.1f}" y="{mt + plot_h + 15}" text-anchor="middle">{p}</text>')
            for i, m in enumerate(labels):
                v = data[m][j]
                if not v:
                    continue
                x = cx + (i - len(labels) / 2) * bw
                color = COLORS.get(m.split("(")[0], "#444")
                parts.append(
                    f'<rect x="{x:.1f}" y="{y(v[0]):.1f}" width="{bw * 0.9:.1f}" '
                    f'height="{mt + plot_h - y(v[0]):.1f}" fill="{color}"/>'
                )
                ex = x + bw * 0.45
                parts.append(
                    f'<line x1="{ex:.1f}" x2="{ex:.1f}" y1="{y(v[0] - v[1]):.1f}" '
                    f'y2="{y(v[0] + v[1]):.1f}" stroke="black"/>'
                )
        for i, m in enumerate(labels):
            lx = ox + ml + (i % 3) * 150
            ly = ph - mb + 35 + (i // 3) * 15
            parts.append(
                f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" '
                f'fill="{COLORS.get(m.split("(")[0], "#444")}"/>'
                f'<text x="{lx + 14}" y="{ly}">{NAMES.get(m, m)}</text>'
            )
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Markdown tables and a plot from compare.py runs.jsonl files")
    p.add_argument("jsonl", nargs="+", type=Path)
    p.add_argument("--plot", type=Path, help="plot path; .png needs matplotlib, otherwise an .svg is written")
    p.add_argument("--patterns", help="comma-separated patterns to keep (default: all)")
    p.add_argument("--methods", help="comma-separated methods (base names, e.g. lbc,lbc_dense) to keep")
    p.add_argument("--accuracy-only", action="store_true", help="only the accuracy table")
    p.add_argument("--revival", action="store_true", help="only the permanent vs revival removal table")
    p.add_argument(
        "--priors", action="store_true", help="accuracy plus paired tables of LBC score priors and Wanda"
    )
    p.add_argument("--md", type=Path, help="write the markdown here as well as to stdout")
    args = p.parse_args(argv)
    records = load(args.jsonl)
    if args.patterns:
        keep = set(args.patterns.split(","))
        records = [r for r in records if r["pattern"] in keep]
    if args.methods:
        keep = set(args.methods.split(","))
        records = [r for r in records if r["method"] in keep]
    if args.revival:
        text = revival_table(records) + "\n\n" + paired_table(records, "lbc_revival", "lbc") + "\n"
        print(text)
        if args.md:
            args.md.write_text(text)
        return 0
    if args.priors:
        pairs = [
            ("lbc_magnitude", "lbc_dense"),
            ("lbc_wanda", "lbc_dense"),
            ("lbc_wanda", "lbc_magnitude"),
            ("wanda", "asp"),
            ("lbc_wanda", "wanda"),
        ]
        text = "\n\n".join(
            [accuracy_table(records)]
            + [
                f"{NAMES[a]} vs {NAMES[b]}, paired by seed:\n\n" + paired_table(records, a, b)
                for a, b in pairs
            ]
        )
        print(text + "\n")
        if args.md:
            args.md.write_text(text + "\n")
        return 0
    if args.accuracy_only:
        text = accuracy_table(records) + "\n"
        print(text)
        if args.md:
            args.md.write_text(text)
        return 0
    sections = [
        "### Accuracy of the exported model (%, mean ± sample std over seeds)\n\n" + accuracy_table(records),
        "### LBC vs one-shot magnitude + fine-tune, paired by seed\n\n" + paired_table(records, "lbc", "asp"),
        "### LBC vs SR-STE, paired by seed\n\n" + paired_table(records, "lbc", "srste"),
        "### Cost (same process, same machine, same sweep)\n\n" + cost_table(records),
    ]
    text = "\n\n".join(sections) + "\n"
    if args.plot:
        target = args.plot
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == ".png" and plot_png(records, target):
            text += f"\nPlot: {target} (matplotlib)\n"
        else:
            target = target.with_suffix(".svg")
            plot_svg(records, target)
            text += f"\nPlot: {target} (hand-written SVG; matplotlib not installed)\n"
    print(text)
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
