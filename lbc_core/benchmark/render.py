"""Human-readable forms of a speedup report: a text table, a self-contained SVG chart and an HTML page.

Everything is handwritten (no plotting library), and every piece of text taken from the report is
escaped: layer names come from user models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from lbc_core.benchmark.report import (
    DENSE,
    Measurement,
    SpeedupReport,
    Timing,
    device_description,
)

_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
_FONT = "font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif"


def _esc(value: object) -> str:
    return escape(str(value), quote=True)


def _ms(timing: Timing | None) -> str:
    return "-" if timing is None else f"{timing.median_ms:.4g}"


def _spread(timing: Timing | None) -> str:
    return "" if timing is None else f"{timing.p10_ms:.3g}-{timing.p90_ms:.3g}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _series_label(m: Measurement) -> str:
    return f"batch {m.batch_size} {m.dtype}"


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else "..." + name[-(limit - 3) :]


# -- SVG -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Panel:
    title: str
    unit: str  # appended to tick labels, e.g. "x", " ms", "%"
    rows: Sequence[str]  # one group of bars per row (layer)
    series: Sequence[str]
    values: Sequence[Sequence[float | None]]  # values[row][series]; None draws "n/a"
    reference: float | None = None  # vertical line, e.g. 1.0x = as fast as dense
    reference_label: str = ""


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def _panel_svg(panel: _Panel, top: float, width: float) -> tuple[list[str], float]:
    """SVG elements of one horizontal grouped-bar panel starting at ``top``, and the panel's height."""
    label_w, right_pad, bar_h, gap = 190.0, 20.0, 12.0, 8.0
    plot_w = width - label_w - right_pad
    present = [v for row in panel.values for v in row if v is not None]
    limit = _nice_max(max([*present, panel.reference or 0.0, 0.0]) * 1.05)
    scale = plot_w / limit
    parts = [
        f'<text x="{label_w:.0f}" y="{top + 14:.0f}" font-size="13" font-weight="600">{_esc(panel.title)}</text>'
    ]
    legend_y = top + 30
    x = label_w
    for index, name in enumerate(panel.series):
        color = _PALETTE[index % len(_PALETTE)]
        parts.append(f'<rect x="{x:.0f}" y="{legend_y - 9:.0f}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 14:.0f}" y="{legend_y:.0f}" font-size="11">{_esc(name)}</text>')
        x += 24 + 7 * len(name)
    plot_top = legend_y + 12
    group_h = bar_h * len(panel.series) + gap
    plot_h = group_h * len(panel.rows)
    # Grid and ticks.
    for i in range(5):
        tick = limit * i / 4
        gx = label_w + tick * scale
        parts.append(
            f'<line x1="{gx:.1f}" y1="{plot_top:.1f}" x2="{gx:.1f}" y2="{plot_top + plot_h:.1f}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{gx:.1f}" y="{plot_top + plot_h + 14:.1f}" font-size="10" text-anchor="middle">'
            f"{tick:.3g}{_esc(panel.unit)}</text>"
        )
    for r, row in enumerate(panel.rows):
        y0 = plot_top + r * group_h
        parts.append(
            f'<text x="{label_w - 6:.0f}" y="{y0 + group_h / 2:.1f}" font-size="11" text-anchor="end" '
            f'dominant-baseline="middle"><title>{_esc(row)}</title>{_esc(_short(row))}</text>'
        )
        for s, value in enumerate(panel.values[r]):
            y = y0 + s * bar_h
            if value is None:
                parts.append(
                    f'<text x="{label_w + 4:.0f}" y="{y + bar_h - 2:.1f}" font-size="10" fill="#777">n/a</text>'
                )
                continue
            color = _PALETTE[s % len(_PALETTE)]
            parts.append(
                f'<rect x="{label_w:.0f}" y="{y:.1f}" width="{max(value * scale, 0.5):.1f}" '
                f'height="{bar_h - 2:.0f}" fill="{color}"><title>{_esc(row)}, {_esc(panel.series[s])}: '
                f"{value:.3g}{_esc(panel.unit)}</title></rect>"
            )
    if panel.reference is not None:
        rx = label_w + panel.reference * scale
        parts.append(
            f'<line x1="{rx:.1f}" y1="{plot_top - 4:.1f}" x2="{rx:.1f}" y2="{plot_top + plot_h:.1f}" '
            'stroke="#c00" stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
        # Below the axis labels, so it never covers a bar.
        parts.append(
            f'<text x="{rx:.1f}" y="{plot_top + plot_h + 28:.1f}" font-size="10" fill="#c00" '
            f'text-anchor="middle">{_esc(panel.reference_label)}</text>'
        )
    return parts, (plot_top - top) + plot_h + (36 if panel.reference is not None else 24)


def _speedup_panel(report: SpeedupReport) -> _Panel:
    series = list(dict.fromkeys(_series_label(m) for layer in report.layers for m in layer.measurements))
    values = [
        [next((m.speedup for m in layer.measurements if _series_label(m) == label), None) for label in series]
        for layer in report.layers
    ]
    return _Panel(
        title="Per-layer speedup of the 2:4 kernel over dense (higher is better)",
        unit="x",
        rows=[layer.name for layer in report.layers],
        series=series,
        values=values,
        reference=1.0,
        reference_label="1.0x = dense",
    )


def _dense_time_panel(report: SpeedupReport) -> _Panel:
    series = list(dict.fromkeys(_series_label(m) for layer in report.layers for m in layer.measurements))
    values = [
        [
            next(
                (
                    m.dense.median_ms
                    for m in layer.measurements
                    if _series_label(m) == label and m.dense is not None
                ),
                None,
            )
            for label in series
        ]
        for layer in report.layers
    ]
    return _Panel(
        title="Per-layer dense time (median ms per call)",
        unit=" ms",
        rows=[layer.name for layer in report.layers],
        series=series,
        values=values,
    )


def _flop_panel(report: SpeedupReport) -> _Panel:
    values: list[list[float | None]] = [
        [100.0 * (1 - layer.flops_nm / layer.flops_dense) if layer.flops_dense else None]
        for layer in report.layers
    ]
    return _Panel(
        title="FLOPs an ideal N:M kernel would save per layer (%)",
        unit="%",
        rows=[layer.name for layer in report.layers],
        series=[f"{report.model.pattern} FLOP reduction"],
        values=values,
    )


def render_svg_chart(report: SpeedupReport, width: int = 820) -> str:
    """A self-contained SVG: per-layer speedup per batch size and dtype with a line at 1.0x, or, on a
    device without a sparse kernel, per-layer dense time and FLOP savings under a plain caption."""
    parts: list[str] = []
    top = 8.0
    if report.environment.sparse_kernels:
        caption = (
            f"{report.environment.device_name} ({report.environment.backend}); "
            "bars left of the red line: sparse is slower than dense"
        )
        panels = [_speedup_panel(report)]
    else:
        caption = (
            f"No sparse kernel on this device ({device_description(report.environment)}): "
            "dense timings only; N:M saves size and FLOPs here, not time"
        )
        panels = [_dense_time_panel(report), _flop_panel(report)]
    parts.append(f'<text x="10" y="{top + 12:.0f}" font-size="12" fill="#333">{_esc(caption)}</text>')
    top += 24
    if not report.layers:
        parts.append(f'<text x="10" y="{top + 14:.0f}" font-size="12">No sparsified layer to chart.</text>')
        top += 24
    else:
        for panel in panels:
            elements, height = _panel_svg(panel, top, width)
            parts.extend(elements)
            top += height + 10
    height = math.ceil(top)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" style="{_FONT}">'
        f"<title>{_esc('Speedup report: ' + (report.model.name or report.model.class_name))}</title>"
        f'<rect width="100%" height="100%" fill="#fff"/>' + "".join(parts) + "</svg>"
    )


