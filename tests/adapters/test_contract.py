"""One contract for every VectorStore backend, run against the real embedded engines.

Each backend gets a collection ``docs`` of real MiniLM vectors (``full``), their compressed
forms (``mrl_64`` dense, ``csr`` sparse) and payloads; results are checked against a numpy
brute force on the same data. Collections this small are searched exactly by every engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrl_compress.adapters import VectorField, VectorStore, connect
from mrl_compress.errors import Conflict, InvalidInput, NotFound, StoreError
from mrl_compress.outputs import Output, SparseBatch
from tests.adapters.wordnet_sample import (
    N_POINTS,
    NONZEROS,
    OUTPUTS,
    encode,
    sparse_code,
    truncate,
)

ADAPTERS = Path(__file__).resolve().parents[2] / "adapters"
MILVUS_PENDING = not (ADAPTERS / "milvus.py").exists()

BACKENDS = [
    pytest.param("edge:{tmp}/edge", id="edge"),
    pytest.param("qdrant-local::memory:", id="qdrant-local"),
    pytest.param(
        "milvus:{tmp}/m.db",
        id="milvus",
        marks=pytest.mark.skipif(
            MILVUS_PENDING, reason="adapters/milvus.py does not exist yet (Milvus in progress)"
        ),
    ),
]
FIELDS = [
    VectorField("full", "dense", 384, "cosine"),
    VectorField("mrl_64", "dense", 64, "cosine"),
    VectorField("csr", "sparse", None, None),
]
K = 10
OVERSAMPLE = 5


def open_store(template: str, tmp: Path) -> VectorStore:
    return connect(template.format(tmp=tmp))


def in_place(store: VectorStore) -> bool:
    """Milvus cannot add a vector field to a collection (DESIGN.md): it gets them upfront."""
    return not store.uri.startswith("milvus")


@pytest.fixture(scope="module", params=BACKENDS)
def store(request, tmp_path_factory, vectors, payloads):
    """A store holding ``docs``: full vectors, both compressed outputs and payloads."""
    store = open_store(request.param, tmp_path_factory.mktemp("store"))
    store.create_collection("docs", FIELDS)
    ids = list(range(N_POINTS))
    store.upsert("docs", ids, {"full": vectors, **encode(vectors)}, payloads)
    yield store
    store.close()


def brute_top(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[int]:
    """Top-k ids by score; ``allowed`` masks out points (filters, sparse no-overlap)."""
    scores = np.where(allowed, scores, -np.inf) if allowed is not None else scores
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(i) for i in order if np.isfinite(scores[i])]


def brute_two_stage(full, small, q_full, q_small, allowed=None):
    want = []
    for i in range(len(q_full)):
        s1 = small @ q_small[i]
        mask = s1 > 0 if allowed is None else (s1 > 0) & allowed
        shortlist = np.array(brute_top(s1, K * OVERSAMPLE, mask))
        rerank = full[shortlist] @ q_full[i]
        want.append([int(shortlist[j]) for j in np.argsort(-rerank, kind="stable")[:K]])
    return want


def ids(hits) -> list[list[int]]:
    return [[int(h.id) for h in row] for row in hits]


# -- reading -----------------------------------------------------------------------------------


def test_describe(store):
    info = store.describe("docs")
    assert info.count == N_POINTS
    assert info.fields == {f.name: f for f in FIELDS}
    assert info.langchain is None


def test_iter_batches_resumes_and_gives_every_point_once(store, vectors, payloads):
    first = store.iter_batches("docs", "full", batch_size=256)
    head = [next(first), next(first)]
    rest = list(store.iter_batches("docs", "full", batch_size=256, offset=head[-1].next_offset))
    batches = head + rest
    seen = [pid for b in batches for pid in b.ids]
    assert sorted(seen) == list(range(N_POINTS))  # all, and each once
    assert rest[-1].next_offset is None
    whole = [pid for b in store.iter_batches("docs", "full", batch_size=256) for pid in b.ids]
    assert whole == seen  # the order is stable
    got = np.concatenate([b.vectors for b in batches])
    assert got.dtype == np.float32 and got.shape == (N_POINTS, 384)
    np.testing.assert_allclose(got, vectors[np.array(seen)], atol=1e-6)
    assert batches[0].payloads[0] == payloads[int(seen[0])]


def test_iter_batches_reads_several_fields_in_one_scan(store, vectors, payloads):
    small = truncate(vectors)
    batches = list(
        store.iter_batches("docs", "full", batch_size=400, vectors=["mrl_64", "full"])
    )
    seen = [pid for b in batches for pid in b.ids]
    assert sorted(seen) == list(range(N_POINTS))
    assert seen == [pid for b in store.iter_batches("docs", "full", batch_size=400)
                    for pid in b.ids]  # same order as a one-field scan  # fmt: skip
    for b in batches:
        rows = np.array(b.ids)
        assert list(b.fields) == ["full", "mrl_64"]
        assert b.fields["full"].tobytes() == b.vectors.tobytes()
        assert b.fields["mrl_64"].dtype == np.float32
        assert b.fields["mrl_64"].shape == (len(rows), 64)
        np.testing.assert_allclose(b.fields["full"], vectors[rows], atol=1e-6)
        np.testing.assert_allclose(b.fields["mrl_64"], small[rows], atol=1e-6)
        assert b.payloads == [payloads[i] for i in b.ids]
    resumed = next(store.iter_batches("docs", "mrl_64", batch_size=400,
                                      offset=batches[0].next_offset, vectors=["full"]))
    assert resumed.ids == batches[1].ids and list(resumed.fields) == ["mrl_64", "full"]
    with pytest.raises(InvalidInput):
        next(store.iter_batches("docs", "full", vectors=["csr"]))
    with pytest.raises(NotFound):
        next(store.iter_batches("docs", "full", vectors=["nope"]))


def test_retrieve_by_id_in_the_order_asked(store, vectors, payloads):
    asked = [1203, 7, 10**9, 0, 450]  # 10**9 does not exist: left out
    got = store.retrieve("docs", asked, ["mrl_64", "full"])
    assert got.ids == [1203, 7, 0, 450] and got.next_offset is None
    rows = np.array(got.ids)
    assert list(got.fields) == ["mrl_64", "full"]
    assert got.vectors.tobytes() == got.fields["mrl_64"].tobytes()
    np.testing.assert_allclose(got.fields["full"], vectors[rows], atol=1e-6)
    np.testing.assert_allclose(got.fields["mrl_64"], truncate(vectors)[rows], atol=1e-6)
    assert got.payloads == [payloads[i] for i in got.ids]
    bare = store.retrieve("docs", [5], ["full"], with_payload=False)
    assert bare.ids == [5] and not any(bare.payloads) and bare.vectors.shape == (1, 384)
    assert store.retrieve("docs", [10**9], ["full"]).ids == []
    with pytest.raises(NotFound):
        store.retrieve("docs", [5], ["nope"])


def test_sample_size_determinism_and_membership(store, vectors):
    a = store.sample("docs", "full", 100, seed=7)
    assert a.shape == (100, 384) and a.dtype == np.float32
    np.testing.assert_array_equal(a, store.sample("docs", "full", 100, seed=7))
    assert not np.array_equal(a, store.sample("docs", "full", 100, seed=8))
    nearest = np.max(a @ vectors.T, axis=1)  # every row is a stored vector
    assert np.all(nearest > 1 - 1e-5)
    assert store.sample("docs", "full", N_POINTS + 50).shape == (N_POINTS, 384)


# -- schema and writes -------------------------------------------------------------------------


def test_add_outputs_is_idempotent_and_refuses_another_size(store):
    store.add_outputs("docs", OUTPUTS)  # both exist with the same kind and size: nothing to do
    assert store.describe("docs").fields == {f.name: f for f in FIELDS}
    with pytest.raises(Conflict, match="'mrl_64'"):
        store.add_outputs("docs", [Output("mrl_64", "dense", 32)])
    with pytest.raises(Conflict, match="'csr'"):
        store.add_outputs("docs", [Output("csr", "dense", 64)])


def test_add_outputs_in_place_or_says_it_cannot(store):
    before = store.describe("docs").count
    if not in_place(store):
        with pytest.raises(StoreError):
            store.add_outputs("docs", [Output("mrl_32", "dense", 32)])
        return
    store.add_outputs("docs", [Output("mrl_32", "dense", 32), Output("csr_b", "sparse", 384)])
    fields = store.describe("docs").fields
    assert fields["mrl_32"] == VectorField("mrl_32", "dense", 32, "cosine")
    assert fields["csr_b"].kind == "sparse"
    assert store.describe("docs").count == before


def test_write_outputs_leaves_full_vectors_and_payloads_untouched(
    store, tmp_path, vectors, payloads
):
    n = 200
    ids = list(range(n))
    full = vectors[:n]
    if in_place(store):
        store.create_collection("w", FIELDS[:1])
        store.upsert("w", ids, {"full": full}, payloads[:n])
        store.add_outputs("w", OUTPUTS)
    else:  # upfront fields, holding other values before the write
        store.create_collection("w", FIELDS)
        shuffled = full[::-1].copy()
        store.upsert("w", ids, {"full": full, **encode(shuffled)}, payloads[:n])
    before = list(store.iter_batches("w", "full", batch_size=64))

    store.write_outputs("w", ids, encode(full))

    after = list(store.iter_batches("w", "full", batch_size=64))
    assert [b.ids for b in after] == [b.ids for b in before]
    for old, new in zip(before, after, strict=True):
        assert old.vectors.tobytes() == new.vectors.tobytes()
        assert old.payloads == new.payloads
    # and the compressed vectors are there: each point finds itself first
    probe = ids[:5]
    assert [h[0].id for h in store.search("w", "mrl_64", truncate(full[probe]), 1)] == probe
    assert [h[0].id for h in store.search("w", "csr", sparse_code(full[probe]), 1)] == probe
    store.drop_collection("w")


# -- search ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["full", "mrl_64", "csr"])
def test_search_equals_brute_force(store, vectors, queries, field):
    stored, asked = vectors, queries
    if field != "full":
        stored, asked = encode(vectors)[field], encode(queries)[field]
    dense_stored = stored.to_dense() if field == "csr" else stored
    dense_asked = asked.to_dense() if field == "csr" else asked
    hits = store.search("docs", field, asked, K)
    want = []
    for q in dense_asked:
        scores = dense_stored @ q
        want.append(brute_top(scores, K, scores > 0 if field == "csr" else None))
    assert ids(hits) == want
    np.testing.assert_allclose(
        hits[0][0].score, float(dense_stored[want[0][0]] @ dense_asked[0]), atol=1e-5
    )


@pytest.mark.parametrize("stage1", ["mrl_64", "csr"])
def test_two_stage_equals_brute_force(store, vectors, queries, stage1):
    small = encode(vectors)[stage1]
    asked = encode(queries)[stage1]
    hits = store.two_stage_search(
        "docs", queries, stage1, asked, K, oversample=OVERSAMPLE, full_vector="full"
    )
    dense_small = small.to_dense() if stage1 == "csr" else small
    dense_asked = asked.to_dense() if stage1 == "csr" else asked
    assert ids(hits) == brute_two_stage(vectors, dense_small, queries, dense_asked)
    assert all(h.payload["doc_id"] for row in hits for h in row)


def test_a_sparse_query_longer_than_the_stored_codes(store, vectors, queries):
    """The retriever's ``query_nonzeros``: stored codes keep k non-zeros, queries more."""
    small = encode(vectors)["csr"]
    asked = sparse_code(queries, 4 * NONZEROS)
    hits = store.two_stage_search(
        "docs", queries, "csr", asked, K, oversample=OVERSAMPLE, full_vector="full"
    )
    assert ids(hits) == brute_two_stage(vectors, small.to_dense(), queries, asked.to_dense())


