"""ruff: the package, tests, benchmarks and tools (line length 100), and the chapters' code
(line length 88), read through the chapters' notebook form as Jupytext writes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"
CODE = ["helpers", "tests", "bench", "tools", "book"]


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUFF), *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def chapter_scripts(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chapters")
    for md in sorted((ROOT / "chapters").glob("*.md")):
        # As notebooks: ruff formats and checks each cell on its own, as the page shows it.
        jupytext.write(jupytext.read(md), out / f"{md.stem.replace('-', '_')}.ipynb")
    return out


def test_package_passes_ruff_check():
    proc = ruff("check", *CODE)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_package_is_ruff_formatted():
    proc = ruff("format", "--check", *CODE)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_chapter_code_passes_ruff_check(chapter_scripts):
    proc = ruff("check", "--config", str(ROOT / "ruff-chapters.toml"), str(chapter_scripts))
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_chapter_code_is_ruff_formatted(chapter_scripts):
    proc = ruff(
        "format",
        "--check",
        "--diff",
        "--config",
        str(ROOT / "ruff-chapters.toml"),
        str(chapter_scripts),
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
