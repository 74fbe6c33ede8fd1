"""Properties of the geometry measurements and the post-hoc transforms (hypothesis-driven)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import geometry as g
from helpers.transforms import AllButTheTop, Centering, Whitening, fit_transform

FEW = settings(max_examples=25, deadline=None)
seeds = st.integers(min_value=0, max_value=2**32 - 1)
dims = st.integers(min_value=8, max_value=32)


def rng_for(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def labelled_cloud(seed: int, n: int = 60, d: int = 12, k: int = 3, spread: float = 1.0):
    """``k`` Gaussian clusters around random centres, with string labels."""
    rng = rng_for(seed)
    labels = np.array([f"s{i % k}" for i in range(n)])
    centres = rng.normal(size=(k, d)) * 3
    X = centres[np.arange(n) % k] + spread * rng.normal(size=(n, d))
    return X, labels


def brute_unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


# --- isotropic and degenerate clouds ---------------------------------------------------------


@FEW
@given(seed=seeds, d=dims)
def test_isotropic_gaussian_is_isotropic(seed, d):
    X = rng_for(seed).normal(size=(4000, d))
    assert g.isoscore(X) > 0.9
    assert abs(g.mean_pairwise_cosine(X)) < 0.05


@FEW
@given(seed=seeds, d=dims, scale=st.floats(0.01, 100))
def test_rank_one_data_has_isoscore_zero(seed, d, scale):
    rng = rng_for(seed)
    X = np.outer(rng.normal(size=200), rng.normal(size=d)) * scale + rng.normal(
        size=d
    )  # a line, offset
    assert 0.0 <= g.isoscore(X) < 1e-6


@FEW
@given(seed=seeds, d=dims, scale=st.floats(0.1, 10), shift=st.floats(-50, 50))
def test_isoscore_ignores_mean_scale_and_rotation(seed, d, scale, shift):
    rng = rng_for(seed)
    X = rng.normal(size=(300, d)) * rng.uniform(0.2, 3, size=d)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    base = g.isoscore(X)
    assert g.isoscore(X * scale + shift) == pytest.approx(base, abs=1e-9)
    assert g.isoscore(X @ Q) == pytest.approx(base, abs=1e-9)


def test_isoscore_is_one_for_equal_variances():
    # points of a regular simplex (the standard basis): all non-zero variances equal
    assert g.isoscore(np.vstack([np.eye(6), -np.eye(6)])) == pytest.approx(1.0, abs=1e-9)


@FEW
@given(seed=seeds, d=dims, offset=st.floats(50, 500))  # offset^2 >> d: a narrow cone
def test_common_vector_makes_a_cone_and_centering_undoes_it(seed, d, offset):
    rng = rng_for(seed)
    G = rng.normal(size=(500, d))
    direction = brute_unit(rng.normal(size=(1, d)))[0]
    X = G + offset * direction
    assert g.mean_pairwise_cosine(G) < 0.05
    assert g.mean_pairwise_cosine(X) > 0.95
    C = Centering().fit_transform(X)
    assert abs(g.mean_pairwise_cosine(C)) < 0.05
    assert np.allclose(C.mean(axis=0), 0, atol=1e-9)


# --- transforms -----------------------------------------------------------------------------------


@FEW
@given(seed=seeds, d=dims, shift=st.floats(-10, 10))
def test_whitening_gives_identity_covariance_on_fit_data(seed, d, shift):
    rng = rng_for(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    X = (rng.normal(size=(400, d)) * rng.uniform(0.1, 10, size=d)) @ Q + shift
    W = Whitening().fit(X).transform(X)
    assert W.shape == (400, d)
    assert np.allclose(W.mean(axis=0), 0, atol=1e-6)
    assert np.allclose(np.cov(W, rowvar=False), np.eye(d), atol=1e-6)


@FEW
@given(seed=seeds, d=dims, k=st.integers(1, 8))
def test_whitening_keeps_top_k(seed, d, k):
    X = rng_for(seed).normal(size=(200, d)) * np.arange(1, d + 1)
    W = Whitening(n_components=k).fit(X).transform(X)
    assert W.shape == (200, k)
    assert np.allclose(np.cov(W, rowvar=False), np.eye(k), atol=1e-6)


def test_whitening_with_fewer_points_than_dimensions_drops_null_directions():
    X = rng_for(0).normal(size=(10, 30))
    W = Whitening().fit(X).transform(X)
    assert W.shape[1] <= 9
    assert np.allclose(np.cov(W, rowvar=False), np.eye(W.shape[1]), atol=1e-6)


@FEW
@given(seed=seeds, d=dims, n_remove=st.integers(1, 3))
def test_all_but_the_top_removes_top_directions(seed, d, n_remove):
    rng = rng_for(seed)
    X = rng.normal(size=(300, d)) + 5.0
    top = brute_unit(rng.normal(size=(1, d)))[0]
    X += np.outer(rng.normal(size=300) * 20, top)  # one dominant direction
    abtt = AllButTheTop(n_remove=n_remove).fit(X)
    Z = abtt.transform(X)
    assert np.var(Z @ top) < 1e-3 * np.var(X @ top)  # the planted direction is gone
    for direction in abtt.directions_:
        assert np.var(Z @ direction) < 1e-18 * np.var(X).sum() + 1e-20
    assert np.allclose(Z.mean(axis=0), 0, atol=1e-9)


def test_fit_transform_fits_on_train_only():
    rng = rng_for(1)
    train, test = rng.normal(size=(50, 4)) + 3, rng.normal(size=(20, 4)) - 3
    tr, te = fit_transform("center", train, test)
    assert np.allclose(tr.mean(axis=0), 0)
    assert np.allclose(te, test - train.mean(axis=0))
    with pytest.raises(ValueError, match="unknown transform"):
        fit_transform("rotate", train, test)


# --- metric formulas against brute force -------------------------------------------------------


@FEW
@given(seed=seeds, n=st.integers(2, 40), d=st.integers(2, 10))
def test_mean_pairwise_cosine_matches_brute_force(seed, n, d):
    X = rng_for(seed).normal(size=(n, d)) + rng_for(seed + 1).normal(size=d)
    U = brute_unit(X)
    brute = np.mean([U[i] @ U[j] for i, j in itertools.combinations(range(n), 2)])
    assert g.mean_pairwise_cosine(X) == pytest.approx(brute, abs=1e-10)


@FEW
@given(seed=seeds, n=st.integers(2, 30), d=st.integers(2, 10))
def test_pair_cosines_and_cosine_to_others_match_brute_force(seed, n, d):
    X = rng_for(seed).normal(size=(n, d)) + rng_for(seed + 1).normal(size=d)
    U = brute_unit(X)
    pairs = [U[i] @ U[j] for i, j in itertools.combinations(range(n), 2)]
    assert g.pair_cosines(X) == pytest.approx(pairs, abs=1e-10)
    others = [np.mean([U[i] @ U[j] for j in range(n) if j != i]) for i in range(n)]
    assert g.cosine_to_others(X) == pytest.approx(others, abs=1e-10)
    assert g.cosine_to_others(X).mean() == pytest.approx(g.mean_pairwise_cosine(X), abs=1e-10)


@FEW
@given(seed=seeds, n=st.integers(2, 20), d=st.integers(2, 8))
def test_cosine_contributions_match_brute_force_and_sum_to_the_mean_cosine(seed, n, d):
    X = rng_for(seed).normal(size=(n, d)) + rng_for(seed + 1).normal(size=d)
    U = brute_unit(X)
    pairs = list(itertools.combinations(range(n), 2))
    brute = [np.mean([U[i, k] * U[j, k] for i, j in pairs]) for k in range(d)]
    assert g.cosine_contributions(X) == pytest.approx(brute, abs=1e-10)
    assert g.cosine_contributions(X).sum() == pytest.approx(g.mean_pairwise_cosine(X), abs=1e-10)


@FEW
@given(seed=seeds, k=st.integers(2, 4))
def test_between_subject_share_is_all_in_the_full_basis_and_none_off_the_centres(seed, k):
    X, labels = labelled_cloud(seed, n=60, d=12, k=k)
    assert g.between_subject_share(X, labels, np.eye(12)) == pytest.approx(1.0)
    # Directions orthogonal to every subject-mean difference carry none of it.
    means = np.array([X[labels == s].mean(axis=0) for s in np.unique(labels)])
    span = np.linalg.svd(means - X.mean(axis=0), full_matrices=True)[2]
    rank = np.linalg.matrix_rank(means - X.mean(axis=0))
    assert g.between_subject_share(X, labels, span[rank:]) == pytest.approx(0.0, abs=1e-10)
    assert g.between_subject_share(X, labels, span[:rank]) == pytest.approx(1.0)


@FEW
@given(seed=seeds, n=st.integers(8, 40), k=st.integers(2, 4))
def test_within_between_cosine_matches_brute_force(seed, n, k):
    X, labels = labelled_cloud(seed, n=n, d=6, k=k)
    U = brute_unit(X)
    pairs = list(itertools.combinations(range(n), 2))
    within = np.mean([U[i] @ U[j] for i, j in pairs if labels[i] == labels[j]])
    between = np.mean([U[i] @ U[j] for i, j in pairs if labels[i] != labels[j]])
    w, b = g.within_between_cosine(X, labels)
    assert w == pytest.approx(within, abs=1e-10)
    assert b == pytest.approx(between, abs=1e-10)


@FEW
@given(seed=seeds, t=st.floats(0.5, 4))
def test_uniformity_matches_brute_force(seed, t):
    X, _ = labelled_cloud(seed, n=30, d=5)
    U = brute_unit(X)
    brute = np.log(
        np.mean(
            [
                np.exp(-t * np.sum((U[i] - U[j]) ** 2))
                for i, j in itertools.combinations(range(30), 2)
            ]
        )
    )
    assert g.uniformity(X, t=t) == pytest.approx(brute, abs=1e-10)


@FEW
@given(seed=seeds, d=st.integers(2, 32), offset=st.floats(0, 10))
def test_uniformity_range_and_jensen_bound(seed, d, offset):
    X = rng_for(seed).normal(size=(120, d)) + offset
    u = g.uniformity(X, t=2.0)
    assert -8.0 <= u <= 0.0
    assert u >= -4.0 * (1.0 - g.mean_pairwise_cosine(X)) - 1e-9


def test_uniformity_extremes():
    assert g.uniformity(np.ones((10, 3))) == pytest.approx(0.0, abs=1e-12)  # all points coincide
    antipodal = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert g.uniformity(antipodal) == pytest.approx(-8.0)  # the only pair is 2 apart


@FEW
@given(seed=seeds, k=st.integers(1, 4), spread=st.floats(0.01, 10))
def test_alignment_range_and_relation_to_within_cosine(seed, k, spread):
    X, labels = labelled_cloud(seed, n=48, d=8, k=k, spread=spread)
    a = g.alignment(X, labels)
    within, _ = g.within_between_cosine(X, labels)
    assert 0.0 <= a <= 4.0
    assert a == pytest.approx(2.0 - 2.0 * within, abs=1e-9)


def test_alignment_needs_a_pair():
    with pytest.raises(ValueError):
        g.alignment(np.eye(3), np.array(["a", "b", "c"]))


@FEW
@given(seed=seeds)
def test_metrics_invariant_to_row_order(seed):
    X, labels = labelled_cloud(seed, n=45, d=10, k=3)
    perm = rng_for(seed + 7).permutation(len(X))
    Xp, lp = X[perm], labels[perm]
    for metric in (
        g.mean_pairwise_cosine,
        g.isoscore,
        g.partition_isotropy,
        g.pc1_share,
        g.uniformity,
    ):
        assert metric(Xp) == pytest.approx(metric(X), rel=1e-9, abs=1e-12), metric.__name__
    for metric in (g.within_between_cosine, g.alignment, g.subject_silhouette):
        assert np.allclose(metric(Xp, lp), metric(X, labels), rtol=1e-9, atol=1e-12), (
            metric.__name__
        )
    assert np.allclose(
        g.explained_variance_spectrum(Xp), g.explained_variance_spectrum(X), atol=1e-12
    )


@FEW
@given(seed=seeds, d=dims)
def test_cosine_metrics_ignore_row_lengths(seed, d):
    rng = rng_for(seed)
    X, labels = labelled_cloud(seed, n=40, d=d)
    scaled = X * rng.uniform(0.1, 10, size=(40, 1))
    assert g.mean_pairwise_cosine(scaled) == pytest.approx(g.mean_pairwise_cosine(X), abs=1e-12)
    assert np.allclose(
        g.within_between_cosine(scaled, labels), g.within_between_cosine(X, labels), atol=1e-12
    )
    assert g.uniformity(scaled) == pytest.approx(g.uniformity(X), abs=1e-12)


# --- partition isotropy, PCA share, IsoScore ceiling ----------------------------------------------


@FEW
@given(seed=seeds, d=dims)
def test_partition_isotropy_range_isotropic_vs_offset(seed, d):
    rng = rng_for(seed)
    iso = g.partition_isotropy(brute_unit(rng.normal(size=(4000, d))))
    shifted = g.partition_isotropy(
        brute_unit(rng.normal(size=(4000, d)) + 10 * brute_unit(rng.normal(size=(1, d))))
    )
    assert 0.0 <= shifted <= 1.0 and 0.0 <= iso <= 1.0
    assert iso > 0.9
    assert shifted < 0.5


@FEW
@given(seed=seeds, d=st.integers(2, 12), offset=st.floats(0, 3))
def test_partition_isotropy_matches_brute_force_over_signed_eigenvectors(seed, d, offset):
    X = rng_for(seed).normal(size=(50, d)) * 0.5 + offset
    _, vecs = np.linalg.eigh(X.T @ X)
    z = [np.sum(np.exp(X @ (sign * c))) for c in vecs.T for sign in (1, -1)]
    assert g.partition_isotropy(X) == pytest.approx(min(z) / max(z), rel=1e-9)
    assert g.partition_isotropy(-X) == pytest.approx(g.partition_isotropy(X), rel=1e-9)


@FEW
@given(seed=seeds, d=st.integers(2, 16))
def test_pc1_share_and_spectrum(seed, d):
    X = rng_for(seed).normal(size=(100, d)) * np.arange(1, d + 1)
    spec = g.explained_variance_spectrum(X)
    assert spec.sum() == pytest.approx(1.0)
    assert np.all(np.diff(spec) <= 1e-12)
    assert 1.0 / d - 1e-12 <= g.pc1_share(X) <= 1.0
    assert g.pc1_share(X) == pytest.approx(spec[0])


@FEW
@given(n=st.integers(2, 200), d=st.integers(2, 100))
def test_isoscore_ceiling_formula(n, d):
    expected = (min(n - 1, d) - 1) / (d - 1)
    assert g.isoscore_ceiling(n, d) == pytest.approx(expected)
    assert 0.0 <= g.isoscore_ceiling(n, d) <= 1.0
    if n - 1 >= d:
        assert g.isoscore_ceiling(n, d) == 1.0


@FEW
@given(seed=seeds, n=st.integers(3, 30), extra=st.integers(1, 40))
def test_isoscore_never_exceeds_ceiling_when_n_below_d(seed, n, extra):
    d = n + extra
    X = rng_for(seed).normal(size=(n, d))
    assert g.isoscore(X) <= g.isoscore_ceiling(n, d) + 1e-9


@pytest.mark.parametrize("n, d", [(3, 10), (5, 8), (10, 40)])
def test_isoscore_reaches_ceiling_for_simplex(n, d):
    X = np.eye(n, d)  # n points with n - 1 equal non-zero variances
    assert g.isoscore(X) == pytest.approx(g.isoscore_ceiling(n, d), abs=1e-9)


def test_isoscore_needs_two_points():
    with pytest.raises(ValueError):
        g.isoscore(np.ones((1, 5)))
    with pytest.raises(ValueError):
        g.mean_pairwise_cosine(np.ones((1, 5)))


# --- classification and the report -----------------------------------------------------------


@FEW
@given(seed=seeds, k=st.integers(2, 4))
def test_knn_and_probe_perfect_on_separated_clusters(seed, k):
    rng = rng_for(seed)
    d = 8
    # Every coordinate carries the clusters: the probe standardises each one, so a
    # coordinate of pure noise would weigh as much as an informative one.
    centres = 10 * rng.normal(size=(k, d))
    y_train = np.repeat([f"c{i}" for i in range(k)], 15)
    y_test = np.repeat([f"c{i}" for i in range(k)], 7)
    idx = lambda y: np.array([int(s[1:]) for s in y])  # noqa: E731
    X_train = centres[idx(y_train)] + 0.3 * rng.normal(size=(len(y_train), d))
    X_test = centres[idx(y_test)] + 0.3 * rng.normal(size=(len(y_test), d))
    for result in (
        g.knn_classification(X_train, y_train, X_test, y_test),
        g.probe_classification(X_train, y_train, X_test, y_test),
    ):
        assert result.accuracy == 1.0
        assert result.confusion.sum() == len(y_test)
        assert np.trace(result.confusion) == len(y_test)
        assert result.labels == sorted(set(y_test))
        assert list(result.predictions) == list(y_test)


def test_confusion_counts_mistakes():
    X_train = np.array([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]])
    y_train = np.array(["a", "a", "b", "b"])
    X_test = np.array([[1.0, 0.05], [0.05, 1], [1, 0.02]])
    y_test = np.array(["a", "a", "b"])  # two of three labelled wrongly on purpose
    r = g.knn_classification(X_train, y_train, X_test, y_test, k=1)
    assert r.confusion.sum() == 3
    assert r.accuracy == pytest.approx(np.trace(r.confusion) / 3)
    assert r.accuracy == pytest.approx(1 / 3)


def test_geometry_report_keys_and_ranges():
    from dataclasses import fields

    from helpers.analysis import METRIC_TITLES

    X, y = labelled_cloud(3, n=90, d=12, k=3, spread=0.5)
    report = g.geometry_report(X[::2], y[::2], X[1::2], y[1::2])
    d = report.as_dict()
    assert set(d) == {f.name for f in fields(g.GeometryReport)}
    assert set(METRIC_TITLES) <= set(d)
    assert d["n_test"] == 45 and d["dim"] == 12
    assert all(np.isfinite(v) for v in d.values())
    assert -1 <= d["mean_cosine"] <= 1 and 0 <= d["isoscore"] <= d["isoscore_ceiling"] + 1e-9
    assert 0 <= d["knn_accuracy"] <= 1 and 0 <= d["probe_accuracy"] <= 1
    assert d["within_cosine"] > d["between_cosine"]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 7))
def test_nearest_neighbours_are_the_brute_force_ones_and_carry_the_knn_vote(seed, k):
    rng = np.random.default_rng(seed)
    X_train, X_test = rng.normal(size=(40, 6)), rng.normal(size=(9, 6))
    y_train = rng.choice(["a", "b", "c"], size=40)
    idx, cos = g.nearest_neighbours(X_train, X_test, k=k)
    full = g.unit_rows(X_test) @ g.unit_rows(X_train).T
    np.testing.assert_allclose(cos, np.sort(full, axis=1)[:, ::-1][:, :k], atol=1e-9)
    np.testing.assert_allclose(np.take_along_axis(full, idx, axis=1), cos, atol=1e-9)
    # k-NN's prediction is a label with the most votes among exactly these neighbours.
    pred = g.knn_classification(X_train, y_train, X_test, np.array(["a"] * 9), k=k).predictions
    for row, p in zip(idx, pred):
        votes = {lab: (y_train[row] == lab).sum() for lab in "abc"}
        assert votes[p] == max(votes.values())


# --- graded similarity: subtopics within a subject ---------------------------------------------


def subtopic_cloud(seed: int, separated: bool, n_per_group: int = 5, d: int = 24):
    """Two subjects x three groups: groups far apart within a subject, or no structure at all."""
    rng = rng_for(seed)
    subjects = np.repeat(["bio", "phys"], 3 * n_per_group)
    groups = np.tile(np.repeat(["g0", "g1", "g2"], n_per_group), 2)
    X = rng.normal(size=(len(groups), d))
    if separated:
        centres = rng.normal(size=(6, d)) * 10
        X = X + centres[np.repeat(np.arange(6), n_per_group)]
    return X, subjects, groups


@FEW
@given(seed=seeds)
def test_subtopic_ap_is_one_when_groups_are_separated(seed):
    X, subjects, groups = subtopic_cloud(seed, separated=True)
    np.testing.assert_allclose(g.subtopic_average_precision(X, subjects, groups), 1.0)


def test_subtopic_ap_of_random_vectors_is_about_chance():
    X, subjects, groups = subtopic_cloud(0, separated=False, n_per_group=40)
    ap = g.subtopic_average_precision(X, subjects, groups)
    chance = g.subtopic_chance_ap(subjects, groups)
    assert not np.isnan(ap).any()
    assert abs(ap.mean() - chance.mean()) < 0.02, (ap.mean(), chance.mean())


@pytest.mark.parametrize("n, r", [(2, 1), (5, 1), (7, 3), (12, 11), (30, 4)])
def test_expected_random_ap_matches_monte_carlo(n, r):
    rng = rng_for(n * 100 + r)
    relevant = np.arange(n) < r
    simulated = np.mean(
        [g.ranked_average_precision(rng.permutation(relevant)) for _ in range(40_000)]
    )
    assert abs(g.expected_random_ap(n, r) - simulated) < 0.005


def test_subtopic_queries_need_a_partner_and_a_rival_in_their_subject():
    X = rng_for(1).normal(size=(6, 4))
    subjects = ["a", "a", "a", "b", "b", "c"]
    groups = ["x", "x", "y", "x", "x", "x"]  # subject b has one group only; c one item
    ap = g.subtopic_average_precision(X, subjects, groups)
    chance = g.subtopic_chance_ap(subjects, groups)
    assert np.isnan(ap).tolist() == [False, False, True, True, True, True]
    assert np.isnan(chance).tolist() == np.isnan(ap).tolist()


def test_subtopic_ties_are_ranked_by_row_order():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    # Query 0 is orthogonal to all three: the tie keeps row order, so its partner ranks as its row.
    assert g.subtopic_average_precision(X, ["a"] * 4, ["x", "x", "y", "y"])[0] == 1.0
    assert g.subtopic_average_precision(X, ["a"] * 4, ["x", "y", "y", "x"])[0] == 1 / 3


def _splits_with_groups(groups, subjects):
    from datasets import Dataset, DatasetDict

    part = Dataset.from_dict({"subject": list(subjects), "group": list(groups)})
    return DatasetDict(train=part, test=part)


def test_subtopic_retrieval_is_none_without_groups():
    from helpers.analysis import SplitEmbeddings, subtopic_change, subtopic_retrieval

    X, subjects, _ = subtopic_cloud(0, separated=True)
    emb = SplitEmbeddings("m", X, X)
    splits = _splits_with_groups([""] * len(X), subjects)
    assert subtopic_retrieval({"m": emb}, splits) is None
    assert subtopic_change(emb, emb, splits) is None


def test_subtopic_retrieval_reports_each_model_against_chance():
    from helpers.analysis import SplitEmbeddings, subtopic_change, subtopic_retrieval

    X, subjects, groups = subtopic_cloud(0, separated=True)
    noise = rng_for(1).normal(size=X.shape)
    embeddings = {
        "planted": SplitEmbeddings("p", X, X),
        "noise": SplitEmbeddings("n", noise, noise),
    }
    table = subtopic_retrieval(embeddings, _splits_with_groups(groups, subjects)).set_index("model")
    assert table.loc["planted", "mean AP"] == 1.0 and table.loc["planted", "mean AP low"] == 1.0
    assert table.loc["noise", "mean AP low"] < table.loc["noise", "chance"] + 0.1
    assert table["queries"].tolist() == [len(X)] * 2 and table["groups"].tolist() == [6, 6]
    change = subtopic_change(
        embeddings["planted"], embeddings["noise"], _splits_with_groups(groups, subjects)
    )
    assert change.low > 0


# --- silhouette intervals that recompute the statistic ------------------------------------------


def _explicit_resample_silhouette(D, labels, rows):
    """Each drawn copy's silhouette among the drawn copies, written as loops."""
    values = []
    for i in rows:
        same = [D[i, j] for j in rows if labels[j] == labels[i] and j != i]
        if not same:
            values.append(0.0)
            continue
        a = np.mean(same)
        b = min(
            np.mean([D[i, j] for j in rows if labels[j] == other])
            for other in set(labels[rows]) - {labels[i]}
        )
        values.append((b - a) / max(a, b))
    return float(np.mean(values))


