"""Fixtures for the adapter tests: real WordNet gloss vectors (MiniLM) and their texts."""

from __future__ import annotations

import gzip
import json
from itertools import islice

import numpy as np
import pytest

from tests.adapters.wordnet_sample import DATA, N_POINTS, N_QUERIES, normalise


@pytest.fixture(scope="session")
def vectors() -> np.ndarray:
    stored = np.load(DATA / "corpus.minilm.f16.npy", mmap_mode="r")
    return normalise(np.asarray(stored[:N_POINTS], dtype=np.float32))


@pytest.fixture(scope="session")
def queries() -> np.ndarray:
    stored = np.load(DATA / "queries.dev.minilm.f16.npy", mmap_mode="r")
    return normalise(np.asarray(stored[:N_QUERIES], dtype=np.float32))


@pytest.fixture(scope="session")
def payloads() -> list[dict]:
    """The document's text plus a nested ``meta`` object to filter on."""
    with gzip.open(DATA / "corpus.jsonl.gz", "rt") as lines:
        docs = [json.loads(line) for line in islice(lines, N_POINTS)]
    return [
        {
            "doc_id": doc["_id"],
            "title": doc["title"],
            "text": doc["text"],
            "meta": {"parity": "even" if i % 2 == 0 else "odd", "bucket": i % 3},
        }
        for i, doc in enumerate(docs)
    ]
