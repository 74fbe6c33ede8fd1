"""Throughput of helpers.embeddings.embed (cache off) relative to SentenceTransformer.encode.

Both sides encode the same texts with the same model object in this process, alternating
runs to cancel drift. Prints per-corpus results and ends with one line
`RESULT embed_overhead <ratio>` (helpers throughput / direct throughput; goal >= 0.95).

    .venv/bin/python bench/embed_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from helpers.config import load_config
from helpers.corpus import load_corpus
from helpers.embeddings import embed
from helpers.encoders import load_encoder

ROOT = Path(__file__).resolve().parents[1]
OPENSTAX = ROOT.parent / "shared" / "corpora" / "openstax"


def measure(texts: list[str], repeats: int) -> float:
    cfg = load_config()
    enc = load_encoder("contrastive", cfg)
    model = enc.model
    embed(enc, texts[:32])  # warm-up: weights, tokenizer, threads
    direct, ours = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        model.encode(texts, batch_size=cfg.encoding.batch_size, convert_to_numpy=True)
        direct.append(len(texts) / (time.perf_counter() - t))
        t = time.perf_counter()
        embed(enc, texts, cache_dir=None, batch_size=cfg.encoding.batch_size)
        ours.append(len(texts) / (time.perf_counter() - t))
    d, o = statistics.median(direct), statistics.median(ours)
    print(
        f"  {len(texts)} texts: direct {d:.1f} texts/s, helpers {o:.1f} texts/s, ratio {o / d:.3f}"
    )
    return o / d


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config()
    ratios = []
    print("default corpus:")
    ratios.append(measure(list(load_corpus(cfg.paths.data_dir)["text"]), args.repeats))
    if OPENSTAX.exists():
        print("openstax, 3,000 chunks:")
        texts = list(load_corpus(OPENSTAX, max_per_subject=600)["text"])[:3000]
        ratios.append(measure(texts, max(1, args.repeats - 1)))
    else:
        print("openstax sample not found: skipped")
    print(f"RESULT embed_overhead {min(ratios):.3f}")


if __name__ == "__main__":
    main()