def test_a_sparse_query_with_negative_values(store, vectors, queries):
    """A pursuit csr query is signed (u and -u for each atom). Qdrant scores it as given;
    Milvus takes no negative sparse values, so its adapter sends the positive entries only."""
    small = encode(vectors)["csr"].to_dense()
    longer = sparse_code(queries, 4 * NONZEROS)
    signs = np.where(np.arange(4 * NONZEROS) % 2, -1.0, 1.0)  # every other entry negative
    asked = SparseBatch(longer.indices, (longer.values * signs).astype(np.float32), longer.dim)
    positive = SparseBatch(longer.indices, np.maximum(asked.values, 0), longer.dim)
    signed_want = brute_two_stage(vectors, small, queries, asked.to_dense())
    positive_want = brute_two_stage(vectors, small, queries, positive.to_dense())
    assert signed_want != positive_want  # the test tells the two apart
    hits = store.two_stage_search(
        "docs", queries, "csr", asked, K, oversample=OVERSAMPLE, full_vector="full"
    )
    assert ids(hits) == (positive_want if store.uri.startswith("milvus") else signed_want)


def test_two_stage_finds_the_full_vector_by_the_queries_size(store, queries):
    """Several dense fields and no ``full_vector``: the one field of the queries' size."""
    asked = truncate(queries)
    named = store.two_stage_search("docs", queries, "mrl_64", asked, K, OVERSAMPLE, "full")
    found = store.two_stage_search("docs", queries, "mrl_64", asked, K, OVERSAMPLE)
    assert ids(found) == ids(named) and len(found[0]) == K


