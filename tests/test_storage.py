"""Atomic, verified array files and model folders."""

from __future__ import annotations

import builtins
import json
import threading
import time

import numpy as np
import pytest

from helpers.storage import (
    COMPLETE_MARKER,
    CorruptCacheError,
    building_folder,
    is_complete,
    load_arrays,
    model_lock,
    save_arrays,
    settings_key,
)


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return {
        "vectors": rng.normal(size=(50, 16)).astype(np.float32),
        "labels": np.array(["physics", "history"] * 3),
        "steps": np.arange(7, dtype=np.int64),
    }


@pytest.fixture
def saved(tmp_path, arrays):
    path = tmp_path / "cache" / "x.npz"
    save_arrays(path, **arrays)
    return path


def test_round_trip(saved, arrays):
    loaded = load_arrays(saved)
    assert set(loaded) == set(arrays)
    for name, a in arrays.items():
        assert loaded[name].dtype == a.dtype and loaded[name].shape == a.shape
        assert np.array_equal(loaded[name], a)


def test_save_leaves_no_temporary_files(saved):
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_save_replaces_existing_file(saved):
    save_arrays(saved, vectors=np.zeros((2, 2)))
    assert set(load_arrays(saved)) == {"vectors"}


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_corrupt(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CorruptCacheError) as info:
        load_arrays(saved)
    assert str(saved) in str(info.value)


def test_flipped_bytes_are_detected(saved, arrays):
    data = bytearray(saved.read_bytes())
    start = bytes(data).find(arrays["vectors"].tobytes())
    assert start > 0, "array payload not found in the file"
    for offset in (0, 100, 1000):
        data[start + offset] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(CorruptCacheError):
        load_arrays(saved)


def test_file_without_checksum_is_refused(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, vectors=np.ones((3, 3)))
    with pytest.raises(CorruptCacheError, match="checksum"):
        load_arrays(path)


def test_tampered_array_with_old_checksum_is_refused(saved, arrays):
    with np.load(saved) as data:
        content = {k: data[k] for k in data.files}
    content["vectors"] = content["vectors"] + 1  # valid file, checksum of the old content
    np.savez(saved, **content)
    with pytest.raises(CorruptCacheError, match="checksum"):
        load_arrays(saved)


