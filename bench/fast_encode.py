"""Faster encoding (``encoding.precision``): speed and fidelity of bf16 and int8 against fp32.

One process, one model (the ``contrastive`` role of the configuration, all-MiniLM-L6-v2 by
default), the chunks of the configured corpus (train then test split, repeated to
``--chunks`` when the corpus holds fewer). fp32 is plain ``SentenceTransformer.encode``;
each precision is :meth:`helpers.encoders.Encoder.encode` with that precision. Each is
warmed up first (for bf16 this compiles; the seconds are printed), then the runs alternate
between the precisions, ``--repeats`` rounds, and the best time of each counts, so a load
that comes and goes on the machine hits all of them alike.

Fidelity is the smallest cosine between a vector and its fp32 twin. ``metrics_equal_2dp``
says whether every figure of :func:`helpers.geometry.geometry_report` on the train/test
splits is the same as fp32's once rounded to two decimals. Prints
``RESULT speedup``, ``RESULT fidelity`` and ``RESULT metrics_equal_2dp`` for the default
fast precision (bf16), and the same with ``_int8`` for int8.

    .venv/bin/python bench/fast_encode.py [--chunks 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from helpers.config import load_config
from helpers.corpus import corpus_splits
from helpers.geometry import geometry_report
from helpers.models import role_encoder

FAST = "bf16"  # the default fast precision; int8 is the lossy one


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest cosine between matching rows of ``a`` and ``b``."""
    dots = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return float(dots.min())


def with_precision(cfg, precision: str):
    """``cfg`` with ``encoding.precision`` set, as a config file would set it."""
    return cfg.model_copy(
        update={"encoding": cfg.encoding.model_copy(update={"precision": precision})}
    )


def book_metrics(vectors: np.ndarray, splits) -> dict[str, float]:
    """The geometry report of the train/test vectors (train rows first)."""
    n_train = len(splits["train"])
    report = geometry_report(
        vectors[:n_train],
        list(splits["train"]["subject"]),
        vectors[n_train : n_train + len(splits["test"])],
        list(splits["test"]["subject"]),
    ).as_dict()
    return {k: float(v) for k, v in report.items()}


def differing_at_2dp(reference: dict[str, float], other: dict[str, float]) -> dict[str, str]:
    """The metrics whose values differ once rounded to two decimals, as ``"fp32 -> other"``.

    >>> differing_at_2dp({"a": 0.934, "b": 0.5}, {"a": 0.936, "b": 0.501})
    {'a': '0.9340 -> 0.9360'}
    """
    return {
        k: f"{reference[k]:.4f} -> {v:.4f}"
        for k, v in other.items()
        if round(v, 2) != round(reference[k], 2)
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config()
    splits = corpus_splits(cfg)
    corpus = list(splits["train"]["text"]) + list(splits["test"]["text"])
    texts = [corpus[i % len(corpus)] for i in range(max(args.chunks, len(corpus)))]
    batch = cfg.encoding.batch_size
    base = role_encoder(cfg, "contrastive", splits)
    encoders = {
        p: role_encoder(with_precision(cfg, p), "contrastive", splits) for p in (FAST, "int8")
    }
    runs = {"fp32": lambda: base.model.encode(texts, batch_size=batch, convert_to_numpy=True)}
    for precision, enc in encoders.items():
        runs[precision] = lambda enc=enc: enc.encode(texts, batch_size=batch)
    print(f"{base.name}, {len(texts)} chunks ({len(corpus)} distinct), batch size {batch}")

    vectors = {}
    for name, run in runs.items():
        started = time.perf_counter()
        vectors[name] = np.asarray(run(), dtype=np.float32)
        print(f"  warm-up {name}: {time.perf_counter() - started:.1f} s")
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)

    reference = book_metrics(vectors["fp32"], splits)
    for name in runs:
        differ = differing_at_2dp(reference, book_metrics(vectors[name], splits))
        speedup = best["fp32"] / best[name]
        fidelity = min_cosine(vectors[name], vectors["fp32"])
        print(
            f"  {name}: best {best[name]:.2f} s ({len(texts) / best[name]:.1f} chunks/s), "
            f"speed-up {speedup:.2f}, min cosine {fidelity:.6f}, "
            f"metrics differing at 2 decimals: {differ or 'none'}"
        )
        if name != "fp32":
            suffix = "" if name == FAST else f"_{name}"
            print(f"RESULT speedup{suffix} {speedup:.2f}")
            print(f"RESULT fidelity{suffix} {fidelity:.6f}")
            print(f"RESULT metrics_equal_2dp{suffix} {int(not differ)}")


if __name__ == "__main__":
    main()
