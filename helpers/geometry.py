"""Geometry of a set of sentence embeddings: anisotropy, isotropy, clusters, separability.

Every function takes an array ``X`` of shape ``(n_points, dim)`` (rows are embeddings) and,
where subjects matter, an array of ``labels``. Cosine-based metrics normalise rows
themselves, so raw or unit-length vectors give the same answer. scikit-learn does the
work wherever it already offers the computation (PCA, k-NN, logistic regression,
silhouette, confusion matrix); the rest is written here and says so.

Memory grows linearly with the number of points, so a large corpus fits on one machine:
the cosine means are closed forms over sums of vectors; alignment and uniformity visit all
pairs in row blocks (:func:`rows_per_block`); k-NN and the silhouette let scikit-learn do
the same (its ``working_memory``, set by :func:`pairwise_memory`); PCA,
IsoScore and I(W) work on ``(n, d)`` arrays. Above :data:`SILHOUETTE_EXACT_MAX` points the
silhouette (time ``n^2``) is estimated on a fixed, seeded, stratified sample.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(500, 50))
>>> round(mean_pairwise_cosine(X), 2)
0.0
>>> round(mean_pairwise_cosine(X + 10), 2)      # a shared offset builds a narrow cone
0.99
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import logsumexp
from sklearn import config_context
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score, silhouette_samples
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .intervals import bootstrap_mean

# All-pairs steps work through n points in blocks of at most BLOCK_ROWS rows by n columns
# (and at most BLOCK_BYTES bytes), so their memory grows at most linearly with n.
BLOCK_ROWS = 256
BLOCK_BYTES = 32 * 2**20

# Up to this many points the silhouette uses every pair (as it always did); above it, a
# stratified sample of this many points.
SILHOUETTE_EXACT_MAX = 4000


def rows_per_block(n_columns: int) -> int:
    """Rows per block of ``n_columns`` float64 values: :data:`BLOCK_ROWS`, fewer when a block
    would pass :data:`BLOCK_BYTES`, and at least one.

    >>> rows_per_block(1000), rows_per_block(10**6), rows_per_block(10**9)
    (256, 4, 1)
    """
    fit = BLOCK_BYTES // (8 * max(n_columns, 1))
    return int(max(1, min(BLOCK_ROWS, fit)))


def pair_sq_distances(X: np.ndarray) -> Iterator[np.ndarray]:
    """Squared Euclidean distances of every pair ``i < j`` of rows, one flat array per row block.

    The block of rows ``s:e`` meets rows ``s:`` only, so each pair comes once and no block
    holds more than :func:`rows_per_block` rows of ``n`` values. One matrix product per
    block, ``|u - v|^2 = |u|^2 + |v|^2 - 2 u.v``, clipped at zero against rounding.

    >>> X = np.array([[0.0, 0], [3, 4], [0, 1]])
    >>> np.concatenate(list(pair_sq_distances(X))).tolist()
    [25.0, 1.0, 18.0]
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    sq_norms = np.einsum("ij,ij->i", X, X)
    step = rows_per_block(n)
    for start in range(0, n - 1, step):
        stop = min(start + step, n)
        block = X[start:stop] @ X[start:].T  # (rows, n - start)
        block *= -2.0
        block += sq_norms[start:stop, None]
        block += sq_norms[None, start:]
        np.maximum(block, 0.0, out=block)
        # local row r is point start + r, local column c is point start + c: keep c > r
        yield block[np.triu(np.ones(block.shape, dtype=bool), k=1)]


