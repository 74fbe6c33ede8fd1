"""Sphinx extension: tags from the book's configuration, for ``{only}`` blocks in chapters.

``second_corpus`` is set when ``paths.second_data_dir`` names a corpus, so that sentences
about findings on a second corpus appear only in a build that measured them (and a
sentence saying nothing was measured appears in one that did not). Sphinx rebuilds every
page when the tags change.
"""

from __future__ import annotations


def _add_tags(app, config) -> None:
    from helpers.config import load_config

    cfg = load_config(check_data=False)  # the same file the chapters read
    if cfg.paths.second_data_dir is not None:
        app.tags.add("second_corpus")


def setup(app):
    app.connect("config-inited", _add_tags)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
