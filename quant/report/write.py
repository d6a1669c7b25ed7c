"""Everything a run writes into its report folder: report.json, report.md, report.png and report.html
(:mod:`quant.report.tables`, :mod:`quant.report.plot`, :mod:`quant.report.html`), github-action-benchmark's files
(:mod:`quant.report.gab`), and each variant's own reports (PPQ's error analysis, the search's sensitivity
chart) in ``<report-dir>/<variant>/``."""

from __future__ import annotations

import shutil
from pathlib import Path

from quant.measure.row import Row
from quant.registry import BASELINE
from quant.report import tables
from quant.report.gab import write_gab
from quant.report.html import write_html
from quant.report.plot import write_plot


def write_report(rows: list[Row], out_dir: Path, header: dict, comparison: str | None = None) -> dict[str, Path]:
    """Write the report of ``rows`` (in table order, with their deltas: :func:`quant.report.tables.table_rows`)
    into ``out_dir``; the paths written, by kind. ``comparison``: the Markdown of
    :func:`quant.gate.compare.markdown_summary`, for report.html's "Comparison" section."""
    out_dir = Path(out_dir)
    for row in rows:
        for f in row.reports or []:
            (out_dir / row.variant).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(row.artifact_dir) / f, out_dir / row.variant / f)
    paths = dict(zip(("json", "md"), tables.write(rows, out_dir, header)))
    paths["png"] = write_plot(rows, out_dir / "report.png", baseline=header.get("baseline", BASELINE))
    paths["html"] = write_html(rows, out_dir / "report.html", header, comparison)
    paths["gab_smaller"], paths["gab_bigger"] = write_gab(rows, out_dir, baseline=header.get("baseline", BASELINE))
    return paths
