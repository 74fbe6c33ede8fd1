"""A throw-away book proves the build command fails on a broken cell (and passes without it).

Slow: each case builds a small book with jupyter-book (not part of `make check`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
JB = Path(sys.executable).parent / "jupyter-book"

CONFIG = """
title: tiny
only_build_toc_files: true
execute:
  execute_notebooks: force
  show_tb: true
  stderr_output: remove-warn
"""
TOC = "format: jb-book\nroot: intro\n"
PAGE = """---
jupytext:
  text_representation: {{extension: .md, format_name: myst}}
kernelspec: {{display_name: Python 3, language: python, name: python3}}
---
# Tiny

```{{code-cell}} ipython3
x = 1 + 1
{extra}
```
"""


def _build(tmp_path: Path, extra: str, prose: str = "") -> subprocess.CompletedProcess:
    """Build a throw-away book through the Makefile's own ``site`` target (the flags of ``make book``)."""
    book = tmp_path / "book"
    book.mkdir()
    (book / "_config.yml").write_text(CONFIG)
    (book / "_toc.yml").write_text(TOC)
    (book / "intro.md").write_text(PAGE.format(extra=extra) + prose)
    cmd = ["make", "-C", str(ROOT), "--no-print-directory", "site", f"BOOK={book}"]
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.mark.parametrize(
    "extra, should_fail",
    [("", False), ("raise ValueError('broken cell on purpose')", True)],
)
def test_build_fails_exactly_when_a_cell_fails(tmp_path, extra, should_fail):
    proc = _build(tmp_path, extra)
    output = proc.stdout + proc.stderr
    if should_fail:
        assert proc.returncode != 0, output[-2000:]
        assert "broken cell on purpose" in output, "the traceback should be shown"
    else:
        assert proc.returncode == 0, output[-2000:]


def test_a_warning_fails_the_build(tmp_path):
    """A dangling cross-reference is only a warning to Sphinx: the book's build must fail on it."""
    proc = _build(tmp_path, "", prose="\nSee {ref}`a-label-that-does-not-exist`.\n")
    assert proc.returncode != 0, (proc.stdout + proc.stderr)[-2000:]


def test_a_failed_claim_shows_a_note_and_keeps_the_strict_build_green(tmp_path, monkeypatch):
    """A reader whose data does not support a sentence sees a note; the build does not break."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"paths:\n  data_dir: {ROOT / 'data' / 'chunks'}\n  results_dir: {tmp_path / 'results'}\n"
    )
    monkeypatch.setenv("ANISOTROPY_BOOK_CONFIG", str(config))
    cell = (
        "from helpers import book\n"
        "book.start()\n"
        "book.claim('tiny', x == 3, 'one and one make three')"
    )
    prose = "\nOne and one make three.\n\n```{glue:md} claim_tiny\n:format: myst\n```\n"
    proc = _build(tmp_path, cell, prose=prose)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    page = (tmp_path / "book" / "_build" / "html" / "intro.html").read_text()
    assert "claim-failed" in page and "one and one make three" in page
