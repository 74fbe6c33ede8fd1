"""The pipeline chapters and the command line share: splits -> embeddings -> measurements.

Example
-------
>>> from helpers.config import load_config
>>> from helpers.corpus import corpus_splits
>>> cfg = load_config()                                   # doctest: +SKIP
>>> splits = corpus_splits(cfg)                           # doctest: +SKIP
>>> emb = embed_splits(cfg, "contrastive", splits)        # doctest: +SKIP
>>> measure_embeddings(emb, splits)["mean_cosine"]        # doctest: +SKIP
0.06...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import Config
from .embeddings import embed, layer_embeddings, token_layer_embeddings
from .encoders import Encoder
from .geometry import (
    Classification,
    geometry_report,
    isoscore,
    knn_classification,
    mean_pairwise_cosine,
    pairwise_memory,
    pc1_share,
    probe_classification,
    resampled_silhouette,
    subtopic_average_precision,
    subtopic_chance_ap,
    unit_rows,
)
from .intervals import (
    Interval,
    bootstrap_mean,
    cluster_interval,
    resampled_interval,
)
from .model_folders import NO_REMOTE_CODE, check_model_folder
from .models import role_encoder
from .names import DEFAULT_SHARD_SIZE
from .shards import encode_shards, plan_shards, shard_encoder, shard_progress
from .training import TrainingLog
from .transforms import fit_transform

# Readable names of the measurements, in the order tables show them.
METRIC_TITLES = {
    "mean_cosine": "mean cosine (random pairs)",
    "within_cosine": "mean cosine, same subject",
    "between_cosine": "mean cosine, different subjects",
    "pc1_share": "PC1 share of variance",
    "isoscore": "IsoScore",
    "partition_isotropy": "I(W) partition isotropy (±c variant)",
    "alignment": "alignment (lower = tighter)",
    "uniformity": "uniformity (lower = more spread)",
    "silhouette": "silhouette by subject",
    "knn_accuracy": "k-NN accuracy (held out)",
    "probe_accuracy": "linear probe accuracy (held out)",
}


@dataclass
class SplitEmbeddings:
    """Embeddings of both splits for one model, rows aligned with the dataset rows."""

    model: str
    train: np.ndarray
    test: np.ndarray


def embed_splits(
    cfg: Config, model: str | Encoder, splits, *, progress: bool = False
) -> SplitEmbeddings:
    """Embed train and test (cached in ``results_dir/cache``) with a role or an encoder."""
    enc = model if isinstance(model, Encoder) else role_encoder(cfg, model, splits)
    kw = dict(cache_dir=cfg.cache_dir, batch_size=cfg.encoding.batch_size, progress=progress)
    return SplitEmbeddings(
        model=enc.name,
        train=embed(enc, splits["train"]["text"], **kw),
        test=embed(enc, splits["test"]["text"], **kw),
    )


def embed_corpus(
    cfg: Config,
    model: str | Encoder,
    splits,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    devices: list[str] | None = None,
    progress: bool = False,
) -> SplitEmbeddings:
    """:func:`embed_splits` for a large corpus: resumable shards, one progress bar, workers.

    Each split is encoded ``shard_size`` chunks at a time with
    :func:`helpers.shards.encode_shards` and ends in the cache file
    :func:`embed_splits` reads, so the chapters reuse it. ``devices`` (e.g.
    ``["cpu", "cpu"]``) spreads the encoding over one worker process per device.

    >>> emb = embed_corpus(cfg, "contrastive", splits, shard_size=500)  # doctest: +SKIP
    >>> embed_splits(cfg, "contrastive", splits).test.shape == emb.test.shape  # doctest: +SKIP
    True
    """
    enc = model if isinstance(model, Encoder) else role_encoder(cfg, model, splits)
    jobs = {
        name: plan_shards(enc, splits[name]["text"], cache_dir=cfg.cache_dir, shard_size=shard_size)
        for name in ("train", "test")
    }
    with (
        shard_encoder(enc, batch_size=cfg.encoding.batch_size, devices=devices) as encode,
        shard_progress(jobs.values(), progress) as bar,
    ):
        vectors = {name: encode_shards(job, encode, bar) for name, job in jobs.items()}
    return SplitEmbeddings(model=enc.name, train=vectors["train"], test=vectors["test"])


def measure_embeddings(emb: SplitEmbeddings, splits, transform="none") -> dict:
    """Every measurement of :data:`METRIC_TITLES` on the held-out split, after ``transform``.

    ``transform`` is a name (``none``, ``center``, ``abtt``, ``whiten``) or an unfitted
    scikit-learn transformer; it is fit on the training vectors only.
    """
    X_train, X_test = fit_transform(transform, emb.train, emb.test)
    report = geometry_report(
        X_train, list(splits["train"]["subject"]), X_test, list(splits["test"]["subject"])
    )
    return {"model": emb.model, "transform": str(transform), **report.as_dict()}


def tfidf_embeddings(splits) -> SplitEmbeddings:
    """A bag of words for comparison: TF-IDF vectors of both splits (vocabulary from train).

    Words seen in fewer than two training chunks are dropped; rows are unit length.

    >>> from datasets import Dataset, DatasetDict
    >>> part = Dataset.from_dict({"text": ["cells divide", "cells grow", "empires fall"]})
    >>> tfidf_embeddings(DatasetDict(train=part, test=part)).train.shape
    (3, 1)
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(min_df=2, sublinear_tf=True)
    train = vectorizer.fit_transform(list(splits["train"]["text"])).toarray()
    test = vectorizer.transform(list(splits["test"]["text"])).toarray()
    return SplitEmbeddings(model="TF-IDF", train=train, test=test)


