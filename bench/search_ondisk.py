r"""Two-stage vs full search on Qdrant Edge when the full vectors do not fit in memory.

bench/search.py keeps every vector in RAM; there full-vector HNSW search is the faster one
once the index is warm. Here the full vectors are stored ``on_disk`` (memory-mapped) and the
stage-1 field, a 128-d adaptor output, is int8-quantized with ``always_ram``; the search
runs in a memory cgroup smaller than the full vectors, so full search reads them from disk
while two-stage reads only its ~100 rerank candidates.

    python bench/search_ondisk.py build --n 1000000 --compressor /tmp/mrl-search/adaptor.mrlc
    python bench/search_ondisk.py search --n 1000000 --compressor /tmp/mrl-search/adaptor.mrlc
    # the same under 1 GB (cgroup v1, as root): drop the page cache, then search in the group
    sync; echo 3 > /proc/sys/vm/drop_caches
    mkdir -p /sys/fs/cgroup/memory/mrlbench
    echo $((1000*1024*1024)) > /sys/fs/cgroup/memory/mrlbench/memory.limit_in_bytes
    sh -c 'echo $$ > /sys/fs/cgroup/memory/mrlbench/cgroup.procs; exec python \
        bench/search_ondisk.py search --n 1000000 --compressor /tmp/mrl-search/adaptor.mrlc \
        --label 1GB'

Corpus, queries, ground truth and interleaving are bench/search.py's. The engine is called
directly (no adapter, no payloads); three timed passes over the queries, no warm-up, so the
first pass is a cold start. Prints one line per pass; the figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from search import corpus, exact_topk, interleaved, queries, score

import mrl_compress


def build(path: Path, n: int, model: Any, q: np.ndarray) -> None:
    import qdrant_edge as edge

    x = corpus(n, 0.01)
    np.save(path.with_suffix(".truth.npy"), exact_topk(x, q))
    shutil.rmtree(path, ignore_errors=True)
    int8 = edge.ScalarQuantizationConfig(edge.ScalarType.Int8, always_ram=True)
    config = edge.EdgeConfig(vectors={
        "dense": edge.EdgeVectorParams(x.shape[1], edge.Distance.Cosine, on_disk=True),
        "mrl_128": edge.EdgeVectorParams(128, edge.Distance.Cosine, quantization_config=int8),
    })
    shard = edge.EdgeShard.create(str(path), config)
    small = model.encode(x)["mrl_128"]
    started = time.perf_counter()
    for start in range(0, n, 5000):
        points = [edge.Point(i, {"dense": x[i].tolist(), "mrl_128": small[i].tolist()}, None)
                  for i in range(start, min(n, start + 5000))]
        shard.update(edge.UpdateOperation.upsert_points(points))
    print(f"insert {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    shard.optimize()
    print(f"optimize {time.perf_counter() - started:.1f} s", flush=True)
    shard.close()


def search(path: Path, model: Any, q: np.ndarray, label: str, oversample: int) -> None:
    import qdrant_edge as edge

    truth = np.load(path.with_suffix(".truth.npy"))
    shard = edge.EdgeShard.load(str(path))
    small = model.encode(q)["mrl_128"]

    def nearest(vector: np.ndarray, using: str) -> Any:
        return edge.Query.Nearest(vector.tolist(), using=using)

    def ids(request: Any) -> list[int]:
        return [int(p.id) for p in shard.query(request)]

    def full(i: int) -> list[int]:
        return ids(edge.QueryRequest(limit=10, with_payload=False, query=nearest(q[i], "dense")))

    def two_stage(i: int) -> list[int]:
        shortlist = edge.Prefetch(limit=10 * oversample, query=nearest(small[i], "mrl_128"))
        return ids(edge.QueryRequest(limit=10, with_payload=False,
                                     query=nearest(q[i], "dense"), prefetches=[shortlist]))

    configs = {"full": full, f"mrl_128 int8 x{oversample}": two_stage}
    for rep in range(3):
        results = interleaved(configs, len(q), 0)
        score(results, truth, "full")
        print(label, f"pass {rep}", "  ".join(
            f"{name}: {r['qps']} q/s p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms "
            f"recall@10 {r['recall@10']}" for name, r in results.items()), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("action", choices=["build", "search"])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--compressor", required=True, help="dense artifact with an mrl_128 output")
    p.add_argument("--root", default="/tmp/mrl-search")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--oversample", type=int, default=10)
    p.add_argument("--label", default="unlimited")
    args = p.parse_args()
    model = mrl_compress.load(args.compressor)
    model.output("mrl_128")  # fail now, not after the corpus is built
    path = Path(args.root) / f"ondisk-{args.n}"
    q = queries(args.queries)
    if args.action == "build":
        build(path, args.n, model, q)
    else:
        search(path, model, q, args.label, args.oversample)


if __name__ == "__main__":
    main()
