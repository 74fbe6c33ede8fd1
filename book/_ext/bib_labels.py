"""Sphinx extension: bibliography labels that read a year such as ``2021a`` correctly.

Two papers by the same authors in one year carry ``year = {2021a}`` and ``{2021b}`` in
``references.bib``, so the text cites them as "[2021a]" and "[2021b]" (the author-year
style prints the year field as it is). pybtex's alpha labels take the last two characters
of the year ("RP1a"); this style takes its last two digits and lets alpha add the letter
("RP21a").
"""

from __future__ import annotations

import re

from pybtex.plugin import register_plugin
from pybtex.style.formatting.alpha import Style as AlphaStyle
from pybtex.style.labels.alpha import LabelStyle as AlphaLabels

NAME = "book_alpha"


class BookLabels(AlphaLabels):
    """Alpha labels whose year part ignores a letter suffix."""

    def format_label(self, entry):
        year = entry.fields.get("year")
        if year is None:
            return super().format_label(entry)
        digits = re.sub(r"\D", "", year) or year
        entry = entry.__class__(
            entry.type, fields={**entry.fields, "year": digits}, persons=entry.persons
        )
        return super().format_label(entry)


class BookStyle(AlphaStyle):
    """pybtex's alpha style with :class:`BookLabels`."""

    default_label_style = NAME


def setup(app):
    register_plugin("pybtex.style.labels", NAME, BookLabels)
    register_plugin("pybtex.style.formatting", NAME, BookStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
