"""Live collections on Qdrant (issue 14): after an in-place ``migrate``, the application keeps
writing full vectors only — through langchain-qdrant itself on qdrant-client local mode,
through the store protocol on Qdrant Edge — and ``MatryoshkaRetriever`` finds every write in
the next search: new points, re-written points (an upsert drops a point's small vectors, so a
re-written point is never served by its stale one) and deleted points (gone from both stages).

Real SciFact abstracts and their stored MiniLM vectors, a real PCA compressor (``mrl_64``,
``mrl_128``); numpy over what the collection should now hold is the oracle: brute force over
the full vectors, and the two stages as the engine runs them (the shortlist on the small
vectors of the points that have one, plus every point that has none, reranked).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mrl_compress
from mrl_compress import migration
from mrl_compress.adapters import VectorField, connect
from mrl_compress.adapters.langchain import MatryoshkaRetriever
from tests.adapters.scifact_sample import (
    Corpus,
    artifact,
    corpus,
    langchain_payloads,
    stored_embeddings,
)

N = 1000  # documents written before the migration (local mode with path= writes slowly)
ADDED = list(range(N, N + 100))  # rows of the documents added after it
REWRITTEN = list(range(0, 50))  # documents re-written after it, with the texts of NEW_TEXTS
NEW_TEXTS = list(range(N + 100, N + 150))
DELETED = list(range(50, 100))
K = 10


def data() -> Corpus:
    return corpus(N + 150, 40)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="module")
def compressor(workdir: Path) -> mrl_compress.Compressor:
    return mrl_compress.load(artifact(workdir))


def migrate(store: Any, collection: str, workdir: Path) -> None:
    """``mrl-compress migrate`` in place, from Python."""
    checkpoint = workdir / f"ck-{uuid.uuid4().hex}.json"
    plan = migration.plan(store, collection, artifact(workdir), checkpoint=checkpoint)
    report = migration.run(plan, store)
    report.raise_if_failed()
    assert report.mode == "in-place"


@dataclass
class Contents:
    """What the collection should hold: per id, the full vector, the text and (for the
    points that still have them) the small vectors the migration wrote."""

    full: dict[Any, np.ndarray] = field(default_factory=dict)
    text: dict[Any, str] = field(default_factory=dict)
    small: dict[Any, np.ndarray] = field(default_factory=dict)

    def migrated(self, ids: list[Any], compressor: mrl_compress.Compressor) -> None:
        """Points 0..len(ids)-1 written before the migration, which gave them ``mrl_64``."""
        codes = compressor.encode(data().vectors[: len(ids)])["mrl_64"]
        for row, pid in enumerate(ids):
            self.write(pid, row)
            self.small[pid] = np.asarray(codes[row])

    def write(self, pid: Any, row: int) -> None:
        """The application writes point ``pid`` with document ``row``: no small vector."""
        self.full[pid], self.text[pid] = data().vectors[row], data().texts[row]
        self.small.pop(pid, None)

    def delete(self, pid: Any) -> None:
        for table in (self.full, self.text, self.small):
            table.pop(pid, None)  # type: ignore[attr-defined]

    def brute_force(self, query: np.ndarray, k: int = K) -> list[Any]:
        ids = list(self.full)
        scores = np.stack([self.full[i] for i in ids]) @ query
        return [ids[j] for j in np.argsort(-scores, kind="stable")[:k]]

    def two_stage(self, query: np.ndarray, small_query: np.ndarray, k: int = K,
                  oversample: int = 10) -> list[Any]:
        synced = [i for i in self.full if i in self.small]
        codes = np.stack([self.small[i] for i in synced])
        codes = codes / np.linalg.norm(codes, axis=1, keepdims=True)
        order = np.argsort(-(codes @ (small_query / np.linalg.norm(small_query))),
                           kind="stable")[: k * oversample]  # fmt: skip
        candidates = [synced[j] for j in order] + [i for i in self.full if i not in self.small]
        scores = np.array([self.full[i] @ query for i in candidates])
        return [candidates[j] for j in np.argsort(-scores, kind="stable")[:k]]


def point_ids(docs: list[Any]) -> list[Any]:
    return [d.metadata["_id"] if "_id" in d.metadata else int(d.id) for d in docs]


def check_searches(retriever: MatryoshkaRetriever, contents: Contents,
                   compressor: mrl_compress.Compressor, added: list[Any],
                   rewritten: list[Any], deleted: list[Any]) -> None:
    """Every write is found through the retriever, as the oracle says."""
    d = data()
    # 1. each added and re-written document is top-1 for its own text (the check:
    #    before the fix 0 of 100 added documents were)
    for row, pid in [*zip(ADDED, added, strict=True), *zip(NEW_TEXTS, rewritten, strict=True)]:
        top = retriever.invoke(d.texts[row], k=1)
        assert point_ids(top) == [pid] and top[0].page_content == d.texts[row]
    # 2. the two stages as the oracle runs them: queries, new, re-written (their old texts)
    #    and deleted documents' texts
    rows = [*ADDED[:20], *REWRITTEN, *DELETED]
    texts = [*d.query_texts, *(d.texts[r] for r in rows)]
    vectors = np.concatenate([d.queries, d.vectors[rows]])
    gone = set(deleted)
    for text, vector in zip(texts, vectors, strict=True):
        docs = retriever.invoke(text)
        found = point_ids(docs)
        small = compressor.encode_queries(vector[None], "mrl_64")[0]
        assert found == contents.two_stage(vector, small)
        assert not gone & set(found)
        for doc, pid in zip(docs, found, strict=True):
            assert doc.page_content == contents.text[pid]  # never a re-written point's old text
    # 3. a shortlist as long as the collection: exactly brute force over the contents
    everything = len(contents.full) // K + 1
    for text, vector in zip(texts[::3], vectors[::3], strict=True):
        assert point_ids(retriever.invoke(text, oversample=everything)) == contents.brute_force(
            vector)


# -- qdrant-client local mode, written by langchain-qdrant -------------------------------------


def test_langchain_qdrant_writes_after_an_in_place_migration(
    tmp_path: Path, workdir: Path, compressor: mrl_compress.Compressor
) -> None:
    """The user's case: a langchain-qdrant collection migrated in place (pca, local mode),
    then ``add_texts`` / ``add_documents`` / ``add_texts(ids=...)`` / ``delete`` through
    ``QdrantVectorStore``; the retriever finds what the oracle finds, and langchain-qdrant
    still loads the collection and sees the same documents."""
    from langchain_core.documents import Document
    from langchain_qdrant import QdrantVectorStore

    from mrl_compress.adapters.qdrant import QdrantStore

    d = data()
    embeddings = stored_embeddings(d)
    metadatas = [p["metadata"] for p in langchain_payloads(d)]
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, doc_id)) for doc_id in d.ids]
    path = str(tmp_path / "qdrant")
    vectorstore = QdrantVectorStore.from_texts(
        d.texts[:N], embeddings, metadatas=metadatas[:N], ids=ids[:N], path=path,
        collection_name="docs",
    )  # fmt: skip
    store = QdrantStore(f"qdrant-local:{path}", client=vectorstore.client)
    migrate(store, "docs", workdir)
    contents = Contents()
    contents.migrated(ids[:N], compressor)

    # the application writes through langchain-qdrant: new texts (ids of its choosing),
    # re-written points (same id, another text and vector), deletions
    added = vectorstore.add_texts([d.texts[r] for r in ADDED[:60]],
                                  metadatas=[metadatas[r] for r in ADDED[:60]])  # fmt: skip
    added += vectorstore.add_documents(
        [Document(page_content=d.texts[r], metadata=metadatas[r]) for r in ADDED[60:]]
    )
    added = [str(uuid.UUID(pid)) for pid in added]  # Qdrant spells uuid4().hex with dashes
    rewritten = [ids[r] for r in REWRITTEN]
    vectorstore.add_texts([d.texts[r] for r in NEW_TEXTS],
                          metadatas=[metadatas[r] for r in NEW_TEXTS], ids=rewritten)  # fmt: skip
    deleted = [ids[r] for r in DELETED]
    vectorstore.delete(deleted)
    for pid, row in [*zip(added, ADDED, strict=True), *zip(rewritten, NEW_TEXTS, strict=True)]:
        contents.write(pid, row)
    for pid in deleted:
        contents.delete(pid)
    # the upsert dropped the re-written points' small vectors: 1,000 - 50 - 50 keep theirs
    assert store.count_having("docs", ["mrl_64"]) == len(contents.small) == 900
    assert store.describe("docs").count == len(contents.full)

    retriever = MatryoshkaRetriever(
        store=store, collection="docs", embeddings=embeddings, compressor=compressor,
        k=K, stage1="mrl_64", oversample=10,
    )  # fmt: skip
    check_searches(retriever, contents, compressor, added, rewritten, deleted)

    # the setting off: the shortlist alone, which cannot see the points written after it
    shortlist_only = retriever.model_copy(update={"unsynced": False})
    assert not any(point_ids(shortlist_only.invoke(d.texts[r], k=1)) == [pid]
                   for r, pid in zip(ADDED, added, strict=True))  # fmt: skip

    # langchain-qdrant still loads the collection and sees the same documents
    store.close()
    reopened = QdrantVectorStore.from_existing_collection(
        collection_name="docs", embedding=embeddings, path=path
    )
    try:
        for row, pid in [(ADDED[0], added[0]), (ADDED[-1], added[-1]),
                         (NEW_TEXTS[0], rewritten[0])]:  # fmt: skip
            found = reopened.similarity_search(d.texts[row], k=1)
            assert found[0].metadata["_id"] == pid and found[0].page_content == d.texts[row]
        assert reopened.client.count("docs").count == len(contents.full)
    finally:
        reopened.client.close()


async def test_ainvoke_finds_the_writes(workdir: Path,
                                        compressor: mrl_compress.Compressor) -> None:
    """The async path (local mode: the sync search in a worker thread) answers the same."""
    d = data()
    store = connect("qdrant-local::memory:")
    write_and_migrate(store, workdir, 400)
    store.upsert("docs", ADDED, {"": d.vectors[ADDED]}, [{"text": d.texts[r]} for r in ADDED])
    retriever = MatryoshkaRetriever(
        store=store, collection="docs", embeddings=stored_embeddings(d), compressor=compressor,
        k=3, stage1="mrl_64",
    )  # fmt: skip
    for row in ADDED[:10]:
        docs = await retriever.ainvoke(d.texts[row])
        assert point_ids(docs) == point_ids(retriever.invoke(d.texts[row]))
        assert point_ids(docs)[0] == row
    store.close()


def write_and_migrate(store: Any, workdir: Path, n: int = N) -> None:
    """Collection ``docs``: the first ``n`` documents (ids 0..n-1), migrated in place."""
    d = data()
    store.create_collection("docs", [VectorField("", "dense", 384, "cosine")])
    store.upsert("docs", list(range(n)), {"": d.vectors[:n]},
                 [{"text": t} for t in d.texts[:n]])  # fmt: skip
    migrate(store, "docs", workdir)


# -- Qdrant Edge, written through the store protocol -------------------------------------------


def edge_writes(store: Any, contents: Contents) -> None:
    """What the application does through the protocol: full vectors only, and deletions."""
    d = data()
    store.upsert("docs", ADDED, {"": d.vectors[ADDED]}, [{"text": d.texts[r]} for r in ADDED])
    store.upsert("docs", REWRITTEN, {"": d.vectors[NEW_TEXTS]},
                 [{"text": d.texts[r]} for r in NEW_TEXTS])  # fmt: skip
    store.delete("docs", DELETED)
    for pid, row in [*zip(ADDED, ADDED, strict=True), *zip(REWRITTEN, NEW_TEXTS, strict=True)]:
        contents.write(pid, row)
    for pid in DELETED:
        contents.delete(pid)


def test_edge_writes_after_an_in_place_migration(
    tmp_path: Path, workdir: Path, compressor: mrl_compress.Compressor
) -> None:
    d = data()
    store = connect(f"edge:{tmp_path / 'edge'}")
    try:
        write_and_migrate(store, workdir)
        contents = Contents()
        contents.migrated(list(range(N)), compressor)
        retriever = MatryoshkaRetriever(
            store=store, collection="docs", embeddings=stored_embeddings(d),
            compressor=compressor, k=K, stage1="mrl_64", oversample=10,
        )  # fmt: skip
        retriever.invoke(d.query_texts[0])  # a search first: what it learnt must not go stale
        edge_writes(store, contents)
        assert store.count_having("docs", ["mrl_64"]) == len(contents.small) == 900
        check_searches(retriever, contents, compressor, ADDED, REWRITTEN, DELETED)

        # sync: the small vectors of the points that lack them; the search then needs no
        # second prefetch (the store knows every point holds mrl_64), and answers the same
        lacking = [pid for pid in contents.full if pid not in contents.small]
        codes = compressor.encode(np.stack([contents.full[pid] for pid in lacking]))
        store.write_outputs("docs", lacking, codes)
        for row, pid in enumerate(lacking):
            contents.small[pid] = np.asarray(codes["mrl_64"][row])
        retriever.invoke(d.query_texts[0])
        assert not store._may_lack("docs", "mrl_64")
        check_searches(retriever, contents, compressor, ADDED, REWRITTEN, DELETED)

        # a write after that is found by the very next search (point 0 re-written with the
        # text of a deleted document: no other point holds it)
        row = DELETED[0]
        store.upsert("docs", [0], {"": d.vectors[row][None]}, [{"text": d.texts[row]}])
        contents.write(0, row)
        assert store._may_lack("docs", "mrl_64")
        found = point_ids(retriever.invoke(d.texts[row], k=3))
        assert found[0] == 0 and found == contents.brute_force(d.vectors[row], 3)
    finally:
        store.close()


def test_edge_knows_which_fields_every_point_holds(tmp_path: Path, workdir: Path) -> None:
    """The Edge store skips the second prefetch only while it knows every point holds the
    stage-1 field: from an exact count, kept up to date by its own writes, and never kept
    when an upsert that leaves the field out starts while it counts."""
    d = data()
    store = connect(f"edge:{tmp_path / 'edge'}")
    try:
        write_and_migrate(store, workdir, 300)
        assert not store._may_lack("docs", "mrl_64")  # counted: migrated
        assert store._every["docs"] == {"mrl_64": True}
        store.upsert("docs", [0], {"": d.vectors[:1], "mrl_64": np.ones((1, 64)),
                                   "mrl_128": np.ones((1, 128))})  # fmt: skip
        assert not store._may_lack("docs", "mrl_64")  # an upsert with every field
        store.upsert("docs", [1], {"": d.vectors[1:2]})
        assert store._may_lack("docs", "mrl_64") and store._may_lack("docs", "mrl_128")
        store.delete("docs", [1])  # the only lacking point: counted again, none lack it
        assert "mrl_64" not in store._every["docs"]
        assert not store._may_lack("docs", "mrl_64")

        # an upsert leaving mrl_64 out lands while a search counts: the count is not kept
        count = store._call
        raced = []

        def racing(what: str, action: Any) -> Any:
            if what.startswith("count points") and not raced:
                raced.append(True)
                store._call = count
                answer = action()  # counted before the write...
                store.upsert("docs", [2], {"": d.vectors[2:3]})  # ...which lands now
                return answer
            return count(what, action)

        store._every["docs"].clear()
        store._call = racing  # type: ignore[method-assign]
        assert not store._may_lack("docs", "mrl_64")  # this search ran beside the write
        assert raced and store._may_lack("docs", "mrl_64")  # the next one knows
        found = store.two_stage_search("docs", d.vectors[2:3], "mrl_64",
                                       np.ones((1, 64), np.float32), 1)  # fmt: skip
        assert [h.id for h in found[0]] == [2]  # a useless shortlist: found by the full vector

        # reopening forgets (another process may have written while it was closed)
        store.refresh()
        assert "docs" not in store._every
        assert store._may_lack("docs", "mrl_64")
    finally:
        store.close()


def test_edge_a_filter_applies_to_the_unsynced_points(tmp_path: Path, workdir: Path) -> None:
    """The second prefetch keeps the caller's payload filter."""
    d = data()
    store = connect(f"edge:{tmp_path / 'edge'}")
    try:
        write_and_migrate(store, workdir, 300)
        store.upsert("docs", ADDED, {"": d.vectors[ADDED]},
                     [{"text": d.texts[r], "half": r % 2} for r in ADDED])  # fmt: skip
        for row in ADDED[:10]:
            q = d.vectors[row][None]
            hits = store.two_stage_search("docs", q, "mrl_64", np.ones((1, 64), np.float32), 5,
                                          filter={"half": 1 - row % 2})  # fmt: skip
            assert [h.id for h in hits[0]] and all(h.payload["half"] == 1 - row % 2
                                                  for h in hits[0])  # fmt: skip
            assert row not in {h.id for h in hits[0]}
            assert store.two_stage_search("docs", q, "mrl_64", np.ones((1, 64), np.float32), 1,
                                          filter={"half": row % 2})[0][0].id == row  # fmt: skip
    finally:
        store.close()
