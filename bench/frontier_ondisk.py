r"""Speed at scale with the full vectors on disk (issue 17): a composed plan against the
engine's own quantizer with its originals on disk, codes in RAM for both.

    python bench/frontier_ondisk.py build --n 1000000 --root /tmp/mrl-ondisk
    python bench/frontier_ondisk.py search --root /tmp/mrl-ondisk      # then under 1 GB:
    mkdir -p /sys/fs/cgroup/memory/mrlbench
    echo $((1000*1024*1024)) > /sys/fs/cgroup/memory/mrlbench/memory.limit_in_bytes
    sh -c 'echo $$ > /sys/fs/cgroup/memory/mrlbench/cgroup.procs; exec python \
        bench/frontier_ondisk.py search --root /tmp/mrl-ondisk --label 1GB'

``build``: the corpus of bench/frontier_speed.py (WordNet gloss tiled to ``--n``), the
adaptor artifact given (``--compressor``, one with ``mrl_192``) or fitted on 50k rows, and two
Qdrant Edge shards made with Edge's own config (the store protocol has no on-disk setting):

* ``composed``: the full vector ``on_disk`` (memory-mapped) and ``mrl_192`` with TurboQuant
  2-bit codes ``always_ram`` and its own floats on disk;
* ``native``: the full vector ``on_disk`` with TurboQuant 2-bit codes ``always_ram``.

``search``: three passes over the queries with no warm-up (pass 0 starts cold), the shards
called directly (no adapter, no payloads, the stage query encoded before timing):
composed = prefetch ``k * N`` on ``mrl_192`` then rerank by the full vector; native = the
codes' ``k * N`` best rescored by the full vector. Rows go to
bench/results/frontier_ondisk.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search import K, corpus, exact_topk, interleaved, queries, recall  # noqa: E402

import mrl_compress  # noqa: E402

STAGE = "mrl_192"


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def turbo2(edge: Any) -> Any:
    return edge.TurboQuantQuantizationConfig(bits=edge.TurboQuantBitSize.Bits2, always_ram=True)


def build(args: argparse.Namespace) -> None:
    import qdrant_edge as edge

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    x = corpus(args.n, 0.01)
    q = queries(args.queries)
    np.save(root / "queries.npy", q)
    np.save(root / "truth.npy", exact_topk(x, q))
    artifact = Path(args.compressor) if args.compressor else root / "adaptor.mrlc"
    if not artifact.exists():
        originals = min(len(x), 117_659)  # the untiled rows
        rows = np.sort(np.random.default_rng(0).choice(originals, min(50_000, originals),
                                                        replace=False))  # fmt: skip
        mrl_compress.fit(x[rows], "adaptor", dims=(192,)).compressor.save(artifact)
    model = mrl_compress.load(artifact)
    small = model.encode(x)[STAGE]
    cosine = edge.Distance.Cosine
    configs = {
        "composed": {"": edge.EdgeVectorParams(x.shape[1], cosine, on_disk=True),
                     STAGE: edge.EdgeVectorParams(192, cosine, on_disk=True,
                                                  quantization_config=turbo2(edge))},
        "native": {"": edge.EdgeVectorParams(x.shape[1], cosine, on_disk=True,
                                             quantization_config=turbo2(edge))},
    }
    for name, vectors in configs.items():
        path = root / name
        shutil.rmtree(path, ignore_errors=True)
        started = time.perf_counter()
        shard = edge.EdgeShard.create(str(path), edge.EdgeConfig(vectors=vectors))
        for s in range(0, len(x), 5000):
            points = [edge.Point(i, {v: (x[i] if v == "" else small[i]).tolist()
                                     for v in vectors}, None)
                      for i in range(s, min(len(x), s + 5000))]
            shard.update(edge.UpdateOperation.upsert_points(points))
        shard.optimize()
        shard.close()
        log(f"built {name} ({len(x):,} points) in {time.perf_counter() - started:.0f} s")
    shutil.copytree(artifact, root / "stage.mrlc", dirs_exist_ok=True)


def search(args: argparse.Namespace) -> None:
    import qdrant_edge as edge

    root = Path(args.root)
    q, truth = np.load(root / "queries.npy"), np.load(root / "truth.npy")
    small = mrl_compress.load(root / "stage.mrlc").encode_queries(q, STAGE)
    composed = edge.EdgeShard.load(str(root / "composed"))
    native = edge.EdgeShard.load(str(root / "native"))
    no_rescore = edge.SearchParams(quantization=edge.QuantizationSearchParams(rescore=False))

    def ids(shard: Any, request: Any) -> list[int]:
        return [int(p.id) for p in shard.query(request)]

    def two_stage(i: int, oversample: int) -> list[int]:
        shortlist = edge.Prefetch(limit=K * oversample, params=no_rescore,
                                  query=edge.Query.Nearest(small[i].tolist(), using=STAGE))
        return ids(composed, edge.QueryRequest(
            limit=K, with_payload=False, prefetches=[shortlist],
            query=edge.Query.Nearest(q[i].tolist(), using="")))

    def rescored(i: int, oversample: int) -> list[int]:
        params = edge.SearchParams(quantization=edge.QuantizationSearchParams(
            rescore=True, oversampling=float(oversample)))
        return ids(native, edge.QueryRequest(
            limit=K, with_payload=False, params=params,
            query=edge.Query.Nearest(q[i].tolist(), using="")))

    configs = {}
    for o in (3, 5):
        configs[f"engine turbo2 x{o}, originals on disk"] = lambda i, o=o: rescored(i, o)
        configs[f"mrl_192 turbo2 x{o}, full on disk"] = lambda i, o=o: two_stage(i, o)
    stamp = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"),
             "machine": f"{platform.machine()} cpus={os.cpu_count()}", "label": args.label,
             "points": int(composed.info().points_count)}
    out = Path(__file__).resolve().parent / "results" / "frontier_ondisk.jsonl"
    for rep in range(3):
        results = interleaved(configs, len(q), 0)
        for name, r in results.items():
            r["recall@10"] = round(recall(r.pop("_ids"), truth), 4)
            log(f"{args.label} pass {rep} {name:36s} {r['qps']:8.1f} q/s p50 "
                f"{r['p50_ms']:.2f} ms recall@10 {r['recall@10']:.4f}")
            with open(out, "a") as f:
                f.write(json.dumps({**stamp, "pass": rep, "config": name, **r}) + "\n")
    composed.close()
    native.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("build", "search"))
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--compressor", default=None)
    parser.add_argument("--root", required=True)
    parser.add_argument("--label", default="no limit")
    args = parser.parse_args()
    build(args) if args.mode == "build" else search(args)


if __name__ == "__main__":
    main()