# -- text ------------------------------------------------------------------------------------------
def render_text(report: SpeedupReport) -> str:
    """A plain-text table of every layer measurement, then the end-to-end rows, savings and verdict."""
    env = report.environment
    lines = [
        f"Speedup report ({report.schema}) for {report.model.name or report.model.class_name}, "
        f"pattern {report.model.pattern}, input {tuple(report.model.input_shape)}",
        f"device {env.device} ({env.device_name}), backend {env.backend}, torch {env.torch_version}, "
        f"CUDA {env.cuda_version or '-'}, driver {env.driver_version or '-'}, threads {env.cpu_threads}",
        f"timing: {report.method.timer}; warmup {report.method.warmup}, repeats {report.method.repeats}, "
        f"{report.method.statistic}",
        "",
    ]
    header = (
        f"{'layer':28} {'kind':6} {'batch':>5} {'dtype':8} {'GEMM MxNxK':>20} {'2:4':>3} "
        f"{'dense ms':>9} {'p10-p90':>15} {'sparse ms':>9} {'speedup':>7}  recommendation"
    )
    lines += [header, "-" * len(header)]
    for layer in report.layers:
        for m in layer.measurements:
            gemm = f"{m.gemm.m}x{m.gemm.n}x{m.gemm.k}"
            lines.append(
                f"{_short(layer.name):28} {layer.kind[:6]:6} {m.batch_size:>5} {m.dtype:8} {gemm:>20} "
                f"{'yes' if layer.compliance.compliant else 'no':>3} {_ms(m.dense):>9} {_spread(m.dense):>15} "
                f"{_ms(m.sparse):>9} {_x(m.speedup):>7}  {m.recommendation}"
            )
    lines.append("")
    lines.append("end to end:")
    for e in report.end_to_end.measurements:
        throughput = "-" if e.dense_throughput is None else f"{e.dense_throughput:,.0f}/s"
        sparse_throughput = "-" if e.sparse_throughput is None else f"{e.sparse_throughput:,.0f}/s"
        lines.append(
            f"  batch {e.batch_size:>5} {e.dtype:8} dense {_ms(e.dense):>9} ms ({throughput})  "
            f"sparse {_ms(e.sparse):>9} ms ({sparse_throughput})  speedup {_x(e.speedup)}"
        )
    for acc in report.end_to_end.accuracy:
        lines.append(f"  accuracy {acc.variant} {acc.dtype}: {acc.accuracy:.4f} on {acc.samples} samples")
    if report.end_to_end.accuracy_given is not None:
        lines.append(f"  accuracy given: {report.end_to_end.accuracy_given:.4f}")
    s = report.savings
    lines.append("")
    lines.append(
        f"savings: params {s.params_nonzero:,} non-zero of {s.params_dense:,}; FLOPs/sample "
        f"{s.flops_nm_per_sample:,.0f} N:M vs {s.flops_dense_per_sample:,} dense ({s.flops_ratio:.2f}x)"
        + (
            f"; checkpoint {s.checkpoint_compressed_bytes:,} B compressed vs {s.checkpoint_dense_bytes:,} B dense "
            f"({s.checkpoint_ratio:.2f}x)"
            if s.checkpoint_ratio is not None
            else f"; {s.checkpoint_note}"
        )
    )
    summary = report.summary
    lines.append(
        f"summary: median layer speedup {_x(summary.median_layer_speedup)}, end-to-end {_x(summary.end_to_end_speedup)}, "
        f"layers recommended dense: {', '.join(summary.layers_recommended_dense) or 'none'}"
    )
    lines.append("")
    lines.append(summary.verdict)
    lines.append("")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


