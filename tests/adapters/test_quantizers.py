"""Every quantizer an engine offers (mrl_compress.quantizers' names) builds, searches with its
codes and is reported back; the rest are refused with one line and nothing changed.

Real MiniLM vectors of WordNet glosses, 3,000 points (below Qdrant Edge's default indexing
threshold) and 100 dev queries, measured against exact brute force in numpy. Single-stage
searches are never ``exact=True`` (that ignores quantization, docs/quantizers.md): a recall
below 1 is what shows the codes are searched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mrl_compress
from mrl_compress import migration, quantizers
from mrl_compress.adapters import VectorField, connect
from mrl_compress.adapters.milvus import _SERVER_QUANTIZERS
from mrl_compress.cli import main
from mrl_compress.errors import InvalidInput, StoreError
from mrl_compress.outputs import Output
from mrl_compress.store import VectorStore
from tests.adapters.wordnet_sample import DATA, normalise

N = 3000
QUERIES = 100
K = 10
FULL = [VectorField("full", "dense", 384, "cosine")]
MILVUS_LITE = ["float32", "int8", "float32@ivf", "int8@ivf"]


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    docs = normalise(np.asarray(np.load(DATA / "corpus.minilm.f16.npy", mmap_mode="r")[:N],
                                dtype=np.float32))  # fmt: skip
    asked = normalise(np.asarray(
        np.load(DATA / "queries.dev.minilm.f16.npy", mmap_mode="r")[:QUERIES], dtype=np.float32))
    truth = np.argsort(-(asked @ docs.T), axis=1)[:, :K]
    payloads = [{"i": i, "meta": {"parity": ["even", "odd"][i % 2]}} for i in range(N)]
    return {"docs": docs, "queries": asked, "truth": truth, "payloads": payloads}


def filled(uri: str, data: dict[str, Any], n: int = N, name: str = "full") -> VectorStore:
    store = connect(uri)
    store.create_collection("docs", [VectorField(name, "dense", 384, "cosine")])
    store.upsert("docs", list(range(n)), {name: data["docs"][:n]}, data["payloads"][:n])
    return store


def recall(hits: list[list[Any]], truth: np.ndarray) -> float:
    return float(np.mean([len({h.id for h in row} & set(t.tolist())) / K
                          for row, t in zip(hits, truth, strict=True)]))  # fmt: skip


def reported(store: VectorStore, vector: str = "full") -> str:
    return store.describe("docs").fields[vector].quantization or "float32"


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]) -> Any:
    root = tmp_path_factory.mktemp("edge")
    store = filled(f"edge:{root}", data)
    yield store
    store.close()


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]) -> Any:
    root = tmp_path_factory.mktemp("milvus")
    store = filled(f"milvus:{root / 'q.db'}", data)
    yield store
    store.close()


# ── Qdrant Edge: all 21 names ────────────────────────────────────────────────────────────


def test_edge_offers_every_name_of_the_scheme(edge: Any) -> None:
    assert edge.quantizers() == quantizers.names()


@pytest.mark.parametrize("name", quantizers.names())
def test_edge_every_name_builds_searches_by_its_codes_and_is_reported_back(
    edge: Any, data: dict[str, Any], name: str
) -> None:
    edge.set_quantizer("docs", "full", name)
    assert reported(edge) == name
    single = recall(edge.search("docs", "full", data["queries"], K), data["truth"])
    rescored = recall(edge.search("docs", "full", data["queries"], K, rescore=4),
                      data["truth"])  # fmt: skip
    q = quantizers.parse(name)
    if q.family == "float32":
        assert single >= 0.99  # HNSW over float vectors
        return
    assert 0.2 < single <= rescored  # the codes find neighbours; rescoring by floats helps
    if q.bits <= 2:  # one or two bits per dimension: far from exact, so the codes ran
        assert single < 0.95, single


def test_a_small_edge_shard_really_quantizes(edge: Any, data: dict[str, Any]) -> None:
    """3,000 points are below Edge's default indexing threshold, where an appendable segment
    keeps no int8/PQ codes and binary codes at 1 bit only: the adapter lowers the threshold
    of a shard with a quantized field, so these quantizers run."""
    path = Path(edge.uri.partition(":")[2]) / "docs" / "edge_config.json"
    found = {}
    for name in ("int8", "pq16", "binary1-q8", "binary2-q8"):
        edge.set_quantizer("docs", "full", name)
        found[name] = edge.search("docs", "full", data["queries"], K)
        assert reported(edge) == name
        assert json.loads(path.read_text())["optimizers"]["indexing_threshold"] == 1
    assert recall(found["int8"], data["truth"]) < 1.0
    assert recall(found["pq16"], data["truth"]) < 0.95
    ones = [[h.id for h in row] for row in found["binary1-q8"]]
    twos = [[h.id for h in row] for row in found["binary2-q8"]]
    assert ones != twos  # 2-bit codes are not 1-bit ones
    assert recall(found["binary2-q8"], data["truth"]) > recall(found["binary1-q8"], data["truth"])


def test_edge_refuses_unknown_and_unoffered_names_changing_nothing(edge: Any) -> None:
    edge.set_quantizer("docs", "full", "turbo2")
    path = Path(edge.uri.partition(":")[2]) / "docs" / "edge_config.json"
    before, fields = path.read_text(), edge.describe("docs").fields
    offered = ", ".join(quantizers.names())
    for bad, line in [
        ("int4", f"unknown quantizer 'int4'; Qdrant Edge at {path.parents[1]} offers: "
         f"{offered} (docs/quantizers.md)"),
        ("int8@ivf", f"Qdrant Edge at {path.parents[1]} cannot run quantizer 'int8@ivf'; it "
         f"offers: {offered}"),
    ]:  # fmt: skip
        with pytest.raises(InvalidInput) as refused:
            edge.set_quantizer("docs", "full", bad)
        assert str(refused.value) == line
        with pytest.raises(InvalidInput) as refused:
            edge.add_outputs("docs", [Output("mrl_64", "dense", 64)], bad)
        assert str(refused.value) == line
    assert path.read_text() == before and edge.describe("docs").fields == fields
    assert reported(edge) == "turbo2" and "mrl_64" not in edge.describe("docs").fields


def test_edge_rescore_and_two_stage_take_the_quantizers_scores(
    edge: Any, data: dict[str, Any]
) -> None:
    edge.set_quantizer("docs", "full", "turbo1")
    alone = recall(edge.search("docs", "full", data["queries"], K), data["truth"])
    assert recall(edge.search("docs", "full", data["queries"], K, rescore=1), data["truth"]) >= (
        alone)
    with pytest.raises(InvalidInput, match="rescore must be None or a number >= 1"):
        edge.search("docs", "full", data["queries"], K, rescore=0.5)


def test_edge_add_outputs_takes_any_offered_name_and_binary_is_binary1(
    tmp_path: Path, data: dict[str, Any]
) -> None:
    store = filled(f"edge:{tmp_path}", data, n=300, name="")
    store.add_outputs("docs", [Output("mrl_64", "dense", 64)], "binary")
    store.add_outputs("docs", [Output("mrl_32", "dense", 32)], "turbo1.5")
    fields = store.describe("docs").fields
    assert fields["mrl_64"].quantization == "binary1"
    assert fields["mrl_32"].quantization == "turbo1.5"  # and mrl_64 kept its own
    assert fields[""].quantization is None
    small = normalise(data["docs"][:300, :32])
    store.write_outputs("docs", list(range(300)), {"mrl_32": small, "mrl_64":
                                                   normalise(data["docs"][:300, :64])})
    hits = store.two_stage_search("docs", data["queries"][:5], "mrl_32",
                                  normalise(data["queries"][:5, :32]), K, rescore=2)
    exact = np.argsort(-(data["queries"][:5] @ data["docs"][:300].T), axis=1)[:, :K]
    assert recall(hits, exact) > 0.5
    store.close()


# ── every vector and payload survives a quantizer change ─────────────────────────────────


@pytest.mark.parametrize(("engine", "names"), [
    ("edge", ["turbo1", "pq8", "float32"]),
    ("qdrant-local", ["float32", None]),
    ("milvus", ["int8", "int8@ivf", None]),
])  # fmt: skip
def test_set_quantizer_keeps_every_vector_and_payload(
    tmp_path: Path, data: dict[str, Any], engine: str, names: list[str | None]
) -> None:
    n = 500
    uri = {"edge": f"edge:{tmp_path}", "qdrant-local": "qdrant-local::memory:",
           "milvus": f"milvus:{tmp_path / 'k.db'}"}[engine]  # fmt: skip
    store = filled(uri, data, n=n)
    ids = list(range(n))
    before = store.retrieve("docs", ids, ["full"])
    assert np.allclose(before.vectors, data["docs"][:n], atol=1e-6)  # as the engine keeps them
    for name in names:
        store.set_quantizer("docs", "full", name)
        assert reported(store) == (name or "float32")
        store.search("docs", "full", data["queries"][:2], K)  # Edge builds the codes here
        after = store.retrieve("docs", ids, ["full"])
        assert after.ids == before.ids and after.payloads == before.payloads
        if engine == "qdrant-local":  # its first search re-normalises what it returns: 1.5e-8
            assert np.allclose(after.vectors, before.vectors, rtol=0, atol=1e-7)
        else:
            assert np.array_equal(after.vectors, before.vectors)
        assert store.describe("docs").count == n
    store.close()


# ── qdrant-client local mode: no quantization ────────────────────────────────────────────


def test_local_mode_offers_float32_alone_and_refuses_the_rest(data: dict[str, Any]) -> None:
    store = filled("qdrant-local::memory:", data, n=200)
    assert store.quantizers() == ["float32"]
    line = ("qdrant-client local mode (it keeps no quantization) cannot run quantizer '{}'; "
            "it offers: float32")
    for bad in ("int8", "binary", "turbo2"):
        with pytest.raises(InvalidInput) as refused:
            store.add_outputs("docs", [Output("mrl_64", "dense", 64)], bad)
        assert str(refused.value) == line.format(bad)
        with pytest.raises(InvalidInput) as refused:
            store.set_quantizer("docs", "full", bad)
        assert str(refused.value) == line.format(bad)
    assert set(store.describe("docs").fields) == {"full"}  # nothing was created
    store.add_outputs("docs", [Output("mrl_64", "dense", 64)], "float32")
    assert store.describe("docs").fields["mrl_64"].quantization is None
    with pytest.raises(InvalidInput, match="cannot run quantizer 'int8'; it offers: float32"):
        migration.plan(store, "docs", None, mode="native", quantize="int8")
    store.close()


# ── Milvus Lite ──────────────────────────────────────────────────────────────────────────


def test_milvus_lite_offers_only_what_it_builds_and_searches(milvus: Any) -> None:
    """Lite 3.2.2 accepts IVF_PQ, HNSW_PQ and IVF_RABITQ, fails to build them and answers
    by brute force: no pq or binary name is offered."""
    assert milvus.quantizers() == MILVUS_LITE
    line = f"Milvus Lite cannot run quantizer '{{}}'; it offers: {', '.join(MILVUS_LITE)}"
    for bad in ("pq16", "pq16@ivf", "binary1@ivf", "turbo2"):
        with pytest.raises(InvalidInput) as refused:
            milvus.set_quantizer("docs", "full", bad)
        assert str(refused.value) == line.format(bad)
    with pytest.raises(InvalidInput, match="^unknown quantizer 'sq8'"):
        milvus.set_quantizer("docs", "full", "sq8")


@pytest.mark.parametrize("name", [*MILVUS_LITE[1:], "float32"])
def test_milvus_lite_every_offered_name_builds_searches_and_is_reported_back(
    milvus: Any, data: dict[str, Any], name: str
) -> None:
    milvus.set_quantizer("docs", "full", name)
    assert reported(milvus) == name
    single = recall(milvus.search("docs", "full", data["queries"], K), data["truth"])
    rescored = recall(milvus.search("docs", "full", data["queries"], K, rescore=3),
                      data["truth"])  # fmt: skip
    if name == "float32":  # FLAT: exact
        assert single == 1.0 and rescored == 1.0
    else:  # brute force (an index not built) would give 1.0
        assert 0.5 < single < 1.0 and rescored >= single


def test_milvus_lite_a_build_it_cannot_do_is_caught_and_the_old_index_put_back(
    milvus: Any, data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked as a server would be (every mapping offered), Lite records the index, fails
    to build it and would search by brute force; set_quantizer restores HNSW_SQ."""
    milvus.set_quantizer("docs", "full", "int8")
    int8 = recall(milvus.search("docs", "full", data["queries"], K), data["truth"])
    monkeypatch.setattr(milvus, "quantizers", lambda: list(_SERVER_QUANTIZERS))
    for name, kind in (("pq16@ivf", "IVF_PQ"), ("pq16", "HNSW_PQ"), ("binary1@ivf", "IVF_RABITQ")):
        with pytest.raises(StoreError) as failed:
            milvus.set_quantizer("docs", "full", name)
        text = str(failed.value)
        assert text.startswith(f"Milvus could not build {kind} for 'full' of 'docs' (")
        assert text.endswith("its index is HNSW_SQ again") and "\n" not in text
        assert reported(milvus) == "int8"
        assert recall(milvus.search("docs", "full", data["queries"], K), data["truth"]) == int8
    assert int8 < 1.0


