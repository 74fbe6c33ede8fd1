"""Encode texts into float32 arrays, with a verified on-disk cache.

The cache key is a hash of the texts (in order), the model's weights fingerprint, pooling,
normalisation and maximum length: change any of them and the vectors are recomputed.
Files are written atomically and checked on load; a truncated or corrupt file is
reported, deleted and recomputed, never used.

A large corpus is embedded in shards (:func:`embed_in_shards`, ``python -m helpers embed``):
each shard of ``shard_size`` texts is saved as soon as it is encoded, so a killed run
resumes where it stopped, and the shards end as the same cache file :func:`embed` reads.

Example
-------
>>> from helpers.encoders import load_encoder
>>> enc = load_encoder("packaged:all-MiniLM-L6-v2")                      # doctest: +SKIP
>>> X = embed(enc, ["Cells divide.", "Rome fell."], cache_dir="results/cache")  # doctest: +SKIP
>>> X.shape, X.dtype                                                      # doctest: +SKIP
((2, 384), dtype('float32'))
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .encoders import Encoder
from .storage import CorruptCacheError, load_arrays, save_arrays, settings_key

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 1000


def texts_hash(texts: Sequence[str]) -> str:
    """SHA-256 over the texts in order (a length prefix keeps boundaries unambiguous)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def cache_path(cache_dir: Path, kind: str, encoder: Encoder, texts: Sequence[str]) -> Path:
    key = settings_key({"kind": kind, "texts": texts_hash(texts), **encoder.identity})
    return Path(cache_dir) / f"{kind}-{key}.npz"


def _load_verified(path: Path, check, warning: str) -> np.ndarray | None:
    """``check(arrays)`` of a cache file; ``None`` if it is absent, or unsound (then deleted)."""
    if not path.exists():
        return None
    try:
        return check(load_arrays(path))  # load_arrays verifies the checksum
    except (CorruptCacheError, KeyError) as exc:
        log.warning(warning, exc)
        path.unlink(missing_ok=True)
        return None


def _load_cached(path: Path, n_rows: int, axis: int) -> np.ndarray | None:
    def check(arrays):
        vectors = arrays["vectors"]
        if vectors.shape[axis] != n_rows:
            raise CorruptCacheError(f"{path}: holds {vectors.shape[axis]} rows, expected {n_rows}")
        return vectors

    return _load_verified(path, check, "ignoring corrupt embedding cache and recomputing: %s")


