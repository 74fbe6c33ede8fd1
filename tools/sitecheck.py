"""Open every page of the built site in headless Chromium with the network blocked.

Serves ``_build/html`` on 127.0.0.1, blocks every request that is not to the loopback
address (and records it), and for each page collects console errors, failed requests and
charts that did not render. Saves desktop and phone-width screenshots under
``_build/screenshots/``. Used by ``tests/test_site.py``; also runnable by hand, from the
repository root:

    .venv/bin/python -m tools.sitecheck [_build/html]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .browser import (
    CHARTS_SETTLED,
    LOOPBACK,
    block_network,
    launch,
    open_page,
    serve,
)


@dataclass
class PageReport:
    page: str
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)
    charts: int = 0
    broken_charts: list[str] = field(default_factory=list)
    math_problem: str = ""

    @property
    def problems(self) -> list[str]:
        out = [f"console error: {e}" for e in self.console_errors]
        out += [f"failed request: {r}" for r in self.failed_requests]
        out += [f"tried to leave the machine: {r}" for r in self.blocked_requests]
        out += [f"chart not rendered: {c}" for c in self.broken_charts]
        out += [self.math_problem] if self.math_problem else []
        return [f"{self.page}: {p}" for p in out]


def pages_of(root: Path) -> list[str]:
    skip = {"genindex.html", "search.html"}
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.html")
        if p.name not in skip
        and "_static" not in p.parts
        and "_sources" not in p.parts
        and "reports" not in p.parts
    )


CHART_CHECK = """
() => Array.from(document.querySelectorAll('.book-chart')).map((el, i) => {
  const g = el.querySelector('.book-chart-live svg, .book-chart-live canvas') || el.querySelector('svg, canvas');
  const r = g ? g.getBoundingClientRect() : null;
  return {i, live: !!el.querySelector('.book-chart-live svg'), w: r ? r.width : 0, h: r ? r.height : 0};
})
"""


def check_site(root: Path, screenshots: Path | None = None) -> list[PageReport]:
    """Visit every page; return one :class:`PageReport` per page."""
    from playwright.sync_api import sync_playwright

    reports = []
    with serve(root) as base, sync_playwright() as pw:
        browser = launch(pw)
        for name in pages_of(root):
            report = PageReport(name)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()

            block_network(page, report.blocked_requests)
            page.on(
                "console",
                lambda m, report=report: (
                    report.console_errors.append(m.text) if m.type == "error" else None
                ),
            )
            page.on("pageerror", lambda e, report=report: report.console_errors.append(str(e)))
            page.on(
                "requestfailed",
                lambda r, report=report: (
                    report.failed_requests.append(r.url)
                    if (urlparse(r.url).hostname or "") in LOOPBACK
                    else None
                ),
            )
            page.on(
                "response",
                lambda r, report=report: (
                    report.failed_requests.append(f"{r.status} {r.url}")
                    if r.status >= 400
                    else None
                ),
            )
            page.goto(f"{base}/{name}", wait_until="load")
            page.wait_for_timeout(400)
            charts = page.evaluate(CHART_CHECK)
            if charts:
                page.wait_for_function(CHARTS_SETTLED, timeout=20000)
                charts = page.evaluate(CHART_CHECK)
            report.charts = len(charts)
            n_math = page.evaluate("() => document.querySelectorAll('span.math, div.math').length")
            if n_math:
                try:
                    page.wait_for_function(
                        "() => document.querySelectorAll('mjx-container').length > 0", timeout=15000
                    )
                except Exception:  # noqa: BLE001 - reported as a page problem below
                    report.math_problem = f"{n_math} math element(s) but MathJax typeset none"
            report.broken_charts = [
                f"chart {c['i']} (live={c['live']}, {c['w']}x{c['h']})"
                for c in charts
                if not c["live"] or c["w"] <= 0 or c["h"] <= 0
            ]
            if screenshots is not None:
                out = screenshots / name.replace("/", "__").replace(".html", "")
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=f"{out}.png", full_page=True)
                page.set_viewport_size({"width": 390, "height": 844})
                page.wait_for_timeout(200)
                page.screenshot(path=f"{out}.phone.png", full_page=False)
            context.close()
            reports.append(report)
        browser.close()
    return reports


def hover_first_point(root: Path, page_name: str) -> str:
    """Hover the first point of the first scatter chart on ``page_name``; return the tooltip's text."""
    with open_page(root, page_name) as page:
        point = page.locator(".book-chart-live g.mark-symbol path").first
        point.scroll_into_view_if_needed()
        point.hover(force=True)
        page.wait_for_selector("#vg-tooltip-element.visible", timeout=5000)
        return page.inner_text("#vg-tooltip-element")


