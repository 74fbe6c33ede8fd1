"""The small BERT is scored on context alone, and the score can be reproduced independently.

* Held-out scoring hides every selected target (``[MASK]``): no target is visible in the
  input it is scored on, and a model that copies its input gains nothing from it.
* The bigram reference conditions only on what the input shows.
* The side view and the pair AUC, which the chapters use to compare models, behave as
  their docstrings say on made-up data.
* (slow) A tiny small BERT trained by the book's own code gets the same held-out loss from
  an independent scorer (the plain Hugging Face forward pass, its own masking of the
  targets) as its training log and ``positions_table`` report.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_pure import ToyTokenizer

from helpers.geometry import same_subject_auc, side_view
from helpers.pretraining import BigramReference, HeldOutMLM, UnigramReference


class Copier(torch.nn.Module):
    """A "model" that predicts whatever token its input shows, with near certainty."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.bert = self
        self.cls = lambda hidden: hidden

    def forward(self, input_ids):
        logits = torch.full((*input_ids.shape, self.vocab), -20.0)
        logits.scatter_(-1, input_ids.unsqueeze(-1), 20.0)
        return type("Out", (), {"last_hidden_state": logits})()


def _blocks(n=60, length=24, vocab=40):
    ids = torch.randint(5, vocab, (n, length), generator=torch.Generator().manual_seed(1))
    ids[:, 0], ids[:, -1] = 2, 3
    return ids


def test_the_books_score_hides_every_target():
    tok = ToyTokenizer()
    held = HeldOutMLM.from_blocks(_blocks(), tok, 0.3, seed=0)
    assert held.selected.any()
    assert (held.masked[held.selected] == tok.mask_token_id).all()
    assert torch.equal(held.masked[~held.selected], held.blocks[~held.selected])
    assert set(held.kind.unique().tolist()) == {0, 1, 2}  # the training-style input has all three


def test_copying_the_input_wins_only_where_the_answer_is_visible():
    tok = ToyTokenizer()
    held = HeldOutMLM.from_blocks(_blocks(), tok, 0.3, seed=0)
    copier = Copier(1000)
    unigram = UnigramReference(held.blocks, 1000, tok.all_special_ids)
    rows = {r["positions"]: r for r in held.score_by_kind(copier, unigram)}
    assert rows["80/10/10: true token"]["model_accuracy"] == 1.0
    assert rows["all as [MASK]"]["model_accuracy"] == 0.0
    assert rows["80/10/10: all"]["model_accuracy"] > 0.05
    loss, accuracy = held.score(copier)
    assert accuracy == 0.0 and loss > 30  # nothing to copy: the book's score sees through it


def test_bigram_reference_uses_the_visible_left_neighbour_only():
    # Token 6 always follows 5; 7 and 8 appear elsewhere.
    blocks = torch.tensor([[2, 5, 6, 7, 5, 6, 8, 5, 6, 3]] * 4)
    uni = UnigramReference(blocks, 10, [0, 1, 2, 3, 4])
    ref = BigramReference(blocks, uni, mask_id=4)
    after_five = ref.log_probs(torch.tensor([5]))[0].exp()
    assert int(after_five.argmax()) == 6
    assert math.isclose(float(after_five.sum()), 1.0, rel_tol=1e-9)
    hidden_left = ref.log_probs(torch.tensor([4]))[0]  # left neighbour is [MASK]
    assert torch.allclose(hidden_left, uni.log_probs, atol=1e-12)  # back to the unigram model
    inputs = torch.tensor([[2, 5, 4, 4, 3]])
    selected = torch.tensor([[False, False, True, True, False]])
    targets = torch.tensor([6, 7])
    loss, _ = ref.score(inputs, selected, targets)
    expected = -(ref.log_probs(torch.tensor([5]))[0, 6] + uni.log_probs[7]) / 2
    assert math.isclose(loss, float(expected), rel_tol=1e-9)


def test_side_view_shows_a_cone_far_from_the_origin_and_a_cloud_around_it():
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(300, 64))
    cone = cloud + 12 * np.eye(64)[0]
    for X in (cloud, cone):
        view = side_view(X)
        assert view.shape == (300, 2)
        assert np.all(np.hypot(view[:, 0], view[:, 1]) <= 1 + 1e-9)  # a true projection
    assert side_view(cone)[:, 0].mean() > 0.8  # offset 12 against noise of norm 8
    assert abs(side_view(cloud)[:, 0].mean()) < 0.2
    # The horizontal mean is the length of the mean unit vector.
    U = cone / np.linalg.norm(cone, axis=1, keepdims=True)
    assert math.isclose(side_view(cone)[:, 0].mean(), np.linalg.norm(U.mean(0)), rel_tol=1e-9)


def test_pair_auc_is_chance_for_noise_and_high_for_clusters():
    rng = np.random.default_rng(1)
    labels = np.repeat(["a", "b", "c"], 30)
    X = rng.normal(size=(90, 16)) + 6 * np.eye(16)[np.searchsorted(["a", "b", "c"], labels)]
    assert same_subject_auc(X, labels) > 0.95
    rescaled = X * rng.uniform(0.1, 10, size=(90, 1))  # lengths do not change a cosine
    assert math.isclose(same_subject_auc(rescaled, labels), same_subject_auc(X, labels))
    assert abs(same_subject_auc(rng.normal(size=(90, 16)), labels) - 0.5) < 0.1


@pytest.mark.slow
def test_an_independent_scorer_agrees_with_the_training_log(tmp_path, write_config):
    from transformers import AutoTokenizer, BertForMaskedLM

    from helpers.config import load_config
    from helpers.corpus import corpus_splits
    from helpers.pretraining import HELDOUT_MASK, positions_table, pretrained_model
    from helpers.training import TrainingLog

    tiny = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}
    tiny |= {"vocab_size": 300, "short_length": 32, "max_length": 64, "batch_size": 8}
    tiny |= {"steps": 40, "warmup_steps": 4, "track_every": 20, "precision": "fp32"}
    cfg = load_config(write_config(tmp_path, pretraining=tiny))
    splits = corpus_splits(cfg)
    folder = pretrained_model(cfg, splits)
    summary = TrainingLog.load(folder).summary

    # Independent: the plain forward pass of the saved model on inputs masked here.
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = BertForMaskedLM.from_pretrained(folder).eval()
    held = HeldOutMLM(tokenizer, list(splits["test"]["text"]), 32, HELDOUT_MASK)
    total, count = 0.0, 0
    with torch.no_grad():
        for block, chosen in zip(held.blocks, held.selected):
            inputs = [tokenizer.mask_token_id if c else int(t) for t, c in zip(block, chosen)]
            assert not any(int(t) == i and c for t, i, c in zip(block, inputs, chosen))
            log_probs = model(input_ids=torch.tensor([inputs])).logits[0].log_softmax(-1)
            for position in torch.nonzero(chosen).flatten():
                total -= float(log_probs[position, block[position]])
                count += 1
    independent = total / count
    assert count == summary["heldout_targets"]
    assert math.isclose(independent, summary["heldout_mlm_loss"], abs_tol=1e-4)
    rows = {r["positions"]: r for r in positions_table(cfg, splits, folder)}
    assert math.isclose(rows["all as [MASK]"]["model_loss"], independent, abs_tol=1e-4)
