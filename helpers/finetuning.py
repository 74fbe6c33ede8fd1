"""Contrastive fine-tuning of a sentence encoder so that subjects form separate clusters.

Uses the sentence-transformers (v3+) trainer on the train split of the training subjects
only (``data.train_subjects``); the other subjects stay unseen. Two losses fit
(text, subject) data:

* ``batch_all_triplet``: :class:`BatchAllTripletLoss` on (text, label) rows with the
  label-grouping batch sampler. Every valid triplet in a batch counts; the margin is on
  cosine distance (range [0, 2]), since a Euclidean margin above 2 can never be met by
  unit vectors and would never switch off. Each batch must hold at least two subjects, or
  the loss has no negatives and zero gradient; this is asserted before training.
* ``multiple_negatives``: :class:`MultipleNegativesRankingLoss` on (anchor, positive) pairs
  of two chunks from the same subject. Other in-batch positives act as negatives; with few
  subjects many of them share the anchor's subject ("false negatives"), which blunts it.

The model is saved under ``results_dir/models/finetuned-<loss>-<key>`` (key: base weights,
data and settings), atomically and with a completion marker; a rerun reuses it.

``multiple_negatives`` is the InfoNCE loss with in-batch negatives (Henderson et al.,
2017): cosine similarities are multiplied by ``finetuning.scale`` (the inverse temperature)
before a softmax cross-entropy that picks each anchor's own positive.

Example
-------
>>> from helpers import models
>>> path = models.model_path(cfg, "finetuned", splits)    # doctest: +SKIP
>>> TrainingLog.load(path).frame()["loss"].iloc[-1] > 0    # doctest: +SKIP
True
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from datasets import Dataset
from sentence_transformers.base.evaluation import SentenceEvaluator

from .config import Finetuning
from .embeddings import texts_hash
from .encoders import Encoder, build_sentence_transformer, quiet_transformers
from .geometry import knn_classification, subject_silhouette
from .names import LOSSES
from .storage import settings_key
from .training import TrainingLog, build_once


def finetuning_inputs(settings: Finetuning, base: Encoder, splits, loss: str) -> dict:
    """Everything that defines a fine-tuned model (hashed into its folder name)."""
    return {
        "base": base.identity,
        "train": texts_hash(list(splits["train"]["text"]) + list(splits["train"]["subject"])),
        "test": texts_hash(splits["test"]["text"]),
        "loss": loss,
        "settings": settings.model_dump(mode="json", exclude={"losses"}),
    }


def finetuned_model(
    settings: Finetuning,
    base: Encoder,
    splits,
    loss: str,
    models_dir: Path,
    *,
    progress: bool = False,
) -> Path:
    """Path of ``base`` fine-tuned with ``loss`` on ``splits``, training it first if needed."""
    inputs = finetuning_inputs(settings, base, splits, loss)
    folder = Path(models_dir) / f"finetuned-{loss}-{settings_key(inputs)}"
    return build_once(
        folder,
        inputs,
        lambda out: train_contrastive(settings, base, splits, loss, out, progress=progress),
    )


def triplet_dataset(splits) -> Dataset:
    """(text, label) rows; labels are subject indices."""
    subjects = sorted(set(splits["train"]["subject"]))
    return Dataset.from_dict(
        {
            "text": list(splits["train"]["text"]),
            "label": [subjects.index(s) for s in splits["train"]["subject"]],
        }
    )


def pair_dataset(splits, seed: int) -> Dataset:
    """(anchor, positive) pairs: every train chunk with a different chunk of the same subject."""
    rng = np.random.default_rng(seed)
    texts = np.asarray(splits["train"]["text"], dtype=object)
    subjects = np.asarray(splits["train"]["subject"])
    anchors, positives = [], []
    for i in range(len(texts)):
        same = np.flatnonzero((subjects == subjects[i]) & (np.arange(len(texts)) != i))
        anchors.append(texts[i])
        positives.append(texts[rng.choice(same)])
    return Dataset.from_dict({"anchor": anchors, "positive": positives})


def assert_batches_mix_subjects(dataset: Dataset, batch_size: int, seed: int) -> int:
    """Check that the label-grouping sampler puts at least two subjects in every batch.

    Older samplers emitted single-label batches, which give batch-triplet losses nothing to
    push apart (zero gradient). Returns the number of batches checked.
    """
    from sentence_transformers.base import GroupByLabelBatchSampler

    sampler = GroupByLabelBatchSampler(
        dataset, batch_size=batch_size, drop_last=False, valid_label_columns=["label"], seed=seed
    )
    labels = dataset["label"]
    n = 0
    for batch in sampler:
        n += 1
        if len({labels[i] for i in batch}) < 2:
            raise AssertionError(
                f"a training batch holds a single subject ({len(batch)} rows): no negatives, zero gradient"
            )
    return n


class SubjectSeparationEvaluator(SentenceEvaluator):
    """Held-out silhouette and k-NN accuracy of subjects, for the trainer's evaluation steps."""

    def __init__(self, splits):
        super().__init__()
        self.texts = {k: list(splits[k]["text"]) for k in ("train", "test")}
        self.subjects = {k: list(splits[k]["subject"]) for k in ("train", "test")}
        self.primary_metric = "silhouette"
        self.greater_is_better = True

    def __call__(self, model, output_path=None, epoch=-1, steps=-1) -> dict[str, float]:
        test_x = model.encode(self.texts["test"], convert_to_numpy=True)
        train_x = model.encode(self.texts["train"], convert_to_numpy=True)
        y_test = self.subjects["test"]
        return {
            "silhouette": subject_silhouette(test_x, y_test),
            "knn_accuracy": knn_classification(
                train_x, self.subjects["train"], test_x, y_test
            ).accuracy,
        }


