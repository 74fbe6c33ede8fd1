"""The corpus loader (every accepted input format, every data problem) and the train/test split."""

from __future__ import annotations

import io
import json
import logging
import tarfile
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import OPENSTAX, build_corpus, chunk_text, corpus_records
from planted import outside_folder

from helpers.corpus import CorpusError, load_corpus, split_corpus

SUBJECTS = {"physics", "biology", "history"}


def chunks(ds) -> set[tuple[str, str]]:
    """The (subject, text) pairs of a dataset."""
    return set(zip(ds["subject"], ds["text"]))


def expected(root: Path) -> set[tuple[str, str]]:
    return {(r["subject"], r["text"]) for r in corpus_records(root)}


def assert_well_formed(ds) -> None:
    assert ds.column_names == ["id", "text", "subject", "source", "group"]
    assert len(set(ds["id"])) == len(ds), "ids must be unique"
    assert all(t.strip() == t and t for t in ds["text"])


# --- input formats ----------------------------------------------------------------------


def test_subject_folders(tiny_corpus):
    ds = load_corpus(tiny_corpus)
    assert_well_formed(ds)
    assert chunks(ds) == expected(tiny_corpus)
    assert Counter(ds["subject"]) == {s: 6 for s in SUBJECTS}
    assert all(src.startswith(f"{subj}/") for src, subj in zip(ds["source"], ds["subject"]))


def test_rows_sorted_by_subject_then_id(tiny_corpus):
    ds = load_corpus(tiny_corpus)
    keys = list(zip(ds["subject"], ds["id"]))
    assert keys == sorted(keys)


def test_jsonl_file(tiny_corpus, tmp_path):
    path = tmp_path / "chunks.jsonl"
    pd.DataFrame(corpus_records(tiny_corpus)).to_json(path, orient="records", lines=True)
    ds = load_corpus(path)
    assert_well_formed(ds)
    assert chunks(ds) == expected(tiny_corpus)
    assert set(ds["id"]) == {r["id"] for r in corpus_records(tiny_corpus)}


def test_csv_file(tiny_corpus, tmp_path):
    records = corpus_records(tiny_corpus)
    records[0]["text"] = 'A chunk with "quotes", commas, and\na line break.'
    path = tmp_path / "chunks.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    ds = load_corpus(path)
    assert_well_formed(ds)
    assert chunks(ds) == {(r["subject"], r["text"]) for r in records}


def test_parquet_file(tiny_corpus, tmp_path):
    path = tmp_path / "chunks.parquet"
    pd.DataFrame(corpus_records(tiny_corpus)).to_parquet(path)
    ds = load_corpus(path)
    assert_well_formed(ds)
    assert chunks(ds) == expected(tiny_corpus)


def test_folder_of_jsonl_files_without_ids(tiny_corpus, tmp_path):
    folder = tmp_path / "tables"
    folder.mkdir()
    frame = pd.DataFrame(corpus_records(tiny_corpus)).drop(columns="id")
    for subject, part in frame.groupby("subject"):
        part.to_json(folder / f"{subject}.jsonl", orient="records", lines=True)
    ds = load_corpus(folder)
    assert_well_formed(ds)  # ids are generated, still unique across files
    assert chunks(ds) == expected(tiny_corpus)


def _tar_gz(src: Path, dest: Path, top: str = "chunks") -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(src, arcname=top)
    return dest


def _zip(src: Path, dest: Path, top: str = "chunks") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(src.rglob("*")):
            zf.write(f, f"{top}/{f.relative_to(src).as_posix()}")
    return dest


@pytest.mark.parametrize("make, name", [(_tar_gz, "corpus.tar.gz"), (_zip, "corpus.zip")])
def test_archive_of_subject_folders_with_top_folder(tiny_corpus, tmp_path, make, name):
    archive = make(tiny_corpus, tmp_path / name)
    ds = load_corpus(archive)
    assert_well_formed(ds)
    assert chunks(ds) == expected(tiny_corpus)
    assert set(ds["subject"]) == SUBJECTS  # not the wrapping folder "chunks"
    assert all(src.startswith(f"{name}:") for src in ds["source"])


def _evil_tar(src: Path, dest: Path) -> Path:
    _tar_gz(src, dest)
    with tarfile.open(dest, "r:gz") as tf:
        members = [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf.getmembers()]
    with tarfile.open(dest, "w:gz") as tf:
        for m, data in members:
            tf.addfile(m, io.BytesIO(data) if data is not None else None)
        evil = tarfile.TarInfo("../evil.txt")
        payload = b"written outside the extraction folder"
        evil.size = len(payload)
        tf.addfile(evil, io.BytesIO(payload))
    return dest


def _evil_zip(src: Path, dest: Path) -> Path:
    _zip(src, dest)
    with zipfile.ZipFile(dest, "a") as zf:
        zf.writestr("../evil.txt", "written outside the extraction folder")
    return dest


