"""The real book: a strict, network-free build, then every page in headless Chromium.

The build runs once per test session (cold on a clean clone: it pre-trains and fine-tunes),
with tests/book-config.yaml, under a socket guard that refuses non-loopback connections
(and inside a fresh network namespace where `unshare -n` is allowed). Its output goes to
_build/test-build so that it never mixes with `make book`'s execution cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.charts import FADED
from tools.sitecheck import (
    check_site,
    drive_linked_view,
    drive_neighbour_explorer,
    hover_first_point,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "test-build"
HTML = OUT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
JB = Path(sys.executable).parent / "jupyter-book"

pytestmark = pytest.mark.site


def _can_unshare() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return probe.returncode == 0


def build_book(log_path: Path, builder: str = "html") -> tuple[int, float]:
    env = {
        **os.environ,
        "ANISOTROPY_BOOK_CONFIG": str(ROOT / "tests" / "book-config.yaml"),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "tests" / "netguard"), os.environ.get("PYTHONPATH")])
        ),
        "HF_HUB_OFFLINE": "1",
    }
    # As `make book`: train (or reuse) the models first; the chapters only load them.
    train = f"'{sys.executable}' -m helpers train"
    build = f"'{JB}' build '{ROOT}' --path-output '{OUT}' --builder {builder} -W --keep-going -n"
    cmd = f"{train} && {build}"
    if _can_unshare():
        cmd = f'unshare -n sh -c "ip link set lo up && {cmd}"'
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(
            cmd, shell=True, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return proc.returncode, time.perf_counter() - started


@pytest.fixture(scope="session")
def built_site():
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "build.log"
    code, seconds = build_book(log)
    text = log.read_text(errors="replace")
    if code != 0:
        pytest.fail(
            f"strict build failed (exit {code}) after {seconds:.0f} s; last lines:\n"
            + "\n".join(text.splitlines()[-60:])
        )
    print(f"\ncold/first build: {seconds:.0f} s")
    return {"log": text, "seconds": seconds}


def test_build_is_strict_and_clean(built_site):
    log = built_site["log"]
    assert "build succeeded" in log
    assert "finished with problems" not in log
    assert not re.search(r"\.md:\d*: WARNING", log), "Sphinx warnings in a -W build"


def test_every_page_renders_offline(built_site):
    reports = check_site(HTML, SCREENSHOTS)
    pages = {r.page for r in reports}
    for chapter in (
        "01-setup-and-data",
        "02-anisotropy-geometry",
        "03-where-the-cone-comes-from",
        "04-bert-vs-contrastive",
        "05-post-hoc-fixes",
        "06-contrastive-finetuning",
        "07-one-model-three-objectives",
        "a1-metric-details",
    ):
        assert f"chapters/{chapter}.html" in pages
    problems = [p for r in reports for p in r.problems]
    assert not problems, "\n".join(problems)
    assert sum(r.charts for r in reports) >= 15, "fewer charts than the chapters contain"


def test_tooltip_shows_subject_and_chunk(built_site):
    text = hover_first_point(HTML, "chapters/04-bert-vs-contrastive.html")
    assert "subject" in text and "chunk" in text, text


@pytest.mark.parametrize(
    "page, figure",
    [
        ("chapters/04-bert-vs-contrastive.html", "fig-cmp-pca"),
        ("chapters/06-contrastive-finetuning.html", "fig-ft-pca"),
    ],
)
def test_linked_panels_follow_a_brush_and_the_legend(built_site, page, figure):
    seen = drive_linked_view(HTML, page, figure, FADED)
    before, brushed, legend = seen["before"], seen["brushed"], seen["legend"]
    n = before.panels[0][0]
    assert len(before.panels) >= 2
    assert before.panels == [(n, n)] * len(before.panels), "nothing selected: every point coloured"
    assert before.selected_line == f"{n} of {n} chunks selected"
    # A rectangle in the first panel keeps the same chunks coloured in every panel.
    k = brushed.panels[0][1]
    assert 0 < k < n, brushed.panels
    assert brushed.panels == [(n, k)] * len(before.panels), brushed.panels
    assert brushed.selected_line == f"{k} of {n} chunks selected"
    assert brushed.listed and brushed.listed != before.listed
    # A legend click keeps one subject, in every panel and in the table.
    m = legend.panels[0][1]
    assert 0 < m < n and legend.panels == [(n, m)] * len(before.panels), legend.panels
    assert legend.listed and all(line.startswith(f"{seen['subject']}: ") for line in legend.listed)


def test_neighbour_explorer_follows_its_menu(built_site):
    seen = drive_neighbour_explorer(
        HTML, "chapters/04-bert-vs-contrastive.html", "fig-cmp-neighbours"
    )
    assert len(seen["options"]) >= 2
    subject = seen["picked"].split(": ")[0]
    assert seen["after"][0].startswith(f"Chosen ({subject}): "), seen["after"][:1]
    assert seen["after"] != seen["before"]
    ranked = [line for line in seen["after"] if line[:1].isdigit() and ".  " in line]
    assert len(ranked) == 2 * 5, "five neighbours under each of the two models"


def test_no_cdn_for_charts_or_math(built_site):
    offenders = []
    for page in HTML.rglob("*.html"):
        html = page.read_text(errors="replace")
        for pattern in ("cdn.jsdelivr.net", "cdnjs.cloudflare.com", "unpkg.com/vega", "mathjax@"):
            if pattern in html:
                offenders.append(f"{page.relative_to(HTML)}: {pattern}")
    assert not offenders, offenders


def test_notebook_downloads_exist(built_site):
    for chapter in (ROOT / "chapters").glob("*.md"):
        assert (HTML / "_sources" / "chapters" / f"{chapter.stem}.ipynb").is_file(), chapter.stem


def test_warm_rebuild_reuses_models_and_cache(built_site):
    models = ROOT / "results" / "models"
    before = {p.name: p.stat().st_mtime for p in models.iterdir() if p.is_dir()}
    code, seconds = build_book(OUT / "build-warm.log")
    assert code == 0, (OUT / "build-warm.log").read_text()[-3000:]
    after = {p.name: p.stat().st_mtime for p in models.iterdir() if p.is_dir()}
    assert after == before, "a warm rebuild trained or rewrote a model"
    assert seconds < built_site["seconds"], (seconds, built_site["seconds"])


def test_downloaded_notebooks_execute(built_site, tmp_path):
    """Each chapter's .ipynb download runs top to bottom with nbconvert (models and caches are warm)."""
    nbconvert = Path(sys.executable).parent / "jupyter-nbconvert"
    env = {
        **os.environ,
        "ANISOTROPY_BOOK_CONFIG": str(ROOT / "tests" / "book-config.yaml"),
        "HF_HUB_OFFLINE": "1",
    }
    for notebook in sorted((HTML / "_sources" / "chapters").glob("*.ipynb")):
        proc = subprocess.run(
            [
                str(nbconvert),
                "--to",
                "notebook",
                "--execute",
                str(notebook),
                "--output-dir",
                str(tmp_path),
                "--ExecutePreprocessor.timeout=1200",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, f"{notebook.name}:\n{proc.stderr[-3000:]}"


def test_no_claim_fails_on_the_default_build(built_site):
    """Every guarded sentence holds on the default corpus: no page shows a failed-claim note."""
    from helpers.book import CLAIM_CLASS, read_claims
    from helpers.config import load_config

    flagged = [
        p.relative_to(HTML)
        for p in HTML.rglob("*.html")
        if CLAIM_CLASS in p.read_text(errors="replace")
    ]
    assert not flagged, flagged
    claims = read_claims(load_config(ROOT / "tests" / "book-config.yaml"))
    assert len(claims) >= 10, sorted(claims)
    failed = {k: v["statement"] for k, v in claims.items() if v["holds"] is False}
    assert not failed, failed


def test_launch_buttons_open_something_that_works(built_site):
    """Colab cannot read MyST Markdown, so no page offers a Colab button; Binder remains."""
    page = (HTML / "chapters" / "03-where-the-cone-comes-from.html").read_text(errors="replace")
    assert "colab.research.google.com" not in page
    assert "mybinder.org" in page


def _words(text: str) -> str:
    return " ".join(text.split())


def test_printed_book_has_every_chapter_and_vector_charts(built_site):
    """`make pdf`'s two steps on the test build: the single-page edition, then Chromium prints it."""
    code, _ = build_book(OUT / "build-singlehtml.log", builder="singlehtml")
    assert code == 0, (OUT / "build-singlehtml.log").read_text()[-3000:]
    pdf = OUT / "_build" / "pdf" / "book.pdf"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.print_book",
            str(OUT / "_build" / "singlehtml"),
            str(pdf),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = _words(
        subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    )
    for chapter in sorted((ROOT / "chapters").glob("*.md")):
        title = next(line[2:] for line in chapter.read_text().splitlines() if line.startswith("# "))
        assert _words(title) in text, f"chapter title missing from the PDF: {title}"
    assert "Contents" in text
    # Charts are vector graphics: their words are text in the PDF, and it holds no pictures.
    summary = json.loads(pdf.with_suffix(".charts.json").read_text())
    assert len(summary["charts"]) >= 15
    for chart in summary["charts"]:
        found = [w for w in chart["words"] if _words(w) in text]
        assert len(found) >= len(chart["words"]) / 2, (chart["figure"], chart["words"])
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True)
    assert len(images.stdout.splitlines()) == 2, "raster images in the PDF:\n" + images.stdout
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    assert int(re.search(r"Pages:\s+(\d+)", info).group(1)) > 20
