"""Killing a training run leaves nothing loadable; a rerun completes. Two runs at once agree.

Each test uses a tiny configuration in a temporary folder (a few chunks, a few steps) so
that it exercises the real code paths in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers.storage import COMPLETE_MARKER

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def tiny_config(tmp_path: Path) -> Path:
    cfg = {
        "paths": {
            "data_dir": str(ROOT / "data" / "chunks"),
            "results_dir": str(tmp_path / "results"),
        },
        "data": {
            "subjects": ["physics", "biology", "history"],
            "train_subjects": ["physics", "biology", "history"],
            "max_per_subject": 10,
            "test_fraction": 0.3,
            "seed": 1,
        },
        "models": {
            "baseline": {"name": "book:small-bert"},
            "contrastive": {"name": "packaged:all-MiniLM-L6-v2"},
            "finetune_base": {"name": "packaged:all-MiniLM-L6-v2"},
        },
        "pretraining": {
            "hidden_size": 32,
            "num_layers": 2,
            "num_heads": 2,
            "intermediate_size": 64,
            "max_length": 64,
            "short_length": 32,
            "vocab_size": 500,
            "batch_size": 4,
            "steps": 400,
            "track_every": 100,
            "warmup_steps": 2,
        },
        "finetuning": {
            "losses": ["batch_all_triplet"],
            "epochs": 60,
            "stop_at_plateau": False,  # a long run, for the interrupt to land in
            "batch_size": 8,
            "max_length": 32,
            "eval_steps": 2,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(*args: str, config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "helpers", "--config", str(config), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def kill_when_building(args: list[str], config: Path, prefix: str, grace: float) -> None:
    """Start the CLI, wait until it is writing a temporary model folder, then SIGKILL it."""
    models = config.parent / "results" / "models"
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers", "--config", str(config), *args],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if models.exists() and any(p.name.startswith(f".tmp-{prefix}") for p in models.iterdir()):
            break
        time.sleep(0.2)
    time.sleep(grace)
    # The tiny runs last tens of seconds, so the kill lands mid-training; if one ever finishes
    # first, this says so instead of passing without having tested an interruption.
    assert proc.poll() is None, (
        "the run finished before it could be killed; make the tiny config slower"
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def loadable(models: Path, prefix: str) -> list[Path]:
    return [p for p in models.iterdir() if p.is_dir() and p.name.startswith(prefix)]


@pytest.mark.parametrize(
    "command, prefix, grace", [(["pretrain"], "small-bert", 3.0), (["finetune"], "finetuned", 4.0)]
)
def test_killed_training_leaves_nothing_loadable_and_rerun_completes(
    tmp_path, command, prefix, grace
):
    config = tiny_config(tmp_path)
    kill_when_building(command, config, prefix, grace)
    models = tmp_path / "results" / "models"
    assert loadable(models, prefix) == [], "a killed run left a folder under a final model name"
    assert any(p.name.startswith(f".tmp-{prefix}") for p in models.iterdir()), (
        "expected the interrupted temp folder"
    )

    done = run_cli(*command, config=config)
    assert done.returncode == 0, done.stderr[-3000:]
    finals = loadable(models, prefix)
    assert len(finals) == 1 and (finals[0] / COMPLETE_MARKER).is_file()
    assert not any(p.name.startswith(f".tmp-{prefix}") for p in models.iterdir()), (
        "leftovers were not cleaned"
    )
    assert "removing leftovers of an interrupted build" in done.stderr


def test_two_runs_at_once_share_one_model(tmp_path):
    config = tiny_config(tmp_path)
    text = config.read_text().replace("steps: 400", "steps: 40")
    config.write_text(text)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "helpers", "--config", str(config), "pretrain"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outputs]
    paths = {o[0].splitlines()[0] for o in outputs}
    assert len(paths) == 1, paths
    models = tmp_path / "results" / "models"
    assert len(loadable(models, "small-bert")) == 1
    assert not any(p.name.startswith(".tmp-") for p in models.iterdir())


def test_two_runs_at_once_share_one_embedding_cache(tmp_path):
    """Two processes filling the same cache at once: both succeed, agree, and leave valid files."""
    config = tiny_config(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "helpers",
        "--config",
        str(config),
        "metrics",
        "--model",
        "contrastive",
        "--json",
    ]
    procs = [
        subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outputs]
    rows = [json.loads(o[0].strip().splitlines()[-1]) for o in outputs]
    for key in ("mean_cosine", "isoscore", "knn_accuracy"):
        assert rows[0][key] == rows[1][key], key
    from helpers.storage import load_arrays

    cache = tmp_path / "results" / "cache"
    files = sorted(cache.glob("*.npz"))
    assert len(files) == 2, files  # train and test split, one file each
    for f in files:
        load_arrays(f)  # raises if a concurrent write left it damaged
    assert not list(cache.glob(".*.tmp")), "temporary files left behind"


def test_two_cold_runs_give_the_same_metrics(tmp_path):
    """Determinism: same seed and inputs, two empty results folders, same numbers.

    Tolerance 1e-4: CPU kernels are deterministic for a fixed thread count, but PyTorch may
    pick a different reduction order when the number of threads differs between runs, which
    changes floating-point sums in the last bits; the metrics are averages over many pairs,
    so such differences stay far below 1e-4.
    """
    logs = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        config = tiny_config(folder)
        config.write_text(config.read_text().replace("steps: 400", "steps: 30"))
        done = run_cli("pretrain", config=config)
        assert done.returncode == 0, done.stderr[-2000:]
        metrics = run_cli("metrics", "--model", "baseline", "--json", config=config)
        assert metrics.returncode == 0, metrics.stderr[-2000:]
        logs.append(json.loads(metrics.stdout.strip().splitlines()[-1]))
    a, b = logs
    for key in (
        "mean_cosine",
        "pc1_share",
        "isoscore",
        "uniformity",
        "silhouette",
        "knn_accuracy",
        "probe_accuracy",
    ):
        assert abs(a[key] - b[key]) < 1e-4, (key, a[key], b[key])
