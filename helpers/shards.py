"""Embed a large corpus in resumable shards, in this process or over worker processes.

Each shard of ``shard_size`` texts is saved (verified, atomically) as soon as it is
encoded, so a killed run resumes where it stopped; at the end the shards become the cache
file :func:`helpers.embeddings.embed` reads for the same encoder and texts, so the chapters
reuse it. ``python -m helpers embed`` runs this through
:func:`helpers.analysis.embed_corpus`.

Example
-------
>>> job = plan_shards(enc, texts, cache_dir="results/cache", shard_size=500)  # doctest: +SKIP
>>> with shard_encoder(enc) as encode, shard_progress([job]) as bar:        # doctest: +SKIP
...     X = encode_shards(job, encode, bar)
>>> np.array_equal(X, embed(enc, texts, cache_dir="results/cache"))       # doctest: +SKIP
True
"""

from __future__ import annotations

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

from .embeddings import (
    cache_path,
    cache_stamp,
    check_stamp,
    load_cached,
    load_verified,
    report_truncation,
)
from .encoders import Encoder
from .names import DEFAULT_SHARD_SIZE
from .storage import CacheError, CorruptCacheError, save_arrays, writable_folder

log = logging.getLogger(__name__)


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
    ``.npz`` per ``(start, stop)``, holding the vectors and the stamp of their texts
    (:func:`helpers.embeddings.cache_stamp`); the final file carries the stamp of all texts.
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

    def stamp(self, index: int | None = None) -> dict[str, np.ndarray]:
        """The stamp of shard ``index``, or of all the texts (the final file)."""
        texts = self.texts if index is None else self.shard_texts(index)
        return cache_stamp(SHARD_KIND, self.encoder, texts)

    @property
    def rows_done(self) -> int:
        return len(self.texts) - sum(len(self.shard_texts(i)) for i in self.todo)


SHARD_KIND = "sentences"  # shards become the cache file of helpers.embeddings.embed


def _load_shard(path: Path, encoder: Encoder, texts: list[str]) -> np.ndarray | None:
    """A shard's vectors if its file is sound and holds ``texts``; else ``None`` (and it is deleted)."""

    def check(arrays):
        vectors = arrays["vectors"]
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise CorruptCacheError(
                f"{path}: holds shape {vectors.shape}, expected {len(texts)} rows"
            )
        check_stamp(path, arrays, cache_stamp(SHARD_KIND, encoder, texts))
        return vectors

    return load_verified(path, check, "recomputing a corrupt embedding shard: %s")


def _check_shard_folder(folder: Path) -> None:
    """Raise :class:`helpers.storage.CacheError` when a file sits where the shard folder belongs."""
    if folder.exists() and not folder.is_dir():
        raise CacheError(
            f"{folder}: is a file, where a folder of embedding shards belongs; remove it "
            "(the shards are recomputed)"
        )


def plan_shards(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    cache_dir: str | Path,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> ShardedTexts:
    """What is left to embed of ``texts``: the final cache file, or the sound shards on disk.

    The final file is :func:`helpers.embeddings.embed`'s cache file for the same encoder and texts.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to embed: the split is empty")
    final = cache_path(Path(cache_dir), SHARD_KIND, encoder, texts)
    job = ShardedTexts(encoder, texts, final, shard_bounds(len(texts), shard_size))
    job.cached = load_cached(final, len(texts), axis=0, stamp=job.stamp())
    if job.cached is not None:
        shutil.rmtree(job.folder, ignore_errors=True)  # killed after the final save
        return job
    writable_folder(final.parent)  # before any encoding whose result could not be saved
    _check_shard_folder(job.folder)
    for i in range(len(job.bounds)):
        vectors = _load_shard(job.shard_path(i), encoder, job.shard_texts(i))
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
        report_truncation(job.encoder, job.texts)
    for i in job.todo:
        texts = job.shard_texts(i)
        vectors = encode(texts)
        save_arrays(job.shard_path(i), vectors=vectors, **job.stamp(i))
        job.done[i] = vectors
        if bar is not None:
            bar.update(len(texts))
    result = np.concatenate([job.done[i] for i in range(len(job.bounds))])
    save_arrays(job.final, vectors=result, **job.stamp())
    shutil.rmtree(job.folder, ignore_errors=True)
    return result
