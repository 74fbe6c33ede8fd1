"""The sample corpus shipped in data/chunks: size, manifest, variety, no near-duplicates, original text."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import OPENSTAX, REPO_ROOT
from sklearn.feature_extraction.text import TfidfVectorizer

CHUNKS = REPO_ROOT / "data" / "chunks"
MANIFEST = CHUNKS / "manifest.csv"
MIN_CHUNKS = {"physics": 100, "biology": 100, "history": 100, "chemistry": 40}
MAIN_SUBJECTS = ("physics", "biology", "history")
SHINGLE = 10


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    """Relative path (as in the manifest) -> text, for every chunk file."""
    return {
        f.relative_to(CHUNKS).as_posix(): f.read_text(encoding="utf-8")
        for f in sorted(CHUNKS.glob("*/*.txt"))
    }


@pytest.fixture(scope="module")
def manifest() -> pd.DataFrame:
    return pd.read_csv(
        MANIFEST, dtype={"file": str, "subject": str, "subtopic": str, "border": str}
    )


def words(text: str) -> list[str]:
    """Lower-cased words with punctuation stripped."""
    return re.findall(r"[^\W_]+", text.lower())


def test_subjects_have_enough_chunks(files):
    counts = pd.Series([p.split("/")[0] for p in files]).value_counts()
    for subject, minimum in MIN_CHUNKS.items():
        assert counts.get(subject, 0) >= minimum, (
            f"{subject}: {counts.get(subject, 0)} chunks, need {minimum}"
        )


def test_chunks_are_80_to_200_words(files):
    bad = {p: len(t.split()) for p, t in files.items() if not 80 <= len(t.split()) <= 200}
    assert not bad, f"chunks outside 80-200 words: {bad}"


def test_manifest_rows_match_files(files, manifest):
    listed = list(manifest["file"])
    assert len(listed) == len(set(listed)), "manifest lists a file twice"
    assert not set(listed) - set(files), (
        f"manifest rows without a file: {sorted(set(listed) - set(files))}"
    )
    assert not set(files) - set(listed), (
        f"files missing from the manifest: {sorted(set(files) - set(listed))}"
    )


def test_manifest_subject_is_the_folder(manifest):
    wrong = manifest[manifest["file"].str.split("/").str[0] != manifest["subject"]]
    assert wrong.empty, wrong


def test_manifest_word_counts_match(files, manifest):
    wrong = {
        row.file: (row.words, len(files[row.file].split()))
        for row in manifest.itertuples()
        if row.file in files and row.words != len(files[row.file].split())
    }
    assert not wrong, f"manifest words != actual words: {wrong}"


def test_manifest_border_is_yes_or_no(manifest):
    assert set(manifest["border"]) <= {"yes", "no"}


@pytest.mark.parametrize("subject", MAIN_SUBJECTS)
def test_many_subtopics(manifest, subject):
    n = manifest.loc[manifest["subject"] == subject, "subtopic"].nunique()
    assert n >= 25, f"{subject}: only {n} distinct subtopics"


@pytest.mark.parametrize("subject", sorted(MIN_CHUNKS))
def test_enough_border_chunks(manifest, subject):
    part = manifest[manifest["subject"] == subject]
    share = (part["border"] == "yes").mean()
    assert share >= 0.10, f"{subject}: only {share:.0%} border chunks"


def test_loader_reads_the_sample_corpus(files):
    from helpers.corpus import load_corpus

    ds = load_corpus(CHUNKS)
    assert len(ds) == len(files)  # no duplicates dropped, manifest not read as data


def test_no_near_duplicates(files):
    names = list(files)
    X = TfidfVectorizer().fit_transform([files[n] for n in names])  # rows are L2-normalised
    sims = (X @ X.T).toarray()
    np.fill_diagonal(sims, 0.0)
    i, j = np.unravel_index(np.argmax(sims), sims.shape)
    assert sims[i, j] <= 0.8, (
        f"near-duplicates: {names[i]} and {names[j]} (TF-IDF cosine {sims[i, j]:.2f})"
    )


@pytest.mark.skipif(not OPENSTAX.is_dir(), reason=f"{OPENSTAX} is absent")
def test_no_phrase_copied_from_openstax(files):
    # 10-word shingles of our corpus; then stream the OpenStax texts through them.
    ours: dict[str, str] = {}
    for name, text in files.items():
        w = words(text)
        for k in range(len(w) - SHINGLE + 1):
            ours.setdefault(" ".join(w[k : k + SHINGLE]), name)
    assert ours, "no shingles built"
    copied = {}
    n_texts = 0
    for path in sorted(OPENSTAX.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                n_texts += 1
                w = words(json.loads(line)["text"])
                for k in range(len(w) - SHINGLE + 1):
                    phrase = " ".join(w[k : k + SHINGLE])
                    if phrase in ours:
                        copied.setdefault(ours[phrase], phrase)
    assert n_texts > 1000, f"only {n_texts} OpenStax texts read from {OPENSTAX}"
    assert not copied, "phrases shared with OpenStax:\n" + "\n".join(
        f"  {f}: {p!r}" for f, p in copied.items()
    )