def test_milvus_two_stage_rescore_on_a_quantized_stage1(tmp_path: Path,
                                                        data: dict[str, Any]) -> None:
    n = 1000
    store = connect(f"milvus:{tmp_path / 't.db'}")
    small = normalise(data["docs"][:n, :64])
    store.create_collection("docs", FULL + [VectorField("mrl_64", "dense", 64, "cosine")])
    store.upsert("docs", list(range(n)), {"full": data["docs"][:n], "mrl_64": small})
    store.set_quantizer("docs", "mrl_64", "int8")
    asked, small_asked = data["queries"][:20], normalise(data["queries"][:20, :64])
    # the two stages done exactly: the 30 best by the float 64-d prefix, reranked by full
    best = np.argsort(-(small_asked @ small.T), axis=1)[:, : K * 3]
    oracle = np.stack([s[np.argsort(-(data["docs"][s] @ q))[:K]]
                       for s, q in zip(best, asked, strict=True)])  # fmt: skip
    plain = store.two_stage_search("docs", asked, "mrl_64", small_asked, K, 3)
    more = store.two_stage_search("docs", asked, "mrl_64", small_asked, K, 3, rescore=2)
    assert recall(plain, oracle) > 0.9 and recall(more, oracle) >= 0.98  # 0.99, 0.995
    store.close()


