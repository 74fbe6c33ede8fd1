"""Run a command and measure it: wall time and the peak resident memory of its process tree.

Shared by the benchmark scripts (``from _measure import run_tracking_memory``: each script
runs with ``bench/`` first on ``sys.path``).
"""

from __future__ import annotations

import subprocess
import threading
import time

import psutil


def run_tracking_memory(
    cmd: list[str], *, cwd, env, merge_stderr: bool = False
) -> tuple[int, float, float, str]:
    """Run ``cmd``; return (exit code, seconds, peak RSS of it and its children in MB, stdout).

    The summed RSS of the whole process tree is sampled every 0.2 s, so workers and kernels
    the command starts are counted too.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else None,
        text=True,
    )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    reader.join()
    return proc.returncode, time.perf_counter() - started, peak / 2**20, "".join(out)
