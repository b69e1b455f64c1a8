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
            masked: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE: query i's document is docs[i]; every other column of ``docs`` (the batch's
    other documents, then any extra negatives) is a negative unless ``masked`` marks it."""
    logits = queries @ docs.t() / tau
    if masked is not None:
        logits = logits.masked_fill(masked, -1e4)
    labels = torch.arange(len(queries), device=queries.device)
    return F.cross_entropy(logits, labels)


def no_negatives(queries: torch.Tensor, docs: torch.Tensor,
                 extra: torch.Tensor | None = None) -> torch.Tensor:
    """Mask of the columns of ``[docs | extra]`` that are no negatives of pair i: a copy of
    its own document (the same document drawn for another query, or its stored vector among
    ``extra``), or another document of its own query. Input vectors, not projections."""
    same = 1 - 1e-4  # cosine of two copies of one vector, after float16 storage
    q, d = F.normalize(queries, dim=-1), F.normalize(docs, dim=-1)
    masked = (d @ d.t() > same) | (q @ q.t() > same)
    if extra is not None:
        masked = torch.cat([masked, d @ F.normalize(extra, dim=-1).t() > same], dim=1)
    return masked.fill_diagonal_(False)  # each row's own pair is its positive


def reconstruction(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """MSE normalised by the input's variance (scale-free, as in the TopK SAE literature)."""
    return ((x_hat - x) ** 2).sum(-1).mean() / ((x - x.mean(0)) ** 2).sum(-1).mean()
