"""Page content is inert: corpus text, subject names and model labels never become markup or code.

The book's real chart builders get hostile strings as chunk texts, subjects and model
labels (``<!--``, ``<script>``, ``"}]</script>``, ``<img onerror>``, ``<svg onload>``,
U+2028/U+2029, quotes, MathJax ``\\href``, ANSI escapes). Then:

* the chart's HTML has exactly one ``<script>`` (its JSON spec), whose text holds no
  ``<`` at all (so no ``</script>``, ``<!--`` or ``<script`` can end or swallow it), and
  whose JSON reads back to the original strings;
* no element or attribute of the hostile strings exists in the parsed HTML, and a
  paragraph after the figure is still a paragraph;
* a quote in a model's label does not break the neighbour explorer's Vega expressions
  (the static picture renders, with the label in it);
* tables shown as HTML escape their cells.

(slow) In headless Chromium, a page of such charts runs none of the payloads, keeps the
text after the figure, makes the charts interactive, and marks a chart whose spec does
not parse as failed while keeping its static picture.
"""

from __future__ import annotations

import functools
import html
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import charts
from helpers.analysis import METRIC_TITLES, metrics_table

PAYLOAD = "window.__pwned = (window.__pwned || 0) + 1"
HOSTILE = [
    "<!-- an opened comment",
    "<script>window.__pwned = 1</script>",
    '"}]</script><script>window.__pwned = 1</script>',
    f"<img src=x onerror='{PAYLOAD}'>",
    f'<svg onload="{PAYLOAD}">',
    "line\u2028separator\u2029paragraph",
    "it's",
    'say "hi"',
    r"\(\href{javascript:alert(1)}{x}\) $\href{javascript:alert(1)}{y}$",
    "\x1b[31mred\x1b[0m",
    "&amp; &lt;b&gt; & <b>bold</b>",
]
MODELS = ["it's a model", 'the "best" </script> model']


class Markup(HTMLParser):
    """Every element and attribute of an HTML string, and the text of each script."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data

    def names(self) -> set[str]:
        return {tag for tag, _ in self.tags}

    def attributes(self) -> set[str]:
        return {name for _, attrs in self.tags for name in attrs}


def hostile_frames(texts=HOSTILE, models=MODELS):
    """Queries and neighbours (as :func:`helpers.analysis.neighbour_lists` makes) full of ``texts``."""
    queries = pd.DataFrame(
        {
            "query": [0, 1],
            "subject": [texts[0], texts[4 % len(texts)]],
            "text": [" ".join(texts), texts[-1]],
        }
    )
    rows = [
        {
            "query": q,
            "model": model,
            "rank": rank,
            "subject": texts[(q + rank) % len(texts)],
            "text": texts[(q * 3 + rank) % len(texts)],
            "cosine": 0.9 - rank / 10,
            "same": rank % 2,
        }
        for model in models
        for q in (0, 1)
        for rank in (1, 2, 3)
    ]
    return queries, pd.DataFrame(rows)


def hostile_charts(texts=HOSTILE, models=MODELS) -> dict:
    """The book's chart builders, fed ``texts`` as chunks and subjects and ``models`` as labels."""
    charts.setup_altair([])
    rng = np.random.default_rng(0)
    n = len(texts)
    subjects = [texts[i % n] for i in range(2 * n)]
    chunks = [texts[(i * 5) % n] + " " + texts[(i * 7) % n] for i in range(2 * n)]
    vectors = {model: rng.normal(size=(2 * n, 6)) for model in models}
    queries, neighbours = hostile_frames(texts, models)
    metrics = pd.DataFrame(
        [{"model": m, "metric": k, "value": 0.5} for m in models for k in METRIC_TITLES]
    )
    return {
        "explorer": charts.neighbour_explorer(queries, neighbours, default=0),
        "projections": charts.projection_grid(charts.projection_panels(vectors, subjects, chunks)),
        "side views": charts.side_view_grid(
            {m: v[:, :2] / 4 for m, v in vectors.items()}, subjects, chunks
        ),
        "metric bars": charts.metric_bars(metrics, METRIC_TITLES),
    }


@functools.cache
def hostile_spec(name: str) -> dict:
    """The spec of :func:`hostile_charts`' chart ``name`` (built once per test session)."""
    return _hostile_specs()[name]


@functools.cache
def _hostile_specs() -> dict:
    return {name: chart.to_dict() for name, chart in hostile_charts().items()}


def subjects_of(name: str) -> set[str]:
    """The subject names :func:`hostile_charts` gives chart ``name``."""
    if name == "metric bars":
        return set()
    if name == "explorer":
        queries, neighbours = hostile_frames()
        return set(queries["subject"]) | set(neighbours["subject"])
    return set(HOSTILE)


