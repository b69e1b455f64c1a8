"""Fit time, encode throughput and one query's encode latency, measured in one run here.

    python bench/speed.py fit --methods ads,adaptor,csr --rows 100000
    python bench/speed.py encode --methods pca,adaptor,ads,csr --batches 1,64,4096
    python bench/speed.py encode --methods csr,csr-topk --batches 1,64,4096  # pursuit vs TopK
    python bench/speed.py query --compressor /tmp/mrl-search/adaptor.mrlc --output mrl_128

fit: wall time of ``mrl_compress.fit`` on the first N wordnet-gloss vectors (training +
ONNX export + retention measurement), and the training part alone.
encode: rows/s of the same model three ways in one process, interleaved: the ONNX graph
(onnxruntime, CPU provider), torch eager (no grad), and the roofline — a bare numpy matmul
of the model's main shape (n × input_dim) @ (input_dim × width). Ratios are computed within
the run; the machine is noisy, absolute numbers are not comparable across runs.
query: the serving path's cost for one query, ``Compressor.encode_queries`` on a single
wordnet-gloss dev query row (one output: ``--output``, else the artifact's first), p50 over
``--rounds`` calls, "hot" (back to back) and "cold" (before each call a 160 MB array is
touched every 4 KiB, evicting the caches as a search at 1M points does). Times
``--compressor`` (a saved artifact) or, without it, a short fit of each of ``--methods``.

Every run appends a line to bench/results/speed.jsonl. The figures in docs/benchmarks.md
("Speed") come from the first three commands above (2026-11-25/26, the 2-core VM); its
one-query figure from the former bench/query_encode.py, which timed the same call on the same
artifact (the fourth command, with /tmp/mrl-search/adaptor.mrlc from bench/search.py's
docstring).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datasets  # noqa: E402

import mrl_compress  # noqa: E402
from mrl_compress.fitting import FitResult  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def corpus(rows: int) -> np.ndarray:
    x = np.load(datasets.DATA / "wordnet-gloss" / "corpus.minilm.f16.npy", mmap_mode="r")
    return np.asarray(x[:rows], dtype=np.float32)


def timed_fit(x: np.ndarray, method: str) -> tuple[FitResult, dict]:
    """``mrl_compress.fit`` with the default outputs, and its row: wall time, the training
    part alone (until the last progress step), the device it trained on."""
    marks: list[float] = []

    def done(step: int, total: int, _loss: float) -> None:
        if step == total:
            marks.append(time.perf_counter())

    started = time.perf_counter()
    base, options = method_options(method)
    result = mrl_compress.fit(x, base, dims=(64, 128, 256), k=(32,), progress=done, **options)
    total = time.perf_counter() - started
    return result, {"method": method, "rows": len(x), "fit_seconds": round(total, 1),
                    "train_seconds": round((marks[-1] - started) if marks else total, 1),
                    "device": result.compressor.manifest.settings.get("device")}


def bench_fit(methods: list[str], rows: int) -> list[dict]:
    x = corpus(rows)
    out = []
    for method in methods:
        out.append(timed_fit(x, method)[1])
        print(out[-1], flush=True)
    return out


def method_options(name: str) -> tuple[str, dict]:
    """``csr-topk`` -> ("csr", {"encoder": "topk"}); any other name is a method as it is."""
    method, _, encoder = name.partition("-")
    return method, {"encoder": encoder} if encoder else {}


def rate(fn, x: np.ndarray, seconds: float = 1.5) -> float:
    fn(x)  # warm up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(x)
        n += 1
    return n * len(x) / (time.perf_counter() - t0)


def bench_encode(methods: list[str], batches: list[int]) -> list[dict]:
    import torch

    x_all = corpus(20000)
    out = []
    for method in methods:
        base, options = method_options(method)
        result = mrl_compress.fit(x_all, base, dims=(64, 128, 256), k=(32,), steps=20,
                                  holdout=200, eval_docs=2000, **options)
        comp, model = result.compressor, result.model
        runtime = comp.runtime
        width = (comp.weights["weight"].shape[0] if base == "csr"
                 else comp.weights.get("rotation", np.eye(comp.input_dim)).shape[1])
        w = np.random.default_rng(0).normal(size=(comp.input_dim, width)).astype(np.float32)
        def eager(v: np.ndarray, model=model) -> object:
            with torch.no_grad():
                return model(torch.from_numpy(v))

        def matmul(v: np.ndarray, w: np.ndarray = w) -> np.ndarray:
            return v @ w

        for b in batches:
            x = x_all[:b]
            r_torch = rate(eager, x)
            r_onnx = rate(runtime.run, x)
            r_numpy = rate(matmul, x)
            row = {"method": method, "batch": b, "provider": comp.provider,
                   "onnx_rows_s": round(r_onnx), "torch_rows_s": round(r_torch),
                   "matmul_rows_s": round(r_numpy),
                   "onnx_vs_torch": round(r_onnx / r_torch, 2),
                   "onnx_vs_matmul": round(r_onnx / r_numpy, 2)}
            out.append(row)
            print(row, flush=True)
    return out


def bench_query(methods: list[str], compressor: str | None, output: str,
                rounds: int) -> list[dict]:
    q = np.load(datasets.DATA / "wordnet-gloss" / "queries.dev.minilm.f16.npy", mmap_mode="r")
    q = np.asarray(q[:300], dtype=np.float32)
    if compressor:
        models = [(compressor, mrl_compress.load(compressor))]
    else:
        x = corpus(20000)
        models = []
        for method in methods:
            base, options = method_options(method)
            models.append((method, mrl_compress.fit(
                x, base, dims=(64, 128, 256), k=(32,), steps=20, holdout=200, eval_docs=2000,
                **options).compressor))
    big = np.ones(40_000_000, np.float32)
    out = []
    for name, comp in models:
        names = [o.name for o in comp.outputs]
        field = output if output in names else names[0]
        row: dict = {"method": comp.method, "source": name, "output": field,
                     "provider": comp.provider}
        for cold in (False, True):
            times = []
            for i in range(rounds):
                x1 = q[i % len(q) : i % len(q) + 1]
                if cold:
                    big[::1024] += 1
                started = time.perf_counter()
                comp.encode_queries(x1, field)
                times.append(time.perf_counter() - started)
            row["cold_p50_us" if cold else "hot_p50_us"] = round(float(np.median(times)) * 1e6,
                                                                 1)
        out.append(row)
        print(row, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=["fit", "encode", "query"])
    p.add_argument("--methods", default="ads,adaptor,csr")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--batches", default="1,64,4096")
    p.add_argument("--compressor", help="query: time this saved artifact instead of short fits")
    p.add_argument("--output", default="mrl_128",
                   help="query: the output to encode (else the artifact's first)")
    p.add_argument("--rounds", type=int, default=2000, help="query: calls per hot/cold p50")
    args = p.parse_args()
    methods = args.methods.split(",")
    if args.what == "fit":
        rows = bench_fit(methods, args.rows)
    elif args.what == "encode":
        rows = bench_encode(methods, [int(b) for b in args.batches.split(",")])
    else:
        rows = bench_query(methods, args.compressor, args.output, args.rounds)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "speed.jsonl", "a") as f:
        f.write(json.dumps({"command": "python " + " ".join(sys.argv),
                            "machine": f"{platform.machine()} cpus={os.cpu_count()}",
                            "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}) + "\n")


if __name__ == "__main__":
    main()
