"""Migration throughput as a ratio of the same engine's raw upsert throughput, in one run.

For each engine, round and worker count: upsert N WordNet gloss vectors (MiniLM, 384-d,
small payloads) into a fresh collection in batches of 512 and time it (raw upsert); then
migrate that collection with a PCA compressor (mrl_32 + mrl_64) through
:mod:`mrl_compress.migration`. Rounds alternate 1 and 2 workers, so each ratio has
its own raw upsert next to it (this machine's run-to-run spread is about +-10 %).
Qdrant Edge migrates in place; Milvus Lite copies (new collection, reconciliation pass).
The write pass is timed from the progress callback; "total" adds reconciliation and the
verification of a 1000-point sample. For a copy, ``copy_write_ratio`` times the copy's writes
alone (original and new vectors upserted into a fresh collection, nothing read): the ratio a
copy could reach if reading cost nothing. Each row is appended to bench/results/migrate.jsonl
with the command and machine.

    python bench/migrate_throughput.py --n 100000 --rounds 3 --engines edge
    python bench/migrate_throughput.py --n 100000 --engines milvus
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
from typing import Any

import numpy as np

import mrl_compress
from mrl_compress import migration
from mrl_compress.adapters import VectorField, VectorStore, connect
from mrl_compress.compressor import load
from mrl_compress.errors import NotFound

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wordnet-gloss"
BATCH = 512


def vectors(n: int) -> np.ndarray:
    stored = np.load(DATA / "corpus.minilm.f16.npy", mmap_mode="r")
    x = np.asarray(stored[:n], dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def raw_upsert(store: VectorStore, collection: str, x: np.ndarray,
               outputs: dict[str, np.ndarray] | None = None) -> float:
    """Points per second of upserting ``x`` (and ``outputs`` beside it, as a copy writes)."""
    outputs = outputs or {}
    fields = [VectorField("full", "dense", x.shape[1], "cosine")]
    fields += [VectorField(name, "dense", v.shape[1], "cosine") for name, v in outputs.items()]
    store.create_collection(collection, fields)
    start = time.perf_counter()
    for i in range(0, len(x), BATCH):
        ids = list(range(i, min(i + BATCH, len(x))))
        vectors = {name: v[i : i + BATCH] for name, v in {"full": x, **outputs}.items()}
        store.upsert(collection, ids, vectors, [{"row": j} for j in ids])
    return len(x) / (time.perf_counter() - start)


def migrate(store: VectorStore, uri: str, collection: str, artifact: Path, workers: int,
            work: Path) -> dict[str, Any]:
    stamps: list[float] = []

    def progress(done: int, total: int) -> None:
        stamps.append(time.perf_counter())

    plan = migration.plan(store, collection, artifact, batch_size=BATCH, workers=workers,
                          checkpoint=work / f"{collection}.json")  # fmt: skip
    report = migration.run(plan, store, progress=progress)
    assert report.ok, report.lines()
    return {"mode": report.mode, "write_pps": plan.points / (stamps[-1] - stamps[0]),
            "total_pps": plan.points / report.seconds, "total_s": report.seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--engines", default="edge,milvus")
    parser.add_argument("--milvus-n", type=int, default=None,
                        help="a smaller size for Milvus Lite (default: --n)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of (1 worker, 2 workers), each on a fresh collection")
    args = parser.parse_args()
    x = vectors(args.n)
    work = Path(tempfile.mkdtemp(prefix="mrl-bench-"))
    artifact = work / "c.mrlc"
    mrl_compress.fit(x[:5000], "pca", dims=(32, 64)).compressor.save(artifact)
    print(f"{platform.node()}: {args.n} x {x.shape[1]} vectors, batch {BATCH}, work dir {work}")
    for engine in args.engines.split(","):
        uri = f"edge:{work / 'edge'}" if engine == "edge" else f"milvus:{work / 'm.db'}"
        n = args.milvus_n if engine == "milvus" and args.milvus_n else args.n
        store = connect(uri)
        for round_ in range(args.rounds):
            for workers in (1, 2):
                collection = f"docs_{round_}_{workers}"
                raw = raw_upsert(store, collection, x[:n])
                row = {"engine": engine, "n": n, "round": round_, "workers": workers,
                       "raw_upsert_pps": raw,
                       **migrate(store, uri, collection, artifact, workers, work)}
                row["write_ratio"] = row["write_pps"] / raw
                row["total_ratio"] = row["total_pps"] / raw
                if row["mode"] == "copy":  # a copy's writes alone, without reading: its ceiling
                    encoded = load(artifact).encode(x[:n])
                    row["copy_write_ratio"] = raw_upsert(store, "bound", x[:n], encoded) / raw
                    store.drop_collection("bound")
                print(json.dumps(row, default=str))
                record = {"command": "python " + " ".join(sys.argv),
                          "date": time.strftime("%Y-%m-%d %H:%M"),
                          "machine": f"{platform.machine()} cpus={os.cpu_count()}",
                          "load_avg": os.getloadavg(), **row}
                with open(Path(__file__).resolve().parent / "results" / "migrate.jsonl",
                          "a") as f:  # fmt: skip
                    f.write(json.dumps(record) + "\n")
                for name in (collection, f"{collection}_mrl"):
                    try:
                        store.drop_collection(name)
                    except NotFound:
                        pass
        store.close()


if __name__ == "__main__":
    main()