# -- HTML ------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem;font-size:0.85rem}
th,td{border:1px solid #ccc;padding:0.25rem 0.5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{background:#f7f7f0;border-left:4px solid #c90;padding:0.75rem 1rem}
.rec-dense{color:#b00;font-weight:600}.rec-sparse{color:#070;font-weight:600}.rec-na{color:#666}
dl{display:grid;grid-template-columns:max-content auto;gap:0.2rem 1rem}dt{font-weight:600}
"""


def _row(cells: Sequence[tuple[str, str]]) -> str:
    """``cells``: (already escaped HTML, css class) pairs."""
    return (
        "<tr>"
        + "".join(f'<td class="{cls}">{html}</td>' if cls else f"<td>{html}</td>" for html, cls in cells)
        + "</tr>"
    )


def _rec_class(choice: str) -> str:
    return {"sparse": "rec-sparse", DENSE: "rec-dense"}.get(choice, "rec-na")


def _definition_list(items: Sequence[tuple[str, object]]) -> str:
    return (
        "<dl>"
        + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc('-' if v is None else v)}</dd>" for k, v in items)
        + "</dl>"
    )


def _measurements_table(report: SpeedupReport) -> str:
    head = (
        "layer",
        "batch",
        "dtype",
        "GEMM M×N×K",
        "padded M",
        "dense ms (p10–p90)",
        "sparse ms (p10–p90)",
        "speedup",
        "recommendation",
        "reason",
    )
    rows = []
    for layer in report.layers:
        for m in layer.measurements:
            rows.append(
                _row(
                    [
                        (_esc(layer.name), ""),
                        (_esc(m.batch_size), "num"),
                        (_esc(m.dtype), ""),
                        (_esc(f"{m.gemm.m}×{m.gemm.n}×{m.gemm.k}"), "num"),
                        (_esc("-" if m.padded_m is None else m.padded_m), "num"),
                        (_esc(f"{_ms(m.dense)} ({_spread(m.dense)})" if m.dense else "-"), "num"),
                        (_esc(f"{_ms(m.sparse)} ({_spread(m.sparse)})" if m.sparse else "-"), "num"),
                        (_esc(_x(m.speedup)), "num"),
                        (_esc(m.recommendation), _rec_class(m.recommendation)),
                        (_esc(m.reason), ""),
                    ]
                )
            )
    header = "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"
    return f'<table id="measurements"><thead>{header}</thead><tbody>{"".join(rows)}</tbody></table>'


def _layers_table(report: SpeedupReport) -> str:
    head = (
        "layer",
        "kind",
        "weight",
        "density",
        "2:4 compliant",
        "FLOPs/sample dense → N:M",
        "recommendation",
        "reason",
    )
    rows = "".join(
        _row(
            [
                (_esc(layer.name), ""),
                (_esc(layer.kind), ""),
                (_esc("×".join(map(str, layer.weight_shape))), "num"),
                (_esc(f"{layer.density:.3f}"), "num"),
                (
                    _esc(f"{'yes' if layer.compliance.compliant else 'no'}: {layer.compliance.explanation}"),
                    "",
                ),
                (_esc(f"{layer.flops_dense:,} → {layer.flops_nm:,.0f}"), "num"),
                (_esc(layer.recommendation), _rec_class(layer.recommendation)),
                (_esc(layer.reason), ""),
            ]
        )
        for layer in report.layers
    )
    header = "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"
    return f'<table id="layers"><thead>{header}</thead><tbody>{rows}</tbody></table>'


def _end_to_end_table(report: SpeedupReport) -> str:
    header = (
        "<tr><th>batch</th><th>dtype</th><th>dense ms (p10–p90)</th><th>dense samples/s</th>"
        "<th>sparse ms (p10–p90)</th><th>sparse samples/s</th><th>speedup</th><th>note</th></tr>"
    )
    rows = "".join(
        _row(
            [
                (_esc(e.batch_size), "num"),
                (_esc(e.dtype), ""),
                (_esc(f"{_ms(e.dense)} ({_spread(e.dense)})" if e.dense else "-"), "num"),
                (_esc("-" if e.dense_throughput is None else f"{e.dense_throughput:,.0f}"), "num"),
                (_esc(f"{_ms(e.sparse)} ({_spread(e.sparse)})" if e.sparse else "-"), "num"),
                (_esc("-" if e.sparse_throughput is None else f"{e.sparse_throughput:,.0f}"), "num"),
                (_esc(_x(e.speedup)), "num"),
                (_esc(e.reason or ""), ""),
            ]
        )
        for e in report.end_to_end.measurements
    )
    accuracy = "".join(
        f"<li>{_esc(f'{a.variant} {a.dtype}: accuracy {a.accuracy:.4f} on {a.samples} samples')}</li>"
        for a in report.end_to_end.accuracy
    )
    if report.end_to_end.accuracy_given is not None:
        accuracy += f"<li>{_esc(f'given by the caller: {report.end_to_end.accuracy_given:.4f}')}</li>"
    table = f'<table id="end-to-end"><thead>{header}</thead><tbody>{rows}</tbody></table>'
    return table + (f"<ul>{accuracy}</ul>" if accuracy else "")


def render_html(report: SpeedupReport) -> str:
    """A self-contained page (inline CSS and SVG, no scripts, no external resources)."""
    env, s, summary = report.environment, report.savings, report.summary
    environment = _definition_list(
        [
            ("device", f"{env.device} ({env.device_name})"),
            ("compute capability", env.compute_capability),
            ("driver", env.driver_version),
            ("CUDA", env.cuda_version),
            ("cuSPARSELt", env.cusparselt_version),
            ("torch", env.torch_version),
            ("sparse backend", env.backend),
            ("sparse kernels", env.sparse_kernel_reason),
            ("CPU", f"{env.cpu_model}, {env.cpu_threads} threads"),
            ("timer", report.method.timer),
            ("warm-up / repeats", f"{report.method.warmup} / {report.method.repeats}"),
            ("statistic", report.method.statistic),
            ("batch sizes", ", ".join(map(str, report.method.batch_sizes))),
            ("dtypes", ", ".join(report.method.dtypes)),
            ("keep-sparse threshold", f"{report.method.min_speedup:.2f}x"),
        ]
    )
    savings = _definition_list(
        [
            ("parameters", f"{s.params_nonzero:,} non-zero of {s.params_dense:,}"),
            ("sparsified weights", f"{s.sparsified_nonzeros:,} non-zero of {s.sparsified_params:,}"),
            (
                "FLOPs per sample",
                f"{s.flops_nm_per_sample:,.0f} (ideal N:M) vs {s.flops_dense_per_sample:,} dense ({s.flops_ratio:.2f}x)",
            ),
            (
                "checkpoint",
                f"{s.checkpoint_compressed_bytes:,} B compressed N:M vs {s.checkpoint_dense_bytes:,} B dense "
                f"({s.checkpoint_ratio:.2f}x)"
                if s.checkpoint_ratio is not None
                else s.checkpoint_note,
            ),
            *((f"file {f.name}", f"{f.bytes:,} B") for f in s.files),
        ]
    )
    summary_items = _definition_list(
        [
            ("median layer speedup", _x(summary.median_layer_speedup)),
            ("end-to-end speedup", _x(summary.end_to_end_speedup)),
            ("layers recommended dense", ", ".join(summary.layers_recommended_dense) or "none"),
        ]
    )
    notes = "".join(f"<li>{_esc(note)}</li>" for note in report.notes)
    title = f"Speedup report: {report.model.name or report.model.class_name} ({report.model.pattern})"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title><style>{_CSS}</style></head><body>'
        f"<h1>{_esc(title)}</h1>"
        f"<p>{_esc(f'Schema {report.schema}, created {report.created_at}, input shape {tuple(report.model.input_shape)}')}</p>"
        f'<h2>Summary</h2><p class="verdict">{_esc(summary.verdict)}</p>{summary_items}'
        f"<h2>Per-layer chart</h2>{render_svg_chart(report)}"
        f"<h2>Sparsified layers</h2>{_layers_table(report)}"
        f"<h2>Per-layer measurements</h2>{_measurements_table(report)}"
        f"<h2>End to end</h2>{_end_to_end_table(report)}"
        f"<h2>Savings</h2>{savings}"
        f"<h2>Environment and method</h2>{environment}"
        f"<h2>Notes</h2><ul>{notes}</ul>"
        "</body></html>\n"
    )