class _Payload:
    """Unpickling this creates a file: proof that pickle ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (builtins.open, (str(self.target), "w"))


def test_object_arrays_are_never_unpickled(tmp_path):
    sentinel = tmp_path / "pickle-ran"
    path = tmp_path / "evil.npz"
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(sentinel)
    np.savez(path, vectors=payload)  # numpy pickles object arrays
    assert not sentinel.exists()
    with pytest.raises(CorruptCacheError):
        load_arrays(path)
    assert not sentinel.exists()


def test_settings_key_is_stable_and_sensitive():
    a = settings_key({"pooling": "mean", "max_length": 256})
    assert a == settings_key({"max_length": 256, "pooling": "mean"})  # key order does not matter
    assert a != settings_key({"pooling": "cls", "max_length": 256})


# --- model folders ---------------------------------------------------------------------------------


def leftovers(parent, name):
    return sorted(p.name for p in parent.glob(f".tmp-{name}-*"))


def test_building_folder_publishes_with_marker(tmp_path):
    final = tmp_path / "models" / "m1"
    with model_lock(final):
        with building_folder(final, {"steps": 3}) as tmp:
            assert tmp != final and tmp.parent == final.parent
            assert not final.exists()
            (tmp / "weights.bin").write_bytes(b"123")
    assert is_complete(final)
    assert (final / "weights.bin").read_bytes() == b"123"
    info = json.loads((final / COMPLETE_MARKER).read_text())
    assert info["steps"] == 3 and "completed" in info
    assert leftovers(final.parent, "m1") == []


def test_exception_inside_leaves_nothing(tmp_path):
    final = tmp_path / "models" / "m1"
    final.parent.mkdir()
    with pytest.raises(RuntimeError, match="training blew up"):
        with building_folder(final, {}) as tmp:
            (tmp / "half.bin").write_bytes(b"partial")
            raise RuntimeError("training blew up")
    assert not final.exists()
    assert leftovers(final.parent, "m1") == []


def test_interrupt_inside_leaves_nothing(tmp_path):
    final = tmp_path / "m1"
    with pytest.raises(KeyboardInterrupt):
        with building_folder(final, {}) as tmp:
            (tmp / "half.bin").write_bytes(b"partial")
            raise KeyboardInterrupt
    assert not final.exists() and leftovers(tmp_path, "m1") == []


def test_stale_leftovers_are_removed_on_next_build(tmp_path, caplog):
    final = tmp_path / "m1"
    stale = tmp_path / ".tmp-m1-crashed"
    stale.mkdir()
    (stale / "junk.bin").write_bytes(b"old")
    final.mkdir()  # a final folder without its marker: an interrupted publish
    (final / "junk.bin").write_bytes(b"old")
    other = tmp_path / "m2"  # another model must not be touched
    other.mkdir()
    (other / "keep.bin").write_bytes(b"keep")
    with building_folder(final, {}) as tmp:
        assert not stale.exists()
        assert not final.exists()
        (tmp / "new.bin").write_bytes(b"new")
    assert is_complete(final)
    assert sorted(p.name for p in final.iterdir()) == sorted([COMPLETE_MARKER, "new.bin"])
    assert (other / "keep.bin").exists()
    assert any("interrupted" in r.getMessage() for r in caplog.records)
    assert any("incomplete" in r.getMessage() for r in caplog.records)


def test_is_complete_needs_marker(tmp_path):
    assert not is_complete(tmp_path / "missing")
    (tmp_path / "m").mkdir()
    assert not is_complete(tmp_path / "m")
    (tmp_path / "m" / COMPLETE_MARKER).write_text("{}")
    assert is_complete(tmp_path / "m")


def test_model_lock_serialises_threads(tmp_path):
    final = tmp_path / "models" / "m1"
    events: list[str] = []
    first_holds = threading.Event()

    def first():
        with model_lock(final):
            events.append("first-start")
            first_holds.set()
            time.sleep(0.4)
            events.append("first-end")

    def second():
        first_holds.wait(5)
        with model_lock(final):
            events.append("second-start")
            events.append("second-end")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert events == ["first-start", "first-end", "second-start", "second-end"]


def test_model_lock_times_out_while_held(tmp_path):
    from filelock import Timeout

    final = tmp_path / "m1"
    held = threading.Event()
    release = threading.Event()

    def holder():
        with model_lock(final):
            held.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(5)
        with pytest.raises(Timeout):
            with model_lock(final, timeout=0.2):
                pass
    finally:
        release.set()
        t.join(5)


# --- leftovers of killed writers (issue 17) ----------------------------------------------------------

KILLED_WRITER = """
import os, sys, time
from pathlib import Path
import numpy as np
import helpers.storage as storage

def hang(fd):  # the temporary file exists and is (partly) written: stop here until killed
    print("writing", flush=True)
    time.sleep(600)

storage.os.fsync = hang
storage.save_arrays(Path(sys.argv[1]), vectors=np.ones((4, 4)))
"""


def test_temporary_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    path = tmp_path / "cache" / "x.npz"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    stale = list(path.parent.glob(".x.npz.*.tmp"))
    assert len(stale) == 1, "the killed writer should have left its temporary file"
    save_arrays(path, vectors=np.zeros((2, 2)))
    assert [p.name for p in path.parent.iterdir()] == ["x.npz"]


def test_old_temporary_files_are_removed_and_live_ones_kept(tmp_path):
    import os

    from helpers.storage import owner_tag

    folder = tmp_path / "cache"
    folder.mkdir()
    old = folder / ".x.npz.k3j4h5.tmp"  # the name an older version used: no owner in it
    old.write_bytes(b"")
    os.utime(old, (1, 1))
    live = folder / f".x.npz.{owner_tag(os.getpid())}.abc.tmp"  # a save in progress (this process)
    live.write_bytes(b"")
    other = folder / ".y.npz.k3j4h5.tmp"  # another cache file's temporary: not ours to judge
    other.write_bytes(b"")
    save_arrays(folder / "x.npz", vectors=np.zeros((2, 2)))
    assert sorted(p.name for p in folder.iterdir()) == sorted(["x.npz", live.name, other.name])
