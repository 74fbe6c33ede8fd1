"""A large corpus on one machine: blocked metrics, a sampled silhouette, resumable embedding.

* The all-pairs metrics computed in tiny row blocks equal the exact, unblocked ones.
* Above its threshold the silhouette uses a fixed, seeded, stratified sample and says how
  large; below it, it is exact.
* ``python -m helpers embed`` killed part-way resumes from its finished shards and ends
  with the vectors of an uninterrupted run, in the cache the chapters read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import build_corpus, write_config
from scipy.spatial.distance import pdist
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier

from helpers import geometry as g
from helpers.cli import main
from helpers.encoders import Encoder

ROOT = Path(__file__).resolve().parents[1]
SHARD = 4  # chunks per shard in the embedding tests: several shards per split


def labelled_cloud(seed: int, n: int = 90, d: int = 12, k: int = 3):
    """``k`` Gaussian clusters with string labels, shifted off the origin (a cone)."""
    rng = np.random.default_rng(seed)
    labels = np.array([f"s{i % k}" for i in range(n)])
    X = rng.normal(size=(k, d))[np.arange(n) % k] * 2 + rng.normal(size=(n, d)) + 1.5
    return X, labels


@pytest.fixture
def one_row_blocks(monkeypatch):
    """Every all-pairs step works one row at a time."""
    monkeypatch.setattr(g, "BLOCK_ROWS", 1)


# --- blocked metrics equal the exact ones -------------------------------------------------------


def test_pair_blocks_visit_each_pair_once(one_row_blocks):
    X, _ = labelled_cloud(0, n=23)
    blocks = list(g.pair_sq_distances(X))
    assert len(blocks) == len(X) - 1  # one block per row (the last row has no later partner)
    assert np.allclose(np.concatenate(blocks), pdist(X, "sqeuclidean"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("t", [0.5, 2.0])
def test_blocked_uniformity_equals_all_pairs(seed, t, monkeypatch):
    X, _ = labelled_cloud(seed)
    sq = pdist(g.unit_rows(X), "sqeuclidean")
    exact = np.logaddexp.reduce(-t * sq) - np.log(len(sq))  # the unblocked formula
    one_block = g.uniformity(X, t=t)
    monkeypatch.setattr(g, "BLOCK_ROWS", 1)
    assert g.uniformity(X, t=t) == pytest.approx(exact, abs=1e-12)
    assert one_block == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_blocked_alignment_equals_all_pairs(seed, alpha, one_row_blocks):
    X, labels = labelled_cloud(seed)
    U = g.unit_rows(X)
    dists = np.concatenate([pdist(U[labels == lab]) for lab in np.unique(labels)])
    assert g.alignment(X, labels, alpha=alpha) == pytest.approx(
        np.mean(dists**alpha), rel=1e-10, abs=1e-12
    )


def test_knn_is_computed_in_blocks_with_the_same_predictions(monkeypatch):
    """scikit-learn's brute cosine k-NN works through the test rows in ``working_memory`` blocks."""
    X, labels = labelled_cloud(3, n=120)
    train, test = slice(0, 80), slice(80, None)
    whole = g.knn_classification(X[train], labels[train], X[test], labels[test])
    calls = []
    reduce = KNeighborsClassifier._kneighbors_reduce_func

    def counting(self, dist, start, *args, **kwargs):
        calls.append(len(dist))
        return reduce(self, dist, start, *args, **kwargs)

    monkeypatch.setattr(KNeighborsClassifier, "_kneighbors_reduce_func", counting)
    monkeypatch.setattr(g, "BLOCK_ROWS", 1)
    blocked = g.knn_classification(X[train], labels[train], X[test], labels[test])
    assert calls == [1] * 40, "expected one block per test row"
    assert list(blocked.predictions) == list(whole.predictions)
    assert blocked.accuracy == whole.accuracy


def test_geometry_report_is_the_same_in_tiny_blocks(monkeypatch):
    X, labels = labelled_cloud(4, n=120)
    args = (X[::2], labels[::2], X[1::2], labels[1::2])
    whole = g.geometry_report(*args).as_dict()
    monkeypatch.setattr(g, "BLOCK_ROWS", 1)
    blocked = g.geometry_report(*args).as_dict()
    assert blocked.keys() == whole.keys()
    for key in whole:
        assert blocked[key] == pytest.approx(whole[key], rel=1e-10, abs=1e-12), key


# --- the silhouette: exact up to a threshold, then a seeded stratified sample -----------------


def test_silhouette_is_exact_below_the_threshold():
    X, labels = labelled_cloud(5, n=150)
    s = g.silhouette_estimate(X, labels, max_exact=150)
    assert s.sample == 150
    assert s.mean == pytest.approx(
        silhouette_score(g.unit_rows(X), labels, metric="cosine"), abs=1e-12
    )
    assert s.low <= s.mean <= s.high


