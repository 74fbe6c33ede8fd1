"""The pipeline the chapters and the command line share: corpus -> embeddings -> measurements.

Example
-------
>>> from helpers.config import load_config
>>> cfg = load_config()                                   # doctest: +SKIP
>>> splits = corpus_splits(cfg)                           # doctest: +SKIP
>>> measure(cfg, "contrastive", splits)["mean_cosine"]    # doctest: +SKIP
0.06...
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from datasets import DatasetDict

from .config import Config, ConfigError
from .corpus import load_corpus, split_corpus
from .embeddings import embed
from .encoders import Encoder, load_encoder
from .geometry import geometry_report
from .transforms import apply_transform

# Human-readable names of the measurements, in the order tables show them.
METRIC_TITLES = {
    "mean_cosine": "mean cosine (random pairs)",
    "within_cosine": "mean cosine, same subject",
    "between_cosine": "mean cosine, different subjects",
    "pc1_share": "PC1 share of variance",
    "isoscore": "IsoScore",
    "partition_isotropy": "I(W) partition isotropy",
    "alignment": "alignment (lower = tighter)",
    "uniformity": "uniformity (lower = more spread)",
    "silhouette": "silhouette by subject",
    "knn_accuracy": "k-NN accuracy (held out)",
    "probe_accuracy": "linear probe accuracy (held out)",
}


def corpus_splits(cfg: Config, *, second: bool = False, subjects: list[str] | None = None) -> DatasetDict:
    """Train/test splits of the configured corpus (or of ``paths.second_data_dir`` with ``second``).

    The one place that turns a configuration into splits: chapters, pre-training and
    fine-tuning all call it, so they always agree on which chunks are held out.
    """
    if second:
        if cfg.paths.second_data_dir is None:
            raise ConfigError(f"{cfg.source}: 'paths.second_data_dir' is not set; point it at a second corpus to use it")
        ds = load_corpus(cfg.paths.second_data_dir, subjects=subjects, max_per_subject=cfg.data.second_max_per_subject, seed=cfg.data.seed)
    else:
        ds = load_corpus(cfg.paths.data_dir, subjects=subjects or cfg.data.subjects, max_per_subject=cfg.data.max_per_subject, seed=cfg.data.seed)
    return split_corpus(ds, test_fraction=cfg.data.test_fraction, seed=cfg.data.seed)


def second_corpus_splits(cfg: Config) -> DatasetDict | None:
    """Splits of ``paths.second_data_dir``, or ``None`` when it is unset or missing (see :func:`no_second_corpus_note`)."""
    second = cfg.paths.second_data_dir
    return corpus_splits(cfg, second=True) if second is not None and second.exists() else None


def no_second_corpus_note(cfg: Config) -> str:
    """The visible Markdown note a chapter shows when no second corpus is available."""
    second = cfg.paths.second_data_dir
    where = f"`{cfg.shown(second)}` (not found)" if second is not None else "none"
    return (f"**No second corpus is configured** (`paths.second_data_dir`: {where}). Point it at a folder or "
            "file in any format of the *Use your own data* page and rebuild to repeat this section on other text.")


def encoder_for(cfg: Config, model: str) -> Encoder:
    """The encoder for a role (``baseline``, ``contrastive``, ``finetune_base``), ``finetuned``, or a name/path."""
    return load_encoder(model, cfg)


@dataclass
class SplitEmbeddings:
    """Embeddings of both splits for one model, rows aligned with the dataset rows."""

    model: str
    train: np.ndarray
    test: np.ndarray


def embed_splits(cfg: Config, model: str | Encoder, splits: DatasetDict, *, progress: bool = False) -> SplitEmbeddings:
    """Embed train and test with the cache in ``results_dir/cache``."""
    enc = model if isinstance(model, Encoder) else encoder_for(cfg, model)
    kw = dict(cache_dir=cfg.cache_dir, batch_size=cfg.encoding.batch_size, progress=progress)
    return SplitEmbeddings(
        model=enc.name,
        train=embed(enc, splits["train"]["text"], **kw),
        test=embed(enc, splits["test"]["text"], **kw),
    )


def measure_embeddings(emb: SplitEmbeddings, splits: DatasetDict, transform: str = "none") -> dict:
    """All measurements (see :data:`METRIC_TITLES`) for embeddings of both splits, after ``transform``."""
    X_train, X_test = apply_transform(transform, emb.train, emb.test)
    report = geometry_report(X_train, list(splits["train"]["subject"]), X_test, list(splits["test"]["subject"]))
    return {"model": emb.model, "transform": transform, **report.as_dict()}


def measure(cfg: Config, model: str, splits: DatasetDict, transform: str = "none", *, progress: bool = False) -> dict:
    """Embed (cached) and measure one model on ``splits``."""
    return measure_embeddings(embed_splits(cfg, model, splits, progress=progress), splits, transform)


def metrics_table(rows: list[dict], label: str = "model") -> pd.DataFrame:
    """Metrics as a table: one column per model (or label), one row per metric, readable names."""
    frame = pd.DataFrame(rows).set_index(label)
    table = frame[list(METRIC_TITLES)].T
    table.index = [METRIC_TITLES[k] for k in table.index]
    return table.rename_axis(columns=None)


def layer_profile(cfg: Config, model: str | Encoder, texts: list[str]) -> pd.DataFrame:
    """Per-layer geometry of mean-pooled sentence vectors (layer 0 = embedding layer).

    Columns: ``layer``, ``mean_cosine``, ``pc1_share``, ``isoscore``; the Ethayarajh-style
    curve of anisotropy against depth.
    """
    from .embeddings import layer_embeddings
    from .geometry import isoscore, mean_pairwise_cosine, pc1_share

    enc = model if isinstance(model, Encoder) else encoder_for(cfg, model)
    layers = layer_embeddings(enc, list(texts), cache_dir=cfg.cache_dir, batch_size=cfg.encoding.batch_size)
    rows = [
        {"layer": i, "mean_cosine": mean_pairwise_cosine(X), "pc1_share": pc1_share(X), "isoscore": isoscore(X)}
        for i, X in enumerate(layers)
    ]
    return pd.DataFrame(rows)


def long_metrics(rows: list[dict], keys: list[str], label: str = "model") -> pd.DataFrame:
    """Rows of measurements reshaped to (label, metric, value) for :func:`helpers.charts.metric_bars`."""
    frame = pd.DataFrame(rows)
    return frame.melt(id_vars=[label], value_vars=keys, var_name="metric", value_name="value")


def per_subject_separation(emb: SplitEmbeddings, splits: DatasetDict, k: int = 5,
                           trained_on: list[str] | None = None) -> pd.DataFrame:
    """Per subject: held-out k-NN accuracy and mean silhouette of that subject's held-out chunks.

    With ``trained_on`` (the fine-tuning subjects) a column ``trained on`` marks unseen subjects.

    k-NN is fit on the training chunks of every subject (labels are known at search time);
    silhouettes use all held-out chunks as context. Used to ask whether fine-tuning on some
    subjects blurs the ones it never saw.
    """
    from sklearn.metrics import silhouette_samples

    from .geometry import knn_classification, unit_rows

    y_test = np.asarray(splits["test"]["subject"])
    result = knn_classification(emb.train, list(splits["train"]["subject"]), emb.test, list(y_test), k=k)
    sil = silhouette_samples(unit_rows(emb.test), y_test, metric="cosine")
    rows = []
    for subject in sorted(set(y_test)):
        mask = y_test == subject
        rows.append({
            "subject": subject,
            "knn_accuracy": float(np.mean(result.predictions[mask] == subject)),
            "silhouette": float(sil[mask].mean()),
            "n_test": int(mask.sum()),
        })
    frame = pd.DataFrame(rows)
    if trained_on is not None:
        frame["trained on"] = frame["subject"].map(lambda s: "yes" if s in trained_on else "no (unseen)")
    return frame