def pairwise_memory(n_columns: int):
    """A context in which scikit-learn's pairwise steps use blocks of :func:`rows_per_block` rows.

    Sets its ``working_memory`` (MiB) to the size of such a block of ``n_columns`` values.

    >>> from sklearn import get_config
    >>> with pairwise_memory(1024):
    ...     get_config()["working_memory"]
    2.0
    """
    return config_context(working_memory=rows_per_block(n_columns) * 8 * n_columns / 2**20)


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean length (zero rows stay zero)."""
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms == 0, 1.0, norms)


def mean_pairwise_cosine(X: np.ndarray) -> float:
    """Mean cosine similarity over all pairs of distinct rows.

    Ethayarajh (2019) estimates anisotropy as the expected cosine between randomly sampled
    representations: 0 for an isotropic cloud, near 1 for a narrow cone. This computes that
    expectation exactly over all ``n(n-1)/2`` pairs, using
    ``sum_{i != j} u_i . u_j = |sum_i u_i|^2 - n`` for unit vectors ``u``. Range [-1/(n-1), 1].
    Written here: no library offers it. O(n d).

    >>> round(mean_pairwise_cosine(np.eye(3)), 3)
    0.0
    """
    U = unit_rows(X)
    n = len(U)
    if n < 2:
        raise ValueError("mean_pairwise_cosine needs at least 2 rows")
    s = U.sum(axis=0)
    return float((s @ s - n) / (n * (n - 1)))


def pair_cosines(X: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of distinct rows, each pair once (``n(n-1)/2`` values).

    >>> pair_cosines(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])).round(3)
    array([0.   , 0.707, 0.707])
    """
    U = unit_rows(X)
    return (U @ U.T)[np.triu_indices(len(U), k=1)]


def cosine_to_others(X: np.ndarray) -> np.ndarray:
    """Each row's mean cosine with every other row; their mean is :func:`mean_pairwise_cosine`.

    O(n d), from the same identity: ``sum_{j != i} u_i . u_j = u_i . sum_j u_j - 1``.

    >>> cosine_to_others(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    array([0.5, 0.5, 0. ])
    """
    U = unit_rows(X)
    if len(U) < 2:
        raise ValueError("cosine_to_others needs at least 2 rows")
    return (U @ U.sum(axis=0) - 1) / (len(U) - 1)


def cosine_contributions(X: np.ndarray) -> np.ndarray:
    """Each coordinate's share of the mean pairwise cosine: the values sum to it exactly.

    The cosine of two unit rows is ``sum_k u_k v_k``, so coordinate ``k`` contributes the
    mean of ``u_k v_k`` over distinct pairs (Timkey & van Schijndel, 2021, measure this to
    find the few "rogue" dimensions that decide cosine similarity in BERT and GPT-2).
    O(n d), by the identity of :func:`mean_pairwise_cosine` applied per coordinate.

    >>> X = np.array([[3.0, 0.0], [3.0, 1.0], [3.0, -1.0]])
    >>> c = cosine_contributions(X)
    >>> bool(c[0] > 0.9), round(float(c.sum()), 6) == round(mean_pairwise_cosine(X), 6)
    (True, True)
    """
    U = unit_rows(X)
    n = len(U)
    if n < 2:
        raise ValueError("cosine_contributions needs at least 2 rows")
    return (U.sum(axis=0) ** 2 - (U**2).sum(axis=0)) / (n * (n - 1))


def between_subject_share(X: np.ndarray, labels: np.ndarray, directions: np.ndarray) -> float:
    """Share of the between-subject variance that lies along ``directions`` (orthonormal rows).

    The between-subject scatter is ``sum_s n_s (m_s - m)(m_s - m)^T`` over subject means
    ``m_s`` and the overall mean ``m``; this is its trace inside the span of ``directions``
    over its total trace. 1 means the directions carry all of what separates the subjects'
    centres; a transform that removes them (all-but-the-top) removes that.

    >>> X = np.array([[0.0, 5.0], [0.0, 5.2], [1.0, 0.0], [1.0, 0.2]])
    >>> round(between_subject_share(X, np.array(["a", "a", "b", "b"]), np.array([[0.0, 1.0]])), 3)
    0.962
    """
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    centre = X.mean(axis=0)
    rows = [
        np.sqrt((labels == s).sum()) * (X[labels == s].mean(axis=0) - centre)
        for s in np.unique(labels)
    ]
    B = np.asarray(rows)  # B.T @ B is the between-subject scatter
    total = float((B**2).sum())
    if total == 0:
        raise ValueError("between_subject_share: every subject has the same mean")
    inside = float(((B @ np.asarray(directions, dtype=np.float64).T) ** 2).sum())
    return inside / total


