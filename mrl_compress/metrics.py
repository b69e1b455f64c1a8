"""Retrieval and similarity metrics, brute force in numpy (no store, no torch).

Scores are dot products, and cosines: dense representations are L2-normalised, and sparse
ones are scaled so that their dot products are cosines (see ``outputs.SparseBatch``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mrl_compress.outputs import SparseBatch

Representation = np.ndarray | SparseBatch


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def scores(queries: Representation, docs: Representation) -> np.ndarray:
    """(n_queries, n_docs) dot products; sparse batches are densified (fine for evaluation)."""
    q = queries.to_dense() if isinstance(queries, SparseBatch) else queries
    d = docs.to_dense() if isinstance(docs, SparseBatch) else docs
    return np.asarray(q @ d.T, dtype=np.float32)


def top_k(queries: Representation, docs: Representation, k: int, chunk: int = 1024) -> np.ndarray:
    """Indices of the k best docs per query, best first, computed in query chunks."""
    n = queries.shape[0] if isinstance(queries, np.ndarray) else len(queries)
    docs = docs.to_dense() if isinstance(docs, SparseBatch) else docs  # once, not per chunk
    n_docs = docs.shape[0]
    k = min(k, n_docs)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        s = scores(queries[start : start + chunk], docs)
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
        out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def rerank(
    shortlist: np.ndarray, queries_full: np.ndarray, docs_full: np.ndarray, k: int
) -> np.ndarray:
    """Stage 2 of a two-stage search: order each query's shortlist by full-vector score."""
    cand = docs_full[shortlist]  # (n, m, D)
    s = np.einsum("nd,nmd->nm", queries_full, cand)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(shortlist, order, axis=1)


def two_stage(
    queries_small: Representation,
    docs_small: Representation,
    queries_full: np.ndarray,
    docs_full: np.ndarray,
    k: int,
    shortlist: int,
    chunk: int = 512,
) -> np.ndarray:
    n = queries_full.shape[0]
    docs_small = docs_small.to_dense() if isinstance(docs_small, SparseBatch) else docs_small
    out = []
    for start in range(0, n, chunk):
        sl = top_k(queries_small[start : start + chunk], docs_small, shortlist)
        out.append(rerank(sl, queries_full[start : start + chunk], docs_full, k))
    return np.concatenate(out) if out else np.empty((0, k), dtype=np.int64)


def neighbour_recall(reference: np.ndarray, found: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each row's true top-k (``reference``) present in ``found``'s top-k."""
    hits = [len(set(r[:k]).intersection(f[:k])) for r, f in zip(reference, found, strict=True)]
    return float(np.mean(hits) / k)


Qrels = Mapping[str, Mapping[str, float]]


def ndcg_at_k(ranked_ids: Sequence[Sequence[str]], query_ids: Sequence[str], qrels: Qrels,
              k: int = 10) -> float:
    """Mean nDCG@k over the queries that have judgements (graded gains, log2 discount)."""
    values = []
    for qid, ranked in zip(query_ids, ranked_ids, strict=True):
        rel = qrels.get(qid)
        if not rel:
            continue
        dcg = sum(rel.get(doc, 0.0) / np.log2(i + 2) for i, doc in enumerate(ranked[:k]))
        ideal = sorted(rel.values(), reverse=True)[:k]
        idcg = sum(g / np.log2(i + 2) for i, g in enumerate(ideal))
        values.append(dcg / idcg if idcg > 0 else 0.0)
    return float(np.mean(values)) if values else 0.0


def recall_at_k(ranked_ids: Sequence[Sequence[str]], query_ids: Sequence[str], qrels: Qrels,
                k: int = 100) -> float:
    values = []
    for qid, ranked in zip(query_ids, ranked_ids, strict=True):
        rel = {d for d, g in qrels.get(qid, {}).items() if g > 0}
        if rel:
            values.append(len(rel.intersection(ranked[:k])) / len(rel))
    return float(np.mean(values)) if values else 0.0


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""

    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x), dtype=np.float64)
        r[order] = np.arange(len(x), dtype=np.float64)
        # average the ranks of ties
        _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=r)
        return (sums / counts)[inverse]

    ra, rb = ranks(np.asarray(a)), ranks(np.asarray(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def pair_cosines(a: Representation, b: Representation) -> np.ndarray:
    da = a.to_dense() if isinstance(a, SparseBatch) else a
    db = b.to_dense() if isinstance(b, SparseBatch) else b
    return np.einsum("nd,nd->n", da, db)
