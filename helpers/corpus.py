"""Load a corpus of text chunks labelled by subject, and split it into train and test.

Accepted inputs (``paths.data_dir``):

* a folder with one sub-folder per subject holding ``.txt``/``.md`` files, one chunk per file;
* a ``.jsonl``/``.json``/``.csv``/``.parquet`` file, or a folder of them, with ``text`` and
  ``subject`` columns (an ``id`` column is used when present);

Every row also gets a ``group``, a finer label within its subject (``""`` where the data has
none): a table's ``data.group_field`` column (unset: ``subtopic`` or ``group`` when present),
or for subject folders that column of a manifest beside them (``data/chunks/manifest.csv``).
Groups never enter a cache or model key: those hash texts and subjects only.

* a ``.tar.gz``/``.tgz``/``.tar.bz2``/``.tar.xz``/``.tar``/``.zip`` archive holding either of
  the above. It is extracted into a scratch folder (``.extract-*`` under ``scratch_dir``)
  within limits on size and member count, and removed afterwards (:mod:`helpers.archives`).

Subjects are whatever the data holds; nothing here knows about physics or history. Table
cells are read as text: a subject called ``NA`` or ``null`` is a subject like any other.

This module decides the layout (subject folders, tables or an archive; never a mix), checks
subject names and ids, drops repeated texts, splits, and caches the configured corpus's
splits once per process. Reading and checking the files themselves (bytes, decoding, links,
sizes, table columns) is :mod:`helpers.chunk_files`.

Example
-------
>>> ds = load_corpus("data/chunks")                  # doctest: +SKIP
>>> splits = split_corpus(ds, test_fraction=0.3, seed=13)   # doctest: +SKIP
>>> sorted(splits)                                   # doctest: +SKIP
['test', 'train']
"""

from __future__ import annotations

import logging
import math
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

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
)
from .chunk_files import (
    COLUMNS,
    TABLE_SUFFIXES,
    holds_texts,
    is_blank,
    listing,
    manifest_groups,
    read_chunk_files,
    read_table,
    subject_chunk_files,
)
from .names import (
    ARCHIVE_MAX_BYTES,
    ARCHIVE_MAX_MEMBERS,
    MIN_PER_SUBJECT,
    MIN_TEST_PER_SUBJECT,
    MIN_TRAIN_PER_SUBJECT,
)

# datasets and scikit-learn are imported where needed: `check` stays light on bad input.
if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

log = logging.getLogger(__name__)

LONG_CHUNK_WORDS = 2000  # far beyond any encoder window: worth telling the reader
MAX_CONFLICTS_SHOWN = 20
#: Bidirectional embeddings, overrides and isolates: they reorder what a terminal or page shows.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


# --- folders and files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    scratch_dir: Path | None  # where archives are extracted (None: the system temp folder)
    budget: ArchiveBudget
    nesting: int = 0
    group_field: str | None = None  # data.group_field (None: auto, see chunk_files.group_column)


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
            return read_table(path, ctx.group_field)
        raise CorpusError(
            f"{path}: unsupported file type. Use a folder of subject sub-folders, "
            f"a {'/'.join(sorted(TABLE_SUFFIXES))} file, or a {'/'.join(ARCHIVE_SUFFIXES)} archive."
        )
    if not path.is_dir():
        raise CorpusError(
            f"{path}: does not exist (or is not a file or folder). Set paths.data_dir to your corpus."
        )
    entries = listing(path)  # data_dir itself may be a link; nothing inside it may
    files = subject_chunk_files(path, entries)
    # Hidden files are never data (macOS's tar adds a binary "._name" beside each file).
    files_here = [p for p in entries if p.is_file() and not p.name.startswith(".")]
    tables = [p for p in files_here if p.suffix.lower() in TABLE_SUFFIXES]
    archives = [p for p in files_here if is_archive(p)]
    if files:
        _refuse_beside_folders(path, [t for t in tables if holds_texts(t)], archives)
        return read_chunk_files(path, files, manifest_groups(path, tables, ctx.group_field))
    if tables and archives:
        raise _mixed(path, f"tables ({_names(tables)})", "archives", archives)
    if tables:
        return pd.concat([read_table(t, ctx.group_field) for t in tables], ignore_index=True)
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
    group_field: str | None = None,
) -> Dataset:
    """Load chunks from ``path`` into a :class:`datasets.Dataset` with ``id``, ``text``, ``subject``,
    ``source`` and ``group`` (``""`` where the data has none; ``group_field`` as ``data.group_field``).

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
            path,
            _Context(
                None if scratch_dir is None else Path(scratch_dir), budget, group_field=group_field
            ),
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
    # Columns in their historical order, `group` last; every one a string column.
    return Dataset.from_pandas(
        frame[[c for c in COLUMNS if c != "group"] + ["group"]], preserve_index=False
    )


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
            if column == "subject" and is_blank(value):
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
        # data.subjects and data.group_field describe the main corpus; the second one keeps
        # all its subjects and finds its groups itself (auto).
        path, subjects, cap = cfg.paths.second_data_dir, None, cfg.data.second_max_per_subject
        group_field = None
    else:
        path, subjects, cap = cfg.paths.data_dir, cfg.data.subjects, cfg.data.max_per_subject
        group_field = cfg.data.group_field
    ds = load_corpus(
        path,
        subjects=subjects,
        max_per_subject=cap,
        seed=cfg.data.seed,
        scratch_dir=cfg.paths.results_dir,
        archive_max_bytes=cfg.data.archive_max_bytes,
        archive_max_members=cfg.data.archive_max_members,
        group_field=group_field,
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