def within_between_cosine(X: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cosine over same-label pairs and over different-label pairs.

    Exact, via per-label sums of unit vectors (O(n d)). A model that separates subjects has
    within well above between; an anisotropic model has both near 1. Written here.

    >>> X = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]])
    >>> w, b = within_between_cosine(X, np.array([0, 0, 1, 1]))
    >>> w > 0.99 and b < 0.2
    True
    """
    U = unit_rows(X)
    labels = np.asarray(labels)
    total = U.sum(axis=0)
    n = len(U)
    within_sum, within_pairs = 0.0, 0
    for lab in np.unique(labels):
        part = U[labels == lab]
        s = part.sum(axis=0)
        within_sum += s @ s - len(part)
        within_pairs += len(part) * (len(part) - 1)
    all_sum = total @ total - n
    all_pairs = n * (n - 1)
    between_pairs = all_pairs - within_pairs
    within = within_sum / within_pairs if within_pairs else float("nan")
    between = (all_sum - within_sum) / between_pairs if between_pairs else float("nan")
    return float(within), float(between)


def explained_variance_spectrum(X: np.ndarray, n_components: int | None = None) -> np.ndarray:
    """Share of variance on each principal component (scikit-learn PCA), summing to 1 over all components.

    >>> spec = explained_variance_spectrum(np.random.default_rng(0).normal(size=(200, 5)))
    >>> round(float(spec.sum()), 6)
    1.0
    """
    X = np.asarray(X, dtype=np.float64)
    k = min(X.shape) if n_components is None else n_components
    return PCA(n_components=k, svd_solver="full").fit(X).explained_variance_ratio_


def pc1_share(X: np.ndarray) -> float:
    """Fraction of the cloud's total variance on its first principal component.

    Range [1/min(n-1, d), 1]. One dominant direction (a cone's axis after centering, or a
    rogue dimension) gives a high share. For ``n`` isotropic Gaussian points in ``d``
    dimensions it is not ``1/d`` but about ``(1 + sqrt(d/n))^2 / d`` (the top eigenvalue
    of a sample covariance sits at the Marchenko-Pastur edge; Johnstone, 2001): see
    :func:`isotropic_pc1_share`.

    This is *not* Ethayarajh's (2019) maximum explainable variance (MEV): MEV is computed
    per word, over that one word's representations in different contexts (a measure of
    contextuality), while this is computed over a cloud of different sentences.
    """
    return float(explained_variance_spectrum(X, n_components=1)[0])


def isotropic_pc1_share(n_points: int, dim: int) -> float:
    """The PC1 share expected of ``n_points`` isotropic Gaussian points in ``dim`` dimensions.

    ``(1 + sqrt(dim / n_points))^2 / dim``, from the Marchenko-Pastur edge of the sample
    covariance's spectrum (accurate for large ``n`` and ``d``; Johnstone, 2001).

    >>> round(isotropic_pc1_share(100_000, 10), 3)
    0.102
    """
    return float((1 + np.sqrt(dim / n_points)) ** 2 / dim)


def isoscore(X: np.ndarray) -> float:
    """IsoScore of Rudman et al. (2022): how uniformly variance spreads over all dimensions.

    Steps: rotate into the PCA basis, take the variance vector ``v`` (length ``d``), rescale
    it to norm ``sqrt(d)``, isotropy defect ``delta = |v - 1| / sqrt(2(d - sqrt d))``,
    dimensions used ``k = (d - delta^2 (d - sqrt d))^2 / d``, and IsoScore ``(k - 1)/(d - 1)``.
    Range [0, 1]: 1 when every dimension has the same variance, 0 when all variance lies on
    one line. Invariant to the mean, to rotations and to a global scale. With fewer points
    than dimensions at most ``n - 1`` variances are non-zero, which caps the score (see
    :func:`isoscore_ceiling`). Written here, following the authors' reference code
    (the ``IsoScore`` package), to avoid a dependency on it.

    >>> round(isoscore(np.random.default_rng(0).normal(size=(20000, 10))), 2)
    1.0
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    if n < 2 or d < 2:
        raise ValueError("isoscore needs at least 2 points in at least 2 dimensions")
    centered = X - X.mean(axis=0)
    # Variances along principal axes = eigenvalues of the covariance (zeros past rank).
    sing = np.linalg.svd(centered, compute_uv=False)
    variances = np.zeros(d)
    variances[: len(sing)] = sing**2 / (n - 1)
    norm = np.linalg.norm(variances)
    if norm == 0:
        return 0.0
    v = variances * np.sqrt(d) / norm
    delta = np.linalg.norm(v - 1.0) / np.sqrt(2 * (d - np.sqrt(d)))
    k = (d - delta**2 * (d - np.sqrt(d))) ** 2 / d
    return float(np.clip((k - 1) / (d - 1), 0.0, 1.0))


