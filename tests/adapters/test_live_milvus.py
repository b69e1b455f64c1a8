"""Live collections on Milvus Lite (issue 14): an application's langchain-milvus collection
behind an alias is copied by ``migrate --mode copy --swap``, then the application keeps
writing through langchain-milvus itself and searches through ``MatryoshkaRetriever``.

Real SciFact abstracts and their stored MiniLM vectors, a real PCA compressor; numpy brute
force over what the collection should now hold is the oracle.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
pytest.importorskip("langchain_milvus")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402

import mrl_compress  # noqa: E402
from mrl_compress import migration  # noqa: E402
from mrl_compress.adapters import connect  # noqa: E402
from mrl_compress.adapters.langchain import MatryoshkaRetriever  # noqa: E402
from mrl_compress.adapters.milvus import MilvusStore  # noqa: E402
from tests.adapters.scifact_sample import Corpus, artifact, corpus, stored_embeddings  # noqa: E402

N = 400  # documents the application wrote before the migration
DELETED_BEFORE = slice(100, 130)  # keys the application deleted before it: keys are not 1..n
K = 5


class OutputEmbeddings(Embeddings):
    """One compressor output as a LangChain ``Embeddings``: given one per output beside the
    model's own, langchain-milvus writes every field of a migrated collection itself."""

    def __init__(self, model: Embeddings, compressor: mrl_compress.Compressor, name: str):
        self.model, self.compressor, self.name = model, compressor, name

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        full = np.asarray(self.model.embed_documents(texts), dtype=np.float32)
        return self.compressor.encode(full)[self.name].tolist()  # type: ignore[union-attr]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


@dataclass
class Live:
    db: Path
    store: MilvusStore
    data: Corpus
    embeddings: Embeddings
    compressor: mrl_compress.Compressor
    plan: migration.Plan
    report: migration.Report
    source: dict[int, int]
    """Key -> row of ``data`` of every point in the collection when it was migrated."""

    def langchain(self, *outputs: str) -> Any:
        """The application's ``langchain_milvus.Milvus`` on the alias, with an embedding
        per named output beside the model's."""
        from langchain_milvus import Milvus

        functions = [self.embeddings] + [OutputEmbeddings(self.embeddings, self.compressor, o)
                                         for o in outputs]  # fmt: skip
        return Milvus(functions if outputs else self.embeddings,
                      vector_field=["vector", *outputs] if outputs else "vector",
                      collection_name="docs_live", connection_args={"uri": str(self.db)},
                      auto_id=True)  # fmt: skip


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from langchain_milvus import Milvus

    tmp = tmp_path_factory.mktemp("live")
    data, db = corpus(), tmp / "live.db"
    embeddings = stored_embeddings(data)
    metadatas = [{"doc_id": i, "title": t} for i, t in zip(data.ids, data.titles, strict=True)]
    # as the user's application did: no ids, so langchain-milvus makes auto_id INT64 keys
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No ids provided and auto_id is False..."
        Milvus.from_texts(data.texts[:N], embeddings, metadatas=metadatas[:N],
                          connection_args={"uri": str(db)}, collection_name="docs_v1")  # fmt: skip
    store = connect(f"milvus:{db}")
    assert isinstance(store, MilvusStore)
    keys = sorted(k for chunk in store.point_ids("docs_v1") for k in chunk)
    store.delete("docs_v1", keys[DELETED_BEFORE])
    store._client.create_alias("docs_v1", "docs_live")  # the application's own alias
    row_of = {t: i for i, t in enumerate(data.texts)}
    source = {int(key): row_of[payload["text"]]
              for batch in store.iter_batches("docs_v1", "vector")
              for key, payload in zip(batch.ids, batch.payloads, strict=True)}  # fmt: skip
    path = artifact(tmp)
    plan = migration.plan(store, "docs_live", path, mode="copy", swap=True, batch_size=100,
                          checkpoint=tmp / "ck.json")  # fmt: skip
    report = migration.run(plan, store)
    yield Live(db, store, data, embeddings, mrl_compress.load(path), plan, report, source)
    store.close()


