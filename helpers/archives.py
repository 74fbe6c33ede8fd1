"""Extract a corpus archive into a scratch folder, safely.

The archive is read as hostile input: only plain files and folders are extracted, only
inside the scratch folder, and within an :class:`ArchiveBudget` of bytes and members that
an archive and the archives inside it share (headers are checked before anything is
written, and the bytes really written are counted, since headers can lie). The scratch
folder (``.extract-*``) is removed afterwards; leftovers of killed runs are removed by the
next one. Reading what was extracted is :mod:`helpers.corpus`'s job.

Example
-------
>>> is_archive(Path("corpus.tar.gz")), is_archive(Path("corpus.csv"))
(True, False)
>>> zipped = Path("corpus.zip")
>>> budget = ArchiveBudget(max_bytes=10**9, max_members=1000, archive=zipped)
>>> with extracted(zipped, budget, scratch_dir=Path("results")) as folder:  # doctest: +SKIP
...     sorted(p.name for p in folder.iterdir())
['chunks']
"""

from __future__ import annotations

import lzma
import shutil
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .names import CHUNK_FILE_MAX_BYTES, TEXT_SUFFIXES
from .storage import is_stale, owner_tag, remove_stale

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
ARCHIVE_MAX_NESTING = 3  # an archive in a folder in an archive ... at most this deep
EXTRACT_PREFIX = ".extract-"


class CorpusError(ValueError):
    """A data problem, naming the file or subject and how to fix it.

    Defined here, the lowest module that raises it; :mod:`helpers.corpus` re-exports it.
    """


def excerpt(text: str, limit: int = 60) -> str:
    """``text`` on one line, cut to ``limit`` characters with "…".

    >>> excerpt("a  long\\ntext", limit=8)
    'a long …'
    """
    flat = " ".join(str(text)[: limit * 4].split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_ARCHIVE_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
)


@dataclass
class ArchiveBudget:
    """What extraction may still write, shared by an archive and the archives inside it."""

    max_bytes: int
    max_members: int
    archive: Path  # the configured archive, named in messages
    written: int = 0  # bytes really written so far, by this archive and the ones before it
    members: int = 0
    declared: int = 0  # bytes the headers of the archive being read announce

    def _too_big(self, member: str) -> CorpusError:
        return CorpusError(
            f"{self.archive}: extracting it would write more than {self.max_bytes:,} bytes (at member {excerpt(member)!r}). "
            "Raise data.archive_max_bytes if the archive is trusted, or use a smaller corpus."
        )

    def _chunk_too_big(self, member: str, size: int) -> CorpusError:
        return CorpusError(
            f"{self.archive}: member {excerpt(repr(member))} is a chunk file of {size:,} bytes or more, "
            f"far more than a chunk should be (at most {CHUNK_FILE_MAX_BYTES:,}). Split it into chunks "
            "(one passage per file) or leave it out of the archive."
        )

    def add_member(self, name: str, size: int) -> None:
        """Count one member from its header, before anything is written (call :meth:`begin` first)."""
        if is_chunk_file(name) and size > CHUNK_FILE_MAX_BYTES:
            raise self._chunk_too_big(name, size)
        self.members += 1
        if self.members > self.max_members:
            raise CorpusError(
                f"{self.archive}: holds more than {self.max_members:,} members. "
                "Raise data.archive_max_members if the archive is trusted, or split the corpus."
            )
        self.declared += max(size, 0)
        if self.written + self.declared > self.max_bytes:
            raise self._too_big(name)

    def begin(self) -> None:
        """Start reading the headers of another (possibly nested) archive."""
        self.declared = 0

    def copy(self, source: IO[bytes], target: Path, name: str) -> None:
        """Stream ``source`` into ``target``, counting the bytes really written (headers can lie)."""
        limit = CHUNK_FILE_MAX_BYTES if is_chunk_file(name) else None
        member = 0
        with open(target, "wb") as out:
            while block := source.read(1 << 20):
                self.written += len(block)
                member += len(block)
                if self.written > self.max_bytes:
                    raise self._too_big(name)
                if limit is not None and member > limit:
                    raise self._chunk_too_big(name, member)
                out.write(block)


def is_archive(path: Path) -> bool:
    """Whether ``path`` is named like an archive (:data:`ARCHIVE_SUFFIXES`, any case)."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def is_chunk_file(name: str) -> bool:
    """Whether a file or member name is a chunk file (:data:`helpers.names.TEXT_SUFFIXES`, any case).

    >>> is_chunk_file("physics/001.TXT"), is_chunk_file("corpus.csv")
    (True, False)
    """
    return name.lower().endswith(TEXT_SUFFIXES)


def _member_target(archive: Path, dest: Path, name: str) -> Path | None:
    """Where member ``name`` goes under ``dest``; ``None`` for the archive's root itself."""
    clean = name.replace("\\", "/")
    pure = PurePosixPath(clean)
    if pure.is_absolute() or ".." in pure.parts or "\0" in clean or clean[1:2] == ":":
        raise CorpusError(
            f"{archive}: refuses to extract unsafe member path {excerpt(repr(name), 120)} (absolute or containing '..'). "
            "Re-create the archive with relative paths inside one folder."
        )
    parts = [p for p in pure.parts if p not in ("", ".")]
    return dest.joinpath(*parts) if parts else None


