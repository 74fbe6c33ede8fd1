"""The book's vocabulary, defined once: model roles, transforms, losses.

Every module, the command line and the chapters import these names from here.

>>> "baseline" in ROLES
True
"""

from __future__ import annotations

#: Configured model roles (keys of ``models:`` in ``config.yaml``).
ROLES = ("baseline", "contrastive", "finetune_base")
#: The role of the model the book fine-tunes from ``finetune_base``.
FINETUNED = "finetuned"
#: Every role a chapter or ``python -m helpers`` accepts.
ALL_ROLES = (*ROLES, FINETUNED)
#: The model name that means "the small BERT the book pre-trains".
SMALL_BERT = "book:small-bert"
#: Post-hoc transforms of :mod:`helpers.transforms`.
TRANSFORMS = ("none", "center", "abtt", "whiten")
#: Fine-tuning losses of :mod:`helpers.finetuning`.
LOSSES = ("batch_all_triplet", "multiple_negatives")
#: Scales (1 / temperature) of Chapter 5's temperature study, trained one epoch each.
TEMPERATURE_SCALES = (20.0, 100.0)
TEMPERATURE_EPOCHS = 1
