"""The human-readable forms: SVG that parses, an HTML page with the table, escaping, honest captions."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import pytest

from lbc_core.benchmark import build_speedup_report, render_html, render_svg_chart, render_text
from tests.lbc_core.benchmark.conftest import LENET_INPUT, TINY_VIT_INPUT

# A CPU without the native N:M kernel (test_report_cpu_nm.py covers the CPU that has it).
pytestmark = pytest.mark.usefixtures("no_native_kernel")

SVG = "{http://www.w3.org/2000/svg}"
EVIL = '<script>alert("x")</script>&'
FAST: dict[str, Any] = {"warmup": 0, "repeats": 2, "min_repeat_ms": 0.0}


@pytest.fixture
def cpu_report(lenet):
    model, layers = lenet
    return build_speedup_report(model, input_shape=LENET_INPUT, batch_sizes=(1, 2), layers=layers, **FAST)


@pytest.fixture
def gpu_like_report(tiny_vit, stand_in_kernel, fixed_timer):
    model, layers = tiny_vit
    timer, _ = fixed_timer({"blocks.0.attn.qkv": 1.3, "blocks.0.attn.proj": 0.5, "": 1.1})
    return build_speedup_report(
        model,
        input_shape=TINY_VIT_INPUT,
        batch_sizes=(1, 4),
        dtypes=("float16",),
        layers=layers,
        timer=timer,
        kernel=stand_in_kernel,
    )


def _texts(root: ET.Element) -> str:
    return " ".join("".join(el.itertext()) for el in root.iter(f"{SVG}text"))


def test_cpu_chart_parses_and_shows_dense_time_flop_savings_and_the_caption(cpu_report) -> None:
    root = ET.fromstring(render_svg_chart(cpu_report))
    assert root.tag == f"{SVG}svg"
    text = _texts(root)
    assert "No sparse kernel on this device (cpu)" in text
    assert "Per-layer dense time" in text and "FLOPs an ideal N:M kernel would save" in text
    assert "speedup" not in text.lower()
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(bars) == len(cpu_report.layers) * 2 + len(cpu_report.layers)  # two batch sizes + one FLOP bar


def test_gpu_chart_has_speedup_bars_and_a_line_at_one(gpu_like_report) -> None:
    root = ET.fromstring(render_svg_chart(gpu_like_report))
    text = _texts(root)
    assert "Per-layer speedup" in text and "1.0x = dense" in text
    assert any(line.get("stroke") == "#c00" for line in root.iter(f"{SVG}line"))
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert any("blocks.0.attn.proj, batch 1 float16: 0.5x" in t for t in titles)


def test_html_page_holds_summary_chart_tables_and_notes(gpu_like_report) -> None:
    page = render_html(gpu_like_report)
    HTMLParser().feed(page)  # well-formed enough to parse
    assert page.startswith("<!DOCTYPE html>")
    for marker in (
        '<table id="layers">',
        '<table id="measurements">',
        '<table id="end-to-end">',
        "<svg",
        "Notes",
    ):
        assert marker in page
    assert "blocks.0.attn.qkv" in page and "1.30x" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_html_and_svg_escape_a_malicious_layer_name(cpu_report) -> None:
    layer = dataclasses.replace(cpu_report.layers[0], name=EVIL)
    summary = dataclasses.replace(cpu_report.summary, layers_recommended_dense=(EVIL,))
    report = dataclasses.replace(cpu_report, layers=(layer, *cpu_report.layers[1:]), summary=summary)
    page = render_html(report)
    assert EVIL not in page and "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    ET.fromstring(render_svg_chart(report))  # still valid XML


def test_text_table_lists_every_measurement(cpu_report) -> None:
    text = render_text(cpu_report)
    assert "GEMM MxNxK" in text and "196x16x200" in text
    assert text.count(" n/a") >= len(cpu_report.layers) * 2
    assert "No sparse kernel exists for this device (cpu)" in text
