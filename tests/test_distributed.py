"""Fine-tuning as several data-parallel processes (``torchrun -m helpers finetune``).

The end-to-end test launches two CPU processes (gloo) on a tiny corpus: one model folder
and one training log are published, under the same key as a single-process run, the
model loads and encodes, and a second launch reuses it. The other tests check, without launching anything, how a batch
is split over processes and what each process's triplet batches hold.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, write_config
from datasets import Dataset

from helpers.config import ConfigError, load_config
from helpers.corpus import corpus_splits
from helpers.encoders import load_encoder
from helpers.finetuning import (
    assert_batches_mix_subjects,
    distributed_arguments,
    finetuning_inputs,
    per_process_batch,
)
from helpers.models import base_encoder, finetune_splits
from helpers.storage import COMPLETE_MARKER, settings_key
from helpers.training import LOG_FILE, TrainingLog

TINY_FINETUNING = {
    "losses": ["multiple_negatives"],
    "epochs": 1,
    "batch_size": 4,  # 2 rows on each of the 2 processes
    "max_length": 32,
    "eval_steps": 1,  # exercises the trainer's evaluation across processes too
}


def single_process_folder_name(config) -> str:
    """The folder a one-process ``finetune --loss multiple_negatives`` publishes (nothing trained)."""
    cfg = load_config(config)
    splits = corpus_splits(cfg)
    base = base_encoder(cfg, splits, max_length=cfg.finetuning.max_length)
    inputs = finetuning_inputs(
        cfg.finetuning, base, finetune_splits(cfg, splits), "multiple_negatives"
    )
    return f"finetuned-multiple_negatives-{settings_key(inputs)}"


@pytest.mark.slow
def test_torchrun_two_processes_publish_one_model(tmp_path):
    config = write_config(tmp_path, finetuning=TINY_FINETUNING)
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
        *("-m", "helpers", "--config", str(config), "finetune", "--loss", "multiple_negatives"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("fine-tuned model:") == 1  # rank 0 reports, rank 1 stays quiet

    models = tmp_path / "results" / "models"
    published = [p for p in models.iterdir() if not p.name.startswith(".")]
    assert [p.name for p in published] == [single_process_folder_name(config)]
    assert not list(models.glob(".tmp-*"))  # no half-built folder left behind
    assert len(list(tmp_path.rglob(LOG_FILE))) == 1
    path = published[0]
    assert (path / COMPLETE_MARKER).is_file()
    assert TrainingLog.load(path).summary["processes"] == 2

    vectors = load_encoder(str(path), max_length=32).encode(["Light bends at a boundary."])
    assert vectors.shape == (1, 384) and np.isfinite(vectors).all()

    log_written = (path / LOG_FILE).stat().st_mtime_ns
    again = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-4000:]
    assert (
        path / LOG_FILE
    ).stat().st_mtime_ns == log_written  # reused by both ranks, not retrained


def test_one_process_keeps_the_batch_and_trainer_arguments():
    assert per_process_batch(32, 1, "batch_all_triplet") == 32
    assert per_process_batch(7, 1, "multiple_negatives") == 7
    assert distributed_arguments(1, gpus=False) == {}


def test_a_batch_is_split_evenly_over_processes():
    assert per_process_batch(32, 4, "multiple_negatives") == 8
    assert per_process_batch(16, 2, "batch_all_triplet") == 8
    assert distributed_arguments(2, gpus=False)["ddp_backend"] == "gloo"
    assert "ddp_backend" not in distributed_arguments(2, gpus=True)  # accelerate picks NCCL


@pytest.mark.parametrize(
    ("batch_size", "processes", "loss"),
    [(10, 4, "multiple_negatives"), (12, 4, "batch_all_triplet"), (6, 2, "batch_all_triplet")],
)
def test_a_batch_that_does_not_split_is_a_clear_error(batch_size, processes, loss):
    with pytest.raises(ConfigError, match=r"finetuning\.batch_size' = \d+ .*Fix: use a multiple"):
        per_process_batch(batch_size, processes, loss)


def labelled_rows(counts: dict[int, int]) -> Dataset:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return Dataset.from_dict({"text": [f"row {i}" for i in range(len(labels))], "label": labels})


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_every_process_trains_on_batches_that_mix_subjects(processes):
    rows = labelled_rows({0: 40, 1: 25, 2: 9})
    checked = assert_batches_mix_subjects(rows, batch_size=8, seed=13, processes=processes)
    assert checked >= processes


def test_too_few_rows_for_the_processes_is_a_clear_error():
    with pytest.raises(ConfigError, match="gets no full batch"):
        assert_batches_mix_subjects(labelled_rows({0: 4, 1: 4}), batch_size=8, seed=0, processes=2)
