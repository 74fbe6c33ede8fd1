"""What chapters need around the science: setup, glue, and claims that check themselves.

* :func:`start` loads the configuration, configures Altair once for the whole book and
  sends the helpers' warnings (truncated chunks, dropped duplicates, a corrupt cache) to
  the page as ordinary output, where the reader sees them.
* :func:`glue_numbers` and :func:`glue_figure` put build-time values into the prose.
* :func:`claim` guards a sentence whose truth depends on a measurement. The sentence is
  written in the chapter's Markdown; the claim records whether this build's numbers
  support it and glues ``claim_<name>``, which the page shows right after the sentence:
  nothing when it holds, a visible note when it does not. ``python -m helpers claims``
  lists the claims and their status for a configuration.
* :func:`change_words` words a comparison from a bootstrap interval ("rose", "fell",
  "did not change clearly"), for sentences that report a difference.

Example (first, hidden cell of a chapter)
-----------------------------------------
>>> from helpers import book
>>> cfg = book.start()                                            # doctest: +SKIP
>>> book.claim("ch4_offset_removed", 0.01 < 0.9, "centering removes the offset")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from filelock import FileLock

from .config import Config, load_config
from .intervals import Interval
from .storage import settings_key, write_text_atomic

CLAIM_CLASS = "claim-failed"  # the CSS class of a failed claim's note (tests look for it)
UNCHECKED_CLASS = "claim-unchecked"  # a claim this build has no data for
_STATE: dict = {}


class _PageHandler(logging.Handler):
    """Print helpers' warnings to the cell's output (stdout), where the page shows them."""

    def emit(self, record: logging.LogRecord) -> None:
        print(
            f"Note from helpers ({record.levelname.lower()}): {record.getMessage()}",
            file=sys.stdout,
        )


def start(config: str | None = None) -> Config:
    """Load the configuration, quieten library chatter, configure Altair and the page log."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
    logging.getLogger().setLevel(logging.ERROR)  # libraries' own chatter
    helpers_log = logging.getLogger("helpers")
    helpers_log.handlers[:] = [_PageHandler()]
    helpers_log.setLevel(logging.WARNING)
    helpers_log.propagate = False
    import datasets

    from .charts import setup_altair
    from .corpus import corpus_splits
    from .encoders import quiet_transformers

    datasets.disable_progress_bars()
    quiet_transformers()
    cfg = load_config(config)
    _STATE["cfg"] = cfg
    setup_altair(sorted(set(corpus_splits(cfg)["train"]["subject"])))
    return cfg


def glue_numbers(prefix: str, values: dict) -> None:
    """Glue each ``values[key]`` as ``{prefix}_{key}``, without showing it here."""
    from myst_nb import glue

    for key, value in values.items():
        if isinstance(value, np.generic):  # numpy scalars print as np.float64(...): no format spec
            value = value.item()
        glue(f"{prefix}_{key}", value, display=False)


def glue_figure(name: str, chart) -> None:
    """Glue a chart as ``fig_{name}`` for a ``{glue:figure}`` directive."""
    glue_numbers("fig", {name: chart})


# --- claims ------------------------------------------------------------------------------


def claims_file(cfg: Config) -> Path:
    """Where the claims of builds with ``cfg`` are recorded."""
    key = settings_key({"source": str(cfg.source), "config": cfg.model_dump(mode="json")})
    return cfg.paths.results_dir / "claims" / f"claims-{key}.json"


def read_claims(cfg: Config) -> dict[str, dict]:
    """Every claim recorded for ``cfg``: name -> {statement, holds (true, false or null)}."""
    path = claims_file(cfg)
    return json.loads(path.read_text()) if path.exists() else {}


def _group(name: str) -> str:
    """The chapter part of a claim name: ``ch4`` of ``ch4_knn_gap``."""
    return name.split("_", 1)[0]


def _record(cfg: Config, name: str, statement: str, holds: bool) -> None:
    path = claims_file(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The first claim of a chapter in this process drops what earlier runs of that chapter
    # recorded, so a claim removed from the chapter does not linger in the file.
    fresh = _STATE.setdefault("groups", set())
    with FileLock(str(path) + ".lock"):
        claims = read_claims(cfg)
        if _group(name) not in fresh:
            fresh.add(_group(name))
            claims = {k: v for k, v in claims.items() if _group(k) != _group(name)}
        claims[name] = {"statement": statement, "holds": holds}
        write_text_atomic(path, json.dumps(claims, indent=2, sort_keys=True))


def failed_claim_note(statement: str) -> str:
    """The MyST note a page shows where the numbers do not support ``statement``."""
    return (
        # an admonition takes its title as an argument, so MyST does not warn (strict build)
        f":::{{admonition}} Not supported by this build's numbers\n:class: warning {CLAIM_CLASS}\n"
        f"The sentence above claims that {statement}. On the data and models of this "
        "build the measurements do not support it; read the numbers, not the sentence.\n:::"
    )


def unchecked_claim_note(statement: str) -> str:
    """The MyST note a page shows where this build has no data to check ``statement``."""
    return (
        f":::{{admonition}} Not measured in this build\n:class: note {UNCHECKED_CLASS}\n"
        f"The sentence above says that {statement}. This build has no data to check it "
        "(for example, no second corpus is configured): read it as what the chapter checks "
        "when such data is present.\n:::"
    )


def claim(name: str, holds, statement: str) -> bool | None:
    """Record whether ``statement`` holds on this build and glue ``claim_{name}``.

    Write the sentence itself in Markdown, followed by a ``{glue:md}`` of
    ``claim_{name}`` (``:format: myst``); it shows nothing when ``holds`` is true and a
    visible warning when it is false. ``holds=None`` means "no data to check it here"
    (for example, no second corpus): a note says so and the claim is recorded as such.
    Name claims ``<chapter>_<what>`` (``ch4_knn_gap``): a chapter's first claim in a
    process replaces everything recorded for that chapter before.
    Returns ``holds``.
    """
    from IPython.display import Markdown

    holds = None if holds is None else bool(holds)
    cfg = _STATE.get("cfg") or load_config()
    _record(cfg, name, statement, holds)
    note = {False: failed_claim_note, None: unchecked_claim_note}.get(holds, lambda _: "")
    glue_numbers("claim", {name: Markdown(note(statement))})
    return holds


def change_words(
    diff: Interval, up: str = "rose", down: str = "fell", flat: str = "did not change clearly"
) -> str:
    """Words for a paired difference: ``up``/``down`` only when its interval excludes zero.

    >>> from helpers.intervals import Interval
    >>> change_words(Interval(0.02, -0.01, 0.05))
    'did not change clearly'
    """
    if not diff.excludes_zero:
        return flat
    return up if diff.mean > 0 else down