def test_the_copy_keeps_the_primary_key_settings_and_the_keys(live: Live) -> None:
    assert live.report.ok and live.report.mode == "copy"
    assert live.report.swapped == "docs_live" and live.report.collection == "docs_live_mrl"
    client = live.store._client
    before, after = client.describe_collection("docs_v1"), client.describe_collection("docs_live")
    assert after["collection_name"] == "docs_live_mrl"

    def settings(described: dict[str, Any]) -> dict[str, Any]:
        return {f["name"]: {k: v for k, v in f.items() if k != "field_id"}
                for f in described["fields"]}  # fmt: skip

    kept = settings(before)
    assert kept["pk"]["auto_id"] is True and kept["pk"]["type"].name == "INT64"
    copied = settings(after)
    assert {name: copied[name] for name in kept} == kept  # pk, text, vector, doc_id, title
    assert after["auto_id"] is True
    assert after["enable_dynamic_field"] == before["enable_dynamic_field"]
    assert after["properties"]["allow_insert_auto_id"] == "true"
    keys = sorted(k for chunk in live.store.point_ids("docs_live") for k in chunk)
    assert keys == sorted(live.source)


def test_dry_run_says_that_writes_of_the_full_vector_alone_will_fail(live: Live) -> None:
    notes = [line for line in live.plan.lines() if line.startswith("  note: ")]
    assert any("refuses a point written without every new field" in n
               and "MatryoshkaVectorStore" in n for n in notes), notes  # fmt: skip


def test_a_copy_keeps_every_field_setting(live: Live) -> None:
    """A string key's max length, nullable and default scalars and dynamic fields survive."""
    from pymilvus import DataType

    from mrl_compress.adapters import VectorField

    client = live.store._client
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=40)
    schema.add_field("lang", DataType.VARCHAR, max_length=8, nullable=True)
    schema.add_field("year", DataType.INT32, default_value=2020)
    schema.add_field("full", DataType.FLOAT_VECTOR, dim=384)
    index = client.prepare_index_params()
    index.add_index("full", index_type="FLAT", metric_type="COSINE")
    client.create_collection("settings", schema=schema, index_params=index)
    live.store.create_collection("settings_copy", [VectorField("mrl_64", "dense", 64, "cosine")],
                                 like="settings")  # fmt: skip
    try:
        fields = {
            name: [{k: v for k, v in f.items() if k != "field_id"}
                   for f in client.describe_collection(name)["fields"]]
            for name in ("settings", "settings_copy")
        }  # fmt: skip
        assert fields["settings_copy"][: len(fields["settings"])] == fields["settings"]
        assert client.describe_collection("settings_copy")["enable_dynamic_field"] is True
        assert client.describe_collection("settings_copy").get("properties", {}).get(
            "allow_insert_auto_id") is None  # only an auto_id copy asks for explicit keys
    finally:
        live.store.drop_collection("settings_copy")
        live.store.drop_collection("settings")


