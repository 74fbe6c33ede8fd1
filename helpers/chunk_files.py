"""Read the files of a corpus: chunk files in subject folders, and tables of chunks.

Everything about the files themselves lives here: bytes and text decoding (UTF-8 only;
UTF-16 and NUL bytes get advice), size limits, symbolic links (refused), folders that are
not subjects (``.`` or ``_`` first), and table records (repeated JSON keys or CSV columns,
``text``/``subject``/``id`` cells that are missing, empty, not text or too long). Each
reader returns a frame with ``id``, ``text``, ``subject``, ``group`` and ``source`` columns.
``group`` is a finer label inside a subject (a subtopic, a chapter; ``""`` where the data has
none): from a table's ``data.group_field`` column (by default the first of
:data:`AUTO_GROUP_FIELDS` it has), or for subject folders from a manifest beside them (a
table with a ``file`` column, e.g. ``manifest.csv``, and no ``text`` column). Which layout a
data folder has, and what happens to the rows next, is :mod:`helpers.corpus`'s job.

Example
-------
>>> is_blank("\u200b \\n"), is_blank("a chunk")
(True, False)
>>> frame = read_table(Path("data/chunks.jsonl"))    # doctest: +SKIP
>>> list(frame.columns)                              # doctest: +SKIP
['id', 'text', 'subject', 'group', 'source']
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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .archives import CorpusError, excerpt, is_chunk_file
from .names import CHUNK_FILE_MAX_BYTES

log = logging.getLogger(__name__)

TABLE_SUFFIXES = {".jsonl", ".json", ".csv", ".parquet"}
SKIPPED_PREFIXES = (".", "_")  # folders not read as subjects (hidden, _drafts, __pycache__)
ARCHIVE_LITTER = "__MACOSX"  # what macOS adds to a zip: never data, never worth a warning
#: Characters that show nothing: a chunk or subject made only of them (and spaces) is empty.
INVISIBLE = "\0\u200b\u200c\u200d\u2060\ufeff"
_DROP_INVISIBLE = str.maketrans("", "", INVISIBLE)
#: The columns every reader returns.
COLUMNS = ["id", "text", "subject", "group", "source"]
#: With ``data.group_field`` unset, a table's group is the first of these columns it has.
AUTO_GROUP_FIELDS = ("subtopic", "group")
#: The column of a manifest naming the chunk file a row describes (``physics/001.txt``).
MANIFEST_FILE_COLUMN = "file"


# --- text files ------------------------------------------------------------------------------------


def is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: only whitespace, zero-width characters or NULs.

    >>> is_blank("\u200b \ufeff\\n"), is_blank("a\u200b")
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
    if is_blank(text):
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


def listing(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted; a symbolic link among them is refused (nothing is read)."""
    entries = sorted(folder.iterdir())
    for entry in entries:
        if entry.is_symlink():
            raise _link_error(entry)
    return entries


def _subject_files(subject_dir: Path) -> list[Path]:
    """The chunk files under ``subject_dir`` at any depth, sorted; refuses links, reads nothing."""
    files, todo = [], [subject_dir]
    while todo:
        for entry in listing(todo.pop()):
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


def subject_chunk_files(root: Path, entries: list[Path]) -> list[tuple[Path, Path]]:
    """``(subject folder, chunk file)`` pairs among ``entries``, the listing of the data folder ``root``.

    Folders whose name starts with ``.`` or ``_`` are not subjects (a warning names those
    holding chunk files); links are refused; nothing is read.
    """
    _warn_skipped(root, entries)
    return [
        (folder, f)
        for folder in entries
        if folder.is_dir() and not folder.name.startswith(SKIPPED_PREFIXES)
        for f in _subject_files(folder)
    ]