def measure(cfg: Config, model: str, splits, transform="none", *, progress=False) -> dict:
    """Embed (cached) and measure one model on ``splits``."""
    return measure_embeddings(
        embed_splits(cfg, model, splits, progress=progress), splits, transform
    )


def metrics_table(rows: list[dict], label: str = "model") -> pd.DataFrame:
    """Metrics as a table: one column per model (or ``label``), one row per metric."""
    frame = pd.DataFrame(rows).set_index(label)
    table = frame[list(METRIC_TITLES)].T
    table.index = [METRIC_TITLES[k] for k in table.index]
    return table.rename_axis(columns=None)


def long_metrics(rows: list[dict], keys: list[str], label: str = "model") -> pd.DataFrame:
    """Rows of measurements as (label, metric, value), for :func:`helpers.charts.metric_bars`."""
    frame = pd.DataFrame(rows)
    return frame.melt(id_vars=[label], value_vars=keys, var_name="metric", value_name="value")


def _layer_rows(layers) -> pd.DataFrame:
    rows = [
        {
            "layer": i,
            "mean_cosine": mean_pairwise_cosine(X),
            "pc1_share": pc1_share(X),
            "isoscore": isoscore(X),
        }
        for i, X in enumerate(layers)
    ]
    return pd.DataFrame(rows)


def layer_profile(cfg: Config, encoder: Encoder, texts: list[str]) -> pd.DataFrame:
    """Per-layer geometry of mean-pooled sentence vectors (layer 0 = embedding layer).

    Columns ``layer``, ``mean_cosine``, ``pc1_share``, ``isoscore``: the curve of
    anisotropy against depth, for sentences.
    """
    kw = dict(cache_dir=cfg.cache_dir, batch_size=cfg.encoding.batch_size)
    return _layer_rows(layer_embeddings(encoder, list(texts), **kw))


