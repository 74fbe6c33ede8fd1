"""Every configuration change an exercise asks for is one the configuration accepts.

Exercises say "Set `section.key` to VALUE" or show "`section.key: VALUE`"; each such
change is applied to a valid configuration and loaded. (An exercise once asked for
``finetuning.triplet_margin`` 5, which validation refuses: the student hit an error.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from helpers.config import load_config

ROOT = Path(__file__).resolve().parents[1]
EXERCISE = re.compile(r"```\{exercise\}.*?```", re.S)
SET_TO = re.compile(r"[Ss]et `(\w+)\.(\w+)` to `?([\w.\-]+)`?")
INLINE = re.compile(r"`(\w+)\.(\w+): ([^`]+)`")


def requested_changes() -> list[tuple[str, str, str, str]]:
    changes = []
    for chapter in sorted((ROOT / "chapters").glob("*.md")):
        for block in EXERCISE.findall(chapter.read_text()):
            for pattern in (SET_TO, INLINE):
                for section, key, value in pattern.findall(block):
                    changes.append((chapter.stem, section, key, value.rstrip(".")))
    return changes


def test_the_pattern_finds_the_old_broken_request():
    text = "```{exercise}\n:label: x\n\nSet `finetuning.triplet_margin` to 5 (the default).\n```"
    assert [m for m in SET_TO.findall(EXERCISE.findall(text)[0])] == [
        ("finetuning", "triplet_margin", "5")
    ]


def test_exercises_ask_for_something():
    assert requested_changes(), "no exercise asks for a configuration change any more"


@pytest.mark.parametrize("chapter, section, key, value", requested_changes())
def test_requested_change_is_valid(tmp_path, write_config, chapter, section, key, value):
    path = write_config(tmp_path, **{section: {key: yaml.safe_load(value)}})
    load_config(path)  # raises ConfigError, naming the key, if the exercise is impossible