def count_truncated(encoder: Encoder, texts: Sequence[str]) -> int:
    """How many texts exceed the encoder's token window (they are truncated when encoded)."""
    tok = encoder.model.tokenizer
    lengths = [
        len(ids) for ids in tok(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
    ]
    return int(sum(n > encoder.max_length for n in lengths))


def _report_truncation(encoder: Encoder, texts: Sequence[str]) -> None:
    n = count_truncated(encoder, texts)
    if n:
        log.warning(
            "%d of %d texts are longer than max_length=%d tokens for %s and were truncated",
            n,
            len(texts),
            encoder.max_length,
            encoder.name,
        )


def embed(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """Sentence embeddings of ``texts`` as a float32 array aligned with ``texts``.

    ``SentenceTransformer.encode`` batches and sorts by length internally (so padding is
    minimal) and restores the input order. With ``cache_dir`` the result is cached.
    """
    texts = list(texts)
    path = cache_path(Path(cache_dir), "sentences", encoder, texts) if cache_dir else None
    if path is not None and (hit := _load_cached(path, len(texts), axis=0)) is not None:
        return hit
    _report_truncation(encoder, texts)
    vectors = encoder.encode(texts, batch_size=batch_size, progress=progress).astype(
        np.float32, copy=False
    )
    if path is not None:
        save_arrays(path, vectors=vectors)
    return vectors


@torch.inference_mode()
def layer_embeddings(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Mean-pooled sentence vectors from every hidden layer: shape ``(layers + 1, n, dim)``.

    Layer 0 is the embedding layer. Vectors are mean-pooled over real tokens (padding
    excluded) and unit-normalised if the encoder normalises.
    """
    texts = list(texts)
    path = cache_path(Path(cache_dir), "layers", encoder, texts) if cache_dir else None
    if path is not None and (hit := _load_cached(path, len(texts), axis=1)) is not None:
        return hit
    st = encoder.model
    transformer = st[0].auto_model
    tok = st.tokenizer
    order = np.argsort([-len(t) for t in texts], kind="stable")
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = [texts[i] for i in order[start : start + batch_size]]
        enc = tok(
            batch, padding=True, truncation=True, max_length=encoder.max_length, return_tensors="pt"
        )
        out = transformer(**enc, output_hidden_states=True)
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = [(h * mask).sum(1) / mask.sum(1) for h in out.hidden_states]
        chunks.append(torch.stack(pooled).numpy())
    stacked = np.concatenate(chunks, axis=1)
    result = np.empty_like(stacked)
    result[:, order] = stacked
    if encoder.normalize:
        result /= np.linalg.norm(result, axis=-1, keepdims=True)
    result = result.astype(np.float32)
    if path is not None:
        save_arrays(path, vectors=result)
    return result


@torch.inference_mode()
def token_layer_embeddings(
    encoder: Encoder,
    texts: Sequence[str],
    n_tokens: int = 1000,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Vectors of ``n_tokens`` random tokens in random texts, from every hidden layer.

    Shape ``(layers + 1, n_tokens, dim)``. Each sample is a (text, position) pair drawn
    uniformly, with ``[CLS]``, ``[SEP]`` and padding excluded: token representations in
    their contexts, as Ethayarajh (2019) sampled them.
    """
    texts = list(texts)
    key_texts = [f"tokens:{n_tokens}:{seed}", *texts]
    path = cache_path(Path(cache_dir), "tokens", encoder, key_texts) if cache_dir else None
    if path is not None and (hit := _load_cached(path, n_tokens, axis=1)) is not None:
        return hit
    st = encoder.model
    tok = st.tokenizer
    lengths = [
        len(ids) for ids in tok(texts, truncation=True, max_length=encoder.max_length)["input_ids"]
    ]
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(texts), size=n_tokens)
    # positions 1 .. length-2: between [CLS] and [SEP]
    where = np.array([1 + rng.integers(0, max(lengths[t] - 2, 1)) for t in which])
    result = None
    for start in range(0, len(texts), batch_size):
        batch = list(range(start, min(start + batch_size, len(texts))))
        wanted = np.flatnonzero((which >= batch[0]) & (which <= batch[-1]))
        if len(wanted) == 0:
            continue
        enc = tok(
            [texts[i] for i in batch],
            padding=True,
            truncation=True,
            max_length=encoder.max_length,
            return_tensors="pt",
        )
        hidden = st[0].auto_model(**enc, output_hidden_states=True).hidden_states
        rows, cols = which[wanted] - batch[0], where[wanted]
        picked = torch.stack([h[rows, cols] for h in hidden]).float().numpy()
        if result is None:
            result = np.empty((len(hidden), n_tokens, picked.shape[-1]), dtype=np.float32)
        result[:, wanted] = picked
    if path is not None:
        save_arrays(path, vectors=result)
    return result


# --- large corpora: resumable shards ---------------------------------------------------------


def shard_bounds(n_texts: int, shard_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive shards of at most ``shard_size`` texts.

    >>> shard_bounds(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    return [(start, min(start + shard_size, n_texts)) for start in range(0, n_texts, shard_size)]


def parse_devices(text: str) -> list[str]:
    """Devices for multi-process encoding from a comma-separated list, one worker each.

    >>> parse_devices("cpu, cpu")
    ['cpu', 'cpu']
    """
    devices = [d.strip() for d in text.split(",")]
    for device in devices:
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(
                f"unknown device {device!r} in {text!r}; name devices as torch does, "
                "e.g. 'cpu,cpu' or 'cuda:0,cuda:1'"
            ) from None
    return devices


@dataclass
class ShardedTexts:
    """Texts to embed in shards: the cache file they end in and the shards done so far.

    Shards live in a folder beside the final file (``<final>.shards/``), one verified
    ``.npz`` per ``(start, stop)``, holding the vectors and the hash of their texts.
    """

    encoder: Encoder
    texts: list[str]
    final: Path
    bounds: list[tuple[int, int]]
    done: dict[int, np.ndarray] = field(default_factory=dict)
    cached: np.ndarray | None = None  # the final file, when it was already there

    @property
    def folder(self) -> Path:
        return self.final.with_suffix(".shards")

    def shard_path(self, index: int) -> Path:
        start, stop = self.bounds[index]
        return self.folder / f"{start:09d}-{stop:09d}.npz"

    def shard_texts(self, index: int) -> list[str]:
        start, stop = self.bounds[index]
        return self.texts[start:stop]

    @property
    def todo(self) -> list[int]:
        """Indices of the shards still to encode."""
        if self.cached is not None:
            return []
        return [i for i in range(len(self.bounds)) if i not in self.done]

    @property
    def rows_done(self) -> int:
        return len(self.texts) - sum(len(self.shard_texts(i)) for i in self.todo)


def _load_shard(path: Path, texts: list[str]) -> np.ndarray | None:
    """A shard's vectors if its file is sound and holds ``texts``; else ``None`` (and it is deleted)."""

    def check(arrays):
        vectors = arrays["vectors"]
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise CorruptCacheError(
                f"{path}: holds shape {vectors.shape}, expected {len(texts)} rows"
            )
        if str(arrays["texts_sha256"]) != texts_hash(texts):
            raise CorruptCacheError(f"{path}: holds the vectors of other texts")
        return vectors

    return _load_verified(path, check, "recomputing a corrupt embedding shard: %s")


def plan_shards(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    cache_dir: str | Path,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> ShardedTexts:
    """What is left to embed of ``texts``: the final cache file, or the sound shards on disk.

    The final file is :func:`embed`'s cache file for the same encoder and texts.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to embed: the split is empty")
    final = cache_path(Path(cache_dir), "sentences", encoder, texts)
    job = ShardedTexts(encoder, texts, final, shard_bounds(len(texts), shard_size))
    job.cached = _load_cached(final, len(texts), axis=0)
    if job.cached is not None:
        shutil.rmtree(job.folder, ignore_errors=True)  # killed after the final save
        return job
    for i in range(len(job.bounds)):
        vectors = _load_shard(job.shard_path(i), job.shard_texts(i))
        if vectors is not None:
            job.done[i] = vectors
    if job.done:
        log.info("resuming %s: %d of %d shards done", job.folder, len(job.done), len(job.bounds))
    return job


@contextmanager
def _worker_threads(devices: list[str]) -> Iterator[None]:
    """Give each CPU worker its share of the cores, unless ``OMP_NUM_THREADS`` is set.

    Spawned workers read it when torch starts; without it each would use every core.
    """
    n_cpu = sum(torch.device(d).type == "cpu" for d in devices)
    if not n_cpu or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ["OMP_NUM_THREADS"] = str(max(1, (cores or 1) // n_cpu))
    try:
        yield
    finally:
        del os.environ["OMP_NUM_THREADS"]


@contextmanager
def shard_encoder(
    encoder: Encoder, *, batch_size: int = 32, devices: list[str] | None = None
) -> Iterator[Callable[[list[str]], np.ndarray]]:
    """Yield ``encode(texts) -> float32 array``, in this process or over worker processes.

    With ``devices`` (e.g. ``["cpu", "cpu"]`` or ``["cuda:0", "cuda:1"]``) it uses
    sentence-transformers' multi-process pool (``start_multi_process_pool`` and
    ``encode(..., pool=...)``), one worker per device, started on first use and stopped on
    exit.
    """
    if devices and encoder.precision != "fp32":
        # the worker pool runs the float32 model: its vectors must not be cached as bf16/int8
        raise ValueError(
            f"worker processes encode in fp32, but encoding.precision is "
            f"{encoder.precision!r}: set encoding.precision: fp32, or drop --processes/--devices"
        )
    pool = None

    def encode(texts: list[str]) -> np.ndarray:
        nonlocal pool
        if not devices:
            return np.asarray(encoder.encode(texts, batch_size=batch_size), dtype=np.float32)
        if pool is None:
            with _worker_threads(devices):
                pool = encoder.model.start_multi_process_pool(list(devices))
        vectors = encoder.model.encode(
            texts, batch_size=batch_size, pool=pool, show_progress_bar=False, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)

    try:
        yield encode
    finally:
        if pool is not None:
            encoder.model.stop_multi_process_pool(pool)


def shard_progress(jobs: Iterable[ShardedTexts], enabled: bool = True) -> tqdm:
    """A progress bar over the texts of ``jobs`` (chunks per second, time left).

    It starts at the texts already done, so the rate counts this run's work only.
    """
    jobs = list(jobs)
    return tqdm(
        total=sum(len(job.texts) for job in jobs),
        initial=sum(job.rows_done for job in jobs),
        unit=" chunks",
        desc="embedding",
        disable=not enabled,
    )


def encode_shards(
    job: ShardedTexts, encode: Callable[[list[str]], np.ndarray], bar: tqdm | None = None
) -> np.ndarray:
    """Encode the shards ``job`` still needs, saving each at once; return all the vectors.

    At the end the shards become the final cache file (written atomically) and their
    folder is removed.
    """
    if job.cached is not None:
        return job.cached
    if job.todo:
        _report_truncation(job.encoder, job.texts)
    for i in job.todo:
        texts = job.shard_texts(i)
        vectors = encode(texts)
        save_arrays(job.shard_path(i), vectors=vectors, texts_sha256=np.array(texts_hash(texts)))
        job.done[i] = vectors
        if bar is not None:
            bar.update(len(texts))
    result = np.concatenate([job.done[i] for i in range(len(job.bounds))])
    save_arrays(job.final, vectors=result)
    shutil.rmtree(job.folder, ignore_errors=True)
    return result


def embed_in_shards(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    cache_dir: str | Path,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = 32,
    devices: list[str] | None = None,
    progress: bool = False,
) -> np.ndarray:
    """:func:`embed` with a cache, ``shard_size`` texts at a time, resuming a killed run.

    Finished shards are verified (checksum, shape, texts) and reused; a corrupt one is
    recomputed with a warning. The result is :func:`embed`'s cache file, so ``embed`` of
    the same encoder and texts is then a cache hit. ``devices``: see :func:`shard_encoder`.

    >>> X = embed_in_shards(enc, texts, cache_dir="results/cache")     # doctest: +SKIP
    >>> np.array_equal(X, embed(enc, texts, cache_dir="results/cache"))  # doctest: +SKIP
    True
    """
    job = plan_shards(encoder, texts, cache_dir=cache_dir, shard_size=shard_size)
    with (
        shard_encoder(encoder, batch_size=batch_size, devices=devices) as encode,
        shard_progress([job], progress) as bar,
    ):
        return encode_shards(job, encode, bar)
