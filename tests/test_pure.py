"""Unit tests of the pure functions that the chapters and training rely on.

Each test checks behaviour with small, made-up inputs: BERT masking, block cutting, the
unigram reference, dataset construction for the two losses, subject restriction,
per-subject separation, bootstrap intervals, claims, the training-log round trip, the PCA
sign convention and the chart HTML's escaping.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from helpers.analysis import SplitEmbeddings, per_subject_separation
from helpers.corpus import restrict_subjects
from helpers.finetuning import pair_dataset, triplet_dataset
from helpers.intervals import bootstrap_mean, paired_difference
from helpers.pretraining import UnigramReference, corpus_tokenizer, cut_blocks, mask_tokens
from helpers.training import TrainingLog, build_once


class ToyTokenizer:
    """Ids 0-4 are special ([PAD], [UNK], [CLS], [SEP], [MASK]); words map to 5, 6, ..."""

    pad_token_id, cls_token_id, sep_token_id, mask_token_id = 0, 2, 3, 4
    all_special_ids = [0, 1, 2, 3, 4]

    def __len__(self):
        return 1000

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[5 + (hash(w) % 900) for w in t.split()] for t in texts]}


# --- masking and blocks -----------------------------------------------------------------------


def test_masking_selects_the_rate_and_splits_80_10_10():
    tok = ToyTokenizer()
    ids = torch.randint(5, 1000, (400, 128))
    ids[:, 0], ids[:, -1] = tok.cls_token_id, tok.sep_token_id
    corrupted, selected = mask_tokens(ids, tok, 0.15, torch.Generator().manual_seed(0))
    eligible = ids.numel() - 2 * len(ids)
    assert abs(selected.sum().item() / eligible - 0.15) < 0.01
    assert not selected[:, 0].any() and not selected[:, -1].any()  # specials never selected
    masked = (corrupted[selected] == tok.mask_token_id).float().mean().item()
    kept = (corrupted[selected] == ids[selected]).float().mean().item()
    assert abs(masked - 0.8) < 0.02
    # 10% kept on purpose, plus the random replacements that drew the same id by chance
    assert abs(kept - 0.1) < 0.02
    assert torch.equal(corrupted[~selected], ids[~selected])  # unselected stay untouched


def test_masking_is_reproducible_with_a_seed():
    tok = ToyTokenizer()
    ids = torch.randint(5, 1000, (20, 30))
    a = mask_tokens(ids, tok, 0.3, torch.Generator().manual_seed(7))
    b = mask_tokens(ids, tok, 0.3, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_blocks_frame_the_token_stream_and_drop_the_tail():
    tok = ToyTokenizer()
    texts = ["a b c", "d e", "f g h i"]  # 9 words + 3 [SEP] = 12 tokens
    blocks = cut_blocks(tok, texts, length=6)  # 4 tokens of body per block
    assert blocks.shape == (3, 6)
    assert (blocks[:, 0] == tok.cls_token_id).all() and (blocks[:, -1] == tok.sep_token_id).all()
    body = blocks[:, 1:-1].flatten().tolist()
    stream = [t for seq in tok(texts)["input_ids"] for t in seq + [tok.sep_token_id]]
    assert body == stream[:12]
    with pytest.raises(ValueError, match="not enough text"):
        cut_blocks(tok, ["a"], length=16)


def test_unigram_reference_predicts_the_most_frequent_token():
    blocks = torch.tensor([[2, 7, 7, 7, 8, 3]])
    ref = UnigramReference(blocks, vocab_size=10, special_ids=[0, 1, 2, 3, 4])
    targets = torch.tensor([7, 8])
    assert int(ref.log_probs.argmax()) == 7
    assert ref.accuracy(targets) == 0.5
    # add-one smoothing over the 5 non-special ids: p(7) = 4/9, p(8) = 2/9
    assert ref.loss(targets) == pytest.approx(-(np.log(4 / 9) + np.log(2 / 9)) / 2)
    assert torch.isinf(ref.log_probs[2])  # special tokens get no probability


def test_corpus_tokenizer_keeps_frequent_pieces_and_spells_the_rest():
    tok = corpus_tokenizer(["the cell divides", "the cell grows"] * 40, vocab_size=300)
    assert len(tok) <= 300
    assert tok.convert_ids_to_tokens(tok("the cell")["input_ids"]) == [
        "[CLS]",
        "the",
        "cell",
        "[SEP]",
    ]
    pieces = tok.convert_ids_to_tokens(tok("zebra", add_special_tokens=False)["input_ids"])
    assert "[UNK]" not in pieces and "".join(p.removeprefix("##") for p in pieces) == "zebra"
    again = corpus_tokenizer(["the cell divides", "the cell grows"] * 40, vocab_size=300)
    assert again.get_vocab() == tok.get_vocab()  # the same vocabulary on every run


# --- fine-tuning data ---------------------------------------------------------------------------


def toy_splits():
    subjects = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    texts = [f"{s} text {i}" for i, s in enumerate(subjects)]
    train = Dataset.from_dict({"text": texts, "subject": subjects})
    test = Dataset.from_dict(
        {
            "text": ["a x", "a w", "b y", "b v", "c z", "c u"],
            "subject": ["a", "a", "b", "b", "c", "c"],
        }
    )
    return DatasetDict(train=train, test=test)


def test_pairs_join_different_chunks_of_one_subject():
    splits = toy_splits()
    pairs = pair_dataset(splits, seed=0)
    subject_of = dict(zip(splits["train"]["text"], splits["train"]["subject"]))
    assert len(pairs) == len(splits["train"])
    for anchor, positive in zip(pairs["anchor"], pairs["positive"]):
        assert anchor != positive and subject_of[anchor] == subject_of[positive]


def test_triplet_rows_carry_subject_indices():
    data = triplet_dataset(toy_splits())
    assert data["label"] == [0] * 4 + [1] * 4 + [2] * 4


def test_restrict_subjects_keeps_only_those_rows():
    kept = restrict_subjects(toy_splits(), ["a", "c"])
    assert set(kept["train"]["subject"]) == {"a", "c"} and len(kept["train"]) == 8
    assert kept["test"]["subject"] == ["a", "a", "c", "c"]
    assert restrict_subjects(toy_splits(), None)["train"].num_rows == 12


def test_per_subject_separation_counts_and_intervals():
    rng = np.random.default_rng(0)
    splits = toy_splits()
    centers = {"a": [5, 0, 0], "b": [0, 5, 0], "c": [0, 0, 5]}
    X_train = np.array([centers[s] for s in splits["train"]["subject"]]) + rng.normal(
        0, 0.1, (12, 3)
    )
    # one "c" test chunk sits with the "a" chunks: k-NN gets it wrong
    X_test = np.array([centers[s] for s in ("a", "a", "b", "b", "a", "c")], float)
    X_test += rng.normal(0, 0.1, X_test.shape)
    emb = SplitEmbeddings("toy", X_train, X_test)
    table = per_subject_separation(emb, splits, k=3, trained_on=["a", "b"]).set_index("subject")
    assert table.loc["a", "knn_correct"] == 2 and table.loc["c", "knn_correct"] == 1
    assert table.loc["c", "n_test"] == 2 and table.loc["c", "knn_accuracy"] == 0.5
    assert table.loc["c", "trained on"] == "no"
    assert (table["knn_low"] <= table["knn_accuracy"]).all()
    assert (table["knn_accuracy"] <= table["knn_high"]).all()


# --- intervals ----------------------------------------------------------------------------------


def test_bootstrap_interval_covers_the_mean_and_narrows_with_n():
    small = bootstrap_mean(np.r_[np.ones(8), np.zeros(2)])
    large = bootstrap_mean(np.r_[np.ones(800), np.zeros(200)])
    assert small.low <= 0.8 <= small.high and large.low <= 0.8 <= large.high
    assert (large.high - large.low) < (small.high - small.low) / 5


def test_paired_difference_excludes_zero_only_for_a_clear_change():
    before = np.r_[np.ones(50), np.zeros(50)]
    assert paired_difference(np.ones(100), before).excludes_zero
    one_flip = before.copy()
    one_flip[50] = 1
    assert not paired_difference(one_flip, before).excludes_zero


def test_an_interval_reads_as_table_columns_and_as_one_cell():
    from helpers.intervals import Interval

    iv = paired_difference(np.r_[np.ones(60), np.zeros(40)], np.r_[np.ones(40), np.zeros(60)])
    assert iv.row() == {"mean": iv.mean, "95% low": iv.low, "95% high": iv.high}
    assert iv.row("k-NN")["k-NN low"] == iv.low
    assert Interval(0.2, -0.05, 0.4).text(2) == "+0.20 [-0.05, +0.40]"


def test_classify_scores_both_classifiers_on_the_held_out_split_only():
    from helpers.analysis import SplitEmbeddings, apply_fix, classify, correct_of
    from helpers.transforms import Centering

    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    y_train, y_test = np.repeat(list("abc"), 10), np.array(list("abc") * 2)
    train = centres[np.repeat([0, 1, 2], 10)] + rng.normal(size=(30, 3))
    test = centres[[0, 1, 2] * 2] + rng.normal(size=(6, 3))
    splits = {"train": {"subject": list(y_train)}, "test": {"subject": list(y_test)}}
    # The last held-out chunk sits on another subject's centre: both classifiers miss it.
    test[-1] = centres[0]
    hits = correct_of(classify(SplitEmbeddings("m", train, test), splits), splits)
    assert set(hits) == {"k-NN", "probe"}
    for per_chunk in hits.values():
        assert per_chunk.tolist() == [1, 1, 1, 1, 1, 0]
    # A fix is fit on the training vectors only: the held-out mean does not move it.
    shifted = SplitEmbeddings("m", train, test + 100.0)
    assert np.allclose(apply_fix(Centering(), shifted).test, test + 100.0 - train.mean(axis=0))


def test_a_resampled_auc_never_pairs_an_item_with_its_own_copy():
    from helpers.geometry import same_subject_auc
    from helpers.intervals import resampled_interval

    # Same-subject items point apart; each is close to one item of the other subject.
    X = np.array([[1, 0], [0, 1], [1, 0.05], [0.05, 1]])
    labels = np.array(["a", "a", "b", "b"])
    assert same_subject_auc(X, labels) == 0.25
    # Item 0 twice: its copies (cosine 1) would be a perfect same-subject pair (AUC 0.75).
    assert same_subject_auc(X, labels, rows=[0, 0, 2, 3]) == 0.5
    iv = resampled_interval(lambda rows: same_subject_auc(X, labels, rows), 4, n_boot=50)
    assert iv.mean == 0.25 and iv.low <= 0.25 <= iv.high


# --- training logs and claims -------------------------------------------------------------------


def test_build_once_trains_once_and_round_trips_the_log(tmp_path):
    calls = []

    def train(out):
        calls.append(out)
        (out / "weights.bin").write_bytes(b"x")
        return TrainingLog(
            records=[{"step": 5, "loss": 1.5}], seconds=2.0, parameters=10, summary={"steps": 5}
        )

    folder = tmp_path / "m"
    assert build_once(folder, {"k": 1}, train) == folder
    assert build_once(folder, {"k": 1}, train) == folder
    assert len(calls) == 1 and (folder / "weights.bin").exists()
    log = TrainingLog.load(folder)
    assert log.summary == {"steps": 5} and log.frame()["loss"].tolist() == [1.5]


def test_build_once_leaves_nothing_when_training_fails(tmp_path):
    def train(out):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        build_once(tmp_path / "m", {}, train)
    assert not (tmp_path / "m").exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_claims_are_recorded_and_a_failed_one_shows_a_note(tmp_path, monkeypatch, write_config):
    import myst_nb

    from helpers import book
    from helpers.config import load_config

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda k, v, display=False: glued.__setitem__(k, v))
    cfg = load_config(write_config(tmp_path))
    monkeypatch.setitem(book._STATE, "cfg", cfg)
    monkeypatch.setitem(book._STATE, "groups", set())
    assert book.claim("t_holds", 2 > 1, "two exceeds one") is True
    assert book.claim("t_fails", 1 > 2, "one exceeds two") is False
    assert book.claim("t_na", None, "a second corpus agrees") is None
    assert glued["claim_t_holds"].data == ""
    assert book.UNCHECKED_CLASS in glued["claim_t_na"].data
    assert book.CLAIM_CLASS not in glued["claim_t_na"].data
    assert book.CLAIM_CLASS in glued["claim_t_fails"].data
    assert "one exceeds two" in glued["claim_t_fails"].data
    recorded = json.loads(book.claims_file(cfg).read_text())
    assert {k: v["holds"] for k, v in recorded.items()} == {
        "t_holds": True,
        "t_fails": False,
        "t_na": None,
    }


def test_change_words_follow_the_interval():
    from helpers.book import change_words
    from helpers.intervals import Interval

    assert change_words(Interval(0.1, 0.02, 0.2)) == "rose"
    assert change_words(Interval(-0.1, -0.2, -0.02)) == "fell"
    assert change_words(Interval(0.1, -0.01, 0.2)) == "did not change clearly"


# --- charts -------------------------------------------------------------------------------------


def test_pca_signs_do_not_depend_on_row_order():
    from helpers.charts import pca_projection

    X = np.random.default_rng(0).normal(size=(60, 5)) @ np.diag([5, 3, 1, 1, 1])
    order = np.random.default_rng(1).permutation(60)
    a, _ = pca_projection(X)
    b, _ = pca_projection(X[order])
    np.testing.assert_allclose(a[order], b, atol=1e-8)


def test_chart_html_cannot_close_its_script_tag():
    from helpers.charts import chart_html

    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
        "data": {"values": [{"x": 1, "label": "</script><b>bold</b>"}]},
        "mark": "point",
        "encoding": {"x": {"field": "x", "type": "quantitative"}},
    }
    html = chart_html(spec)
    script = html.split('class="book-chart-spec">', 1)[1]
    assert script.count("</script>") == 1  # only the real end tag
    payload = script.split("</script>", 1)[0]
    assert json.loads(payload.replace("<\\/", "</"))["data"]["values"][0]["label"].startswith(
        "</script>"
    )


def test_helpers_warnings_reach_the_page(tmp_path, write_config, capsys, monkeypatch):
    """book.start() must not silence the helpers' own warnings: they print as cell output."""
    import logging

    from helpers import book

    monkeypatch.setenv("ANISOTROPY_BOOK_CONFIG", str(write_config(tmp_path)))
    book.start()
    logging.getLogger("helpers.embeddings").warning("3 of 9 texts were truncated")
    assert "3 of 9 texts were truncated" in capsys.readouterr().out