def strings_in(value) -> set[str]:
    """Every string anywhere in a JSON value."""
    found, stack = set(), [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def assert_inert(html: str, spec: dict) -> Markup:
    """One JSON script, no ``<`` inside it, the spec read back exactly, nothing hostile parsed as markup."""
    page = Markup(html + '<p id="after">after the figure</p>')
    assert len(page.scripts) == 1, page.scripts
    script_tags = [attrs for tag, attrs in page.tags if tag == "script"]
    assert script_tags == [{"type": "application/json", "class": "book-chart-spec"}]
    assert "<" not in page.scripts[0] and "\u2028" not in page.scripts[0]
    assert json.loads(page.scripts[0]) == charts.drawable(spec)
    assert page.names().isdisjoint({"img", "iframe", "b", "object", "embed"}), page.names()
    assert [tag for tag, _ in page.tags].count("svg") == 1  # the static picture's own
    assert not {a for a in page.attributes() if a.startswith("on")}
    assert ("p", {"id": "after"}) in page.tags
    return page


@pytest.mark.parametrize("name", ["explorer", "projections", "side views", "metric bars"])
def test_hostile_text_in_a_chart_stays_text(name):
    spec = hostile_spec(name)
    page = assert_inert(charts.chart_html(spec), spec)
    data = strings_in(json.loads(page.scripts[0]))
    for label in MODELS:
        assert any(label in s for s in data), label
    # every subject reaches the page as it is (control characters as their pictures)
    assert {charts.drawable(s) for s in subjects_of(name)} <= data


def test_a_quote_in_a_model_label_keeps_the_explorer_working():
    spec = hostile_spec("explorer")
    svg = charts.vlc.vegalite_to_svg(
        spec, vl_version=charts.VL_VERSION
    )  # compiles every expression
    shown = html.unescape(svg)  # the picture's text, as a reader sees it
    for label in MODELS:
        assert f"{label}: 2 of 3 share its subject" in shown, label


# All but the lone surrogate U+D800, which pandas' Arrow strings refuse before any chart.
CONTROLS = "".join(map(chr, [*range(0x20), 0xFFFE, 0xFFFF]))


def test_control_characters_in_a_subject_do_not_abort_the_renderer(tmp_path):
    """They once aborted vl-convert (a Rust panic): the process died, so run it in one."""
    program = (
        "import json, sys\n"
        "import numpy as np\n"
        "from helpers import charts\n"
        "texts = [c + ' x' for c in json.loads(sys.argv[1])]\n"
        "X = np.random.default_rng(0).normal(size=(len(texts), 4))\n"
        "panels = charts.projection_panels({'m': X}, texts, texts)\n"
        "print(len(charts.chart_html(charts.projection_grid(panels).to_dict())))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", program, json.dumps(list(CONTROLS))],
        cwd=Path(__file__).parent,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout) > 1000


def test_drawable_keeps_every_character_visible():
    shown = charts.drawable(CONTROLS + "\ud800\t\n\r ok")
    assert len(shown) == len(CONTROLS) + 7 and shown.endswith("\ufffd\t\n\r ok")
    assert shown[0x1B] == "\u241b" and shown[0] == "\u2400"


def test_long_texts_beyond_the_bmp_keep_their_picture():
    """Vega cuts long lines (a mark's limit) by UTF-16 units, once splitting 𝑥 and failing the build."""
    word = "\U0001d465" * 7  # mathematical italic x, as in OpenStax formulas
    neighbours = pd.DataFrame(
        [
            {"query": 0, "model": "m", "rank": rank, "subject": "physics", "cosine": 0.5}
            | {"same": 1, "text": "a" * rank + " " + " ".join([word] * 19)}
            for rank in range(1, 9)
        ]
    )
    queries = pd.DataFrame({"query": [0], "subject": ["physics"], "text": [word]})
    charts.setup_altair([])
    spec = charts.neighbour_explorer(queries, neighbours, default=0).to_dict()
    page = Markup(charts.chart_html(spec))
    assert json.loads(page.scripts[0]) == spec  # the live chart keeps the characters
    assert "<svg" in charts.chart_html(spec)


def test_charts_are_left_alone_by_mathjax():
    spec = hostile_spec("metric bars")
    page = Markup(charts.chart_html(spec))
    outer = page.tags[0][1]["class"].split()
    assert "book-chart" in outer and "mathjax_ignore" in outer


def test_script_json_reads_back_every_string():
    value = {"texts": HOSTILE, "nested": [{"k<>&": "\u2028</script>"}]}
    text = charts.script_json(value)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == value


