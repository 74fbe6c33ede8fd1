"""A cold strict build (empty results and execution cache) against a warm rebuild with nothing changed.

Builds a temporary copy of the repository (the working tree is untouched). Reports both wall
times, the peak resident memory of the whole build (the sum over the build process and its
kernels, sampled every 0.2 s with psutil), each chapter's execution time in the cold build,
and ends with `RESULT build_warm_cold <warm/cold>` (goal: at most 0.10).

    .venv/bin/python bench/build_warm_cold.py
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from _measure import run_tracking_memory

ROOT = Path(__file__).resolve().parents[1]
JB = Path(sys.executable).parent / "jupyter-book"


def build(repo: Path) -> tuple[float, float, str]:
    """Run one strict build; return (seconds, peak total RSS in MB, log)."""
    # The copy's own config (and so its own empty results folder), not the installed checkout's.
    env = {**os.environ, "ANISOTROPY_BOOK_CONFIG": str(repo / "config.yaml")}
    code, seconds, peak_mb, log = run_tracking_memory(
        [str(JB), "build", str(repo), "-W", "--keep-going", "-n"],
        cwd=repo,
        env=env,
        merge_stderr=True,
    )
    if not (repo / "results" / "models").is_dir():
        sys.exit(
            "the build did not use the copy's results folder; the measurement would not be cold"
        )
    if code != 0:
        sys.exit(f"build failed:\n{log[-4000:]}")
    return seconds, peak_mb, log


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "book"
        shutil.copytree(
            ROOT,
            repo,
            ignore=shutil.ignore_patterns(
                ".venv", "_build", "results", ".git", "notebooks", "scripts"
            ),
        )
        cold, cold_peak, log = build(repo)
        warm, warm_peak, _ = build(repo)
    chapters = {
        Path(m.group(1)).stem: float(m.group(2))
        for m in re.finditer(r"(\S+\.md): Executed notebook in ([\d.]+) seconds", log)
    }
    print(
        f"cold build {cold:.0f} s (peak RSS {cold_peak:.0f} MB), warm rebuild {warm:.1f} s (peak RSS {warm_peak:.0f} MB)"
    )
    for name, seconds in sorted(chapters.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<36} {seconds:7.1f} s")
    if chapters:
        top = max(chapters, key=chapters.get)
        print(f"dominant chapter: {top} ({chapters[top] / cold:.0%} of the cold build)")
    print(f"RESULT build_warm_cold {warm / cold:.3f}")


if __name__ == "__main__":
    main()
