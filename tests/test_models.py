"""The model store: resolving a model never trains one, and an edit of a recipe retrains.

* :mod:`helpers.models` finds trained models or stops with one message that names the
  command that trains them; nothing is trained or written on the way.
* Every trained model's folder key holds a hash of its training module's code, so editing
  what a training function does gives a new folder (the next ``helpers train`` trains it),
  while editing a docstring or a comment keeps the folder.
* One list, :func:`helpers.models.book_models`, says what the book trains; ``helpers train``
  trains exactly it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import models, pretraining
from helpers.cli import main
from helpers.config import load_config
from helpers.corpus import corpus_splits
from helpers.names import LOSSES, SMALL_BERT, TEMPERATURE_SCALES

ROOT = Path(__file__).resolve().parents[1]
SMALL_BERT_ROLE = {"baseline": {"name": SMALL_BERT, "pooling": "mean"}}


@pytest.fixture
def cfg(tmp_path, write_config):
    return load_config(write_config(tmp_path, models=SMALL_BERT_ROLE))


@pytest.fixture
def no_training(monkeypatch):
    """Any training call fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("resolving a model started a training run")

    monkeypatch.setattr(models, "pretrained_model", refuse)
    monkeypatch.setattr(models, "finetuned_model", refuse)
    monkeypatch.setattr(pretraining, "train_mlm", refuse)


@pytest.mark.parametrize("role", ["baseline", "finetuned"])
def test_resolving_a_missing_model_names_the_command_and_trains_nothing(cfg, no_training, role):
    splits = corpus_splits(cfg)
    with pytest.raises(models.ModelNotTrainedError) as err:
        models.role_encoder(cfg, role, splits)
    assert models.TRAIN_COMMAND in str(err.value) and "make models" in str(err.value)
    models_dir = cfg.models_dir
    assert not models_dir.exists() or not any(models_dir.iterdir()), "something was written"


def test_check_reports_untrained_models_without_training(cfg, no_training, capsys):
    assert main(["--config", str(cfg.source), "check"]) == 0
    roles = [line for line in capsys.readouterr().out.splitlines() if "pooling=" in line]
    assert any("baseline" in line and "not trained yet" in line for line in roles), roles
    assert not cfg.models_dir.exists() or not any(cfg.models_dir.iterdir())


def test_metrics_on_an_untrained_role_stops_with_exit_2(cfg, no_training, capsys):
    assert main(["--config", str(cfg.source), "metrics", "--model", "baseline"]) == 2
    assert models.TRAIN_COMMAND in capsys.readouterr().err


def test_the_one_list_holds_every_loss_chapter_5_compares(tmp_path, write_config):
    """A one-loss config still trains the other loss up front (Chapter 5 compares both)."""
    cfg = load_config(write_config(tmp_path, finetuning={"losses": ["multiple_negatives"]}))
    listed = models.book_models(cfg)
    assert listed[0].role is None  # the small BERT: Chapter 3 always watches it train
    assert [m.role for m in listed[1:3]] == ["baseline-simcse", "baseline-finetuned"]
    finetunes = [m for m in listed if m.role == "finetuned" and m.settings is None]
    assert [m.loss for m in finetunes] == [
        "multiple_negatives",
        "batch_all_triplet",
        "supervised_contrastive",
    ]
    assert len(finetunes) == len(LOSSES)
    temperature_runs = [m.settings for m in listed if m.settings and m.settings.epochs == 1]
    seeds = models.finetune_seeds(cfg)
    assert [s.scale for s in temperature_runs] == [x for x in TEMPERATURE_SCALES for _ in seeds]
    assert [s.seed for s in temperature_runs] == seeds * len(TEMPERATURE_SCALES)
    repeats = [m for m in listed if m.settings and m.settings.epochs != 1]
    assert [(m.loss, m.settings.seed) for m in repeats] == [
        ("multiple_negatives", seed) for seed in seeds[1:]
    ]
    assert len({m.label for m in listed}) == len(listed)


def test_train_walks_the_one_list(tmp_path, write_config, monkeypatch, capsys):
    """``helpers train`` trains every entry of ``book_models``, in order, and nothing else."""
    cfg = load_config(write_config(tmp_path))  # baseline: the packaged model
    calls = []

    def fake_pretrain(cfg_, splits, *, progress=False):
        calls.append(("small BERT", None))
        return cfg_.models_dir / "small-bert"

    def fake_finetune(settings, base, splits, loss, models_dir, *, progress=False):
        calls.append((loss, settings.scale if settings.epochs == 1 else None))
        return models_dir / f"finetuned-{loss}-{settings.scale:g}"

    monkeypatch.setattr(models, "pretrained_model", fake_pretrain)
    monkeypatch.setattr(models, "finetuned_model", fake_finetune)
    assert main(["--config", str(cfg.source), "train"]) == 0
    listed = models.book_models(cfg)
    expected = ["small BERT", "simcse", *(m.loss or "batch_all_triplet" for m in listed[2:])]
    assert [c[0] for c in calls] == expected
    seeds = models.finetune_seeds(cfg)
    assert [c[1] for c in calls if c[1] is not None] == [
        x for x in TEMPERATURE_SCALES for _ in seeds
    ]
    printed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert printed == [m.label for m in listed]


