"""What a compressor keeps, measured on held-out vectors: the table ``fit`` prints and plots.

Neighbour recall@10: of each held-out vector's 10 nearest neighbours by the full vectors,
the fraction also found by the compressed representation (single stage), or after a
shortlist of 10·oversample on it reranked by the full vectors (two-stage). Every row carries
its bytes per vector, and the engine-native alternatives (int8, binary + rescore) stand beside
ours, with prefix truncation and PCA at the same sizes: the product wins only where it beats
them per byte.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrl_compress import metrics
from mrl_compress.metrics import Representation
from mrl_compress.outputs import Encoded, Output

K = 10


@dataclass
class Row:
    name: str
    kind: str  # "ours" | "reference"
    bytes_per_vector: float
    recall: float  # single stage neighbour recall@10
    two_stage: float | None  # after full-vector rerank of a 10·oversample shortlist

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _rows_for(name: str, kind: str, nbytes: float, q: Any, d: Any, queries: np.ndarray,
              docs: np.ndarray, truth: np.ndarray, shortlist: int) -> Row:
    found = metrics.top_k(q, d, K)
    two = metrics.two_stage(q, d, queries, docs, K, shortlist)
    return Row(name, kind, nbytes, round(metrics.neighbour_recall(truth, found, K), 4),
               round(metrics.neighbour_recall(truth, two, K), 4))


def measure(
    encode: Callable[[np.ndarray], Encoded],
    outputs: Sequence[Output],
    queries: np.ndarray,
    docs: np.ndarray,
    oversample: int = 10,
    references: bool = True,
    encode_queries: Callable[[np.ndarray, str], Representation] | None = None,
) -> list[Row]:
    """Rows for each output of ``encode`` and (optionally) the reference methods.

    ``encode_queries(queries, output)``, when given, encodes the query side (a pursuit csr
    scores queries through its dictionary, not as codes)."""
    queries, docs = metrics.normalize(queries), metrics.normalize(docs)
    truth = metrics.top_k(queries, docs, K)
    shortlist = K * oversample
    ed = encode(docs)
    eq = (encode(queries) if encode_queries is None
          else {o.name: encode_queries(queries, o.name) for o in outputs})
    rows = [
        _rows_for(o.name, "ours", o.bytes_per_vector(), eq[o.name], ed[o.name], queries, docs,
                  truth, shortlist)
        for o in outputs
    ]
    if references:
        rows += reference_rows(outputs, queries, docs, truth, shortlist)
    return rows


def reference_rows(outputs: Sequence[Output], queries: np.ndarray, docs: np.ndarray,
                   truth: np.ndarray, shortlist: int) -> list[Row]:
    dim = docs.shape[1]
    rows = [Row(f"full {dim}d", "reference", 4.0 * dim, 1.0, 1.0)]
    # int8: per-dimension scalar quantisation (what engines do), scored as dequantised values
    lo, hi = docs.min(0), docs.max(0)
    step = np.maximum(hi - lo, 1e-12) / 255

    def int8(v: np.ndarray) -> np.ndarray:
        return np.clip(np.round((v - lo) / step), 0, 255) * step + lo

    rows.append(_rows_for("int8 (full)", "reference", float(dim), int8(queries), int8(docs),
                          queries, docs, truth, shortlist))
    # binary: one sign bit per dimension, scored by agreement (Hamming), rescored by full
    bq, bd = np.where(queries > 0, 1.0, -1.0), np.where(docs > 0, 1.0, -1.0)
    rows.append(_rows_for("binary (full)", "reference", dim / 8, bq, bd, queries, docs, truth,
                          shortlist))
    mean = docs.mean(0)
    centred = (docs - mean).astype(np.float64)
    _, vecs = np.linalg.eigh(centred.T @ centred)  # D×D: cheaper than an SVD of the docs
    vt = vecs[:, ::-1].T.astype(np.float32)
    sizes = sorted({int(o.bytes_per_vector() // 4) for o in outputs if o.bytes_per_vector() >= 4})
    for d in sizes:
        if d > dim:
            continue
        pq = metrics.normalize((queries - mean) @ vt[:d].T)
        pd = metrics.normalize((docs - mean) @ vt[:d].T)
        rows.append(_rows_for(f"pca {d}d", "reference", 4.0 * d, pq, pd, queries, docs, truth,
                              shortlist))
        rows.append(_rows_for(f"prefix {d}d", "reference", 4.0 * d,
                              metrics.normalize(queries[:, :d]), metrics.normalize(docs[:, :d]),
                              queries, docs, truth, shortlist))
    return rows


def choose(rows: Sequence[Row], outputs: Sequence[Output],
           target: float) -> tuple[Output | None, str]:
    """The smallest output whose single-stage recall meets ``target``, and why."""
    ours = {r.name: r for r in rows if r.kind == "ours"}
    ranked = sorted(outputs, key=lambda o: o.bytes_per_vector())
    for out in ranked:
        if ours[out.name].recall >= target:
            return out, (f"{out.name} is the smallest output whose neighbour recall@10 "
                         f"({ours[out.name].recall:.3f}) meets the target {target:.3f} "
                         f"at {out.bytes_per_vector():g} bytes/vector")
    best = max(ranked, key=lambda o: ours[o.name].recall)
    return None, (f"no output meets the target {target:.3f}: the best, {best.name}, keeps "
                  f"{ours[best.name].recall:.3f}; ask for larger --dims (or --k), or use "
                  "two-stage search")


def plot(rows: Sequence[Row], path: str | Path, title: str = "") -> Path:
    """Quality vs bytes/vector, one point per row (ours filled, references hollow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ours = r.kind == "ours"
        ax.scatter(r.bytes_per_vector, r.recall, marker="o" if ours else "s",
                   facecolors="tab:blue" if ours else "none",
                   edgecolors="tab:blue" if ours else "tab:gray", zorder=3)
        ax.annotate(r.name, (r.bytes_per_vector, r.recall), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes per vector (log scale)")
    ax.set_ylabel(f"neighbour recall@{K} vs full vectors")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title(title or "retention: quality vs size")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
