"""The book's vocabulary, defined once: model roles, transforms, losses, and shared limits.

Every module, the command line and the chapters import these names from here. Values that
``config.yaml`` validates and another module applies (choices, defaults, minimums) live
here too, so the two can never disagree and ``config`` stays light.

>>> "baseline" in ROLES
True
>>> LOSSES
('batch_all_triplet', 'multiple_negatives')
>>> MIN_PER_SUBJECT == MIN_TRAIN_PER_SUBJECT + MIN_TEST_PER_SUBJECT
True
"""

from __future__ import annotations

from typing import Literal, get_args

#: Configured model roles (keys of ``models:`` in ``config.yaml``).
ROLES = ("baseline", "contrastive", "finetune_base")
#: The role of the model the book fine-tunes from ``finetune_base``.
FINETUNED = "finetuned"
#: The model name that means "the small BERT the book pre-trains".
SMALL_BERT = "book:small-bert"
#: Post-hoc transforms of :mod:`helpers.transforms`.
TRANSFORMS = ("none", "center", "abtt", "whiten")
# Choices as types (config.py's schema checks them) and as tuples, one spelling each.
Loss = Literal["batch_all_triplet", "multiple_negatives"]
Pooling = Literal["mean", "cls"]
Precision = Literal["fp32", "bf16", "int8"]
#: Fine-tuning losses of :mod:`helpers.finetuning` (values of ``finetuning.losses``).
LOSSES: tuple[Loss, ...] = get_args(Loss)
#: Poolings of a sentence encoder (``models.<role>.pooling``, ``--pooling``).
POOLINGS: tuple[Pooling, ...] = get_args(Pooling)
#: What :mod:`helpers.encoders` computes in (``encoding.precision``).
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
#: Scales (1 / temperature) of Chapter 5's temperature study, trained one epoch each.
TEMPERATURE_SCALES = (20.0, 100.0)
TEMPERATURE_EPOCHS = 1
#: The unsupervised SimCSE objective (Gao et al., 2021): each text paired with itself.
SIMCSE = "simcse"
#: The ``baseline`` model continued with SimCSE, and with the book's supervised fine-tune:
#: the same model and data under three objectives (MLM, MLM + SimCSE, MLM + fine-tune).
BASELINE_SIMCSE = "baseline-simcse"
BASELINE_FINETUNED = "baseline-finetuned"
#: Roles the book trains from another role: role -> (the role it starts from).
DERIVED_ROLES = {
    FINETUNED: "finetune_base",
    BASELINE_SIMCSE: "baseline",
    BASELINE_FINETUNED: "baseline",
}
#: Every role a chapter or ``python -m helpers`` accepts.
ALL_ROLES = (*ROLES, *DERIVED_ROLES)

#: Fewest chunks the train/test split (:mod:`helpers.corpus`) leaves a subject on each
#: side; ``data.max_per_subject`` may not ask for fewer than their sum.
MIN_TRAIN_PER_SUBJECT = 3
MIN_TEST_PER_SUBJECT = 1
MIN_PER_SUBJECT = MIN_TRAIN_PER_SUBJECT + MIN_TEST_PER_SUBJECT
#: Defaults of ``data.archive_max_bytes`` and ``data.archive_max_members``
#: (:mod:`helpers.archives`).
ARCHIVE_MAX_BYTES = 2_000_000_000
ARCHIVE_MAX_MEMBERS = 200_000
#: Suffixes of chunk files (one chunk per file) in subject folders, in any case.
TEXT_SUFFIXES = (".txt", ".md")
#: Largest chunk file read, in a folder or inside an archive, checked before it is read; also
#: the longest text of a table cell. A chunk is a passage: the corpus warns past 2,000 words
#: (some 15 KB) and encoders read a few thousand tokens, so 50 MB (millions of words) is a
#: whole book or a dump in one file, not a chunk, and reading it whole can exhaust memory.
CHUNK_FILE_MAX_BYTES = 50_000_000
#: Texts per saved shard of ``python -m helpers embed`` (:mod:`helpers.shards`).
DEFAULT_SHARD_SIZE = 1000
