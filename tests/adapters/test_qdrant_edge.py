"""Qdrant Edge specifics: persistence, quantized outputs, and search after ``optimize()``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrl_compress.adapters import VectorField
from mrl_compress.adapters.qdrant_edge import EdgeStore
from tests.adapters.wordnet_sample import DATA, OUTPUTS, encode, normalise

FULL = [VectorField("", "dense", 384, "cosine")]


def test_collections_and_aliases_survive_reopening(tmp_path, vectors, payloads):
    store = EdgeStore(f"edge:{tmp_path}")
    store.create_collection("docs", FULL)
    store.upsert("docs", list(range(300)), {"": vectors[:300]}, payloads[:300])
    store.add_outputs("docs", OUTPUTS, quantize="int8")
    store.write_outputs("docs", list(range(300)), encode(vectors[:300]))
    store.swap_alias("live", "docs")
    store.close()

    config = json.loads((tmp_path / "docs" / "edge_config.json").read_text())
    assert "scalar" in config["vectors"]["mrl_64"]["quantization_config"]

    again = EdgeStore(f"edge:{tmp_path}")
    info = again.describe("live")
    assert info.count == 300 and set(info.fields) == {"", "mrl_64", "csr"}
    assert info.fields["mrl_64"].quantization == "int8" and info.fields[""].quantization is None
    hits = again.two_stage_search("live", vectors[5:6], "mrl_64", encode(vectors[5:6])["mrl_64"], 1)
    assert hits[0][0].id == 5 and hits[0][0].payload == payloads[5]
    again.close()


def test_stage1_params_skip_rescoring_int8_only():
    """The stage-1 prefetch: no re-scoring of an int8 shortlist; the engine's defaults for an
    unquantized dense field and for a sparse one."""
    import qdrant_edge
    from qdrant_client import models

    from mrl_compress.adapters.qdrant import shortlist_params

    for engine in (qdrant_edge, models):
        int8 = shortlist_params(engine, VectorField("m", "dense", 128, "cosine", "int8"))
        assert int8.hnsw_ef is None and int8.quantization.rescore is False
        assert shortlist_params(engine, VectorField("m", "dense", 64, "cosine")) is None
        assert shortlist_params(engine, VectorField("csr", "sparse", None, None)) is None


@pytest.mark.parametrize(("quantize", "oversample"), [(None, 10), ("int8", 10), ("int8", 5)])
def test_two_stage_after_optimize_on_an_indexed_shard(tmp_path, queries, quantize, oversample):
    """12k points pass Edge's indexing threshold, so this searches real HNSW segments; with
    int8 the stage-1 graph is searched on quantized vectors (the configuration
    docs/benchmarks.md measured fastest) and must still find the exact shortlist, also a
    50-point one."""
    n = 12_000
    stored = normalise(np.asarray(np.load(DATA / "corpus.minilm.f16.npy", mmap_mode="r")[:n]))
    store = EdgeStore(f"edge:{tmp_path}")
    if quantize is None:  # the field declared with the collection
        store.create_collection("big", FULL + [VectorField("mrl_64", "dense", 64, "cosine")])
    else:  # the field added later, as a migration does
        store.create_collection("big", FULL)
        store.add_outputs("big", [o for o in OUTPUTS if o.name == "mrl_64"], quantize=quantize)
    assert store.describe("big").fields["mrl_64"].quantization == quantize
    small = encode(stored)["mrl_64"]
    store.upsert("big", list(range(n)), {"": stored, "mrl_64": small})
    store.optimize("big")

    k = 10
    asked = encode(queries)["mrl_64"]
    hits = store.two_stage_search("big", queries, "mrl_64", asked, k, oversample)
    recall = []
    for q, row in zip(queries, hits, strict=True):
        shortlist = np.argsort(-(small @ q[:64] / np.linalg.norm(q[:64])))[: k * oversample]
        want = shortlist[np.argsort(-(stored[shortlist] @ q))[:k]]
        recall.append(len(set(want.tolist()) & {h.id for h in row}) / k)
    assert np.mean(recall) >= 0.95  # HNSW is approximate; the two stages are the engine's
    store.close()


def test_an_alias_swapped_by_another_store_is_seen(tmp_path, vectors, payloads):
    """A running retriever sees ``migrate --swap`` made by another process on the next call."""
    first = EdgeStore(f"edge:{tmp_path}")
    first.create_collection("v1", FULL)
    first.upsert("v1", list(range(100)), {"": vectors[:100]}, payloads[:100])
    first.swap_alias("live", "v1")
    probe = vectors[150:151]
    assert first.search("live", "", probe, 1)[0][0].id != 150  # not in v1

    second = EdgeStore(f"edge:{tmp_path}")  # stands in for the other process
    second.create_collection("v2", FULL + [VectorField("mrl_64", "dense", 64, "cosine")])
    small = encode(vectors[100:200])["mrl_64"]
    second.upsert("v2", list(range(100, 200)), {"": vectors[100:200], "mrl_64": small},
                  payloads[100:200])  # fmt: skip
    second.swap_alias("live", "v2")
    second.close()

    hit = first.search("live", "", probe, 1)[0][0]
    assert hit.id == 150 and hit.payload == payloads[150]
    staged = first.two_stage_search("live", probe, "mrl_64", small[50:51], 1)
    assert staged[0][0].id == 150
    assert first.describe("v2").aliases == ["live"] and first.describe("v1").aliases == []

    again = EdgeStore(f"edge:{tmp_path}")
    again.swap_alias("live", "v1")
    again.close()
    assert first.search("live", "", probe, 1)[0][0].id != 150  # and back
    first.close()
