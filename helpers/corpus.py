"""Load a corpus of text chunks labelled by subject, and split it into train and test.

Accepted inputs (``paths.data_dir``):

* a folder with one sub-folder per subject holding ``.txt``/``.md`` files, one chunk per file;
* a ``.jsonl``/``.json``/``.csv``/``.parquet`` file, or a folder of them, with ``text`` and
  ``subject`` columns (an ``id`` column is used when present);
* a ``.tar.gz``/``.tgz``/``.tar.bz2``/``.tar.xz``/``.tar``/``.zip`` archive holding either of
  the above. It is extracted into a scratch folder (``.extract-*`` under ``scratch_dir``)
  within limits on size and member count, and removed afterwards (:mod:`helpers.archives`).

Subjects are whatever the data holds; nothing here knows about physics or history. Table
cells are read as text: a subject called ``NA`` or ``null`` is a subject like any other.

Example
-------
>>> ds = load_corpus("data/chunks")                  # doctest: +SKIP
>>> splits = split_corpus(ds, test_fraction=0.3, seed=13)   # doctest: +SKIP
>>> sorted(splits)                                   # doctest: +SKIP
['test', 'train']
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import math
import os
import stat
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

# CorpusError is defined in the archive sandbox, the lowest module raising it; re-exported here.
from .archives import (
    ARCHIVE_SUFFIXES,
    ArchiveBudget,
    CorpusError,
    excerpt,
    extracted,
    is_archive,
    is_chunk_file,
)
from .names import (
    ARCHIVE_MAX_BYTES,
    ARCHIVE_MAX_MEMBERS,
    CHUNK_FILE_MAX_BYTES,
    MIN_PER_SUBJECT,
    MIN_TEST_PER_SUBJECT,
    MIN_TRAIN_PER_SUBJECT,
)

# datasets and scikit-learn are imported where needed: `check` stays light on bad input.
if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

log = logging.getLogger(__name__)

TABLE_SUFFIXES = {".jsonl", ".json", ".csv", ".parquet"}
LONG_CHUNK_WORDS = 2000  # far beyond any encoder window: worth telling the reader
MAX_CONFLICTS_SHOWN = 20
SKIPPED_PREFIXES = (".", "_")  # folders not read as subjects (hidden, _drafts, __pycache__)
ARCHIVE_LITTER = "__MACOSX"  # what macOS adds to a zip: never data, never worth a warning
#: Characters that show nothing: a chunk or subject made only of them (and spaces) is empty.
INVISIBLE = "\0\u200b\u200c\u200d\u2060\ufeff"
_DROP_INVISIBLE = str.maketrans("", "", INVISIBLE)
#: Bidirectional embeddings, overrides and isolates: they reorder what a terminal or page shows.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


# --- text files ------------------------------------------------------------------------------------


def _is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: only whitespace, zero-width characters or NULs.

    >>> _is_blank("\u200b \ufeff\\n"), _is_blank("a\u200b")
    (True, False)
    """
    return not text.translate(_DROP_INVISIBLE).strip()


def _not_text(path: Path, raw: bytes) -> CorpusError:
    """The error for a file holding zero bytes: UTF-16 (with advice) or not text at all."""
    bom = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if bom or raw.count(0) * 4 >= len(raw):
        # UTF-16 of Latin text has a zero beside every letter: at odd offsets when little-endian.
        source = (
            "utf-16"
            if bom
            else ("utf-16le" if raw[1::2].count(0) >= raw[::2].count(0) else "utf-16be")
        )
        return CorpusError(
            f"{path}: looks like UTF-16 text ({'a byte order mark' if bom else 'a zero byte beside most characters'}), "
            f"not UTF-8. Re-save it as UTF-8, e.g. `iconv -f {source} -t utf-8`."
        )
    return CorpusError(
        f"{path}: holds zero bytes (the first at offset {raw.index(0)}), so it is not a text file or it is damaged. "
        "Re-save it as UTF-8 text."
    )


def _decode(path: Path, raw: bytes, encoding: str = "utf-8") -> str:
    if b"\0" in raw or raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise _not_text(path, raw)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}: not valid UTF-8 (bad byte 0x{raw[exc.start]:02x} at offset {exc.start}). "
            "Re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8` for a Latin-1 file."
        ) from None


