"""The main job, end to end on one machine: what ``scripts/demo`` runs.

1. Build a Qdrant Edge collection in langchain-qdrant's layout from real stored vectors
   (WordNet glosses when ``../shared/data`` has them, else SciFact, else random clustered
   vectors that any machine can make) — the state a team is in before this tool.
2. Fit compressors from a sample read back out of the store: the learned ``adaptor``
   (served), ``pca`` (its reference) and sparse ``csr``.
3. Migrate: write their outputs beside every stored vector (:mod:`mrl_compress.migration`).
4. Answer the queries through :class:`MatryoshkaRetriever` and print one table: nDCG@10 kept
   against the full vectors, stage-1 bytes per point, latency single-stage full vs two-stage,
   beside the engine's own option (TurboQuant 2-bit of the full vector, rescored).
5. The application keeps writing: documents held out of step 1 are written as
   langchain-qdrant writes them (full vector and payload only); the retriever finds them at
   once, ``mrl_compress.sync`` writes their outputs, and they are found the same way after.

Lives in ``bench/``, not in the package: it reads ``../shared/data``, opens a store and
imports the LangChain adapter, none of which the core package may depend on.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
COLLECTION = "docs"


@dataclass
class Task:
    """Documents to store, queries to ask, and what is relevant to each query."""

    name: str
    doc_ids: list[str]
    texts: list[str]
    vectors: np.ndarray
    query_ids: list[str]
    query_texts: list[str]
    queries: np.ndarray
    qrels: dict[str, dict[str, float]]


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def jsonl(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as lines:
        return [json.loads(line) for line in lines]


def qrels_tsv(path: Path) -> dict[str, dict[str, float]]:
    qrels: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = float(score)
    return qrels


def wordnet(root: Path, n_docs: int, n_queries: int, seed: int) -> Task:
    """WordNet glosses: ``n_queries`` dev queries, their relevant synsets, random others."""
    rng = np.random.default_rng(seed)
    qrels = qrels_tsv(root / "qrels.dev.tsv")
    queries = jsonl(root / "queries.dev.jsonl.gz")
    chosen = np.sort(rng.choice(len(queries), n_queries, replace=False))
    docs = jsonl(root / "corpus.jsonl.gz")
    row = {d["_id"]: i for i, d in enumerate(docs)}
    needed = {row[did] for i in chosen for did in qrels[queries[i]["_id"]]}
    others = rng.permutation(len(docs))
    extra = [i for i in others[: n_docs + len(needed)] if i not in needed]
    rows = np.sort(np.array(sorted(needed) + extra[: max(0, n_docs - len(needed))]))
    vectors = np.load(root / "corpus.minilm.f16.npy", mmap_mode="r")
    query_vectors = np.load(root / "queries.dev.minilm.f16.npy", mmap_mode="r")
    return Task(
        name=f"wordnet-gloss ({len(rows):,} of {len(docs):,} synsets, MiniLM 384-d)",
        doc_ids=[docs[i]["_id"] for i in rows],
        texts=[f"{docs[i]['title']}: {docs[i]['text']}" for i in rows],
        vectors=unit(vectors[rows]),
        query_ids=[queries[i]["_id"] for i in chosen],
        query_texts=[queries[i]["text"] for i in chosen],
        queries=unit(query_vectors[chosen]),
        qrels=qrels,
    )


def scifact(root: Path, n_queries: int) -> Task:
    """BEIR SciFact: every abstract, the test claims that have judgements."""
    docs = jsonl(root / "corpus.jsonl.gz")
    queries = jsonl(root / "queries.jsonl.gz")
    qrels = qrels_tsv(root / "qrels" / "test.tsv")
    judged = [i for i, q in enumerate(queries) if q["_id"] in qrels][:n_queries]
    query_vectors = np.load(root / "queries.minilm.f16.npy")
    return Task(
        name=f"BEIR SciFact ({len(docs):,} abstracts, {len(judged)} test claims, MiniLM 384-d)",
        doc_ids=[d["_id"] for d in docs],
        texts=[f"{d['title']}\n{d['text']}" for d in docs],
        vectors=unit(np.load(root / "corpus.minilm.f16.npy")),
        query_ids=[queries[i]["_id"] for i in judged],
        query_texts=[queries[i]["text"] for i in judged],
        queries=unit(query_vectors[judged]),
        qrels=qrels,
    )


def clustered(n_docs: int, n_queries: int, seed: int, dim: int = 384) -> Task:
    """Random clustered vectors (no real data here): relevant = the full-vector top 10."""
    rng = np.random.default_rng(seed)
    # A few strong directions shared by every cluster, so the vectors have the low-rank
    # structure real embeddings have (and a compressor has something to learn).
    basis = rng.normal(size=(48, dim)) * np.linspace(3, 0.3, 48)[:, None]
    centres = unit(rng.normal(size=(200, 48)) @ basis + 0.3 * rng.normal(size=(200, dim)))
    docs = unit(centres[rng.integers(0, 200, n_docs)] + 0.05 * rng.normal(size=(n_docs, dim)))
    queries = unit(
        centres[rng.integers(0, 200, n_queries)] + 0.05 * rng.normal(size=(n_queries, dim))
    )
    doc_ids = [f"d{i}" for i in range(n_docs)]
    top = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
    query_ids = [f"q{i}" for i in range(n_queries)]
    qrels = {q: {doc_ids[j]: 1.0 for j in row} for q, row in zip(query_ids, top, strict=True)}
    return Task(
        name=f"random clustered vectors ({n_docs:,} × {dim}; relevant = full-vector top 10)",
        doc_ids=doc_ids,
        texts=[f"synthetic document {i}" for i in range(n_docs)],
        vectors=docs,
        query_ids=query_ids,
        query_texts=[f"synthetic query {i}" for i in range(n_queries)],
        queries=queries,
        qrels=qrels,
    )


LATE = 100


def held_out(task: Task, n: int) -> list[int]:
    """Positions of the last ``n`` documents that no query judges: they are missing from the
    first upsert (the application writes them after the migration) without changing the
    relevant documents of step 4."""
    judged = {did for qid in task.query_ids for did in task.qrels.get(qid, {})}
    late = [i for i in reversed(range(len(task.doc_ids))) if task.doc_ids[i] not in judged]
    return sorted(late[:n])


def lookup_embeddings(task: Task) -> Any:
    """The application's LangChain ``Embeddings``: here the stored MiniLM query vectors stand
    in for the model (it is not installed), looked up by the query text."""
    from langchain_core.embeddings import Embeddings

    table = dict(zip(task.query_texts, task.queries, strict=True))
    table.update(zip(task.texts, task.vectors, strict=True))

    class LookupEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [table[t].tolist() for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return list(table[text].tolist())

    return LookupEmbeddings()


def ndcg10(ranked: list[list[str]], task: Task) -> float:
    from mrl_compress.metrics import ndcg_at_k

    return ndcg_at_k(ranked, task.query_ids, task.qrels, k=10)


def timed(answer: Callable[[str], list[str]], task: Task) -> tuple[list[list[str]], float]:
    """Each query answered one at a time; returns the rankings and the median ms/query."""
    ranked, seconds = [], []
    for text in task.query_texts:
        start = time.perf_counter()
        ranked.append(answer(text))
        seconds.append(time.perf_counter() - start)
    return ranked, 1000 * statistics.median(seconds)


def say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=30000, help="documents to store")
    parser.add_argument("--queries", type=int, default=1000, help="queries to answer")
    parser.add_argument("--steps", type=int, default=400, help="adaptor training steps")
    parser.add_argument("--csr-steps", type=int, default=100, help="csr training steps")
    parser.add_argument("--oversample", type=int, default=10, help="stage-1 candidates ÷ k")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "demo", help="work folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import mrl_compress
    from mrl_compress import migration, sync
    from mrl_compress.adapters import VectorField, connect
    from mrl_compress.adapters.langchain import MatryoshkaRetriever

    began = time.perf_counter()
    if (args.data / "wordnet-gloss" / "corpus.minilm.f16.npy").is_file():
        task = wordnet(args.data / "wordnet-gloss", args.docs, args.queries, args.seed)
    elif (args.data / "beir" / "scifact" / "corpus.minilm.f16.npy").is_file():
        task = scifact(args.data / "beir" / "scifact", args.queries)
    else:
        task = clustered(min(args.docs, 20000), args.queries, args.seed)
    say(f"data: {task.name}; {len(task.query_ids):,} queries")

    # 1. the collection a LangChain application would have made (langchain-qdrant layout)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    uri = f"edge:{args.out / 'edge'}"
    store = connect(uri)
    started = time.perf_counter()
    store.create_collection(COLLECTION, [VectorField("", "dense", 384, "cosine")])
    payloads = [
        {"page_content": text, "metadata": {"doc_id": did}}
        for did, text in zip(task.doc_ids, task.texts, strict=True)
    ]
    late = held_out(task, LATE)  # written by the application after the migration (step 5)
    first = [i for i in range(len(task.doc_ids)) if i not in set(late)]
    store.upsert(COLLECTION, first, {"": task.vectors[first]}, [payloads[i] for i in first])
    say(f"stored {len(first):,} points in Qdrant Edge ({uri}) "
        f"in {time.perf_counter() - started:.1f} s")  # fmt: skip

    # 2. fit from a sample read back out of the store
    sample = store.sample(COLLECTION, None, n=min(20000, len(task.doc_ids)), seed=args.seed)
    fits = {}
    for method, settings in (
        ("pca", {"dims": (64, 128)}),
        ("adaptor", {"dims": (64, 128), "steps": args.steps}),
        ("csr", {"k": (32,), "hidden": 1536, "steps": args.csr_steps}),
    ):
        started = time.perf_counter()
        # CSR's hidden layer (4·d) makes each step costlier: 10k rows are enough to learn it.
        train_rows = sample[:10000] if method == "csr" else sample
        fits[method] = mrl_compress.fit(train_rows, method, eval_docs=5000, seed=args.seed,
                                        **settings)  # fmt: skip
        kept = {r.name: r.two_stage for r in fits[method].retention if r.kind == "ours"}
        say(f"fit {method:<8} {time.perf_counter() - started:5.1f} s   neighbour recall "
            "kept two-stage: " + ", ".join(f"{n} {v:.3f}" for n, v in kept.items()))  # fmt: skip

    def recall_64(method: str) -> float:
        return next(r.recall for r in fits[method].retention if r.name == "mrl_64")

    dense = "adaptor"  # the default method; PCA is the reference it is measured against
    say(f"single-stage neighbour recall of mrl_64 on held-out documents: adaptor "
        f"{recall_64('adaptor'):.3f}, pca {recall_64('pca'):.3f}")  # fmt: skip

    # 3. migrate: write the outputs beside every stored vector, in place; the dense outputs
    # indexed as int8, the best stage 1 measured on Qdrant (docs/benchmarks.md, Search)
    quantized = {dense: "int8", "csr": None}
    for method in (dense, "csr"):
        path = fits[method].compressor.save(args.out / f"{method}.mrlc")
        started = time.perf_counter()
        plan = migration.plan(store, COLLECTION, path, quantize=quantized[method],
                              checkpoint=args.out / f"{method}.checkpoint.json")  # fmt: skip
        report = migration.run(plan, store)
        report.raise_if_failed()
        say(f"migrated {method}: {', '.join(o.name for o in plan.outputs)} on "
            f"{plan.points:,} points in {time.perf_counter() - started:.1f} s")  # fmt: skip

    # 4. answer the queries: full single stage vs two stage through the retriever
    embeddings = lookup_embeddings(task)
    store.optimize(COLLECTION)  # index now, not inside the first timed query

    def full(text: str) -> list[str]:
        query = np.asarray([embeddings.embed_query(text)], dtype=np.float32)
        hits = store.search(COLLECTION, "", query, 10)[0]
        return [h.payload["metadata"]["doc_id"] for h in hits]

    rows = []
    ranked, ms = timed(full, task)
    reference = ndcg10(ranked, task)
    rows.append(("full 384-d float32, single stage", 1536.0, reference, ms))
    # csr twice: queries with every atom's correlation (two entries per atom, the default),
    # then a shorter, cheaper query of the 512 largest entries
    searches = ((dense, "mrl_64", None), (dense, "mrl_128", None), ("csr", "csr_32", None),
                ("csr", "csr_32", 512))
    for method, stage1, query_nonzeros in searches:
        compressor = fits[method].compressor
        retriever = MatryoshkaRetriever(
            store=store, collection=COLLECTION, embeddings=embeddings, compressor=compressor,
            k=10, stage1=stage1, oversample=args.oversample, query_nonzeros=query_nonzeros,
        )  # fmt: skip

        def two_stage(text: str, retriever: MatryoshkaRetriever = retriever) -> list[str]:
            return [d.metadata["doc_id"] for d in retriever.invoke(text)]

        ranked, ms = timed(two_stage, task)
        quantize = quantized[method]
        asked = f" ({query_nonzeros}-nz queries)" if query_nonzeros else ""
        label = f"{method} {stage1}{' ' + quantize if quantize else ''}{asked} → rerank " \
                f"{10 * args.oversample} on full"
        nbytes = compressor.output(stage1).bytes_per_vector(quantize)
        rows.append((label, nbytes, ndcg10(ranked, task), ms))

    # the engine's own option, side by side: TurboQuant 2-bit of the full vector, no fit, no
    # new field; candidates by its codes, the same number rescored by the float vectors
    store.set_quantizer(COLLECTION, "", "turbo2")
    native = MatryoshkaRetriever(store=store, collection=COLLECTION, embeddings=embeddings,
                                 k=10, oversample=args.oversample)  # fmt: skip

    def engine_alone(text: str) -> list[str]:
        return [d.metadata["doc_id"] for d in native.invoke(text)]

    ranked, ms = timed(engine_alone, task)
    rows.append((f"Qdrant's own turbo2 of full → rescore {10 * args.oversample}",
                 96.0, ndcg10(ranked, task), ms))
    store.set_quantizer(COLLECTION, "", None)

    say("")
    say(f"| {'search':<50} | stage-1 bytes/point | nDCG@10 | kept   | median ms/query |")
    say(f"|{'-' * 52}|--------------------:|--------:|-------:|----------------:|")
    for label, nbytes, score, ms in rows:
        kept = score / reference if reference else float("nan")
        say(f"| {label:<50} | {nbytes:19,.0f} | {score:7.4f} | {kept:6.1%} | {ms:15.2f} |")
    say("")
    say("kept = nDCG@10 / the full vectors' nDCG@10 on the same queries; two-stage latency "
        "is a whole retriever.invoke (embedding lookup, query encode in numpy, Edge "
        "prefetch + rerank, Documents); full is embed + one Edge search. The last row is "
        "the engine alone (one config line, no fit, no new field): where it keeps as much "
        "for fewer bytes, it is the better choice (mrl-compress plan measures both).")  # fmt: skip

    # 5. the application keeps writing, as langchain-qdrant does: full vector and payload only
    say("")
    store.upsert(COLLECTION, late, {"": task.vectors[late]}, [payloads[i] for i in late])
    retriever = MatryoshkaRetriever(store=store, collection=COLLECTION, embeddings=embeddings,
                                    compressor=fits[dense].compressor, k=10, stage1="mrl_128",
                                    oversample=args.oversample)  # fmt: skip

    def found_by_own_text() -> int:
        # among the top 10, not top 1: some glosses share a text (and a vector) with another
        found = 0
        for i in late:
            found += task.doc_ids[i] in {d.metadata["doc_id"]
                                         for d in retriever.invoke(task.texts[i])}
        return found

    say(f"the application wrote {len(late)} documents after the migration (full vector only): "
        f"two-stage search finds {found_by_own_text()}/{len(late)} of them in the top 10 for their "
        "own text before any sync")  # fmt: skip
    for method in (dense, "csr"):
        path = args.out / f"{method}.mrlc"
        planned = sync.plan(store, COLLECTION, path)
        done = sync.run(planned, store)
        say(f"sync {method}: {planned.unsynced} unsynced point(s), {done.written} written in "
            f"{done.seconds:.2f} s")  # fmt: skip
    say(f"after sync: {found_by_own_text()}/{len(late)} found in the top 10 for their own text, "
        f"{store.count_having(COLLECTION, ['mrl_128', 'csr_32'])}/{len(task.doc_ids)} points "
        f"hold every output. Total {time.perf_counter() - began:.0f} s.")  # fmt: skip
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