def test_silhouette_above_the_threshold_uses_a_fixed_stratified_sample():
    X, labels = labelled_cloud(6, n=300, k=3)
    labels[:60] = "s0"  # unequal subjects: s0 holds 140 of the 300 points
    first = g.silhouette_estimate(X, labels, max_exact=90, seed=7)
    again = g.silhouette_estimate(X, labels, max_exact=90, seed=7)
    assert first == again  # deterministic
    assert first.sample == 90
    assert first.low <= first.mean <= first.high
    idx = g.stratified_sample(labels, 90, seed=7)
    assert len(idx) == len(set(idx)) == 90
    share = {lab: np.mean(labels[idx] == lab) for lab in np.unique(labels)}
    assert share == pytest.approx({lab: np.mean(labels == lab) for lab in share}, abs=0.02)
    expected = silhouette_score(g.unit_rows(X)[idx], labels[idx], metric="cosine")
    assert first.mean == pytest.approx(expected, abs=1e-12)
    assert first.mean != pytest.approx(
        silhouette_score(g.unit_rows(X), labels, metric="cosine"), abs=1e-9
    )


def test_geometry_report_states_the_silhouette_sample(monkeypatch):
    X, labels = labelled_cloud(7, n=200)
    args = (X[::2], labels[::2], X[1::2], labels[1::2])
    exact = g.geometry_report(*args)
    assert exact.silhouette_sample == exact.n_test == 100
    assert exact.silhouette_low <= exact.silhouette <= exact.silhouette_high
    monkeypatch.setattr(g, "SILHOUETTE_EXACT_MAX", 60)
    sampled = g.geometry_report(*args)
    assert sampled.silhouette_sample == 60 and sampled.n_test == 100
    assert sampled.as_dict() == g.geometry_report(*args).as_dict()


# --- python -m helpers embed: shards, a kill, a resume ----------------------------------------


def embed_config(folder: Path) -> Path:
    """A config over 36 made-up chunks in ``folder`` (train and test span several shards)."""
    folder.mkdir(parents=True, exist_ok=True)
    build_corpus(folder / "corpus", per_subject=12)
    return write_config(folder)


def embed_args(config: Path, *extra: str) -> list[str]:
    return [
        "--config",
        str(config),
        "embed",
        "--model",
        "contrastive",
        "--shard-size",
        str(SHARD),
        *extra,
    ]


def refuse_encoding(monkeypatch) -> None:
    """From now on, encoding anything fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("encode called: the embedding cache was not reused")

    monkeypatch.setattr(Encoder, "encode", refuse)


def cached_vectors(config: Path, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    """The vectors ``embed_splits`` returns for the config, refusing to encode anything."""
    from helpers.analysis import embed_splits
    from helpers.config import load_config
    from helpers.corpus import corpus_splits

    with monkeypatch.context() as m:
        refuse_encoding(m)
        cfg = load_config(config)
        emb = embed_splits(cfg, "contrastive", corpus_splits(cfg))
    return emb.train, emb.test


def shard_files(config: Path) -> list[Path]:
    return sorted((config.parent / "results" / "cache").glob("*.shards/*.npz"))


def count_encodes(monkeypatch, fail_after: int | None = None) -> list[int]:
    """Count (and optionally interrupt) in-process shard encodings; returns the call list."""
    calls: list[int] = []
    original = Encoder.encode

    def counted(self, texts, *args, **kwargs):
        if fail_after is not None and len(calls) == fail_after:
            raise KeyboardInterrupt
        calls.append(len(texts))
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(Encoder, "encode", counted)
    return calls


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted ``helpers embed`` run: its config, vectors and number of shards."""
    config = embed_config(tmp_path_factory.mktemp("whole"))
    with pytest.MonkeyPatch.context() as m:
        calls = count_encodes(m)
        assert main(embed_args(config)) == 0
        vectors = cached_vectors(config, m)
    assert shard_files(config) == []  # the shards became the final cache files
    return config, vectors, len(calls)