def test_resampled_silhouette_is_sklearns_without_repeats_and_counts_copies_with_them():
    from sklearn.metrics import silhouette_samples

    from helpers.geometry import resampled_silhouette, unit_rows

    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 6))
    X[:12] += 0.8
    labels = np.array(["a"] * 12 + ["b"] * 10 + ["c"] * 8)
    U = unit_rows(X)
    D = 1 - U @ U.T
    np.fill_diagonal(D, 0)
    full = resampled_silhouette(D, labels, np.arange(30))
    assert full == pytest.approx(silhouette_samples(U, labels, metric="cosine").mean())
    for seed in range(5):
        rows = np.random.default_rng(seed).integers(0, 30, 30)
        assert resampled_silhouette(D, labels, rows) == pytest.approx(
            _explicit_resample_silhouette(D, labels, rows)
        )


def test_silhouette_change_of_a_model_with_itself_is_zero_and_separation_is_certain():
    from datasets import Dataset, DatasetDict

    from helpers.analysis import SplitEmbeddings, silhouette_change, silhouette_interval

    rng = np.random.default_rng(0)
    labels = np.repeat(["x", "y", "z"], 20)
    centres = {s: rng.normal(size=8) * 3 for s in "xyz"}
    X = np.stack([centres[s] + rng.normal(size=8) for s in labels])
    part = Dataset.from_dict({"text": [str(i) for i in range(60)], "subject": list(labels)})
    splits = DatasetDict(train=part, test=part)
    emb = SplitEmbeddings(model="planted", train=X, test=X)
    noise = SplitEmbeddings(model="noise", train=X, test=rng.normal(size=X.shape))
    same = silhouette_change(emb, emb, splits)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    separated = silhouette_interval(emb, splits)
    assert separated.low > 0.3
    gain = silhouette_change(emb, noise, splits)
    assert gain.low > 0.3
    unseen = silhouette_interval(emb, splits, keep=labels == "z")
    assert unseen.low <= unseen.mean <= unseen.high


