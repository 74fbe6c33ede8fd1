"""Open every page of the built site in headless Chromium with the network blocked.

Serves ``_build/html`` on 127.0.0.1, blocks every request that is not to the loopback
address (and records it), and for each page collects console errors, failed requests and
charts that did not render. Saves desktop and phone-width screenshots under
``_build/screenshots/``. Used by ``tests/test_site.py``; also runnable by hand:

    .venv/bin/python tests/sitecheck.py [_build/html]
"""

from __future__ import annotations

import functools
import http.server
import socketserver
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


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


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def serve(root: Path):
    """Serve ``root`` on an ephemeral loopback port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()


def block_network(page, blocked: list[str]) -> None:
    """Let ``page`` load only loopback (and data/blob) URLs; record and abort everything else."""

    def route(r):
        host = urlparse(r.request.url).hostname or ""
        if r.request.url.startswith(("data:", "blob:", "about:")) or host in LOOPBACK:
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)


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
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
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
                page.wait_for_function(
                    "() => document.querySelectorAll('.book-chart').length === "
                    "document.querySelectorAll('.book-chart-interactive, .book-chart-failed').length",
                    timeout=20000,
                )
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
    from playwright.sync_api import sync_playwright

    with serve(root) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        block_network(page, [])
        page.goto(f"{base}/{page_name}", wait_until="load")
        page.wait_for_selector(".book-chart-interactive")
        point = page.locator(".book-chart-live g.mark-symbol path").first
        point.scroll_into_view_if_needed()
        point.hover(force=True)
        page.wait_for_selector("#vg-tooltip-element.visible", timeout=5000)
        text = page.inner_text("#vg-tooltip-element")
        browser.close()
        return text


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html")
    reports = check_site(root, root.parent / "screenshots")
    problems = [p for r in reports for p in r.problems]
    for r in reports:
        print(f"{r.page}: {r.charts} chart(s), {len(r.problems)} problem(s)")
    print("\n".join(problems) or "no problems")
    sys.exit(1 if problems else 0)