@pytest.mark.slow
def test_embed_fills_the_cache_the_chapters_read(uninterrupted):
    from helpers.config import load_config
    from helpers.corpus import corpus_splits
    from helpers.embeddings import embed
    from helpers.models import role_encoder

    config, (train, test), n_shards = uninterrupted
    assert n_shards == -(-len(train) // SHARD) + -(-len(test) // SHARD)
    assert train.dtype == np.float32 and train.shape[1] == test.shape[1] == 384
    cfg = load_config(config)
    splits = corpus_splits(cfg)
    encoder = role_encoder(cfg, "contrastive", splits)
    for name, vectors in (("train", train), ("test", test)):
        whole = embed(encoder, splits[name]["text"], batch_size=cfg.encoding.batch_size)
        np.testing.assert_allclose(vectors, whole, atol=1e-5, rtol=0)  # batching's rounding only


KILL_AFTER_TWO_SHARDS = textwrap.dedent(
    """
    import os, signal, sys
    from helpers.cli import main
    from helpers.encoders import Encoder

    original, calls = Encoder.encode, []

    def encode(self, texts, *args, **kwargs):
        if len(calls) == 2:  # two shards are saved: die as a kill would, with no cleanup
            os.kill(os.getpid(), signal.SIGKILL)
        calls.append(len(texts))
        return original(self, texts, *args, **kwargs)

    Encoder.encode = encode
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_killed_embed_resumes_with_the_same_vectors(tmp_path, monkeypatch, uninterrupted):
    _, (train, test), n_shards = uninterrupted
    config = embed_config(tmp_path)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_TWO_SHARDS, *embed_args(config)],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(shard_files(config)) == 2
    assert not list((tmp_path / "results" / "cache").glob("sentences-*.npz"))

    calls = count_encodes(monkeypatch)
    assert main(embed_args(config)) == 0
    assert len(calls) == n_shards - 2  # the two finished shards were reused
    resumed_train, resumed_test = cached_vectors(config, monkeypatch)
    np.testing.assert_allclose(resumed_train, train, atol=1e-6, rtol=0)
    np.testing.assert_allclose(resumed_test, test, atol=1e-6, rtol=0)
    assert shard_files(config) == []


@pytest.mark.slow
def test_corrupt_shard_is_recomputed_with_a_warning(tmp_path, monkeypatch, caplog, uninterrupted):
    _, (train, test), n_shards = uninterrupted
    config = embed_config(tmp_path)
    with monkeypatch.context() as m:
        count_encodes(m, fail_after=3)
        assert main(embed_args(config)) == 130  # interrupted after three shards
    saved = shard_files(config)
    assert len(saved) == 3
    saved[1].write_bytes(saved[1].read_bytes()[:-40])  # truncate one of them

    calls = count_encodes(monkeypatch)
    assert main(embed_args(config)) == 0
    assert len(calls) == n_shards - 2  # the corrupt one is encoded again
    assert any(
        "corrupt embedding shard" in r.getMessage() and saved[1].name in r.getMessage()
        for r in caplog.records
    )
    resumed_train, resumed_test = cached_vectors(config, monkeypatch)
    np.testing.assert_allclose(resumed_train, train, atol=1e-6, rtol=0)
    np.testing.assert_allclose(resumed_test, test, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_embed_in_two_processes_gives_the_same_vectors(tmp_path, monkeypatch, uninterrupted):
    _, (train, test), _ = uninterrupted
    from sentence_transformers import SentenceTransformer

    config = embed_config(tmp_path)
    pools = []
    start = SentenceTransformer.start_multi_process_pool

    def spy(self, devices):
        pools.append(devices)
        return start(self, devices)

    monkeypatch.setattr(SentenceTransformer, "start_multi_process_pool", spy)
    assert main(embed_args(config, "--processes", "2")) == 0
    assert pools == [["cpu", "cpu"]]  # one pool of two workers for both splits
    pooled_train, pooled_test = cached_vectors(config, monkeypatch)
    np.testing.assert_allclose(pooled_train, train, atol=1e-5, rtol=0)
    np.testing.assert_allclose(pooled_test, test, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_embed_corpus_ends_in_the_cache_embed_reads(tmp_path, monkeypatch):
    """What `helpers embed` runs leaves embed's cache files, which a second run reuses."""
    from helpers.analysis import embed_corpus
    from helpers.config import Config
    from helpers.embeddings import cache_path, embed
    from helpers.encoders import load_encoder

    texts = [f"Sentence number {i} about {'cells' if i % 2 else 'forces'}." for i in range(17)]
    splits = {"train": {"text": texts[:11]}, "test": {"text": texts[11:]}}  # 3 and 2 shards
    cfg = Config.model_validate({"paths": {"data_dir": tmp_path, "results_dir": tmp_path}})
    encoder = load_encoder("packaged:all-MiniLM-L6-v2")
    finals = {
        name: cache_path(cfg.cache_dir, "sentences", encoder, splits[name]["text"])
        for name in splits
    }
    sharded = embed_corpus(cfg, encoder, splits, shard_size=SHARD)
    for name, vectors in (("train", sharded.train), ("test", sharded.test)):
        assert vectors.shape == (len(splits[name]["text"]), 384) and vectors.dtype == np.float32
        assert finals[name].is_file()
    assert list(tmp_path.iterdir()) == [cfg.cache_dir]
    assert sorted(cfg.cache_dir.iterdir()) == sorted(finals.values())  # no shard folder is left
    refuse_encoding(monkeypatch)
    for name, vectors in (("train", sharded.train), ("test", sharded.test)):
        np.testing.assert_array_equal(
            embed(encoder, splits[name]["text"], cache_dir=cfg.cache_dir), vectors
        )
    again = embed_corpus(cfg, encoder, splits, shard_size=SHARD)
    np.testing.assert_array_equal(again.train, sharded.train)
    np.testing.assert_array_equal(again.test, sharded.test)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--shard-size", "0"], "--shard-size must be a whole number of at least 1, got 0"),
        (["--devices", "gpu,cpu"], "unknown device 'gpu'"),
        (["--devices", ""], "unknown device ''"),
    ],
)
def test_embed_refuses_bad_arguments(tmp_path, capsys, extra, message):
    config = embed_config(tmp_path)
    assert main([*embed_args(config), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results" / "cache").exists()
