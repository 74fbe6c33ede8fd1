"""Fine-tuning's parts: the supervised contrastive loss, the stopping rule, the validation
hold-out and the false-negative count, each against an independent computation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from helpers.config import Finetuning
from helpers.finetuning import (
    false_negative_share,
    hold_out_validation,
    plateau_stop,
    plateaued,
    train_contrastive,
)
from helpers.losses import supervised_contrastive

sys.path.insert(0, str(Path(__file__).parent))
from tinymodel import tiny_model  # noqa: E402


def reference_supcon(z: np.ndarray, labels: np.ndarray, scale: float) -> float:
    """Khosla et al. (2020), eq. 2, written as loops over anchors and positives."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(np.exp(scale * z[i] @ z[a]) for a in others)
        losses.append(
            -np.mean([np.log(np.exp(scale * z[i] @ z[p]) / denominator) for p in positives])
        )
    return float(np.mean(losses))


def test_supervised_contrastive_matches_the_definition():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(12, 5))
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 1, 0])  # label 3: an anchor without positive
    got = supervised_contrastive(torch.tensor(z), torch.tensor(labels), scale=5.0)
    assert float(got) == pytest.approx(reference_supcon(z, labels, 5.0), rel=1e-6)


def test_supervised_contrastive_pulls_same_label_rows_together():
    """A gradient step raises the cosine of same-label rows (the multiple-negatives loss with
    one positive per anchor pushes the other same-label rows away instead)."""
    rng = np.random.default_rng(1)
    z = torch.tensor(rng.normal(size=(8, 4)), requires_grad=True)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])

    def same_label_cosine(x):
        u = torch.nn.functional.normalize(x, dim=1)
        c = u @ u.T
        same = (labels[:, None] == labels[None, :]) & ~torch.eye(8, dtype=torch.bool)
        return float(c[same].mean())

    before = same_label_cosine(z.detach())
    supervised_contrastive(z, labels, scale=10.0).backward()
    after = same_label_cosine((z - 0.5 * z.grad).detach())
    assert after > before


def test_a_batch_without_pairs_gives_zero_loss_and_a_gradient_graph():
    z = torch.randn(3, 4, requires_grad=True)
    loss = supervised_contrastive(z, torch.tensor([0, 1, 2]), scale=20.0)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.all(z.grad == 0)


@pytest.mark.parametrize(
    ("history", "stops"),
    [
        ([0.1, 0.2, 0.3], False),  # too few evaluations to judge
        ([0.1, 0.2, 0.3, 0.4, 0.5], False),  # still gaining 0.1 per evaluation
        ([0.1, 0.5, 0.504, 0.498, 0.509], True),  # best of the last three: +0.009
        ([0.1, 0.5, 0.504, 0.498, 0.511], False),  # +0.011
        ([0.5, 0.45, 0.40, 0.35], True),  # falling
    ],
)
def test_plateau_rule(history, stops):
    assert plateaued(history, delta=0.01, evaluations=3) is stops


def _splits(n_per_subject: dict[str, int]) -> DatasetDict:
    subjects = [s for s, n in n_per_subject.items() for _ in range(n)]
    train = Dataset.from_dict(
        {"text": [f"t{i}" for i in range(len(subjects))], "subject": subjects}
    )
    return DatasetDict(train=train, test=train.select(range(3)))


def test_validation_holds_back_a_share_of_each_subject_disjointly():
    splits = _splits({"a": 20, "b": 10, "c": 2})
    parts = hold_out_validation(splits, 0.2, seed=0)
    held, kept = set(parts["validation"]["text"]), set(parts["train"]["text"])
    assert not held & kept and held | kept == set(splits["train"]["text"])
    counts = {s: list(parts["validation"]["subject"]).count(s) for s in "abc"}
    assert counts == {"a": 4, "b": 2, "c": 1}  # at least one, never a whole subject
    assert parts["test"]["text"] == splits["test"]["text"]
    again = hold_out_validation(splits, 0.2, seed=0)
    assert again["validation"]["text"] == parts["validation"]["text"]


