"""Recall@10 of every quantizer an embedded engine offers, on the full vector alone.

For each name of ``store.quantizers()`` (Qdrant Edge, Milvus Lite): ``set_quantizer`` on a
collection of N stored MiniLM vectors (wordnet-gloss), then single-stage recall@10 against
exact brute force by the codes alone (``rescore=None``) and with ``rescore=3`` (k x 3
candidates rescored by the float vectors), and the nominal code bytes per vector. The
figures of docs/quantizers.md come from::

    python bench/quantizers.py --points 3000 --queries 200

Never ``exact=True``: it ignores quantization (docs/quantizers.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mrl_compress import quantizers
from mrl_compress.adapters import VectorField, connect

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wordnet-gloss"
K = 10


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--engines", default="edge,milvus")
    args = parser.parse_args()
    docs = unit(np.asarray(np.load(DATA / "corpus.minilm.f16.npy", mmap_mode="r")[:args.points],
                           dtype=np.float32))  # fmt: skip
    asked = unit(np.asarray(np.load(DATA / "queries.dev.minilm.f16.npy",
                                    mmap_mode="r")[:args.queries], dtype=np.float32))
    truth = np.argsort(-(asked @ docs.T), axis=1)[:, :K]

    def recall(hits: list) -> float:
        return float(np.mean([len({h.id for h in row} & set(t.tolist())) / K
                              for row, t in zip(hits, truth, strict=True)]))  # fmt: skip

    print(f"{args.points} points, {args.queries} queries, {docs.shape[1]}-d; recall@10 vs exact")
    print("| engine | quantizer | code B/vector | recall@10, codes alone | rescore x3 | set s |")
    print("|---|---|---:|---:|---:|---:|")
    for engine in args.engines.split(","):
        with tempfile.TemporaryDirectory() as folder:
            uri = f"edge:{folder}/e" if engine == "edge" else f"milvus:{folder}/m.db"
            store = connect(uri)
            store.create_collection("docs", [VectorField("full", "dense", docs.shape[1],
                                                         "cosine")])  # fmt: skip
            store.upsert("docs", list(range(len(docs))), {"full": docs})
            for name in store.quantizers():
                started = time.perf_counter()
                store.set_quantizer("docs", "full", name)
                seconds = time.perf_counter() - started
                alone = recall(store.search("docs", "full", asked, K))
                rescored = recall(store.search("docs", "full", asked, K, rescore=3))
                code = quantizers.parse(name).code_bytes(docs.shape[1])
                print(f"| {engine} | {name} | {code:g} | {alone:.3f} | {rescored:.3f} | "
                      f"{seconds:.1f} |", flush=True)
            store.close()


if __name__ == "__main__":
    main()