# ── migrate: any name, --mode native ─────────────────────────────────────────────────────


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["migrate", *args])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_migrate_native_turbo2_dry_run_changes_nothing_then_sets_it(
    tmp_path: Path, data: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"edge:{tmp_path / 'shards'}"
    filled(uri, data, name="").close()
    config = tmp_path / "shards" / "docs" / "edge_config.json"
    before = json.loads(config.read_text())["vectors"]
    args = ("--target", uri, "--collection", "docs", "--mode", "native", "--quantize", "turbo2")

    code, out, _ = run_main(capsys, *args, "--dry-run")
    assert code == 0, out
    assert ("mode: native: set quantizer 'turbo2' on vector '' (default) (3000 points); no "
            "new field, no write pass, nothing to sync") in out
    assert "quantizer: float32 now, turbo2 after (96 B of codes per point; float32 1,536 B" in out
    assert json.loads(config.read_text())["vectors"] == before  # no quantization_config

    code, out, _ = run_main(capsys, *args)
    assert code == 0, out
    assert "native: set quantizer 'turbo2' on vector '' (default) of 'docs'" in out
    assert "verification: 3000 points; the engine reports the quantizer back" in out
    store = connect(uri)
    info = store.describe("docs")
    assert set(info.fields) == {""} and info.fields[""].quantization == "turbo2"
    assert np.array_equal(store.retrieve("docs", list(range(N)), [""]).vectors, data["docs"])
    assert recall(store.search("docs", "", data["queries"], K), data["truth"]) < 0.95
    store.close()

    code, _, err = run_main(capsys, "--target", uri, "--collection", "docs", "--mode",
                            "native", "--quantize", "int8@ivf", "--dry-run")  # fmt: skip
    assert code == 2 and err.strip().startswith(
        f"error: {uri} cannot run quantizer 'int8@ivf'; it offers: float32, int8,")
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_main(capsys, "--target", uri, "--collection", "docs", "--mode", "native")
    assert code == 2 and "name it with --quantize" in err


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]) -> Path:
    path = tmp_path_factory.mktemp("artifact") / "c.mrlc"
    mrl_compress.fit(data["docs"][:2000], "pca", dims=(32, 64)).compressor.save(path)
    return path