def token_layer_profile(
    cfg: Config, encoder: Encoder, texts: list[str], n_tokens: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Per-layer geometry of ``n_tokens`` randomly sampled token vectors (one per context).

    The token-level counterpart of :func:`layer_profile`, as Ethayarajh (2019) measured it:
    the mean cosine of representations of random words in random contexts.
    """
    kw = dict(cache_dir=cfg.cache_dir, batch_size=cfg.encoding.batch_size)
    return _layer_rows(token_layer_embeddings(encoder, list(texts), n_tokens, seed=seed, **kw))


def apply_fix(fix, emb: SplitEmbeddings) -> SplitEmbeddings:
    """Fit ``fix`` (a post-hoc transform) on the training vectors; apply it to both splits.

    ``fix`` is what :func:`helpers.transforms.fit_transform` takes: a name or an unfitted
    transformer such as ``Whitening(n_components=64)``.

    >>> from helpers.transforms import Centering
    >>> e = SplitEmbeddings("m", np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[2.0, 3.0]]))
    >>> apply_fix(Centering(), e).test
    array([[0., 0.]])
    """
    return SplitEmbeddings(str(fix), *fit_transform(fix, emb.train, emb.test))


#: The two ways the book asks "which subject is this chunk from?": a similarity search
#: (cosine k-NN) and a linear probe on standardised features.
CLASSIFIERS = {"k-NN": knn_classification, "probe": probe_classification}


def classify(emb: SplitEmbeddings, splits) -> dict[str, Classification]:
    """Fit each of :data:`CLASSIFIERS` on the training chunks' vectors; predict the held-out ones.

    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]] * 3)
    >>> splits = {"train": {"subject": list("aabb") * 3}, "test": {"subject": list("ab")}}
    >>> e = SplitEmbeddings("m", X, np.array([[1.0, 0.05], [0.05, 1.0]]))
    >>> {name: r.accuracy for name, r in classify(e, splits).items()}
    {'k-NN': 1.0, 'probe': 1.0}
    """
    y_train = np.asarray(splits["train"]["subject"])
    y_test = np.asarray(splits["test"]["subject"])
    return {name: fit(emb.train, y_train, emb.test, y_test) for name, fit in CLASSIFIERS.items()}


def correct_of(results: dict[str, Classification], splits) -> dict[str, np.ndarray]:
    """Per held-out chunk and classifier: 1.0 where it names the chunk's subject, else 0.0.

    These per-chunk scores are what paired comparisons resample
    (:func:`helpers.intervals.paired_difference`).
    """
    y_test = np.asarray(splits["test"]["subject"])
    return {name: (r.predictions == y_test).astype(float) for name, r in results.items()}


def correct_by_chunk(emb: SplitEmbeddings, splits, k: int = 5) -> np.ndarray:
    """1.0 where k-NN (fit on the train split) names a held-out chunk's subject, else 0.0."""
    y_test = np.asarray(splits["test"]["subject"])
    result = knn_classification(emb.train, list(splits["train"]["subject"]), emb.test, y_test, k=k)
    return (result.predictions == y_test).astype(float)


def neighbour_lists(neighbours: dict[str, np.ndarray], queries: np.ndarray, splits) -> pd.DataFrame:
    """Long table of each query's nearest training chunks under each model.

    ``neighbours`` maps a model name to the ``(indices, cosines)`` pair that
    :func:`helpers.geometry.nearest_neighbours` returns for the held-out chunks;
    ``queries`` are held-out indices. Columns: ``query``,
    ``model``, ``rank`` (1 = nearest), ``subject``, ``text``, ``cosine``, ``same`` (1 where
    the neighbour's subject is the query's).
    """
    train_subjects = np.asarray(splits["train"]["subject"])
    train_texts = list(splits["train"]["text"])
    test_subjects = np.asarray(splits["test"]["subject"])
    rows = []
    for model, (indices, cosines) in neighbours.items():
        for q in queries:
            for rank, (j, c) in enumerate(zip(indices[q], cosines[q]), start=1):
                rows.append(
                    {
                        "query": int(q),
                        "model": model,
                        "rank": rank,
                        "subject": str(train_subjects[j]),
                        "text": train_texts[j],
                        "cosine": float(c),
                        "same": int(train_subjects[j] == test_subjects[q]),
                    }
                )
    return pd.DataFrame(rows)


def silhouette_by_chunk(emb: SplitEmbeddings, splits) -> np.ndarray:
    """Each held-out chunk's silhouette under cosine distance (its subject against the rest).

    Every chunk needs all pairs (time ``n^2``); memory stays linear (blocks, as in
    :func:`helpers.geometry.pairwise_memory`).
    """
    from sklearn.metrics import silhouette_samples

    with pairwise_memory(len(emb.test)):
        return silhouette_samples(
            unit_rows(emb.test), np.asarray(splits["test"]["subject"]), metric="cosine"
        )


