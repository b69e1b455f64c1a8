"""Migration throughput as a ratio of the same engine's raw upsert throughput, in one run.

For each engine: upsert N WordNet gloss vectors (MiniLM, 384-d, small payloads) in batches of
512 and time it (raw upsert); then migrate that collection with a PCA compressor
(mrl_32 + mrl_64) through :mod:`mrl_compress.adapters.migration`, with 1 and 2 workers.
Qdrant Edge migrates in place; Milvus Lite copies (new collection, reconciliation pass).
The write pass is timed from the progress callback; "total" adds reconciliation and the
verification of a 1000-point sample. Each engine's figures are appended to
bench/results/migrate.jsonl with the command and machine.

    python bench/migrate_throughput.py --n 100000 --milvus-n 20000
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
from mrl_compress.adapters import VectorField, connect, migration

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wordnet-gloss"
BATCH = 512


def vectors(n: int) -> np.ndarray:
    stored = np.load(DATA / "corpus.minilm.f16.npy", mmap_mode="r")
    x = np.asarray(stored[:n], dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def raw_upsert(uri: str, x: np.ndarray) -> float:
    store = connect(uri)
    store.create_collection("docs", [VectorField("full", "dense", x.shape[1], "cosine")])
    start = time.perf_counter()
    for i in range(0, len(x), BATCH):
        ids = list(range(i, min(i + BATCH, len(x))))
        store.upsert("docs", ids, {"full": x[i : i + BATCH]}, [{"row": j} for j in ids])
    seconds = time.perf_counter() - start
    store.close()
    return len(x) / seconds


def migrate(uri: str, artifact: Path, workers: int, work: Path, n: int) -> dict[str, float]:
    store = connect(uri)
    stamps: list[float] = []

    def progress(done: int, total: int) -> None:
        stamps.append(time.perf_counter())

    checkpoint = work / f"{uri.split(':')[0]}-ck{workers}.json"
    plan = migration.plan(uri, "docs", artifact, batch_size=BATCH, workers=workers, store=store,
                          new_name=f"docs_w{workers}", checkpoint=checkpoint)
    report = migration.run(plan, store=store, progress=progress)
    store.close()
    assert report.ok, report.lines()
    return {
        "mode": report.mode,  # type: ignore[dict-item]
        "write_pps": n / (stamps[-1] - stamps[0]),
        "total_pps": n / report.seconds,
        "total_s": report.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--engines", default="edge,milvus")
    parser.add_argument("--milvus-n", type=int, default=None,
                        help="a smaller size for Milvus Lite (default: --n)")
    args = parser.parse_args()
    x = vectors(args.n)
    work = Path(tempfile.mkdtemp(prefix="mrl-bench-"))
    artifact = work / "c.mrlc"
    mrl_compress.fit(x[:5000], "pca", dims=(32, 64)).compressor.save(artifact)
    print(f"{platform.node()}: {args.n} x {x.shape[1]} vectors, batch {BATCH}, work dir {work}")
    results = {}
    for engine in args.engines.split(","):
        uri = f"edge:{work / 'edge'}" if engine == "edge" else f"milvus:{work / 'm.db'}"
        n = args.milvus_n if engine == "milvus" and args.milvus_n else args.n
        raw = raw_upsert(uri, x[:n])
        row = {"raw_upsert_pps": raw}
        for workers in (1, 2):
            m = migrate(uri, artifact, workers, work, n)
            row.update({f"w{workers}_{k}": v for k, v in m.items()})
            row[f"w{workers}_write_ratio"] = m["write_pps"] / raw
            row[f"w{workers}_total_ratio"] = m["total_pps"] / raw
        row["n"] = n
        results[engine] = row
        print(engine, json.dumps(row, default=str, indent=1))
        record = {"command": "python " + " ".join(sys.argv),
                  "date": time.strftime("%Y-%m-%d %H:%M"),
                  "machine": f"{platform.machine()} cpus={os.cpu_count()}",
                  "load_avg": os.getloadavg(), "engine": engine, **row}
        with open(Path(__file__).resolve().parent / "results" / "migrate.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
