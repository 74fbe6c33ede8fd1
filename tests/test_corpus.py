"""The corpus loader (every accepted input format, every data problem) and the train/test split."""

from __future__ import annotations

import io
import logging
import tarfile
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from conftest import OPENSTAX, build_corpus, chunk_text, corpus_records
from helpers.corpus import CorpusError, load_corpus, split_corpus

SUBJECTS = {"physics", "biology", "history"}


def chunks(ds) -> set[tuple[str, str]]:
    """The (subject, text) pairs of a dataset."""
    return set(zip(ds["subject"], ds["text"]))


def expected(root: Path) -> set[tuple[str, str]]:
    return {(r["subject"], r["text"]) for r in corpus_records(root)}


def assert_well_formed(ds) -> None:
    assert ds.column_names == ["id", "text", "subject", "source"]
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
    manifest = pd.DataFrame({"file": ["physics/000.txt"], "subject": ["physics"],
                             "text": ["This manifest row must never become a chunk of the corpus."]})
    manifest.to_csv(tiny_corpus / "manifest.csv", index=False)
    ds = load_corpus(tiny_corpus)
    assert chunks(ds) == expected(tiny_corpus)
    assert "manifest.csv" not in ds["source"]


# --- data problems --------------------------------------------------------------------------

def test_empty_chunk_file_is_named(tiny_corpus):
    empty = tiny_corpus / "biology" / "empty.txt"
    empty.write_text("  \n\n", encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_corpus(tiny_corpus)
    assert str(empty) in str(info.value) and "empty" in str(info.value)


def test_non_utf8_file_names_file_and_offset(tiny_corpus):
    prefix = "Entropy rises in an isolated system, na".encode("utf-8")
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
    pd.DataFrame({"id": ["a", "b"], "text": ["One text.", "Two text."], "topic": ["x", "y"]}).to_json(
        path, orient="records", lines=True
    )
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
    assert "geology" in message and all(s in message for s in SUBJECTS) and "data.subjects" in message


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
    return load_corpus(build_corpus(tmp_path / "bigger", subjects=("physics", "biology", "history", "chemistry"),
                                    per_subject=12))


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