def _distances(emb: SplitEmbeddings) -> np.ndarray:
    U = unit_rows(emb.test)
    D = 1.0 - U @ U.T
    np.fill_diagonal(D, 0.0)
    return D


def silhouette_interval(
    emb: SplitEmbeddings, splits, keep: np.ndarray | None = None, *, seed: int = 0
) -> Interval:
    """Mean held-out silhouette (of the chunks in ``keep``) with a 95% interval.

    Each replicate resamples the held-out chunks and recomputes every drawn chunk's
    silhouette among the drawn chunks (:func:`helpers.geometry.resampled_silhouette`),
    since a chunk's silhouette depends on the others. The interval covers which chunks
    were held out, for this one trained model; not another training run.
    """
    D, labels = _distances(emb), np.asarray(splits["test"]["subject"])
    return resampled_interval(
        lambda rows: resampled_silhouette(D, labels, rows, keep), len(labels), seed=seed
    )


def silhouette_change(
    after: SplitEmbeddings,
    before: SplitEmbeddings,
    splits,
    keep: np.ndarray | None = None,
    *,
    seed: int = 0,
) -> Interval:
    """``after`` minus ``before`` mean silhouette over the same held-out chunks, with a 95%
    interval from the same resamples of the chunks for both (see :func:`silhouette_interval`)."""
    labels = np.asarray(splits["test"]["subject"])
    D_after, D_before = _distances(after), _distances(before)

    def change(rows):
        return resampled_silhouette(D_after, labels, rows, keep) - resampled_silhouette(
            D_before, labels, rows, keep
        )

    return resampled_interval(change, len(labels), seed=seed)


def mean_cosine_change(
    after: SplitEmbeddings, before: SplitEmbeddings, *, seed: int = 0
) -> Interval:
    """``after`` minus ``before`` mean cosine of held-out pairs, with a 95% interval.

    A chunk's mean cosine with the others depends on the other chunks, so each replicate
    resamples the held-out chunks (the same for both models) and recomputes the mean over
    the pairs of the resample; two copies of one chunk are not a pair.
    """
    S_after, S_before = (unit_rows(e.test) @ unit_rows(e.test).T for e in (after, before))

    def change(rows):
        pairs = rows[:, None] != rows[None, :]
        grid = np.ix_(rows, rows)
        return S_after[grid][pairs].mean() - S_before[grid][pairs].mean()

    return resampled_interval(change, len(S_after), seed=seed)


def alignment_uniformity_paths(logs: Mapping[str, TrainingLog]) -> pd.DataFrame:
    """Each training run's path in the alignment-uniformity plane, from its evaluator's log.

    ``logs`` maps a run's name to its :class:`~helpers.training.TrainingLog`; one row per
    evaluation, with columns ``run``, ``step``, ``alignment``, ``uniformity`` and
    ``silhouette`` (the held-out values the evaluator logged).
    """
    names = {"eval_alignment": "alignment", "eval_uniformity": "uniformity"}
    names["eval_silhouette"] = "silhouette"
    return pd.concat(
        [
            log.frame()
            .dropna(subset=["eval_alignment"])
            .rename(columns=names)
            .assign(run=run)[["run", "step", *names.values()]]
            for run, log in logs.items()
        ],
        ignore_index=True,
    )


