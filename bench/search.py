r"""Search benchmark (issue #3): full-vector search vs two-stage search, in one run.

    python bench/search.py --sizes 100000,1000000 --queries 500 --milvus-n 100000

Corpus: WordNet gloss MiniLM vectors (117,659 x 384). Sizes above that are tiled: copy t > 0
of row i is row i + N(0, noise^2) per dimension, renormalised (the first copy is the original).
Queries: WordNet dev queries (a seeded sample). Ground truth: exact cosine top-10 over the whole
corpus by numpy brute force (chunked).

Compressors: PCA 64-d (``mrl_64``) fitted on a 50k sample of the original corpus, or
``--compressor PATH``; CSR k=32 (``csr_32``) fitted the same way with ``--csr-steps`` steps, or
``--csr PATH``.

Qdrant Edge, per size: a collection with the full vector (``dense``); ``add_outputs`` adds
``mrl_64`` and ``csr_32`` in place; upsert the full vectors, then ``write_outputs`` each
compressed field (each timed), then one ``optimize()`` (timed) that builds every index.
Memory per point: the bytes of vector data (4*d dense float32, 8*k sparse) and the on-disk
bytes of each field (its ``vector_storage-*`` and ``vector_index-*`` directories, summed over
segments, allocated blocks).

Search: one query per call, sequentially (as an application calls), the configurations in
turn (rotated order), each on a different query, so the ratios come from one run on a noisy
machine and no configuration finds its query's work in the cache (see ``interleaved``).
Two-stage latency includes encoding the query with the compressor of its stage 1 (the
application does that too). Configurations:

* adapter (``EdgeStore.search`` / ``two_stage_search``): full; mrl_64 and csr_32 stage 1 at
  each ``--oversample``; with ``--int8 mrl_128``, that output added with ``quantize="int8"``
  as stage 1 at each ``--int8-oversample``;
* engine knobs (the Edge shard called directly with the same requests, no payload):
  full; mrl_64 stage 1 with ``hnsw_ef`` = shortlist size; full search with the same
  ``hnsw_ef`` (equal beam width); mrl_64 stage 1 exact (brute force, only up to
  ``--exact-max`` points).

Milvus Lite at ``--milvus-n``: one collection with the three fields (Lite has no in-place
field add), the adapter's FLAT / SPARSE_INVERTED_INDEX indexes; full vs two-stage (stage 1 in
Milvus with the full vectors as output fields, rerank in numpy).

Writes bench/results/search.json (or ``--out``). Engine data lives under ``--root``.

Options beyond one build-and-time run:

* ``--keep`` then ``--reuse``: time the shard an earlier run kept, in a new process, without
  building it again (a 1M build spends ~7 minutes in ``optimize()``): the way to see this
  machine's run-to-run spread on one shard.
* ``--pre-encoded``: each int8 two-stage row once more with the query encoded before timing,
  so the search's time and the query encoding's separate.
* ``--on-disk build|search``: the full vectors stored ``on_disk`` (memory-mapped) and the
  ``--int8`` output int8-quantized with ``always_ram``, in a shard of their own
  (``--root``/ondisk-N); ``search`` times full against two-stage (``--int8-oversample``) in
  three passes over the queries with no warm-up (pass 0 is a cold start), engine called
  directly, and prints one line per pass. Run it in a memory cgroup smaller than the full
  vectors to see two-stage read only its rerank candidates from disk (below).

The figures in docs/benchmarks.md ("Search") come from these commands (the compressors:
``mrl-compress fit --source ../shared/data/wordnet-gloss/corpus.minilm.f16.npy --method adaptor
--dims 64,128 --sample 100000 --out /tmp/mrl-search/adaptor.mrlc`` and the same with
``--method csr --option encoder=topk --steps 50 --sample 50000 --out
/tmp/mrl-search/csr32-topk.mrlc``, whose source was not recorded):

    # 1M, every vector in RAM (run twice; the second with --out .../search-1m-sixth-2.json)
    python bench/search.py --sizes 1000000 --queries 300 --big-queries 300 --oversample 10 \
        --int8 mrl_128 --int8-oversample 5,10 --compressor /tmp/mrl-search/adaptor.mrlc \
        --csr /tmp/mrl-search/csr32-topk.mrlc --budget 4000 --milvus-n 0 \
        --root /tmp/mrl-search --out bench/results/search-1m-sixth.json
    # 100k
    python bench/search.py --sizes 100000 --queries 300 --oversample 10 --int8 mrl_128 \
        --int8-oversample 10 --compressor /tmp/mrl-search/adaptor.mrlc --csr-steps 50 \
        --milvus-n 0 --root /tmp/mrl-search --out bench/results/search-100k-rescore.json
    # 1M, full vectors on disk: build, search, then search again under 1 GB (cgroup v1, root)
    python bench/search.py --on-disk build --sizes 1000000 --queries 300 --int8 mrl_128 \
        --int8-oversample 10 --compressor /tmp/mrl-search/adaptor.mrlc
    python bench/search.py --on-disk search --sizes 1000000 --queries 300 --int8 mrl_128 \
        --int8-oversample 10 --compressor /tmp/mrl-search/adaptor.mrlc
    sync; echo 3 > /proc/sys/vm/drop_caches
    mkdir -p /sys/fs/cgroup/memory/mrlbench
    echo $((1000*1024*1024)) > /sys/fs/cgroup/memory/mrlbench/memory.limit_in_bytes
    sh -c 'echo $$ > /sys/fs/cgroup/memory/mrlbench/cgroup.procs; exec python \
        bench/search.py --on-disk search --sizes 1000000 --queries 300 --int8 mrl_128 \
        --int8-oversample 10 --compressor /tmp/mrl-search/adaptor.mrlc --label 1GB'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import mrl_compress
from mrl_compress.adapters import VectorField, connect
from mrl_compress.outputs import Output, SparseBatch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wordnet-gloss"
RESULTS = Path(__file__).resolve().parent / "results"
K = 10
COLLECTION = "bench"


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- data -------------------------------------------------------------------------------------


def corpus(n: int, noise: float, seed: int = 0) -> np.ndarray:
    base = unit(np.load(DATA / "corpus.minilm.f16.npy").astype(np.float32))
    if n <= len(base):
        return base[:n]
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    out[: len(base)] = base
    rng = np.random.default_rng(seed)
    for start in range(len(base), n, 65536):
        stop = min(n, start + 65536)
        rows = base[np.arange(start, stop) % len(base)]
        out[start:stop] = unit(rows + rng.normal(0, noise, rows.shape).astype(np.float32))
    return out


def queries(n: int, seed: int = 0) -> np.ndarray:
    q = np.load(DATA / "queries.dev.minilm.f16.npy")
    pick = np.sort(np.random.default_rng(seed).choice(len(q), n, replace=False))
    return unit(q[pick].astype(np.float32))


def exact_topk(x: np.ndarray, q: np.ndarray, k: int = K, chunk: int = 131072) -> np.ndarray:
    """Exact cosine top-k ids (vectors are unit length), chunked over the corpus."""
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), k), dtype=np.int64)
    for start in range(0, len(x), chunk):
        s = q @ x[start : start + chunk].T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-cand_s, axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, keep, axis=1)
        best_i = np.take_along_axis(cand_i, keep, axis=1)
    return best_i


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    pairs = zip(found, truth.tolist(), strict=True)
    return float(np.mean([len(set(f[:K]) & set(t)) / K for f, t in pairs]))


# -- compressors ------------------------------------------------------------------------------


def compressors(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    info: dict[str, Any] = {}
    base = unit(np.load(DATA / "corpus.minilm.f16.npy").astype(np.float32))
    sample = base[np.sort(np.random.default_rng(0).choice(len(base), 50000, replace=False))]
    if args.compressor:
        dense = mrl_compress.load(args.compressor)
        info["dense"] = {"source": args.compressor, "method": dense.method}
    else:
        started = time.perf_counter()
        fitted = mrl_compress.fit(sample, "pca", dims=(64,))
        dense = fitted.compressor
        info["dense"] = {"source": "fit pca dims=(64,) on 50k", "method": "pca",
                         "fit_seconds": round(time.perf_counter() - started, 1),
                         "retention": [vars(r) for r in fitted.retention]}
    if args.csr:
        sparse = mrl_compress.load(args.csr)
        info["sparse"] = {"source": args.csr, "method": sparse.method,
                          "settings": sparse.manifest.settings,
                          "retention": getattr(sparse.manifest, "retention", None)}
    else:
        started = time.perf_counter()
        fitted = mrl_compress.fit(sample, "csr", k=(32,), steps=args.csr_steps)
        sparse = fitted.compressor
        info["sparse"] = {"source": f"fit csr k=(32,) steps={args.csr_steps} on 50k",
                          "method": "csr", "fit_seconds": round(time.perf_counter() - started, 1),
                          "retention": [vars(r) for r in fitted.retention]}
    for comp in (dense, sparse):
        comp.encode(np.zeros((1, comp.input_dim), np.float32) + 0.05)  # build the runtime
    info["dense"]["output"] = dense.outputs[0].to_json()
    info["sparse"]["output"] = sparse.outputs[0].to_json()
    info["provider"] = {"dense": dense.provider, "sparse": sparse.provider}
    return dense, sparse, info


def field_bytes(out: Any, encoded: Any) -> dict[str, float]:
    """Bytes of vector data per point: nominal (4*d or 8*k) and, for sparse, as stored."""
    row = {"nominal": out.bytes_per_vector()}
    if isinstance(encoded, SparseBatch):
        row["mean_nonzeros"] = float((encoded.values > 0).sum(1).mean())
        row["actual"] = 8 * row["mean_nonzeros"]
    return row


# -- timing -----------------------------------------------------------------------------------


def interleaved(configs: dict[str, Callable[[int], list[int]]], n_queries: int,
                warmup: int) -> dict[str, dict[str, Any]]:
    """Run the configs in turn, each on its own query; per-call latency.

    Round i runs every config once (rotated order), config j on query (i + j·stride) mod n:
    every config sees every query once, and no call follows a call on the same query. An
    earlier version ran every config on query i in a row, so a config following one that
    searched the same space with the same query found that query's graph nodes and vectors
    in the CPU cache: on Edge at 1M the same full search (ef 100) ran 1,846 q/s in one slot
    and 3,042 q/s in the slot two calls after it (bench/results/search-adaptor-1m-v2.json).
    """
    names = list(configs)
    assert len(names) <= n_queries, "fewer queries than configurations: raise --queries"
    stride = n_queries // len(names)
    lat: dict[str, list[float]] = {name: [] for name in names}
    ids: dict[str, list[list[int]]] = {name: [[] for _ in range(n_queries)] for name in names}
    for i in range(-warmup, n_queries):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            # warm-up rounds walk through the queries too (a warm index, not one warm query)
            query = (i + names.index(name) * stride) % n_queries
            started = time.perf_counter()
            found = configs[name](query)
            took = time.perf_counter() - started
            if i >= 0:
                lat[name].append(took)
                ids[name][query] = found
    out = {}
    for name in names:
        ms = np.array(lat[name]) * 1000
        out[name] = {"qps": round(1000 / ms.mean(), 1), "mean_ms": round(float(ms.mean()), 3),
                     "p50_ms": round(float(np.percentile(ms, 50)), 3),
                     "p99_ms": round(float(np.percentile(ms, 99)), 3), "_ids": ids[name]}
    return out


def score(results: dict[str, dict[str, Any]], truth: np.ndarray, full: str) -> None:
    full_ids = results[full]["_ids"]
    base = recall(full_ids, truth)
    for row in results.values():
        found = row.pop("_ids")
        row["recall@10"] = round(recall(found, truth), 4)
        row["recall_vs_full_hnsw"] = round(row["recall@10"] / base, 4) if base else None
        row["overlap_with_full@10"] = round(recall(found, np.array(full_ids)), 4)


def disk(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def field_disk(shard: Path, fields: list[str], n: int) -> dict[str, Any]:
    segments = [p for p in (shard / "segments").iterdir() if p.is_dir()]
    out: dict[str, Any] = {"shard_total_bytes_per_point": round(disk(shard) / n, 1),
                           "segments": len(segments)}
    for name in fields:
        storage = sum(disk(s / f"vector_storage-{name}") for s in segments)
        index = sum(disk(s / f"vector_index-{name}") for s in segments)
        out[name] = {"storage_bytes_per_point": round(storage / n, 1),
                     "index_bytes_per_point": round(index / n, 1)}
    return out


# -- Qdrant Edge ------------------------------------------------------------------------------


def bench_edge(n: int, x: np.ndarray, enc: dict[str, Any], q: np.ndarray,
               qenc: Callable[[int, str], Any], truth: np.ndarray, dense: Any, sparse: Any,
               args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.root) / f"edge-{n}"
    row: dict[str, Any] = {"engine": "qdrant-edge", "points": n, "insert_seconds": {}}
    if args.reuse:
        if not (root / COLLECTION).is_dir():
            raise SystemExit(f"--reuse: no shard at {root / COLLECTION} (an earlier run with "
                             "--keep and the same --root, --sizes, compressors and --int8 "
                             "leaves it there)")
        store = connect(f"edge:{root}")
        row["reused"] = str(root / COLLECTION)
        log(f"edge {n}: timing the kept shard {row['reused']}")
    else:
        store = build_edge(root, n, x, enc, dense, sparse, args, row)
    return search_edge(store, root, n, q, qenc, truth, args, row)


def build_edge(root: Path, n: int, x: np.ndarray, enc: dict[str, Any], dense: Any, sparse: Any,
               args: argparse.Namespace, row: dict[str, Any]) -> Any:
    shutil.rmtree(root, ignore_errors=True)
    store = connect(f"edge:{root}")
    store.create_collection(COLLECTION, [VectorField("dense", "dense", x.shape[1], "cosine")])
    store.add_outputs(COLLECTION, [dense.outputs[0], sparse.outputs[0]])
    fields = [("dense", x), ("mrl_64", enc["mrl_64"]), ("csr_32", enc["csr_32"])]
    if args.int8:  # a larger prefix, scalar-quantized: its index holds 1 byte per dimension
        store.add_outputs(COLLECTION, [dense.output(args.int8)], quantize="int8")
        fields.append((args.int8, enc[args.int8]))
    step = 10000
    for name, values in fields:
        started = time.perf_counter()
        for start in range(0, n, step):
            ids = list(range(start, min(n, start + step)))
            part = values[start : start + step]
            if name == "dense":
                store.upsert(COLLECTION, ids, {name: part})
            else:
                store.write_outputs(COLLECTION, ids, {name: part})
        took = time.perf_counter() - started
        row["insert_seconds"][name] = round(took, 1)
        log(f"edge {n}: wrote {name} in {took:.1f} s ({n / took:,.0f} points/s)")
    started = time.perf_counter()
    store.optimize(COLLECTION)
    row["optimize_seconds"] = round(time.perf_counter() - started, 1)
    log(f"edge {n}: optimize {row['optimize_seconds']} s")
    row["memory"] = field_disk(root / COLLECTION, [name for name, _ in fields], n)
    row["memory"]["vector_bytes_per_point"] = {
        "dense": field_bytes(Output("dense", "dense", x.shape[1]), x[:1]),
        "mrl_64": field_bytes(dense.outputs[0], enc["mrl_64"]),
        "csr_32": field_bytes(sparse.outputs[0], enc["csr_32"]),
    }
    if args.int8:
        row["memory"]["vector_bytes_per_point"][args.int8] = {
            "nominal": dense.output(args.int8).bytes_per_vector(),
            "int8_index": dense.output(args.int8).bytes_per_vector("int8"),
        }
    return store


def search_edge(store: Any, root: Path, n: int, q: np.ndarray,
                qenc: Callable[[int, str], Any], truth: np.ndarray, args: argparse.Namespace,
                row: dict[str, Any]) -> dict[str, Any]:
    import qdrant_edge as edge

    shard = store._shard(COLLECTION)  # the EdgeShard: engine knobs below bypass the adapter
    info = shard.info()
    row["shard_info"] = {"segments": info.segments_count, "points": info.points_count,
                         "indexed_vectors": info.indexed_vectors_count}

    def ids_of(hits: Any) -> list[int]:
        return [int(h.id) for h in hits]

    def raw(request: Any) -> list[int]:
        return [int(p.id) for p in shard.query(request)]

    def nearest(vec: Any, using: str) -> Any:
        return edge.Query.Nearest(vec, using=using)

    def raw_two_stage(i: int, limit: int, params: Any, using: str = "mrl_64") -> list[int]:
        small = qenc(i, using)[0].tolist()
        return raw(edge.QueryRequest(
            limit=K, with_payload=False, query=nearest(q[i].tolist(), "dense"),
            prefetches=[edge.Prefetch(limit=limit, query=nearest(small, using),
                                      params=params)]))

    configs: dict[str, Callable[[int], list[int]]] = {
        "full": lambda i: ids_of(store.search(COLLECTION, "dense", q[i : i + 1], K)[0]),
    }
    for os_ in args.oversample:
        configs[f"mrl_64 x{os_}"] = lambda i, o=os_: ids_of(store.two_stage_search(
            COLLECTION, q[i : i + 1], "mrl_64", qenc(i, "mrl_64"), K, oversample=o,
            full_vector="dense")[0])
    for os_ in args.int8_oversample if args.int8 else []:
        configs[f"{args.int8} int8 x{os_}"] = lambda i, o=os_: ids_of(store.two_stage_search(
            COLLECTION, q[i : i + 1], args.int8, qenc(i, args.int8), K, oversample=o,
            full_vector="dense")[0])
    if args.pre_encoded and args.int8:  # the same, the query encoded before timing
        pre = {i: qenc(i, args.int8) for i in range(len(q))}
        for os_ in args.int8_oversample:
            configs[f"{args.int8} int8 x{os_} pre-encoded"] = (
                lambda i, o=os_: ids_of(store.two_stage_search(
                    COLLECTION, q[i : i + 1], args.int8, pre[i], K, oversample=o,
                    full_vector="dense")[0]))
    for os_ in args.oversample:
        configs[f"csr_32 x{os_}"] = lambda i, o=os_: ids_of(store.two_stage_search(
            COLLECTION, q[i : i + 1], "csr_32", qenc(i, "csr_32"), K, oversample=o,
            full_vector="dense")[0])
    configs["raw full"] = lambda i: raw(edge.QueryRequest(
        limit=K, with_payload=False, query=nearest(q[i].tolist(), "dense")))
    for os_ in args.oversample:
        configs[f"raw mrl_64 x{os_} ef={K * os_}"] = lambda i, o=os_: raw_two_stage(
            i, K * o, edge.SearchParams(hnsw_ef=K * o))
        # full search with the same beam width: the comparison at equal effort
        configs[f"raw full ef={K * os_}"] = lambda i, o=os_: raw(edge.QueryRequest(
            limit=K, with_payload=False, query=nearest(q[i].tolist(), "dense"),
            params=edge.SearchParams(hnsw_ef=K * o)))
    for os_ in args.int8_oversample if args.int8 else []:
        # stage 1 on the int8 index, with and without the engine re-scoring its shortlist by
        # the float vectors of the same field (stage 2 re-scores it by the full vector anyway)
        for rescore in (True, False):
            configs[f"raw {args.int8} int8 x{os_} rescore={rescore}"] = (
                lambda i, o=os_, r=rescore: raw_two_stage(i, K * o, edge.SearchParams(
                    quantization=edge.QuantizationSearchParams(rescore=r)), using=args.int8))
        # tried in the fifth session, not kept: a beam no wider than the shortlist
        configs[f"raw {args.int8} int8 x{os_} rescore=False ef={K * os_}"] = (
            lambda i, o=os_: raw_two_stage(i, K * o, edge.SearchParams(
                hnsw_ef=K * o, quantization=edge.QuantizationSearchParams(rescore=False)),
                using=args.int8))
    if n <= args.exact_max:
        top = max(args.oversample)
        configs[f"raw mrl_64 x{top} exact"] = lambda i, o=top: raw_two_stage(
            i, K * o, edge.SearchParams(exact=True))
    warmup = 3 * len(q) if args.warmup is None else args.warmup
    results = interleaved(configs, len(q), warmup)
    score(results, truth, "full")
    row["search"] = results
    for name, r in results.items():
        log(f"edge {n}: {name:36s} {r['qps']:8.1f} q/s p50 {r['p50_ms']:7.2f} ms "
            f"p99 {r['p99_ms']:7.2f} ms recall@10 {r['recall@10']:.4f}")
    store.close()
    if not args.keep and not args.reuse:
        shutil.rmtree(root, ignore_errors=True)
    return row


# -- Milvus Lite ------------------------------------------------------------------------------


def bench_milvus(n: int, x: np.ndarray, enc: dict[str, Any], q: np.ndarray,
                 qenc: Callable[[int, str], Any], truth: np.ndarray, dense: Any,
                 sparse: Any, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.root) / f"milvus-{n}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    store = connect(f"milvus:{root / 'bench.db'}")
    fields = [VectorField("dense", "dense", x.shape[1], "cosine"),
              VectorField("mrl_64", "dense", 64, "cosine"), VectorField("csr_32", "sparse", None,
                                                                        None)]
    store.create_collection(COLLECTION, fields)
    row: dict[str, Any] = {"engine": "milvus-lite", "points": n}
    started = time.perf_counter()
    step = 5000
    for start in range(0, n, step):
        ids = list(range(start, min(n, start + step)))
        store.upsert(COLLECTION, ids, {"dense": x[start : start + step],
                                       "mrl_64": enc["mrl_64"][start : start + step],
                                       "csr_32": enc["csr_32"][start : start + step]})
        if time.perf_counter() - started > args.milvus_insert_budget:
            n = ids[-1] + 1
            row["points"] = n
            row["note"] = f"insert stopped at {n} points (budget {args.milvus_insert_budget} s)"
            truth = exact_topk(x[:n], q)
            break
    row["insert_seconds"] = round(time.perf_counter() - started, 1)
    log(f"milvus {n}: inserted in {row['insert_seconds']} s")
    row["memory"] = {"db_dir_bytes_per_point": round(disk(root) / n, 1)}

    def ids_of(hits: Any) -> list[int]:
        return [int(h.id) for h in hits]

    mq = q[: args.milvus_queries]
    configs: dict[str, Callable[[int], list[int]]] = {
        "full": lambda i: ids_of(store.search(COLLECTION, "dense", mq[i : i + 1], K)[0]),
    }
    for os_ in args.milvus_oversample:
        configs[f"mrl_64 x{os_}"] = lambda i, o=os_: ids_of(store.two_stage_search(
            COLLECTION, mq[i : i + 1], "mrl_64", qenc(i, "mrl_64"), K, oversample=o,
            full_vector="dense")[0])
        configs[f"csr_32 x{os_}"] = lambda i, o=os_: ids_of(store.two_stage_search(
            COLLECTION, mq[i : i + 1], "csr_32", qenc(i, "csr_32"), K, oversample=o,
            full_vector="dense")[0])
    results = interleaved(configs, len(mq), 5 if args.warmup is None else min(args.warmup, 5))
    score(results, truth[: len(mq)], "full")
    row["search"] = results
    for name, r in results.items():
        log(f"milvus {n}: {name:20s} {r['qps']:8.1f} q/s p50 {r['p50_ms']:7.2f} ms "
            f"p99 {r['p99_ms']:7.2f} ms recall@10 {r['recall@10']:.4f}")
    store.close()
    shutil.rmtree(root, ignore_errors=True)
    return row


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="Qdrant Edge corpus sizes")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--big-queries", type=int, default=300, help="queries above 200k points")
    p.add_argument("--milvus-n", type=int, default=100000, help="0 skips Milvus Lite")
    p.add_argument("--milvus-queries", type=int, default=200)
    p.add_argument("--milvus-oversample", default="10")
    p.add_argument("--milvus-insert-budget", type=float, default=240.0)
    p.add_argument("--oversample", default="4,10")
    p.add_argument("--noise", type=float, default=0.01, help="per-dim std of the tiling noise")
    p.add_argument("--compressor", help="saved dense artifact with an mrl_64 output")
    p.add_argument("--csr", help="saved csr artifact with a csr_32 output")
    p.add_argument("--int8", default="",
                   help="an output of --compressor (e.g. mrl_128) to add as a stage 1 with "
                        "int8 scalar quantization on Edge; empty: none")
    p.add_argument("--int8-oversample", default="5,10")
    p.add_argument("--csr-steps", type=int, default=200)
    p.add_argument("--exact-max", type=int, default=200000)
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed rounds first, over the queries in turn; default three passes "
                        "(a cold Edge index gave full search a 4-8 ms p99 tail)")
    p.add_argument("--budget", type=float, default=900.0,
                   help="seconds for all Edge sizes; a size predicted to overrun is skipped")
    p.add_argument("--root", default="/tmp/mrl-search")
    p.add_argument("--keep", action="store_true", help="keep the Edge shards")
    p.add_argument("--reuse", action="store_true",
                   help="time the Edge shards an earlier --keep run left under --root (same "
                        "--sizes, compressors and --int8) instead of building them")
    p.add_argument("--pre-encoded", action="store_true",
                   help="also time each --int8 two-stage row with the query encoded before "
                        "timing: the search alone, without the query's encoding")
    p.add_argument("--on-disk", choices=["build", "search"], default=None,
                   help="the full vectors on disk instead (see the docstring): build the "
                        "shard, or search it (three passes, no warm-up); needs --compressor "
                        "and --int8")
    p.add_argument("--label", default="unlimited", help="--on-disk search: a name printed "
                   "on each line (e.g. the memory limit it ran under)")
    p.add_argument("--out", default=str(RESULTS / "search.json"))
    args = p.parse_args()
    args.oversample = [int(v) for v in args.oversample.split(",")]
    args.int8_oversample = [int(v) for v in args.int8_oversample.split(",")]
    args.milvus_oversample = [int(v) for v in args.milvus_oversample.split(",")]
    if args.on_disk:
        if not (args.compressor and args.int8):
            p.error("--on-disk needs --compressor and --int8 (e.g. --int8 mrl_128)")
        on_disk(args)
        return
    sizes = [int(v) for v in args.sizes.split(",")]

    report: dict[str, Any] = {
        "command": "python bench/search.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} cpus={os.cpu_count()}",
        "date": time.strftime("%Y-%m-%d %H:%M"), "load_avg_start": os.getloadavg(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "edge": [], "skipped": [],
    }
    dense, sparse, report["compressors"] = compressors(args)
    if args.int8:
        dense.output(args.int8)  # an unknown output fails now, not after the corpus is built
    log("compressors ready", report["compressors"]["provider"])
    q_all = queries(args.queries)

    def qenc(i: int, output: str) -> Any:
        """Encode query i now with the compressor of ``output`` alone (timed inside the
        two-stage call, as an application would do)."""
        model = sparse if output == "csr_32" else dense
        return model.encode_queries(q_all[i : i + 1], output)

    # Query-encoding cost on its own.
    started = time.perf_counter()
    for i in range(200):
        dense.encode(q_all[i : i + 1])
    t_dense = (time.perf_counter() - started) / 200
    started = time.perf_counter()
    for i in range(200):
        sparse.encode(q_all[i : i + 1])
    t_sparse = (time.perf_counter() - started) / 200
    report["query_encode_ms"] = {"mrl_64": round(t_dense * 1000, 3),
                                 "csr_32": round(t_sparse * 1000, 3)}

    t0 = time.perf_counter()
    last: tuple[int, float] | None = None
    for n in sizes:
        spent = time.perf_counter() - t0
        if last is not None:
            predicted = last[1] * n / last[0] * 1.2  # build + insert grow a bit faster than n
            if spent + predicted > args.budget:
                msg = (f"{n} points skipped: predicted {predicted:.0f} s from {last[0]} points "
                       f"({last[1]:.0f} s), {args.budget - spent:.0f} s of the budget left")
                log(msg)
                report["skipped"].append(msg)
                continue
        started = time.perf_counter()
        x = corpus(n, args.noise)
        nq = args.queries if n <= 200000 else min(args.queries, args.big_queries)
        q = q_all[:nq]
        truth = exact_topk(x, q)
        enc_started = time.perf_counter()
        enc = {} if args.reuse else {**dense.encode(x), **sparse.encode(x)}
        encode_s = time.perf_counter() - enc_started
        log(f"edge {n}: corpus, ground truth and encoding ready (encode {encode_s:.1f} s)")
        row = bench_edge(n, x, enc, q, qenc, truth, dense, sparse, args)
        row["queries"] = nq
        if not args.reuse:
            row["encode_corpus_seconds"] = round(encode_s, 1)
        row["wall_seconds"] = round(time.perf_counter() - started, 1)
        report["edge"].append(row)
        save(report, args.out)  # partial results survive an interrupted run
        last = (n, row["wall_seconds"])
        del x, enc

    if args.milvus_n:
        x = corpus(args.milvus_n, args.noise)
        q = q_all[: args.milvus_queries]
        truth = exact_topk(x, q)
        enc = {**dense.encode(x), **sparse.encode(x)}
        report["milvus"] = bench_milvus(args.milvus_n, x, enc, q, qenc, truth, dense, sparse,
                                        args)
    report["load_avg_end"] = os.getloadavg()
    save(report, args.out)
    log("wrote", args.out)


# -- full vectors on disk --------------------------------------------------------------------


def on_disk(args: argparse.Namespace) -> None:
    """``--on-disk build|search``: the full vectors ``on_disk`` (memory-mapped), the int8
    stage-1 field ``always_ram``; the engine called directly (no adapter, no payloads)."""
    model = mrl_compress.load(args.compressor)
    model.output(args.int8)  # fail now, not after the corpus is built
    q = queries(args.queries)
    for n in (int(v) for v in args.sizes.split(",")):
        path = Path(args.root) / f"ondisk-{n}"
        if args.on_disk == "build":
            ondisk_build(path, n, model, q, args)
        else:
            ondisk_search(path, model, q, args)


def ondisk_build(path: Path, n: int, model: Any, q: np.ndarray,
                 args: argparse.Namespace) -> None:
    import qdrant_edge as edge

    x = corpus(n, args.noise)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".truth.npy"), exact_topk(x, q))
    shutil.rmtree(path, ignore_errors=True)
    int8 = edge.ScalarQuantizationConfig(edge.ScalarType.Int8, always_ram=True)
    shard = edge.EdgeShard.create(str(path), edge.EdgeConfig(vectors={
        "dense": edge.EdgeVectorParams(x.shape[1], edge.Distance.Cosine, on_disk=True),
        args.int8: edge.EdgeVectorParams(model.output(args.int8).size, edge.Distance.Cosine,
                                         quantization_config=int8),
    }))
    small = model.encode(x)[args.int8]
    started = time.perf_counter()
    for start in range(0, n, 5000):
        points = [edge.Point(i, {"dense": x[i].tolist(), args.int8: small[i].tolist()}, None)
                  for i in range(start, min(n, start + 5000))]
        shard.update(edge.UpdateOperation.upsert_points(points))
    log(f"ondisk {n}: insert {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    shard.optimize()
    log(f"ondisk {n}: optimize {time.perf_counter() - started:.1f} s")
    shard.close()


def ondisk_search(path: Path, model: Any, q: np.ndarray, args: argparse.Namespace) -> None:
    import qdrant_edge as edge

    if not path.with_suffix(".truth.npy").is_file():
        raise SystemExit(f"{path}: not built (run --on-disk build with the same --sizes, "
                         "--root and --queries first)")
    truth = np.load(path.with_suffix(".truth.npy"))
    if len(truth) != len(q):
        raise SystemExit(f"{path}: the build's truth covers {len(truth)} queries: search "
                         f"with the --queries the build used, not {len(q)}")
    shard = edge.EdgeShard.load(str(path))
    small = model.encode(q)[args.int8]

    def nearest(vector: np.ndarray, using: str) -> Any:
        return edge.Query.Nearest(vector.tolist(), using=using)

    def ids(request: Any) -> list[int]:
        return [int(p.id) for p in shard.query(request)]

    def full(i: int) -> list[int]:
        return ids(edge.QueryRequest(limit=K, with_payload=False, query=nearest(q[i], "dense")))

    def two_stage(i: int, oversample: int) -> list[int]:
        shortlist = edge.Prefetch(limit=K * oversample, query=nearest(small[i], args.int8))
        return ids(edge.QueryRequest(limit=K, with_payload=False,
                                     query=nearest(q[i], "dense"), prefetches=[shortlist]))

    configs: dict[str, Callable[[int], list[int]]] = {"full": full}
    for o in args.int8_oversample:
        configs[f"{args.int8} int8 x{o}"] = lambda i, o=o: two_stage(i, o)
    for rep in range(3):
        results = interleaved(configs, len(q), 0)
        score(results, truth, "full")
        print(args.label, f"pass {rep}", "  ".join(
            f"{name}: {r['qps']} q/s p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms "
            f"recall@10 {r['recall@10']}" for name, r in results.items()), flush=True)
    shard.close()


def save(report: dict[str, Any], out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
