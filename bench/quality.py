"""Retention of each method on real retrieval data, beside prefix truncation and PCA.

    python bench/quality.py wordnet --methods truncate,pca,adaptor,csr
    python bench/quality.py scifact --methods truncate,pca,ads,adaptor,csr
    python bench/quality.py scifact-wordllama --methods truncate,pca,ads --dims 64,128
    python bench/quality.py stsb --methods truncate,pca,adaptor --dims 48
    python bench/quality.py scifact --methods adaptor,csr --pairs train

Fits on the corpus vectors only (no queries, no labels) unless ``--pairs train`` adds the
train split's query/document pairs (BEIR sets; the pairs whose document is relevant to a test
query are left out, see datasets.held_out_pairs). It reports nDCG@10 (and
recall@100) as a fraction of the full vectors', single stage and two-stage (shortlist 100 on
the small output, exact rerank on the full vector). Results are appended as JSON lines to
bench/results/quality.jsonl with the command and machine.
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
import datasets  # noqa: E402  (bench/ is a folder of scripts, not a package)

import mrl_compress  # noqa: E402
from mrl_compress import evaluation  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def load(task: str) -> datasets.Retrieval:
    if task == "wordnet":
        return datasets.wordnet()
    name, _, model = task.partition("-")
    return datasets.beir(name, model or "minilm")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("task", help="wordnet | scifact | cranfield | scifact-wordllama256 | "
                   "cranfield-wordllama256 | stsb")
    p.add_argument("--methods", default="truncate,pca,ads,adaptor,csr")
    p.add_argument("--dims", default="64,128")
    p.add_argument("--k", default="32")
    p.add_argument("--sample", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pairs", choices=["train"], default=None,
                   help="BEIR sets: supervise with the train split's query/document pairs")
    p.add_argument("--query-nonzeros", type=int, default=None,
                   help="csr: score queries with this many non-zeros (stored codes keep k)")
    p.add_argument("--option", action="append", default=[], metavar="NAME=JSON",
                   help="a training setting, e.g. --option sequential=false --option mix=0.5")
    args = p.parse_args()
    train_qrels = datasets.DATA / "beir" / args.task.partition("-")[0] / "qrels" / "train.tsv"
    if args.pairs and not train_qrels.is_file():
        p.error(f"--pairs train: {args.task} has no train qrels ({train_qrels} not found)")
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    dims = [int(d) for d in args.dims.split(",")]
    ks = [int(k) for k in args.k.split(",")]
    RESULTS.mkdir(exist_ok=True)
    record = {"command": "python " + " ".join(sys.argv),
              "machine": f"{platform.machine()} cpus={os.cpu_count()}",
              "date": time.strftime("%Y-%m-%d")}
    if args.task == "stsb":
        train_a, train_b, _ = datasets.stsb("train")
        a, b, gold = datasets.stsb("dev")
        fit_on = np.concatenate([train_a, train_b])
    else:
        data = load(args.task)
        rng = np.random.default_rng(args.seed)
        n = min(args.sample, len(data.corpus))
        fit_on = data.corpus[np.sort(rng.choice(len(data.corpus), n, replace=False))]
    pairs = None
    if args.pairs:
        name, _, model = args.task.partition("-")
        pairs = datasets.held_out_pairs(name, model or "minilm")
        print(f"supervised: {len(pairs[0])} train pairs (none relevant to a test query)")
    for method in args.methods.split(","):
        started = time.perf_counter()
        result = mrl_compress.fit(fit_on, method, dims=dims, k=ks, steps=args.steps,
                                  seed=args.seed, pairs=pairs, **options)
        seconds = time.perf_counter() - started
        if args.task == "stsb":
            rows = evaluation.sts(result.compressor, a, b, gold)
        else:
            rows = [r.to_json() for r in evaluation.retrieval(
                result.compressor, data.corpus, data.queries, data.qrels, data.corpus_ids,
                data.query_ids, query_nonzeros=args.query_nonzeros)]
        print(f"\n{args.task} {method} (fit {seconds:.0f} s on {len(fit_on)} vectors)")
        for r in rows:
            print("  " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in r.items()))
        with open(RESULTS / "quality.jsonl", "a") as f:
            f.write(json.dumps({**record, "task": args.task, "method": method, "options": options,
                                "pairs": len(pairs[0]) if pairs else 0,
                                "query_nonzeros": args.query_nonzeros,
                                "fit_seconds": round(seconds, 1), "rows": rows}) + "\n")


if __name__ == "__main__":
    main()