def test_langchain_writes_after_the_swap_are_searched_as_brute_force(live: Live) -> None:
    """New, re-written and deleted documents, all through langchain-milvus itself, then the
    retriever answers as brute force over what the collection now holds: no lost point, no
    stale small vector, no deleted point."""
    data, store = live.data, live.store
    contents = dict(live.source)  # key -> row of data.texts, kept in step with every write
    count = store.describe("docs_live").count
    # The application as it was: the key is no longer what fails (the copy kept auto_id),
    # but Milvus Lite refuses a row without the new vector fields (docs/migrate.md).
    plain = live.langchain()
    with pytest.raises(Exception, match="Insert missed an field `mrl_"):
        logging.disable(logging.CRITICAL)  # pymilvus logs the refusal with a traceback
        try:
            plain.add_texts([data.texts[N]], metadatas=[{"doc_id": "x", "title": "x"}])
        finally:
            logging.disable(logging.NOTSET)
    assert store.describe("docs_live").count == count

    # With an embedding per output, langchain-milvus writes every field itself.
    app = live.langchain("mrl_64", "mrl_128")
    rows = list(range(N, N + 6))
    new_keys = app.add_texts([data.texts[r] for r in rows],
                             metadatas=[{"doc_id": data.ids[r], "title": data.titles[r]}
                                        for r in rows])  # fmt: skip
    assert min(new_keys) > max(live.source)  # no new key is a copied one (Lite's counter)
    contents.update(zip(map(int, new_keys), rows, strict=True))
    rewritten = sorted(live.source)[7]
    old_row, new_row = contents[rewritten], N + 20
    app.upsert(ids=[rewritten], documents=[Document(
        page_content=data.texts[new_row],
        metadata={"doc_id": data.ids[new_row], "title": data.titles[new_row]})])
    contents[rewritten] = new_row
    # MatryoshkaVectorStore, the other way docs/migrate.md names, on the same alias
    from mrl_compress.adapters.langchain_store import MatryoshkaVectorStore

    ours = MatryoshkaVectorStore.from_existing(store, "docs_live", live.embeddings,
                                               live.compressor)  # fmt: skip
    more = [N + 30, N + 31]
    more_keys = ours.add_texts([data.texts[r] for r in more],
                               [{"doc_id": data.ids[r], "title": data.titles[r]} for r in more])
    assert not set(map(int, more_keys)) & set(contents)
    contents.update(zip(map(int, more_keys), more, strict=True))
    rows += more
    deleted = [sorted(live.source)[3], sorted(live.source)[250], int(new_keys[0])]
    assert plain.delete(ids=deleted) is True  # the application's delete, on the alias
    for key in deleted:
        contents.pop(key)

    assert sorted(k for chunk in store.point_ids("docs_live") for k in chunk) == sorted(contents)
    keys = np.array(sorted(contents))
    vectors = data.vectors[[contents[k] for k in keys]]
    retriever = MatryoshkaRetriever(store=store, collection="docs_live",
                                    embeddings=live.embeddings, compressor=live.compressor,
                                    k=K, stage1="mrl_128", oversample=20,
                                    full_vector="vector")  # fmt: skip
    # (mrl_128, 100 candidates of ~375: the two stages find brute force's top 5 on these
    # queries; mrl_64 would need 200)
    queries = data.query_texts[:10] + [data.texts[r] for r in (*rows, old_row, new_row)]
    for text in queries:
        docs = retriever.invoke(text)
        query = np.asarray(live.embeddings.embed_query(text), dtype=np.float32)
        expected = keys[np.argsort(-(vectors @ query), kind="stable")[:K]]
        assert [int(d.id) for d in docs] == expected.tolist(), text[:60]
        for doc in docs:
            assert doc.page_content == data.texts[contents[int(doc.id)]]
    top = retriever.invoke(data.texts[new_row], k=1)[0]
    assert int(top.id) == rewritten and top.metadata["doc_id"] == data.ids[new_row]
    served = {int(d.id) for text in queries for d in retriever.invoke(text, k=20)}
    assert not served & set(deleted)


def test_what_milvus_lite_does_with_nullable_vectors(live: Live) -> None:
    """Why the copy's output fields are required (docs/migrate.md): Lite 3.2.2 takes a
    nullable vector field in a schema but refuses a write in which no row has it and has no
    filter for a null vector. If this test starts failing, Lite changed: revisit that choice.
    Such a field (made elsewhere) is refused by count_having and iter_batches(missing=)."""
    from pymilvus import DataType

    from mrl_compress.errors import StoreError

    client = live.store._client
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("full", DataType.FLOAT_VECTOR, dim=8)
    schema.add_field("small", DataType.FLOAT_VECTOR, dim=4, nullable=True)
    index = client.prepare_index_params()
    index.add_index("full", index_type="FLAT", metric_type="COSINE")
    index.add_index("small", index_type="FLAT", metric_type="COSINE")
    client.create_collection("nullable", schema=schema, index_params=index,
                             consistency_level="Strong")  # fmt: skip
    rng = np.random.default_rng(0)
    logging.disable(logging.CRITICAL)  # pymilvus logs each refusal with a traceback
    try:
        with pytest.raises(Exception, match="declared FloatVector but no float_vector data"):
            client.insert("nullable", [{"id": 1, "full": rng.normal(size=8).tolist()}])
        client.insert("nullable", [{"id": 2, "full": rng.normal(size=8).tolist(),
                                    "small": [1.0, 0, 0, 0]},
                                   {"id": 3, "full": rng.normal(size=8).tolist()}])  # fmt: skip
        with pytest.raises(Exception, match="cannot be used in scalar filter"):
            client.query("nullable", filter="small is null", output_fields=["id"])
        stored = client.query("nullable", filter="id == 3", output_fields=["small"])
        assert stored[0]["small"] == [0.0, 0.0, 0.0, 0.0]  # the null came back as zeros
    finally:
        logging.disable(logging.NOTSET)
    assert live.store.count_having("nullable", ["full"]) == 2
    with pytest.raises(StoreError, match="vector 'small' of 'nullable' is nullable"):
        live.store.count_having("nullable", ["full", "small"])
    with pytest.raises(StoreError, match="is nullable"):
        list(live.store.iter_batches("nullable", "full", missing=["small"]))
    live.store.drop_collection("nullable")
