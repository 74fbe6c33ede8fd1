"""The bibliography's label style (book/_ext/bib_labels.py): years such as 2021a."""

from __future__ import annotations

import sys
from pathlib import Path

from pybtex.database import Entry, Person

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
from bib_labels import BookLabels  # noqa: E402


def _paper(year: str) -> Entry:
    authors = [Person("Rajaee, Sara"), Person("Pilehvar, Mohammad Taher")]
    return Entry("inproceedings", fields={"title": "T", "year": year}, persons={"author": authors})


def test_same_year_papers_get_the_year_digits_and_a_letter():
    labels = list(BookLabels().format_labels([_paper("2021a"), _paper("2021b")]))
    assert labels == ["RP21a", "RP21b"]


def test_a_plain_year_is_labelled_as_alpha_labels_it():
    assert list(BookLabels().format_labels([_paper("2019")])) == ["RP19"]
