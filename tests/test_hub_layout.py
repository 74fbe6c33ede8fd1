"""The real models' path, proven offline (issue 14).

Readers with a network set the three ``models:`` roles to ``bert-base-uncased`` (mean
pooling) and ``BAAI/bge-base-en-v1.5`` (CLS pooling). Here there is no network, so
:mod:`tools.hub_snapshots` lays out both models in a temporary ``HF_HOME`` exactly as the hub
cache holds them (real configurations, layout, tensor names and tokenizer; random weights,
so the numbers mean nothing) and the book's command line runs on them in subprocesses
with ``HF_HUB_OFFLINE=1`` and network connections refused (``tests/netguard``):

* ``check`` finds the hub models "in the Hugging Face cache";
* ``metrics`` embeds the corpus with both 768-dimensional models;
* ``finetune`` fine-tunes bge and saves a model sentence-transformers can load;
* with an empty cache, ``metrics`` fails at once (exit 2) with a clear message.

About 0.9 GB of fake weights are written under pytest's temporary folder, once per module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tools.hub_snapshots import (
    BERT_ID,
    BGE_ID,
    HIDDEN,
    make_hub_cache,
    saved_tensors,
    snapshot_folder,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NETGUARD = ROOT / "tests" / "netguard"
# The allow_patterns of helpers.encoders._hub_path (a local there, so repeated here).
BOOK_PATTERNS = ["*.json", "*.safetensors", "*.txt", "tokenizer*", "*.model", "1_Pooling/*"]
HUB_CONFIG = {
    "paths": {
        "data_dir": str(ROOT / "data" / "chunks"),
        "results_dir": "results",
        "second_data_dir": None,
    },
    "data": {"max_per_subject": 12},  # 4 subjects x 12 chunks keeps 110M-parameter models quick
    "models": {
        "baseline": {"name": BERT_ID, "pooling": "mean"},
        "contrastive": {"name": BGE_ID, "pooling": "cls"},
        "finetune_base": {"name": BGE_ID, "pooling": "cls"},
    },
    "encoding": {"max_length": 128},
    # ~25 training chunks in batches of 8: three optimizer steps, no evaluation in between.
    "finetuning": {
        "losses": ["batch_all_triplet"],
        "epochs": 1,
        "batch_size": 8,
        "max_length": 32,
        "eval_steps": 1000,
    },
}


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("hf_home")
    make_hub_cache(home)
    return home


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hub_run")
    (folder / "config.yaml").write_text(
        yaml.safe_dump(HUB_CONFIG, sort_keys=False), encoding="utf-8"
    )
    return folder


def cli(run_dir: Path, hf_home: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """``python -m helpers --config CFG ARGS`` offline, with ``HF_HOME`` = ``hf_home``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "HF_HUB_CACHE",
            "HUGGINGFACE_HUB_CACHE",
            "TRANSFORMERS_CACHE",
            "SENTENCE_TRANSFORMERS_HOME",
        )
    }
    env.update(
        {
            "HF_HOME": str(hf_home),
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(NETGUARD), os.environ.get("PYTHONPATH")])
            ),
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "helpers", "--config", str(run_dir / "config.yaml"), *args],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _output(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"


# --- the fake cache behaves like the hub's --------------------------------------------------------------


def test_snapshots_resolve_offline_like_the_hub(hf_home):
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for repo_id in (BERT_ID, BGE_ID):
        found = snapshot_download(
            repo_id, allow_patterns=BOOK_PATTERNS, local_files_only=True, cache_dir=hf_home / "hub"
        )
        assert Path(found) == snapshot_folder(hf_home, repo_id)
        assert json.loads((Path(found) / "config.json").read_text())["hidden_size"] == HIDDEN
        assert (Path(found) / "model.safetensors").is_symlink()
        # The cached tree listing is consulted: formats the book never downloads are missing.
        with pytest.raises(LocalEntryNotFoundError):
            snapshot_download(
                repo_id, allow_patterns=["*.bin"], local_files_only=True, cache_dir=hf_home / "hub"
            )


def test_book_loads_every_tensor_of_the_real_checkpoint_layout(hf_home):
    """The book's encoders read every saved tensor: prefixes, heads and legacy names handled."""
    import torch
    from sentence_transformers import SentenceTransformer

    from helpers.encoders import build_sentence_transformer

    for repo_id, pooling in ((BERT_ID, "mean"), (BGE_ID, "cls")):
        folder = snapshot_folder(hf_home, repo_id)
        model = build_sentence_transformer(folder, pooling, True, 128)
        assert model.get_embedding_dimension() == HIDDEN
        saved = saved_tensors(hf_home, repo_id)
        loaded = model[0].auto_model.state_dict()
        assert set(saved) <= set(loaded), (
            f"{repo_id}: tensors not loaded: {sorted(set(saved) - set(loaded))[:5]}"
        )
        differ = [name for name in saved if not torch.equal(saved[name], loaded[name])]
        assert not differ, (
            f"{repo_id}: tensors not taken from the file (left at their initial values?): {differ[:5]}"
        )
        if repo_id == BGE_ID:
            # The book's Transformer + CLS pooling + Normalize = bge's own published pipeline.
            texts = ["Light bends when it crosses into glass.", "Rome fell in 476."]
            own = SentenceTransformer(str(folder), device="cpu")
            assert [type(m).__name__ for m in own] == ["Transformer", "Pooling", "Normalize"]
            assert np.allclose(own.encode(texts), model.encode(texts), atol=1e-5)
            del own
        del model, saved, loaded


# --- the book's command line on the hub models ---------------------------------------------------------


def test_check_finds_the_hub_models_in_the_cache(hf_home, run_dir):
    proc = cli(run_dir, hf_home, "check", timeout=300)
    assert proc.returncode == 0, _output(proc)
    roles = {
        line.split()[0]: line
        for line in proc.stdout.splitlines()
        if line.startswith("  ") and "pooling=" in line
    }
    for role, name in (("baseline", BERT_ID), ("contrastive", BGE_ID), ("finetune_base", BGE_ID)):
        assert name in roles[role] and "in the Hugging Face cache" in roles[role], _output(proc)
    assert "pooling=cls" in roles["contrastive"] and "pooling=mean" in roles["baseline"]


@pytest.mark.parametrize("role", ["baseline", "contrastive"])
def test_metrics_on_a_hub_model(hf_home, run_dir, role):
    proc = cli(run_dir, hf_home, "metrics", "--model", role, "--json", timeout=600)
    assert proc.returncode == 0, _output(proc)
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["model"] == role and row["dim"] == HIDDEN
    assert row["n_test"] > 0
    assert all(np.isfinite(v) for v in row.values() if isinstance(v, float)), row


def test_finetune_a_hub_model(hf_home, run_dir):
    from sentence_transformers import SentenceTransformer

    proc = cli(run_dir, hf_home, "finetune", timeout=900)
    assert proc.returncode == 0, _output(proc)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("fine-tuned model:"))
    folder = Path(line.split(":", 1)[1].strip())
    assert folder.is_dir() and folder.is_relative_to(run_dir / "results" / "models"), line
    model = SentenceTransformer(str(folder), device="cpu")
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Normalize"]
    assert model[1].pooling_mode == "cls"  # finetune_base's pooling, saved with the model
    vectors = model.encode(["Light bends when it crosses into glass.", "Rome fell in 476."])
    assert vectors.shape == (2, HIDDEN)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # Normalize kept


def test_missing_hub_model_fails_fast_with_a_clear_message(tmp_path, run_dir):
    empty = tmp_path / "empty_hf_home"
    empty.mkdir()
    started = time.perf_counter()
    proc = cli(
        run_dir, empty, "metrics", "--model", "baseline", timeout=30
    )  # a network wait would time out
    seconds = time.perf_counter() - started
    assert proc.returncode == 2, _output(proc)
    assert "not in the local Hugging Face cache" in proc.stderr and BERT_ID in proc.stderr, _output(
        proc
    )
    assert "Traceback" not in proc.stderr, _output(proc)
    print(f"missing model reported in {seconds:.1f} s")
