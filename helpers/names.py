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
#: The model name that means "the small BERT the book pre-trains".
SMALL_BERT = "book:small-bert"
#: Post-hoc transforms of :mod:`helpers.transforms`.
TRANSFORMS = ("none", "center", "abtt", "whiten")
#: Fine-tuning losses of :mod:`helpers.finetuning`.
LOSSES = ("batch_all_triplet", "multiple_negatives")
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
