"""Qdrant specifics: langchain-qdrant collections survive a migration; server URIs and errors."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings
from langchain_qdrant import QdrantVectorStore

from mrl_compress.adapters import connect
from mrl_compress.adapters.qdrant import QdrantStore
from mrl_compress.adapters.qdrant_edge import EdgeStore
from mrl_compress.errors import InvalidInput, StoreError
from tests.adapters.wordnet_sample import OUTPUTS, encode

N = 200


class StoredEmbeddings(Embeddings):
    """Returns the stored MiniLM vector of a known text: no model needed, real geometry."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.table = {text: vector for text, vector in zip(texts, vectors, strict=True)}
        self.other = vectors[0]  # for texts it never stored (LangChain probes the dimension)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.table.get(text, self.other).tolist()


@pytest.mark.parametrize("vector_name", ["", "dense"])
def test_langchain_collection_keeps_working_after_migration(
    tmp_path, vectors, payloads, vector_name
):
    texts = [f"{p['title']}: {p['text']}" for p in payloads[:N]]
    embeddings = StoredEmbeddings(texts, vectors[:N])
    path = str(tmp_path / "qdrant")
    made = QdrantVectorStore.from_texts(
        texts,
        embeddings,
        metadatas=[{"doc_id": p["doc_id"], **p["meta"]} for p in payloads[:N]],
        ids=list(range(N)),
        path=path,
        collection_name="lc",
        vector_name=vector_name,
    )
    # local mode locks its folder to one client: share LangChain's
    store = QdrantStore(f"qdrant-local:{path}", client=made.client)
    info = store.describe("lc")
    assert (info.langchain, info.text_key, info.metadata_key) == (
        "qdrant",
        "page_content",
        "metadata",
    )
    assert info.fields[vector_name].size == 384 and info.count == N

    store.add_outputs("lc", OUTPUTS)
    for batch in store.iter_batches("lc", vector_name, batch_size=64):  # a migration's loop
        store.write_outputs("lc", batch.ids, encode(batch.vectors))
    assert set(store.describe("lc").fields) == {vector_name, "mrl_64", "csr"}

    query = vectors[7:8]
    small = encode(query)
    hits = store.two_stage_search("lc", query, "mrl_64", small["mrl_64"], 3, 10, vector_name)
    assert hits[0][0].id == 7 and hits[0][0].payload["page_content"] == texts[7]
    hits = store.two_stage_search(
        "lc", query, "csr", small["csr"], 3, 10, vector_name, filter={"metadata.parity": "even"}
    )
    assert [h.payload["metadata"]["parity"] for h in hits[0]] == ["even"] * 3
    store.close()

    reopened = QdrantVectorStore.from_existing_collection(
        collection_name="lc", embedding=embeddings, path=path, vector_name=vector_name
    )
    found = reopened.similarity_search(texts[11], k=1)
    assert found[0].page_content == texts[11]
    assert found[0].metadata["doc_id"] == payloads[11]["doc_id"]
    reopened.client.close()


def test_unreachable_server_is_one_clear_error():
    with pytest.raises(StoreError) as error:
        QdrantStore("qdrant://127.0.0.1:9")
    message = str(error.value)
    assert message.startswith("cannot reach Qdrant at http://127.0.0.1:9 after 3 tries: ")
    assert "\n" not in message


def test_api_key_in_uri_is_refused():
    with pytest.raises(InvalidInput) as error:
        QdrantStore("qdrants://admin:s3cret@example.com:6333")
    assert "QDRANT_API_KEY" in str(error.value) and "s3cret" not in str(error.value)


def test_connect_picks_the_qdrant_backends(tmp_path):
    memory = connect("qdrant-local::memory:")
    edge = connect(f"edge:{tmp_path}/shards")
    assert isinstance(memory, QdrantStore) and isinstance(edge, EdgeStore)
    memory.close()
    edge.close()


def test_search_reads_the_collection_once_and_sees_fields_added_elsewhere(
    tmp_path, vectors, queries
):
    """A search costs one engine request; a field another writer adds is still found."""
    from qdrant_client import models

    from mrl_compress.adapters import VectorField

    store = QdrantStore(f"qdrant-local:{tmp_path / 'q'}")
    store.create_collection("docs", [VectorField("dense", "dense", vectors.shape[1], "cosine")])
    store.upsert("docs", list(range(N)), {"dense": vectors[:N]})
    first = store.search("docs", "dense", queries[:3], k=5)
    reads = []
    store._fields = lambda c, _f=store._fields: reads.append(c) or _f(c)  # type: ignore[method-assign]
    assert store.search("docs", "dense", queries[:3], k=5) == first
    assert reads == []  # served from what the first search read
    # another writer adds a named vector behind this store's back
    config = models.DenseVectorNameConfig(dense=models.DenseVectorConfig(
        size=64, distance=models.Distance.COSINE))
    store._client.create_vector_name("docs", "mrl_64", config)
    small = encode(vectors[:N])["mrl_64"]
    store._client.update_vectors("docs", [
        models.PointVectors(id=i, vector={"mrl_64": small[i].tolist()}) for i in range(N)])
    hits = store.two_stage_search("docs", queries[:3], "mrl_64", encode(queries[:3])["mrl_64"],
                                  k=5, oversample=N // 5, full_vector="dense")  # all N reranked
    assert reads == ["docs"]  # the unknown field made it read the collection again
    assert [[h.id for h in row] for row in hits] == [[h.id for h in row] for row in first]
    store.close()
