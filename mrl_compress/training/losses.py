"""Losses composed from small pieces; each method picks the pieces it needs.

* :func:`similarity_preservation` — listwise: the compressed scores of an anchor against a set
  of candidates must rank like the full-vector scores (KL between the two softmax
  distributions). With candidates drawn from the anchor's neighbourhood this is the
  unsupervised objective of SMEC / Matryoshka-Adaptor; it needs no labels.
* :func:`ranking` — in-batch InfoNCE on query/document pairs, when the user has them.
* :func:`reconstruction` — CSR's normalised MSE.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def similarity_preservation(
    teacher: torch.Tensor, student: torch.Tensor, tau_teacher: float,
    tau_student: float | torch.Tensor,
) -> torch.Tensor:
    """KL(softmax(teacher/τt) ‖ softmax(student/τs)) averaged over anchors (rows)."""
    target = F.softmax(teacher / tau_teacher, dim=-1)
    log_pred = F.log_softmax(student / tau_student, dim=-1)
    return F.kl_div(log_pred, target, reduction="batchmean")


def ranking(queries: torch.Tensor, docs: torch.Tensor, tau: float = 0.05,
            negatives: torch.Tensor | None = None,
            duplicate: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE: query i's document is docs[i]; the other documents of the batch are negatives,
    and so are ``negatives`` (stored vectors) where given, except those ``duplicate`` marks
    (a (queries, negatives) mask: the stored copy of a query's own document)."""
    logits = queries @ docs.t() / tau
    if negatives is not None:
        extra = queries @ negatives.t() / tau
        if duplicate is not None:
            extra = extra.masked_fill(duplicate, -1e4)
        logits = torch.cat([logits, extra], dim=1)
    labels = torch.arange(len(queries), device=queries.device)
    return F.cross_entropy(logits, labels)


def reconstruction(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """MSE normalised by the input's variance (scale-free, as in the TopK SAE literature)."""
    return ((x_hat - x) ** 2).sum(-1).mean() / ((x - x.mean(0)) ** 2).sum(-1).mean()