# --- an edit of a recipe changes the folder key ------------------------------------------------

KEY_SCRIPT = """
import sys
from helpers.config import load_config
from helpers.corpus import corpus_splits
from helpers.models import base_encoder, finetune_splits
from helpers.finetuning import finetuned_folder
from helpers.pretraining import model_folder
cfg = load_config(sys.argv[1])
splits = corpus_splits(cfg)
base = base_encoder(cfg, splits, max_length=cfg.finetuning.max_length)
train = finetune_splits(cfg, splits)
print(model_folder(cfg, splits).name)
print(finetuned_folder(cfg.finetuning, base, train, "batch_all_triplet", cfg.models_dir).name)
"""


def _folder_names(package_root: Path, config: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(package_root), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", KEY_SCRIPT, str(config)],
        cwd=package_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert Path(proc.stdout.splitlines()[0]).name.startswith("small-bert-")
    return proc.stdout.split()


def _copy_with_edit(tmp_path: Path, name: str, module: str, old: str, new: str) -> Path:
    root = tmp_path / name
    shutil.copytree(
        ROOT / "helpers", root / "helpers", ignore=shutil.ignore_patterns("__pycache__")
    )
    path = root / "helpers" / module
    text = path.read_text()
    assert old in text, f"{old!r} is no longer in {module}: update this test"
    path.write_text(text.replace(old, new, 1))
    return root


@pytest.mark.slow  # four processes that each name every model the book trains
def test_editing_a_training_function_changes_the_model_folder(cfg, tmp_path):
    config = cfg.source
    same = _copy_with_edit(tmp_path, "same", "pretraining.py", "import math\n", "import math\n")
    original = _folder_names(same, config)
    body = _copy_with_edit(
        tmp_path,
        "pretrain-body",
        "pretraining.py",
        "    torch.manual_seed(p.seed)\n",
        "    torch.manual_seed(p.seed + 1)\n",
    )
    finetune_body = _copy_with_edit(
        tmp_path,
        "finetune-body",
        "finetuning.py",
        "        warmup_steps=0.1,",
        "        warmup_steps=0.2,",
    )
    docstring = _copy_with_edit(
        tmp_path,
        "docstring",
        "pretraining.py",
        '"""Train the small BERT into',
        '"""Train (a docstring edit) the small BERT into',
    )
    edited_pretrain, edited_finetune = (
        _folder_names(body, config),
        _folder_names(finetune_body, config),
    )
    assert edited_pretrain[0] != original[0], "an edit of train_mlm kept the small BERT's folder"
    assert edited_finetune[1] != original[1], "an edit of train_contrastive kept the folder"
    assert edited_finetune[0] == original[0], "a fine-tuning edit must not retrain the small BERT"
    assert _folder_names(docstring, config) == original, "a docstring edit changed a folder key"


@pytest.mark.slow
def test_the_three_objectives_resolve_like_roles_after_train(tmp_path, write_config, capsys):
    """``train`` builds MLM + SimCSE and MLM + fine-tune; ``metrics`` prints JSON for each."""
    import json

    tiny = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}
    tiny |= {"vocab_size": 300, "short_length": 32, "max_length": 64, "batch_size": 8}
    tiny |= {"steps": 30, "warmup_steps": 3, "track_every": 30}
    config = write_config(
        tmp_path,
        models=SMALL_BERT_ROLE,
        pretraining=tiny,
        # A few steps past the warm-up (whose first step has learning rate 0).
        finetuning={"batch_size": 4, "epochs": 1, "max_length": 32},
        continued={"epochs": 3},
    )
    cfg = load_config(config)
    paths = models.train_models(cfg, corpus_splits(cfg))
    assert {"baseline-simcse", "baseline-finetuned"} <= set(paths)
    rows = {}
    for role in ("baseline", "baseline-simcse", "baseline-finetuned"):
        assert main(["--config", str(config), "metrics", "--model", role, "--json"]) == 0
        rows[role] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert rows[role]["model"] == role and rows[role]["dim"] == 32
    # Same architecture, three objectives: three different sets of vectors.
    assert len({round(r["mean_cosine"], 6) for r in rows.values()}) == 3
