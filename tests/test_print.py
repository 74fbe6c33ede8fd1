"""(slow) The printed book draws each chart's static picture, so what only means something
interactively (a selection's readout) is not printed.

``tools.print_book`` prints a one-page site in headless Chromium, as ``make pdf`` prints the
single-page edition; no book build is needed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import charts

ROOT = Path(__file__).resolve().parents[1]


def one_chart_site(folder: Path) -> Path:
    """A page like the book's: the Vega bundle, ``book-charts.js`` and one projection grid."""
    import vl_convert as vlc

    folder.mkdir()
    charts.setup_altair(["bio", "chem", "hist"])
    subjects = ["bio", "chem", "hist"] * 10
    texts = [f"chunk {i} of {s}" for i, s in enumerate(subjects)]
    rng = np.random.default_rng(0)
    panels = charts.projection_panels(
        {m: rng.normal(size=(30, 8)) for m in ("A", "B")}, subjects, texts
    )
    figure = charts.chart_html(charts.projection_grid(panels).to_dict())
    (folder / "vega-bundle.js").write_text(
        "(function(){\n" + vlc.javascript_bundle(vl_version=charts.VL_VERSION) + "\n})();\n",
        encoding="utf-8",
    )
    shutil.copyfile(ROOT / "book" / "_static" / "book-charts.js", folder / "book-charts.js")
    (folder / "index.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>print</title>'
        '<script src="vega-bundle.js"></script><script src="book-charts.js"></script></head>'
        f'<body><main><h1>One chart</h1><figure id="grid">{figure}</figure></main></body></html>',
        encoding="utf-8",
    )
    return folder


@pytest.mark.slow
def test_printed_projection_grid_has_no_selection_readout(tmp_path):
    pytest.importorskip("playwright")
    from tools.browser import CHROMIUM
    from tools.print_book import print_book

    if not Path(CHROMIUM).exists() or not shutil.which("pdftotext"):
        pytest.skip(f"needs {CHROMIUM} (make browser) and pdftotext")
    site = one_chart_site(tmp_path / "site")
    pdf = tmp_path / "book.pdf"
    (chart,) = print_book(site, pdf)["charts"]
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    assert chart["marks"] > 0 and any(w.startswith("PC1 (") for w in chart["words"]), chart
    assert "PC1 (" in text  # the panels are printed
    assert "chunks selected" not in text and "chunk 0 of bio" not in text, text