def _read_limited(path: Path, limit: int = CHUNK_FILE_MAX_BYTES) -> bytes:
    """The bytes of the plain file ``path``, refused by its size before reading when over ``limit``."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a pipe must not hang us
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CorpusError(
                f"{path}: is not a plain file (a pipe or device?). Replace it by a text file."
            )
        if info.st_size > limit:
            raise _too_big(path, info.st_size)
        raw = fh.read(limit + 1)  # the file may grow while it is read
    if len(raw) > limit:
        raise _too_big(path, len(raw))
    return raw


def _too_big(path: Path, size: int) -> CorpusError:
    return CorpusError(
        f"{path}: a chunk file of {size:,} bytes, far more than a chunk should be (at most "
        f"{CHUNK_FILE_MAX_BYTES:,}). Split it into chunks (one passage per file) or move it out of the data folder."
    )


def _read_text_file(path: Path) -> str:
    text = _decode(path, _read_limited(path)).strip()
    if _is_blank(text):
        raise CorpusError(
            f"{path}: the chunk file is empty (or holds only spaces and invisible characters). "
            "Delete it or put the chunk's text in it."
        )
    return text


def _utf8_name(root: Path, rel: str) -> str:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise CorpusError(f"{root}: file name {shown!r} is not valid UTF-8. Rename it.") from None
    return rel


def _link_error(link: Path) -> CorpusError:
    return CorpusError(
        f"{link}: is a symbolic link; links inside the data folder are refused, since they can pull in files "
        "from outside it. Replace the link by a copy of what it points to, or remove it."
    )


def _listing(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted; a symbolic link among them is refused (nothing is read)."""
    entries = sorted(folder.iterdir())
    for entry in entries:
        if entry.is_symlink():
            raise _link_error(entry)
    return entries


def _chunk_files(subject_dir: Path) -> list[Path]:
    """The chunk files under ``subject_dir`` at any depth, sorted; refuses links, reads nothing."""
    files, todo = [], [subject_dir]
    while todo:
        for entry in _listing(todo.pop()):
            if entry.is_dir():
                todo.append(entry)
            elif entry.is_file() and is_chunk_file(entry.name) and not entry.name.startswith("."):
                files.append(entry)
    return sorted(files)


def _holds_chunk_files(folder: Path) -> bool:
    """Whether ``folder`` holds a chunk file at any depth (without following links)."""
    return any(
        is_chunk_file(name) and not name.startswith(".")
        for _, _, names in os.walk(folder)
        for name in names
    )


def _warn_skipped(root: Path, entries: list[Path]) -> None:
    """Say which folders holding chunk files are skipped for their name ('.' or '_' first)."""
    skipped = [
        p.name
        for p in entries
        if p.name.startswith(SKIPPED_PREFIXES)
        and p.name != ARCHIVE_LITTER
        and p.is_dir()
        and _holds_chunk_files(p)
    ]
    if skipped:
        log.warning(
            "%s: skipped folder(s) %s: a folder whose name starts with '.' or '_' is not a subject. "
            "Rename it to make it one.",
            root,
            ", ".join(repr(name) for name in skipped),
        )


def _read_chunk_files(root: Path, files: list[tuple[Path, Path]]) -> pd.DataFrame:
    """One row per ``(subject folder, chunk file)``."""
    rows = []
    for subject_dir, f in files:
        rel = _utf8_name(root, f.relative_to(root).as_posix())
        rows.append(
            {
                "id": rel.rsplit(".", 1)[0],
                "text": _read_text_file(f),
                "subject": subject_dir.name,
                "source": rel,
            }
        )
    return pd.DataFrame(rows, columns=["id", "text", "subject", "source"])


# --- tables ----------------------------------------------------------------------------------------