def test_two_stage_without_full_vector_refuses_to_guess(tiny):
    twin = [VectorField("a", "dense", 8, "cosine"), VectorField("b", "dense", 8, "cosine"),
            VectorField("s", "dense", 4, "cosine")]  # fmt: skip
    tiny.create_collection("twin", twin)
    rng = np.random.default_rng(1)
    rows = {name: rng.normal(size=(3, size)) for name, size in (("a", 8), ("b", 8), ("s", 4))}
    tiny.upsert("twin", [1, 2, 3], rows, [{"tag": 1}] * 3)
    with pytest.raises(InvalidInput, match="pass full_vector"):  # 'a' and 'b' are both 8-d
        tiny.two_stage_search("twin", rows["a"][:1], "s", rows["s"][:1], 2)
    with pytest.raises(InvalidInput):  # no 5-d field
        tiny.two_stage_search("twin", np.ones((1, 5)), "s", rows["s"][:1], 2)
    hits = tiny.two_stage_search("twin", rows["b"][:1], "s", rows["s"][:1], 3, full_vector="b")
    assert len(hits[0]) == 3 and hits[0][0].payload == {"tag": 1}


def test_filters_apply_to_both_stages(store, vectors, queries):
    parity = np.arange(N_POINTS) % 2 == 0
    hits = store.search("docs", "full", queries, K, filter={"meta.parity": "even"})
    assert ids(hits) == [brute_top(vectors @ q, K, parity) for q in queries]

    bucket = np.arange(N_POINTS) % 3 == 1
    small, asked = truncate(vectors), truncate(queries)
    hits = store.two_stage_search(
        "docs", queries, "mrl_64", asked, K, OVERSAMPLE, "full", filter={"meta.bucket": 1}
    )
    assert all(h.payload["meta"]["bucket"] == 1 for row in hits for h in row)
    assert ids(hits) == brute_two_stage(vectors, small, queries, asked, allowed=bucket)


