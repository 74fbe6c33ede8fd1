"""Scale: `helpers embed` and the metrics on 1,000, 2,500 and all chunks of the OpenStax sample.

For each size (``data.max_per_subject`` 200, 500 and none over the five subjects; the whole
folder holds 7,020 chunks), in a temporary results folder:

* embed: ``python -m helpers embed --model contrastive`` in a subprocess, its wall time and
  the peak resident memory of its process tree (sampled every 0.2 s with psutil; this
  includes the model);
* metrics: ``embed_splits`` (a cache hit) and ``measure_embeddings`` in this process, timed,
  then repeated under tracemalloc for the peak memory they allocate (the model is not
  loaded, so it is not counted).

Then the growth exponents (least-squares slope of log value against log chunks) of the
metrics' time and memory, and the warm ``python -m helpers metrics`` on the whole folder as
a user runs it (wall time and peak memory of the process; goal: at most 60 s and 3 GB).
Each figure is printed as ``RESULT <name> <value>``; ``all`` names the whole folder.

    taskset -c 1 .venv/bin/python bench/scale.py [--sizes 1000 2500 all] [--processes 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import yaml
from _measure import run_tracking_memory

from helpers.analysis import embed_splits, measure_embeddings
from helpers.config import load_config
from helpers.corpus import corpus_splits

ROOT = Path(__file__).resolve().parents[1]
OPENSTAX = ROOT.parent / "shared" / "corpora" / "openstax"
CAPS = {"1000": 200, "2500": 500, "all": None}  # chunks per subject, five subjects
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def write_config(folder: Path, cap: int | None) -> Path:
    """A config over the OpenStax sample, capped at ``cap`` chunks per subject."""
    path = folder / "config.yaml"
    settings = {
        "paths": {"data_dir": str(OPENSTAX), "results_dir": str(folder / "results")},
        "data": {"max_per_subject": cap},
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def run_measured(args: list[str]) -> tuple[float, float, str]:
    """Run ``python -m helpers ARGS``; return (seconds, peak RSS of its process tree in MB, stdout)."""
    code, seconds, peak_mb, out = run_tracking_memory(
        [sys.executable, "-m", "helpers", *args], cwd=ROOT, env=ENV
    )
    if code != 0:
        sys.exit(f"python -m helpers {' '.join(args)} failed with exit code {code}")
    return seconds, peak_mb, out


def metrics_step(config: Path) -> tuple[int, float, float]:
    """(chunks, seconds, peak traced MB) of the warm metrics: cached embeddings, measurements."""
    cfg = load_config(config)
    splits = corpus_splits(cfg)
    n = len(splits["train"]) + len(splits["test"])

    def step() -> None:
        measure_embeddings(embed_splits(cfg, "contrastive", splits), splits)

    started = time.perf_counter()
    step()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return n, seconds, peak / 2**20


def exponent(n: list[int], values: list[float]) -> float:
    """Slope of log(values) against log(n): 1 for linear growth, 2 for quadratic."""
    return float(np.polyfit(np.log(n), np.log(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=list(CAPS), choices=list(CAPS))
    parser.add_argument("--processes", type=int, default=1, help="helpers embed --processes")
    args = parser.parse_args()
    if not OPENSTAX.is_dir():
        sys.exit(f"{OPENSTAX}: the OpenStax sample is not there; nothing to measure")
    chunks, metric_seconds, metric_mb, embed_seconds = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = Path(tmp) / size
            folder.mkdir()
            config = write_config(folder, CAPS[size])
            embed = ["--config", str(config), "embed", "--model", "contrastive"]
            seconds, peak, _ = run_measured([*embed, "--processes", str(args.processes)])
            n, m_seconds, m_peak = metrics_step(config)
            print(
                f"{n} chunks: embed {seconds:.1f} s ({n / seconds:.1f} chunks/s, peak {peak:.0f} MB)"
            )
            print(f"{n} chunks: metrics {m_seconds:.2f} s (peak traced {m_peak:.1f} MB)")
            print(f"RESULT chunks_{size} {n}")
            print(f"RESULT embed_seconds_{size} {seconds:.1f}")
            print(f"RESULT embed_peak_mb_{size} {peak:.0f}")
            print(f"RESULT metrics_seconds_{size} {m_seconds:.2f}")
            print(f"RESULT metrics_peak_mb_{size} {m_peak:.1f}")
            chunks.append(n)
            embed_seconds.append(seconds)
            metric_seconds.append(m_seconds)
            metric_mb.append(m_peak)
            if size == "all":
                metrics = ["--config", str(config), "metrics", "--model", "contrastive", "--json"]
                warm, warm_peak, _ = run_measured(metrics)
                print(f"RESULT warm_metrics_seconds_all {warm:.1f}")
                print(f"RESULT warm_metrics_peak_mb_all {warm_peak:.0f}")
    if len(chunks) >= 2:
        print(f"RESULT metrics_time_exponent {exponent(chunks, metric_seconds):.2f}")
        print(f"RESULT metrics_memory_exponent {exponent(chunks, metric_mb):.2f}")
        print(f"RESULT embed_time_exponent {exponent(chunks, embed_seconds):.2f}")


if __name__ == "__main__":
    main()
