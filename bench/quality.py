"""Retention of each method on real retrieval data, beside prefix truncation and PCA.

The figures in docs/benchmarks.md ("Quality") come from (S = seed 0, 1, 2):

    python bench/quality.py wordnet --methods truncate,pca,ads,csr --dims 64,128
    python bench/quality.py wordnet --methods adaptor --dims 64,128,256
    python bench/quality.py scifact --methods adaptor --dims 64,128 --seed S
    python bench/quality.py scifact --methods ads --dims 64,128 --option rotate=true
    python bench/quality.py scifact --methods adaptor --dims 64,128 --pairs train --seed S
    python bench/quality.py scifact --methods csr --pairs train
    python bench/quality.py scifact --methods adaptor --pair-weights none,0.25,0.5,1 --seed S
    python bench/quality.py stsb    --methods truncate,pca,ads --dims 48,64
    python bench/quality.py stsb    --methods adaptor --dims 48
    python bench/quality.py stsb    --methods csr --k 16,32

The same commands give the other tasks' rows: the first for scifact, cranfield and (without
csr) scifact-wordllama256; the third (seed 0) and fourth for cranfield and
scifact-wordllama256; the fourth for wordnet.

Fits on the corpus vectors only (no queries, no labels) unless ``--pairs train`` adds the
train split's query/document pairs (BEIR sets; the pairs whose document is relevant to a test
query are left out, see datasets.held_out_pairs). It reports nDCG@10 (and
recall@100) as a fraction of the full vectors', single stage and two-stage (shortlist 100 on
the small output, exact rerank on the full vector). Results are appended as JSON lines to
bench/results/quality.jsonl with the command and machine.

``--pair-weights`` chooses the ``--pairs`` loss weight on the TRAIN split, as the data's
README asks (tune on the train qrels, report on the test ones): the train queries are split
80/20 (by query, seeded by ``--seed``); each fit sees the pairs of the 80 % whose documents
are relevant neither to the 20 % nor to any test query, and the 20 % are scored with their
train qrels (rows marked ``"scored_on": "train-holdout"``). ``none`` is the unsupervised fit.
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
    p.add_argument("--pair-weights", default=None, metavar="LIST",
                   help="choose the --pairs loss weight on the train split (BEIR sets), e.g. "
                        "none,0.25,0.5,1: fit on 80%% of the train queries' pairs, score the "
                        "other 20%%; 'none' is the unsupervised fit; the test split is unused")
    args = p.parse_args()
    train_qrels = datasets.DATA / "beir" / args.task.partition("-")[0] / "qrels" / "train.tsv"
    if (args.pairs or args.pair_weights) and not train_qrels.is_file():
        p.error(f"{args.task} has no train qrels ({train_qrels} not found)")
    if args.pairs and args.pair_weights:
        p.error("--pair-weights fits with the tuning split's pairs: leave out --pairs")
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
    elif args.pair_weights:
        name, _, model = args.task.partition("-")
        tuning_pairs, held, data = datasets.tuning_split(name, model or "minilm", args.seed)
        data.qrels = held  # scored on the held-out train queries only
        print(f"{len(tuning_pairs[0])} fit pairs, {len(held)} held-out train queries")
    else:
        data = load(args.task)
    if args.task != "stsb":
        rng = np.random.default_rng(args.seed)
        n = min(args.sample, len(data.corpus))
        fit_on = data.corpus[np.sort(rng.choice(len(data.corpus), n, replace=False))]
    pairs = None
    if args.pairs:
        name, _, model = args.task.partition("-")
        pairs = datasets.held_out_pairs(name, model or "minilm")
        print(f"supervised: {len(pairs[0])} train pairs (none relevant to a test query)")
    weights = args.pair_weights.split(",") if args.pair_weights else [None]
    runs = [(m, w) for m in args.methods.split(",") for w in weights]
    for method, weight in runs:
        run_options = dict(options)
        if weight is not None:  # --pair-weights: "none" is the unsupervised fit
            pairs = None if weight == "none" else tuning_pairs
            if pairs is not None:
                run_options["pair_weight"] = float(weight)
        started = time.perf_counter()
        result = mrl_compress.fit(fit_on, method, dims=dims, k=ks, steps=args.steps,
                                  seed=args.seed, pairs=pairs, **run_options)
        seconds = time.perf_counter() - started
        if args.task == "stsb":
            rows = evaluation.sts(result.compressor, a, b, gold)
        else:
            rows = [r.to_json() for r in evaluation.retrieval(
                result.compressor, data.corpus, data.queries, data.qrels, data.corpus_ids,
                data.query_ids, query_nonzeros=args.query_nonzeros)]
        tuned = f" pair weight {weight}, scored on held-out train queries" if weight else ""
        print(f"\n{args.task} {method}{tuned} (fit {seconds:.0f} s on {len(fit_on)} vectors)")
        for r in rows:
            print("  " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in r.items()))
        with open(RESULTS / "quality.jsonl", "a") as f:
            tuning = {"scored_on": "train-holdout", "pair_weight": weight} if weight else {}
            f.write(json.dumps({**record, "task": args.task, "method": method,
                                "options": run_options, **tuning,
                                "pairs": len(pairs[0]) if pairs else 0,
                                "query_nonzeros": args.query_nonzeros,
                                "fit_seconds": round(seconds, 1), "rows": rows}) + "\n")


if __name__ == "__main__":
    main()