# -- errors and lifecycle ----------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def tiny(request, tmp_path):
    """A fresh store with one collection ``tiny`` of 8-d vectors, for exact error messages."""
    store = open_store(request.param, tmp_path)
    store.create_collection("tiny", [VectorField("full", "dense", 8, "cosine")])
    rng = np.random.default_rng(0)
    store.upsert("tiny", [1, 2, 3], {"full": rng.normal(size=(3, 8))}, [{"a": 1}] * 3)
    yield store
    store.close()


def test_reading_a_field_some_point_lacks_is_a_store_error(tiny):
    if not in_place(tiny):  # Milvus: every row holds every field (the schema requires it)
        return
    tiny.add_outputs("tiny", [Output("mrl_4", "dense", 4)])
    tiny.write_outputs("tiny", [1, 3], {"mrl_4": np.ones((2, 4))})  # point 2 has none
    with pytest.raises(StoreError, match="point 2 of 'tiny' has no vector 'mrl_4'"):
        list(tiny.iter_batches("tiny", "full", vectors=["mrl_4"]))
    with pytest.raises(StoreError, match="point 2 of 'tiny' has no vector 'mrl_4'"):
        tiny.retrieve("tiny", [1, 2], ["full", "mrl_4"])
    assert tiny.retrieve("tiny", [3, 1], ["mrl_4"]).ids == [3, 1]


