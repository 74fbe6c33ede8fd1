"""Shared fixtures: a tiny made-up corpus, a config writer, and an offline Hugging Face hub.

``write_config(tmp_path, **overrides)`` writes a valid ``config.yaml`` into ``tmp_path``
(relative paths, a tiny corpus beside it) and returns its path. Each keyword overrides one
top-level section: a dict is merged into the section (a value of :data:`DELETE` removes
that key), a non-dict replaces the section, and ``DELETE`` removes the section.
"""

from __future__ import annotations

import copy
import os
import random
from pathlib import Path

import pytest
import yaml

# Set before anything imports huggingface_hub, which reads it once at import time.
os.environ["HF_HUB_OFFLINE"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]
OPENSTAX = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "openstax"

SUBJECT_WORDS = {
    "physics": "force mass energy momentum velocity field charge wave photon lens orbit torque "
    "pressure entropy current voltage magnet friction gravity spring pendulum inertia",
    "biology": "cell membrane protein enzyme gene allele mitosis ribosome tissue organ species "
    "habitat neuron hormone virus bacteria chloroplast nucleus evolution pollen",
    "history": "empire treaty revolution monarch parliament colony trade war harbor charter "
    "senate peasant guild reform dynasty frontier tariff crusade archive republic",
    "chemistry": "atom bond ion acid base salt solvent catalyst isotope molecule reaction "
    "oxidation electron orbital polymer crystal mole titration buffer alloy",
}
FILLER = "the a of and in to with by from for as that which when each".split()

DELETE = object()


def chunk_text(subject: str, index: int, n_words: int = 30) -> str:
    """Made-up text of ``n_words`` words, different for every (subject, index)."""
    rng = random.Random(f"{subject}-{index}")
    vocab = SUBJECT_WORDS[subject].split()
    words = [f"{subject}{index}"]  # a token no other chunk has: texts never collide
    while len(words) < n_words:
        words.append(rng.choice(vocab) if rng.random() < 0.6 else rng.choice(FILLER))
    return " ".join(words).capitalize() + "."


def build_corpus(
    root: Path, subjects=("physics", "biology", "history"), per_subject: int = 6
) -> Path:
    """A folder of subject sub-folders holding ``per_subject`` .txt chunks each."""
    for subject in subjects:
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_subject):
            (folder / f"{i:03d}.txt").write_text(chunk_text(subject, i), encoding="utf-8")
    return root


def corpus_records(root: Path) -> list[dict]:
    """The chunks of a subject-folder corpus as records (id, text, subject)."""
    return [
        {
            "id": f"{f.parent.name}/{f.stem}",
            "text": f.read_text(encoding="utf-8"),
            "subject": f.parent.name,
        }
        for f in sorted(root.glob("*/*.txt"))
    ]


def base_config() -> dict:
    return {
        "paths": {"data_dir": "corpus", "results_dir": "results", "second_data_dir": None},
        "data": {
            "subjects": None,
            "train_subjects": ["physics", "biology"],
            "max_per_subject": None,
            "test_fraction": 0.3,
            "seed": 13,
        },
        "models": {
            "baseline": {"name": "packaged:all-MiniLM-L6-v2", "pooling": "mean"},
            "contrastive": {"name": "packaged:all-MiniLM-L6-v2", "pooling": "mean"},
            "finetune_base": {"name": "packaged:all-MiniLM-L6-v2", "pooling": "cls"},
        },
        "encoding": {"batch_size": 8, "max_length": 128, "normalize": True},
    }


def _merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def write_config(tmp_path: Path, name: str = "config.yaml", **overrides) -> Path:
    """Write a valid config (plus the tiny corpus it points at) into ``tmp_path``; return its path."""
    if not (tmp_path / "corpus").exists():
        build_corpus(tmp_path / "corpus")
    path = tmp_path / name
    path.write_text(
        yaml.safe_dump(_merge(base_config(), overrides), sort_keys=False), encoding="utf-8"
    )
    return path


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch):
    """No test may reach the network for models."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(name="write_config")
def write_config_fixture():
    return write_config


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    """Three subjects (physics, biology, history) x 6 made-up chunks of ~30 words."""
    return build_corpus(tmp_path / "corpus")