@pytest.mark.parametrize("make, name", [(_evil_tar, "evil.tar.gz"), (_evil_zip, "evil.zip")])
def test_archive_with_parent_path_member_is_refused(tiny_corpus, tmp_path, monkeypatch, make, name):
    (tmp_path / "archives").mkdir()
    archive = make(tiny_corpus, tmp_path / "archives" / name)
    extract_root = tmp_path / "extract"
    extract_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(extract_root))  # extraction happens in here
    with pytest.raises(CorpusError) as info:
        load_corpus(archive)
    message = str(info.value)
    assert name in message and "unsafe" in message and "../evil.txt" in message
    # Nothing was written outside (or inside) the extraction folder, and it was cleaned up.
    assert [p.name for p in tmp_path.rglob("evil.txt")] == []
    assert list(extract_root.iterdir()) == []


def test_tar_with_symlink_is_refused(tiny_corpus, tmp_path):
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(tiny_corpus, arcname="chunks")
        link = tarfile.TarInfo("chunks/physics/link.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(CorpusError, match="link"):
        load_corpus(archive)


def test_corrupt_archive(tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 this is not really a zip file")
    with pytest.raises(CorpusError) as info:
        load_corpus(archive)
    assert "broken.zip" in str(info.value) and "archive" in str(info.value)


def test_manifest_beside_subject_folders_is_not_data(tiny_corpus):
    """A table describing the folders (no 'text' column), like data/chunks/manifest.csv."""
    manifest = pd.DataFrame({"file": ["physics/000.txt"], "subject": ["physics"], "words": [30]})
    manifest.to_csv(tiny_corpus / "manifest.csv", index=False)
    ds = load_corpus(tiny_corpus)
    assert chunks(ds) == expected(tiny_corpus)
    assert "manifest.csv" not in ds["source"]


# --- groups (a subtopic within a subject) ---------------------------------------------------


def _groups(ds) -> dict[str, str]:
    return dict(zip(ds["id"], ds["group"]))


def test_subject_folders_take_groups_from_the_manifest(tiny_corpus):
    files = sorted(p.relative_to(tiny_corpus).as_posix() for p in tiny_corpus.glob("*/*.txt"))
    listed = files[:-1]  # the last chunk is not in the manifest: its group is ""
    manifest = pd.DataFrame(
        {
            "file": listed,
            "subject": [f.split("/")[0] for f in listed],
            "subtopic": [f"topic {int(f[-7:-4]) % 2}" for f in listed],
        }
    )
    manifest.to_csv(tiny_corpus / "manifest.csv", index=False)
    groups = _groups(load_corpus(tiny_corpus))
    assert groups["physics/001"] == "topic 1" and groups["biology/002"] == "topic 0"
    assert groups[files[-1].rsplit(".", 1)[0]] == ""


def test_groups_are_empty_without_a_manifest(tiny_corpus):
    assert set(load_corpus(tiny_corpus)["group"]) == {""}


def test_jsonl_subtopic_column_is_the_group(tiny_corpus, tmp_path):
    records = corpus_records(tiny_corpus)
    for i, r in enumerate(records):
        r["subtopic"] = None if i == 0 else i % 3  # a missing cell, and numbers read as text
    path = tmp_path / "chunks.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    groups = _groups(load_corpus(path))
    assert groups[records[0]["id"]] == ""
    assert groups[records[4]["id"]] == "1"


def test_group_field_names_the_column(tiny_corpus, tmp_path):
    records = [
        {**r, "chapter": f"chapter {i % 2}", "subtopic": "ignored"}
        for i, r in enumerate(corpus_records(tiny_corpus))
    ]
    path = tmp_path / "chunks.jsonl"
    pd.DataFrame(records).to_json(path, orient="records", lines=True)
    groups = _groups(load_corpus(path, group_field="chapter"))
    assert set(groups.values()) == {"chapter 0", "chapter 1"}


def test_missing_group_field_is_one_clear_error(tiny_corpus, tmp_path):
    path = tmp_path / "chunks.jsonl"
    pd.DataFrame(corpus_records(tiny_corpus)).to_json(path, orient="records", lines=True)
    with pytest.raises(CorpusError) as info:
        load_corpus(path, group_field="chapter")
    message = str(info.value)
    assert "chunks.jsonl" in message and "data.group_field" in message and "'chapter'" in message


def test_group_field_on_subject_folders_needs_a_manifest_with_it(tiny_corpus):
    with pytest.raises(CorpusError, match="no manifest.*data.group_field"):
        load_corpus(tiny_corpus, group_field="chapter")
    pd.DataFrame({"file": ["physics/000.txt"], "subtopic": ["x"]}).to_csv(
        tiny_corpus / "manifest.csv", index=False
    )
    with pytest.raises(CorpusError, match="manifest.csv: has no 'chapter' column"):
        load_corpus(tiny_corpus, group_field="chapter")


def test_splits_keep_the_groups(tiny_corpus):
    from helpers.corpus import restrict_subjects

    rows = [
        {"file": p.relative_to(tiny_corpus).as_posix(), "subtopic": p.stem}
        for p in tiny_corpus.glob("*/*.txt")
    ]
    pd.DataFrame(rows).to_csv(tiny_corpus / "manifest.csv", index=False)
    splits = restrict_subjects(split_corpus(load_corpus(tiny_corpus)), ["physics"])
    for part in splits.values():
        assert [g for g in part["group"]] == [i.split("/")[1] for i in part["id"]]


def test_hidden_files_beside_subject_folders_are_not_data(tiny_corpus):
    """macOS's tar adds a binary "._name" beside each file."""
    (tiny_corpus / "._manifest.csv").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    assert chunks(load_corpus(tiny_corpus)) == expected(tiny_corpus)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_table_of_chunks_beside_subject_folders_is_refused(tiny_corpus, suffix):
    """Its chunks would be silently left out: the two layouts cannot be mixed."""
    _table(
        [{"text": "A chunk that only the table holds.", "subject": "physics"}],
        tiny_corpus / f"extra{suffix}",
    )
    with pytest.raises(CorpusError, match=rf"subject folders and also tables.*extra\{suffix}"):
        load_corpus(tiny_corpus)


def test_archive_beside_subject_folders_is_refused(tiny_corpus, tmp_path):
    _tar_gz(build_corpus(tmp_path / "other"), tiny_corpus / "more.tar.gz")
    with pytest.raises(CorpusError, match="subject folders and also archives.*more.tar.gz"):
        load_corpus(tiny_corpus)


def test_two_archives_are_both_named(tiny_corpus, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _tar_gz(tiny_corpus, data / "a.tar.gz")
    _zip(tiny_corpus, data / "b.zip")
    with pytest.raises(CorpusError, match=r"2 archives \('a.tar.gz', 'b.zip'\)"):
        load_corpus(data, scratch_dir=tmp_path / "scratch")


# --- data problems --------------------------------------------------------------------------


def test_empty_chunk_file_is_named(tiny_corpus):
    empty = tiny_corpus / "biology" / "empty.txt"
    empty.write_text("  \n\n", encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_corpus(tiny_corpus)
    assert str(empty) in str(info.value) and "empty" in str(info.value)


def test_non_utf8_file_names_file_and_offset(tiny_corpus):
    prefix = b"Entropy rises in an isolated system, na"
    bad = tiny_corpus / "physics" / "latin1.txt"
    bad.write_bytes(prefix + "\u00efve readers say.".encode("latin-1"))
    with pytest.raises(CorpusError) as info:
        load_corpus(tiny_corpus)
    message = str(info.value)
    assert str(bad) in message
    assert f"offset {len(prefix)}" in message
    assert "UTF-8" in message


def test_empty_text_in_table_names_record(tiny_corpus, tmp_path):
    records = corpus_records(tiny_corpus)
    records[4]["text"] = "   "
    path = tmp_path / "chunks.jsonl"
    pd.DataFrame(records).to_json(path, orient="records", lines=True)
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    assert "chunks.jsonl" in str(info.value) and "record 5" in str(info.value)


def test_subject_with_two_files_cannot_be_split(tiny_corpus):
    build_corpus(tiny_corpus, subjects=("chemistry",), per_subject=2)
    ds = load_corpus(tiny_corpus)
    with pytest.raises(CorpusError) as info:
        split_corpus(ds)
    message = str(info.value)
    assert "chemistry" in message
    assert not any(s in message for s in SUBJECTS), "only the small subject should be named"
    assert "data.subjects" in message  # the fix: leave it out


def test_leaving_out_small_subject_makes_split_work(tiny_corpus):
    build_corpus(tiny_corpus, subjects=("chemistry",), per_subject=2)
    splits = split_corpus(load_corpus(tiny_corpus, subjects=sorted(SUBJECTS)))
    assert set(splits["test"]["subject"]) == SUBJECTS


def test_single_subject_cannot_be_split(tiny_corpus):
    with pytest.raises(CorpusError, match="only one subject"):
        split_corpus(load_corpus(tiny_corpus, subjects=["physics"]))


def test_duplicates_dropped_with_warning(tiny_corpus, caplog):
    original = (tiny_corpus / "physics" / "000.txt").read_text(encoding="utf-8")
    copy = "  " + "   ".join(original.upper().split()) + "\n"
    (tiny_corpus / "physics" / "zzz.txt").write_text(copy, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="helpers.corpus"):
        ds = load_corpus(tiny_corpus)
    assert len(ds) == 18
    assert ("physics", original) in chunks(ds)
    assert "physics/zzz" not in ds["id"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("duplicate" in w and "physics/zzz.txt" in w for w in warnings), warnings


def test_repeated_ids_are_an_error(tiny_corpus, tmp_path):
    records = corpus_records(tiny_corpus)
    records[1]["id"] = records[0]["id"]
    path = tmp_path / "chunks.jsonl"
    pd.DataFrame(records).to_json(path, orient="records", lines=True)
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    assert records[0]["id"] in str(info.value) and "unique id" in str(info.value)


def test_table_without_subject_column_lists_found_columns(tmp_path):
    path = tmp_path / "chunks.jsonl"
    pd.DataFrame(
        {"id": ["a", "b"], "text": ["One text.", "Two text."], "topic": ["x", "y"]}
    ).to_json(path, orient="records", lines=True)
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    message = str(info.value)
    assert "chunks.jsonl" in message and "'subject'" in message
    assert all(f"'{c}'" in message for c in ("id", "text", "topic"))


def test_unparsable_table(tmp_path):
    path = tmp_path / "chunks.jsonl"
    path.write_text('{"text": "fine", "subject": "a"}\n{not json at all\n', encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    assert "chunks.jsonl" in str(info.value) and "JSONL" in str(info.value)


def test_very_long_chunk_warns(tiny_corpus, caplog):
    words = chunk_text("history", 99, n_words=50_000)
    (tiny_corpus / "history" / "long.txt").write_text(words, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="helpers.corpus"):
        ds = load_corpus(tiny_corpus)
    assert len(ds) == 19
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("history/long.txt" in w and "words" in w for w in warnings), warnings


def test_normal_chunks_do_not_warn(tiny_corpus, caplog):
    with caplog.at_level(logging.WARNING, logger="helpers.corpus"):
        load_corpus(tiny_corpus)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "chunks.docx"
    path.write_bytes(b"not a corpus")
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    assert "chunks.docx" in str(info.value) and "unsupported" in str(info.value)


def test_folder_without_chunks(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no chunks found"):
        load_corpus(tmp_path / "empty")


def test_missing_path(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "nowhere")


# --- selection and caps ---------------------------------------------------------------------


def test_subjects_selection(tiny_corpus):
    ds = load_corpus(tiny_corpus, subjects=["history", "physics"])
    assert set(ds["subject"]) == {"history", "physics"}
    assert len(ds) == 12


def test_unknown_subject_is_named_with_available_ones(tiny_corpus):
    with pytest.raises(CorpusError) as info:
        load_corpus(tiny_corpus, subjects=["physics", "geology"])
    message = str(info.value)
    assert (
        "geology" in message and all(s in message for s in SUBJECTS) and "data.subjects" in message
    )


@pytest.mark.parametrize("cap", [2, 3, 5, 6, 10])
def test_max_per_subject_caps_each_subject(tiny_corpus, cap):
    ds = load_corpus(tiny_corpus, max_per_subject=cap)
    assert Counter(ds["subject"]) == {s: min(cap, 6) for s in SUBJECTS}
    assert chunks(ds) <= expected(tiny_corpus)


def test_max_per_subject_is_deterministic(tiny_corpus):
    first = load_corpus(tiny_corpus, max_per_subject=3, seed=5)["id"]
    again = load_corpus(tiny_corpus, max_per_subject=3, seed=5)["id"]
    other = load_corpus(tiny_corpus, max_per_subject=3, seed=6)["id"]
    assert first == again
    assert first != other  # the seed matters (all 3 subjects agreeing by chance: 1 in 8000)


# --- split -------------------------------------------------------------------------------------


@pytest.fixture
def bigger_corpus(tmp_path):
    return load_corpus(
        build_corpus(
            tmp_path / "bigger",
            subjects=("physics", "biology", "history", "chemistry"),
            per_subject=12,
        )
    )


@pytest.mark.parametrize("fraction, seed", [(0.3, 13), (0.2, 1), (0.5, 7)])
def test_split_is_disjoint_covering_and_stratified(bigger_corpus, fraction, seed):
    splits = split_corpus(bigger_corpus, test_fraction=fraction, seed=seed)
    train, test = set(splits["train"]["id"]), set(splits["test"]["id"])
    assert not train & test
    assert train | test == set(bigger_corpus["id"])
    assert len(splits["train"]) + len(splits["test"]) == len(bigger_corpus)
    assert len(splits["test"]) == round(fraction * len(bigger_corpus))
    subjects = set(bigger_corpus["subject"])
    assert set(splits["train"]["subject"]) == subjects == set(splits["test"]["subject"])
    # stratified: each subject's test share is close to the overall fraction
    per_subject = Counter(splits["test"]["subject"])
    assert all(abs(n / 12 - fraction) <= 1 / 12 + 1e-9 for n in per_subject.values()), per_subject


def test_split_is_deterministic(bigger_corpus):
    a = split_corpus(bigger_corpus, test_fraction=0.3, seed=13)
    b = split_corpus(bigger_corpus, test_fraction=0.3, seed=13)
    c = split_corpus(bigger_corpus, test_fraction=0.3, seed=14)
    assert a["test"]["id"] == b["test"]["id"] and a["train"]["id"] == b["train"]["id"]
    assert a["test"]["id"] != c["test"]["id"]


def test_tiny_test_fraction_still_puts_every_subject_in_test(tiny_corpus):
    splits = split_corpus(load_corpus(tiny_corpus), test_fraction=0.01, seed=13)
    assert set(splits["test"]["subject"]) == SUBJECTS


# --- the shared OpenStax corpus ---------------------------------------------------------------


@pytest.mark.skipif(not OPENSTAX.is_dir(), reason=f"{OPENSTAX} is absent")
def test_openstax_corpus_loads():
    ds = load_corpus(OPENSTAX, subjects=["physics", "biology", "history"], max_per_subject=50)
    assert_well_formed(ds)
    assert Counter(ds["subject"]) == {"physics": 50, "biology": 50, "history": 50}
    splits = split_corpus(ds, test_fraction=0.3, seed=13)
    assert set(splits["test"]["subject"]) == {"physics", "biology", "history"}


# --- subjects that look like missing values (issue 17) ---------------------------------------------


def _table(records: list[dict], path: Path) -> Path:
    frame = pd.DataFrame(records)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_subjects_named_like_missing_values_are_subjects(tmp_path, suffix):
    names = ["NA", "None", "null", "NaN", "n/a"]
    records = [
        {
            "id": f"{s}-{i}",
            "text": f"Chunk {i} about {s}: " + chunk_text("physics", i),
            "subject": s,
        }
        for s in names
        for i in range(4)
    ]
    ds = load_corpus(_table(records, tmp_path / f"chunks{suffix}"))
    assert Counter(ds["subject"]) == {s: 4 for s in names}
    assert set(ds["id"]) == {r["id"] for r in records}


def test_csv_values_are_read_as_text(tmp_path):
    path = tmp_path / "chunks.csv"
    path.write_text("id,text,subject\n007,1.50,1990\n008,True,1990\n", encoding="utf-8")
    ds = load_corpus(path)
    assert (
        ds["id"] == ["007", "008"]
        and ds["text"] == ["1.50", "True"]
        and ds["subject"] == ["1990", "1990"]
    )


@pytest.mark.parametrize(
    "suffix, empty, where",
    [
        (".csv", "", "record 3 (row 4 counting the header)"),
        (".csv", "   ", "record 3"),
        (".jsonl", None, "line 3"),
        (".jsonl", " ", "line 3"),
        (".parquet", None, "record 3"),
    ],
)
def test_missing_subject_names_file_and_record(tmp_path, suffix, empty, where):
    records = [
        {"id": f"r{i}", "text": chunk_text("history", i), "subject": "history"} for i in range(5)
    ]
    records[2]["subject"] = empty
    path = _table(records, tmp_path / f"chunks{suffix}")
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    message = str(info.value)
    assert path.name in message and where in message and "'subject'" in message, message


def test_json_null_subject_names_record(tmp_path):
    path = tmp_path / "chunks.json"
    path.write_text(
        '[{"text": "One chunk.", "subject": "a"}, {"text": "Two chunks.", "subject": null}]',
        encoding="utf-8",
    )
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    assert "chunks.json" in str(info.value) and "record 2" in str(info.value)


@pytest.mark.parametrize(
    "line",
    [
        '{"text": "\\ud800 lone surrogate", "subject": "a"}',
        '{"text": ["a", "list"], "subject": "a"}',
        '["not", "an", "object"]',
    ],
)
def test_odd_jsonl_records_are_errors_naming_the_line(tmp_path, line):
    path = tmp_path / "chunks.jsonl"
    path.write_text('{"text": "Fine.", "subject": "a"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    assert "chunks.jsonl" in str(info.value) and "line 2" in str(info.value)


def test_file_name_that_is_not_utf8_is_an_error(tiny_corpus):
    import os

    bad = tiny_corpus / "physics" / os.fsdecode(b"caf\xe9.txt")  # a Latin-1 name, not UTF-8
    bad.write_text("A chunk whose file name is Latin-1.", encoding="utf-8")
    with pytest.raises(CorpusError, match="UTF-8"):
        load_corpus(tiny_corpus)


# --- texts under two subjects -------------------------------------------------------------------------


def test_text_under_two_subjects_is_dropped_from_both_with_warning(tiny_corpus, caplog):
    shared = (tiny_corpus / "physics" / "002.txt").read_text(encoding="utf-8")
    (tiny_corpus / "history" / "copy.txt").write_text(shared, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="helpers.corpus"):
        ds = load_corpus(tiny_corpus)
    assert shared not in ds["text"]
    assert Counter(ds["subject"]) == {"physics": 5, "biology": 6, "history": 6}
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for fragment in ("physics", "history", "physics/002.txt", "history/copy.txt", shared[:30]):
        assert fragment in warning, warning


def test_subject_that_copies_another_is_an_error(tiny_corpus):
    copy = tiny_corpus / "geology"
    copy.mkdir()
    for f in (tiny_corpus / "biology").iterdir():
        (copy / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_corpus(tiny_corpus)
    message = str(info.value)
    assert "biology" in message and "geology" in message and "other subject" in message


def test_conflicts_with_unselected_subjects_do_not_matter(tiny_corpus):
    shared = (tiny_corpus / "physics" / "002.txt").read_text(encoding="utf-8")
    (tiny_corpus / "history" / "copy.txt").write_text(shared, encoding="utf-8")
    ds = load_corpus(tiny_corpus, subjects=["physics", "biology"])
    assert shared in ds["text"]


# --- test_fraction against the data ----------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.99, 0.8])
def test_test_fraction_that_leaves_too_little_training_names_subject(tiny_corpus, fraction):
    build_corpus(tiny_corpus, subjects=("chemistry",), per_subject=40)
    with pytest.raises(CorpusError) as info:
        split_corpus(load_corpus(tiny_corpus), test_fraction=fraction)
    message = str(info.value)
    assert "data.test_fraction" in message and "6 chunk" in message and "train" in message
    assert "physics" in message or "biology" in message or "history" in message


def test_test_fraction_that_leaves_a_subject_without_test_chunks(tmp_path):
    corpus = build_corpus(tmp_path / "c", subjects=("physics",), per_subject=200)
    build_corpus(corpus, subjects=("history",), per_subject=5)
    with pytest.raises(CorpusError) as info:
        split_corpus(load_corpus(corpus), test_fraction=0.01)
    message = str(info.value)
    assert "history" in message and "test" in message and "data.test_fraction" in message


# --- archives: limits, scratch folder, member kinds -----------------------------------------------------


def _big_tar(dest: Path, size: int) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        for subject in ("physics", "history"):
            for i in range(4):
                data = chunk_text(subject, i).encode()
                info = tarfile.TarInfo(f"chunks/{subject}/{i}.txt")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("chunks/physics/huge.txt")
        info.size = size
        tf.addfile(info, io.BytesIO(b"word " * (size // 5)))
    return dest


def test_archive_over_the_size_limit_is_refused_before_extracting(tmp_path):
    archive = _big_tar(tmp_path / "bomb.tar.gz", 5_000_000)
    assert archive.stat().st_size < 100_000
    scratch = tmp_path / "results"
    with pytest.raises(CorpusError) as info:
        load_corpus(archive, scratch_dir=scratch, archive_max_bytes=1_000_000)
    message = str(info.value)
    assert "bomb.tar.gz" in message and "data.archive_max_bytes" in message
    assert not scratch.exists()  # created for the extraction, removed with it


def test_archive_default_limits_come_from_the_module(tmp_path, monkeypatch):
    import helpers.corpus as corpus

    monkeypatch.setattr(corpus, "ARCHIVE_MAX_BYTES", 1_000_000)
    with pytest.raises(CorpusError, match="archive_max_bytes"):
        load_corpus(_big_tar(tmp_path / "bomb.tar.gz", 5_000_000), scratch_dir=tmp_path / "results")


def test_archive_with_too_many_members_is_refused(tiny_corpus, tmp_path):
    archive = _tar_gz(tiny_corpus, tmp_path / "many.tar.gz")
    with pytest.raises(CorpusError) as info:
        load_corpus(archive, scratch_dir=tmp_path / "results", archive_max_members=5)
    assert "many.tar.gz" in str(info.value) and "data.archive_max_members" in str(info.value)


def test_streamed_bytes_are_counted_even_when_headers_lie(tmp_path):
    from helpers.archives import ArchiveBudget

    budget = ArchiveBudget(max_bytes=1_000_000, max_members=10, archive=tmp_path / "liar.zip")
    target = tmp_path / "out.txt"
    with pytest.raises(CorpusError, match="archive_max_bytes"):
        budget.copy(io.BytesIO(b"x" * 5_000_000), target, "liar.txt")
    assert target.stat().st_size <= 1_000_000 + (1 << 20)


@pytest.mark.parametrize("make, name", [(_tar_gz, "corpus.tar.gz"), (_zip, "corpus.zip")])
def test_archive_is_extracted_under_scratch_dir_and_removed(
    tiny_corpus, tmp_path, monkeypatch, make, name
):
    archive = make(tiny_corpus, tmp_path / name)
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    seen = []
    import helpers.corpus as corpus

    real = corpus._load_path

    def spy(path, *args, **kwargs):
        seen.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(corpus, "_load_path", spy)
    scratch = tmp_path / "results"
    ds = load_corpus(archive, scratch_dir=scratch)
    assert chunks(ds) == expected(tiny_corpus)
    assert any(p.is_relative_to(scratch) and ".extract-" in str(p) for p in seen), seen
    assert not scratch.exists() and list(system_tmp.iterdir()) == []  # created, then removed


def test_archive_without_scratch_dir_is_cleaned_up(tiny_corpus, tmp_path, monkeypatch):
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    load_corpus(_zip(tiny_corpus, tmp_path / "c.zip"))
    assert list(system_tmp.iterdir()) == []


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_killed_extraction_are_removed(tiny_corpus, tmp_path):
    import os

    from helpers.storage import owner_tag

    scratch = tmp_path / "results"
    dead = scratch / f".extract-{owner_tag(_dead_pid())}-abc123"
    (dead / "chunks").mkdir(parents=True)
    (dead / "chunks" / "junk.txt").write_text("left by a killed run")
    old = scratch / ".extract-unknown-owner"
    old.mkdir()
    os.utime(old, (1, 1))
    alive = scratch / f".extract-{owner_tag(os.getpid())}-running"
    alive.mkdir()
    unrelated = scratch / "cache"
    unrelated.mkdir()
    load_corpus(_tar_gz(tiny_corpus, tmp_path / "c.tar.gz"), scratch_dir=scratch)
    assert sorted(p.name for p in scratch.iterdir()) == sorted([alive.name, "cache"])


def _zip_with(
    tiny_corpus: Path, dest: Path, name: str, mode: int | None = None, data: bytes = b"x"
) -> Path:
    _zip(tiny_corpus, dest)
    with zipfile.ZipFile(dest, "a") as zf:
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return dest


@pytest.mark.parametrize(
    "name, mode, fragment",
    [
        ("chunks/physics/link.txt", 0o120777, "link"),
        ("chunks/physics/fifo.txt", 0o010644, "special"),
        ("/etc/evil.txt", None, "unsafe"),
        ("chunks\\..\\..\\evil.txt", None, "unsafe"),
    ],
)
def test_zip_member_kinds_match_tar(tiny_corpus, tmp_path, name, mode, fragment):
    archive = _zip_with(tiny_corpus, tmp_path / "odd.zip", name, mode, b"/etc/passwd")
    scratch = tmp_path / "results"
    with pytest.raises(CorpusError, match=fragment):
        load_corpus(archive, scratch_dir=scratch)
    assert not scratch.exists()  # created for the extraction, removed with it


@pytest.mark.parametrize("kind", ["chr", "fifo", "hardlink"])
def test_tar_special_members_are_refused(tiny_corpus, tmp_path, kind):
    archive = tmp_path / "special.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(tiny_corpus, arcname="chunks")
        info = tarfile.TarInfo("chunks/physics/odd.txt")
        info.type = {"chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE, "hardlink": tarfile.LNKTYPE}[
            kind
        ]
        info.linkname = "chunks/physics/000.txt"
        tf.addfile(info)
    with pytest.raises(CorpusError, match="link|special"):
        load_corpus(archive, scratch_dir=tmp_path / "results")


@pytest.mark.parametrize("mode, name", [("w:bz2", "c.tar.bz2"), ("w:xz", "c.tar.xz")])
def test_other_tar_compressions(tiny_corpus, tmp_path, mode, name):
    with tarfile.open(tmp_path / name, mode) as tf:
        tf.add(tiny_corpus, arcname="chunks")
    assert chunks(load_corpus(tmp_path / name, scratch_dir=tmp_path / "results")) == expected(
        tiny_corpus
    )


def test_archive_inside_archive_shares_the_budget(tiny_corpus, tmp_path):
    inner = _big_tar(tmp_path / "inner.tar.gz", 600_000)
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.write(inner, "data/inner.tar.gz")
        zf.writestr("data/padding.bin", b"\0" * 600_000)
    with pytest.raises(CorpusError, match="archive_max_bytes"):
        load_corpus(outer, scratch_dir=tmp_path / "results", archive_max_bytes=1_000_000)


# --- the data stays inside the data folder --------------------------------------------------------------

SECRET = "Outside text that must never become a chunk or reach a message."


def _outside(tmp_path: Path) -> Path:
    """A folder beside the corpus: a secret file and a folder of chunk-like files."""
    return outside_folder(tmp_path, SECRET, chunks=6)


LINKS = {
    "file in a subject": ("biology/host.md", "secret.md"),
    "subject folder": ("geology", "folder"),
    "folder in a subject": ("physics/more", "folder"),
    "copy of a chunk": (
        "history/copy.txt",
        "secret.md",
    ),  # its text would be in a duplicate warning
}


@pytest.mark.parametrize("case", sorted(LINKS))
def test_links_in_the_data_folder_are_refused_before_reading(tiny_corpus, tmp_path, caplog, case):
    outside = _outside(tmp_path)
    (tiny_corpus / "physics" / "copy.txt").write_text(SECRET, encoding="utf-8")
    link, target = LINKS[case]
    (tiny_corpus / link).symlink_to(outside / target)
    with pytest.raises(CorpusError) as info:
        load_corpus(tiny_corpus)
    message = str(info.value)
    assert message.startswith(f"{tiny_corpus / link}: is a symbolic link"), message
    assert "Outside text" not in message + caplog.text


def test_link_beside_tables_is_refused(tiny_corpus, tmp_path):
    data = tmp_path / "tables"
    data.mkdir()
    _table(corpus_records(tiny_corpus), data / "a.jsonl")
    (data / "b.jsonl").symlink_to(_table([{"text": SECRET, "subject": "x"}], tmp_path / "o.jsonl"))
    with pytest.raises(CorpusError, match="b.jsonl: is a symbolic link"):
        load_corpus(data)


def test_data_folder_may_itself_be_a_link(tiny_corpus, tmp_path):
    link = tmp_path / "linked-corpus"
    link.symlink_to(tiny_corpus)
    assert chunks(load_corpus(link)) == expected(tiny_corpus)


# --- malformed files and cells ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["_drafts", ".hidden"])
def test_skipped_subject_folders_are_named_in_a_warning(tiny_corpus, caplog, name):
    build_corpus(tiny_corpus / name, subjects=("chemistry",), per_subject=4)
    with caplog.at_level(logging.WARNING):
        ds = load_corpus(tiny_corpus)
    assert "chemistry" not in ds["subject"]
    assert f"skipped folder(s) {name!r}" in caplog.text


def test_csv_with_two_text_columns_is_refused(tmp_path):
    path = tmp_path / "c.csv"
    rows = "".join(f"physics chunk {i},physics,second text {i}\n" for i in range(6))
    path.write_text("text,subject,text\n" + rows, encoding="utf-8")
    with pytest.raises(CorpusError, match=r"c.csv: has more than one column named 'text'"):
        load_corpus(path)


def test_jsonl_record_with_a_key_twice_is_refused(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "one", "subject": "physics", "text": "two"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"c.jsonl: line 1 has the key 'text' twice"):
        load_corpus(path)


@pytest.mark.parametrize(
    "encoding, advice",
    [("utf-16-le", "utf-16le"), ("utf-16-be", "utf-16be"), ("utf-16", "utf-16 ")],
)
@pytest.mark.parametrize("where", ["chunk file", "csv"])
def test_utf16_files_get_utf16_advice(tiny_corpus, tmp_path, encoding, advice, where):
    text = "Ein Kapitel über Physik, Kraft und Masse."
    if where == "chunk file":
        path = tiny_corpus / "physics" / "utf16.txt"
        path.write_bytes(text.encode(encoding))
        data = tiny_corpus
    else:
        path = data = tmp_path / "c.csv"
        path.write_bytes(f"text,subject\n{text},physics\n".encode(encoding))
    with pytest.raises(CorpusError) as info:
        load_corpus(data)
    message = str(info.value)
    assert (
        message.startswith(f"{path}: looks like UTF-16") and f"iconv -f {advice}" in message + " "
    )
    assert "latin" not in message


@pytest.mark.parametrize(
    "content", ["\u200b\u200c\u200d", " \ufeff\u2060 \n", "\0\0\0", "\0 \u200b"], ids=repr
)
def test_chunk_file_of_invisible_characters_is_refused(tiny_corpus, content):
    path = tiny_corpus / "physics" / "blank.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match=rf"^{path}: "):
        load_corpus(tiny_corpus)


@pytest.mark.parametrize("text", ["\u200b\u200d", "\ufeff \u2060"], ids=repr)
def test_table_text_of_invisible_characters_is_refused(tiny_corpus, tmp_path, text):
    records = [*corpus_records(tiny_corpus), {"id": "blank", "text": text, "subject": "physics"}]
    path = _table(records, tmp_path / "c.jsonl")
    with pytest.raises(CorpusError, match=r"record 19 \(line 19\) has an empty or missing 'text'"):
        load_corpus(path)


def test_table_text_with_a_nul_is_refused(tiny_corpus, tmp_path):
    records = [*corpus_records(tiny_corpus), {"id": "nul", "text": "a\0b", "subject": "physics"}]
    with pytest.raises(CorpusError, match=r"record 19 .*NUL character"):
        load_corpus(_table(records, tmp_path / "c.jsonl"))


def test_huge_chunk_file_is_refused_before_reading(tiny_corpus):
    huge = tiny_corpus / "physics" / "huge.txt"
    with open(huge, "wb") as fh:  # sparse: no disk, but reading it would take 60 MB
        fh.truncate(60_000_000)
    with pytest.raises(
        CorpusError, match=rf"^{huge}: a chunk file of 60,000,000 bytes.*at most 50,000,000"
    ):
        load_corpus(tiny_corpus)


def test_huge_chunk_member_is_refused_before_extracting(tmp_path):
    archive = _big_tar(tmp_path / "huge.tar.gz", 60_000_000)
    scratch = tmp_path / "results"
    with pytest.raises(
        CorpusError, match=r"member 'chunks/physics/huge.txt' is a chunk file of 60,000,000"
    ):
        load_corpus(archive, scratch_dir=scratch)
    assert not scratch.exists()  # created for the extraction, removed with it


@pytest.mark.parametrize("name", ["\x1b[31mred\x1b[0m", "line\u2028break", "rtl\u202eoverride"])
def test_subject_names_with_control_characters_are_refused(tiny_corpus, name):
    build_corpus(tiny_corpus, subjects=("chemistry",), per_subject=4)
    (tiny_corpus / "chemistry").rename(tiny_corpus / name)
    with pytest.raises(CorpusError) as info:
        load_corpus(tiny_corpus)
    message = str(info.value)
    assert f"subject {name!r}" in message and "control character" in message
    assert name not in message  # shown escaped, never raw


def test_table_subject_with_an_escape_sequence_is_refused(tiny_corpus, tmp_path):
    records = corpus_records(tiny_corpus)
    records[0]["subject"] = "\x1b]0;title\x07physics"
    with pytest.raises(CorpusError, match=r"subject '\\x1b\]0;title\\x07physics'"):
        load_corpus(_table(records, tmp_path / "c.jsonl"))


def test_split_advice_names_one_fraction_when_the_bounds_meet(tmp_path):
    """10 subjects x 4 chunks: only one test chunk per subject fits (0.25); say so plainly."""
    corpus = tmp_path / "c"
    for s in range(10):
        for i in range(4):
            (corpus / f"s{s}").mkdir(parents=True, exist_ok=True)
            (corpus / f"s{s}" / f"{i}.txt").write_text(f"subject {s} chunk {i}", encoding="utf-8")
    ds = load_corpus(corpus)
    with pytest.raises(CorpusError) as info:
        split_corpus(ds, test_fraction=0.3)
    assert "Set data.test_fraction to about 0.25," in str(info.value)
    assert "between" not in str(info.value)
    assert len(split_corpus(ds, test_fraction=0.25)["test"]) == 10
