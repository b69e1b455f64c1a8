r"""Two-stage search with unsynced points (issue 14): what finding them in the same query costs.

    python bench/live_search.py --n 100000 --queries 500 --unsynced 0,0.01,0.1

After a migration the application keeps writing full vectors only; a point written (or
re-written: an upsert replaces all of a point's vectors) after it has no stage-1 vector until
``sync`` writes one. ``two_stage_search`` on Qdrant adds a second prefetch for them: the ``k``
nearest by the full vector among the points lacking the stage-1 field (and matching the
filter; ACORN on), rescored with the shortlist (adapters/qdrant.py ``two_stage_prefetches``).

Corpus: the first ``--n`` WordNet gloss MiniLM vectors; queries: ``--queries`` WordNet dev
queries (a seeded sample, held out: no query is a corpus row); PCA (``mrl_64``, ``mrl_128``)
fitted on a 50k sample of the corpus. One Qdrant Edge shard: the full vector ``""``,
``mrl_64`` (float) and ``mrl_128`` (int8, the recommended stage 1), every point migrated, one
``optimize()``. Then for each fraction of ``--unsynced`` in turn (nested sets, seeded), that
fraction of the points is upserted again with its full vector and payload only (the
application's write after the migration: the same contents, no stage-1 vector), the shard is
optimized, and these configurations are timed, one query per call, interleaved (each round
runs every configuration once in a rotated order, each on a different query):

* ``full``: ``EdgeStore.search`` on the full vector (HNSW);
* ``<stage1> before``: ``two_stage_search(..., unsynced=False)``: the shortlist prefetch
  alone, as before issue 14, which cannot find unsynced points;
* ``<stage1> live``: ``two_stage_search`` as shipped (``unsynced=True``): the second prefetch
  only while the store knows some point may lack the field (its writes keep that up to date);
* ``<stage1> always``: the second prefetch on every call (what qdrant-client sends, since
  other clients write there): the cost of the prefetch itself;
* ``<stage1> counted``: an exact count of the points lacking the field before every call,
  then the second prefetch only when there are some (the "count first" trick);
* ``engine turbo2 x5`` / ``engine turbo4 x10``: the engine alone, in two more collections of
  the same points: Qdrant's TurboQuant of the full vector (96 / 192 B per point, about the
  bytes of ``mrl_128`` int8 / ``mrl_64`` float), ``k * oversample`` rescored by the floats;
  new writes are quantized as they land, so it has no unsynced points.

Two-stage latency includes encoding the query (as the retriever does). recall@10 is against
exact full-vector search (numpy) over the collection's contents, which the re-writes leave
unchanged. Rows go to bench/results/live_search.jsonl (one per fraction and configuration,
with the command, date and machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets  # noqa: E402  (bench/datasets.py)
from search import K, exact_topk, interleaved, recall, unit  # noqa: E402  (bench/search.py)

import mrl_compress  # noqa: E402
from mrl_compress.adapters import VectorField, connect  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COLLECTION = "live"
STAGES = (("mrl_64", 10), ("mrl_128", 5))
NATIVE = (("live_turbo2", "turbo2", 5), ("live_turbo4", "turbo4", 10))
"""(collection, quantizer of the full vector, rescore oversampling): the engine alone."""
"""(stage 1, oversample): a float 64-d shortlist of 100, and the int8 128-d one of 50 that
docs/benchmarks.md measured best."""


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--unsynced", default="0,0.01,0.1",
                        help="fractions of points without a stage-1 vector, in turn")
    parser.add_argument("--warmup", type=int, default=None, help="rounds (default: queries)")
    parser.add_argument("--root", default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--no-save", action="store_true", help="print only, write no rows")
    args = parser.parse_args(argv)
    fractions = [float(f) for f in args.unsynced.split(",")]
    assert fractions == sorted(fractions), "--unsynced must be increasing (nested sets)"

    data = datasets.wordnet(n_queries=args.queries, seed=0)
    x = unit(data.corpus[: args.n])
    q = unit(data.queries)
    truth = exact_topk(x, q)
    sample = x[np.sort(np.random.default_rng(0).choice(len(x), min(50_000, len(x)),
                                                       replace=False))]  # fmt: skip
    compressor = mrl_compress.fit(sample, "pca", dims=(64, 128)).compressor
    encoded = compressor.encode(x)

    root = Path(args.root or tempfile.mkdtemp(prefix="mrl-live-")) / f"edge-{args.n}"
    shutil.rmtree(root, ignore_errors=True)
    store = connect(f"edge:{root}")
    store.create_collection(COLLECTION, [VectorField("", "dense", x.shape[1], "cosine")])
    ids = list(range(args.n))
    payloads = [{"row": i} for i in ids]
    started = time.perf_counter()
    for s in range(0, args.n, 10_000):
        store.upsert(COLLECTION, ids[s : s + 10_000], {"": x[s : s + 10_000]},
                     payloads[s : s + 10_000])  # fmt: skip
    store.add_outputs(COLLECTION, [compressor.output("mrl_64")])
    store.add_outputs(COLLECTION, [compressor.output("mrl_128")], quantize="int8")
    for s in range(0, args.n, 10_000):
        store.write_outputs(COLLECTION, ids[s : s + 10_000],
                            {name: v[s : s + 10_000] for name, v in encoded.items()})
    store.optimize(COLLECTION)
    log(f"built {args.n} points in {time.perf_counter() - started:.1f} s at {root}")
    # the engine alone beside it, in the same run: its own quantizer of the full vector at
    # about the bytes of each stage 1 (TurboQuant 2-bit 96 B ~ mrl_128 int8 128 B; 4-bit
    # 192 B ~ mrl_64 float 256 B), rescored by the floats; it needs no sync
    for name, quantizer, _ in NATIVE:
        store.create_collection(name, [VectorField("", "dense", x.shape[1], "cosine")])
        for s in range(0, args.n, 10_000):
            store.upsert(name, ids[s : s + 10_000], {"": x[s : s + 10_000]},
                         payloads[s : s + 10_000])  # fmt: skip
        store.set_quantizer(name, "", quantizer)
    log(f"built the engine-alone collections ({', '.join(n for n, _, _ in NATIVE)})")

    import qdrant_edge as edge

    order = np.random.default_rng(1).permutation(args.n)
    done = 0
    rows = []
    for fraction in fractions:
        todo = order[done : int(round(fraction * args.n))]
        for s in range(0, len(todo), 10_000):
            part = sorted(int(i) for i in todo[s : s + 10_000])
            store.upsert(COLLECTION, part, {"": x[part]}, [payloads[i] for i in part])
        done += len(todo)
        started = time.perf_counter()
        store.optimize(COLLECTION)
        optimize_s = time.perf_counter() - started
        shard = store._shard(COLLECTION)
        lacking = {stage: args.n - store.count_having(COLLECTION, [stage]) for stage, _ in STAGES}
        info = shard.info()
        log(f"unsynced {fraction:.0%}: {lacking} points lack their stage 1; "
            f"{info.segments_count} segments, optimize {optimize_s:.1f} s")
        assert all(v == done for v in lacking.values())

        live_state = {stage: store._may_lack(COLLECTION, stage) for stage, _ in STAGES}
        log(f"  the store knows some point may lack: {live_state}")

        configs: dict[str, Callable[[int], list[int]]] = {
            "full": lambda i: found(store.search(COLLECTION, "", q[i : i + 1], K)),
        }
        for name, quantizer, os_ in NATIVE:
            configs[f"engine {quantizer} x{os_}"] = partial_of(native, store, name, q, os_)
        for stage, os_ in STAGES:
            label = f"{stage}{' int8' if stage == 'mrl_128' else ''} x{os_}"
            for mode in ("before", "live", "always", "counted"):
                configs[f"{label} {mode}"] = partial_of(two_stage, store, compressor, q, stage,
                                                        os_, mode)  # fmt: skip
        warmup = args.queries if args.warmup is None else args.warmup
        results = interleaved(configs, len(q), warmup)
        full_qps = results["full"]["qps"]
        for r in results.values():
            r["recall@10"] = round(recall(r.pop("_ids"), truth), 4)
        for name, r in results.items():
            mode = name.rsplit(" ", 1)[-1]
            before = results.get(name[: -len(mode)] + "before") if name != "full" else None
            r["qps_vs_full"] = round(r["qps"] / full_qps, 3)
            r["qps_vs_before"] = round(r["qps"] / before["qps"], 3) if before else None
            log(f"  {name:26s} {r['qps']:8.1f} q/s  p50 {r['p50_ms']:6.2f} ms  "
                f"p99 {r['p99_ms']:6.2f} ms  recall@10 {r['recall@10']:.4f}  "
                f"vs full {r['qps_vs_full']:.3f}  vs before {r['qps_vs_before']}")
            rows.append({
                "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "machine": f"{platform.machine()} cpus={os.cpu_count()}",
                "load_avg": list(os.getloadavg()), "engine": "qdrant-edge", "commit": commit(),
                "edge": edge.__version__ if hasattr(edge, "__version__") else None,
                "points": args.n, "queries": len(q), "unsynced": fraction,
                "unsynced_points": done, "segments": info.segments_count,
                "store_knows_lacking": live_state, "config": name, **r,
            })
    store.close()
    if args.root is None:
        shutil.rmtree(root.parent, ignore_errors=True)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        with open(RESULTS / "live_search.jsonl", "a") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")


def commit() -> str | None:
    """The checkout's commit (the code measured), or None outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def native(i: int, store: Any, name: str, q: np.ndarray, oversample: int) -> list[int]:
    """The engine alone: its quantizer's codes, k * oversample rescored by the floats."""
    return found(store.search(name, "", q[i : i + 1], K, rescore=oversample))


def found(hits: list[list[Any]]) -> list[int]:
    return [int(h.id) for h in hits[0]]


def two_stage(i: int, store: Any, compressor: Any, q: np.ndarray, stage: str, oversample: int,
              mode: str) -> list[int]:
    """One two-stage call; ``mode`` as in the module docstring. ``always`` and ``counted``
    set what the store knows before the call (its ``_every``): "some lack it" skips the
    count and sends the prefetch; nothing known makes it count first."""
    known = store._every.setdefault(COLLECTION, {})
    saved = known.get(stage)
    if mode == "always":
        known[stage] = False
    elif mode == "counted":
        known.pop(stage, None)
    small = compressor.encode_queries(q[i : i + 1], stage)
    hits = store.two_stage_search(COLLECTION, q[i : i + 1], stage, small, K,
                                  oversample=oversample, unsynced=mode != "before")  # fmt: skip
    if saved is not None:  # what the store knew, for the other modes (one dict write)
        store._every[COLLECTION][stage] = saved
    return found(hits)


def partial_of(fn: Callable[..., list[int]], *bound: Any) -> Callable[[int], list[int]]:
    return lambda i: fn(i, *bound)


if __name__ == "__main__":
    main()