class _DuplicateKeyError(ValueError):
    """A JSON object with a key twice (``json`` would keep the last one silently)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads` refusing repeated keys."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKeyError(key)
        obj[key] = value
    return obj


def _repeated_key(path: Path, where: str, key: str) -> CorpusError:
    return CorpusError(
        f"{path}: {where} has the key {excerpt(repr(key))} twice; only one would be read. "
        "Keep one (merge the values), or rename the other."
    )


def _jsonl_records(path: Path) -> list[tuple[str, Any]]:
    records = []
    for number, line in enumerate(_decode(path, path.read_bytes(), "utf-8-sig").split("\n"), 1):
        if line.strip():
            try:
                records.append(
                    (
                        f"record {len(records) + 1} (line {number})",
                        json.loads(line, object_pairs_hook=_unique_keys),
                    )
                )
            except _DuplicateKeyError as exc:
                raise _repeated_key(path, f"line {number}", exc.args[0]) from None
            except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
                raise CorpusError(
                    f"{path}: line {number} of this JSONL file is not valid JSON ({excerpt(exc, 120)}). Fix or remove that line."
                ) from None
    return records


def _json_records(path: Path) -> list[tuple[str, Any]]:
    try:
        data = json.loads(
            _decode(path, path.read_bytes(), "utf-8-sig"), object_pairs_hook=_unique_keys
        )
    except _DuplicateKeyError as exc:
        raise _repeated_key(path, "an object", exc.args[0]) from None
    except (ValueError, RecursionError) as exc:
        raise CorpusError(
            f"{path}: cannot be parsed as JSON ({excerpt(exc, 120)}). Check the file's format."
        ) from None
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise CorpusError(
                f"{path}: its columns have different lengths {sorted(lengths)}. Give every column one value per record."
            )
        data = [dict(zip(data, values)) for values in zip(*data.values())]
    if not isinstance(data, list):
        raise CorpusError(
            f'{path}: expected a list of records ({{"text": ..., "subject": ...}}) or an object of columns, '
            f"got a JSON {type(data).__name__}."
        )
    return [(f"record {i}", record) for i, record in enumerate(data, 1)]


def _read_frame(path: Path, suffix: str) -> pd.DataFrame | None:
    """A CSV (every cell as text, nothing turned into NaN) or Parquet file as a frame."""
    if suffix == ".parquet":
        return pd.read_parquet(path)
    text = _decode(path, path.read_bytes(), "utf-8-sig")
    if not text.strip():
        return None
    _refuse_repeated_columns(path, _csv_header(text))
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)


def _csv_header(text: str) -> list[str]:
    """The column names of a CSV as written (pandas renames a repeated one to ``text.1``)."""
    try:
        return next(csv.reader(io.StringIO(text)), [])
    except csv.Error:  # malformed: pandas reports it
        return []


def _refuse_repeated_columns(path: Path, columns: list[str]) -> None:
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise CorpusError(
            f"{path}: has more than one column named {excerpt(repr(repeated[0]))}; only one would be read. "
            "Merge them into one column, or rename the others."
        )


def _table_records(path: Path) -> list[tuple[str, Any]]:
    """``(where, record)`` pairs of a table file; ``where`` names the record for messages."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_records(path)
    if suffix == ".json":
        return _json_records(path)
    try:
        frame = _read_frame(path, suffix)
    except CorpusError:
        raise
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types on malformed input
        raise CorpusError(
            f"{path}: cannot be parsed as {suffix[1:].upper()} "
            f"({type(exc).__name__}: {excerpt(exc, 120)}). Check the file's format."
        ) from None
    if frame is None:
        return []
    frame.columns = [str(c) for c in frame.columns]
    _refuse_repeated_columns(path, list(frame.columns))
    rows = frame.to_dict("records")
    if suffix == ".csv":
        return [(f"record {i} (row {i + 1} counting the header)", r) for i, r in enumerate(rows, 1)]
    return [(f"record {i}", r) for i, r in enumerate(rows, 1)]


