"""``encoding.precision``: the fast bf16 path stays faithful to fp32, int8 runs, and the
precision is part of every cache key (but not of the fine-tuned model's).

Speed is measured by ``bench/fast_encode.py``, not here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import write_config
from sentence_transformers.sentence_transformer.modules import Pooling

from helpers.config import ConfigError, load_config
from helpers.corpus import corpus_splits
from helpers.embeddings import cache_path
from helpers.encoders import PRECISIONS, load_encoder, pool
from helpers.models import base_encoder, role_encoder

PACKAGED = "packaged:all-MiniLM-L6-v2"
SENTENCES = [
    "Light bends when it crosses from air into glass.",
    "Cells copy their chromosomes before they divide.",
    "The treaty ended the war between the two empires and opened the harbour to trade.",
    "Entropy.",
    "An enzyme lowers the energy a reaction needs, so the reaction runs faster at body heat.",
]


@pytest.fixture(scope="module")
def fp32_vectors() -> np.ndarray:
    return load_encoder(PACKAGED).encode(SENTENCES)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.slow
def test_bf16_vectors_stay_within_cosine_0999_of_fp32(fp32_vectors):
    fast = load_encoder(PACKAGED, precision="bf16").encode(SENTENCES, batch_size=3)
    assert fast.dtype == np.float32 and fast.shape == fp32_vectors.shape
    assert cosines(fast, fp32_vectors).min() >= 0.999
    assert np.allclose(np.linalg.norm(fast, axis=1), 1, atol=1e-5)  # normalised in float32


@pytest.mark.slow
def test_int8_runs_and_stays_close_to_fp32(fp32_vectors):
    small = load_encoder(PACKAGED, precision="int8").encode(SENTENCES)
    assert small.dtype == np.float32 and small.shape == fp32_vectors.shape
    assert cosines(small, fp32_vectors).min() > 0.9  # lossy: bench/fast_encode.py reports it


@pytest.mark.parametrize("mode", ["mean", "cls"])
def test_pooling_matches_the_sentence_transformers_module(mode):
    hidden = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    theirs = Pooling(8, pooling_mode=mode)({"token_embeddings": hidden, "attention_mask": mask})[
        "sentence_embedding"
    ]
    assert torch.allclose(pool(hidden, mask, mode), theirs, atol=1e-6)


def test_cache_key_differs_by_precision(tmp_path):
    encoders = {p: load_encoder(PACKAGED, precision=p) for p in PRECISIONS}
    paths = {cache_path(tmp_path, "sentences", enc, SENTENCES) for enc in encoders.values()}
    assert len(paths) == len(PRECISIONS)
    assert "precision" not in encoders["fp32"].identity  # fp32 keeps the keys caches had


def test_precision_comes_from_the_config_but_stays_out_of_the_finetuning_key(tmp_path):
    cfg = load_config(write_config(tmp_path, encoding={"precision": "bf16"}))
    plain = load_config(write_config(tmp_path, name="plain.yaml"))
    splits = corpus_splits(cfg)
    assert role_encoder(cfg, "contrastive", splits).precision == "bf16"
    assert role_encoder(plain, "contrastive", splits).precision == "fp32"
    assert base_encoder(cfg, splits).identity == base_encoder(plain, splits).identity


def test_a_bad_precision_is_a_clear_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, encoding={"precision": "fp16"}))
    message = str(err.value)
    assert "encoding.precision" in message and "'fp16'" in message
    assert all(p in message for p in PRECISIONS) and "default 'fp32'" in message


def test_load_encoder_refuses_an_unknown_precision():
    with pytest.raises(ValueError, match="precision 'fp16': use one of fp32, bf16, int8"):
        load_encoder(PACKAGED, precision="fp16")


def test_worker_processes_refuse_a_fast_precision(tmp_path, capsys):
    """The worker pool runs the fp32 model; its vectors must never be cached as bf16."""
    from helpers.cli import main

    config = write_config(tmp_path, encoding={"precision": "bf16"})
    code = main(["--config", str(config), "embed", "--model", "contrastive", "--processes", "2"])
    assert code == 2
    assert "encoding.precision" in capsys.readouterr().err