def isoscore_ceiling(n_points: int, dim: int) -> float:
    """The largest IsoScore ``n_points`` points can reach in ``dim`` dimensions.

    With ``r = min(n_points - 1, dim)`` equal non-zero variances, ``k = r`` and the score is
    ``(r - 1)/(dim - 1)``. Derived from the IsoScore formula.
    """
    r = min(n_points - 1, dim)
    return float((r - 1) / (dim - 1))


def partition_isotropy(X: np.ndarray) -> float:
    """Partition-function isotropy I(W) of Mu & Viswanath (2018), in [0, 1].

    ``Z(c) = sum_i exp(c . x_i)`` and ``I = min_c Z(c) / max_c Z(c)`` over unit vectors ``c``,
    estimated with ``c`` ranging over the eigenvectors of the uncentred ``X^T X``, as the
    authors do (the partition function is that of Arora et al., 2016). This book's variant
    takes each eigenvector with both signs: a computed eigenvector's sign is arbitrary, and
    one sign would make the result depend on the SVD's choice (e.g. on row order).
    1 means no direction is preferred. Rows are used as given (unit-normalise first for
    sentence embeddings). Written here; computed in log space for stability.
    """
    X = np.asarray(X, dtype=np.float64)
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    proj = X @ vt.T  # (n, r): c . x_i for each eigenvector c
    proj = np.hstack([proj, -proj])  # and for -c
    log_z = np.logaddexp.reduce(proj, axis=0)
    return float(np.exp(log_z.min() - log_z.max()))


def alignment(X: np.ndarray, labels: np.ndarray, alpha: float = 2.0) -> float:
    """Alignment of Wang & Isola (2020) with same-subject pairs as positives: ``E ||u - v||^alpha``.

    Computed on unit vectors over all same-label pairs; lower is better, range [0, 2^alpha].
    For alpha = 2 it equals ``2 - 2 * within-subject mean cosine``. Exact, in row blocks
    (:func:`pair_sq_distances`): memory linear in the number of points.

    >>> round(alignment(np.array([[1, 0], [0, 1], [1, 1]]), np.array([0, 0, 1])), 3)
    2.0
    """
    U = unit_rows(X)
    labels = np.asarray(labels)
    total, count = 0.0, 0
    for lab in np.unique(labels):
        part = U[labels == lab]
        for sq in pair_sq_distances(part):
            total += float(np.sum(sq ** (alpha / 2)))
            count += len(sq)
    if count == 0:
        raise ValueError("alignment needs at least one label with two points")
    return total / count


def uniformity(X: np.ndarray, t: float = 2.0) -> float:
    """Uniformity of Wang & Isola (2020): ``log E exp(-t ||u - v||^2)`` over pairs of unit vectors.

    Lower is better. With t = 2 the range is [-4n/(n-1), 0] (by the Jensen bound below and a
    mean cosine of at least -1/(n-1); -8 only for n = 2): 0 when every point coincides, about -4
    for points spread uniformly on a high-dimensional sphere. By Jensen's inequality it is
    at least ``-2t (1 - mean cosine)``, which ties it to :func:`mean_pairwise_cosine`.
    Exact over all ``n(n-1)/2`` pairs, in row blocks (:func:`pair_sq_distances`), with a
    running log-sum-exp: memory linear in ``n``, time ``n^2``.

    >>> uniformity(np.array([[1.0, 0], [-1, 0]]))
    -8.0
    """
    U = unit_rows(X)
    n = len(U)
    if n < 2:
        raise ValueError("uniformity needs at least 2 rows")
    log_sum = -np.inf
    for sq in pair_sq_distances(U):
        log_sum = np.logaddexp(log_sum, logsumexp(-t * sq))
    return float(log_sum - np.log(n * (n - 1) / 2))


def uniformity_floor(labels: np.ndarray, alignment_value: float, t: float = 2.0) -> float:
    """The least :func:`uniformity` (with ``t``) any unit vectors with this :func:`alignment`
    (``alpha`` = 2) over ``labels`` can have: ``log p - t * alignment``.

    ``p`` is the share of same-label pairs among all pairs. Dropping the other pairs from
    uniformity's mean leaves ``p`` times the same-label mean of ``exp(-t ||u - v||^2)``,
    which by Jensen's inequality is at least ``exp(-t * alignment)``.

    >>> round(uniformity_floor(np.array([0, 0, 1, 1]), 0.0), 4)  # 2 of 6 pairs: log(1/3)
    -1.0986
    """
    labels = np.asarray(labels)
    i, j = np.triu_indices(len(labels), k=1)
    share = float(np.mean(labels[i] == labels[j]))
    if share == 0:
        raise ValueError("uniformity_floor needs at least one same-label pair")
    return float(np.log(share) - t * alignment_value)