def _cell(value: Any) -> str | None:
    """A table cell as text, or ``None`` when it is missing. Raises ``TypeError`` for non-text values."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise TypeError("bytes that are not UTF-8") from None
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (str, int, float, np.integer, np.floating)
    ):
        raise TypeError(f"a {type(value).__name__}, not text")
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise TypeError("text with an invalid character (an unpaired surrogate)") from None
    return text


def _field(path: Path, where: str, record: dict, column: str) -> str:
    try:
        value = _cell(record.get(column))
    except TypeError as exc:
        raise CorpusError(
            f"{path}: {where} has a {column!r} that is {exc}. Make it a string."
        ) from None
    if value is None or _is_blank(value):
        raise CorpusError(
            f"{path}: {where} has an empty or missing {column!r} (or one of only spaces and invisible "
            "characters). Fill it in or remove the record (every record needs a 'text' and a 'subject')."
        )
    if "\0" in value:
        raise CorpusError(
            f"{path}: {where} has a {column!r} holding a NUL character (a zero byte), a sign of UTF-16 "
            "or binary data. Remove it, or re-save the source as UTF-8 text."
        )
    if len(value) > CHUNK_FILE_MAX_BYTES:
        raise CorpusError(
            f"{path}: {where} has a {column!r} of {len(value):,} characters, far more than a chunk should be "
            f"(at most {CHUNK_FILE_MAX_BYTES:,}). Split it into chunks."
        )
    return value.strip() if column != "id" else value


def _read_table(path: Path) -> pd.DataFrame:
    records = _table_records(path)
    if not records:
        raise CorpusError(
            f"{path}: holds no records. Remove the file or add rows with 'text' and 'subject'."
        )
    for where, record in records:
        if not isinstance(record, dict):
            raise CorpusError(
                f"{path}: {where} is a JSON {type(record).__name__}, not an object with 'text' and 'subject'."
            )
    columns = {str(k) for _, record in records for k in record}
    missing = {"text", "subject"} - columns
    if missing:
        raise CorpusError(
            f"{path}: missing column(s) {sorted(missing)}; found {sorted(columns)[:20]}. "
            "Each record needs a 'text' and a 'subject' field."
        )
    rows = []
    for i, (where, record) in enumerate(records):
        rows.append(
            {
                "id": _field(path, where, record, "id") if "id" in columns else f"{path.stem}-{i}",
                "text": _field(path, where, record, "text"),
                "subject": _field(path, where, record, "subject"),
                "source": path.name,
            }
        )
    return pd.DataFrame(rows, columns=["id", "text", "subject", "source"])


# --- folders and files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    scratch_dir: Path | None  # where archives are extracted (None: the system temp folder)
    budget: ArchiveBudget
    nesting: int = 0


def _load_archive(path: Path, ctx: _Context) -> pd.DataFrame:
    with extracted(path, ctx.budget, scratch_dir=ctx.scratch_dir, nesting=ctx.nesting) as folder:
        inner = folder
        entries = [p for p in inner.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        # An archive usually wraps everything in one top folder (chunks/...).
        if len(entries) == 1 and entries[0].is_dir() and not _has_table_files(inner):
            inner = entries[0]
        frame = _load_path(inner, replace(ctx, nesting=ctx.nesting + 1))
    frame["source"] = path.name + ":" + frame["source"].astype(str)
    return frame


def _load_path(path: Path, ctx: _Context) -> pd.DataFrame:
    if path.is_file():
        if is_archive(path):
            return _load_archive(path, ctx)
        if path.suffix.lower() in TABLE_SUFFIXES:
            return _read_table(path)
        raise CorpusError(
            f"{path}: unsupported file type. Use a folder of subject sub-folders, "
            f"a {'/'.join(sorted(TABLE_SUFFIXES))} file, or a {'/'.join(ARCHIVE_SUFFIXES)} archive."
        )
    if not path.is_dir():
        raise CorpusError(
            f"{path}: does not exist (or is not a file or folder). Set paths.data_dir to your corpus."
        )
    entries = _listing(path)  # data_dir itself may be a link; nothing inside it may
    _warn_skipped(path, entries)
    files = [
        (folder, f)
        for folder in entries
        if folder.is_dir() and not folder.name.startswith(SKIPPED_PREFIXES)
        for f in _chunk_files(folder)
    ]
    # Hidden files are never data (macOS's tar adds a binary "._name" beside each file).
    files_here = [p for p in entries if p.is_file() and not p.name.startswith(".")]
    tables = [p for p in files_here if p.suffix.lower() in TABLE_SUFFIXES]
    archives = [p for p in files_here if is_archive(p)]
    if files:
        _refuse_beside_folders(path, [t for t in tables if _holds_texts(t)], archives)
        return _read_chunk_files(path, files)
    if tables and archives:
        raise _mixed(path, f"tables ({_names(tables)})", "archives", archives)
    if tables:
        return pd.concat([_read_table(t) for t in tables], ignore_index=True)
    if len(archives) > 1:
        raise CorpusError(
            f"{path}: holds {len(archives)} archives ({_names(archives)}); only one corpus is read. "
            "Keep one in the data folder, or point paths.data_dir at the archive to use."
        )
    if archives:
        return _load_path(archives[0], ctx)
    raise CorpusError(
        f"{path}: no chunks found. Expected sub-folders named after subjects holding .txt/.md files "
        "(one chunk per file), or .jsonl/.csv/.parquet files with 'text' and 'subject' columns."
    )


def _has_table_files(folder: Path) -> bool:
    return any(p.suffix.lower() in TABLE_SUFFIXES for p in folder.iterdir() if p.is_file())


def _names(paths: list[Path], limit: int = 5) -> str:
    shown = [repr(p.name) for p in paths[:limit]]
    return ", ".join(shown + ([f"and {len(paths) - limit} more"] if len(paths) > limit else []))


def _holds_texts(table: Path) -> bool:
    """Whether a table has a ``text`` column (a manifest describing subject folders has none)."""
    return any(isinstance(record, dict) and "text" in record for _, record in _table_records(table))


def _mixed(root: Path, first: str, kind: str, others: list[Path]) -> CorpusError:
    return CorpusError(
        f"{root}: holds {first} and also {kind} ({_names(others)}); the two layouts cannot be mixed, "
        "and only one would be read. Move one kind out of the data folder, or convert it to the other."
    )


def _refuse_beside_folders(root: Path, tables: list[Path], archives: list[Path]) -> None:
    """Refuse data beside subject folders: tables with texts, or archives (a manifest is fine)."""
    if tables:
        raise _mixed(root, "subject folders", "tables with a 'text' column", tables)
    if archives:
        raise _mixed(root, "subject folders", "archives", archives)


# --- duplicates -----------------------------------------------------------------------------------------


def _drop_conflicts(frame: pd.DataFrame, where: Path) -> pd.DataFrame:
    """Drop texts found under more than one subject (from every subject), with a warning."""
    key = frame["text"].str.split().str.join(" ").str.lower()
    n_subjects = frame.groupby(key)["subject"].transform("nunique")
    conflicted = n_subjects > 1
    if not conflicted.any():
        return frame
    lines = []
    for _, group in frame[conflicted].groupby(key[conflicted], sort=False):
        homes = "; ".join(
            f"{subject} ({', '.join(group.loc[group['subject'] == subject, 'source'].astype(str).head(3))})"
            for subject in sorted(group["subject"].unique())
        )
        lines.append(f"{excerpt(group['text'].iloc[0])!r} under {homes}")
    more = (
        [f"... and {len(lines) - MAX_CONFLICTS_SHOWN} more"]
        if len(lines) > MAX_CONFLICTS_SHOWN
        else []
    )
    log.warning(
        "dropped %d text(s) found under more than one subject (kept under none; fix their subject):\n  %s",
        len(lines),
        "\n  ".join(lines[:MAX_CONFLICTS_SHOWN] + more),
    )
    kept = frame.loc[~conflicted]
    emptied = sorted(set(frame["subject"]) - set(kept["subject"]))
    if emptied:
        partners = sorted(set(frame.loc[conflicted, "subject"]) - set(emptied))
        raise CorpusError(
            f"{where}: subject(s) {emptied} have no chunks left: every one of their texts also appears under another "
            f"subject{' (' + ', '.join(partners) + ')' if partners else ''}. A subject that copies another is a "
            "labelling mistake: remove the copy or fix the subjects (or leave it out with data.subjects)."
        )
    return kept


def _drop_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    key = frame["text"].str.split().str.join(" ").str.lower()
    dup = key.duplicated(keep="first")
    if dup.any():
        examples = ", ".join(frame.loc[dup, "source"].astype(str).head(5))
        log.warning(
            "dropped %d duplicate chunk(s) whose text repeats an earlier one: %s",
            int(dup.sum()),
            examples,
        )
    return frame.loc[~dup]


# --- public API ---------------------------------------------------------------------------------------


def load_corpus(
    path: str | Path,
    *,
    subjects: list[str] | None = None,
    max_per_subject: int | None = None,
    seed: int = 13,
    scratch_dir: str | Path | None = None,
    archive_max_bytes: int | None = None,
    archive_max_members: int | None = None,
) -> Dataset:
    """Load chunks from ``path`` into a :class:`datasets.Dataset` with ``id``, ``text``, ``subject``, ``source``.

    Rows are sorted by subject and id; ``subjects`` selects subjects. A text found under two
    subjects is dropped from both with a warning; repeats within one subject (same text up
    to spacing and case) are dropped with a warning. ``max_per_subject`` keeps a seeded
    random sample of each subject.

    Archives are extracted under ``scratch_dir`` (pass ``cfg.paths.results_dir``; default:
    the system temp folder) within ``archive_max_bytes`` and ``archive_max_members``
    (defaults :data:`helpers.names.ARCHIVE_MAX_BYTES`, :data:`helpers.names.ARCHIVE_MAX_MEMBERS`).

    >>> ds = load_corpus("data/chunks", subjects=["physics", "history"])   # doctest: +SKIP
    >>> sorted(set(ds["subject"]))                                         # doctest: +SKIP
    ['history', 'physics']
    """
    from datasets import Dataset

    path = Path(path)
    budget = ArchiveBudget(
        max_bytes=ARCHIVE_MAX_BYTES if archive_max_bytes is None else archive_max_bytes,
        max_members=ARCHIVE_MAX_MEMBERS if archive_max_members is None else archive_max_members,
        archive=path,
    )
    try:
        frame = _load_path(
            path, _Context(None if scratch_dir is None else Path(scratch_dir), budget)
        )
    except OSError as exc:
        raise CorpusError(
            f"{path}: cannot be read ({exc.strerror or exc}: {exc.filename}). Check its permissions."
        ) from None
    _refuse_unprintable(frame, path)
    frame = frame.sort_values(["subject", "id"], kind="stable").reset_index(drop=True)
    available = sorted(frame["subject"].unique())
    if subjects is not None:
        unknown = sorted(set(subjects) - set(available))
        if unknown:
            shown = available if len(available) <= 30 else available[:30] + ["..."]
            raise CorpusError(
                f"{path}: subject(s) {unknown} not in the data; it holds {shown}. Fix data.subjects."
            )
        frame = frame[frame["subject"].isin(subjects)]
    frame = _drop_duplicates(_drop_conflicts(frame, path))
    if frame["id"].duplicated().any():
        dup_ids = frame.loc[frame["id"].duplicated(), "id"].head(3).tolist()
        raise CorpusError(
            f"{path}: ids repeat ({[excerpt(i) for i in dup_ids]}). Give every chunk a unique id."
        )
    if max_per_subject is not None:
        rng = np.random.default_rng(seed)
        parts = []
        for _, group in frame.groupby("subject", sort=True):
            if len(group) > max_per_subject:
                group = group.iloc[
                    np.sort(rng.choice(len(group), size=max_per_subject, replace=False))
                ]
            parts.append(group)
        frame = pd.concat(parts)
    long = frame["text"].str.split().str.len() > LONG_CHUNK_WORDS
    if long.any():
        log.warning(
            "%d chunk(s) have more than %d words (%s); encoders read only their first tokens (see encoding.max_length)",
            int(long.sum()),
            LONG_CHUNK_WORDS,
            ", ".join(frame.loc[long, "source"].astype(str).head(3)),
        )
    frame = frame.reset_index(drop=True)
    return Dataset.from_pandas(frame[["id", "text", "subject", "source"]], preserve_index=False)


def _unprintable(name: str) -> str | None:
    """The first character of ``name`` that would act on a terminal or page rather than show."""
    for char in name:
        if char in BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return char
    return None


def _refuse_unprintable(frame: pd.DataFrame, path: Path) -> None:
    """Refuse subjects and ids holding control characters, and subjects that show nothing.

    Subject names and ids reach the terminal and the book's pages: an escape sequence, a
    line break or a bidirectional override in one would act there instead of showing.
    """
    for column, fix in (
        ("subject", "Rename the folder or fix the 'subject' value"),
        ("id", "Rename the file or fix the 'id' value"),
    ):
        for value, source in frame.drop_duplicates(column)[[column, "source"]].itertuples(
            index=False
        ):
            char = _unprintable(value)
            if char is not None:
                raise CorpusError(
                    f"{path}: {column} {excerpt(repr(value))} (from {excerpt(repr(source))}) holds the control "
                    f"character {char!r}, which would act on the terminal and pages instead of showing. {fix}."
                )
            if column == "subject" and _is_blank(value):
                raise CorpusError(
                    f"{path}: subject {value!r} (from {excerpt(repr(source))}) shows nothing (only spaces and "
                    f"invisible characters). {fix}."
                )


def _fraction_range(counts: Counter) -> tuple[float, float]:
    """Test fractions that leave every subject its minimum test and train chunks (approximately)."""
    low = max(MIN_TEST_PER_SUBJECT / n for n in counts.values())
    high = min((n - MIN_TRAIN_PER_SUBJECT) / n for n in counts.values())
    return math.ceil(low * 100) / 100, math.floor(high * 100) / 100


def _short_subject_error(
    subject: str, n: int, train: int, test: int, test_fraction: float, counts: Counter
) -> CorpusError:
    low, high = _fraction_range(counts)
    fix = (
        f"Set data.test_fraction to about {low}"
        if low == high
        else f"Set data.test_fraction between about {low} and {high}"
        if low < high
        else "No single data.test_fraction suits subjects this unequal in size: add chunks to the small subjects"
    )
    return CorpusError(
        f"data.test_fraction = {test_fraction} leaves subject {subject!r} ({n} chunks) with {train} chunk(s) to train on "
        f"and {test} to test on; every subject needs at least {MIN_TRAIN_PER_SUBJECT} train and "
        f"{MIN_TEST_PER_SUBJECT} test chunk(s). {fix}, or add chunks to {subject!r} (or leave it out with data.subjects)."
    )


def split_corpus(ds: Dataset, *, test_fraction: float = 0.3, seed: int = 13) -> DatasetDict:
    """Deterministic stratified train/test split (same seed and data give the same split).

    Every subject needs at least ``MIN_PER_SUBJECT`` chunks, and the split must leave it at
    least ``MIN_TRAIN_PER_SUBJECT`` train and ``MIN_TEST_PER_SUBJECT`` test chunks; otherwise a
    :class:`CorpusError` names the subject and a ``test_fraction`` that works.

    >>> splits = split_corpus(load_corpus("data/chunks"), test_fraction=0.3)   # doctest: +SKIP
    >>> len(splits["test"]) > 0                                                # doctest: +SKIP
    True
    """
    from datasets import DatasetDict
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise CorpusError(
            f"data.test_fraction = {test_fraction} must be between 0 and 1 (exclusive), e.g. 0.3."
        )
    if not 0 <= seed < 2**32:
        raise CorpusError(f"data.seed = {seed} must be a whole number from 0 to {2**32 - 1}.")
    counts = Counter(ds["subject"])
    small = {s: n for s, n in sorted(counts.items()) if n < MIN_PER_SUBJECT}
    if small:
        raise CorpusError(
            f"subject(s) too small to split into train and test: {small} chunk(s); each needs at least "
            f"{MIN_PER_SUBJECT}. Add chunks or leave the subject out with data.subjects."
        )
    if len(counts) < 2:
        raise CorpusError(
            f"the corpus has only one subject ({list(counts)}); the book compares subjects, so add at least one more."
        )
    n_test = max(len(counts), int(round(test_fraction * len(ds))))
    expected = {
        s: (n - round(n * n_test / len(ds)), round(n * n_test / len(ds))) for s, n in counts.items()
    }
    # Too few train chunks overall: scikit-learn would fail, or starve a subject.
    if len(ds) - n_test < len(counts) * MIN_TRAIN_PER_SUBJECT:
        subject = min(expected, key=lambda s: (expected[s][0], s))
        raise _short_subject_error(
            subject, counts[subject], *expected[subject], test_fraction, counts
        )
    idx = np.arange(len(ds))
    labels = np.asarray(ds["subject"])
    train_idx, test_idx = train_test_split(
        idx, test_size=n_test, stratify=labels, random_state=seed
    )
    train, test = Counter(labels[train_idx]), Counter(labels[test_idx])
    for subject in sorted(counts):
        if train[subject] < MIN_TRAIN_PER_SUBJECT or test[subject] < MIN_TEST_PER_SUBJECT:
            raise _short_subject_error(
                subject, counts[subject], train[subject], test[subject], test_fraction, counts
            )
    return DatasetDict(train=ds.select(np.sort(train_idx)), test=ds.select(np.sort(test_idx)))


def subject_summary(splits: DatasetDict) -> pd.DataFrame:
    """Per-subject table: chunks, train, test and mean words per chunk."""
    rows = []
    for split, part in splits.items():
        for subject, text in zip(part["subject"], part["text"]):
            rows.append({"subject": subject, "split": split, "words": len(text.split())})
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(
        index="subject", columns="split", values="words", aggfunc="size", fill_value=0
    )
    table["chunks"] = table.sum(axis=1)
    table["mean words"] = frame.groupby("subject")["words"].mean().round(1)
    return table[["chunks", "train", "test", "mean words"]].rename_axis(columns=None)


# --- the configured corpus, split once per process -----------------------------------------

_SPLITS: dict[tuple[str, bool], DatasetDict] = {}


def corpus_splits(cfg, *, second: bool = False) -> DatasetDict:
    """Train/test splits of ``paths.data_dir`` (or ``paths.second_data_dir`` with ``second``).

    The one place that turns a configuration into splits; chapters, pre-training and
    fine-tuning receive its result, so they always agree on which chunks are held out.
    Computed once per process and configuration.

    >>> from helpers.config import load_config
    >>> splits = corpus_splits(load_config())          # doctest: +SKIP
    >>> sorted(splits)                                 # doctest: +SKIP
    ['test', 'train']
    """
    from .config import ConfigError

    key = (f"{cfg.source}:{cfg.model_dump_json()}", second)
    if key in _SPLITS:
        return _SPLITS[key]
    if second:
        if cfg.paths.second_data_dir is None:
            raise ConfigError(
                f"{cfg.source}: 'paths.second_data_dir' is not set; point it at a second corpus"
            )
        path, subjects, cap = cfg.paths.second_data_dir, None, cfg.data.second_max_per_subject
    else:
        path, subjects, cap = cfg.paths.data_dir, cfg.data.subjects, cfg.data.max_per_subject
    ds = load_corpus(
        path,
        subjects=subjects,
        max_per_subject=cap,
        seed=cfg.data.seed,
        scratch_dir=cfg.paths.results_dir,
        archive_max_bytes=cfg.data.archive_max_bytes,
        archive_max_members=cfg.data.archive_max_members,
    )
    _SPLITS[key] = split_corpus(ds, test_fraction=cfg.data.test_fraction, seed=cfg.data.seed)
    return _SPLITS[key]


def second_corpus_splits(cfg) -> DatasetDict | None:
    """Splits of ``paths.second_data_dir``, or ``None`` when it is unset or missing."""
    second = cfg.paths.second_data_dir
    return corpus_splits(cfg, second=True) if second is not None and second.exists() else None


def restrict_subjects(splits: DatasetDict, subjects: list[str] | None) -> DatasetDict:
    """``splits`` keeping only rows whose subject is in ``subjects`` (all when ``None``)."""
    from datasets import DatasetDict

    if not subjects:
        return splits
    keep = set(subjects)
    return DatasetDict(
        {
            name: part.select([i for i, s in enumerate(part["subject"]) if s in keep])
            for name, part in splits.items()
        }
    )
