"""Contrastive fine-tuning of a sentence encoder so that subjects form separate clusters.

Uses the sentence-transformers (v3+) trainer on the train split of the training subjects
only (``data.train_subjects``); the other subjects stay unseen. Two losses fit
(text, subject) data, and one needs no labels at all:

* ``batch_all_triplet``: :class:`BatchAllTripletLoss` on (text, label) rows with the
  label-grouping batch sampler. Every valid triplet in a batch counts; the margin is on
  cosine distance (range [0, 2]), since a Euclidean margin above 2 can never be met by
  unit vectors and would never switch off. Each batch must hold at least two subjects, or
  the loss has no negatives and zero gradient; this is asserted before training.
* ``multiple_negatives``: :class:`MultipleNegativesRankingLoss` on (anchor, positive) pairs
  of two chunks from the same subject. Other in-batch positives act as negatives; with few
  subjects many of them share the anchor's subject ("false negatives", counted by
  :func:`false_negative_share`), which blunts it.
* ``supervised_contrastive``: :class:`helpers.losses.SupervisedContrastiveLoss` (Khosla et
  al., 2020) on (text, label) rows with the label-grouping sampler: every same-subject row
  of the batch is a positive, so none is pushed away; same scale as ``multiple_negatives``.

**When a run stops.** With ``finetuning.stop_at_plateau`` (the default) a run holds back
``validation_fraction`` of the training chunks of each subject (:func:`hold_out_validation`),
keeps the learning rate constant after warm-up (a schedule that decays to zero would make
a plateau of its own), and :class:`PlateauStop` ends it when the validation silhouette
gains less than ``plateau_delta`` over the last ``plateau_evaluations`` evaluations, or
after ``max_minutes``. The held-out chunks that the book's tables measure never decide it.
The log's summary says why the run stopped.

The model is saved under ``results_dir/models/finetuned-<loss>-<key>`` (key: base weights,
data, settings and this module's code), atomically and with a completion marker; a rerun
reuses it, and an edit of the recipe trains it again.

Several data-parallel processes (``torchrun --nproc_per_node=N -m helpers finetune``) train
one model with the trainer's own DDP support. ``finetuning.batch_size`` stays the batch of
one step, split evenly over the processes, so the run takes the same steps and the model
keeps its key; ``multiple_negatives`` gathers the other processes' rows as negatives, so
its loss sees the whole batch as on one process. Rank 0 alone writes the model and its log.

* ``simcse``: unsupervised SimCSE (Gao et al., 2021). Each training text is paired with
  itself; the two passes differ only by dropout noise, and the other texts of the batch
  are the negatives (:class:`MultipleNegativesRankingLoss` on ``(x, x)`` pairs, scale
  ``finetuning.scale`` = 1 / temperature, 20 for SimCSE's 0.05). It reads no subject
  labels.

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
import sys
import time
from pathlib import Path

import numpy as np
from datasets import Dataset
from sentence_transformers.base.evaluation import SentenceEvaluator

from .config import ConfigError, Finetuning
from .embeddings import texts_hash
from .encoders import Encoder, build_sentence_transformer, quiet_transformers
from .geometry import alignment, subject_silhouette, uniformity
from .losses import SupervisedContrastiveLoss
from .names import LOSSES, SIMCSE
from .storage import settings_key
from .training import TrainingLog, build_once, code_version, cpu_bf16, process_count


def finetuning_inputs(settings: Finetuning, base: Encoder, splits, loss: str) -> dict:
    """Everything that defines a fine-tuned model (hashed into its folder name)."""
    return {
        "base": base.identity,
        "train": texts_hash(list(splits["train"]["text"]) + list(splits["train"]["subject"])),
        "test": texts_hash(splits["test"]["text"]),
        "loss": loss,
        # Which losses and extra seeds the book trains does not change one run's model.
        "settings": settings.model_dump(mode="json", exclude={"losses", "extra_seeds"}),
        "code": CODE_VERSION,  # an edit of this module retrains
    }


def finetuned_folder(
    settings: Finetuning, base: Encoder, splits, loss: str, models_dir: Path
) -> Path:
    """Where ``base`` fine-tuned with ``loss`` on ``splits`` lives (trained or not)."""
    key = settings_key(finetuning_inputs(settings, base, splits, loss))
    return Path(models_dir) / f"finetuned-{loss}-{key}"


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
    return build_once(
        finetuned_folder(settings, base, splits, loss, models_dir),
        finetuning_inputs(settings, base, splits, loss),
        lambda out: train_contrastive(settings, base, splits, loss, out, progress=progress),
        collective=True,  # under torchrun every process joins the one training
    )


def per_process_batch(batch_size: int, processes: int, loss: str) -> int:
    """Rows each process trains on per step when ``processes`` share a batch of ``batch_size``.

    >>> per_process_batch(32, 1, "batch_all_triplet"), per_process_batch(32, 4, "multiple_negatives")
    (32, 8)
    """
    if processes == 1:
        return batch_size
    # The label-grouping sampler of the triplet loss needs an even batch of at least 4 rows.
    step, least = (
        (2 * processes, 4 * processes) if loss == "batch_all_triplet" else (processes, processes)
    )
    if batch_size % step or batch_size < least:
        raise ConfigError(
            f"key 'finetuning.batch_size' = {batch_size} cannot be split over {processes} processes "
            f"for the {loss} loss: each process needs the same "
            f"{'even number of at least 4' if loss == 'batch_all_triplet' else 'number of'} rows. "
            f"Fix: use a multiple of {step} of at least {least}, or fewer processes."
        )
    return batch_size // processes


def distributed_arguments(processes: int, gpus: bool) -> dict:
    """Extra trainer arguments for ``processes`` data-parallel processes (none for one).

    >>> distributed_arguments(1, gpus=False)
    {}
    >>> distributed_arguments(2, gpus=False)
    {'dataloader_drop_last': True, 'ddp_backend': 'gloo'}
    """
    if processes == 1:
        return {}
    # Every process must take the same number of steps, or one waits for the others forever.
    extra = {"dataloader_drop_last": True}
    if not gpus:
        extra["ddp_backend"] = "gloo"  # NCCL (the GPU default) does not run on CPUs
    return extra


def hold_out_validation(splits, fraction: float, seed: int = 0):
    """Split the training chunks into rows to train on and a validation set for stopping.

    ``fraction`` of each subject's training chunks (at least two where the subject has three or
    more, so that a silhouette is defined, and never all) go to ``validation``; ``train`` keeps the rest and ``test`` is untouched. The draw uses its
    own ``seed``, the same for every run, so runs that differ in their training seed stop
    on the same chunks.

    >>> from datasets import Dataset, DatasetDict
    >>> train = Dataset.from_dict({"text": list("abcdefgh"), "subject": list("xxxxyyyy")})
    >>> parts = hold_out_validation(DatasetDict(train=train, test=train), 0.25)
    >>> len(parts["train"]), sorted(parts["validation"]["subject"])
    (4, ['x', 'x', 'y', 'y'])
    """
    from datasets import DatasetDict

    subjects = np.asarray(splits["train"]["subject"])
    rng = np.random.default_rng(seed)
    held = []
    for subject in sorted(set(subjects)):
        rows = np.flatnonzero(subjects == subject)
        n = min(max(2, round(fraction * len(rows))), len(rows) - 1)
        held += list(rng.choice(rows, size=n, replace=False)) if n > 0 else []
    held = np.sort(np.asarray(held, dtype=int))
    kept = np.setdiff1d(np.arange(len(subjects)), held)
    return DatasetDict(
        train=splits["train"].select(kept),
        validation=splits["train"].select(held),
        test=splits["test"],
    )


def plateaued(history: list[float], delta: float, evaluations: int) -> bool:
    """True when the best of the last ``evaluations`` values is less than ``delta`` above the
    value before them (the run has stopped gaining).

    >>> plateaued([0.10, 0.30, 0.45, 0.50], delta=0.01, evaluations=3)
    False
    >>> plateaued([0.10, 0.50, 0.505, 0.49, 0.508], delta=0.01, evaluations=3)
    True
    """
    if len(history) <= evaluations:
        return False
    return max(history[-evaluations:]) - history[-evaluations - 1] < delta


def false_negative_share(subjects, batch_size: int, seed: int, batches: int = 200) -> float:
    """Share of in-batch negatives that have the anchor's subject, for batches drawn at random.

    That is what the multiple-negatives loss meets: its batches are random (no two rows
    alike), and every other row is a negative. With ``m`` equal subjects it is about
    ``(n/m - 1) / (n - 1)`` for ``n`` rows, near 1/m.

    >>> round(false_negative_share(["a"] * 50 + ["b"] * 50, 32, seed=0), 2)
    0.49
    """
    subjects = np.asarray(subjects)
    rng = np.random.default_rng(seed)
    same = total = 0
    for _ in range(batches):
        batch = subjects[
            rng.choice(len(subjects), size=min(batch_size, len(subjects)), replace=False)
        ]
        matches = (batch[:, None] == batch[None, :]).sum() - len(batch)
        same += int(matches)
        total += len(batch) * (len(batch) - 1)
    return same / total


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


def simcse_dataset(splits) -> Dataset:
    """(anchor, positive) rows that are the same training text twice (SimCSE's pairs)."""
    texts = list(splits["train"]["text"])
    return Dataset.from_dict({"anchor": texts, "positive": texts})


def assert_batches_mix_subjects(
    dataset: Dataset, batch_size: int, seed: int, processes: int = 1
) -> int:
    """Check that the label-grouping sampler puts at least two subjects in every batch.

    Older samplers emitted single-label batches, which give batch-triplet losses nothing to
    push apart (zero gradient). With several ``processes`` (``batch_size`` rows each) it
    checks what each one trains on: the trainer deals whole sampler batches out in turn
    (accelerate's ``BatchSamplerShard``) and drops the last incomplete round, so each
    process's batch is one sampler batch, never a slice of one. Returns the number of
    batches checked.

    >>> assert_batches_mix_subjects(triplet_dataset(splits), 32, seed=13)  # doctest: +SKIP
    3
    """
    from sentence_transformers.base import GroupByLabelBatchSampler

    sampler = GroupByLabelBatchSampler(
        dataset,
        batch_size=batch_size,
        drop_last=processes > 1,
        valid_label_columns=["label"],
        seed=seed,
    )
    labels = dataset["label"]
    n = 0
    for rank, batches in enumerate(_process_shares(sampler, processes)):
        count = 0
        for batch in batches:
            count += 1
            if len({labels[i] for i in batch}) < 2:
                raise AssertionError(
                    f"a training batch holds a single subject ({len(batch)} rows): no negatives, zero gradient"
                )
        if processes > 1 and count == 0:
            raise ConfigError(
                f"process {rank} of {processes} gets no full batch of {batch_size} rows from "
                f"{len(dataset)} training rows. Fix: lower finetuning.batch_size or use fewer processes."
            )
        n += count
    return n


def _process_shares(sampler, processes: int) -> list:
    """The batches each of ``processes`` trains on, as the trainer's data loader deals them."""
    if processes == 1:
        return [sampler]
    from accelerate.data_loader import BatchSamplerShard

    return [
        BatchSamplerShard(sampler, num_processes=processes, process_index=rank, even_batches=False)
        for rank in range(processes)
    ]


class SubjectSeparationEvaluator(SentenceEvaluator):
    """Held-out silhouette, alignment and uniformity, at each evaluation step.

    With a ``validation`` split it also reports that split's silhouette
    (``validation_silhouette``), which the plateau rule reads. It encodes only the held-out
    and validation chunks: every evaluation is time taken from training.
    """

    def __init__(self, splits):
        super().__init__()
        self.parts = [k for k in ("test", "validation") if k in splits]
        self.texts = {k: list(splits[k]["text"]) for k in self.parts}
        self.subjects = {k: list(splits[k]["subject"]) for k in self.parts}
        self.primary_metric = "validation_silhouette" if "validation" in splits else "silhouette"
        self.greater_is_better = True

    def __call__(self, model, output_path=None, epoch=-1, steps=-1) -> dict[str, float]:
        test_x = model.encode(self.texts["test"], convert_to_numpy=True)
        y_test = self.subjects["test"]
        extra = {}
        if "validation" in self.parts:
            valid_x = model.encode(self.texts["validation"], convert_to_numpy=True)
            extra["validation_silhouette"] = subject_silhouette(
                valid_x, self.subjects["validation"]
            )
        return {
            **extra,
            "silhouette": subject_silhouette(test_x, y_test),
            # Wang & Isola (2020): same-subject chunks as the positive pairs.
            "alignment": alignment(test_x, np.asarray(y_test)),
            "uniformity": uniformity(test_x),
        }


def _agreed(flag: bool) -> bool:
    """``flag`` if any data-parallel process raises it: all processes must stop together."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def plateau_stop(settings: Finetuning):
    """A trainer callback that applies the plateau rule and the time cap of ``settings``."""
    from transformers import TrainerCallback

    class PlateauStop(TrainerCallback):
        """Stop at a validation plateau (:func:`plateaued`) or after ``max_minutes``."""

        def __init__(self, start: float | None = None):
            self.history = [] if start is None else [start]
            self.reason = "epochs"
            self.started = time.perf_counter()
            self.warmed = 0  # evaluations after the learning rate's warm-up

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            self.history.append(metrics["eval_validation_silhouette"])
            # A window that reaches into the warm-up would judge a run before it trains at
            # its full rate.
            self.warmed += state.global_step > args.get_warmup_steps(state.max_steps)
            flat = self.warmed >= settings.plateau_evaluations and plateaued(
                self.history, settings.plateau_delta, settings.plateau_evaluations
            )
            if _agreed(flat):
                self.reason = "plateau"
                control.should_training_stop = True

        def on_step_end(self, args, state, control, **kwargs):
            # Clocks differ between processes: they agree, or one would wait for the others.
            if _agreed(time.perf_counter() - self.started > 60 * settings.max_minutes):
                self.reason = "time cap"
                control.should_training_stop = True

    return PlateauStop


def contrastive_objective(model, loss_name: str, splits, settings: Finetuning, processes: int = 1):
    """The training rows, the sentence-transformers loss and the batch sampler of ``loss_name``.

    Returns ``(dataset, loss, sampler)`` for :func:`train_contrastive`.
    """
    from sentence_transformers.base import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import (
        BatchAllTripletLoss,
        BatchHardTripletLossDistanceFunction,
        MultipleNegativesRankingLoss,
    )

    if loss_name == "batch_all_triplet":
        # (text, label) rows; batches grouped by label, so each batch holds positives.
        loss = BatchAllTripletLoss(
            model,
            distance_metric=BatchHardTripletLossDistanceFunction.cosine_distance,
            margin=settings.triplet_margin,
        )
        return triplet_dataset(splits), loss, BatchSamplers.GROUP_BY_LABEL
    if loss_name == "supervised_contrastive":
        # The same rows and sampler; same-label rows are positives, the rest negatives.
        loss = SupervisedContrastiveLoss(model, scale=settings.scale)
        return triplet_dataset(splits), loss, BatchSamplers.GROUP_BY_LABEL
    if loss_name in ("multiple_negatives", SIMCSE):
        # (anchor, positive) rows; the other rows of the batch are the negatives (across
        # processes too). SimCSE's positive is the anchor itself: dropout is the only noise.
        if loss_name == SIMCSE:
            pairs = simcse_dataset(splits)
        else:
            pairs = pair_dataset(splits, settings.seed)
        loss = MultipleNegativesRankingLoss(
            model, scale=settings.scale, gather_across_devices=processes > 1
        )
        return pairs, loss, BatchSamplers.NO_DUPLICATES
    raise ValueError(f"unknown loss {loss_name!r}; use one of {', '.join((*LOSSES, SIMCSE))}")


def training_arguments(
    settings: Finetuning, work: Path, batch_size: int, sampler, *, progress: bool = False
):
    """The trainer's arguments: epochs, batch, learning rate and warm-up, evaluation steps."""
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments

    processes = process_count()
    gpus = processes > 1 and torch.cuda.is_available()
    return SentenceTransformerTrainingArguments(
        output_dir=str(work),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=0.1,  # a float is a fraction of all steps
        # Stopped at a plateau, a run must not have its rate decayed to zero by a schedule
        # fixed in advance: that would flatten the curve by itself.
        lr_scheduler_type="constant_with_warmup" if settings.stop_at_plateau else "linear",
        seed=settings.seed,
        data_seed=settings.seed,
        batch_sampler=sampler,
        eval_strategy="steps",
        eval_steps=settings.eval_steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not gpus,  # one process always trains on the CPU, as the book is built
        bf16=cpu_bf16(settings.precision) and not gpus,
        disable_tqdm=not progress,
        **distributed_arguments(processes, gpus),
    )


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
    from sentence_transformers import SentenceTransformerTrainer

    quiet_transformers()
    f = settings
    processes = process_count()
    batch_size = per_process_batch(f.batch_size, processes, loss_name)
    model = build_sentence_transformer(base.path, base.pooling, base.normalize, f.max_length)
    if f.stop_at_plateau:
        splits = hold_out_validation(splits, f.validation_fraction)
        rows, groups = len(splits["validation"]), len(set(splits["validation"]["subject"]))
        if rows <= groups:
            raise ConfigError(
                f"key 'finetuning.stop_at_plateau' needs a validation silhouette, but the training "
                f"split leaves {rows} validation rows for {groups} subjects (it needs more rows "
                "than subjects). Fix: add training chunks or set finetuning.stop_at_plateau: false."
            )
    train, loss, sampler = contrastive_objective(model, loss_name, splits, f, processes)
    if loss_name in ("batch_all_triplet", "supervised_contrastive"):
        assert_batches_mix_subjects(train, batch_size, f.seed, processes)
    if processes > 1 and len(train) < f.batch_size:
        raise ConfigError(
            f"key 'finetuning.batch_size' = {f.batch_size} is more than the {len(train)} training rows: "
            f"with {processes} processes only full batches are trained. Fix: lower finetuning.batch_size."
        )
    # A model-card example set up front, so the trainer does not sample one with a progress bar.
    model.model_card_data.widget = [{"text": splits["test"]["text"][0]}]
    evaluator = SubjectSeparationEvaluator(splits)
    work = out_dir / "_trainer"
    args = training_arguments(f, work, batch_size, sampler, progress=progress)
    # Every process evaluates, so that all of them see the same stop.
    start_metrics = evaluator(model)
    stop = (
        plateau_stop(f)(start_metrics.get("validation_silhouette")) if f.stop_at_plateau else None
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train,
        loss=loss,
        evaluator=evaluator,
        callbacks=[stop] if stop else None,
    )
    if not progress:  # without a progress bar, transformers prints every log dict instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)
    if trainer.state.global_step == 0:  # e.g. no full batch without repeated texts: publish nothing
        raise ConfigError(
            f"fine-tuning took no step: {len(train)} training rows give no full batch of "
            f"{batch_size} rows{f' on each of {processes} processes' if processes > 1 else ''}. "
            "Fix: lower finetuning.batch_size, use fewer processes or more data."
        )
    if not trainer.is_world_process_zero():  # rank 0 saves and publishes the one model
        return TrainingLog(records=[], seconds=seconds, parameters=0)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    records = [{"step": 0, **{f"eval_{k}": v for k, v in start_metrics.items()}}]
    for entry in trainer.state.log_history:
        row = {"step": entry.get("step")}
        keep = ("loss", *(f"eval_{k}" for k in start_metrics))
        row.update({k: v for k, v in entry.items() if k in keep})
        if len(row) > 1:
            records.append(row)
    summary = {
        "loss": loss_name,
        "steps": trainer.state.global_step,
        "train_rows": len(train),
        "seed": f.seed,
        "stopped": stop.reason if stop else "epochs",
        "validation_rows": len(splits["validation"]) if f.stop_at_plateau else 0,
    }
    if processes > 1:
        summary["processes"] = processes
    return TrainingLog(
        records=records,
        seconds=seconds,
        parameters=sum(t.numel() for t in model.parameters()),
        summary=summary,
    )


#: This module's code as it was imported (read once, so a later edit of the file on disk
#: cannot give a model trained by the old code the new code's key).
CODE_VERSION = code_version(sys.modules[__name__])
