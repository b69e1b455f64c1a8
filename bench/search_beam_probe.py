"""Stage-1 beam widths on a 1M Edge shard kept by bench/search.py (``--keep``), in a new process.

    python bench/search.py --sizes 1000000 --int8 mrl_128 --compressor ADAPTOR --keep ...
    python bench/search_beam_probe.py --compressor ADAPTOR

Engine-direct two-stage (int8 ``mrl_128`` prefetch, not re-scored) at several shortlist sizes
and HNSW beams, beside full search and the adapter, interleaved as bench/search.py does;
recall@10 against exact search. The raw rows' queries are encoded before timing; the adapter
row encodes inside the call, as the retriever does. Writes bench/results/search-beam-probe.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qdrant_edge as edge  # noqa: E402
import search as bench  # noqa: E402  (bench/ is a folder of scripts, not a package)

import mrl_compress  # noqa: E402
from mrl_compress.adapters import connect  # noqa: E402

BEAMS = ((50, None), (50, 64), (50, 80), (60, None), (60, 60), (70, 70), (80, 80))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shard", default="/tmp/mrl-search/edge-1000000")
    p.add_argument("--compressor", default="/tmp/mrl-search/adaptor.mrlc")
    p.add_argument("--points", type=int, default=1_000_000)
    args = p.parse_args()
    store = connect(f"edge:{args.shard}")
    shard = store._shard(bench.COLLECTION)
    q = bench.queries(300)
    truth = bench.exact_topk(bench.corpus(args.points, 0.01), q)
    dense = mrl_compress.load(args.compressor)
    small = dense.encode_queries(q, "mrl_128")

    def full(i: int) -> list[int]:
        request = edge.QueryRequest(limit=bench.K, with_payload=False,
                                    query=edge.Query.Nearest(q[i].tolist(), using="dense"))
        return [int(p.id) for p in shard.query(request)]

    def two_stage(i: int, limit: int, ef: int | None) -> list[int]:
        params = edge.SearchParams(
            hnsw_ef=ef, quantization=edge.QuantizationSearchParams(rescore=False))
        prefetch = edge.Prefetch(limit=limit, params=params,
                                 query=edge.Query.Nearest(small[i].tolist(), using="mrl_128"))
        request = edge.QueryRequest(limit=bench.K, with_payload=False, prefetches=[prefetch],
                                    query=edge.Query.Nearest(q[i].tolist(), using="dense"))
        return [int(p.id) for p in shard.query(request)]

    plain = mrl_compress.load(args.compressor, runtime="numpy")

    def adapter_two_stage(i: int, encoder: mrl_compress.Compressor | None = dense) -> list[int]:
        """Encoding inside the call (ONNX or numpy runtime), or None: encoded beforehand."""
        asked = (encoder.encode_queries(q[i : i + 1], "mrl_128") if encoder is not None
                 else small[i : i + 1])
        hits = store.two_stage_search(bench.COLLECTION, q[i : i + 1], "mrl_128", asked,
                                      bench.K, 5, "dense")
        return [int(h.id) for h in hits[0]]

    configs = {
        "raw full": full,
        "adapter full": lambda i: [int(h.id) for h in
                                   store.search(bench.COLLECTION, "dense", q[i : i + 1],
                                                bench.K)[0]],
        "adapter int8 x5": adapter_two_stage,
        "adapter int8 x5, numpy encode": lambda i: adapter_two_stage(i, plain),
        "adapter int8 x5, pre-encoded": lambda i: adapter_two_stage(i, None),
    }
    for limit, ef in BEAMS:
        configs[f"raw int8 limit {limit} ef {ef or 'default'}"] = (
            lambda i, lim=limit, e=ef: two_stage(i, lim, e))
    results = bench.interleaved(configs, len(q), 3 * len(q))
    bench.score(results, truth, "raw full")
    for name, r in results.items():
        print(f"{name:32s} {r['qps']:7.0f} q/s  p50 {r['p50_ms']:.2f}  "
              f"recall {r['recall@10']:.4f} ({r['recall_vs_full_hnsw']:.3f})", flush=True)
    with open(bench.RESULTS / "search-beam-probe.json", "w") as f:
        json.dump({"command": "python " + " ".join(sys.argv), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