def train_contrastive(
    settings: Finetuning,
    base: Encoder,
    splits,
    loss_name: str,
    out_dir: Path,
    *,
    progress: bool = False,
) -> TrainingLog:
    """Fine-tune ``base`` with ``loss_name`` on the train split into ``out_dir``."""
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import (
        BatchAllTripletLoss,
        BatchHardTripletLossDistanceFunction,
        MultipleNegativesRankingLoss,
    )

    quiet_transformers()
    f = settings
    model = build_sentence_transformer(base.path, base.pooling, base.normalize, f.max_length)
    if loss_name == "batch_all_triplet":
        train = triplet_dataset(splits)
        assert_batches_mix_subjects(train, f.batch_size, f.seed)
        loss = BatchAllTripletLoss(
            model,
            distance_metric=BatchHardTripletLossDistanceFunction.cosine_distance,
            margin=f.triplet_margin,
        )
        sampler = BatchSamplers.GROUP_BY_LABEL
    elif loss_name == "multiple_negatives":
        train = pair_dataset(splits, f.seed)
        loss = MultipleNegativesRankingLoss(model, scale=f.scale)
        sampler = BatchSamplers.NO_DUPLICATES
    else:
        raise ValueError(f"unknown loss {loss_name!r}; use one of {', '.join(LOSSES)}")
    # A model-card example set up front, so the trainer does not sample one with a progress bar.
    model.model_card_data.widget = [{"text": splits["test"]["text"][0]}]
    evaluator = SubjectSeparationEvaluator(splits)
    work = out_dir / "_trainer"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work),
        num_train_epochs=f.epochs,
        per_device_train_batch_size=f.batch_size,
        learning_rate=f.learning_rate,
        warmup_steps=0.1,  # a float is a fraction of all steps
        seed=f.seed,
        data_seed=f.seed,
        batch_sampler=sampler,
        eval_strategy="steps",
        eval_steps=f.eval_steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=not progress,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train, loss=loss, evaluator=evaluator
    )
    if not progress:  # without a progress bar, transformers prints every log dict instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    start_metrics = evaluator(model)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    records = [{"step": 0, **{f"eval_{k}": v for k, v in start_metrics.items()}}]
    for entry in trainer.state.log_history:
        row = {"step": entry.get("step")}
        keep = ("loss", "eval_silhouette", "eval_knn_accuracy")
        row.update({k: v for k, v in entry.items() if k in keep})
        if len(row) > 1:
            records.append(row)
    return TrainingLog(
        records=records,
        seconds=seconds,
        parameters=sum(t.numel() for t in model.parameters()),
        summary={"loss": loss_name, "steps": trainer.state.global_step, "train_rows": len(train)},
    )
