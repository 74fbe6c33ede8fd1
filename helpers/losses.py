"""A contrastive loss that knows the labels: supervised contrastive (Khosla et al., 2020).

The multiple-negatives ranking loss treats every other row of a batch as a negative. With
a handful of subjects, many of those rows share the anchor's subject ("false negatives"),
and the loss pushes them away. :class:`SupervisedContrastiveLoss` instead takes every
same-label row of the batch as a positive: for each anchor ``i`` with positives ``P(i)``,

    loss_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip / t) / sum_{a != i} exp(s_ia / t) )

(``L_out`` of Khosla et al., 2020, eq. 2), with ``s`` the cosine similarity and ``t`` the
temperature (``scale`` = 1 / t, as in the multiple-negatives loss). Anchors without a
positive in the batch are left out.

Example
-------
>>> import torch
>>> labels = torch.tensor([0, 0, 1, 1])
>>> z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
>>> round(float(supervised_contrastive(z, labels, scale=20.0)), 4)  # clusters: near zero
0.0
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def supervised_contrastive(embeddings: Tensor, labels: Tensor, scale: float) -> Tensor:
    """The supervised contrastive loss of a batch of ``embeddings`` with their ``labels``."""
    z = F.normalize(embeddings, dim=1)
    n = len(z)
    itself = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T * scale).masked_fill(itself, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~itself
    counts = positives.sum(dim=1)
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(dim=1) / counts.clamp(min=1)
    has_positive = counts > 0
    if not has_positive.any():  # no pair of one label: nothing to pull together
        return embeddings.sum() * 0.0
    return per_anchor[has_positive].mean()


class SupervisedContrastiveLoss(nn.Module):
    """sentence-transformers loss on ``(text, label)`` rows: same-label rows are positives.

    Use it with a batch sampler that puts several rows of each label in a batch
    (``BatchSamplers.GROUP_BY_LABEL``).
    """

    def __init__(self, model, scale: float = 20.0) -> None:
        super().__init__()
        self.model = model
        self.scale = scale

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        embeddings = self.model(list(sentence_features)[0])["sentence_embedding"]
        return supervised_contrastive(embeddings, labels, self.scale)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale}

    @property
    def citation(self) -> str:
        return (
            "@inproceedings{khosla2020supervised, title={Supervised Contrastive Learning}, "
            "author={Khosla, Prannay and others}, booktitle={NeurIPS}, year={2020}}"
        )