def _refuse_kind(archive: Path, name: str, kind: str) -> CorpusError:
    return CorpusError(
        f"{archive}: member {excerpt(repr(name))} is a {kind}; only plain files and folders are accepted."
    )


def _tar_members(
    archive: Path, tf: tarfile.TarFile, budget: ArchiveBudget
) -> Iterator[tuple[str, bool, Any]]:
    budget.begin()
    members = []
    for m in tf:  # headers only: stops at the first member over a limit, before extracting anything
        budget.add_member(m.name, m.size if m.isreg() else 0)
        if m.issym() or m.islnk():
            raise _refuse_kind(archive, m.name, "link")
        if m.ischr() or m.isblk() or m.isfifo():
            raise _refuse_kind(archive, m.name, "special file (device or pipe)")
        if not (m.isreg() or m.isdir()):
            raise _refuse_kind(archive, m.name, "member of an unsupported type")
        members.append(m)
    for m in members:
        yield m.name, m.isdir(), (lambda m=m: tf.extractfile(m))


def _zip_members(
    archive: Path, zf: zipfile.ZipFile, budget: ArchiveBudget
) -> Iterator[tuple[str, bool, Any]]:
    budget.begin()
    infos = zf.infolist()
    for info in infos:
        budget.add_member(info.filename, info.file_size)
        mode = info.external_attr >> 16  # Unix mode bits, when the zip was made on Unix
        if stat.S_ISLNK(mode):
            raise _refuse_kind(archive, info.filename, "link")
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise _refuse_kind(archive, info.filename, "special file (device or pipe)")
    for info in infos:
        yield info.filename, info.is_dir(), (lambda info=info: zf.open(info))


def _extract_member(archive: Path, target: Path, name: str, is_dir: bool, opener, budget) -> None:
    try:
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with opener() as source:
            budget.copy(source, target, name)
    except OSError as exc:  # e.g. a file and a folder of one name, a name too long
        if exc.errno is None:  # not the file system: the archive's data itself (gzip, zlib ...)
            raise
        raise CorpusError(
            f"{archive}: cannot extract member {excerpt(repr(name))} ({exc.strerror}). "
            "Re-create the archive from a plain folder of files."
        ) from None


def _safe_extract(archive: Path, dest: Path, budget: ArchiveBudget) -> None:
    """Extract ``archive`` into ``dest``: plain files and folders only, inside ``dest``, within ``budget``."""
    try:
        is_zip = archive.name.lower().endswith(".zip")
        with zipfile.ZipFile(archive) if is_zip else tarfile.open(archive, "r:*") as handle:
            members = (
                _zip_members(archive, handle, budget)
                if is_zip
                else _tar_members(archive, handle, budget)
            )
            for name, is_dir, opener in members:
                target = _member_target(archive, dest, name)
                if target is not None:
                    _extract_member(archive, target, name, is_dir, opener, budget)
    except CorpusError:
        raise
    except _ARCHIVE_ERRORS as exc:
        raise CorpusError(
            f"{archive}: cannot be read as an archive ({type(exc).__name__}: {excerpt(exc, 120)}). "
            "Check that the download is complete and the file is not encrypted."
        ) from None


@contextmanager
def _scratch_folder(root: Path | None) -> Iterator[Path]:
    """A fresh ``.extract-*`` folder under ``root`` (default: the system temp folder), removed afterwards.

    Leftovers of killed runs (owner gone, or older than :data:`helpers.storage.STALE_AFTER`) go first.
    """
    root = Path(root) if root is not None else Path(tempfile.gettempdir())
    created = _first_missing(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for old in root.glob(EXTRACT_PREFIX + "*"):
            if is_stale(old, "-".join(old.name[len(EXTRACT_PREFIX) :].split("-")[:2])):
                remove_stale(old)
        folder = Path(tempfile.mkdtemp(prefix=f"{EXTRACT_PREFIX}{owner_tag()}-", dir=root))
    except OSError as exc:
        raise CorpusError(
            f"{root}: cannot create a scratch folder to extract into ({exc.strerror or exc}). "
            "Make paths.results_dir writable."
        ) from None
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if created is not None:
            _remove_empty(root, created)


def _first_missing(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist yet (``None``: it exists)."""
    missing = None
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _remove_empty(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to ``top`` while they are empty.

    Extraction created them (``paths.results_dir`` on a first run): a run that fails, or a
    ``check``, leaves no folder behind; whatever later writes there creates it again.
    """
    while True:
        try:
            folder.rmdir()
        except OSError:  # not empty: something else uses it now
            return
        if folder == top:
            return
        folder = folder.parent


@contextmanager
def extracted(
    archive: Path, budget: ArchiveBudget, *, scratch_dir: Path | None = None, nesting: int = 0
) -> Iterator[Path]:
    """Extract ``archive`` into a fresh scratch folder under ``scratch_dir`` and yield the folder.

    ``nesting`` is how many archives this one was found in (at most
    :data:`ARCHIVE_MAX_NESTING`); ``budget`` is shared with them. The folder is removed on exit.
    """
    if nesting >= ARCHIVE_MAX_NESTING:
        raise CorpusError(
            f"{archive}: archives nested more than {ARCHIVE_MAX_NESTING} deep. Extract the inner archive first."
        )
    with _scratch_folder(scratch_dir) as folder:
        _safe_extract(archive, folder, budget)
        yield folder
