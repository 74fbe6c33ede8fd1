"""Load a corpus of text chunks labelled by subject, and split it into train and test.

Accepted inputs (``paths.data_dir``):

* a folder with one sub-folder per subject holding ``.txt``/``.md`` files, one chunk per file;
* a ``.jsonl``/``.json``/``.csv``/``.parquet`` file, or a folder of them, with ``text`` and
  ``subject`` columns (an ``id`` column is used when present);
* a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` archive holding either of the above.

Subjects are whatever the data holds; nothing here knows about physics or history.

Example
-------
>>> ds = load_corpus("data/chunks")                  # doctest: +SKIP
>>> splits = split_corpus(ds, test_fraction=0.3, seed=13)   # doctest: +SKIP
>>> sorted(splits)                                   # doctest: +SKIP
['test', 'train']
"""

from __future__ import annotations

import json
import logging
import tarfile
import tempfile
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict
from sklearn.model_selection import train_test_split

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt", ".md"}
TABLE_SUFFIXES = {".jsonl", ".json", ".csv", ".parquet"}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
MIN_PER_SUBJECT = 4  # at least one test chunk and a few train chunks per subject
LONG_CHUNK_WORDS = 2000  # far beyond any encoder window: worth telling the reader


class CorpusError(ValueError):
    """A data problem, naming the file or subject and how to fix it."""


def _read_text_file(path: Path) -> str:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}: not valid UTF-8 (bad byte 0x{raw[exc.start]:02x} at offset {exc.start}). "
            "Re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`."
        ) from None
    text = text.strip()
    if not text:
        raise CorpusError(f"{path}: the chunk file is empty. Delete it or put the chunk's text in it.")
    return text