def same_subject_auc(X: np.ndarray, labels: np.ndarray, rows=None) -> float:
    """How well a pair's cosine tells same-subject pairs from the rest: the ROC AUC over all pairs.

    0.5 is chance, 1 means every same-subject pair is more similar than every other pair.
    Only the order of the cosines counts: a change that raises every cosine but keeps their
    order leaves it as it was. ``rows`` (indices, repeats allowed) measures a resample of the
    items instead, for :func:`helpers.intervals.resampled_interval`.

    >>> X = np.array([[1, 0.1], [1, 0.2], [0.1, 1], [0.2, 1]])
    >>> same_subject_auc(X, np.array(["a", "a", "b", "b"]))
    1.0
    """
    U = unit_rows(X)
    labels = np.asarray(labels)
    i, j = np.triu_indices(len(U), k=1)
    if rows is not None:
        # A resample of the items: pairs of two copies of one item are not pairs.
        rows = np.asarray(rows)
        i, j = i[rows[i] != rows[j]], j[rows[i] != rows[j]]
        U, labels = U[rows], labels[rows]
    cosines = np.einsum("ij,ij->i", U[i], U[j])
    return float(roc_auc_score(labels[i] == labels[j], cosines))


# --- graded similarity: subtopics within a subject ------------------------------------------------


def ranked_average_precision(relevant_in_order) -> float:
    """Average precision of a ranking given as relevance flags, best-ranked first.

    The mean, over the relevant items, of the precision at each one's rank.

    >>> ranked_average_precision([True, False, True])   # (1/1 + 2/3) / 2
    0.8333333333333333
    """
    relevant = np.asarray(relevant_in_order, dtype=bool)
    ranks = np.flatnonzero(relevant) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def expected_random_ap(n_candidates: int, n_relevant: int) -> float:
    """Expected average precision of a uniformly random ranking of ``N`` candidates, ``R`` relevant.

    Each rank ``k`` holds a relevant item with probability ``R/N``; given that, the other
    ``k - 1`` items above it are relevant with probability ``(R-1)/(N-1)`` each, so
    ``E[AP] = (1/N) sum_k (1 + (k-1)(R-1)/(N-1)) / k
    = (R-1)/(N-1) + (N-R)/(N-1) * H_N/N`` with ``H_N`` the N-th harmonic number.

    >>> expected_random_ap(2, 1)      # rank 1 (AP 1) or rank 2 (AP 1/2), equally likely
    0.75
    >>> expected_random_ap(5, 5)
    1.0
    """
    N, R = int(n_candidates), int(n_relevant)
    if not 1 <= R <= N:
        raise ValueError(f"need 1 <= n_relevant <= n_candidates, got R={R}, N={N}")
    if N == 1:
        return 1.0
    harmonic = float(np.sum(1.0 / np.arange(1, N + 1)))
    return (R - 1) / (N - 1) + (N - R) / (N - 1) * harmonic / N


