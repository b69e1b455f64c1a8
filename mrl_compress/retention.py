"""What a compressor keeps, measured on held-out vectors: the table ``fit`` prints and plots.

Neighbour recall@10: of each held-out vector's 10 nearest neighbours by the full vectors,
the fraction also found by the compressed representation (single stage), or after a
shortlist of 10·oversample on it reranked by the full vectors (two-stage). Every row carries
its bytes per vector. Beside ours stand the references: the engine's own quantizers of the
full vector at the budgets of our outputs (*engine* rows, measured in the engine by
:func:`engine_rows`, never a numpy imitation: for each output, the best of them within its
bytes and the next larger one), and prefix truncation and PCA at the same sizes. The product
wins only where it beats them per byte.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mrl_compress import metrics, quantizers
from mrl_compress.metrics import Representation
from mrl_compress.outputs import Encoded, Output

if TYPE_CHECKING:
    from mrl_compress.store import VectorStore

K = 10
ENGINE_QUANTIZERS = ("int8", "turbo4", "turbo2", "pq16", "turbo1", "pq32", "binary1-q8")
"""The engine's quantizers of the full vector fit measures as references (a few: fit stays
fast); :func:`engine_rows` measures only those an output's budget needs."""
ENGINES = {"edge": "Qdrant Edge", "milvus": "Milvus Lite"}
NOT_MEASURED = ("engine references not measured{why}: the rows above do not show what the "
                "engine's own quantizers of the full vector (TurboQuant, product quantization, "
                "binary with 8-bit queries, int8) keep at these sizes. Measure them with "
                "`mrl-compress fit` "
                "(Qdrant Edge installed: pip install 'mrl-compress[qdrant]'), "
                "fit(..., scratch=<a factory of scratch stores>), or `mrl-compress plan` on "
                "your collection")


@dataclass
class Row:
    name: str
    kind: str
    """``ours``; ``engine`` (the engine's quantizer of the full vector, measured in the
    engine); ``reference`` (the exact full vector, prefix truncation and PCA, in numpy)."""
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
    """The exact full vector, and PCA and prefix truncation at our outputs' sizes (numpy:
    these are other compressors, not the engine's quantizers; see :func:`engine_rows`)."""
    dim = docs.shape[1]
    rows = [Row(f"full {dim}d", "reference", 4.0 * dim, 1.0, 1.0)]
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


@dataclass
class EngineReferences:
    """The engine rows and what they were measured on (the table's footer)."""

    rows: list[Row]
    engine: str | None
    """Where they were measured (``Qdrant Edge``); None: not measured."""
    points: int = 0
    queries: int = 0
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"measured": self.engine is not None, "engine": self.engine,
                "points": self.points, "queries": self.queries,
                "quantizers": [r.name.removeprefix("full ") for r in self.rows],
                "note": self.note}


def not_measured(why: str = "") -> EngineReferences:
    """No engine rows, and a footer that says so plainly and how to get them."""
    return EngineReferences([], None, note=NOT_MEASURED.format(why=f" ({why})" if why else ""))


def needed(budgets: Sequence[float], dim: int, offered: Sequence[str]) -> list[str]:
    """The quantizers to measure for outputs of these bytes per vector: every one within
    each budget (to know the best) and the smallest above it (the next larger)."""
    size = {n: quantizers.parse(n).code_bytes(dim) for n in offered}
    out: set[str] = set()
    for b in budgets:
        out |= {n for n, c in size.items() if c <= b}
        above = [c for c in size.values() if c > b]
        if above:
            out |= {n for n, c in size.items() if c == min(above)}
    return [n for n in offered if n in out]


def shown(rows: Sequence[Row], budgets: Sequence[float]) -> list[Row]:
    """Per budget, the engine row of best recall within it and the best of the next larger
    size; each row once, fewest bytes first."""
    keep: dict[str, Row] = {}
    for b in budgets:
        within = [r for r in rows if r.bytes_per_vector <= b]
        above = [r for r in rows if r.bytes_per_vector > b]
        if above:
            least = min(r.bytes_per_vector for r in above)
            above = [r for r in above if r.bytes_per_vector == least]
        for group in (within, above):
            if group:
                best = max(group, key=lambda r: (r.recall, -r.bytes_per_vector))
                keep[best.name] = best
    return sorted(keep.values(), key=lambda r: (r.bytes_per_vector, -r.recall))


def engine_rows(outputs: Sequence[Output], queries: np.ndarray, docs: np.ndarray,
                scratch: VectorStore, names: Sequence[str] = ENGINE_QUANTIZERS,
                oversample: int = 10) -> EngineReferences:
    """The engine's own quantizers of the full vector at our outputs' budgets, each built
    from ``docs`` in ``scratch`` (a scratch store of the engine: Qdrant Edge, Milvus Lite)
    and searched with ``queries`` (:func:`mrl_compress.frontier.measure`): single stage by
    the codes' own scores, two-stage with ``K * oversample`` candidates rescored by the
    engine on the full vector, the same shortlist as our two-stage rows."""
    from mrl_compress import frontier

    dim = docs.shape[1]
    offered = set(scratch.quantizers())
    usable = [quantizers.parse(n).name for n in names if quantizers.parse(n).name in offered]
    budgets = [o.bytes_per_vector() for o in outputs]
    engine = ENGINES.get(scratch.uri.partition(":")[0], scratch.uri.partition(":")[0])
    if not usable:
        return not_measured(f"{engine} offers none of {', '.join(names)}")
    truth = frontier.exact_top(docs, queries)
    rows = []
    for name in needed(budgets, dim, usable):
        m = frontier.measure(frontier.Candidate(name, dim), docs, queries, truth, scratch,
                             oversample=oversample, timed_queries=1)
        rows.append(Row(f"full {name}", "engine", m.code_bytes, round(m.single, 4),
                        round(m.two_stage, 4)))
    return EngineReferences(
        shown(rows, budgets), engine, len(docs), len(queries),
        note=(f"full <quantizer>: {engine}'s own quantizer of the full {dim}-d vector, "
              f"measured in {engine} on the same {len(docs):,} points and {len(queries):,} "
              f"held-out queries (single stage: the engine's search on its codes, no rescore; "
              f"two-stage: {K * oversample} candidates rescored by the engine); shown per "
              "output: the best within its bytes and the next larger"),
    )


def combine(rows: Sequence[Row], engine: Sequence[Row]) -> list[Row]:
    """``rows`` (:func:`measure`) with the engine rows after the exact full vector's."""
    at = next((i + 1 for i, r in enumerate(rows) if r.kind == "reference"), len(rows))
    return [*rows[:at], *engine, *rows[at:]]


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
    """Quality vs bytes/vector, one point per row (ours filled, the engine's quantizers
    hollow diamonds, the numpy references hollow squares)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    style = {"ours": ("o", "tab:blue", "tab:blue", "ours"),
             "engine": ("D", "none", "tab:orange", "the engine's quantizer of the full vector"),
             "reference": ("s", "none", "tab:gray", "reference (numpy)")}
    labelled: set[str] = set()
    for r in rows:
        marker, face, edge, label = style.get(r.kind, style["reference"])
        ax.scatter(r.bytes_per_vector, r.recall, marker=marker, facecolors=face,
                   edgecolors=edge, zorder=3, label=None if label in labelled else label)
        labelled.add(label)
        ax.annotate(r.name, (r.bytes_per_vector, r.recall), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes per vector (log scale)")
    ax.set_ylabel(f"neighbour recall@{K} vs full vectors")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title(title or "retention: quality vs size")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
