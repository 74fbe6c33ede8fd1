"""Encode texts into float32 arrays, with a verified on-disk cache.

The cache key is a hash of the texts (in order) and of the encoder's identity: its weights,
its other files that change the vectors (configuration, tokenizer, sentence-transformers
modules), pooling, normalisation and maximum length. Change any of them and the vectors
are recomputed. Each file also records the hash of its texts and of the encoder
(:func:`cache_stamp`). Files are written atomically and checked on load; a truncated,
corrupt or foreign file (other texts, another model) is reported, deleted and recomputed,
never used. Something that is not a file where a cache file belongs (a folder, a FIFO), or
a cache folder that cannot be written, stops with a :class:`helpers.storage.CacheError`
naming it.

A large corpus is embedded in resumable shards by :mod:`helpers.shards`, into the same
cache files :func:`embed` reads.

Example
-------
>>> from helpers.encoders import load_encoder
>>> enc = load_encoder("packaged:all-MiniLM-L6-v2")                      # doctest: +SKIP
>>> X = embed(enc, ["Cells divide.", "Rome fell."], cache_dir="results/cache")  # doctest: +SKIP
>>> X.shape, X.dtype                                                      # doctest: +SKIP
((2, 384), dtype('float32'))
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .encoders import Encoder
from .storage import (
    CorruptCacheError,
    load_arrays,
    refuse_odd_cache_file,
    save_arrays,
    settings_key,
    writable_folder,
)

log = logging.getLogger(__name__)


def texts_hash(texts: Sequence[str]) -> str:
    """SHA-256 over the texts in order (a length prefix keeps boundaries unambiguous)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def cache_path(cache_dir: Path, kind: str, encoder: Encoder, texts: Sequence[str]) -> Path:
    key = settings_key({"kind": kind, "texts": texts_hash(texts), **encoder.cache_identity})
    return Path(cache_dir) / f"{kind}-{key}.npz"


def cache_stamp(kind: str, encoder: Encoder, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """What a cache file records about its rows: the hash of their texts and of the encoder.

    Saved beside the vectors and compared on load, so a file holding other texts' or
    another model's vectors is never used, whatever its name.
    """
    encoder_key = settings_key({"kind": kind, **encoder.cache_identity})
    return {"texts_sha256": np.array(texts_hash(texts)), "encoder_key": np.array(encoder_key)}


def check_stamp(path: Path, arrays: dict, stamp: dict[str, np.ndarray]) -> None:
    """Raise :class:`CorruptCacheError` unless ``arrays`` carry ``stamp`` (see :func:`cache_stamp`)."""
    for name, what in (("texts_sha256", "texts"), ("encoder_key", "encoder")):
        if name not in arrays:
            raise CorruptCacheError(
                f"{path}: does not record its {what} (an older or foreign file)"
            )
        if str(arrays[name]) != str(stamp[name]):
            raise CorruptCacheError(f"{path}: holds the vectors of other {what}")


def load_verified(path: Path, check, warning: str) -> np.ndarray | None:
    """``check(arrays)`` of a cache file; ``None`` if it is absent, or unsound (then deleted).

    Something other than a regular file at ``path`` raises
    :class:`helpers.storage.CacheError` (it is never opened: a FIFO would block).
    """
    refuse_odd_cache_file(path)
    if not path.exists():
        return None
    try:
        return check(load_arrays(path))  # load_arrays verifies the checksum
    except (CorruptCacheError, KeyError) as exc:
        log.warning(warning, exc)
        with contextlib.suppress(OSError):  # e.g. a read-only folder: saving says so clearly
            path.unlink(missing_ok=True)
        return None


def load_cached(
    path: Path, n_rows: int, axis: int, stamp: dict[str, np.ndarray]
) -> np.ndarray | None:
    """The vectors of a cache file holding ``n_rows`` along ``axis`` and carrying ``stamp``
    (:func:`cache_stamp`), or ``None`` (see :func:`load_verified`)."""

    def check(arrays):
        vectors = arrays["vectors"]
        if vectors.shape[axis] != n_rows:
            raise CorruptCacheError(f"{path}: holds {vectors.shape[axis]} rows, expected {n_rows}")
        check_stamp(path, arrays, stamp)
        return vectors

    return load_verified(path, check, "ignoring corrupt embedding cache and recomputing: %s")


def cached(
    cache_dir: str | Path | None,
    kind: str,
    encoder: Encoder,
    texts: Sequence[str],
    axis: int,
    rows: int,
) -> tuple[Path | None, dict[str, np.ndarray], np.ndarray | None]:
    """Where vectors of ``kind`` are cached, their stamp, and the cached vectors if sound.

    On a miss the cache folder must be writable (:func:`helpers.storage.writable_folder`),
    checked before any encoding whose result could not be saved; a read-only cache that
    holds the answer is still read.
    """
    stamp = cache_stamp(kind, encoder, texts)
    if not cache_dir:
        return None, stamp, None
    path = cache_path(Path(cache_dir), kind, encoder, texts)
    hit = load_cached(path, rows, axis, stamp)
    if hit is None:
        writable_folder(path.parent)
    return path, stamp, hit


def count_truncated(encoder: Encoder, texts: Sequence[str]) -> int:
    """How many texts exceed the encoder's token window (they are truncated when encoded)."""
    tok = encoder.model.tokenizer
    lengths = [
        len(ids) for ids in tok(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
    ]
    return int(sum(n > encoder.max_length for n in lengths))


def report_truncation(encoder: Encoder, texts: Sequence[str]) -> None:
    """Warn when texts are longer than the encoder's window (:func:`count_truncated`)."""
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
    path, stamp, hit = cached(cache_dir, "sentences", encoder, texts, axis=0, rows=len(texts))
    if hit is not None:
        return hit
    report_truncation(encoder, texts)
    vectors = encoder.encode(texts, batch_size=batch_size, progress=progress).astype(
        np.float32, copy=False
    )
    if path is not None:
        save_arrays(path, vectors=vectors, **stamp)
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
    path, stamp, hit = cached(cache_dir, "layers", encoder, texts, axis=1, rows=len(texts))
    if hit is not None:
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
        save_arrays(path, vectors=result, **stamp)
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
    path, stamp, hit = cached(cache_dir, "tokens", encoder, key_texts, axis=1, rows=n_tokens)
    if hit is not None:
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
        save_arrays(path, vectors=result, **stamp)
    return result