def test_migrate_in_place_and_copy_give_new_fields_any_offered_quantizer(
    tmp_path: Path, data: dict[str, Any], artifact: Path
) -> None:
    edge = filled(f"edge:{tmp_path / 'e'}", data, n=500, name="")
    plan = migration.plan(edge, "docs", artifact, quantize="turbo1.5",
                          checkpoint=tmp_path / "e.json")  # fmt: skip
    assert "'mrl_32' (dense 32, cosine, quantizer turbo1.5)" in "\n".join(plan.lines())
    assert migration.run(plan, edge).ok
    fields = edge.describe("docs").fields
    assert (fields["mrl_32"].quantization, fields["mrl_64"].quantization) == ("turbo1.5",) * 2
    assert fields[""].quantization is None
    edge.close()

    lite = filled(f"milvus:{tmp_path / 'm.db'}", data, n=500, name="vector")
    with pytest.raises(InvalidInput, match="cannot run quantizer 'turbo1.5'"):
        migration.plan(lite, "docs", artifact, quantize="turbo1.5")
    plan = migration.plan(lite, "docs", artifact, quantize="int8", checkpoint=tmp_path / "m.json")
    report = migration.run(plan, lite)
    assert report.ok and report.mode == "copy"
    copied = lite.describe("docs_mrl").fields
    assert (copied["mrl_32"].quantization, copied["mrl_64"].quantization) == ("int8", "int8")
    assert copied["vector"].quantization is None
    lite.close()
