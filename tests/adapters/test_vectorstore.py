"""MatryoshkaVectorStore: the langchain-tests standard vector-store suite on Qdrant Edge,
qdrant-client local mode and Milvus Lite; points it writes read back by langchain-qdrant and
langchain-milvus; refused input (a compressor the collection was not migrated with, bad
vectors) writes nothing; ids, filters, scores, async and the retriever it hands out."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_tests.integration_tests import VectorStoreIntegrationTests
from langchain_tests.integration_tests.vectorstores import EMBEDDING_SIZE

import mrl_compress
from mrl_compress.adapters import VectorField, connect
from mrl_compress.adapters.langchain import METADATA_KEY, MatryoshkaRetriever
from mrl_compress.adapters.langchain_store import ID_KEY, ID_NAMESPACE, MatryoshkaVectorStore
from mrl_compress.errors import Conflict, InvalidInput, NotFound
from tests.adapters.scifact_sample import artifact, corpus, langchain_payloads, stored_embeddings


@cache
def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="mrl-vectorstore-"))


@cache
def small_compressor() -> mrl_compress.Compressor:
    """PCA to 2 and 4 dims, fitted on random vectors of the standard suite's embedding size
    (langchain-tests' DeterministicFakeEmbedding draws its vectors from a normal law)."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(512, EMBEDDING_SIZE)).astype(np.float32)
    return mrl_compress.fit(vectors, "pca", dims=(2, 4), holdout=128, eval_docs=256).compressor


@cache
def scifact_compressor() -> mrl_compress.Compressor:
    """PCA 64/128 on the SciFact MiniLM vectors (the retriever tests' artifact)."""
    return mrl_compress.load(artifact(workdir()))


def fake() -> Embeddings:
    return DeterministicFakeEmbedding(size=EMBEDDING_SIZE)


def fresh(store: Any, embeddings: Embeddings | None = None, **settings: Any) -> Any:
    """A new empty collection made by MatryoshkaVectorStore.create on ``store``."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    return MatryoshkaVectorStore.create(
        store, name, embeddings or fake(), small_compressor(), **settings
    )


def count(vectorstore: MatryoshkaVectorStore) -> int:
    return vectorstore.store.describe(vectorstore.collection).count


@pytest.fixture(scope="module")
def edge() -> Iterator[Any]:
    store = connect(f"edge:{workdir() / 'edge'}")
    yield store
    store.close()


# -- the standard suite ------------------------------------------------------------------------


class StandardSuite(VectorStoreIntegrationTests):
    """Every test gets an empty collection with the full vector and the compressor's
    outputs (``MatryoshkaVectorStore.create``), dropped afterwards. No standard test is
    skipped or overridden: sync, async and get_by_ids all run."""

    @pytest.fixture
    def vectorstore(self, engine: Any) -> Iterator[MatryoshkaVectorStore]:  # type: ignore[override]
        vectorstore = fresh(engine, self.get_embeddings())
        try:
            yield vectorstore
        finally:
            engine.drop_collection(vectorstore.collection)


class TestEdgeStandard(StandardSuite):
    @pytest.fixture(scope="class")
    def engine(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
        store = connect(f"edge:{tmp_path_factory.mktemp('edge-suite')}")
        yield store
        store.close()


class TestQdrantLocalStandard(StandardSuite):
    @pytest.fixture(scope="class")
    def engine(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
        store = connect(f"qdrant-local:{tmp_path_factory.mktemp('qdrant-suite')}")
        yield store
        store.close()


class TestMilvusLiteStandard(StandardSuite):
    @pytest.fixture(scope="class")
    def engine(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
        store = connect(f"milvus:{tmp_path_factory.mktemp('milvus-suite') / 'suite.db'}")
        yield store
        store.close()


# -- one upsert, every output ------------------------------------------------------------------


class Recording:
    """A store that records the writes passed to it."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.upserts: list[tuple[Any, ...]] = []

    def upsert(self, *args: Any) -> None:
        self.upserts.append(args)
        self._store.upsert(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_one_upsert_writes_the_full_vector_and_every_output(edge: Any) -> None:
    recording = Recording(edge)
    vectorstore = fresh(recording)
    texts = [f"text {i}" for i in range(300)]
    ids = vectorstore.add_texts(texts, [{"i": i} for i in range(300)], batch_size=64)
    assert len(recording.upserts) == 1
    collection, point_ids, vectors, payloads = recording.upserts[0]
    assert collection == vectorstore.collection and list(point_ids) == ids
    assert set(vectors) == {"", "mrl_2", "mrl_4"}
    full = np.asarray(fake().embed_documents(texts), dtype=np.float32)
    np.testing.assert_array_equal(vectors[""], full)
    for name, encoded in small_compressor().encode(full).items():
        np.testing.assert_allclose(vectors[name], encoded, atol=1e-6)
    assert payloads[7] == {"page_content": "text 7", "metadata": {"i": 7}}  # langchain-qdrant's
    assert all(uuid.UUID(i) and str(uuid.UUID(i)) == i for i in ids)  # generated UUID strings
    assert count(vectorstore) == 300


# -- refused input writes nothing --------------------------------------------------------------


def test_a_collection_without_the_outputs_is_refused(edge: Any) -> None:
    name = f"plain_{uuid.uuid4().hex[:8]}"
    edge.create_collection(name, [VectorField("", "dense", EMBEDDING_SIZE, "cosine")])
    with pytest.raises(NotFound) as error:
        MatryoshkaVectorStore.from_existing(edge, name, fake(), small_compressor())
    message = str(error.value)
    assert "\n" not in message and "mrl-compress migrate" in message
    assert message.startswith(f"collection '{name}' has no field for the compressor's output(s) "
                              "mrl_2, mrl_4")  # fmt: skip
    with pytest.raises(NotFound):  # from_texts on it: refused before anything is embedded
        MatryoshkaVectorStore.from_texts(["a"], fake(), store=edge, collection=name,
                                         compressor=small_compressor())  # fmt: skip
    assert edge.describe(name).count == 0


def test_another_artifact_is_refused(edge: Any) -> None:
    vectorstore = fresh(edge)
    # outputs of other sizes (here: a 3-d and a 4-d output, one not in the collection)
    rng = np.random.default_rng(1)
    other = mrl_compress.fit(rng.normal(size=(512, EMBEDDING_SIZE)).astype(np.float32),
                             "truncate", dims=(3, 4), holdout=128, eval_docs=256).compressor
    with pytest.raises(NotFound, match="no field for the compressor's output.s. mrl_3.*"
                                       "mrl-compress migrate"):  # fmt: skip
        MatryoshkaVectorStore.from_existing(edge, vectorstore.collection, fake(), other)
    # an output of the same name and another size
    name = f"sized_{uuid.uuid4().hex[:8]}"
    edge.create_collection(name, [VectorField("", "dense", EMBEDDING_SIZE, "cosine"),
                                  VectorField("mrl_2", "dense", 3, "cosine"),
                                  VectorField("mrl_4", "dense", 4, "cosine")])  # fmt: skip
    with pytest.raises(InvalidInput) as error:
        MatryoshkaVectorStore.from_existing(edge, name, fake(), small_compressor())
    assert str(error.value).startswith(
        f"collection '{name}' holds 'mrl_2' as 3-d vectors but this compressor writes 2-d ones"
    )
    assert "mrl-compress migrate" in str(error.value)
    # a compressor of another input size
    wide = mrl_compress.fit(rng.normal(size=(512, 8)).astype(np.float32), "truncate",
                            dims=(2, 4), holdout=128, eval_docs=256).compressor  # fmt: skip
    with pytest.raises(InvalidInput, match="encodes 8-d vectors but .* holds 6-d ones"):
        MatryoshkaVectorStore.from_existing(edge, vectorstore.collection, fake(), wide)
    assert count(vectorstore) == 0 and edge.describe(name).count == 0


class Scripted(Embeddings):
    """Embeddings answering each text with a given vector."""

    def __init__(self, rows: dict[str, list[float]]) -> None:
        self.rows = rows

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.rows[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.rows[text]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([1.0] * (EMBEDDING_SIZE + 1),
         "the embeddings of the 300 texts are not 300 vectors of one length"),
        ([float("nan")] + [1.0] * (EMBEDDING_SIZE - 1),
         "1 of 300 embeddings are NaN/inf or all-zero (first: text 299, NaN/inf)"),
        ([float("inf")] + [1.0] * (EMBEDDING_SIZE - 1),
         "1 of 300 embeddings are NaN/inf or all-zero (first: text 299, NaN/inf)"),
        ([0.0] * EMBEDDING_SIZE,
         "1 of 300 embeddings are NaN/inf or all-zero (first: text 299, all-zero)"),
    ],
)  # fmt: skip
def test_a_bad_vector_refuses_the_whole_call(edge: Any, bad: list[float], message: str) -> None:
    """The last of 300 texts has a bad vector: nothing of the call reaches the store."""
    texts = [f"t{i}" for i in range(300)]
    good = fake().embed_documents(texts[:-1])
    embeddings = Scripted({**dict(zip(texts[:-1], good, strict=True)), texts[-1]: bad})
    recording = Recording(edge)
    vectorstore = fresh(recording, embeddings)
    with pytest.raises(InvalidInput) as error:
        vectorstore.add_texts(texts)
    assert str(error.value) == f"{message}; nothing was written"
    assert recording.upserts == [] and count(vectorstore) == 0


def test_wrong_dimension_and_mismatched_arguments_write_nothing(edge: Any) -> None:
    vectorstore = fresh(edge, DeterministicFakeEmbedding(size=EMBEDDING_SIZE + 2))
    with pytest.raises(InvalidInput) as error:
        vectorstore.add_texts(["a", "b"])
    assert str(error.value) == (
        "the embeddings are 8-d but the full vector '' holds 6-d ones: another embedding "
        "model? nothing was written"
    )
    vectorstore = fresh(edge)
    with pytest.raises(InvalidInput, match="got 2 texts but 1 metadatas; nothing was written"):
        vectorstore.add_texts(["a", "b"], [{}])
    with pytest.raises(InvalidInput, match="got 2 texts but 3 ids; nothing was written"):
        vectorstore.add_texts(["a", "b"], ids=["1", "2", "3"])
    with pytest.raises(InvalidInput, match="id '1' is given twice in one call"):
        vectorstore.add_texts(["a", "b"], ids=["1", "1"])
    with pytest.raises(InvalidInput, match="add_texts got unknown argument.s. upsert_mode"):
        vectorstore.add_texts(["a"], upsert_mode="x")
    assert count(vectorstore) == 0
    with pytest.raises(Conflict, match="already exists: open it with"):
        MatryoshkaVectorStore.create(edge, vectorstore.collection, fake(), small_compressor())


def test_a_field_this_store_cannot_fill_refuses_writes_not_searches(edge: Any) -> None:
    """langchain-qdrant's hybrid mode keeps a sparse ``langchain-sparse`` vector: a point
    written here would lack it (langchain-qdrant's sparse and hybrid search would miss it)."""
    name = f"hybrid_{uuid.uuid4().hex[:8]}"
    edge.create_collection(name, [VectorField("", "dense", EMBEDDING_SIZE, "cosine"),
                                  VectorField("langchain-sparse", "sparse", None, None)] + [
        VectorField(o.name, o.kind, o.size, o.distance) for o in small_compressor().outputs
    ])  # fmt: skip
    vectorstore = MatryoshkaVectorStore.from_existing(edge, name, fake(), small_compressor())
    with pytest.raises(InvalidInput, match="has vector field.s. 'langchain-sparse' besides the "
                                           "full vector and the compressor's outputs"):
        vectorstore.add_texts(["a"])
    assert vectorstore.similarity_search("a") == [] and count(vectorstore) == 0


# -- ids ---------------------------------------------------------------------------------------


def test_qdrant_ids_round_trip(edge: Any) -> None:
    """Qdrant takes unsigned integers and UUIDs as point ids: other ids are kept in the
    payload of the point ``uuid5(ID_NAMESPACE, id)``; every form comes back as given."""
    vectorstore = fresh(edge)
    hex_uuid = uuid.uuid4().hex  # langchain-qdrant's own id form
    given = ["7", "foo", hex_uuid, "007", str(uuid.uuid4())]
    assert vectorstore.add_texts(["a", "b", "c", "d", "e"], ids=given) == given
    batch = edge.retrieve(vectorstore.collection, [7, str(uuid.uuid5(ID_NAMESPACE, "foo"))], [""])
    assert batch.ids == [7, str(uuid.uuid5(ID_NAMESPACE, "foo"))]
    assert ID_KEY not in batch.payloads[0] and batch.payloads[1][ID_KEY] == "foo"
    found = vectorstore.get_by_ids(given)
    assert [d.id for d in found] == given and [d.page_content for d in found] == list("abcde")
    assert {d.id for d in vectorstore.similarity_search("b", k=5)} == set(given)
    retrieved = vectorstore.as_retriever(k=5).invoke("b")  # the retriever gives them back too
    assert {d.id for d in retrieved} == set(given)
    assert all(ID_KEY not in d.metadata for d in retrieved)
    vectorstore.delete(["foo", hex_uuid])
    assert [d.id for d in vectorstore.get_by_ids(given)] == ["7", "007", given[4]]


def test_milvus_integer_keys(tmp_path: Path) -> None:
    """A Milvus collection with INT64 keys (the adapter's own layout): integer ids only;
    generated ids are positive INT64s; other ids are never found, and refused on write."""
    store = connect(f"milvus:{tmp_path / 'int.db'}")
    fields = [VectorField("full", "dense", EMBEDDING_SIZE, "cosine")] + [
        VectorField(o.name, o.kind, o.size, o.distance) for o in small_compressor().outputs
    ]
    store.create_collection("ints", fields)
    vectorstore = MatryoshkaVectorStore.from_existing(store, "ints", fake(), small_compressor())
    assert (vectorstore.full_vector, vectorstore.layout.text_key) == ("full", "text")
    ids = vectorstore.add_texts(["a", "b"], [{"n": 1}, {"n": 2}])
    assert all(0 < int(i) < 2**63 for i in ids)
    assert vectorstore.add_texts(["c"], ids=["12"]) == ["12"]
    with pytest.raises(InvalidInput, match="has integer ids: 'x' is not one; nothing was"):
        vectorstore.add_texts(["d"], ids=["x"])
    with pytest.raises(InvalidInput, match="metadata key 'text' is taken by the collection's"):
        vectorstore.add_texts(["d"], [{"text": "another"}])
    assert vectorstore.get_by_ids(["x", "12"]) == [Document(id="12", page_content="c")]
    vectorstore.delete(["x", ids[0]])
    assert [d.metadata for d in vectorstore.similarity_search("a", k=5)] in (
        [{"n": 2}, {}], [{}, {"n": 2}])  # fmt: skip
    store.close()


# -- search ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scifact_edge(edge: Any) -> MatryoshkaVectorStore:
    """300 SciFact abstracts written through MatryoshkaVectorStore.from_texts on Edge."""
    data = corpus()
    n = 300
    return MatryoshkaVectorStore.from_texts(
        data.texts[:n], stored_embeddings(data),
        [p["metadata"] for p in langchain_payloads(data)[:n]],
        ids=[str(i) for i in range(n)], store=edge, collection="scifact",
        compressor=scifact_compressor(),
    )  # fmt: skip


def test_scores_filters_and_search_settings(scifact_edge: MatryoshkaVectorStore) -> None:
    data = corpus()
    vectors = data.vectors[:300]
    query = data.query_texts[0]
    scored = scifact_edge.similarity_search_with_score(query, k=5)
    exact = np.argsort(-(vectors @ data.queries[0]))[:5]
    assert [d.id for d, _ in scored] == [str(i) for i in exact]  # PCA 64, 50 candidates of 300
    for doc, score in scored:
        assert score == pytest.approx(float(vectors[int(doc.id)] @ data.queries[0]), abs=1e-4)
        assert doc.metadata == langchain_payloads(data)[int(doc.id)]["metadata"]
    by_vector = scifact_edge.similarity_search_by_vector(data.queries[0].tolist(), k=5)
    assert [d.id for d in by_vector] == [d.id for d, _ in scored]
    relevance = scifact_edge.similarity_search_with_relevance_scores(query, k=2)
    assert relevance[0][1] == pytest.approx((1 + scored[0][1]) / 2)
    half = scifact_edge.similarity_search(query, k=5, filter={"metadata.half": "a"})
    assert {d.metadata["half"] for d in half} == {"a"}
    assert [d.id for d in scifact_edge.similarity_search(query, k=3, stage1="mrl_128",
                                                         oversample=3)] == [
        str(i) for i in exact[:3]]  # fmt: skip
    with pytest.raises(InvalidInput, match="unknown search argument.s. fetch_k: a search"):
        scifact_edge.similarity_search(query, fetch_k=3)
    with pytest.raises(InvalidInput, match="compressor has no output 'mrl_32'"):
        scifact_edge.similarity_search(query, stage1="mrl_32")
    with pytest.raises(InvalidInput, match="k must be a positive integer, not 0"):
        scifact_edge.similarity_search(query, k=0)


async def test_async_twins_answer_as_the_sync_calls(scifact_edge: MatryoshkaVectorStore) -> None:
    data = corpus()
    for query in data.query_texts[:3]:
        sync = scifact_edge.similarity_search_with_score(query, k=4)
        assert await scifact_edge.asimilarity_search_with_score(query, k=4) == sync
    vector = data.queries[1].tolist()
    assert await scifact_edge.asimilarity_search_by_vector(vector, k=3) == \
        scifact_edge.similarity_search_by_vector(vector, k=3)  # fmt: skip
    assert await scifact_edge.aget_by_ids(["3", "1"]) == scifact_edge.get_by_ids(["3", "1"])


def test_as_retriever_is_the_two_stage_retriever(scifact_edge: MatryoshkaVectorStore) -> None:
    data = corpus()
    retriever = scifact_edge.as_retriever(search_kwargs={"k": 3, "oversample": 5})
    assert isinstance(retriever, MatryoshkaRetriever)
    assert (retriever.k, retriever.stage1, retriever.oversample) == (3, "mrl_64", 5)
    assert retriever.store is scifact_edge.store and retriever.collection == "scifact"
    assert "MatryoshkaVectorStore" in (retriever.tags or [])
    docs = retriever.invoke(data.query_texts[0])
    theirs = scifact_edge.similarity_search(data.query_texts[0], k=3, oversample=5)
    assert [d.id for d in docs] == [d.id for d in theirs]
    assert [d.page_content for d in docs] == [d.page_content for d in theirs]
    assert docs[0].metadata[METADATA_KEY]["stage1"] == "mrl_64"
    filtered = scifact_edge.as_retriever(k=5, filter={"metadata.half": "b"}, stage1="mrl_128")
    assert {d.metadata["half"] for d in filtered.invoke(data.query_texts[1])} == {"b"}
    with pytest.raises(InvalidInput, match="search_type 'mmr' is not offered"):
        scifact_edge.as_retriever(search_type="mmr")
    with pytest.raises(InvalidInput, match="unknown retriever argument.s. fetch_k"):
        scifact_edge.as_retriever(search_kwargs={"fetch_k": 20})


def test_langchain_metadata_adds_the_integrations_keys(scifact_edge: MatryoshkaVectorStore) -> None:
    data = corpus()
    plain = scifact_edge.similarity_search(data.query_texts[0], k=1)[0]
    extra = MatryoshkaVectorStore.from_existing(
        scifact_edge.store, "scifact", scifact_edge.embeddings, scifact_compressor(),
        langchain_metadata=True,
    ).similarity_search(data.query_texts[0], k=1)[0]  # fmt: skip
    assert extra.metadata == {**plain.metadata, "_id": int(plain.id or -1),
                              "_collection_name": "scifact"}  # fmt: skip


# -- read back by the LangChain integrations ---------------------------------------------------


def test_langchain_qdrant_reads_what_we_write() -> None:
    """Written by MatryoshkaVectorStore (new collection, qdrant-client local mode), read by
    langchain-qdrant's QdrantVectorStore on the same client: search and get_by_ids."""
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from mrl_compress.adapters.qdrant import QdrantStore

    data = corpus()
    n = 300
    client = QdrantClient(":memory:")
    store = QdrantStore("qdrant-local::memory:", client=client)
    embeddings = stored_embeddings(data)
    metadatas = [p["metadata"] for p in langchain_payloads(data)[:n]]
    ours = MatryoshkaVectorStore.from_texts(
        data.texts[:n], embeddings, metadatas, store=store, collection="lc",
        compressor=scifact_compressor(),
    )  # fmt: skip
    extra = ours.add_texts([data.texts[n], data.texts[n + 1]], [{"tag": 1}, {"tag": 2}],
                           ids=["foo", "41"])  # fmt: skip
    assert extra == ["foo", "41"]
    assert store.describe("lc").langchain == "qdrant"
    theirs = QdrantVectorStore(client=client, collection_name="lc", embedding=embeddings)

    def plain(doc: Document) -> tuple[Any, str, dict[str, Any]]:
        metadata = dict(doc.metadata)
        point = metadata.pop("_id")
        assert metadata.pop("_collection_name") == "lc"
        return str(point), doc.page_content, metadata

    for query in data.query_texts[:5]:
        mine = ours.similarity_search(query, k=5)
        assert [plain(d) for d in theirs.similarity_search(query, k=5)] == [
            (d.id, d.page_content, d.metadata) for d in mine
        ]
    some = [d.id or "" for d in ours.similarity_search(data.query_texts[0], k=3)]
    assert [plain(d) for d in theirs.get_by_ids(some)] == [
        (d.id, d.page_content, d.metadata) for d in ours.get_by_ids(some)
    ]
    # "foo" is no Qdrant id: langchain-qdrant finds its point under uuid5(ID_NAMESPACE, "foo")
    point = str(uuid.uuid5(ID_NAMESPACE, "foo"))
    [found] = theirs.get_by_ids([point])
    assert plain(found) == (point, data.texts[n], {"tag": 1})
    assert [(d.id, d.page_content) for d in ours.get_by_ids(["foo", "41"])] == [
        ("foo", data.texts[n]), ("41", data.texts[n + 1])]  # fmt: skip
    client.close()


def test_langchain_milvus_reads_a_collection_we_created(tmp_path: Path) -> None:
    """A new Milvus Lite collection in langchain-milvus's layout (pk, text, vector, dynamic
    metadata): langchain-milvus's Milvus searches it and reads every point by its pk."""
    from langchain_milvus import Milvus

    data = corpus()
    n = 200
    uri = str(tmp_path / "lc.db")
    embeddings = stored_embeddings(data)
    metadatas = [p["metadata"] for p in langchain_payloads(data)[:n]]
    ours = MatryoshkaVectorStore.from_texts(
        data.texts[:n], embeddings, metadatas, store=f"milvus:{uri}", collection="lc",
        compressor=scifact_compressor(),
    )  # fmt: skip
    assert ours.layout.langchain == "milvus" and ours.full_vector == "vector"
    theirs = Milvus(embeddings, connection_args={"uri": uri}, collection_name="lc",
                    auto_id=False, enable_dynamic_field=True)  # fmt: skip
    outputs = {o.name for o in scifact_compressor().outputs}

    def plain(doc: Document) -> tuple[str, str, dict[str, Any]]:
        # langchain-milvus returns every field but its own vector: the compressed ones too
        metadata = {k: v for k, v in doc.metadata.items() if k not in outputs}
        return str(metadata.pop("pk")), doc.page_content, metadata

    for query in data.query_texts[:3]:
        found = theirs.similarity_search(query, k=5)
        assert outputs <= set(found[0].metadata)
        assert [plain(d) for d in found] == [
            (d.id, d.page_content, d.metadata) for d in ours.similarity_search(query, k=5)
        ]
    ids = [d.id or "" for d in ours.similarity_search(data.query_texts[0], k=4)]
    by_pk = theirs.search_by_metadata(f"pk in {json.dumps(ids)}", limit=10)
    assert sorted((r.metadata["pk"], r.page_content) for r in by_pk) == sorted(
        (d.id, d.page_content) for d in ours.get_by_ids(ids)
    )
    ours.store.close()


@pytest.mark.parametrize("keys", ["given", "auto_id"])
def test_langchain_milvus_reads_what_we_write_into_its_migrated_collection(
    tmp_path: Path, keys: str
) -> None:
    """A langchain-milvus collection (one scalar field per metadata key, its default; string
    keys given by the application, or INT64 ``auto_id`` keys when it gave none), copied with
    the outputs as migration does; documents added to the copy through MatryoshkaVectorStore
    are searched by Milvus on the copy. Keys that are no field are dropped (as
    langchain-milvus drops them); a missing field is refused. langchain-milvus's own
    ``add_texts`` is refused there: it writes no compressed field, and Milvus needs them all."""
    from langchain_milvus import Milvus

    data = corpus()
    n = 200
    uri = str(tmp_path / "lc.db")
    embeddings = stored_embeddings(data)
    metadatas = [{"doc_id": i, "title": t} for i, t in zip(data.ids, data.titles, strict=True)]
    Milvus.from_texts(
        data.texts[:n], embeddings, metadatas=metadatas[:n], connection_args={"uri": uri},
        collection_name="lc", ids=[f"d{i}" for i in range(n)] if keys == "given" else None,
        index_params={"index_type": "FLAT", "metric_type": "COSINE"},
    )  # fmt: skip
    store = connect(f"milvus:{uri}")
    compressor = scifact_compressor()
    fields = [store.describe("lc").fields["vector"]] + [
        VectorField(o.name, o.kind, o.size, o.distance) for o in compressor.outputs
    ]
    store.create_collection("lc_mrl", fields, like="lc")
    for batch in store.iter_batches("lc", "vector"):
        store.upsert("lc_mrl", batch.ids, {"vector": batch.vectors,
                                           **compressor.encode(batch.vectors)}, batch.payloads)
    ours = MatryoshkaVectorStore.from_existing(store, "lc_mrl", embeddings, compressor)
    new = list(range(n, n + 20))
    added = ours.add_texts([data.texts[i] for i in new],
                           [{**metadatas[i], "extra": "dropped"} for i in new])  # fmt: skip
    with pytest.raises(InvalidInput, match="keeps metadata in the fields doc_id, title: every "
                                           "document needs them .missing: title."):
        ours.add_texts(["x"], [{"doc_id": "1"}])
    assert all(isinstance(i, str) and (keys == "given") != i.isdigit() for i in added)
    theirs = Milvus(embeddings, connection_args={"uri": uri}, collection_name="lc_mrl",
                    auto_id=keys == "auto_id")  # fmt: skip
    from pymilvus.exceptions import DataNotMatchException

    with pytest.raises(DataNotMatchException, match="missed an field `mrl_64`"):
        theirs.add_texts(["y"], [metadatas[0]], ids=None if keys == "auto_id" else ["y"])
    outputs = {o.name for o in compressor.outputs}
    key = int if keys == "auto_id" else str  # the type of langchain-milvus's metadata["pk"]
    for i in new[:5]:
        query = data.texts[i]
        found = theirs.similarity_search(query, k=3)
        mine = ours.similarity_search(query, k=3)
        assert found[0].page_content == query and mine[0].id == added[i - n]
        assert [(d.page_content, {k: v for k, v in d.metadata.items() if k not in outputs})
                for d in found] == [
            (d.page_content, {"pk": key(d.id or ""), **d.metadata}) for d in mine]  # fmt: skip
        assert mine[0].metadata == metadatas[i]
    store.close()
