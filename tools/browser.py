"""Headless Chromium (Debian's package) on a site served from this machine, network blocked.

Shared by the browser check (``tools/sitecheck.py``) and the printed book
(``tools/print_book.py``): serve a folder on 127.0.0.1, launch Chromium, and let pages
load only loopback URLs.
"""

from __future__ import annotations

import functools
import http.server
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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

# True once every chart on the page is interactive (or has given up and kept its picture, or
# was told to keep it: the printed book).
CHARTS_SETTLED = (
    "() => document.querySelectorAll('.book-chart').length === document.querySelectorAll("
    "'.book-chart-interactive, .book-chart-failed, .book-chart-kept-static').length"
)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
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


def launch(pw):
    """Debian's Chromium, headless; Playwright downloads no browser of its own."""
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} not found: install Debian's chromium (make browser)")
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


@contextmanager
def open_page(root: Path, page_name: str, width: int = 1280, height: int = 900):
    """A page of the site in ``root``, network blocked, once its charts have settled."""
    from playwright.sync_api import sync_playwright

    with serve(root) as base, sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            block_network(page, [])
            page.goto(f"{base}/{page_name}", wait_until="load")
            page.wait_for_function(CHARTS_SETTLED, timeout=30000)
            yield page
        finally:
            browser.close()