def read_chunk_files(
    root: Path, files: list[tuple[Path, Path]], groups: dict[str, str] | None = None
) -> pd.DataFrame:
    """One row per ``(subject folder, chunk file)``; ``groups`` maps a file's path under
    ``root`` (``physics/001.txt``) to its group (see :func:`manifest_groups`), ``""`` if absent."""
    groups = groups or {}
    rows = []
    for subject_dir, f in files:
        rel = _utf8_name(root, f.relative_to(root).as_posix())
        rows.append(
            {
                "id": rel.rsplit(".", 1)[0],
                "text": _read_text_file(f),
                "subject": subject_dir.name,
                "group": groups.get(rel, ""),
                "source": rel,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


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
    if value is None or is_blank(value):
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


def _group_cell(path: Path, where: str, record: dict, column: str) -> str:
    """A group cell as text (a number becomes its digits); missing or blank gives ``""``."""
    try:
        value = _cell(record.get(column))
    except TypeError as exc:
        raise CorpusError(
            f"{path}: {where} has a {column!r} (the group, data.group_field) that is {exc}. "
            "Make it a string, or leave it empty."
        ) from None
    return "" if value is None or is_blank(value) else value.strip()


def group_column(path: Path, columns: set[str], group_field: str | None) -> str | None:
    """The column of the table ``path`` (with ``columns``) holding groups, or ``None``.

    ``group_field`` ``None`` picks the first of :data:`AUTO_GROUP_FIELDS` present; a name
    must be present, or ONE error names the file, the key and the fix.

    >>> group_column(Path("a.jsonl"), {"text", "subtopic"}, None)
    'subtopic'
    >>> group_column(Path("a.jsonl"), {"text", "chapter"}, None) is None
    True
    """
    if group_field is None:
        return next((c for c in AUTO_GROUP_FIELDS if c in columns), None)
    if group_field not in columns:
        raise CorpusError(
            f"{path}: has no {group_field!r} column, which data.group_field names; found "
            f"{sorted(columns)[:20]}. Set data.group_field to one of its columns, or to null "
            f"(then the first of {list(AUTO_GROUP_FIELDS)} present is used, if any)."
        )
    return group_field


def read_table(path: Path, group_field: str | None = None) -> pd.DataFrame:
    """One row per record of the table file ``path``; without an ``id`` column, ids are ``<stem>-<n>``.

    ``group`` comes from the column :func:`group_column` picks (``""`` where there is none).
    """
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
    group = group_column(path, columns, group_field)
    rows = []
    for i, (where, record) in enumerate(records):
        rows.append(
            {
                "id": _field(path, where, record, "id") if "id" in columns else f"{path.stem}-{i}",
                "text": _field(path, where, record, "text"),
                "subject": _field(path, where, record, "subject"),
                "group": "" if group is None else _group_cell(path, where, record, group),
                "source": path.name,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def manifest_groups(root: Path, tables: list[Path], group_field: str | None) -> dict[str, str]:
    """File under ``root`` -> group, from the manifests among ``tables`` (beside subject folders).

    A manifest is a table with a ``file`` column (``physics/001.txt``, relative to ``root``)
    and no ``text`` column, like ``data/chunks/manifest.csv``; its group column is chosen as
    for a table of chunks (:func:`group_column`). Other tables are ignored. With
    ``group_field`` set, the folder needs a manifest holding that column.
    """
    groups: dict[str, str] = {}
    manifests = []
    for table in tables:
        records = [(w, r) for w, r in _table_records(table) if isinstance(r, dict)]
        columns = {str(k) for _, record in records for k in record}
        if MANIFEST_FILE_COLUMN not in columns or "text" in columns:
            continue
        manifests.append(table)
        group = group_column(table, columns, group_field)
        if group is None:
            continue
        for where, record in records:
            name = _cell_or_none(record.get(MANIFEST_FILE_COLUMN))
            if name:
                groups[name.strip()] = _group_cell(table, where, record, group)
    if group_field is not None and not manifests:
        raise CorpusError(
            f"{root}: data.group_field is {group_field!r}, but the subject folders have no manifest "
            f"(a .csv/.jsonl table beside them with a {MANIFEST_FILE_COLUMN!r} column and a "
            f"{group_field!r} column). Add one, or set data.group_field to null."
        )
    return groups


def _cell_or_none(value: Any) -> str | None:
    try:
        return _cell(value)
    except TypeError:
        return None


def holds_texts(table: Path) -> bool:
    """Whether a table has a ``text`` column (a manifest describing subject folders has none)."""
    return any(isinstance(record, dict) and "text" in record for _, record in _table_records(table))