def test_mean_cosine_change_is_the_difference_of_mean_pairwise_cosines():
    from helpers.analysis import SplitEmbeddings, mean_cosine_change

    rng = np.random.default_rng(0)
    before = rng.normal(size=(40, 6))
    after = before + np.array([2.0, 0, 0, 0, 0, 0])  # a shared offset: pairs more alike
    e = lambda X: SplitEmbeddings("m", X, X)  # noqa: E731
    iv = mean_cosine_change(e(after), e(before))
    expected = g.mean_pairwise_cosine(after) - g.mean_pairwise_cosine(before)
    assert iv.mean == pytest.approx(expected, abs=1e-12)
    assert 0 < iv.low < iv.mean < iv.high
    same = mean_cosine_change(e(before), e(before))
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    groups=st.integers(2, 5),
    spread=st.floats(0.0, 3.0),
)
def test_uniformity_never_falls_below_its_floor(seed, groups, spread):
    # From tight, far-apart groups (spread 0) to noise that hides them: the bound holds.
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(groups), 6)
    centres = rng.normal(size=(groups, 8))
    X = centres[labels] + spread * rng.normal(size=(len(labels), 8))
    floor = g.uniformity_floor(labels, g.alignment(X, labels))
    assert g.uniformity(X) >= floor - 1e-9


def test_uniformity_floor_is_reached_by_collapsed_orthogonal_groups():
    # Each group on one point, groups orthogonal: alignment 0 and uniformity
    # log(p + (1 - p) e^-4), within e^-4 / p of log p.
    labels = np.repeat([0, 1, 2], 4)
    X = np.eye(3)[labels]
    floor = g.uniformity_floor(labels, g.alignment(X, labels))
    p = 3 * 6 / 66
    assert floor == pytest.approx(np.log(p))
    assert g.uniformity(X) == pytest.approx(np.log(p + (1 - p) * np.exp(-4.0)))
    with pytest.raises(ValueError, match="same-label pair"):
        g.uniformity_floor(np.arange(4), 0.0)
