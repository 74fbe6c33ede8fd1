"""The published site's configuration is the one ``bench/hub_models.py`` rehearses offline.

The workflow (.github/workflows/book.yml) builds the site with the file its job names in
``BOOK_CONFIG``; the rehearsal reads that same file and changes only its paths, and every
hub model it names has an offline stand-in of the same architecture in
:mod:`tools.hub_snapshots`. So a rehearsal run proves the published path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench import hub_models
from helpers.cli import main
from helpers.config import load_config
from helpers.names import ROLES
from tools.hub_snapshots import BERT_CONFIG, BGE_CONFIG, BGE_POOLING, COMMITS

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def workflow_config() -> Path:
    """The configuration file the publishing job builds with (its ``BOOK_CONFIG``)."""
    job = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]["build"]
    runs = [step.get("run", "") for step in job["steps"]]
    assert any('make book CONFIG="$BOOK_CONFIG"' in run for run in runs), "the build step"
    assert any('--config "$BOOK_CONFIG" download' in run for run in runs), "the download step"
    return ROOT / job["env"]["BOOK_CONFIG"]


def roles(cfg) -> dict[str, tuple[str, str]]:
    return {
        role: (spec.name, spec.pooling) for role in ROLES for spec in [getattr(cfg.models, role)]
    }


def test_workflow_config_is_the_rehearsed_one(tmp_path):
    published_path = workflow_config()
    assert published_path.resolve() == hub_models.PUBLISHED_CONFIG.resolve()
    published = load_config(published_path, check_data=False)
    rehearsed = load_config(
        hub_models.write_config(tmp_path / "hub.yaml", tmp_path / "data", tmp_path / "results"),
        check_data=False,
    )
    assert roles(rehearsed) == roles(published)
    for section in ("data", "encoding", "pretraining", "finetuning", "continued"):
        assert getattr(rehearsed, section) == getattr(published, section), section


def test_published_roles_are_the_seed_models_and_the_fakes_share_their_architecture():
    published = load_config(workflow_config(), check_data=False)
    assert roles(published) == {
        "baseline": ("bert-base-uncased", "mean"),
        "contrastive": ("BAAI/bge-base-en-v1.5", "cls"),
        "finetune_base": ("BAAI/bge-base-en-v1.5", "cls"),
    }
    assert published.continued.learning_rate == pytest.approx(3e-5)
    fakes = {"bert-base-uncased": BERT_CONFIG, "BAAI/bge-base-en-v1.5": BGE_CONFIG}
    for name, _ in roles(published).values():
        assert name in COMMITS, f"{name} has no offline stand-in"
        assert fakes[name]["hidden_size"] == 768 and fakes[name]["num_hidden_layers"] == 12
    assert BGE_POOLING["pooling_mode_cls_token"]  # the CLS pooling the contrastive role uses


def test_mpnet_rehearsal_changes_only_the_contrastive_roles(tmp_path):
    published = load_config(workflow_config(), check_data=False)
    config = hub_models.write_config(
        tmp_path / "hub.yaml", tmp_path / "data", tmp_path / "results", mpnet=True
    )
    rehearsed = load_config(config, check_data=False)
    expected = roles(published) | {
        role: ("packaged:all-mpnet-base-v2", "mean") for role in hub_models.MPNET_ROLES
    }
    assert roles(rehearsed) == expected
    for section in ("data", "encoding", "pretraining", "finetuning", "continued"):
        assert getattr(rehearsed, section) == getattr(published, section), section


def test_rehearsal_refuses_a_model_it_cannot_stand_in_for(tmp_path, monkeypatch):
    other = yaml.safe_load(hub_models.PUBLISHED_CONFIG.read_text(encoding="utf-8"))
    other["models"]["contrastive"] = {"name": "sentence-transformers/all-mpnet-base-v2"}
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump(other), encoding="utf-8")
    monkeypatch.setattr(hub_models, "PUBLISHED_CONFIG", path)
    with pytest.raises(SystemExit, match="all-mpnet-base-v2 have no offline stand-in"):
        hub_models.rehearsal_config(tmp_path / "data", tmp_path / "results")


def test_download_fetches_each_hub_model_once(write_config, tmp_path, monkeypatch, capsys):
    from helpers import encoders

    fetched = []
    snapshot = tmp_path / "snapshot"  # what the hub download would leave: a model folder
    snapshot.mkdir()
    (snapshot / "config.json").write_text('{"model_type": "bert"}')
    monkeypatch.setattr(encoders, "_hub_path", lambda name: fetched.append(name) or snapshot)
    config = write_config(
        tmp_path,
        models={
            "baseline": {"name": "book:small-bert"},
            "contrastive": {"name": "org/hub-model", "pooling": "cls"},
            "finetune_base": {"name": "org/hub-model", "pooling": "cls"},
        },
    )
    assert main(["--config", str(config), "download"]) == 0
    assert fetched == ["org/hub-model"]
    assert "book:small-bert: trained by the book" in capsys.readouterr().out


def test_download_offline_without_the_model_exits_2(write_config, tmp_path, monkeypatch, capsys):
    from helpers import encoders

    monkeypatch.setattr(encoders, "_hub_reachable", lambda: False)
    config = write_config(tmp_path, models={"contrastive": {"name": "org/not-cached"}})
    assert main(["--config", str(config), "download"]) == 2
    assert "org/not-cached" in capsys.readouterr().err


def test_every_edition_is_a_valid_configuration_of_known_models():
    from helpers.names import PACKAGED_MODELS, SMALL_BERT

    for path in sorted((ROOT / "editions").glob("*.yaml")):
        cfg = load_config(path, check_data=False)
        assert cfg.paths.data_dir == ROOT / "data" / "chunks", path
        for name, _ in roles(cfg).values():
            if name.startswith("packaged:"):
                assert name.removeprefix("packaged:") in PACKAGED_MODELS, (path, name)
            else:
                assert name == SMALL_BERT or name in COMMITS, (path, name)
