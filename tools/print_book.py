"""Print the book to one PDF with Debian's Chromium: every page in table-of-contents order.

``make pdf`` first builds the single-page edition (``jupyter-book build --builder
singlehtml``, which reuses ``make book``'s execution cache), then runs::

    .venv/bin/python -m tools.print_book _build/singlehtml _build/pdf/book.pdf

The page is opened with the network blocked, as the browser check does. Charts keep their
static pictures (SVG, so they stay vector graphics), drawn at build time without the parts
that only mean something interactively (``helpers.charts.interactive_only``: a selection's
readout, a menu). Before printing, the script waits until every chart is settled and
MathJax has typeset the math, adds a table of contents whose entries link to the chapters,
and refuses to print if a chart is empty. Chromium adds page numbers and a PDF outline
(bookmarks). Beside the PDF it writes ``book.charts.json``: for every chart, the words
its picture holds (titles, axis titles), so a test can find them in the PDF's text.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from .browser import CHARTS_SETTLED, block_network, launch, serve

PRINT_CSS = """
@page { size: A4; margin: 16mm 14mm 18mm 14mm; }
.bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .bd-header-article, .bd-footer,
.bd-footer-article, .prev-next-area, .header-article, .theme-switch-button,
.search-button, .headerlink, .skip-link, .jb-print-toc { display: none !important; }
.bd-main .bd-content .bd-article-container { max-width: 100% !important; }
span[id^="document-"] + section { break-before: page; }
.book-chart, figure, table, .admonition { break-inside: avoid; }
/* Shadows print as pictures. :not(#print) lifts the rule above the theme's own !important ones. */
:not(#print), :not(#print)::before, :not(#print)::after { box-shadow: none !important; text-shadow: none !important; }
pre { white-space: pre-wrap !important; overflow-wrap: anywhere; }  /* long code lines wrap */
.bd-article table { font-size: 0.85em; }
#print-toc { break-after: page; }
#print-toc h1 { margin-bottom: 0.8em; }
#print-toc ol { list-style: none; padding-left: 0; }
#print-toc ol ol { padding-left: 1.4em; font-size: 0.92em; }
#print-toc li { margin: 0.25em 0; }
#print-toc a { color: inherit; text-decoration: none; }
"""

# One table of contents from the documents the single page holds, in their order: each
# document's title and its sections, linked to their anchors (links stay live in the PDF).
ADD_TOC = """
() => {
  const docs = Array.from(document.querySelectorAll('span[id^="document-"]'));
  const nav = document.createElement('nav');
  nav.id = 'print-toc';
  nav.innerHTML = '<h1>Contents</h1>';
  const list = document.createElement('ol');
  const titles = [];
  // Chapters reuse section ids ("overview", "exercises"): give repeats their own, so each
  // entry of the contents jumps to its own chapter.
  const used = new Set();
  const anchor = (el) => {
    let id = el.id;
    for (let n = 2; used.has(id); n++) id = el.id + '-' + n;
    used.add(id);
    el.id = id;
    return id;
  };
  for (const span of docs) {
    const section = span.nextElementSibling;
    // The single page nests every document under the book's title, one heading level down.
    const heading = (sec) => sec && sec.querySelector(':scope > h1, :scope > h2, :scope > h3');
    const h1 = heading(section);
    if (!h1) continue;
    const title = h1.textContent.replace(/#$/, '').trim();
    titles.push(title);
    const item = document.createElement('li');
    item.innerHTML = '<a href="#' + anchor(section) + '">' + title + '</a>';
    const sub = document.createElement('ol');
    for (const h2sec of section.querySelectorAll(':scope > section')) {
      const h2 = heading(h2sec);
      if (!h2) continue;
      const li = document.createElement('li');
      li.innerHTML = '<a href="#' + anchor(h2sec) + '">' + h2.textContent.replace(/#$/, '').trim() + '</a>';
      sub.appendChild(li);
    }
    if (sub.children.length) item.appendChild(sub);
    list.appendChild(item);
  }
  nav.appendChild(list);
  // Under the book's title; the theme's printed list (chapters only, links to the web pages)
  // is hidden by the print style.
  document.querySelector('main h1').after(nav);
  return titles;
}
"""

# Every chart: its figure's id, the size of its picture, how many marks it draws and the
# words it shows. A chart with no size or no marks is an empty box.
CHART_CONTENTS = """
() => Array.from(document.querySelectorAll('.book-chart')).map((el, i) => {
  const svg = el.querySelector('.book-chart-live svg') || el.querySelector('svg');
  const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const fig = el.closest('figure, .cell');
  const words = svg ? Array.from(svg.querySelectorAll('text')).map(t => t.textContent.trim())
    .filter(t => t.length > 3) : [];
  return {
    index: i,
    figure: fig && fig.id ? fig.id : '',
    width: r.width, height: r.height,
    marks: svg ? svg.querySelectorAll('path, rect, line, text').length : 0,
    words: Array.from(new Set(words)).slice(0, 12),
  };
})
"""

MATH_DONE = """
async () => {
  if (!document.querySelector('span.math, div.math')) return 0;
  for (let i = 0; i < 200 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
    await new Promise(r => setTimeout(r, 100));
  await MathJax.startup.promise;
  return document.querySelectorAll('mjx-container').length;
}
"""

# Read by book-charts.js before it upgrades any chart: keep every static picture.
KEEP_STATIC_CHARTS = "window.bookChartsStatic = true;"

FOOTER = (
    '<div style="font-size:8px;width:100%;text-align:center;color:#555;">'
    '<span class="pageNumber"></span> / <span class="totalPages"></span></div>'
)


def print_book(site: Path, out: Path, page_name: str = "index.html") -> dict:
    """Print ``site/page_name`` (the single-page edition) to ``out``; returns a summary."""
    from playwright.sync_api import sync_playwright

    if not (site / page_name).is_file():
        raise SystemExit(
            f"{site / page_name} not found: build the single-page edition first "
            "(make pdf does: jupyter-book build . --builder singlehtml)"
        )
    # Jupyter Book's index.html only redirects to the root document (book/intro.html), which
    # Sphinx's single-page builder writes with links relative to the site's top folder: print a
    # copy placed there.
    redirect = re.search(r'url=([^"]+)"', (site / page_name).read_text(encoding="utf-8"))
    if redirect:
        page_name = "book-print.html"
        shutil.copyfile(site / redirect.group(1), site / page_name)
    blocked: list[str] = []
    with serve(site) as base, sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.emulate_media(media="screen", color_scheme="light")
            block_network(page, blocked)
            page.add_init_script(KEEP_STATIC_CHARTS)
            page.goto(f"{base}/{page_name}", wait_until="load")
            page.wait_for_function(CHARTS_SETTLED, timeout=120000)
            typeset = page.evaluate(MATH_DONE)
            titles = page.evaluate(ADD_TOC)
            page.add_style_tag(content=PRINT_CSS)
            page.emulate_media(media="print", color_scheme="light")
            charts = page.evaluate(CHART_CONTENTS)
            empty = [c for c in charts if c["width"] <= 0 or c["height"] <= 0 or c["marks"] == 0]
            if empty:
                raise SystemExit(f"empty chart(s), not printing: {empty}")
            if blocked:
                raise SystemExit(f"the page tried to leave the machine: {blocked[:5]}")
            out.parent.mkdir(parents=True, exist_ok=True)
            # Write next to the target, then rename: a failed print never leaves half a PDF.
            fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".pdf.part")
            os.close(fd)
            try:
                page.pdf(
                    path=tmp,
                    format="A4",
                    print_background=True,
                    display_header_footer=True,
                    header_template="<div></div>",
                    footer_template=FOOTER,
                    margin={"top": "16mm", "bottom": "18mm", "left": "14mm", "right": "14mm"},
                    outline=True,
                    tagged=True,
                )
                os.replace(tmp, out)
            finally:
                Path(tmp).unlink(missing_ok=True)
        finally:
            browser.close()
    summary = {"pdf": str(out), "titles": titles, "math": typeset, "charts": charts}
    out.with_suffix(".charts.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the single-page build, e.g. _build/singlehtml")
    parser.add_argument("out", type=Path, help="the PDF to write, e.g. _build/pdf/book.pdf")
    args = parser.parse_args()
    summary = print_book(args.site, args.out)
    print(
        f"{args.out}: {len(summary['titles'])} documents, {len(summary['charts'])} charts, "
        f"{summary['math']} math elements typeset"
    )


if __name__ == "__main__":
    main()
