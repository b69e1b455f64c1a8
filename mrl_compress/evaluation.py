"""``eval``: what a compressor keeps on a labelled task, as a fraction of the full vectors.

Retrieval (nDCG@10, recall@100, with BEIR-style qrels): single stage on each output, and
two-stage (shortlist of 10·oversample on the output, rerank on the full vector). STS:
Spearman correlation of cosine with gold scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrl_compress import metrics
from mrl_compress.compressor import Compressor
from mrl_compress.errors import InvalidInput
from mrl_compress.vectors import validate


@dataclass
class RetrievalRow:
    name: str
    bytes_per_vector: float
    ndcg10: float
    recall100: float
    ndcg10_retention: float
    recall100_retention: float
    two_stage_ndcg10: float | None = None
    two_stage_retention: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_qrels(path: str | Path) -> dict[str, dict[str, float]]:
    """BEIR qrels TSV: ``query-id  corpus-id  score`` (a header line is skipped)."""
    qrels: dict[str, dict[str, float]] = {}
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(
            f"qrels '{path}' does not exist (expected a TSV: query-id corpus-id score)")
    for n, line in enumerate(p.read_text().splitlines()):
        parts = line.split("\t")
        if not line.strip() or (n == 0 and parts[-1].strip() == "score"):
            continue
        if len(parts) != 3:
            raise InvalidInput(f"{path}:{n + 1}: expected 3 tab-separated fields "
                               f"(query-id corpus-id score), found {len(parts)}")
        try:
            qrels.setdefault(parts[0], {})[parts[1]] = float(parts[2])
        except ValueError:
            raise InvalidInput(f"{path}:{n + 1}: score '{parts[2]}' is not a number") from None
    return qrels


def read_ids(path: str | Path | None, n: int, what: str) -> list[str]:
    if path is None:
        return [str(i) for i in range(n)]
    ids = [s for s in Path(path).read_text().splitlines() if s.strip()]
    if len(ids) != n:
        raise InvalidInput(
            f"{path}: expected {n} {what} ids (one per vector row), found {len(ids)}")
    return ids


def retrieval(compressor: Compressor, corpus: np.ndarray, queries: np.ndarray,
              qrels: dict[str, dict[str, float]], corpus_ids: Sequence[str],
              query_ids: Sequence[str], oversample: int = 10,
              query_nonzeros: int | None = None) -> list[RetrievalRow]:
    """nDCG@10 and recall@100 of the full vectors and of each output, single stage and
    two-stage. ``query_nonzeros``: sparse outputs' queries keep that many non-zeros (see
    :meth:`Compressor.encode_queries`); dense outputs are unaffected."""
    corpus = metrics.normalize(validate(corpus, dim=compressor.input_dim, what="corpus").vectors)
    queries = metrics.normalize(validate(queries, dim=compressor.input_dim,
                                         what="queries").vectors)
    judged = [i for i, q in enumerate(query_ids) if q in qrels]
    if not judged:
        raise InvalidInput("no query id appears in the qrels: check --query-ids")
    queries = queries[judged]
    qids = [query_ids[i] for i in judged]
    ids = np.asarray(corpus_ids)

    def score(top: np.ndarray) -> tuple[float, float]:
        ranked = [list(ids[t]) for t in top]
        return metrics.ndcg_at_k(ranked, qids, qrels, 10), metrics.recall_at_k(ranked, qids,
                                                                               qrels, 100)

    full_ndcg, full_recall = score(metrics.top_k(queries, corpus, 100))
    rows = [RetrievalRow(f"full {corpus.shape[1]}d", 4.0 * corpus.shape[1], full_ndcg,
                         full_recall, 1.0, 1.0)]
    ec = compressor.encode(corpus)
    for out in compressor.outputs:
        asked = compressor.encode_queries(
            queries, out.name, query_nonzeros if out.kind == "sparse" else None)
        top = metrics.top_k(asked, ec[out.name], 100)
        ndcg, recall = score(top)
        shortlist = metrics.two_stage(asked, ec[out.name], queries, corpus, 10, 10 * oversample)
        two, _ = score(shortlist)
        rows.append(RetrievalRow(out.name, out.bytes_per_vector(), ndcg, recall,
                                 _ratio(ndcg, full_ndcg), _ratio(recall, full_recall), two,
                                 _ratio(two, full_ndcg)))
    return rows


def sts(compressor: Compressor, a: np.ndarray, b: np.ndarray,
        gold: np.ndarray) -> list[dict[str, Any]]:
    """Spearman(cosine, gold) per output and for the full vectors, with retention."""
    if not len(a) == len(b) == len(gold):
        raise InvalidInput(f"sts: expected equal lengths, found {len(a)}, {len(b)}, {len(gold)}")
    a = metrics.normalize(validate(a, dim=compressor.input_dim, what="sts a").vectors)
    b = metrics.normalize(validate(b, dim=compressor.input_dim, what="sts b").vectors)
    full = metrics.spearman(metrics.pair_cosines(a, b), gold)
    rows = [{"name": f"full {a.shape[1]}d", "bytes_per_vector": 4.0 * a.shape[1],
             "spearman": full, "retention": 1.0}]
    eb = compressor.encode(b)
    for out in compressor.outputs:
        ea = compressor.encode_queries(a, out.name)  # a pursuit csr scores a through its atoms
        rho = metrics.spearman(metrics.pair_cosines(ea, eb[out.name]), gold)
        rows.append({"name": out.name, "bytes_per_vector": out.bytes_per_vector(),
                     "spearman": rho, "retention": _ratio(rho, full)})
    return rows


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0
