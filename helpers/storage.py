"""Atomic, verified storage for cached arrays and trained models.

Caches and models are never half-written: arrays go to a temporary file that is renamed
into place (``os.replace`` is atomic on one file system), models are built in a temporary
folder that gets a completion marker and is then renamed. A process lock per model keeps
two builds from training the same model at once; the second one waits and then reuses it.
Temporary files carry their writer's :func:`owner_tag`, so a later run can tell the
leftovers of a killed writer (:func:`is_stale`) from a save still in progress.

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x.npz"
>>> save_arrays(p, vectors=np.ones((2, 3), dtype=np.float32))
>>> load_arrays(p)["vectors"].shape
(2, 3)
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from filelock import FileLock

log = logging.getLogger(__name__)

COMPLETE_MARKER = "COMPLETE.json"
STALE_AFTER = (
    6 * 3600
)  # seconds; no save or extraction takes this long, so an older leftover is dead
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_OWNER = re.compile(r"([0-9a-f]{8})-([0-9]{1,10})")


class CorruptCacheError(RuntimeError):
    """A cache file that exists but cannot be trusted (it is deleted and recomputed)."""


class CacheError(RuntimeError):
    """A cache location the book cannot use as it is (a folder or FIFO in place of a file, a
    file in place of a folder, no write permission), with what to do about it."""


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def owner_tag(pid: int | None = None) -> str:
    """``HOST-PID`` of the process writing a temporary file (the host as a short hash).

    >>> owner_tag(42).endswith("-42")
    True
    """
    return f"{_HOST}-{pid or os.getpid()}"


def _process_gone(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):  # alive under another user; or not a real pid
        return False
    return False


def is_stale(path: Path, tag: str | None, max_age: float = STALE_AFTER) -> bool:
    """True when the temporary ``path`` is a leftover: its writer (``tag``, an :func:`owner_tag`) is a
    process of this host that no longer runs, or it is older than ``max_age`` seconds.

    Without a recognisable tag (older file names, other hosts) only the age counts.
    """
    try:
        age = time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if age > max_age:
        return True
    owner = _OWNER.fullmatch(tag or "")
    return bool(owner) and owner.group(1) == _HOST and _process_gone(int(owner.group(2)))


def remove_stale(path: Path) -> None:
    """Delete a leftover file or folder, saying so."""
    log.warning("removing leftovers of an interrupted run: %s", path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink(missing_ok=True)
        except (
            OSError
        ) as exc:  # e.g. another user's file in a shared temp folder: not ours to force
            log.warning("could not remove %s: %s", path, exc.strerror or exc)


def _remove_stale_saves(path: Path) -> None:
    prefix = f".{path.name}."
    for tmp in path.parent.glob(glob.escape(prefix) + "*.tmp"):
        if is_stale(tmp, tmp.name[len(prefix) :].split(".")[0]):
            remove_stale(tmp)


@contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator:
    """Open a temporary sibling of ``path`` for writing; rename it into place on success.

    Leftovers of a killed earlier write of ``path`` are removed first; on failure the
    temporary file is deleted, so ``path`` is never half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_saves(path)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; caches are meant to be shared and read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` (``.npz``) atomically, with a checksum stored inside.

    Raises :class:`CacheError` naming the place when it cannot be written.
    """
    digest = _digest(arrays)
    try:
        with atomic_file(path) as fh:
            np.savez(fh, __sha256__=np.array(digest), **arrays)
    except OSError as exc:  # a read-only folder, a file or folder in the way, a full disk
        detail = exc.strerror or str(exc)
        culprit = exc.filename2 or exc.filename
        if culprit and not Path(culprit).name.startswith("."):  # not our temporary file
            detail += f": {culprit}"
        raise CacheError(
            f"{path}: cannot write this cache file ({detail}); make its folder writable, "
            "remove what is in the way, or set paths.results_dir to a writable folder"
        ) from None


def is_regular_file(path: Path) -> bool:
    """True when ``path`` exists and is a regular file (after links); never opens it.

    A folder, FIFO, socket or device in its place is not (opening a FIFO would block).
    """
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def refuse_odd_cache_file(path: Path) -> None:
    """Raise :class:`CacheError` when something other than a regular file sits at ``path``."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return  # absent (or unreachable): nothing in the way yet
    if stat.S_ISREG(mode):
        return
    kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"
    raise CacheError(
        f"{path}: is {kind}, where a cache file belongs; remove it "
        "(the cache is recomputed on the next run)"
    )


def writable_folder(folder: Path) -> Path:
    """``folder``, created if missing, once a test file could be written into it.

    Raises :class:`CacheError` naming the folder when it is a file, or not writable: before
    any work is done whose result could not be saved.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise CacheError(
            f"{folder}: is a file, where the cache folder belongs; remove or rename it "
            "(the cache is rebuilt)"
        ) from None
    except OSError as exc:
        raise CacheError(
            f"{folder}: cannot write the cache here ({exc.strerror or exc}); make it writable, "
            "or set paths.results_dir to a writable folder"
        ) from None
    return folder


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, "w") as fh:
        fh.write(text)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read arrays written by :func:`save_arrays`, without pickle, verifying the checksum.

    Raises :class:`CorruptCacheError` for a truncated, damaged or tampered file.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise CorruptCacheError(
            f"{path}: unreadable cache file ({type(exc).__name__}: {exc})"
        ) from None
    stored = arrays.pop("__sha256__", None)
    if stored is None or str(stored) != _digest(arrays):
        raise CorruptCacheError(
            f"{path}: checksum mismatch (the file was changed or partly written)"
        )
    return arrays


def file_fingerprint(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes (used to identify model weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def settings_key(settings: dict) -> str:
    """A short stable hash of a JSON-able settings dict."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def is_complete(folder: Path) -> bool:
    """True when ``folder`` was published by :func:`building_folder` (has its completion marker)."""
    return (folder / COMPLETE_MARKER).is_file()


@contextmanager
def model_lock(final: Path, timeout: float = 3600) -> Iterator[None]:
    """Hold an inter-process lock for building the model at ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f".{final.name}.lock"), timeout=timeout):
        yield


@contextmanager
def building_folder(final: Path, info: dict) -> Iterator[Path]:
    """Yield a temporary folder to build into; on success mark it complete and rename it to ``final``.

    Call inside :func:`model_lock`. Leftovers of an interrupted earlier build (temporary
    folders, or a ``final`` folder without its marker) are removed first, so a rerun after
    a crash recovers by itself. If the body raises, the temporary folder is deleted.
    """
    parent = final.parent
    for stale in parent.glob(f".tmp-{final.name}-*"):
        log.warning("removing leftovers of an interrupted build: %s", stale)
        shutil.rmtree(stale, ignore_errors=True)
    if final.exists() and not is_complete(final):
        log.warning("removing incomplete model folder (no %s): %s", COMPLETE_MARKER, final)
        shutil.rmtree(final)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".tmp-{final.name}-"))
    try:
        yield tmp
        (tmp / COMPLETE_MARKER).write_text(
            json.dumps({**info, "completed": time.time()}, indent=2, default=str)
        )
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