@pytest.mark.parametrize(("sizes", "batch"), [((60, 60, 60), 32), ((100, 30), 16)])
def test_false_negative_share_matches_sampling_without_replacement(sizes, batch):
    subjects = [str(i) for i, n in enumerate(sizes) for _ in range(n)]
    n = len(subjects)
    # Two rows drawn without replacement share a subject with probability
    # sum_s n_s (n_s - 1) / (n (n - 1)), whatever the batch size.
    exact = sum(k * (k - 1) for k in sizes) / (n * (n - 1))
    got = false_negative_share(subjects, batch, seed=0, batches=2000)
    assert got == pytest.approx(exact, abs=0.01)


def _tiny_run(tmp_path, loss: str, **settings) -> dict:
    base_dir = tiny_model(tmp_path / "tiny")
    from helpers.encoders import load_encoder

    base = load_encoder(str(base_dir), path=base_dir, pooling="mean", max_length=16)
    rng = np.random.default_rng(0)
    words = {"a": ["light", "wave", "energy"], "b": ["cell", "gene", "protein"]}
    texts, subjects = [], []
    for subject, vocab in words.items():
        for i in range(24):
            texts.append(" ".join(rng.choice(vocab, 5)) + f" {subject}{i}")
            subjects.append(subject)
    full = Dataset.from_dict({"text": texts, "subject": subjects})
    splits = DatasetDict(train=full.select(range(0, 48, 1)), test=full.select(range(0, 48, 6)))
    f = Finetuning(batch_size=8, max_length=16, eval_steps=1, losses=[loss], **settings)
    log = train_contrastive(f, base, splits, loss, tmp_path / "out")
    log.save(tmp_path / "out")
    return json.loads((tmp_path / "out" / "training_log.json").read_text())


@pytest.mark.slow  # trains a tiny model
def test_a_flat_validation_curve_stops_the_run(tmp_path):
    """With delta 1 no gain counts: the rule stops after ``plateau_evaluations`` evaluations."""
    log = _tiny_run(tmp_path, "supervised_contrastive", epochs=50, plateau_delta=1.0)
    assert log["summary"]["stopped"] == "plateau"
    # 38 rows in batches of 8 for 50 epochs would be over 150 steps; the warm-up is 10%.
    assert log["summary"]["steps"] < 40
    assert log["summary"]["validation_rows"] == 10  # 20% of 24, per subject
    assert "eval_validation_silhouette" in log["records"][0]


@pytest.mark.slow  # trains a tiny model
def test_the_time_cap_stops_the_run(tmp_path):
    log = _tiny_run(tmp_path, "batch_all_triplet", epochs=50, max_minutes=1e-6)
    assert log["summary"]["stopped"] == "time cap" and log["summary"]["steps"] == 1


@pytest.mark.slow  # trains a tiny model
def test_without_the_rule_a_run_takes_its_epochs(tmp_path):
    log = _tiny_run(tmp_path, "multiple_negatives", epochs=2, stop_at_plateau=False)
    assert log["summary"]["stopped"] == "epochs" and log["summary"]["validation_rows"] == 0
    assert log["summary"]["steps"] == 12  # 48 pairs in batches of 8, twice


def test_the_plateau_rule_waits_for_the_end_of_the_warm_up():
    """Evaluations while the rate still warms up never complete a plateau window."""
    from types import SimpleNamespace

    settings = Finetuning(plateau_delta=1.0, plateau_evaluations=3, max_minutes=100)
    stop = plateau_stop(settings)(0.5)
    args = SimpleNamespace(get_warmup_steps=lambda total: 10)
    stopped_at = None
    for step in range(1, 30):
        control = SimpleNamespace(should_training_stop=False)
        state = SimpleNamespace(global_step=step, max_steps=100)
        stop.on_evaluate(args, state, control, metrics={"eval_validation_silhouette": 0.5})
        if control.should_training_stop:
            stopped_at = step
            break
    assert stopped_at == 13 and stop.reason == "plateau"  # steps 11, 12, 13 are warm