def _load_subject_folders(root: Path) -> pd.DataFrame:
    rows = []
    for subject_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        for f in sorted(subject_dir.rglob("*")):
            if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES and not f.name.startswith("."):
                rel = f.relative_to(root).as_posix()
                rows.append({"id": rel.rsplit(".", 1)[0], "text": _read_text_file(f), "subject": subject_dir.name, "source": rel})
    return pd.DataFrame(rows, columns=["id", "text", "subject", "source"])


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            frame = pd.read_json(path, lines=True, encoding="utf-8")
        elif suffix == ".json":
            frame = pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
        elif suffix == ".csv":
            frame = pd.read_csv(path, encoding="utf-8")
        else:
            frame = pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start}). Re-save it as UTF-8.") from None
    except (ValueError, json.JSONDecodeError) as exc:
        raise CorpusError(f"{path}: cannot be parsed as {suffix[1:].upper()} ({exc}). Check the file's format.") from None
    missing = {"text", "subject"} - set(frame.columns)
    if missing:
        raise CorpusError(
            f"{path}: missing column(s) {sorted(missing)}; found {sorted(map(str, frame.columns))}. "
            "Each record needs a 'text' and a 'subject' field."
        )
    if frame.empty:
        raise CorpusError(f"{path}: holds no records. Remove the file or add rows with 'text' and 'subject'.")
    blank = frame["text"].isna() | (frame["text"].astype(str).str.strip() == "")
    if blank.any():
        first = int(np.flatnonzero(blank.to_numpy())[0])
        raise CorpusError(f"{path}: record {first + 1} has an empty 'text'. Remove it or fill it in.")
    ids = frame["id"].astype(str) if "id" in frame.columns else pd.Series([f"{path.stem}-{i}" for i in range(len(frame))])
    return pd.DataFrame(
        {
            "id": ids.to_numpy(),
            "text": frame["text"].astype(str).str.strip().to_numpy(),
            "subject": frame["subject"].astype(str).to_numpy(),
            "source": path.name,
        }
    )


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest``, refusing absolute paths, ``..`` and links."""

    def check(name: str) -> None:
        pure = PurePosixPath(name.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts:
            raise CorpusError(
                f"{archive}: refuses to extract unsafe member path {name!r} (absolute or containing '..'). "
                "Re-create the archive with relative paths inside one folder."
            )

    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    check(name)
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    check(m.name)
                    if m.issym() or m.islnk() or m.isdev():
                        raise CorpusError(f"{archive}: member {m.name!r} is a link or device; only plain files are accepted.")
                tf.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise CorpusError(f"{archive}: cannot be read as an archive ({exc}). Check that the download is complete.") from None


def _load_path(path: Path) -> pd.DataFrame:
    if path.is_file():
        if path.name.lower().endswith(ARCHIVE_SUFFIXES):
            with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
                _safe_extract(path, Path(tmp))
                inner = Path(tmp)
                entries = [p for p in inner.iterdir() if not p.name.startswith((".", "__MACOSX"))]
                # An archive usually wraps everything in one top folder (chunks/...).
                if len(entries) == 1 and entries[0].is_dir() and not _has_table_files(inner):
                    inner = entries[0]
                frame = _load_path(inner)
                frame["source"] = path.name + ":" + frame["source"].astype(str)
                return frame
        if path.suffix.lower() in TABLE_SUFFIXES:
            return _read_table(path)
        raise CorpusError(
            f"{path}: unsupported file type. Use a folder of subject sub-folders, "
            f"a {'/'.join(sorted(TABLE_SUFFIXES))} file, or a {'/'.join(ARCHIVE_SUFFIXES)} archive."
        )
    if not path.is_dir():
        raise CorpusError(f"{path}: does not exist. Set paths.data_dir to your corpus.")
    # Subject sub-folders win: a manifest.csv beside them describes them, it is not data.
    frame = _load_subject_folders(path)
    if not frame.empty:
        return frame
    tables = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)
    if tables:
        return pd.concat([_read_table(t) for t in tables], ignore_index=True)
    archives = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(ARCHIVE_SUFFIXES))
    if len(archives) == 1:
        return _load_path(archives[0])
    raise CorpusError(
        f"{path}: no chunks found. Expected sub-folders named after subjects holding .txt/.md files "
        "(one chunk per file), or .jsonl/.csv/.parquet files with 'text' and 'subject' columns."
    )
    return frame


def _has_table_files(folder: Path) -> bool:
    return any(p.suffix.lower() in TABLE_SUFFIXES for p in folder.iterdir() if p.is_file())


def _drop_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    key = frame["text"].str.split().str.join(" ").str.lower()
    dup = key.duplicated(keep="first")
    if dup.any():
        examples = ", ".join(frame.loc[dup, "source"].astype(str).head(5))
        log.warning("dropped %d duplicate chunk(s) whose text repeats an earlier one: %s", int(dup.sum()), examples)
    return frame.loc[~dup]


def load_corpus(
    path: str | Path,
    *,
    subjects: list[str] | None = None,
    max_per_subject: int | None = None,
    seed: int = 13,
) -> Dataset:
    """Load chunks from ``path`` into a :class:`datasets.Dataset` with ``id``, ``text``, ``subject``, ``source``.

    Rows are sorted by subject and id, duplicates (same text up to spacing and case) are
    dropped with a warning, ``subjects`` selects subjects, and ``max_per_subject`` keeps a
    seeded random sample of each subject.

    >>> ds = load_corpus("data/chunks", subjects=["physics", "history"])   # doctest: +SKIP
    >>> sorted(set(ds["subject"]))                                         # doctest: +SKIP
    ['history', 'physics']
    """
    path = Path(path)
    frame = _load_path(path)
    frame = frame.sort_values(["subject", "id"], kind="stable").reset_index(drop=True)
    frame = _drop_duplicates(frame)
    if frame["id"].duplicated().any():
        dup_ids = frame.loc[frame["id"].duplicated(), "id"].head(3).tolist()
        raise CorpusError(f"{path}: ids repeat ({dup_ids}). Give every chunk a unique id.")
    available = sorted(frame["subject"].unique())
    if subjects is not None:
        unknown = sorted(set(subjects) - set(available))
        if unknown:
            raise CorpusError(f"{path}: subject(s) {unknown} not in the data; it holds {available}. Fix data.subjects.")
        frame = frame[frame["subject"].isin(subjects)]
    if max_per_subject is not None:
        rng = np.random.default_rng(seed)
        parts = []
        for _, group in frame.groupby("subject", sort=True):
            if len(group) > max_per_subject:
                group = group.iloc[np.sort(rng.choice(len(group), size=max_per_subject, replace=False))]
            parts.append(group)
        frame = pd.concat(parts)
    long = frame["text"].str.split().str.len() > LONG_CHUNK_WORDS
    if long.any():
        log.warning(
            "%d chunk(s) have more than %d words (%s); encoders read only their first tokens (see encoding.max_length)",
            int(long.sum()), LONG_CHUNK_WORDS, ", ".join(frame.loc[long, "source"].astype(str).head(3)),
        )
    frame = frame.reset_index(drop=True)
    return Dataset.from_pandas(frame[["id", "text", "subject", "source"]], preserve_index=False)


def split_corpus(ds: Dataset, *, test_fraction: float = 0.3, seed: int = 13) -> DatasetDict:
    """Deterministic stratified train/test split (same seed and data give the same split).

    Every subject needs at least ``MIN_PER_SUBJECT`` chunks.

    >>> splits = split_corpus(load_corpus("data/chunks"), test_fraction=0.3)   # doctest: +SKIP
    >>> len(splits["test"]) > 0                                                # doctest: +SKIP
    True
    """
    counts = Counter(ds["subject"])
    small = {s: n for s, n in sorted(counts.items()) if n < MIN_PER_SUBJECT}
    if small:
        raise CorpusError(
            f"subject(s) too small to split into train and test: {small} chunk(s); each needs at least "
            f"{MIN_PER_SUBJECT}. Add chunks or leave the subject out with data.subjects."
        )
    if len(counts) < 2:
        raise CorpusError(f"the corpus has only one subject ({list(counts)}); the book compares subjects, so add at least one more.")
    idx = np.arange(len(ds))
    labels = np.asarray(ds["subject"])
    n_test = max(len(counts), int(round(test_fraction * len(ds))))
    train_idx, test_idx = train_test_split(idx, test_size=n_test, stratify=labels, random_state=seed)
    return DatasetDict(train=ds.select(np.sort(train_idx)), test=ds.select(np.sort(test_idx)))


def subject_summary(splits: DatasetDict) -> pd.DataFrame:
    """Per-subject table: chunks, train, test and mean words per chunk."""
    rows = []
    for split, part in splits.items():
        for subject, text in zip(part["subject"], part["text"]):
            rows.append({"subject": subject, "split": split, "words": len(text.split())})
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index="subject", columns="split", values="words", aggfunc="size", fill_value=0)
    table["chunks"] = table.sum(axis=1)
    table["mean words"] = frame.groupby("subject")["words"].mean().round(1)
    return table[["chunks", "train", "test", "mean words"]].rename_axis(columns=None)