def per_subject_separation(
    emb: SplitEmbeddings, splits, k: int = 5, trained_on: list[str] | None = None, seed: int = 0
) -> pd.DataFrame:
    """Per subject: held-out k-NN accuracy (count correct of n) and mean silhouette, with
    95% bootstrap intervals: over that subject's held-out chunks for k-NN (each chunk's
    answer depends only on the training chunks), and from recomputed silhouettes of
    resampled held-out chunks for the silhouette (:func:`silhouette_interval`).

    With ``trained_on`` (the fine-tuning subjects) a column ``trained on`` marks unseen
    subjects. k-NN is fit on the training chunks of every subject.
    """
    y_test = np.asarray(splits["test"]["subject"])
    correct = correct_by_chunk(emb, splits, k)
    rows = []
    for subject in sorted(set(y_test)):
        mask = y_test == subject
        acc, sil_mean = (
            bootstrap_mean(correct[mask], seed=seed),
            silhouette_interval(emb, splits, mask, seed=seed),
        )
        rows.append(
            {
                "subject": subject,
                "n_test": int(mask.sum()),
                "knn_correct": int(correct[mask].sum()),
                "knn_accuracy": acc.mean,
                "knn_low": acc.low,
                "knn_high": acc.high,
                "silhouette": sil_mean.mean,
                "silhouette_low": sil_mean.low,
                "silhouette_high": sil_mean.high,
            }
        )
    frame = pd.DataFrame(rows)
    if trained_on is not None:
        frame["trained on"] = frame["subject"].isin(trained_on).map({True: "yes", False: "no"})
    return frame


# --- graded similarity: subtopics within a subject ----------------------------------------------


def _heldout_groups(splits) -> tuple[np.ndarray, np.ndarray]:
    """Subjects and groups of the held-out chunks (groups all ``""`` when the data has none)."""
    test = splits["test"]
    subjects = np.asarray(test["subject"], dtype=str)
    has_groups = "group" in getattr(test, "column_names", test)
    groups = np.asarray(test["group"], dtype=str) if has_groups else np.full(len(subjects), "")
    return subjects, groups