# Per panel of a linked projection (scatter marks, not legend symbols): how many points,
# and how many keep a subject colour (the rest are drawn in the faded grey).
PANEL_POINTS = """
([chart, faded]) => Array.from(document.querySelectorAll(chart + ' .book-chart-live g.mark-symbol.role-mark'))
  .map(g => {
    const paths = Array.from(g.querySelectorAll('path'));
    return {n: paths.length, coloured: paths.filter(p => (p.getAttribute('fill') || '').toLowerCase() !== faded).length};
  })
"""
TEXT_LINES = """
(chart) => Array.from(document.querySelectorAll(chart + ' .book-chart-live g.mark-text.role-mark text'))
  .map(t => t.textContent)
"""


@dataclass
class LinkedViewState:
    """What a linked projection shows: per panel (points, coloured points) and its text lines."""

    panels: list[tuple[int, int]]
    lines: list[str]

    @property
    def selected_line(self) -> str:
        return next((line for line in self.lines if "chunks selected" in line), "")

    @property
    def listed(self) -> list[str]:
        return [line for line in self.lines if ": " in line and "chunks selected" not in line]


def _linked_state(page, chart: str, faded: str) -> LinkedViewState:
    panels = page.evaluate(PANEL_POINTS, [chart, faded.lower()])
    return LinkedViewState(
        [(p["n"], p["coloured"]) for p in panels], page.evaluate(TEXT_LINES, chart)
    )


def drive_linked_view(root: Path, page_name: str, figure_id: str, faded: str) -> dict:
    """Brush in the first panel, then clear and click the first legend entry, in a real browser.

    Returns the chart's state ``before``, ``brushed`` (a rectangle over about the top-left
    quarter of the first panel's points) and ``legend`` (first legend entry clicked), plus the
    ``subject`` that entry names.
    """
    chart = f"#{figure_id} .book-chart"
    with open_page(root, page_name, height=1400) as page:
        page.locator(chart).scroll_into_view_if_needed()
        before = _linked_state(page, chart, faded)
        marks = page.locator(f"{chart} .book-chart-live g.mark-symbol.role-mark").first
        box = marks.bounding_box()
        # Start inside the plotting area: points at the edge stick out of it by their radius.
        page.mouse.move(box["x"] + 0.05 * box["width"], box["y"] + 0.05 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=8)
        page.mouse.up()
        page.wait_for_timeout(300)
        brushed = _linked_state(page, chart, faded)
        page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_timeout(300)
        label = page.locator(f"{chart} .book-chart-live g.role-legend-label text").first
        subject = label.text_content()
        label.click()
        page.wait_for_timeout(300)
        legend = _linked_state(page, chart, faded)
    return {"before": before, "brushed": brushed, "legend": legend, "subject": subject}


def drive_neighbour_explorer(root: Path, page_name: str, figure_id: str) -> dict:
    """Pick another chunk in the explorer's menu, as a reader would.

    Returns the menu's ``options``, the ``picked`` one, and the chart's text lines
    ``before`` and ``after``.
    """
    chart = f"#{figure_id} .book-chart"
    with open_page(root, page_name) as page:
        menu = page.locator(f"{chart} select")
        options = menu.locator("option")
        current = menu.input_value()
        index = next(
            i for i in range(options.count()) if options.nth(i).get_attribute("value") != current
        )
        picked, labels = options.nth(index).text_content(), options.all_text_contents()
        before = page.evaluate(TEXT_LINES, chart)
        menu.select_option(index=index)
        page.wait_for_timeout(300)
        after = page.evaluate(TEXT_LINES, chart)
    return {
        "options": labels,
        "picked": picked,
        "before": before,
        "after": after,
    }


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html")
    reports = check_site(root, root.parent / "screenshots")
    problems = [p for r in reports for p in r.problems]
    for r in reports:
        print(f"{r.page}: {r.charts} chart(s), {len(r.problems)} problem(s)")
    print("\n".join(problems) or "no problems")
    sys.exit(1 if problems else 0)
