"""A cache belongs to exactly one model and one set of texts, and a damaged cache never hangs or crashes.

* The cache key covers every file of the model folder that changes the vectors, not only
  the weights: the same weights with a tokenizer that no longer lower-cases get another
  key and other vectors.
* Each cache file records the hash of its texts and of its encoder; a file re-saved with a
  valid checksum but other rows, or another texts' file put in its place, is refused
  (with a warning) and recomputed.
* A folder or FIFO in place of a cache file or shard, a file in place of ``cache/`` or of
  a ``*.shards`` folder, and a cache folder that cannot be written each end the command
  with exit code 2 and one line naming the path: never a hang, never a traceback, never
  "recomputing" and then a crash.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import write_config
from tinymodel import edit_json, tiny_model

import helpers.storage as storage
from helpers.cli import main
from helpers.config import load_config
from helpers.corpus import corpus_splits
from helpers.embeddings import cache_path, embed
from helpers.encoders import load_encoder
from helpers.model_folders import model_files_fingerprint
from helpers.shards import encode_shards, plan_shards
from helpers.storage import CacheError, load_arrays, save_arrays

TEXTS = ["Cells DIVIDE by Mitosis.", "The Roman EMPIRE fell.", "Light BENDS at a boundary."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny") / "model")


class Hung(Exception):
    """Raised in a command that ran out of time (not an OSError: nothing may take it for a bad file)."""


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""

    def alarm(signum, frame):
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- one model, one set of texts ---------------------------------------------------------


def test_tokenizer_change_with_the_same_weights_changes_key_and_vectors(tiny, tmp_path):
    cased = shutil.copytree(tiny, tmp_path / "cased")
    edit_json(cased / "tokenizer_config.json", do_lower_case=False)
    plain, other = load_encoder(str(tiny)), load_encoder(str(cased))
    assert plain.fingerprint == other.fingerprint  # the same weights
    cache = tmp_path / "cache"
    assert cache_path(cache, "sentences", plain, TEXTS) != cache_path(
        cache, "sentences", other, TEXTS
    )
    first = embed(plain, TEXTS, cache_dir=cache)
    second = embed(other, TEXTS, cache_dir=cache)
    assert not np.allclose(first, second, atol=1e-4)
    assert np.array_equal(second, other.encode(TEXTS))  # its own vectors, not a cache hit


@pytest.mark.parametrize(
    "where",
    ["config.json", "sentence_bert_config.json", "modules.json", "1_Pooling/config.json"],
)
def test_every_vector_shaping_file_is_in_the_key(tiny, tmp_path, where):
    folder = shutil.copytree(tiny, tmp_path / "model")
    before = model_files_fingerprint(folder)
    (folder / where).parent.mkdir(exist_ok=True)
    (folder / where).write_text('{"changed": true}' if where == "config.json" else "{}")
    assert model_files_fingerprint(folder) != before


def test_bookkeeping_files_stay_out_of_the_key(tiny, tmp_path):
    folder = shutil.copytree(tiny, tmp_path / "model")
    before = model_files_fingerprint(folder)
    (folder / "README.md").write_text("a model card")
    (folder / "COMPLETE.json").write_text('{"completed": 1}')
    assert model_files_fingerprint(folder) == before


def test_a_final_cache_with_rolled_rows_is_not_used(tiny, tmp_path, caplog):
    enc, cache = load_encoder(str(tiny)), tmp_path / "cache"
    fresh = embed(enc, TEXTS, cache_dir=cache)
    path = cache_path(cache, "sentences", enc, TEXTS)
    save_arrays(path, vectors=np.roll(load_arrays(path)["vectors"], 1, axis=0))  # valid checksum
    with caplog.at_level(logging.WARNING, logger="helpers"):
        again = embed(enc, TEXTS, cache_dir=cache)
    assert np.array_equal(again, fresh)
    assert any(str(path) in r.getMessage() for r in caplog.records)


def test_another_texts_cache_file_in_its_place_is_not_used(tiny, tmp_path, caplog):
    enc, cache = load_encoder(str(tiny)), tmp_path / "cache"
    fresh = embed(enc, TEXTS, cache_dir=cache)
    embed(enc, TEXTS[::-1], cache_dir=cache)
    path = cache_path(cache, "sentences", enc, TEXTS)
    os.replace(cache_path(cache, "sentences", enc, TEXTS[::-1]), path)
    with caplog.at_level(logging.WARNING, logger="helpers"):
        again = embed(enc, TEXTS, cache_dir=cache)
    assert np.array_equal(again, fresh)
    assert any("other texts" in r.getMessage() for r in caplog.records)


def test_shards_end_in_a_final_file_that_embed_accepts(tiny, tmp_path, monkeypatch):
    enc, cache = load_encoder(str(tiny)), tmp_path / "cache"
    job = plan_shards(enc, TEXTS, cache_dir=cache, shard_size=2)
    sharded = encode_shards(job, enc.encode)
    monkeypatch.setattr(type(enc), "encode", lambda *a, **k: pytest.fail("recomputed"))
    assert np.array_equal(embed(enc, TEXTS, cache_dir=cache), sharded)


# --- damaged caches at the command line ----------------------------------------------------


def damage_paths(config: Path, model: Path, shard_size: int) -> dict[str, Path]:
    """The cache file of the train split, its shard folder and first shard, and the cache folder."""
    cfg = load_config(config)
    texts = list(corpus_splits(cfg)["train"]["text"])
    enc = load_encoder(  # as the command line loads it
        str(model), normalize=cfg.encoding.normalize, max_length=cfg.encoding.max_length
    )
    final = cache_path(cfg.cache_dir, "sentences", enc, texts)
    shards = final.with_suffix(".shards")
    first = shards / f"{0:09d}-{min(shard_size, len(texts)):09d}.npz"
    return {"cache": cfg.cache_dir, "final": final, "shards": shards, "shard": first}


def plant(kind: str, paths: dict[str, Path]) -> Path:
    """Put the damage ``kind`` in place; return the path the message must name."""
    if kind == "cache-dir-is-a-file":
        shutil.rmtree(paths["cache"], ignore_errors=True)
        paths["cache"].parent.mkdir(parents=True, exist_ok=True)  # loading creates no folder
        paths["cache"].write_text("not a folder")
        return paths["cache"]
    paths["cache"].mkdir(parents=True, exist_ok=True)
    if kind == "final-is-a-folder":
        paths["final"].mkdir()
        return paths["final"]
    if kind == "final-is-a-fifo":
        os.mkfifo(paths["final"])
        return paths["final"]
    if kind == "shards-is-a-file":
        paths["shards"].write_text("not a folder")
        return paths["shards"]
    if kind == "shard-is-a-folder":
        paths["shard"].mkdir(parents=True)
        return paths["shard"]
    if kind == "shard-is-a-fifo":
        paths["shards"].mkdir()
        os.mkfifo(paths["shard"])
        return paths["shard"]
    raise ValueError(kind)


def run(config: Path, *args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), deadline(30):
        code = main(["--config", str(config), *args])
    return code, err.getvalue()


def assert_one_line_naming(stderr: str, path: Path) -> None:
    assert "Traceback" not in stderr and "recomputing" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    assert str(path) in lines[0], lines[0]


DAMAGE = {
    "metrics": ["cache-dir-is-a-file", "final-is-a-folder", "final-is-a-fifo"],
    "embed": [
        "cache-dir-is-a-file",
        "final-is-a-folder",
        "final-is-a-fifo",
        "shards-is-a-file",
        "shard-is-a-folder",
        "shard-is-a-fifo",
    ],
}


@pytest.mark.parametrize(
    ("command", "kind"), [(c, k) for c, kinds in DAMAGE.items() for k in kinds]
)
def test_damaged_cache_is_one_line_with_exit_code_2(tiny, tmp_path, command, kind):
    config = write_config(tmp_path)
    culprit = plant(kind, damage_paths(config, tiny, shard_size=4))
    extra = ["--shard-size", "4"] if command == "embed" else []
    code, stderr = run(config, command, "--model", str(tiny), *extra)
    assert code == 2, stderr[-3000:]
    assert_one_line_naming(stderr, culprit)
    code, stderr = run(config, command, "--model", str(tiny), *extra)  # the same on a rerun
    assert code == 2 and str(culprit) in stderr


def refuse_writes_in(folder: Path, monkeypatch) -> None:
    """Make ``folder`` unwritable the way a read-only folder is for a normal user (root ignores modes)."""
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("command", ["metrics", "embed"])
def test_unwritable_cache_folder_is_named_before_any_work(tiny, tmp_path, monkeypatch, command):
    config = write_config(tmp_path)
    cache = load_config(config).cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    refuse_writes_in(cache, monkeypatch)
    monkeypatch.setattr(
        "helpers.encoders.Encoder.encode", lambda *a, **k: pytest.fail("encoded anyway")
    )
    code, stderr = run(config, command, "--model", str(tiny))
    assert code == 2, stderr[-3000:]
    assert_one_line_naming(stderr, cache)
    assert "Permission denied" in stderr


def test_a_read_only_cache_holding_every_answer_is_still_read(tiny, tmp_path, monkeypatch):
    config = write_config(tmp_path)
    assert run(config, "metrics", "--model", str(tiny))[0] == 0
    refuse_writes_in(load_config(config).cache_dir, monkeypatch)
    code, stderr = run(config, "metrics", "--model", str(tiny))
    assert code == 0, stderr[-3000:]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_cache_folder_for_a_normal_user(tiny, tmp_path):
    config = write_config(tmp_path)
    cache = load_config(config).cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o555)
    try:
        code, stderr = run(config, "metrics", "--model", str(tiny))
    finally:
        cache.chmod(0o755)
    assert code == 2
    assert_one_line_naming(stderr, cache)


def test_a_failing_save_is_a_cache_error_naming_the_file(tmp_path, monkeypatch):
    target = tmp_path / "cache" / "x.npz"
    refuse_writes_in(target.parent, monkeypatch)
    with pytest.raises(CacheError, match=str(target)):
        storage.save_arrays(target, vectors=np.ones((2, 2), dtype=np.float32))