def _subtopic_ids(subjects: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """One id per (subject, subtopic): the clusters a subtopic interval resamples."""
    return np.asarray([f"{s}\x00{g}" for s, g in zip(subjects, groups)])


def subtopic_ap(emb: SplitEmbeddings, splits) -> np.ndarray:
    """Per held-out chunk: :func:`helpers.geometry.subtopic_average_precision` of its
    subtopic among the other held-out chunks of its subject (NaN where it is no query)."""
    return subtopic_average_precision(emb.test, *_heldout_groups(splits))


def has_subtopic_queries(splits) -> bool:
    """Whether some held-out chunk has a subtopic partner in its subject (a query for
    :func:`subtopic_retrieval`).

    >>> from datasets import Dataset, DatasetDict
    >>> part = Dataset.from_dict({"subject": ["a"] * 3, "group": ["x", "x", "y"]})
    >>> has_subtopic_queries(DatasetDict(test=part))
    True
    """
    return bool((~np.isnan(subtopic_chance_ap(*_heldout_groups(splits)))).any())


def subtopic_retrieval(
    embeddings: dict[str, SplitEmbeddings], splits, *, seed: int = 0
) -> pd.DataFrame | None:
    """Per model: how well held-out chunks find their own subtopic within their subject.

    Columns ``model``, ``mean AP`` with ``mean AP low``/``mean AP high`` (95%), ``chance``
    (the mean AP of random rankings, :func:`helpers.geometry.subtopic_chance_ap`),
    ``queries`` and ``groups`` (subtopics among the queries). ``None`` when the held-out
    split has no usable query (no groups, or none with a partner in its subject).

    The interval resamples whole subtopics (queries of one subtopic share their partners,
    so they are not independent; :func:`helpers.intervals.cluster_interval`), with the
    candidate pools and the model fixed: it covers which subtopics were asked, not which
    chunks were held out or how the model was trained.

    >>> from datasets import Dataset, DatasetDict
    >>> part = Dataset.from_dict({"subject": ["a"] * 4, "group": ["x", "x", "y", "y"]})
    >>> X = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    >>> row = subtopic_retrieval({"m": SplitEmbeddings("m", X, X)}, DatasetDict(test=part))
    >>> row[["model", "mean AP", "queries", "groups"]].to_dict("records")
    [{'model': 'm', 'mean AP': 1.0, 'queries': 4, 'groups': 2}]
    """
    subjects, groups = _heldout_groups(splits)
    chance = subtopic_chance_ap(subjects, groups)
    queries = ~np.isnan(chance)
    if not queries.any():
        return None
    clusters = _subtopic_ids(subjects, groups)[queries]
    n_groups = len(set(clusters))
    rows = []
    for name, emb in embeddings.items():
        ap = subtopic_ap(emb, splits)[queries]
        interval = cluster_interval(ap, clusters, seed=seed)
        rows.append(
            {
                "model": name,
                **interval.row("mean AP"),
                "chance": float(chance[queries].mean()),
                "queries": int(queries.sum()),
                "groups": n_groups,
            }
        )
    return pd.DataFrame(rows)


def subtopic_change(
    after: SplitEmbeddings, before: SplitEmbeddings, splits, *, seed: int = 0
) -> Interval | None:
    """Mean change of subtopic AP (``after - before``) over the same held-out queries, with a
    paired 95% interval that resamples whole subtopics
    (:func:`helpers.intervals.cluster_interval`); ``None`` without usable queries.

    >>> from datasets import Dataset, DatasetDict
    >>> part = Dataset.from_dict({"subject": ["a"] * 4, "group": ["x", "x", "y", "y"]})
    >>> good = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    >>> mixed = good[[0, 2, 1, 3]]   # each chunk now nearest to the other subtopic
    >>> e = lambda X: SplitEmbeddings("m", X, X)
    >>> round(subtopic_change(e(good), e(mixed), DatasetDict(test=part)).mean, 3)  # 1 - 5/12
    0.583
    """
    ap_after, ap_before = subtopic_ap(after, splits), subtopic_ap(before, splits)
    queries = ~np.isnan(ap_after)
    if not queries.any():
        return None
    clusters = _subtopic_ids(*_heldout_groups(splits))[queries]
    return cluster_interval(ap_after[queries] - ap_before[queries], clusters, seed=seed)


def token_frequency_geometry(model_dir, texts: list[str], bins=(0, 1, 10, 100)) -> pd.DataFrame:
    """Input-embedding geometry of the vocabulary, grouped by how often each token occurs.

    For the model in ``model_dir`` (and its untrained twin in ``model_dir/initial``):
    per frequency group of ``texts`` (token counts ``0``, ``1-9``, ``10-99``, ``100+`` by
    default), the number of tokens, the mean pairwise cosine of their input embeddings
    and their mean norm. Gao et al. (2019) show that rare tokens' embeddings drift in a
    common direction during training (representation degeneration).
    """
    from pathlib import Path

    from transformers import AutoTokenizer, BertModel

    from .pretraining import INITIAL

    model_dir = Path(model_dir)
    for folder in (model_dir, model_dir / INITIAL):
        check_model_folder(folder)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, **NO_REMOTE_CODE)
    ids = [t for seq in tokenizer(list(texts), add_special_tokens=False)["input_ids"] for t in seq]
    counts = np.bincount(ids, minlength=len(tokenizer))
    special = set(tokenizer.all_special_ids)
    edges = list(bins) + [np.inf]
    names = [
        f"{lo}" if hi == lo + 1 else (f"{lo}+" if hi == np.inf else f"{lo}-{hi - 1}")
        for lo, hi in zip(edges[:-1], edges[1:])
    ]
    rows = []
    for state, folder in (("trained", model_dir), ("untrained", model_dir / INITIAL)):
        model = BertModel.from_pretrained(folder, use_safetensors=True, **NO_REMOTE_CODE)
        weights = model.embeddings.word_embeddings.weight
        E = weights.detach().float().numpy()
        for name, lo, hi in zip(names, edges[:-1], edges[1:]):
            group = [i for i in range(len(E)) if lo <= counts[i] < hi and i not in special]
            if len(group) < 2:
                continue
            rows.append(
                {
                    "model": state,
                    "occurrences": name,
                    "tokens": len(group),
                    "mean_cosine": mean_pairwise_cosine(E[group]),
                    "mean_norm": float(np.linalg.norm(E[group], axis=1).mean()),
                }
            )
    return pd.DataFrame(rows)