def test_count_having_counts_points_with_every_field(tiny):
    assert tiny.count_having("tiny", ["full"]) == 3
    if in_place(tiny):
        tiny.add_outputs("tiny", [Output("mrl_4", "dense", 4),
                                  Output("csr_2", "sparse", 8, nonzeros=2)])
        tiny.write_outputs("tiny", [1, 3], {"mrl_4": np.ones((2, 4))})  # point 2 has none
        code = SparseBatch(np.array([[0, 3]], np.int32), np.array([[0.6, 0.8]], np.float32), 8)
        tiny.write_outputs("tiny", [3], {"csr_2": code})
        assert tiny.count_having("tiny", ["mrl_4"]) == 2
        assert tiny.count_having("tiny", ["full", "mrl_4", "csr_2"]) == 1
    with pytest.raises(NotFound, match="has no vector 'nope'"):
        tiny.count_having("tiny", ["nope"])


def test_iter_batches_missing_keeps_the_points_lacking_a_field(tiny):
    with pytest.raises(NotFound, match="has no vector 'nope'"):
        list(tiny.iter_batches("tiny", "full", missing=["nope"]))
    if not in_place(tiny):  # Milvus: every row holds every non-nullable field
        assert list(tiny.iter_batches("tiny", "full", missing=["full"])) == []
        return
    tiny.add_outputs("tiny", [Output("mrl_4", "dense", 4),
                              Output("csr_2", "sparse", 8, nonzeros=2)])
    tiny.write_outputs("tiny", [1, 3], {"mrl_4": np.ones((2, 4))})  # point 2 has none
    code = SparseBatch(np.array([[0, 3]], np.int32), np.array([[0.6, 0.8]], np.float32), 8)
    tiny.write_outputs("tiny", [3], {"csr_2": code})

    def lacking(names: list[str]) -> list[int]:
        batches = tiny.iter_batches("tiny", "full", batch_size=1, missing=names)
        return [pid for batch in batches for pid in batch.ids]

    assert lacking(["mrl_4"]) == [2]
    assert lacking(["csr_2"]) == [1, 2]
    assert lacking(["mrl_4", "csr_2"]) == [1, 2]
    assert lacking(["full"]) == []


def test_delete_removes_points_and_ignores_unknown_ids(tiny):
    tiny.delete("tiny", [2, 99])
    assert tiny.describe("tiny").count == 2
    assert tiny.retrieve("tiny", [1, 2, 3], ["full"]).ids == [1, 3]
    tiny.delete("tiny", [])
    assert tiny.describe("tiny").count == 2


def test_point_ids_in_scan_order_without_reading_vectors(store):
    scanned = [pid for b in store.iter_batches("docs", "full", batch_size=300) for pid in b.ids]
    listed = [pid for chunk in store.point_ids("docs", batch_size=300) for pid in chunk]
    assert listed == scanned
    assert store.count_having("docs", ["full", "mrl_64", "csr"]) == N_POINTS


