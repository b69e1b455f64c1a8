"""The frontier per budget: the engine's best quantizer of the full vector against the best
candidate ``mrl-compress plan`` can choose (native or composed), on real data sets.

For each data set and model: compressors are fitted on the corpus as ``mrl-compress fit``
fits them (``pca`` and the learned ``adaptor`` with default settings on up to 100k rows;
``truncate`` too for a Matryoshka-trained model; with ``--quantizer-aware``, adaptors trained
through those quantizers); every candidate of :mod:`mrl_compress.frontier` (the full vector
with each Edge quantizer, each compressor output with each quantizer) is built in a scratch
Edge shard from a sample of the corpus and measured with the data set's real queries against
exact search of the sample. Then, at each budget of code bytes per point, the best native
row and the best row overall, single-stage and two-stage (x3 rescored). Rows go to
bench/results/frontier.jsonl; the tables in docs/benchmarks.md come from

    python bench/frontier.py --sets wordnet,scifact,cranfield --models minilm,wordllama
    python bench/frontier.py --tables     # the markdown, from the latest run of each
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
from mrl_compress import frontier
from mrl_compress.adapters import scratch_for

DATA = Path(os.environ.get("MRL_DATA")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data")
BUDGETS = (16, 24, 32, 48, 64, 96, 128, 192)
FILES = {
    ("wordnet", "minilm"): ("wordnet-gloss/corpus.minilm.f16.npy",
                            "wordnet-gloss/queries.dev.minilm.f16.npy"),
    ("scifact", "minilm"): ("beir/scifact/corpus.minilm.f16.npy",
                            "beir/scifact/queries.minilm.f16.npy"),
    ("scifact", "wordllama"): ("beir/scifact/corpus.wordllama256.f16.npy",
                               "beir/scifact/queries.wordllama256.f16.npy"),
    ("cranfield", "minilm"): ("beir/cranfield/corpus.minilm.f16.npy",
                              "beir/cranfield/queries.minilm.f16.npy"),
    ("cranfield", "wordllama"): ("beir/cranfield/corpus.wordllama256.f16.npy",
                                 "beir/cranfield/queries.wordllama256.f16.npy"),
}


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; all-zero rows (a few WordLlama texts) are left out."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    keep = norms[:, 0] > 0
    return x[keep] / norms[keep]


def dims_for(dim: int) -> tuple[int, ...]:
    return (32, 64, 96, 128, 192) if dim >= 384 else (32, 64, 96, 128)


def fits(corpus: np.ndarray, model: str, work: Path,
         args: argparse.Namespace) -> list[tuple[str, mrl_compress.Compressor]]:
    """Artifacts fitted on (a seeded sample of up to ``--fit-rows`` of) the corpus, as
    ``mrl-compress fit`` fits them: (path, compressor)."""
    dims = dims_for(corpus.shape[1])
    steps = {"steps": args.steps} if args.steps else {}
    methods: list[tuple[str, str, dict[str, object]]] = [("pca", "pca", {}),
                                                         ("adaptor", "adaptor", steps)]
    if model == "wordllama":  # Matryoshka-trained: its prefixes are a reduction already
        methods.insert(0, ("truncate", "truncate", {}))
    for q in filter(None, args.quantizer_aware.split(",")):
        methods.append((f"adaptor-{q}", "adaptor", {**steps, "quantizer": q}))
    rows = np.sort(np.random.default_rng(1).choice(len(corpus), min(args.fit_rows, len(corpus)),
                                                   replace=False))  # fmt: skip
    out = []
    for name, method, options in methods:
        started = time.perf_counter()
        fitted = mrl_compress.fit(corpus[rows], method, dims=dims, **options)
        path = fitted.compressor.save(work / f"{name}.mrlc")
        print(f"  fit {name} {dims} on {len(rows):,} rows in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        out.append((str(path), fitted.compressor))
    return out


def best(rows: list[frontier.Measured], budget: float, stage: frontier.Stage,
         native_only: bool) -> frontier.Measured | None:
    within = [r for r in rows if r.code_bytes <= budget and (r.candidate.native or not native_only)]
    return max(within, key=lambda r: r.recall(stage), default=None)


def one(name: str, model: str, args: argparse.Namespace) -> list[dict[str, object]]:
    corpus_file, query_file = FILES[(name, model)]
    corpus = unit(np.load(DATA / corpus_file))
    queries = unit(np.load(DATA / query_file))
    rng = np.random.default_rng(0)
    docs = corpus[np.sort(rng.choice(len(corpus), min(args.sample, len(corpus)), replace=False))]
    queries = queries[np.sort(rng.choice(len(queries), min(args.queries, len(queries)),
                                         replace=False))]
    work = Path(tempfile.mkdtemp(prefix="mrl-frontier-"))
    print(f"{name} / {model}: {len(docs):,} of {len(corpus):,} documents x {corpus.shape[1]}, "
          f"{len(queries)} queries", flush=True)
    models = fits(corpus, model, work, args)
    scratch = scratch_for("edge:x", work)
    found = frontier.candidates(corpus.shape[1], models, scratch.quantizers())
    by_path = dict(models)
    truth = frontier.exact_top(docs, queries)
    rows = []
    for c in found:
        rows.append(frontier.measure(c, docs, queries, truth, scratch,
                                     by_path.get(c.compressor or ""),
                                     oversample=3, timed_queries=args.timed))
    scratch.close()
    out = []
    for budget in BUDGETS:
        for stage in ("single", "two-stage"):
            engine = best(rows, budget, stage, native_only=True)
            ours = best(rows, budget, stage, native_only=False)
            if ours is None:
                continue
            record = {
                "set": name, "model": model, "budget": budget, "stage": stage,
                "native": engine.candidate.label if engine else None,
                "native_recall": engine.recall(stage) if engine else None,
                "chosen": ours.candidate.label, "chosen_recall": ours.recall(stage),
                "chosen_kind": "native" if ours.candidate.native else "composed",
                "gain": ours.recall(stage) - (engine.recall(stage) if engine else 0.0),
            }
            print(json.dumps(record), flush=True)
            out.append(record)
    for r in rows:
        out.append({"set": name, "model": model, "row": r.row()})
    return out


def tables(path: Path) -> str:
    """docs/benchmarks.md's tables from the latest run of each set and model in ``path``."""
    latest: dict[tuple[str, str], str] = {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in records:
        if "budget" in r:
            key = (r["set"], r["model"])
            latest[key] = max(latest.get(key, ""), r["date"])
    out = []
    for (name, model), date in sorted(latest.items()):
        by = {(r["budget"], r["stage"]): r for r in records
              if (r["set"], r["model"], r.get("date")) == (name, model, date) and "budget" in r}
        out += [f"**{name}, {model}** ({date})", "",
                "| B/point | engine alone, single | plan's choice, single | gain "
                "| engine alone, two-stage ×3 | plan's choice, two-stage ×3 | gain |",
                "|---:|---|---|---:|---|---|---:|"]
        for budget in BUDGETS:
            cells = [str(budget)]
            for stage in ("single", "two-stage"):
                r = by.get((budget, stage))
                if r is None:
                    cells += ["none fits"] * 2 + ["—"]
                    continue
                engine = (f"{r['native']} {r['native_recall']:.3f}" if r["native"]
                          else "none fits")
                chosen = (f"same ({r['native']})" if r["chosen"] == r["native"]
                          else f"{r['chosen']} {r['chosen_recall']:.3f}")
                gain = f"{r['gain']:+.3f}" if r["native"] else "—"
                cells += [engine, chosen, gain]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="wordnet,scifact,cranfield")
    parser.add_argument("--models", default="minilm,wordllama")
    parser.add_argument("--sample", type=int, default=20_000, help="documents per candidate")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--steps", type=int, default=None,
                        help="adaptor training steps (default: fit's)")
    parser.add_argument("--fit-rows", type=int, default=100_000,
                        help="corpus rows the compressors are fitted on")
    parser.add_argument("--quantizer-aware", default="",
                        help="also fit an adaptor through each of these quantizers "
                             "(fit --option quantizer=NAME), e.g. binary1-q8,turbo2")
    parser.add_argument("--timed", type=int, default=100, help="queries timed one by one")
    parser.add_argument("--tables", action="store_true",
                        help="print docs/benchmarks.md's tables from the saved rows and stop")
    args = parser.parse_args()
    if args.tables:
        print(tables(Path(__file__).resolve().parent / "results" / "frontier.jsonl"))
        return
    stamp = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"),
             "machine": f"{platform.machine()} cpus={os.cpu_count()}"}
    for name in args.sets.split(","):
        for model in args.models.split(","):
            if (name, model) not in FILES:
                continue
            rows = one(name, model, args)
            with open(Path(__file__).resolve().parent / "results" / "frontier.jsonl", "a") as f:
                for row in rows:
                    f.write(json.dumps({**stamp, **row}, default=str) + "\n")


if __name__ == "__main__":
    main()
