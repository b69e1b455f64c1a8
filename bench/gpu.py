r"""The CUDA paths, measured on a GPU machine against its own CPU in one run.

    python bench/gpu.py fit --rows 50000 --methods pca,ads,adaptor,csr --keep DIR
    python bench/gpu.py encode --keep DIR --batches 1,64,4096,16384

The figures in docs/benchmarks.md ("GPU"; one H200, 2026-11-26) come from

    MRL_DATA=<copy of ../shared/data> python bench/gpu.py fit --rows 50000 \
        --methods pca,ads,adaptor,csr --keep /tmp/keep/art --out fit.jsonl
    MRL_DATA=<copy of ../shared/data> python bench/gpu.py encode --keep /tmp/keep/art \
        --batches 1,64,512,4096,16384 --out encode.jsonl

fit: ``mrl_compress.fit`` on the first N wordnet-gloss vectors, on the GPU (torch picks CUDA
when present), then the same fit in a child process with ``CUDA_VISIBLE_DEVICES=`` (the
machine's CPUs); wall time, training time and the retention each fit measured. The GPU
artifacts are saved under DIR for ``encode``.
encode: each artifact loaded twice, ``device="cuda"`` and ``device="cpu"`` (onnxruntime's
providers, read back from the session), rows/s of each interleaved, and how far the CUDA
provider's outputs are from the CPU provider's. Imports no torch: what a serving install runs.
Prints one JSON line per row; ``--out FILE`` also appends them there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import corpus, rate, timed_fit  # noqa: E402

import mrl_compress  # noqa: E402
from mrl_compress.outputs import SparseBatch  # noqa: E402


def emit(row: dict, out: str | None) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


def fit_once(method: str, rows: int, keep: str | None) -> dict:
    """One fit where this process runs (GPU when torch sees one), with its retention."""
    result, row = timed_fit(corpus(rows), method)
    if keep:
        result.compressor.save(Path(keep) / f"{method}.mrlc", overwrite=True)
    row["retention"] = {r.name: [round(r.recall, 3), r.two_stage and round(r.two_stage, 3)]
                        for r in result.retention if r.kind == "ours"}
    return row


def bench_fit(methods: list[str], rows: int, keep: str, cpu: bool, out: str | None) -> None:
    import torch

    emit({"torch": torch.__version__, "cuda": torch.cuda.is_available(),
          "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
          "cpus": os.cpu_count()}, out)
    Path(keep).mkdir(parents=True, exist_ok=True)
    for method in methods:
        try:
            emit(fit_once(method, rows, keep), out)
        except Exception:  # report and go on: one run should show every broken path
            emit({"method": method, "gpu_error": traceback.format_exc()[-1200:]}, out)
            continue
        if cpu:  # the same fit on this machine's CPUs, in a process that sees no GPU
            child = subprocess.run(
                [sys.executable, __file__, "fit-one", "--methods", method, "--rows", str(rows)],
                env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True)
            line = child.stdout.strip().splitlines()[-1] if child.stdout.strip() else ""
            emit(json.loads(line) if child.returncode == 0 else
                 {"method": method, "cpu_error": child.stderr[-800:]}, out)
    try:
        emit(pairs_check(rows), out)
    except Exception:
        emit({"pairs_fit_error": traceback.format_exc()[-1200:]}, out)


def pairs_check(rows: int) -> dict:
    """The ranking loss of ``--pairs`` on this device (a code path check, not a figure):
    pseudo-queries are the first 2,000 vectors with a little noise, paired with themselves."""
    x = corpus(rows)
    docs = x[:2000]
    noisy = docs + 0.05 * np.random.default_rng(0).normal(size=docs.shape).astype(np.float32)
    queries = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    done = {}
    for method in ("adaptor", "csr"):
        result = mrl_compress.fit(x, method, dims=(64,), k=(32,), steps=50, holdout=500,
                                  eval_docs=5000, pairs=(queries, docs))
        done[method] = result.compressor.manifest.settings.get("device")
    return {"pairs_fit": done}


def distance(a: object, b: object) -> dict:
    """How far the CUDA provider's output ``a`` is from the CPU provider's ``b``."""
    if isinstance(a, SparseBatch) and isinstance(b, SparseBatch):
        same = [set(a.indices[i].tolist()) == set(b.indices[i].tolist()) for i in range(len(a))]
        return {"same_support": round(float(np.mean(same)), 4)}
    return {"max_abs_diff": float(np.abs(np.asarray(a) - np.asarray(b)).max())}


def bench_encode(keep: str, batches: list[int], out: str | None) -> None:
    import onnxruntime as ort

    emit({"onnxruntime": ort.__version__, "available": ort.get_available_providers()}, out)
    x_all = corpus(max(batches + [4096]))
    for path in sorted(Path(keep).glob("*.mrlc")):
        gpu = mrl_compress.load(path, device="cuda")
        cpu = mrl_compress.load(path, device="cpu")
        probe = x_all[:4096]
        a, b = gpu.runtime.run(probe), cpu.runtime.run(probe)
        emit({"artifact": path.name, "providers": [gpu.provider, cpu.provider],
              **{name: distance(a[name], b[name]) for name in a}}, out)
        for size in batches:
            x = x_all[:size]
            r_gpu, r_cpu = rate(gpu.runtime.run, x), rate(cpu.runtime.run, x)
            emit({"artifact": path.name, "batch": size, "cuda_rows_s": round(r_gpu),
                  "cpu_rows_s": round(r_cpu), "cuda_vs_cpu": round(r_gpu / r_cpu, 2)}, out)


def providers(keep: str, preload: bool) -> None:
    """Which provider a ``device="cuda"`` load gets, with or without ``preload_dlls``."""
    import onnxruntime as ort

    if preload:
        ort.preload_dlls()
    path = sorted(Path(keep).glob("*.mrlc"))[0]
    print(json.dumps({"preload_dlls": preload, "provider":
                      mrl_compress.load(path, device="cuda").provider}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=["fit", "fit-one", "encode", "providers"])
    p.add_argument("--preload", action="store_true", help="providers: preload_dlls first")
    p.add_argument("--methods", default="pca,ads,adaptor,csr")
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--batches", default="1,64,4096,16384")
    p.add_argument("--keep", default="/tmp/mrl-gpu")
    p.add_argument("--no-cpu", action="store_true", help="fit: skip the CPU fits")
    p.add_argument("--out", help="also append the JSON lines to this file")
    args = p.parse_args()
    if args.what == "fit-one":
        print(json.dumps(fit_once(args.methods, args.rows, None)))
    elif args.what == "providers":
        providers(args.keep, args.preload)
    elif args.what == "fit":
        bench_fit(args.methods.split(","), args.rows, args.keep, not args.no_cpu, args.out)
    else:
        bench_encode(args.keep, [int(b) for b in args.batches.split(",")], args.out)


if __name__ == "__main__":
    main()
