"""Encoding with the packaged all-MiniLM-L6-v2 (offline) and the verified embedding cache."""

from __future__ import annotations

import dataclasses
import json
import logging
import time

import numpy as np
import pytest

from helpers.embeddings import cache_path, embed, layer_embeddings, texts_hash
from helpers.encoders import Encoder, ModelUnavailableError, load_encoder, resolve_model_path
from helpers.storage import load_arrays

PACKAGED = "packaged:all-MiniLM-L6-v2"
TEXTS = [
    "Light bends when it crosses into glass.",
    "Mitochondria make most of the cell's ATP.",
    "The treaty ended a long war between two empires.",
    "A spring stores energy when it is stretched or compressed, and releases it when let go.",
    "Enzymes lower the activation energy of reactions.",
    "Rome",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    enc = load_encoder(PACKAGED)
    enc.model  # load the weights once for the module  # noqa: B018
    return enc


@pytest.fixture(scope="module")
def vectors(encoder) -> np.ndarray:
    return embed(encoder, TEXTS)


def test_packaged_encoder_identity(encoder):
    assert encoder.pooling == "mean" and encoder.normalize is True
    assert encoder.fingerprint and encoder.path.is_dir()


def test_embed_returns_float32_rows_aligned_with_texts(encoder, vectors):
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), encoder.model.get_embedding_dimension())
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # normalize=True
    for i, text in enumerate(TEXTS):
        alone = encoder.encode([text])[0]
        assert np.allclose(vectors[i], alone, atol=1e-5), (
            f"row {i} is not the embedding of {text!r}"
        )


def test_embed_keeps_order_when_texts_are_reordered(encoder, vectors):
    order = [5, 2, 0, 4, 1, 3]
    assert np.allclose(embed(encoder, [TEXTS[i] for i in order]), vectors[order], atol=1e-5)


def test_cache_hit_does_not_encode_again(encoder, vectors, tmp_path, monkeypatch):
    first = embed(encoder, TEXTS, cache_dir=tmp_path)
    assert np.allclose(first, vectors, atol=1e-6)
    assert cache_path(tmp_path, "sentences", encoder, TEXTS).is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("encode called although the cache holds these texts")

    monkeypatch.setattr(Encoder, "encode", refuse)
    second = embed(encoder, TEXTS, cache_dir=tmp_path)
    assert second.dtype == np.float32
    assert np.array_equal(second, first)


def test_truncated_cache_is_detected_and_recomputed(encoder, tmp_path, monkeypatch, caplog):
    first = embed(encoder, TEXTS, cache_dir=tmp_path)
    path = cache_path(tmp_path, "sentences", encoder, TEXTS)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    calls = []
    original = Encoder.encode

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Encoder, "encode", counting)
    with caplog.at_level(logging.WARNING, logger="helpers.embeddings"):
        again = embed(encoder, TEXTS, cache_dir=tmp_path)
    assert len(calls) == 1, "the corrupt cache should have been recomputed"
    assert np.allclose(again, first, atol=1e-6)
    assert any("corrupt" in r.getMessage() and path.name in r.getMessage() for r in caplog.records)
    assert np.array_equal(load_arrays(path)["vectors"], again)  # rewritten, valid


def test_cache_with_wrong_row_count_is_not_used(encoder, tmp_path, caplog):
    from helpers.storage import save_arrays

    path = cache_path(tmp_path, "sentences", encoder, TEXTS)
    save_arrays(path, vectors=np.zeros((2, 384), dtype=np.float32))
    with caplog.at_level(logging.WARNING, logger="helpers.embeddings"):
        X = embed(encoder, TEXTS, cache_dir=tmp_path)
    assert X.shape[0] == len(TEXTS) and np.abs(X).sum() > 0
    assert any("expected" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "change",
    [
        {"pooling": "cls"},
        {"normalize": False},
        {"max_length": 64},
        {"fingerprint": "other-weights"},
        {"files": "other-tokenizer-or-config"},
    ],
)
def test_cache_key_changes_with_encoder_settings(encoder, tmp_path, change):
    base = cache_path(tmp_path, "sentences", encoder, TEXTS)
    assert base == cache_path(tmp_path, "sentences", dataclasses.replace(encoder), TEXTS)  # stable
    assert cache_path(tmp_path, "sentences", dataclasses.replace(encoder, **change), TEXTS) != base


def test_cache_key_changes_with_texts_and_their_order(encoder, tmp_path):
    base = cache_path(tmp_path, "sentences", encoder, TEXTS)
    assert cache_path(tmp_path, "sentences", encoder, TEXTS[::-1]) != base
    assert cache_path(tmp_path, "sentences", encoder, TEXTS[:-1]) != base
    assert cache_path(tmp_path, "sentences", encoder, [*TEXTS[:-1], TEXTS[-1] + " "]) != base
    assert cache_path(tmp_path, "layers", encoder, TEXTS) != base


def test_texts_hash_keeps_boundaries():
    assert texts_hash(["ab", "c"]) != texts_hash(["a", "bc"])
    assert texts_hash(["a"]) != texts_hash(["a", ""])


def test_layer_embeddings_shape_and_last_layer(encoder, vectors, tmp_path):
    layers = layer_embeddings(encoder, TEXTS, cache_dir=tmp_path, batch_size=4)
    n_layers = encoder.model[0].auto_model.config.num_hidden_layers
    assert layers.shape == (n_layers + 1, len(TEXTS), vectors.shape[1]) == (7, len(TEXTS), 384)
    assert layers.dtype == np.float32
    assert np.allclose(layers[-1], vectors, atol=1e-4)
    # the first layers differ from the last: they are not copies
    assert not np.allclose(layers[0], layers[-1], atol=1e-2)
    cached = layer_embeddings(encoder, TEXTS, cache_dir=tmp_path)
    assert np.array_equal(cached, layers)


def test_hub_model_offline_fails_fast_with_advice(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    hf_home = tmp_path / "hf-home"
    hf_home.mkdir()
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        load_encoder("bert-base-uncased")
    assert time.perf_counter() - started < 10
    message = str(info.value)
    assert "bert-base-uncased" in message
    assert "connect" in message and "'packaged:all-MiniLM-L6-v2'" in message


def test_folder_without_safetensors_is_refused(tmp_path, encoder):
    folder = tmp_path / "torch-only-model"
    folder.mkdir()
    (folder / "config.json").write_text((encoder.path / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"pretend pickle checkpoint")
    with pytest.raises(ModelUnavailableError) as info:
        load_encoder(str(folder))
    assert "safetensors" in str(info.value) and str(folder) in str(info.value)


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(ModelUnavailableError, match="config.json"):
        resolve_model_path(str(tmp_path / "model"))


def test_unknown_packaged_model_is_refused():
    with pytest.raises(ModelUnavailableError, match="packaged:all-MiniLM-L6-v2"):
        load_encoder("packaged:some-other-model")


def test_packaged_model_ships_safetensors(encoder):
    assert list(encoder.path.glob("*.safetensors"))
    assert json.loads((encoder.path / "config.json").read_text())["hidden_size"] == 384