def test_a_chapter_run_replaces_its_earlier_claims(tmp_path, monkeypatch, write_config):
    """A claim removed from a chapter must not linger in the claims file as a failure."""
    import myst_nb

    from helpers import book
    from helpers.config import load_config

    monkeypatch.setattr(myst_nb, "glue", lambda *a, **k: None)
    cfg = load_config(write_config(tmp_path))
    monkeypatch.setitem(book._STATE, "cfg", cfg)
    monkeypatch.setitem(book._STATE, "groups", set())
    book.claim("ch4_old", False, "an old sentence")
    book.claim("ch5_kept", True, "another chapter's sentence")
    monkeypatch.setitem(book._STATE, "groups", set())  # a new process: chapter 4 runs again
    book.claim("ch4_new", True, "the new sentence")
    assert sorted(book.read_claims(cfg)) == ["ch4_new", "ch5_kept"]


def _toy_panels(n=30, models=("A", "B", "C")):
    from helpers import charts

    rng = np.random.default_rng(0)
    subjects = np.array(["bio", "chem", "hist"] * (n // 3))
    texts = [f"chunk {i} of {s}" for i, s in enumerate(subjects)]
    embeddings = {m: rng.normal(size=(n, 8)) for m in models}
    return charts.projection_panels(embeddings, subjects, texts), subjects, texts


def test_projection_grid_links_every_panel_and_the_table():
    from helpers import charts

    charts.setup_altair(["bio", "chem", "hist"])
    panels, subjects, _ = _toy_panels()
    spec = charts.projection_grid(panels).to_dict()
    params = {p["name"]: p for p in spec["params"]}
    assert set(params) == {"brush", "legend_subject"}
    assert params["legend_subject"]["bind"] == "legend"
    # One linked selection over all three panels, not one per panel.
    assert len(params["brush"]["views"]) == len(params["legend_subject"]["views"]) == 3
    rows = spec["datasets"][next(iter(spec["datasets"]))]
    assert {"x0", "y0", "x2", "y2", "subject", "snippet"} <= set(rows[0])
    assert [r["subject"] for r in rows] == list(subjects)


def test_projection_grid_static_picture_leaves_out_the_selection_readout():
    """Print and no-JavaScript readers see the panels, not "30 of 30 chunks selected" and a list."""
    from helpers import charts

    charts.setup_altair(["bio", "chem", "hist"])
    panels, _, texts = _toy_panels()
    html = charts.chart_html(charts.projection_grid(panels).to_dict())
    static = html.split('<div class="book-chart-static">', 1)[1].split("</div>", 1)[0]
    shown = " | ".join(re.findall(r"<text[^>]*>([^<]*)</text>", static))  # the words drawn
    assert "chunks selected" not in shown
    assert not [t for t in texts if t in shown]  # no chunk of the list either
    assert "PC1 (" in shown and "Subject" in shown  # the panels and their legend are drawn
    live = json.loads(html.split('class="book-chart-spec">', 1)[1].split("</script>", 1)[0])
    readout = json.dumps(live["vconcat"][1])
    assert "chunks selected" in readout and "datum.snippet" in readout


def test_without_interactive_only_drops_marked_views_at_any_depth():
    import altair as alt
    import pandas as pd

    from helpers import charts

    dot = alt.Chart(pd.DataFrame({"x": [1]})).mark_point().encode(x="x:Q")
    hint = charts.interactive_only(dot.mark_text(text="drag to select"), "hint")
    spec = alt.vconcat(alt.hconcat(dot, alt.layer(dot, hint)), hint).to_dict()
    static = charts.without_interactive_only(spec)
    assert len(static["vconcat"]) == 1 and len(static["vconcat"][0]["hconcat"][1]["layer"]) == 1
    assert "drag to select" in json.dumps(spec) and "drag to select" not in json.dumps(static)
    assert "drag to select" not in charts.static_svg(spec)


def test_linked_frame_refuses_panels_of_different_chunks():
    from helpers import charts

    panels, _, _ = _toy_panels()
    frame, shares, name = panels[1]
    with pytest.raises(ValueError, match="same chunks"):
        charts.linked_frame([panels[0], (frame.iloc[::-1], shares, name)])


def test_neighbour_explorer_offers_each_query_and_lists_k_per_model():
    import pandas as pd

    from helpers import charts
    from helpers.analysis import neighbour_lists
    from helpers.geometry import nearest_neighbours

    rng = np.random.default_rng(0)
    subjects = np.array(["bio", "chem"] * 10)
    texts = [f"text {i}" for i in range(20)]
    splits = {
        "train": {"subject": list(subjects[:14]), "text": texts[:14]},
        "test": {"subject": list(subjects[14:]), "text": texts[14:]},
    }
    X = rng.normal(size=(20, 5))
    neighbours = {
        "m1": nearest_neighbours(X[:14], X[14:], k=3),
        "m2": nearest_neighbours(-X[:14], X[14:], k=3),
    }
    queries = np.array([0, 3, 5])
    lists = neighbour_lists(neighbours, queries, splits)
    assert len(lists) == 2 * 3 * 3
    assert set(lists["rank"]) == {1, 2, 3}
    first = lists[(lists["query"] == 3) & (lists["model"] == "m1")].sort_values("rank")
    assert first["text"].iloc[0] == texts[neighbours["m1"][0][3, 0]]
    same = first["same"].to_numpy()
    assert (same == (first["subject"].to_numpy() == subjects[14 + 3])).all()
    frame = pd.DataFrame(
        {
            "query": queries,
            "subject": subjects[14 + queries],
            "text": [texts[14 + q] for q in queries],
        }
    )
    spec = charts.neighbour_explorer(frame, lists, default=3).to_dict()
    (param,) = [p for p in spec["params"] if p["name"] == "query"]
    assert param["value"] == 3 and param["bind"]["options"] == [0, 3, 5]
    assert len(param["bind"]["labels"]) == 3


def test_alignment_uniformity_paths_keep_each_runs_evaluations_in_order():
    from helpers.analysis import alignment_uniformity_paths

    def log(*evaluations):
        records = [{"step": 1, "loss": 0.5}]  # a training-loss row: not an evaluation
        records += [
            {"step": s, "eval_alignment": a, "eval_uniformity": u, "eval_silhouette": 0.1}
            for s, a, u in evaluations
        ]
        return TrainingLog(records=records, seconds=1.0, parameters=1)

    paths = alignment_uniformity_paths(
        {"a": log((0, 1.5, -3.0), (3, 1.0, -2.0)), "b": log((0, 1.5, -3.0))}
    )
    assert list(paths.columns) == ["run", "step", "alignment", "uniformity", "silhouette"]
    assert paths["run"].tolist() == ["a", "a", "b"]
    assert paths["step"].tolist() == [0, 3, 0]
    assert paths.loc[1, ["alignment", "uniformity"]].tolist() == [1.0, -2.0]
