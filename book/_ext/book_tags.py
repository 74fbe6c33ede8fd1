"""Sphinx extension: tags from the book's configuration and data, for ``{only}`` blocks.

Sentences about a finding appear only in a build that measured it, and a sentence saying
nothing was measured appears in one that did not. Sphinx rebuilds every page when the
tags change.

* ``second_corpus``: ``paths.second_data_dir`` names a corpus;
* ``unseen_subjects``: some held-out subject was not used for fine-tuning;
* ``subtopics``: the corpus names subtopics, with a held-out chunk that has a partner.
"""

from __future__ import annotations


def _add_tags(app, config) -> None:
    from helpers.analysis import has_subtopic_queries
    from helpers.config import ConfigError, load_config
    from helpers.corpus import corpus_splits
    from helpers.models import finetune_splits

    cfg = load_config(check_data=False)  # the same file the chapters read
    if cfg.paths.second_data_dir is not None:
        app.tags.add("second_corpus")
    try:
        splits = corpus_splits(cfg)
    except (ConfigError, OSError, ValueError):
        return  # data missing or bad: the chapters say what and how to fix it
    seen = set(finetune_splits(cfg, splits)["train"]["subject"])
    if set(splits["test"]["subject"]) - seen:
        app.tags.add("unseen_subjects")
    if has_subtopic_queries(splits):
        app.tags.add("subtopics")


def setup(app):
    app.connect("config-inited", _add_tags)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