def test_not_found_messages_word_for_word(tiny):
    missing = "collection 'nope' does not exist; the store has 'tiny'"
    with pytest.raises(NotFound) as error:
        tiny.describe("nope")
    assert str(error.value) == missing
    with pytest.raises(NotFound) as error:
        tiny.search("nope", "full", np.ones((1, 8)), 3)
    assert str(error.value) == missing
    with pytest.raises(NotFound) as error:
        tiny.drop_collection("nope")
    assert str(error.value) == missing

    no_vector = "collection 'tiny' has no vector 'mrl_8'; it has 'full'"
    with pytest.raises(NotFound) as error:
        tiny.search("tiny", "mrl_8", np.ones((1, 8)), 3)
    assert str(error.value) == no_vector
    with pytest.raises(NotFound) as error:
        next(tiny.iter_batches("tiny", "mrl_8"))
    assert str(error.value) == no_vector
    with pytest.raises(NotFound) as error:
        tiny.two_stage_search("tiny", np.ones((1, 8)), "mrl_8", np.ones((1, 8)), 3)
    assert str(error.value) == no_vector


def test_wrong_query_dimension_is_invalid_input(tiny):
    with pytest.raises(InvalidInput):
        tiny.search("tiny", "full", np.ones((2, 7)), 3)
    with pytest.raises(InvalidInput):
        tiny.two_stage_search("tiny", np.ones((1, 9)), "full", np.ones((1, 8)), 3)


def test_alias_swap_and_drop(tiny):
    tiny.create_collection("tiny_v2", [VectorField("full", "dense", 8, "cosine")])
    tiny.upsert("tiny_v2", [7], {"full": np.ones((1, 8))}, [{"a": 2}])
    tiny.swap_alias("live", "tiny")
    assert tiny.describe("live").count == 3
    assert "live" in tiny.describe("tiny").aliases
    tiny.swap_alias("live", "tiny_v2")
    assert [h.id for h in tiny.search("live", "full", np.ones((1, 8)), 3)[0]] == [7]
    assert "live" not in tiny.describe("tiny").aliases
    tiny.drop_collection("tiny_v2")
    with pytest.raises(NotFound):
        tiny.describe("tiny_v2")
    assert tiny.describe("tiny").count == 3


@pytest.mark.parametrize("scheme", ["edge", "qdrant-local", "milvus"])
def test_an_embedded_path_where_no_store_is_is_refused_or_made_only_when_written(
    scheme: str, tmp_path: Path
) -> None:
    from mrl_compress.adapters import canonical_uri

    where = tmp_path / ("m.db" if scheme == "milvus" else "store")
    uri = f"{scheme}:{where}"
    with pytest.raises(NotFound, match=f"^no store at {uri}: check the path$"):
        connect(uri, existing=True)
    assert list(tmp_path.iterdir()) == []
    assert canonical_uri(uri) == uri
    if scheme == "edge":  # opened to write: the directory comes with the first collection
        store = connect(uri)
        with pytest.raises(NotFound):
            store.describe("docs")
        assert list(tmp_path.iterdir()) == []
        store.create_collection("docs", [VectorField("", "dense", 8, "cosine")])
        assert (where / "docs").is_dir()
        store.close()


def test_canonical_uri_names_an_embedded_store_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mrl_compress.adapters import canonical_uri

    monkeypatch.chdir(tmp_path)
    assert canonical_uri("edge:./shards") == f"edge:{tmp_path.resolve() / 'shards'}"
    assert canonical_uri("milvus:x.db") == f"milvus:{tmp_path.resolve() / 'x.db'}"
    for server in ("qdrant://db:6333", "qdrants://db:6333", "http://db:6333",
                   "milvus://db:19530", "qdrant-local::memory:"):
        assert canonical_uri(server) == server
