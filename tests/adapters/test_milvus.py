"""MilvusStore against real Milvus Lite, with real MiniLM vectors of WordNet glosses.

One Lite file (one in-process server) serves the module; numpy brute force is the oracle.
"""

from __future__ import annotations

import gzip
import json
import sys
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from mrl_compress.adapters import VectorField, connect, milvus  # noqa: E402
from mrl_compress.adapters.milvus import MilvusStore, _filter_expr, _parse_schema  # noqa: E402
from mrl_compress.errors import (  # noqa: E402
    Conflict,
    InvalidInput,
    MissingDependency,
    NotFound,
    StoreError,
)
from mrl_compress.outputs import Output, SparseBatch  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wordnet-gloss"
N, N_QUERIES, SMALL, NONZEROS, K, OVERSAMPLE = 2000, 20, 64, 32, 10, 10
FIELDS = [
    VectorField("full", "dense", 384, "cosine"),
    VectorField("mrl_64", "dense", SMALL, "cosine"),
    VectorField("csr", "sparse", None, None),
]


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def small(x: np.ndarray) -> np.ndarray:
    return normalise(x[:, :SMALL])


def sparse_code(x: np.ndarray) -> SparseBatch:
    """The 32 largest positive coordinates, L2-normalised: shaped like a CSR code."""
    positive = np.maximum(x, 0)
    idx = np.argsort(-positive, axis=1)[:, :NONZEROS].astype(np.int32)
    values = np.take_along_axis(positive, idx, axis=1)
    return SparseBatch(idx, normalise(values), x.shape[1])


def top(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, kind="stable")[:k]


def numpy_two_stage(full: np.ndarray, stage1: np.ndarray, q: np.ndarray, q1: np.ndarray) -> list:
    """Shortlist k·oversample on the stage-1 scores, rerank by the full cosine."""
    out = []
    for i in range(len(q)):
        shortlist = top(stage1 @ q1[i], K * OVERSAMPLE)
        out.append(shortlist[top(full[shortlist] @ q[i], K)].tolist())
    return out


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    stored = np.load(DATA / "corpus.minilm.f16.npy", mmap_mode="r")
    return normalise(np.asarray(stored[:N], dtype=np.float32))


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    stored = np.load(DATA / "queries.dev.minilm.f16.npy", mmap_mode="r")
    return normalise(np.asarray(stored[:N_QUERIES], dtype=np.float32))


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    with gzip.open(DATA / "corpus.jsonl.gz", "rt") as lines:
        return [json.loads(line) for line in islice(lines, N)]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("milvus") / "m.db"


@pytest.fixture(scope="module")
def store(db: Path) -> Any:
    with MilvusStore(f"milvus:{db}") as opened:
        yield opened


@pytest.fixture(scope="module")
def payloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"doc_id": d["_id"], "text": d["text"], "meta": {"parity": ["even", "odd"][i % 2]}}
        for i, d in enumerate(docs)
    ]


@pytest.fixture(scope="module")
def collection(store: MilvusStore, vectors: np.ndarray, payloads: list[dict[str, Any]]) -> str:
    store.create_collection("docs", FIELDS)
    encoded: dict[str, np.ndarray | SparseBatch] = {
        "full": vectors,
        "mrl_64": small(vectors),
        "csr": sparse_code(vectors),
    }
    # ids out of order, so that the primary-key order of iter_batches is really tested
    order = np.random.default_rng(1).permutation(N)
    store.upsert(
        "docs",
        [int(i) for i in order],
        {name: values[order] for name, values in encoded.items()},
        [payloads[i] for i in order],
    )
    return "docs"


# ── describe, read, sample ───────────────────────────────────────────────────────────────


def test_connect_picks_milvus(db: Path) -> None:
    opened = connect(f"milvus:{db}")
    assert isinstance(opened, MilvusStore)
    opened.close()


def test_describe(store: MilvusStore, collection: str) -> None:
    info = store.describe(collection)
    assert info.count == N
    assert info.fields == {f.name: f for f in FIELDS}
    assert (info.langchain, info.text_key, info.metadata_key) == (None, None, None)


