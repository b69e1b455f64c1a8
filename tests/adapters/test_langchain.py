"""MatryoshkaRetriever on real SciFact vectors: Qdrant Edge, qdrant-client local mode (a
langchain-qdrant collection), Milvus Lite (a langchain-milvus collection), the langchain-tests
standard retriever suite, the async client path, and serving without torch."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests

import mrl_compress
from mrl_compress.adapters import VectorField, connect
from mrl_compress.adapters.langchain import METADATA_KEY, MatryoshkaRetriever
from mrl_compress.errors import InvalidInput
from tests.adapters.scifact_sample import (
    artifact as fit_artifact,
)
from tests.adapters.scifact_sample import (
    build_edge,
    corpus,
    langchain_payloads,
    stored_embeddings,
)

ROOT = Path(__file__).resolve().parents[2]


@cache
def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="mrl-langchain-"))


def fresh_edge(name: str) -> str:
    """A new Edge store with collection ``docs`` (langchain-qdrant layout + mrl_64, mrl_128).

    An Edge shard locks its WAL: one open store per directory and process.
    """
    uri = f"edge:{workdir() / name}"
    build_edge(uri, "docs", mrl_compress.load(fit_artifact(workdir())), corpus())
    return uri


@cache
def edge_store() -> Any:
    return connect(fresh_edge("shared"))


@pytest.fixture(scope="module")
def compressor() -> mrl_compress.Compressor:
    return mrl_compress.load(fit_artifact(workdir()))


@pytest.fixture(scope="module")
def retriever(compressor: mrl_compress.Compressor) -> MatryoshkaRetriever:
    return MatryoshkaRetriever(
        store=edge_store(), collection="docs", embeddings=stored_embeddings(corpus()),
        compressor=compressor, k=10, stage1="mrl_64", oversample=10,
    )  # fmt: skip


def ids_of(docs: list[Document]) -> list[str]:
    return [d.metadata["doc_id"] for d in docs]


def brute_force(query: np.ndarray, k: int, keep: np.ndarray | None = None) -> list[str]:
    data = corpus()
    scores = data.vectors @ query
    if keep is not None:
        scores = np.where(keep, scores, -np.inf)
    return [data.ids[i] for i in np.argsort(-scores)[:k]]


def test_two_stage_answers_close_to_the_full_vectors(retriever: MatryoshkaRetriever) -> None:
    data = corpus()
    overlap = []
    for text, vector in zip(data.query_texts[:20], data.queries[:20], strict=True):
        docs = retriever.invoke(text)
        assert len(docs) == 10
        overlap.append(len(set(ids_of(docs)) & set(brute_force(vector, 10))) / 10)
    assert np.mean(overlap) >= 0.9  # PCA 64-d, 100 candidates of 2,000 documents


def test_a_csr_stage1_answers_as_numpy_does() -> None:
    """A pursuit csr stage 1 on Qdrant Edge: stored codes of 16 atoms, each query sent as its
    signed correlations with every atom (or the 128 largest), then the full-vector rerank —
    the same documents as the same two stages in numpy."""
    from mrl_compress import metrics

    data = corpus()
    csr = mrl_compress.fit(data.vectors, "csr", k=(16,), hidden=512, steps=30, holdout=200,
                           eval_docs=500).compressor
    uri = f"edge:{workdir() / 'csr'}"
    build_edge(uri, "docs", csr, data)
    store = connect(uri)
    codes = csr.encode(data.vectors)["csr_16"]
    queries = data.queries[:10]
    try:
        for nonzeros in (None, 128):
            retriever = MatryoshkaRetriever(
                store=store, collection="docs", embeddings=stored_embeddings(data),
                compressor=csr, k=10, stage1="csr_16", oversample=10, query_nonzeros=nonzeros,
            )  # fmt: skip
            asked = csr.encode_queries(queries, "csr_16", nonzeros)
            want = metrics.two_stage(asked, codes, queries, data.vectors, 10, 100)
            got = [ids_of(retriever.invoke(text)) for text in data.query_texts[:10]]
            assert got == [[data.ids[i] for i in row] for row in want]
    finally:
        store.close()


def test_documents_carry_text_metadata_score_and_stage(retriever: MatryoshkaRetriever) -> None:
    data = corpus()
    doc = retriever.invoke(data.query_texts[0], k=1)[0]
    row = data.ids.index(doc.metadata["doc_id"])
    assert doc.page_content == data.texts[row]
    assert doc.metadata["title"] == data.titles[row]
    assert doc.metadata["_id"] == row and doc.id == str(row)
    assert doc.metadata["_collection_name"] == "docs"
    score = float(data.vectors[row] @ data.queries[0])
    assert doc.metadata[METADATA_KEY] == {
        "score": pytest.approx(score, abs=1e-4), "stage1": "mrl_64", "oversample": 10,
    }  # fmt: skip


def test_settings_per_call(retriever: MatryoshkaRetriever) -> None:
    data = corpus()
    query = data.query_texts[1]
    assert len(retriever.invoke(query, k=3)) == 3
    docs = retriever.invoke(query, stage1="mrl_128", oversample=2)
    assert {d.metadata[METADATA_KEY]["stage1"] for d in docs} == {"mrl_128"}
    assert {d.metadata[METADATA_KEY]["oversample"] for d in docs} == {2}
    half = np.array([i % 2 == 1 for i in range(len(data.ids))])
    filtered = retriever.invoke(query, filter={"metadata.half": "a"})
    assert {d.metadata["half"] for d in filtered} == {"a"}
    assert ids_of(filtered)[:5] == brute_force(data.queries[1], 5, keep=half)
    # the retriever's own settings are untouched by per-call ones
    assert (retriever.k, retriever.stage1, retriever.oversample) == (10, "mrl_64", 10)


def test_filter_set_on_the_retriever(compressor: mrl_compress.Compressor) -> None:
    data = corpus()
    retriever = MatryoshkaRetriever(
        store=edge_store(), collection="docs", embeddings=stored_embeddings(data),
        compressor=compressor, filter={"metadata.half": "b"}, k=5,
    )  # fmt: skip
    assert {d.metadata["half"] for d in retriever.invoke(data.query_texts[2])} == {"b"}


async def test_ainvoke_matches_invoke(retriever: MatryoshkaRetriever) -> None:
    data = corpus()
    for text in data.query_texts[:5]:
        sync_docs = retriever.invoke(text, k=5)
        async_docs = await retriever.ainvoke(text, k=5)
        assert ids_of(async_docs) == ids_of(sync_docs)
    both = await asyncio.gather(*(retriever.ainvoke(t, k=2) for t in data.query_texts[:4]))
    assert [len(b) for b in both] == [2, 2, 2, 2]


def test_bad_settings_say_what_to_do(retriever: MatryoshkaRetriever) -> None:
    with pytest.raises(InvalidInput) as error:
        retriever.invoke("x", stage1="mrl_32")
    assert str(error.value) == "compressor has no output 'mrl_32'; it has mrl_64, mrl_128"
    with pytest.raises(InvalidInput) as error:
        retriever.invoke("x", top_k=3)
    assert str(error.value) == (
        "unknown retriever argument(s) top_k: per call it accepts k, stage1, oversample, filter, "
        "query_nonzeros"
    )
    with pytest.raises(InvalidInput) as error:
        retriever.invoke("x", k=0)
    assert str(error.value) == "k must be a positive integer, not 0"
    with pytest.raises(InvalidInput) as error:
        retriever.invoke("x", query_nonzeros=64)
    assert str(error.value) == "query_nonzeros applies to a sparse stage 1; 'mrl_64' is dense"


def test_compressor_path_and_default_stage1() -> None:
    data = corpus()
    retriever = MatryoshkaRetriever.from_store(
        fresh_edge("from_store"), "docs", embeddings=stored_embeddings(data),
        compressor=fit_artifact(workdir()),
    )  # fmt: skip
    docs = retriever.invoke(data.query_texts[0])
    assert len(docs) == 4  # LangChain's usual default k
    assert docs[0].metadata[METADATA_KEY]["stage1"] == "mrl_64"  # the first (smallest) output


# -- collections made by the LangChain integrations ------------------------------------------


def test_langchain_qdrant_collection(compressor: mrl_compress.Compressor) -> None:
    """Same page_content and metadata as langchain-qdrant returns from the same collection."""
    from langchain_qdrant import QdrantVectorStore

    from mrl_compress.adapters.qdrant import QdrantStore

    data = corpus()
    n = 600  # qdrant-client local mode inserts a few thousand points a second
    embeddings = stored_embeddings(data)
    metadatas = [p["metadata"] for p in langchain_payloads(data)[:n]]
    vectorstore = QdrantVectorStore.from_texts(
        data.texts[:n], embeddings, metadatas=metadatas, location=":memory:",
        collection_name="lc",
    )  # fmt: skip
    store = QdrantStore("qdrant-local::memory:", client=vectorstore.client)
    assert store.describe("lc").langchain == "qdrant"
    store.add_outputs("lc", compressor.outputs)
    for batch in store.iter_batches("lc", with_payload=False):
        store.write_outputs("lc", batch.ids, compressor.encode(batch.vectors))
    retriever = MatryoshkaRetriever(
        store=store, collection="lc", embeddings=embeddings, compressor=compressor, k=5
    )
    for query in data.query_texts[:5]:
        ours = retriever.invoke(query)
        theirs = vectorstore.similarity_search(query, k=5)
        for doc in ours:
            doc.metadata.pop(METADATA_KEY)
        assert [(d.page_content, d.metadata) for d in ours] == [
            (d.page_content, d.metadata) for d in theirs
        ]


def test_langchain_milvus_collection(compressor: mrl_compress.Compressor, tmp_path: Path) -> None:
    """Milvus cannot add a field in place: copy into a new collection, alias it, search it."""
    from langchain_milvus import Milvus

    data = corpus()
    n = 300
    embeddings = stored_embeddings(data)
    uri = str(tmp_path / "lc.db")
    metadatas = [{"doc_id": i, "title": t} for i, t in zip(data.ids, data.titles, strict=True)]
    vectorstore = Milvus.from_texts(
        data.texts[:n], embeddings, metadatas=metadatas[:n], connection_args={"uri": uri},
        collection_name="lc", index_params={"index_type": "FLAT", "metric_type": "COSINE"},
    )  # fmt: skip
    store = connect(f"milvus:{uri}")
    info = store.describe("lc")
    assert (info.langchain, info.text_key) == ("milvus", "text")
    fields = [info.fields["vector"]] + [
        VectorField(o.name, o.kind, o.size, o.distance) for o in compressor.outputs
    ]
    store.create_collection("lc_mrl", fields, like="lc")
    for batch in store.iter_batches("lc", "vector"):
        encoded = compressor.encode(batch.vectors)
        store.upsert("lc_mrl", batch.ids, {"vector": batch.vectors, **encoded}, batch.payloads)
    store.swap_alias("lc_live", "lc_mrl")
    retriever = MatryoshkaRetriever(
        store=store, collection="lc_live", embeddings=embeddings, compressor=compressor, k=5,
        full_vector="vector",
    )  # fmt: skip
    for query in data.query_texts[:3]:
        ours = retriever.invoke(query)
        theirs = vectorstore.similarity_search(query, k=5)
        for doc in ours:
            doc.metadata.pop(METADATA_KEY)
        assert [d.page_content for d in ours] == [d.page_content for d in theirs]
        assert [d.metadata for d in ours] == [d.metadata for d in theirs]
    store.close()


# -- async client ------------------------------------------------------------------------------


async def test_async_path_goes_through_async_qdrant_client(
    compressor: mrl_compress.Compressor,
) -> None:
    """A server store answers ``ainvoke`` through ``AsyncQdrantClient`` (here: one in memory,
    filled with the same points as the sync one, since no Qdrant server runs in the tests)."""
    from qdrant_client import AsyncQdrantClient, QdrantClient, models

    from mrl_compress.adapters.qdrant import QdrantStore

    data = corpus()
    n = 300
    sync_client, async_client = QdrantClient(":memory:"), AsyncQdrantClient(":memory:")
    encoded = compressor.encode(data.vectors[:n])
    config = {
        "": models.VectorParams(size=384, distance=models.Distance.COSINE),
        **{
            o.name: models.VectorParams(size=o.size, distance=models.Distance.COSINE)
            for o in compressor.outputs
        },
    }
    points = [
        models.PointStruct(
            id=i,
            vector={"": data.vectors[i].tolist(), **{k: v[i].tolist() for k, v in encoded.items()}},
            payload=p,
        )
        for i, p in enumerate(langchain_payloads(data)[:n])
    ]
    sync_client.create_collection("docs", vectors_config=config)
    sync_client.upsert("docs", points)
    await async_client.create_collection("docs", vectors_config=config)
    await async_client.upsert("docs", points)

    store = QdrantStore("qdrant-local::memory:", client=sync_client, async_client=async_client)
    retriever = MatryoshkaRetriever(
        store=store, collection="docs", embeddings=stored_embeddings(data),
        compressor=compressor, k=5,
    )  # fmt: skip
    sync_client.delete("docs", models.PointIdsList(points=[0, 1, 2]))  # tell the clients apart
    query = data.query_texts[0]
    async_ids = [d.metadata["_id"] for d in await retriever.ainvoke(query, k=n)]
    sync_ids = [d.metadata["_id"] for d in retriever.invoke(query, k=n)]
    assert len(async_ids) == n and len(sync_ids) == n - 3
    await store.aclose()


# -- serving imports no torch ------------------------------------------------------------------


def test_a_query_through_the_retriever_imports_no_torch() -> None:
    uri = fresh_edge("subprocess")
    path = fit_artifact(workdir())
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parents[2])!r})
from tests.adapters.scifact_sample import corpus, stored_embeddings
from mrl_compress import load
from mrl_compress.adapters.langchain import MatryoshkaRetriever
retriever = MatryoshkaRetriever.from_store({uri!r}, collection="docs",
    embeddings=stored_embeddings(corpus()), compressor=load({str(path)!r}), k=3)
docs = retriever.invoke(corpus().query_texts[0])
assert len(docs) == 3, docs
print(retriever.compressor.provider)
sys.exit(3 if "torch" in sys.modules else 0)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "CPUExecutionProvider"


# -- the standard suite ------------------------------------------------------------------------


class TestStandardRetrieverSuite(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[MatryoshkaRetriever]:
        return MatryoshkaRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {
            "store": edge_store(),
            "collection": "docs",
            "embeddings": stored_embeddings(corpus()),
            "compressor": mrl_compress.load(fit_artifact(workdir())),
            "stage1": "mrl_64",
        }

    @property
    def retriever_query_example(self) -> str:
        return corpus().query_texts[0]
