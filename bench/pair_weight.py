"""Choose the adaptor's ``--pairs`` loss weight on SciFact's TRAIN split, not its test split.

    python bench/pair_weight.py --weights none,0.25,0.5,1 --seed 0

The data's README: tune on the train qrels, report on the test ones. The train queries are
split 80/20 (by query, seeded); the fit sees the pairs of the 80 % whose documents are
relevant neither to the 20 % nor to any test query, and the 20 % are scored with their train
qrels: nDCG@10 as a fraction of the full vectors', single stage and two-stage. ``none`` is
the unsupervised fit on the same corpus.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datasets  # noqa: E402  (bench/ is a folder of scripts, not a package)

import mrl_compress  # noqa: E402
from mrl_compress import evaluation  # noqa: E402


def split_pairs(seed: int) -> tuple[tuple[np.ndarray, np.ndarray], dict, datasets.Retrieval]:
    """(fit pairs, qrels of the held-out train queries, the train split)."""
    train = datasets.beir("scifact", "minilm", "train")
    queries = sorted(train.qrels)
    rng = np.random.default_rng(100 + seed)
    held = set(rng.choice(queries, len(queries) // 5, replace=False).tolist())
    blocked = {d for q in held for d in train.qrels[q]} | datasets.test_documents("scifact")
    pairs = datasets.qrel_pairs(train, [q for q in queries if q not in held], blocked)
    return pairs, {q: train.qrels[q] for q in held}, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--weights", default="none,0.25,0.5,1")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    pairs, held, data = split_pairs(args.seed)
    print(f"{len(pairs[0])} fit pairs, {len(held)} held-out train queries")
    for weight in args.weights.split(","):
        supervised = weight != "none"
        options = {"pair_weight": float(weight)} if supervised else {}
        fitted = mrl_compress.fit(data.corpus, "adaptor", dims=(64, 128), seed=args.seed,
                                  pairs=pairs if supervised else None, **options)
        rows = {r.name: r for r in evaluation.retrieval(
            fitted.compressor, data.corpus, data.queries, held, data.corpus_ids,
            data.query_ids)}
        print(f"weight {weight} seed {args.seed}: 64 d {rows['mrl_64'].ndcg10_retention:.3f} "
              f"(two-stage {rows['mrl_64'].two_stage_retention:.3f}), "
              f"128 d {rows['mrl_128'].ndcg10_retention:.3f}", flush=True)


if __name__ == "__main__":
    main()
