"""SciFact (real abstracts, stored MiniLM vectors) for the retriever tests and the docs tests.

The application's LangChain ``Embeddings`` is stood in for by :func:`stored_embeddings`,
which answers known texts with their stored vectors (the MiniLM model is not installed here).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

SCIFACT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "beir" / "scifact"
N_DOCS = 2000
N_QUERIES = 40


@dataclass
class Corpus:
    ids: list[str]
    titles: list[str]
    texts: list[str]
    vectors: np.ndarray
    query_texts: list[str]
    queries: np.ndarray


def _jsonl(path: Path, n: int) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as lines:
        return [json.loads(line) for _, line in zip(range(n), lines, strict=False)]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@cache
def corpus(n_docs: int = N_DOCS, n_queries: int = N_QUERIES) -> Corpus:
    docs = _jsonl(SCIFACT / "corpus.jsonl.gz", n_docs)
    queries = _jsonl(SCIFACT / "queries.jsonl.gz", n_queries)
    vectors = np.load(SCIFACT / "corpus.minilm.f16.npy", mmap_mode="r")[:n_docs]
    query_vectors = np.load(SCIFACT / "queries.minilm.f16.npy", mmap_mode="r")[:n_queries]
    return Corpus(
        ids=[d["_id"] for d in docs],
        titles=[d["title"] for d in docs],
        texts=[d["text"] for d in docs],
        vectors=unit(np.asarray(vectors, dtype=np.float32)),
        query_texts=[q["text"] for q in queries],
        queries=unit(np.asarray(query_vectors, dtype=np.float32)),
    )


def stored_embeddings(data: Corpus) -> Any:
    """A LangChain ``Embeddings`` mapping each known text to its stored vector."""
    from langchain_core.embeddings import Embeddings

    table = dict(zip(data.texts, data.vectors, strict=True))
    table.update(zip(data.query_texts, data.queries, strict=True))

    def vector(text: str) -> list[float]:
        if text in table:
            return list(table[text].tolist())
        # Unknown texts (langchain-qdrant embeds "dummy_text" to learn the size): a fixed
        # random unit vector, the same on every call.
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        return list(unit(np.random.default_rng(seed).normal(size=(1, 384)))[0].tolist())

    class StoredEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [vector(text) for text in texts]

        def embed_query(self, text: str) -> list[float]:
            return vector(text)

    return StoredEmbeddings()


@cache
def artifact(directory: Path) -> Path:
    """A PCA compressor (``mrl_64``, ``mrl_128``) fitted on the SciFact vectors, saved once."""
    import mrl_compress

    path = directory / "scifact.mrlc"
    if not path.exists():
        fitted = mrl_compress.fit(
            corpus().vectors, "pca", dims=(64, 128), holdout=200, eval_docs=500
        )
        fitted.compressor.save(path)
    return path


def langchain_payloads(data: Corpus) -> list[dict[str, Any]]:
    """langchain-qdrant's payload layout: ``page_content`` + nested ``metadata``."""
    return [
        {
            "page_content": text,
            "metadata": {"doc_id": doc_id, "title": title, "half": "a" if i % 2 else "b"},
        }
        for i, (doc_id, title, text) in enumerate(
            zip(data.ids, data.titles, data.texts, strict=True)
        )
    ]


def build_edge(uri: str, collection: str, compressor: Any, data: Corpus) -> None:
    """An Edge collection in langchain-qdrant's layout with the compressor's outputs added."""
    from mrl_compress.adapters import VectorField, connect

    store = connect(uri)
    store.create_collection(collection, [VectorField("", "dense", 384, "cosine")])
    ids = list(range(len(data.ids)))
    store.upsert(collection, ids, {"": data.vectors}, langchain_payloads(data))
    store.add_outputs(collection, compressor.outputs)
    store.write_outputs(collection, ids, compressor.encode(data.vectors))
    store.close()