def test_iter_batches_in_id_order_and_resumable(
    store: MilvusStore, collection: str, vectors: np.ndarray, payloads: list[dict[str, Any]]
) -> None:
    batches = list(store.iter_batches(collection, "full", batch_size=700))
    assert [len(b.ids) for b in batches] == [700, 700, 600]
    assert [b.next_offset for b in batches] == [699, 1399, None]
    ids = [i for b in batches for i in b.ids]
    assert ids == list(range(N))
    stored = np.concatenate([b.vectors for b in batches])
    assert stored.dtype == np.float32 and stored.tobytes() == vectors.tobytes()
    assert [p for b in batches for p in b.payloads] == payloads
    resumed = list(store.iter_batches(collection, "full", batch_size=700, offset=699))
    assert resumed[0].ids[0] == 700 and sum(len(b.ids) for b in resumed) == 1300


@pytest.mark.parametrize("windows", [False, True], ids=["one-listing", "key-windows"])
def test_scans_list_keys_in_one_query_or_in_windows_alike(
    store: MilvusStore, collection: str, vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch,
    windows: bool,
) -> None:
    """Up to _LIST_ALL_MAX rows a scan lists every key at once, above it in key windows: the
    same points in the same order, resumable from any batch, for integer and string keys."""
    if windows:
        monkeypatch.setattr(milvus, "_LIST_ALL_MAX", 0)
        monkeypatch.setattr(milvus, "_KEY_WINDOW", 450)
    query, limits = store._client.query, []

    def seen(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("output_fields") == ["id"]:  # a key listing
            limits.append(kwargs.get("limit"))
        return query(*args, **kwargs)

    monkeypatch.setattr(store._client, "query", seen)
    batches = list(store.iter_batches(collection, "full", batch_size=200, with_payload=False))
    assert limits == ([451] * 5 if windows else [None])  # 2000 keys: windows of 450, or one
    assert [i for b in batches for i in b.ids] == list(range(N))
    assert np.concatenate([b.vectors for b in batches]).tobytes() == vectors.tobytes()
    assert batches[-1].next_offset is None
    resumed = list(store.iter_batches(collection, "full", batch_size=200,
                                      offset=batches[4].next_offset, with_payload=False))
    assert [i for b in resumed for i in b.ids] == [i for b in batches[5:] for i in b.ids]

    keys = ["", "a", "b b", "é", "ü2", *(f"k{i:03d}" for i in range(20))]
    client = store._client  # an application's collection with string keys
    schema = client.create_schema(auto_id=False)
    schema.add_field("key", _dtype("VARCHAR"), is_primary=True, max_length=16)
    schema.add_field("full", _dtype("FLOAT_VECTOR"), dim=384)
    index = client.prepare_index_params()
    index.add_index("full", index_type="FLAT", metric_type="COSINE")
    client.create_collection("named", schema=schema, index_params=index,
                             consistency_level="Strong")  # fmt: skip
    try:
        store.upsert("named", keys[::-1], {"full": vectors[: len(keys)]})
        if windows:
            monkeypatch.setattr(milvus, "_KEY_WINDOW", 4)
        named = list(store.iter_batches("named", "full", batch_size=3, with_payload=False))
        assert [k for b in named for k in b.ids] == sorted(keys)
        assert [k for ids in store.point_ids("named", batch_size=5) for k in ids] == sorted(keys)
    finally:
        store.drop_collection("named")


def test_a_refused_key_listing_falls_back_to_windows(
    store: MilvusStore, collection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server may refuse to list every key in one answer (its output size cap): the scan
    then lists them in windows and still reads every point once, in order."""
    from pymilvus.exceptions import MilvusException

    query = store._client.query
    refused: list[str] = []

    def capped(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("output_fields") == ["id"] and "limit" not in kwargs:
            refused.append(kwargs["filter"])
            raise MilvusException(message="query results exceed the limit size")
        return query(*args, **kwargs)

    monkeypatch.setattr(store._client, "query", capped)
    monkeypatch.setattr(milvus, "_KEY_WINDOW", 700)
    ids = [i for b in store.iter_batches(collection, "full", batch_size=300) for i in b.ids]
    assert ids == list(range(N)) and len(refused) == 1


def test_a_released_collection_is_loaded_on_first_use(
    db: Path, store: MilvusStore, collection: str
) -> None:
    """A Lite file opened by another process has every collection released (Milvus answers
    no query on it until it is loaded): the adapter loads it when it first meets it."""
    store._client.release_collection(collection)
    with MilvusStore(f"milvus:{db}") as other:
        assert len(next(other.iter_batches(collection, "full", batch_size=10)).ids) == 10
    assert store._client.get_load_state(collection)["state"].name == "Loaded"


def test_iter_batches_without_payload(store: MilvusStore, collection: str) -> None:
    batch = next(store.iter_batches(collection, "mrl_64", batch_size=5, with_payload=False))
    assert batch.payloads == [] and batch.vectors.shape == (5, SMALL)


def test_sample_is_seeded_and_drawn_from_the_rows(
    store: MilvusStore, collection: str, vectors: np.ndarray
) -> None:
    first = store.sample(collection, "full", 50, seed=3)
    assert first.shape == (50, 384)
    assert np.array_equal(first, store.sample(collection, "full", 50, seed=3))
    assert not np.array_equal(first, store.sample(collection, "full", 50, seed=4))
    rows = {row.tobytes() for row in vectors}
    assert all(row.tobytes() in rows for row in first)


# ── search ───────────────────────────────────────────────────────────────────────────────


def test_full_search_equals_brute_force(
    store: MilvusStore, collection: str, vectors: np.ndarray, queries: np.ndarray
) -> None:
    results = store.search(collection, "full", queries, K)
    for hits, q in zip(results, queries, strict=True):
        expected = top(vectors @ q, K)
        assert [h.id for h in hits] == expected.tolist()
        np.testing.assert_allclose([h.score for h in hits], (vectors @ q)[expected], atol=1e-5)
    assert set(results[0][0].payload) == {"doc_id", "text", "meta"}


def test_two_stage_dense_equals_numpy(
    store: MilvusStore, collection: str, vectors: np.ndarray, queries: np.ndarray
) -> None:
    results = store.two_stage_search(
        collection, queries, "mrl_64", small(queries), K, oversample=OVERSAMPLE
    )
    expected = numpy_two_stage(vectors, small(vectors), queries, small(queries))
    assert [[h.id for h in hits] for hits in results] == expected
    first = results[0][0]
    assert first.score == pytest.approx(float(vectors[first.id] @ queries[0]), abs=1e-5)


def test_two_stage_sparse_equals_numpy(
    store: MilvusStore, collection: str, vectors: np.ndarray, queries: np.ndarray
) -> None:
    codes = sparse_code(queries)
    results = store.two_stage_search(collection, queries, "csr", codes, K, OVERSAMPLE, "full")
    expected = numpy_two_stage(vectors, sparse_code(vectors).to_dense(), queries, codes.to_dense())
    assert [[h.id for h in hits] for hits in results] == expected


def test_two_stage_filter_applies_to_the_shortlist(
    store: MilvusStore, collection: str, vectors: np.ndarray, queries: np.ndarray
) -> None:
    results = store.two_stage_search(
        collection, queries[:5], "mrl_64", small(queries[:5]), K,
        filter={"meta.parity": "even"},
    )  # fmt: skip
    even = np.arange(0, N, 2)
    expected = numpy_two_stage(vectors[even], small(vectors[even]), queries[:5], small(queries[:5]))
    assert [[h.id for h in hits] for hits in results] == [even[e].tolist() for e in expected]
    assert all(h.payload["meta"] == {"parity": "even"} for hits in results for h in hits)


def test_filter_expressions() -> None:
    raw = {
        "enable_dynamic_field": True,
        "fields": [{"name": "id", "type": _dtype("INT64"), "is_primary": True}],
    }
    schema = _parse_schema("docs", raw, {})
    expr = _filter_expr(
        {"meta.lang": 'e"n', "n": [1, 2], "ok": True, "x": 0.5, "title": "né"}, schema
    )
    assert expr == (
        'meta["lang"] == "e\\"n" and n in [1, 2] and ok == true and x == 0.5 and title == "né"'
    )


# ── writing, schema changes ──────────────────────────────────────────────────────────────


def test_write_outputs_keeps_the_rest_byte_identical(
    store: MilvusStore, vectors: np.ndarray, payloads: list[dict[str, Any]]
) -> None:
    store.create_collection("rewrite", FIELDS)
    n = 50
    placeholder: dict[str, np.ndarray | SparseBatch] = {
        "mrl_64": small(vectors[::-1][:n]),
        "csr": sparse_code(vectors[::-1][:n]),
    }
    store.upsert("rewrite", list(range(n)), {"full": vectors[:n], **placeholder}, payloads[:n])
    store.write_outputs("rewrite", list(range(n)), {"mrl_64": small(vectors[:n])})
    store.write_outputs("rewrite", list(range(n)), {"csr": sparse_code(vectors[:n])})
    full = next(store.iter_batches("rewrite", "full", batch_size=n))
    assert full.vectors.tobytes() == vectors[:n].tobytes()
    assert full.payloads == payloads[:n]
    mrl = next(store.iter_batches("rewrite", "mrl_64", batch_size=n, with_payload=False))
    assert mrl.vectors.tobytes() == small(vectors[:n]).tobytes()
    hits = store.search("rewrite", "csr", sparse_code(vectors[:1]), 1)
    assert hits[0][0].id == 0 and hits[0][0].score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(NotFound) as missing:
        store.write_outputs("rewrite", [0, 999], {"mrl_64": small(vectors[:2])})
    assert str(missing.value) == (
        "1 of 2 points do not exist in 'rewrite' (first: 999): upsert whole points instead"
    )


def test_sparse_upsert_drops_zero_padding(store: MilvusStore, vectors: np.ndarray) -> None:
    codes = sparse_code(vectors[:2])
    codes.values[:, NONZEROS // 2 :] = 0  # rows with fewer active latents than k
    store.create_collection("padded", FIELDS)
    store.upsert(
        "padded", [0, 1], {"full": vectors[:2], "mrl_64": small(vectors[:2]), "csr": codes}
    )
    rows = store._client.query("padded", filter="id == 0", output_fields=["csr"])
    assert len(rows[0]["csr"]) == NONZEROS // 2


def test_add_outputs(store: MilvusStore, collection: str) -> None:
    store.add_outputs(collection, [Output("mrl_64", "dense", SMALL), Output("csr", "sparse", 384)])
    with pytest.raises(Conflict) as conflict:
        store.add_outputs(collection, [Output("mrl_64", "dense", 128)])
    assert str(conflict.value) == (
        "vector 'mrl_64' of 'docs' is dense, 64 dims, not dense, 128 dims: "
        "pick another output name or drop the field's collection"
    )
    with pytest.raises(StoreError) as refused:
        store.add_outputs(collection, [Output("mrl_128", "dense", 128)])
    assert str(refused.value) == (
        "Milvus cannot add a vector field in place (wanted mrl_128 in 'docs'): migration "
        "copies the points into a new collection with the new fields and swaps an alias to it"
    )


def test_create_collection_again_is_a_no_op_or_a_conflict(
    store: MilvusStore, collection: str
) -> None:
    store.create_collection(collection, FIELDS[:2])
    with pytest.raises(Conflict):
        store.create_collection(collection, [VectorField("full", "dense", 768, "cosine")])


def test_aliases_swap(store: MilvusStore, collection: str, vectors: np.ndarray) -> None:
    store.create_collection("docs_v2", FIELDS[:1], like=None)
    store.upsert("docs_v2", [7], {"full": vectors[:1]})
    store.swap_alias("live", collection)
    assert store.describe("live").count == N
    store.swap_alias("live", "docs_v2")
    assert store.describe("live").count == 1
    assert store.describe("docs_v2").aliases == ["live"]
    assert store.describe(collection).aliases == []
    assert store.search("live", "full", vectors[:1], 1)[0][0].id == 7
    with pytest.raises(Conflict) as taken:
        store.swap_alias("docs", "docs_v2")
    assert str(taken.value) == (
        "'docs' is a collection, not an alias: Milvus cannot alias a name a collection "
        "holds; drop or rename that collection first"
    )
    store.swap_alias("live", collection)
    store.drop_collection("docs_v2")
    with pytest.raises(NotFound):
        store.drop_collection("docs_v2")


# ── langchain-milvus ─────────────────────────────────────────────────────────────────────


def test_langchain_collection_migrates_and_still_loads(
    store: MilvusStore, db: Path, vectors: np.ndarray, docs: list[dict[str, Any]]
) -> None:
    from langchain_core.embeddings import Embeddings
    from langchain_milvus import Milvus

    n = 300
    texts = [d["text"] for d in docs[:n]]
    by_text = {t: v.tolist() for t, v in zip(texts, vectors[:n], strict=True)}

    class StoredEmbeddings(Embeddings):
        """The vectors already computed for these texts: no model runs in the test."""

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [by_text[t] for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return by_text[text]

    connection = {"uri": str(db)}
    Milvus.from_texts(
        texts, StoredEmbeddings(), metadatas=[{"title": d["title"]} for d in docs[:n]],
        ids=[d["_id"] for d in docs[:n]], connection_args=connection, collection_name="lc",
    )  # fmt: skip
    info = store.describe("lc")
    assert (info.langchain, info.text_key, info.metadata_key) == ("milvus", "text", None)
    assert info.count == n
    assert info.fields == {"vector": VectorField("vector", "dense", 384, "euclid")}

    new = [
        VectorField("mrl_64", "dense", SMALL, "cosine"),
        VectorField("csr", "sparse", None, None),
    ]
    store.create_collection("lc_mrl", new, like="lc")
    for batch in store.iter_batches("lc", batch_size=128):
        assert batch.payloads[0].keys() == {"text", "title"}
        encoded: dict[str, np.ndarray | SparseBatch] = {
            "mrl_64": small(batch.vectors),
            "csr": sparse_code(batch.vectors),
        }
        store.upsert("lc_mrl", batch.ids, {"vector": batch.vectors, **encoded}, batch.payloads)
    store.swap_alias("lc_live", "lc_mrl")
    assert store.describe("lc_live").langchain == "milvus"

    query = texts[17]
    before = Milvus(StoredEmbeddings(), collection_name="lc", connection_args=connection)
    after = Milvus(StoredEmbeddings(), collection_name="lc_live", connection_args=connection)
    old, migrated = before.similarity_search(query, k=5), after.similarity_search(query, k=5)
    assert [d.page_content for d in migrated] == [d.page_content for d in old]
    # langchain-milvus returns every field but its own vector as metadata, so the new
    # vector fields show up there: strip them to compare.
    assert [
        {k: v for k, v in d.metadata.items() if k not in ("mrl_64", "csr")} for d in migrated
    ] == [d.metadata for d in old]

    hits = store.two_stage_search("lc_live", vectors[17:18], "mrl_64", small(vectors[17:18]), 3)
    assert hits[0][0].id == docs[17]["_id"]
    assert hits[0][0].payload == {"text": texts[17], "title": docs[17]["title"]}
    assert (
        store.search("lc_live", "csr", sparse_code(vectors[17:18]), 1)[0][0].id == docs[17]["_id"]
    )


# ── errors, word for word ────────────────────────────────────────────────────────────────


def test_missing_collection_and_field(store: MilvusStore, collection: str) -> None:
    names = ", ".join(repr(n) for n in sorted(store._client.list_collections()))
    with pytest.raises(NotFound) as missing:
        store.describe("nope")
    assert str(missing.value) == f"collection 'nope' does not exist; the store has {names}"
    with pytest.raises(NotFound) as no_field:
        store.search(collection, "mrl_32", np.zeros((1, 32), np.float32), 3)
    assert str(no_field.value) == (
        "collection 'docs' has no vector 'mrl_32'; it has 'full', 'mrl_64', 'csr'"
    )


def test_wrong_inputs(store: MilvusStore, collection: str, queries: np.ndarray) -> None:
    with pytest.raises(InvalidInput) as dims:
        store.search(collection, "full", queries[:, :SMALL], 3)
    assert str(dims.value) == "vector 'full' has 384 dims but the input has 64"
    with pytest.raises(InvalidInput) as ids:
        store.upsert(collection, ["a"], {"full": queries[:1]})
    assert str(ids.value) == "collection 'docs' has integer ids ('id'), got 'a'"
    with pytest.raises(InvalidInput) as full:
        store.two_stage_search(collection, queries[:, :100], "mrl_64", small(queries), 3)
    assert str(full.value) == (
        "cannot tell which vector of 'docs' is the full one for 100-d queries (fields: "
        "'full' (384), 'mrl_64' (64), 'csr' (sparse)): pass full_vector"
    )
    with pytest.raises(InvalidInput) as uri:
        MilvusStore("milvus:./docs.sqlite")
    assert str(uri.value) == (
        "Milvus Lite needs a file ending in .db, got './docs.sqlite': use milvus:./name.db"
    )


def test_unreachable_server_is_one_line() -> None:
    with pytest.raises(StoreError) as down:
        MilvusStore("milvus://127.0.0.1:1", connect_timeout=0.2)
    assert str(down.value) == (
        "cannot connect to Milvus at http://127.0.0.1:1 (3 tries): Fail connecting to server "
        "on 127.0.0.1:1, illegal connection params or server unavailable; check the address, "
        "that the server runs, and MILVUS_TOKEN"
    )


def test_missing_pymilvus_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # find_spec then reports it missing
    with pytest.raises(MissingDependency) as missing:
        MilvusStore("milvus:./never.db")
    assert str(missing.value) == (
        "this needs the Python package 'pymilvus', which is not installed: "
        "pip install 'mrl-compress[milvus]'"
    )


def _dtype(name: str) -> Any:
    from pymilvus import DataType

    return DataType[name]
