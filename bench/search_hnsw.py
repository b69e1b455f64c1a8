"""Stage-1 HNSW settings on a 1M Edge shard: does a cheaper small-field graph beat full search?

    python bench/search_hnsw.py --points 1000000 --compressor ADAPTOR_WITH_MRL_128

Builds one shard holding the full 384-d field (the engine's default HNSW) and the same int8
``mrl_128`` vectors three times: default HNSW (m 16), m 16 with the quantized vectors stored
inline in the graph (``inline_storage``, for cache locality), and m 8. Then times, interleaved
as bench/search.py does, full search against engine-direct two-stage on each small field
(prefetch not re-scored, then the full vector), with recall@10 against exact search. Queries
are encoded before timing: this compares the engine's work only. Writes
bench/results/search-hnsw.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qdrant_edge as edge  # noqa: E402
import search as bench  # noqa: E402  (bench/ is a folder of scripts, not a package)

import mrl_compress  # noqa: E402
from mrl_compress.adapters import connect  # noqa: E402

SMALL = {  # field -> (m, inline_storage)
    "s_m16": (16, False),
    "s_m16_inline": (16, True),
    "s_m8": (8, False),
}


def build(root: Path, x, small) -> tuple[object, dict]:
    shutil.rmtree(root, ignore_errors=True)
    int8 = edge.ScalarQuantizationConfig(type=edge.ScalarType.Int8)
    vectors = {"dense": edge.EdgeVectorParams(size=x.shape[1], distance=edge.Distance.Cosine)}
    for name, (m, inline) in SMALL.items():
        hnsw = edge.HnswIndexConfig(m=m, ef_construct=100, full_scan_threshold=10000,
                                    inline_storage=inline)
        vectors[name] = edge.EdgeVectorParams(size=small.shape[1], distance=edge.Distance.Cosine,
                                              quantization_config=int8, hnsw_config=hnsw)
    root.mkdir(parents=True)
    shard = edge.EdgeShard.create(str(root), edge.EdgeConfig(vectors=vectors))
    started = time.perf_counter()
    for start in range(0, len(x), 5000):
        stop = min(len(x), start + 5000)
        points = [edge.Point(i, {"dense": x[i].tolist(),
                                 **{name: small[i].tolist() for name in SMALL}}, None)
                  for i in range(start, stop)]
        shard.update(edge.UpdateOperation.upsert_points(points))
    timings = {"insert_s": round(time.perf_counter() - started, 1)}
    started = time.perf_counter()
    shard.optimize()
    timings["optimize_s"] = round(time.perf_counter() - started, 1)
    bench.log(f"built {len(x)} points: {timings}")
    return shard, timings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--compressor", default="/tmp/mrl-search/adaptor.mrlc")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--root", default="/tmp/mrl-search/hnsw")
    p.add_argument("--out", default=str(bench.RESULTS / "search-hnsw.json"))
    p.add_argument("--reuse", action="store_true",
                   help="time the shard already at --root, adding the adapter's rows")
    args = p.parse_args()
    x = bench.corpus(args.points, 0.01)
    dense = mrl_compress.load(args.compressor)
    root = Path(args.root)
    if args.reuse:  # the adapter opens <parent>/<name> as collection <name>
        store = connect(f"edge:{root.parent}")
        shard, timings = store._shard(root.name), {}
    else:
        shard, timings = build(root, x, dense.encode(x)["mrl_128"])
    q = bench.queries(args.queries)
    truth = bench.exact_topk(x, q)
    del x
    q_small = dense.encode_queries(q, "mrl_128")

    def run(request: edge.QueryRequest) -> list[int]:
        return [int(point.id) for point in shard.query(request)]

    def full(i: int) -> list[int]:
        return run(edge.QueryRequest(limit=bench.K, with_payload=False,
                                     query=edge.Query.Nearest(q[i].tolist(), using="dense")))

    def two_stage(i: int, field: str, limit: int) -> list[int]:
        params = edge.SearchParams(quantization=edge.QuantizationSearchParams(rescore=False))
        prefetch = edge.Prefetch(limit=limit, params=params,
                                 query=edge.Query.Nearest(q_small[i].tolist(), using=field))
        return run(edge.QueryRequest(limit=bench.K, with_payload=False, prefetches=[prefetch],
                                     query=edge.Query.Nearest(q[i].tolist(), using="dense")))

    configs = {"full": full}
    for field in SMALL:
        for limit in (50, 80):
            configs[f"{field} limit {limit}"] = (lambda i, f=field, n=limit: two_stage(i, f, n))
    if args.reuse:
        def adapter_two_stage(i: int, encode: bool = True) -> list[int]:
            asked = (dense.encode_queries(q[i : i + 1], "mrl_128") if encode
                     else q_small[i : i + 1])
            hits = store.two_stage_search(root.name, q[i : i + 1], "s_m16", asked,
                                          bench.K, 5, "dense")
            return [int(h.id) for h in hits[0]]

        configs = {"full": full, "s_m16 limit 50": configs["s_m16 limit 50"],
                   "adapter full": lambda i: [int(h.id) for h in store.search(
                       root.name, "dense", q[i : i + 1], bench.K)[0]],
                   "adapter s_m16 x5": adapter_two_stage,
                   "adapter s_m16 x5, pre-encoded": lambda i: adapter_two_stage(i, False)}
    results = bench.interleaved(configs, len(q), 3 * len(q))
    bench.score(results, truth, "full")
    for name, r in results.items():
        print(f"{name:24s} {r['qps']:7.0f} q/s  p50 {r['p50_ms']:.2f}  p99 {r['p99_ms']:.2f}  "
              f"recall {r['recall@10']:.4f} ({r['recall_vs_full_hnsw']:.3f})", flush=True)
    for r in results.values():
        r.pop("_ids", None)
    with open(args.out, "w") as f:
        json.dump({"command": "python " + " ".join(sys.argv), "build": timings,
                   "date": time.strftime("%Y-%m-%d %H:%M"), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
