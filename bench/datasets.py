"""Loaders for ../shared/data (see its README): vectors, ids and qrels of each task."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrl_compress.evaluation import read_qrels

# ../shared/data beside the checkout; MRL_DATA points elsewhere (a GPU machine gets a copy)
DATA = Path(os.environ.get("MRL_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")


@dataclass
class Retrieval:
    name: str
    corpus: np.ndarray
    queries: np.ndarray
    corpus_ids: list[str]
    query_ids: list[str]
    qrels: dict[str, dict[str, float]]


def _ids(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line)["_id"] for line in f]


def _f32(path: Path) -> np.ndarray:
    return np.asarray(np.load(path), dtype=np.float32)


def wordnet(n_queries: int = 5000, seed: int = 0) -> Retrieval:
    root = DATA / "wordnet-gloss"
    queries = _f32(root / "queries.dev.minilm.f16.npy")
    qids = _ids(root / "queries.dev.jsonl.gz")
    pick = np.sort(np.random.default_rng(seed).choice(len(queries), n_queries, replace=False))
    return Retrieval("wordnet-gloss", _f32(root / "corpus.minilm.f16.npy"), queries[pick],
                     _ids(root / "corpus.jsonl.gz"), [qids[i] for i in pick],
                     read_qrels(root / "qrels.dev.tsv"))


def beir(name: str, model: str = "minilm", split: str = "test") -> Retrieval:
    root = DATA / "beir" / name
    return Retrieval(f"{name}/{model}", _f32(root / f"corpus.{model}.f16.npy"),
                     _f32(root / f"queries.{model}.f16.npy"), _ids(root / "corpus.jsonl.gz"),
                     _ids(root / "queries.jsonl.gz"), read_qrels(root / "qrels" / f"{split}.tsv"))


def stsb(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    root = DATA / "stsb"
    with gzip.open(root / f"{split}.jsonl.gz", "rt") as f:
        gold = np.array([json.loads(line)["score"] for line in f], dtype=np.float64)
    a, b = (_f32(root / f"{split}.{side}.minilm.f16.npy") for side in ("s1", "s2"))
    return a, b, gold


def qrel_pairs(data: Retrieval, queries: Iterable[str],
               blocked: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of the (query, relevant document) pairs of ``queries`` in ``data``'s qrels,
    except the pairs whose document is in ``blocked``."""
    row_of_doc = {doc: i for i, doc in enumerate(data.corpus_ids)}
    row_of_query = {q: i for i, q in enumerate(data.query_ids)}
    pairs = [(row_of_query[q], row_of_doc[d]) for q in queries for d in data.qrels[q]
             if d not in blocked]
    qi, di = (np.array(side) for side in zip(*pairs, strict=True))
    return data.queries[qi], data.corpus[di]


def test_documents(name: str) -> set[str]:
    """The documents relevant to any test query of a BEIR set."""
    qrels = read_qrels(DATA / "beir" / name / "qrels" / "test.tsv")
    return {doc for docs in qrels.values() for doc in docs}


def held_out_pairs(name: str, model: str = "minilm") -> tuple[np.ndarray, np.ndarray]:
    """Query/document vector pairs from a BEIR set's train qrels, minus every pair whose
    document is relevant to a test query: a supervised fit then never sees a test query's
    relevant document (issue 2's rule), and every test query can still be scored."""
    train = beir(name, model, "train")
    return qrel_pairs(train, train.qrels, test_documents(name))


def tuning_split(name: str, model: str = "minilm",
                 seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], dict, Retrieval]:
    """Train-split tuning, never reading a test query's documents: the train queries split
    80/20 (by query, seeded); returns (the pairs of the 80 % whose documents are relevant
    neither to the 20 % nor to any test query, the 20 %'s train qrels, the train split)."""
    train = beir(name, model, "train")
    queries = sorted(train.qrels)
    rng = np.random.default_rng(100 + seed)
    held = set(rng.choice(queries, len(queries) // 5, replace=False).tolist())
    blocked = {d for q in held for d in train.qrels[q]} | test_documents(name)
    pairs = qrel_pairs(train, [q for q in queries if q not in held], blocked)
    return pairs, {q: train.qrels[q] for q in held}, train
