"""report.html (quant.report.html): one self-contained page, its table, its SVG chart, its comparison; and the
chart as headless Chromium lays it out, where no two texts may overlap."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest

from quant.measure.row import Row
from quant.report.html import markdown_html, write_html
from quant.report.tables import with_deltas, with_peer_comparison
from quant.report.write import write_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HEADER = {"date": "2026-12-07T11:53:43+00:00", "weights": "fixtures/yolov8n-shapes.pt", "data": "shapes/data.yaml",
          "imgsz": 320, "baseline": "onnx-fp32",
          "machine": {"cpu": "AMD EPYC", "isa": ["avx2"], "cores": 2, "threads": 2, "threads_used": 2, "gpu": None},
          "versions": {"onnxruntime": "1.32.0"}}
COMPARISON = """## Benchmark comparison

`new/report.json` vs `ref.json`: 1 regression since `ref.json`.

| variant          | Δ mAP50-95   | Δ fidelity   | latency now/then (95 % interval)   | verdict    |
|------------------|--------------|--------------|------------------------------------|------------|
| onnx-fp32        | +0.00        | +0.00        | baseline                           | ok         |
| onnx-int8-minmax | -0.50        | +0.00        | 0.93x (0.84-1.19)                  | REGRESSION |

Regressions:

- onnx-int8-minmax: mAP50-95 fell 0.50 points since ref.json (3.47 -> 2.97) > max 0.10 <b>
"""
NAMES = ["onnx-int8-minmax", "onnx-int8-entropy", "onnx-int8-percentile", "onnx-int8-minmax-headfloat", "ov-fp32",
         "ov-int8", "ov-int8-headfloat", "ul-onnx", "ul-onnx-int8", "ul-openvino-int8", "trt-fp32", "trt-fp16",
         "trt-int8-minmax", "trt-int8-entropy", "trt-int8-percentile", "trt-int8-headfloat", "ppq-int8",
         "ppq-int8-headfloat", "onnx-int8-auto", "trt-int8-auto", "trt-int8-nncf", "ov-int8-auto", "ppq-int8-auto",
         "ov-int8-sq"]


CLUSTERS = [(0.85, 53.1), (0.85, 51.6), (0.6, 50.3)]  # (× FP32, mAP50-95): where a real run's rows crowd


def clustered_rows() -> list[Row]:
    """25 rows as a run's table has them (the baseline and 24 variants, seeded), crowded in three clusters
    between 0.4x and 1.0x and 50-53.5 mAP50-95: peers, TensorRT rows timed without an engine, intervals of every
    width."""
    rng = random.Random(7)
    rows = [Row("onnx-fp32", "onnxruntime", "onnx", "fp32", map50_95=53.3, latency_ratio=1.0,
                latency_ratio_ci=[0.98, 1.03], latency_ms=25.0, delta_ci=[0.0, 0.0], status="pass")]
    for i, name in enumerate(NAMES):
        cx, cy = CLUSTERS[i % 3]
        x, m = min(1.0, max(0.4, rng.gauss(cx, 0.07))), min(53.5, max(50.0, rng.gauss(cy, 0.2)))
        w = rng.uniform(0.005, 0.08)
        rows.append(Row(name, "onnxruntime", "onnx", "int8" if "int8" in name else "fp32", peer=name.startswith("ul-"),
                        map50_95=round(m, 2), latency_ratio=x, latency_ratio_ci=[x - w, x + w / 2],
                        latency_ms=25.0 * x, delta_ci=[m - 53.3 - 0.4, m - 53.3 + 0.3], int8_share="63/63",
                        engine={"built": False, "reason": "no TensorRT"} if name.startswith("trt-") else None,
                        status="peer" if name.startswith("ul-") else "pass"))
    return with_peer_comparison(with_deltas(rows))


def _overlapping(boxes: list[tuple[str, list[float]]]) -> list[tuple[str, str]]:
    return [(a, b) for i, (a, p) in enumerate(boxes) for b, q in boxes[i + 1:]
            if p[0] < q[2] and q[0] < p[2] and p[1] < q[3] and q[1] < p[3]]


# ---- the page's content --------------------------------------------------------------------------------------

def test_report_html_is_self_contained_and_holds_the_table_the_chart_and_the_comparison(tmp_path):
    rows = clustered_rows()
    path = write_html(rows, tmp_path / "sub" / "report.html", HEADER, COMPARISON)
    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "sub" / "report.html" and not list(path.parent.glob("*.tmp"))
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    for external in ("http:", "https:", "src=", "href=", "<script", "<link", "@import", "url(", "//cdn"):
        assert external not in text.lower(), external
    for shown in ("fixtures/yolov8n-shapes.pt", "320", "shapes/data.yaml", "AMD EPYC [avx2], 2 cores", "2026-12-07",
                  "onnxruntime 1.32.0"):
        assert shown in text, shown
    compact, wide = text.split("<details>")[0], text.split("<details>")[1].split("</details>")[0]
    assert all(f'id="row-{r.variant}"' in compact and f'id="row-{r.variant}"' in wide for r in rows)
    assert "× FP32 [95 % CI]" in compact and "Δ mAP50-95 vs onnx-fp32 [95 % CI]" in compact and "size MB" in wide
    assert "size MB" not in compact
    svg = re.search(r"<svg .*?</svg>", text, re.S).group(0)
    assert all(f"<title>{r.variant}" in svg for r in rows)  # every point's numbers on hover
    assert 'class="front"' in svg and svg.count('class="label"') == len(rows)
    assert "<h2>Trade-offs</h2>" in text
    assert '<h2 id="comparison">Comparison</h2>' in text and "<td>REGRESSION</td>" in text
    assert "<code>ref.json</code>" in text and "&gt; max 0.10 &lt;b&gt;" in text
    assert "Comparison" not in write_html(rows, tmp_path / "plain.html", HEADER).read_text()


def test_everything_from_the_run_is_escaped_and_missing_numbers_are_dashes(tmp_path):
    """A hostile variant name and header value come out as text, never as markup; rows with None or NaN numbers
    (skipped, no latency, no accuracy) show "-" in the table and stay off the chart."""
    evil = '<img src=x onerror="alert(1)">&'
    rows = with_deltas([Row("onnx-fp32", map50_95=53.3, latency_ratio=1.0, latency_ms=25.0),
                        Row(evil, map50_95=51.0, latency_ratio=0.7, latency_ratio_ci=[0.6, 0.8], latency_ms=17.5),
                        Row("skipped", status="skipped"),
                        Row("nan-latency", map50_95=float("nan"), latency_ratio=float("nan"),
                            latency_ratio_ci=[float("nan"), 1.0], latency_ms=float("inf"), delta_ci=[float("nan"), 0]),
                        Row("trt-int8", map50_95=52.0, latency_ratio=0.5, engine={"built": False, "reason": "<no>"})])
    text = write_html(rows, tmp_path / "report.html", {**HEADER, "weights": "<script>alert(1)</script>"}).read_text()
    assert "<img" not in text and "<script" not in text and "onerror=\"" not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in text and "&lt;script&gt;alert(1)" in text
    nan_row = re.search(r'<tr id="row-nan-latency".*?</tr>', text).group(0).replace("nan-latency", "")
    assert "nan" not in nan_row.lower() and "inf" not in nan_row and nan_row.count("<td class=\"num\">-</td>") >= 4
    svg = re.search(r"<svg .*?</svg>", text, re.S).group(0)
    assert svg.count('class="label"') == 3  # the baseline, the evil row, the engine-less row
    assert 'data-variant="skipped"' not in svg and 'data-variant="nan-latency"' not in svg
    assert "timed as ONNX on the CPU (&lt;no&gt;)" in svg
    empty = write_html([], tmp_path / "empty.html", {}).read_text()
    assert "nothing to plot" in empty


def test_markdown_html_renders_tables_headings_lists_and_paragraphs():
    out = markdown_html("# T\n\nline `a<b>` & c\n\n| x | y |\n|---|:-:|\n| 1 | <2> |\n\n- one\n- two\n")
    assert out == ("<h2>T</h2>\n<p>line <code>a&lt;b&gt;</code> &amp; c</p>\n"
                   "<table><thead><tr><th>x</th><th>y</th></tr></thead><tbody><tr><td>1</td><td>&lt;2&gt;</td></tr>"
                   "</tbody></table>\n<ul><li>one</li><li>two</li></ul>")


def test_write_report_writes_report_html(tmp_path):
    rows = clustered_rows()
    paths = write_report(rows, tmp_path, HEADER, comparison=COMPARISON)
    assert paths["html"] == tmp_path / "report.html" and "<svg" in paths["html"].read_text()
    assert "Comparison" in paths["html"].read_text()
    assert "Comparison" not in write_report(rows, tmp_path / "again", HEADER)["html"].read_text()


# ---- the page in a browser ------------------------------------------------------------------------------------

TEXT_BOXES = """() => [...document.querySelectorAll('svg.chart text')].map(t => {
    const b = t.getBoundingClientRect(); return [t.textContent, [b.left, b.top, b.right, b.bottom]]; })"""
PLANT = """() => { const [a, b] = document.querySelectorAll('svg.chart text.label');
    b.setAttribute('x', a.getAttribute('x')); b.setAttribute('y', a.getAttribute('y')); }"""


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, headless, driven by Playwright (which never downloads a browser here)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _open(browser, path: Path):
    """A page showing ``path``, and the list of every request it makes that is not the file itself."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside = []
    page.on("request", lambda r: outside.append(r.url) if r.url != path.as_uri() else None)
    page.goto(path.as_uri())
    return page, outside


def test_no_two_chart_texts_overlap_in_chromium(chromium, tmp_path):
    """25 clustered rows: Chromium lays out every text of the chart (names, ticks, axis titles, legend) with no two
    overlapping, every name drawn at the width it was placed with; the page asks for nothing outside itself. A
    name planted on another's spot is caught."""
    rows = clustered_rows()
    path = write_html(rows, tmp_path / "report.html", HEADER, COMPARISON)
    page, outside = _open(chromium, path)
    try:
        page.locator("svg.chart").screenshot(path=str(tmp_path / "chart.png"))
        boxes = page.evaluate(TEXT_BOXES)
        labels = page.evaluate("() => [...document.querySelectorAll('svg.chart text.label')].map(t => "
                               "[t.getComputedTextLength(), +t.getAttribute('textLength')])")
        assert len(boxes) > len(rows) + 10 and {b[0] for b in boxes} >= {r.variant for r in rows}
        assert _overlapping(boxes) == []
        assert all(math.isclose(have, want, abs_tol=1.0) for have, want in labels)
        assert outside == []
        page.evaluate(PLANT)
        assert _overlapping(page.evaluate(TEXT_BOXES)) != []
    finally:
        page.close()
    assert (tmp_path / "chart.png").stat().st_size > 10_000
