"""Run ``python -m helpers check`` in a subprocess with a memory ceiling, and measure it.

The subprocess gets an address-space limit (``RLIMIT_AS``, default 3 GB: importing torch
alone reserves about 2.5 GB of address space, so 2 GB cannot even start the command) and
reports its own peak resident memory, which tests compare against a much smaller bound.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = (
    str(REPO_ROOT / ".venv" / "bin" / "python")
    if (REPO_ROOT / ".venv").is_dir()
    else sys.executable
)

_WRAPPER = """
import resource, runpy, sys
out = sys.argv.pop(1)
sys.argv[0] = "helpers"
try:
    runpy.run_module("helpers", run_name="__main__", alter_sys=True)
finally:
    with open(out, "w") as fh:
        fh.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
"""


@dataclass
class CheckRun:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int | None  # bytes; None when the process died before reporting
    seconds: float


def run_check(config: Path, *, memory_limit: int = 3 << 30, timeout: float = 120) -> CheckRun:
    """``python -m helpers check --config CONFIG`` under ``memory_limit`` bytes of address space."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ANISOTROPY_BOOK_CONFIG", None)
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        started = time.perf_counter()
        proc = subprocess.run(
            [PYTHON, "-c", _WRAPPER, rss.name, "check", "--config", str(config)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit,
        )
        seconds = time.perf_counter() - started
        peak = rss.read().strip()
    return CheckRun(proc.returncode, proc.stdout, proc.stderr, int(peak) if peak else None, seconds)
