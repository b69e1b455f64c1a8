r"""Speed at scale (issue 17): a composed plan against the engine alone, in one run.

    python bench/frontier_speed.py --n 1000000 --queries 300 --root /tmp/mrl-speed

Corpus: WordNet gloss MiniLM vectors tiled to ``--n`` (bench/search.py ``corpus``: copy t > 0
of a row is the row plus N(0, 0.01²) noise, renormalised); queries: ``--queries`` WordNet dev
queries (held out); recall@10 against exact full-vector search (numpy, chunked).

One Qdrant Edge shard, three collections of the same points, built through the adapter as
``migrate`` and ``migrate --mode native`` build them:

* ``speed``: the full vector (float32, HNSW) and each of ``--stages``: a compressor output
  stored with an engine quantizer (default: adaptor ``mrl_192`` + TurboQuant 2-bit, the
  composed plan ``mrl-compress plan`` chooses at 48 B on this corpus, and ``mrl_128`` + int8,
  the shortlist the README configures);
* ``speed_int8``, ``speed_turbo2``: the full vector alone with Qdrant's scalar int8 and
  TurboQuant 2-bit (native plans: 384 B and 96 B of codes per point).

Configurations, one query per call, interleaved (bench/search.py ``interleaved``):

* ``full``: HNSW on the float vectors;
* ``engine int8 xN`` / ``engine turbo2 xN``: the engine's codes, ``k * N`` rescored by the
  floats (what a native plan's retriever sends);
* ``<stage> <quantizer> xN``: ``two_stage_search`` as the retriever calls it (query encoded
  inside the timed call): a prefetch of ``k * N`` on the stage field, rerank by the full
  vector; ``... pre-encoded``: the same request with the stage query encoded before timing,
  so what the encoding costs is apart.

``--root`` keeps the shard there; ``--reuse`` times a kept shard again without building it,
``--build-only`` builds it and stops (a 1M build takes tens of minutes on 2 cores: time it
when nothing else runs). Rows go to
bench/results/frontier_speed.jsonl with the command, date and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_search import commit, found, native, partial_of  # noqa: E402  (bench/live_search.py)
from search import K, corpus, exact_topk, interleaved, queries, recall  # noqa: E402

import mrl_compress  # noqa: E402
from mrl_compress.adapters import VectorField, connect  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COMPOSED = "speed"
NATIVE = (("speed_int8", "int8"), ("speed_turbo2", "turbo2"))


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def build(store: Any, x: np.ndarray, compressor: Any, stages: list[tuple[str, str]]) -> None:
    ids = list(range(len(x)))
    full = [VectorField("", "dense", x.shape[1], "cosine")]
    started = time.perf_counter()
    store.create_collection(COMPOSED, full)
    for stage, quantizer in stages:
        store.add_outputs(COMPOSED, [compressor.output(stage)], quantize=quantizer)
    for s in range(0, len(x), 20_000):
        part = slice(s, s + 20_000)
        store.upsert(COMPOSED, ids[part], {"": x[part]})
        encoded = compressor.encode(x[part])
        store.write_outputs(COMPOSED, ids[part], {stage: encoded[stage] for stage, _ in stages})
    store.optimize(COMPOSED)
    log(f"built {COMPOSED} ({len(x):,} points, {stages}) in {time.perf_counter() - started:.0f} s")
    for name, q in NATIVE:
        started = time.perf_counter()
        store.create_collection(name, full)
        for s in range(0, len(x), 20_000):
            store.upsert(name, ids[s : s + 20_000], {"": x[s : s + 20_000]})
        store.set_quantizer(name, "", q)  # optimizes: builds the graph and the codes
        log(f"built {name} in {time.perf_counter() - started:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--compressor", default=None,
                        help="an artifact with --stage (default: fit the adaptor on 50k rows)")
    parser.add_argument("--stages", default="mrl_192:turbo2,mrl_128:int8",
                        help="stage-1 fields as OUTPUT:QUANTIZER, comma-separated")
    parser.add_argument("--oversample", default="3,5")
    parser.add_argument("--root", default=None)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--build-only", action="store_true",
                        help="build the shard and stop (time it later with --reuse)")
    args = parser.parse_args(argv)
    oversamples = [int(o) for o in args.oversample.split(",")]
    stages = [(o, q) for o, _, q in (part.partition(":") for part in args.stages.split(","))]
    if len({o for o, _ in stages}) < len(stages):
        parser.error("--stages: each output once (a field has one quantizer)")

    x = corpus(args.n, 0.01)
    q = queries(args.queries)
    truth = exact_topk(x, q)
    root = Path(args.root or tempfile.mkdtemp(prefix="mrl-speed-"))
    root.mkdir(parents=True, exist_ok=True)
    artifact = Path(args.compressor) if args.compressor else root / "adaptor.mrlc"
    if not artifact.exists():
        originals = min(len(x), 117_659)  # the untiled rows
        sample = x[np.sort(np.random.default_rng(0).choice(originals, min(50_000, originals),
                                                           replace=False))]  # fmt: skip
        sizes = tuple(sorted(int(o.split("_")[1]) for o, _ in stages))
        mrl_compress.fit(sample, "adaptor", dims=sizes).compressor.save(artifact)
    compressor = mrl_compress.Compressor.load(artifact)
    shard = root / f"edge-{args.n}"
    if not args.reuse:
        shutil.rmtree(shard, ignore_errors=True)
    store = connect(f"edge:{shard}")
    if not args.reuse:
        build(store, x, compressor, stages)
    if args.build_only:
        store.close()
        return

    configs = {"full": lambda i: found(store.search(COMPOSED, "", q[i : i + 1], K))}
    for name, quantizer in NATIVE:
        for os_ in oversamples:
            configs[f"engine {quantizer} x{os_}"] = partial_of(native, store, name, q, os_)
    for stage, quantizer in stages:
        small = compressor.encode_queries(q, stage)
        for os_ in oversamples:
            label = f"{stage} {quantizer} x{os_}"
            configs[label] = partial_of(composed, store, compressor, q, stage, os_, None)
            configs[f"{label} pre-encoded"] = partial_of(composed, store, compressor, q, stage,
                                                         os_, small)
    results = interleaved(configs, len(q), warmup=len(q))
    full_qps = results["full"]["qps"]
    stamp = {"command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
             "date": time.strftime("%Y-%m-%d %H:%M"),
             "machine": f"{platform.machine()} cpus={os.cpu_count()}",
             "load_avg": list(os.getloadavg()), "commit": commit(), "points": args.n,
             "queries": len(q), "stages": args.stages}
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "frontier_speed.jsonl", "a") as out:
        for name, r in results.items():
            r["recall@10"] = round(recall(r.pop("_ids"), truth), 4)
            r["qps_vs_full"] = round(r["qps"] / full_qps, 3)
            log(f"  {name:34s} {r['qps']:8.1f} q/s  p50 {r['p50_ms']:6.2f} ms  "
                f"recall@10 {r['recall@10']:.4f}  vs full {r['qps_vs_full']:.3f}")
            out.write(json.dumps({**stamp, "config": name, **r}) + "\n")
    store.close()
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)


def composed(i: int, store: Any, compressor: Any, q: np.ndarray, stage: str, oversample: int,
             pre_encoded: np.ndarray | None) -> list[int]:
    small = (compressor.encode_queries(q[i : i + 1], stage) if pre_encoded is None
             else pre_encoded[i : i + 1])
    return found(store.two_stage_search(COMPOSED, q[i : i + 1], stage, small, K,
                                        oversample=oversample, full_vector=""))


if __name__ == "__main__":
    main()