def _subtopic_pools(subjects, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per item: whether it is a subtopic query, its candidates ``N`` and relevant ``R``.

    Candidates are the other items of the same subject with a group (an item without one
    cannot be judged, so it is neither query nor candidate); relevant ones share the group.
    """
    subjects, groups = np.asarray(subjects, dtype=str), np.asarray(groups, dtype=str)
    labelled = groups != ""
    pairs = np.char.add(np.char.add(subjects, "\x00"), groups)
    _, subject_idx, subject_counts = np.unique(
        subjects[labelled], return_inverse=True, return_counts=True
    )
    _, pair_idx, pair_counts = np.unique(pairs[labelled], return_inverse=True, return_counts=True)
    n_candidates = np.zeros(len(groups), dtype=int)
    n_relevant = np.zeros(len(groups), dtype=int)
    n_candidates[labelled] = subject_counts[subject_idx] - 1
    n_relevant[labelled] = pair_counts[pair_idx] - 1
    usable = labelled & (n_relevant >= 1) & (n_candidates - n_relevant >= 1)
    return usable, n_candidates, n_relevant


def subtopic_average_precision(X: np.ndarray, subjects, groups) -> np.ndarray:
    """Per item: how well its cosines rank its own subtopic first within its subject.

    Each item (the query) with a group, at least one other item of its subject and group
    and at least one of its subject in another group, ranks the other grouped items of its
    subject by cosine to it; the value is the average precision of the same-group items in
    that ranking (1 = all ranked first). Other items get NaN. Ties in cosine are ranked by
    row order (a stable sort), so a tie never helps or hurts at random. Memory is linear:
    one query's cosines at a time. Chance level: :func:`subtopic_chance_ap`.

    >>> X = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    >>> subtopic_average_precision(X, ["a"] * 4, ["x", "x", "y", "y"])
    array([1., 1., 1., 1.])
    >>> subtopic_average_precision(X, ["a"] * 4, ["x", "y", "x", ""])   # query 1: no partner
    array([0.5, nan, 0.5, nan])
    """
    U = unit_rows(X)
    subjects, groups = np.asarray(subjects, dtype=str), np.asarray(groups, dtype=str)
    usable, _, _ = _subtopic_pools(subjects, groups)
    out = np.full(len(U), np.nan)
    for subject in np.unique(subjects[usable]):
        pool = np.flatnonzero((subjects == subject) & (groups != ""))
        for q in np.flatnonzero(usable & (subjects == subject)):
            others = pool[pool != q]
            order = np.argsort(-(U[others] @ U[q]), kind="stable")
            out[q] = ranked_average_precision(groups[others[order]] == groups[q])
    return out


def subtopic_chance_ap(subjects, groups) -> np.ndarray:
    """Per item: the expected :func:`subtopic_average_precision` of a random ranking (NaN if not a query).

    >>> subtopic_chance_ap(["a"] * 4, ["x", "x", "y", "y"])   # 3 candidates, 1 relevant
    array([0.61111111, 0.61111111, 0.61111111, 0.61111111])
    """
    usable, n_candidates, n_relevant = _subtopic_pools(subjects, groups)
    out = np.full(len(usable), np.nan)
    for i in np.flatnonzero(usable):
        out[i] = expected_random_ap(n_candidates[i], n_relevant[i])
    return out


def side_view(X: np.ndarray) -> np.ndarray:
    """Unit vectors seen from the side: coordinates along the mean direction and across it.

    Column 0 is each unit vector's projection on the direction of the mean unit vector;
    column 1 its projection on the first principal direction of the centred vectors, made
    orthogonal to the mean direction, so the two columns are an exact 2-D projection
    (every point lies within the unit disc). A narrow cone shows as a tight group far to
    the right of the origin; an isotropic cloud as a blob around it.

    >>> view = side_view(np.array([[1.0, 0.1, 0], [1.0, -0.1, 0], [1.0, 0, 0.1]]))
    >>> bool(np.all(view[:, 0] > 0.99))
    True
    """
    U = unit_rows(X)
    mean = U.mean(axis=0)
    along = mean / np.linalg.norm(mean)
    centred = U - mean
    first = np.linalg.svd(centred, full_matrices=False)[2][0]
    across = first - (first @ along) * along
    norm = np.linalg.norm(across)
    across = across / norm if norm > 1e-12 else across
    coords = np.column_stack([U @ along, U @ across])
    # A fixed sign, so reruns do not mirror the picture.
    if coords[np.abs(coords[:, 1]).argmax(), 1] < 0:
        coords[:, 1] *= -1
    return coords


@dataclass(frozen=True)
class Silhouette:
    """A mean silhouette, its 95% bootstrap interval and the number of points it used."""

    mean: float
    low: float
    high: float
    sample: int


def stratified_sample(labels, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded sample of ``size`` points, each label in proportion.

    scikit-learn's stratified split draws it; with ``size >= len(labels)`` every index.

    >>> y = np.repeat(["a", "b"], [300, 100])
    >>> idx = stratified_sample(y, 40)
    >>> len(idx), int((y[idx] == "b").sum())
    (40, 10)
    """
    n = len(labels)
    if size >= n:
        return np.arange(n)
    idx, _ = train_test_split(
        np.arange(n), train_size=size, stratify=np.asarray(labels), random_state=seed
    )
    return np.sort(idx)


def resampled_silhouette(
    D: np.ndarray, labels: np.ndarray, rows: np.ndarray, keep: np.ndarray | None = None
) -> float:
    """Mean silhouette of a resample ``rows`` (indices, repeats allowed) of the items.

    ``D`` is the items' distance matrix. Each drawn item's silhouette is computed among the
    drawn items, with each copy counted; the copies of the item itself are not its
    neighbours (a copy is the same chunk, not a second chunk at distance 0). With ``keep``
    (a boolean mask over the items) only drawn items in it are averaged. NaN when the draw
    holds fewer than two labels. With ``rows = arange(n)`` it is scikit-learn's silhouette.

    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> D = 1 - unit_rows(X) @ unit_rows(X).T
    >>> labels = np.array(["a", "a", "b", "b"])
    >>> round(resampled_silhouette(D, labels, np.arange(4)), 4)
    0.9931
    >>> round(resampled_silhouette(D, labels, np.array([0, 0, 2, 3])), 4)  # 0 alone: s = 0
    0.4968
    """
    labels = np.asarray(labels)
    names, code = np.unique(labels, return_inverse=True)
    counts = np.bincount(np.asarray(rows), minlength=len(labels)).astype(float)
    Y = np.eye(len(names))[code] * counts[:, None]  # drawn copies per item and label
    sums, sizes = D @ Y, np.tile(Y.sum(axis=0), (len(labels), 1))
    own = (np.arange(len(labels)), code)
    sizes[own] -= counts  # the item's own copies are not its neighbours
    if (Y.sum(axis=0) > 0).sum() < 2:
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / sizes
    a = np.where(sizes[own] > 0, means[own], 0.0)
    others = means.copy()
    others[own] = np.inf
    others[sizes <= 0] = np.inf
    b = others.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(sizes[own] > 0, (b - a) / np.maximum(a, b), 0.0)  # alone: 0, as sklearn
    weight = counts if keep is None else counts * np.asarray(keep, dtype=float)
    return float((weight * s).sum() / weight.sum()) if weight.sum() > 0 else float("nan")


def silhouette_estimate(
    X: np.ndarray, labels: np.ndarray, *, max_exact: int | None = None, seed: int = 0
) -> Silhouette:
    """Mean silhouette of the labels under cosine distance (scikit-learn), in [-1, 1].

    Exact (every pair) for up to ``max_exact`` points (default
    :data:`SILHOUETTE_EXACT_MAX`); above, computed on a fixed :func:`stratified_sample` of
    ``max_exact`` points drawn with ``seed``, as scikit-learn's ``silhouette_score(sample_size=...)``
    does but with each label in proportion. The interval is a bootstrap over the per-point
    silhouettes used (:func:`helpers.intervals.bootstrap_mean`). scikit-learn computes the
    distances in blocks (``working_memory``), so memory grows linearly.

    >>> X = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]])
    >>> s = silhouette_estimate(X, np.array([0, 0, 1, 1]))
    >>> round(s.mean, 2), s.sample
    (0.99, 4)
    """
    U = unit_rows(X)
    labels = np.asarray(labels)
    max_exact = SILHOUETTE_EXACT_MAX if max_exact is None else max_exact
    if len(U) > max_exact:
        idx = stratified_sample(labels, max_exact, seed)
        U, labels = U[idx], labels[idx]
    with pairwise_memory(len(U)):
        values = silhouette_samples(U, labels, metric="cosine")
    interval = bootstrap_mean(values, seed=seed)
    return Silhouette(interval.mean, interval.low, interval.high, len(U))


def subject_silhouette(X: np.ndarray, labels: np.ndarray, **kw) -> float:
    """Mean silhouette of the subject labels under cosine distance, in [-1, 1].

    See :func:`silhouette_estimate` (keywords ``max_exact``, ``seed``) for large sets.
    """
    return silhouette_estimate(X, labels, **kw).mean


@dataclass(frozen=True)
class Classification:
    """Held-out accuracy of one classifier, with its confusion matrix (rows: true, columns: predicted)."""

    accuracy: float
    labels: list[str]
    confusion: np.ndarray
    predictions: np.ndarray


def _classify(model, X_train, y_train, X_test, y_test) -> Classification:
    model.fit(unit_rows(X_train), y_train)
    pred = model.predict(unit_rows(X_test))
    labels = sorted(set(np.asarray(y_train)) | set(np.asarray(y_test)))
    return Classification(
        accuracy=float(accuracy_score(y_test, pred)),
        labels=[str(x) for x in labels],
        confusion=confusion_matrix(y_test, pred, labels=labels),
        predictions=pred,
    )


def knn_classification(X_train, y_train, X_test, y_test, k: int = 5) -> Classification:
    """k-nearest-neighbour subject prediction (cosine distance), fit on train, scored on test.

    Cosine is not a tree metric, so scikit-learn searches by brute force, comparing the test
    rows with all training rows in blocks (``pairwise_distances_chunked`` under
    ``working_memory``, set by :func:`pairwise_memory`): memory grows linearly.
    """
    with pairwise_memory(len(X_train)):
        return _classify(
            KNeighborsClassifier(n_neighbors=k, metric="cosine"), X_train, y_train, X_test, y_test
        )


def nearest_neighbours(X_train, X_test, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Indices of each test row's ``k`` nearest training rows by cosine, and their cosines.

    These are the neighbours :func:`knn_classification` votes among (same metric, same
    search). Rows of both arrays are ``(n_test, k)``, nearest first.

    >>> X_train = np.array([[1.0, 0], [0, 1], [1, 1]])
    >>> idx, cos = nearest_neighbours(X_train, np.array([[2.0, 0.1]]), k=2)
    >>> idx.tolist(), cos.round(2).tolist()
    ([[0, 2]], [[1.0, 0.74]])
    """
    with pairwise_memory(len(X_train)):
        search = NearestNeighbors(n_neighbors=k, metric="cosine").fit(unit_rows(X_train))
        distances, indices = search.kneighbors(unit_rows(X_test))
    return indices, 1.0 - distances


def probe_classification(X_train, y_train, X_test, y_test, C: float = 1.0) -> Classification:
    """Linear probe: standardised features and logistic regression, fit on train, scored on test."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    return _classify(probe, X_train, y_train, X_test, y_test)


@dataclass(frozen=True)
class GeometryReport:
    """All the book's measurements for one model on one train/test split (test-set geometry).

    ``silhouette_sample`` is the number of held-out points the silhouette used (all of them
    up to :data:`SILHOUETTE_EXACT_MAX`), ``silhouette_low`` and ``silhouette_high`` its 95%
    bootstrap interval.
    """

    n_test: int
    dim: int
    mean_cosine: float
    within_cosine: float
    between_cosine: float
    pc1_share: float
    isoscore: float
    isoscore_ceiling: float
    partition_isotropy: float
    alignment: float
    uniformity: float
    silhouette: float
    knn_accuracy: float
    probe_accuracy: float
    silhouette_sample: int
    silhouette_low: float
    silhouette_high: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def geometry_report(X_train, y_train, X_test, y_test, k: int = 5) -> GeometryReport:
    """Measure the test split's geometry and the held-out subject accuracy of k-NN and a linear probe.

    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(["a", "b"], 40)
    >>> X = rng.normal(size=(80, 8))
    >>> X[:, 0] += 6 * (y == "a"); X[:, 1] += 6 * (y == "b")
    >>> r = geometry_report(X[::2], y[::2], X[1::2], y[1::2])
    >>> r.knn_accuracy
    1.0
    """
    X_test = np.asarray(X_test, dtype=np.float64)
    y_test = np.asarray(y_test)
    U = unit_rows(X_test)
    within, between = within_between_cosine(U, y_test)
    sil = silhouette_estimate(U, y_test)
    return GeometryReport(
        n_test=len(U),
        dim=U.shape[1],
        mean_cosine=mean_pairwise_cosine(U),
        within_cosine=within,
        between_cosine=between,
        pc1_share=pc1_share(U),
        isoscore=isoscore(U),
        isoscore_ceiling=isoscore_ceiling(*U.shape),
        partition_isotropy=partition_isotropy(U),
        alignment=alignment(U, y_test),
        uniformity=uniformity(U),
        silhouette=sil.mean,
        knn_accuracy=knn_classification(X_train, y_train, X_test, y_test, k=k).accuracy,
        probe_accuracy=probe_classification(X_train, y_train, X_test, y_test).accuracy,
        silhouette_sample=sil.sample,
        silhouette_low=sil.low,
        silhouette_high=sil.high,
    )
