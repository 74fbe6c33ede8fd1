"""One-call setup for chapters, and small conveniences for gluing results into prose.

Example (first, hidden cell of a chapter)
-----------------------------------------
>>> from helpers import book
>>> cfg = book.start()          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import warnings

from .config import Config, load_config


def start(config: str | None = None) -> Config:
    """Load the configuration, quieten library noise and configure Altair for the book."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
    logging.getLogger().setLevel(logging.ERROR)
    from .analysis import corpus_splits
    from .charts import setup_altair
    from .encoders import quiet_transformers

    import datasets

    datasets.disable_progress_bars()
    quiet_transformers()
    cfg = load_config(config)
    subjects = sorted(set(corpus_splits(cfg)["train"]["subject"]))
    setup_altair(subjects)
    return cfg


def glue_values(prefix: str, values: dict, digits: int | None = None) -> None:
    """Glue each ``values[key]`` as ``{prefix}_{key}`` (rounded to ``digits`` when given), hidden."""
    from myst_nb import glue

    for key, value in values.items():
        if digits is not None and isinstance(value, float):
            value = round(value, digits)
        glue(f"{prefix}_{key}", value, display=False)
