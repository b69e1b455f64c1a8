r"""Quantization-aware training (issue 17): an adaptor trained through the engine code it is
stored with, against the same adaptor trained on float scores, measured in Qdrant Edge.

    python bench/quantization_aware.py --dims 384 --steps 300,1200 \
        --quantizers none,binary1-q8 --candidates mrl_384:binary1-q8
    python bench/quantization_aware.py --dims 192 --fit-rows 117659 --steps 1200 \
        --quantizers none,turbo2 --candidates mrl_192:turbo2,mrl_192:float32

For each (steps, quantizer) an adaptor is fitted (``mrl_compress.fit(..., quantizer=...)``,
i.e. ``fit --option quantizer=NAME``) on ``--fit-rows`` corpus rows, and each candidate
(``OUTPUT:QUANTIZER``) is measured by :func:`mrl_compress.frontier.measure`, as ``plan``
measures it: built in a scratch Edge shard from a 20k-document sample, searched with 500
held-out dev queries, recall@10 against exact full-vector search, single stage (the codes
alone) and two-stage (x3 rescored by the full vector); beside them, in the same run on the
same sample, the engine's own quantizers of the full vector (``--native``). Rows go to
bench/results/quantization_aware.jsonl.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from frontier import DATA, FILES, unit  # noqa: E402  (bench/frontier.py)

import mrl_compress  # noqa: E402
from mrl_compress import frontier  # noqa: E402
from mrl_compress.adapters import scratch_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="wordnet")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--dims", default="192")
    parser.add_argument("--steps", default="1200")
    parser.add_argument("--quantizers", default="none,turbo2")
    parser.add_argument("--candidates", default="mrl_192:turbo2")
    parser.add_argument("--fit-rows", type=int, default=20_000)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--native", default="pq32,turbo1,binary1-q8",
                        help="the engine's quantizers of the full vector, measured in the same "
                             "run on the same sample (the bar at those bytes)")
    parser.add_argument("--spread", default="on",
                        help="on,off: fit with and without the shells spread (spread=false)")
    args = parser.parse_args()
    corpus_file, query_file = FILES[(args.set, args.model)]
    corpus = unit(np.load(DATA / corpus_file))
    queries = unit(np.load(DATA / query_file))
    rng = np.random.default_rng(0)  # the same sample as bench/frontier.py
    docs = corpus[np.sort(rng.choice(len(corpus), min(args.sample, len(corpus)), replace=False))]
    queries = queries[np.sort(rng.choice(len(queries), min(args.queries, len(queries)),
                                         replace=False))]  # fmt: skip
    truth = frontier.exact_top(docs, queries)
    scratch = scratch_for("edge:x", Path(tempfile.mkdtemp(prefix="mrl-qat-")))
    dims = tuple(int(d) for d in args.dims.split(","))
    stamp = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"),
             "machine": f"{platform.machine()} cpus={os.cpu_count()}", "set": args.set,
             "model": args.model, "dims": dims, "fit_rows": args.fit_rows}
    out = Path(__file__).resolve().parent / "results" / "quantization_aware.jsonl"

    def record(m: frontier.Measured, **what: object) -> None:
        row = {**stamp, **what, "candidate": m.candidate.label, "code_bytes": m.code_bytes,
               "single": round(m.single, 4), "single_se": round(m.single_se, 4),
               "two_stage": round(m.two_stage, 4)}
        print(json.dumps(row), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")

    for name in filter(None, args.native.split(",")):
        c = frontier.Candidate(name, docs.shape[1])
        record(frontier.measure(c, docs, queries, truth, scratch, oversample=3,
                                timed_queries=50), trained_through="engine")
    for steps in (int(s) for s in args.steps.split(",")):
        for name, spread in ((n, v) for n in args.quantizers.split(",")
                             for v in args.spread.split(",")):
            trained = None if name == "none" else name
            started = time.perf_counter()
            fitted = mrl_compress.fit(corpus[: args.fit_rows], "adaptor", dims=dims, steps=steps,
                                      quantizer=trained, spread=spread == "on")
            fit_s = time.perf_counter() - started
            for spec in args.candidates.split(","):
                output, _, quantizer = spec.partition(":")
                size = fitted.compressor.output(output).size
                c = frontier.Candidate(quantizer, size or 0, output, "bench", "adaptor")
                m = frontier.measure(c, docs, queries, truth, scratch, fitted.compressor,
                                     oversample=3, timed_queries=50)
                record(m, steps=steps, trained_through=trained, spread=spread == "on",
                       fit_s=round(fit_s))
    scratch.close()


if __name__ == "__main__":
    main()