def test_tables_escape_their_cells():
    rows = [{"model": label, **dict.fromkeys(METRIC_TITLES, 0.5)} for label in HOSTILE]
    html = metrics_table(rows).round(3)._repr_html_()
    page = Markup(html)
    assert page.scripts == []
    assert page.names() <= {"div", "style", "table", "thead", "tbody", "tr", "th", "td"}
    assert not {a for a in page.attributes() if a.startswith("on")}


# --- in a real browser --------------------------------------------------------------------

BROWSER_PAYLOADS = [
    f"<img src=x onerror='{PAYLOAD}'>",
    f'<svg onload="{PAYLOAD}">',
    f'"}}]</script><script>{PAYLOAD}</script>',
    "<!-- an opened comment",
    f"<script>{PAYLOAD}</script>",
    "<script>alert(1)</script>",
    "it's",
    'say "hi"',
    "line\u2028separator",
    r"\(\href{javascript:alert(1)}{x}\)",
]


def hostile_page(folder: Path) -> Path:
    """A page with the book's chart script, charts from hostile data, a broken chart, then text."""
    import vl_convert as vlc

    built = hostile_charts(BROWSER_PAYLOADS, ["it's", 'say "hi" </script>'])
    figures = "".join(
        f'<figure id="{name.replace(" ", "-")}">{charts.chart_html(chart.to_dict())}</figure>'
        for name, chart in built.items()
    )
    broken = charts.chart_html(built["metric bars"].to_dict()).replace(
        'class="book-chart-spec">{', 'class="book-chart-spec">{,'
    )
    (folder / "vega-bundle.js").write_text(
        "(function(){\n" + vlc.javascript_bundle(vl_version="6.4") + "\n})();\n", encoding="utf-8"
    )
    script = Path(__file__).resolve().parents[1] / "book" / "_static" / "book-charts.js"
    (folder / "book-charts.js").write_text(script.read_text(encoding="utf-8"), encoding="utf-8")
    page = folder / "index.html"
    page.write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>hostile</title>'
        '<script src="vega-bundle.js"></script><script src="book-charts.js"></script>'
        f'</head><body>{figures}<figure id="broken">{broken}</figure>'
        '<p id="after">The text after the figures.</p>'
        "<script>window.__later = true;</script></body></html>",
        encoding="utf-8",
    )
    return page


@pytest.mark.slow
def test_hostile_charts_run_nothing_in_a_browser(tmp_path):
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    from tools.browser import CHARTS_SETTLED, CHROMIUM, block_network, launch, serve

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (make browser)")
    hostile_page(tmp_path)
    dialogs, blocked, errors = [], [], []
    with serve(tmp_path) as base, sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            block_network(page, blocked)
            page.goto(f"{base}/index.html", wait_until="load")
            page.wait_for_function(CHARTS_SETTLED, timeout=60000)
            points = page.locator("#projections .book-chart-live g.mark-symbol path")
            for i in range(min(points.count(), 6)):  # tooltips show the hostile chunks
                points.nth(i).hover(force=True)
                page.wait_for_timeout(100)
            menu = page.locator("#explorer select")
            menu.select_option(index=1)  # the other query: its labelled lines are drawn
            page.wait_for_timeout(300)
            state = page.evaluate(
                """() => ({
                    pwned: window.__pwned === undefined ? null : window.__pwned,
                    later: window.__later === true,
                    after: (document.querySelector('#after') || {}).textContent,
                    interactive: document.querySelectorAll('.book-chart-interactive').length,
                    failed: Array.from(document.querySelectorAll('.book-chart-failed'))
                        .map(c => c.closest('figure').id),
                    brokenKeepsPicture: !!document.querySelector('#broken .book-chart-static svg'),
                    options: Array.from(document.querySelectorAll('#explorer option'))
                        .map(o => o.childElementCount),
                    tooltipImages: document.querySelectorAll('#vg-tooltip-element img').length,
                    lines: Array.from(document.querySelectorAll(
                        '#explorer .book-chart-live g.mark-text text')).map(t => t.textContent),
                })"""
            )
        finally:
            browser.close()
    assert state["pwned"] is None and dialogs == [], (state, dialogs)
    assert state["later"] and state["after"] == "The text after the figures."
    assert state["interactive"] == 4 and state["failed"] == ["broken"], state
    assert state["brokenKeepsPicture"]
    assert state["options"] and set(state["options"]) == {0}
    assert state["tooltipImages"] == 0
    assert any(line.startswith("it's: ") for line in state["lines"]), state["lines"]
    assert blocked == [] and not [e for e in errors if "pwned" in e], (blocked, errors)
