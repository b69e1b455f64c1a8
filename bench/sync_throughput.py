"""Sync throughput as a ratio of the same engine's raw upsert of the same points, in one run.

For each engine and round, on a fresh collection: N WordNet gloss vectors (MiniLM, 384-d,
small payloads) are upserted with their compressed outputs (PCA mrl_32 + mrl_64), as after
a migration; then the application writes U more points with the full vector only, timed:
that is the raw upsert. ``mrl_compress.sync`` then finds those U points by the engine's
filter and writes their outputs, timed from the plan (which counts them) to the last write:
``ratio`` = sync points/s over raw upsert points/s of the same U points. Rows are appended to
bench/results/sync.jsonl with the command and machine.

    python bench/sync_throughput.py --n 100000 --unsynced 10000 --rounds 3 --engines edge
    python bench/sync_throughput.py --n 100000 --unsynced 10000 --rounds 3 --no-confirm
    python bench/sync_throughput.py --n 100000 --unsynced 10000 --engines milvus
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mrl_compress
from mrl_compress import sync
from mrl_compress.adapters import VectorField, VectorStore, connect
from mrl_compress.compressor import Compressor
from mrl_compress.errors import StoreError

DATA = Path(os.environ.get("MRL_DATA")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data") / "wordnet-gloss"
BATCH = 512


def vectors(n: int) -> np.ndarray:
    stored = np.load(DATA / "corpus.minilm.f16.npy", mmap_mode="r")
    x = np.asarray(stored[:n], dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def upsert(store: VectorStore, collection: str, x: np.ndarray, start: int,
           outputs: dict[str, np.ndarray] | None = None) -> float:
    """Seconds to upsert ``x`` (ids from ``start``; ``outputs`` beside it) in batches."""
    began = time.perf_counter()
    for i in range(0, len(x), BATCH):
        ids = list(range(start + i, start + min(i + BATCH, len(x))))
        rows = {name: v[i : i + BATCH] for name, v in {"full": x, **(outputs or {})}.items()}
        store.upsert(collection, ids, rows, [{"row": j} for j in ids])
    return time.perf_counter() - began


def one_round(store: VectorStore, collection: str, x: np.ndarray, unsynced: int,
              model: Compressor, artifact: Path, batch: int,
              confirm: bool = True) -> dict[str, float]:
    synced = x[: len(x) - unsynced]
    fields = [VectorField("full", "dense", x.shape[1], "cosine")]
    fields += [VectorField(o.name, "dense", o.size, o.distance) for o in model.outputs]
    store.create_collection(collection, fields)
    upsert(store, collection, synced, 0, dict(model.encode(synced)))  # type: ignore[arg-type]
    raw_s = upsert(store, collection, x[len(synced):], len(synced))  # the application's writes
    began = time.perf_counter()
    plan = sync.plan(store, collection, artifact, batch_size=batch, model=model)
    report = sync.run(plan, store, compressor=model, confirm=confirm)
    sync_s = time.perf_counter() - began
    assert report.written == unsynced == plan.unsynced, (report.lines(), plan.lines())
    assert store.count_having(collection, [o.name for o in model.outputs]) == len(x)
    return {"raw_upsert_pps": unsynced / raw_s, "sync_pps": unsynced / sync_s,
            "ratio": raw_s / sync_s, "sync_s": sync_s, "raw_s": raw_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="points in the collection")
    parser.add_argument("--unsynced", type=int, default=10_000,
                        help="of those, written by the application after the migration")
    parser.add_argument("--engines", default="edge,milvus")
    parser.add_argument("--rounds", type=int, default=1, help="each on a fresh collection")
    parser.add_argument("--no-confirm", action="store_true",
                        help="sync without reading each batch back (sync --no-confirm)")
    parser.add_argument("--batch", type=int, default=BATCH,
                        help="sync's batch (the application writes in batches of 512)")
    args = parser.parse_args()
    x = vectors(args.n)
    work = Path(tempfile.mkdtemp(prefix="mrl-bench-"))
    artifact = work / "c.mrlc"
    mrl_compress.fit(x[:5000], "pca", dims=(32, 64)).compressor.save(artifact)
    model = mrl_compress.load(artifact)
    print(f"{platform.node()}: {args.n} x {x.shape[1]} vectors, {args.unsynced} unsynced, "
          f"batch {BATCH}, work dir {work}")
    for engine in args.engines.split(","):
        uri = f"edge:{work / 'edge'}" if engine == "edge" else f"milvus:{work / 'm.db'}"
        store = connect(uri)
        for round_ in range(args.rounds):
            collection = f"docs_{round_}"
            try:
                measured = one_round(store, collection, x, args.unsynced, model, artifact,
                                     args.batch, confirm=not args.no_confirm)
            except StoreError as refused:  # Milvus Lite: rows cannot lack an output field
                print(f"{engine}: not measurable, the application's write is refused: {refused}")
                store.drop_collection(collection)
                break
            row = {"engine": engine, "n": args.n, "unsynced": args.unsynced, "round": round_,
                   "batch": args.batch, "confirm": not args.no_confirm, **measured}
            print(json.dumps(row))
            record = {"command": "python " + " ".join(sys.argv),
                      "date": time.strftime("%Y-%m-%d %H:%M"),
                      "machine": f"{platform.machine()} cpus={os.cpu_count()}",
                      "load_avg": os.getloadavg(), **row}
            with open(Path(__file__).resolve().parent / "results" / "sync.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            store.drop_collection(collection)
        store.close()


if __name__ == "__main__":
    main()
