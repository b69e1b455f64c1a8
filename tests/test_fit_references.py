"""fit's retention table carries the engine's own quantizers of the full vector, measured in
the engine (a scratch Qdrant Edge shard), at the budgets of our outputs, never a numpy
imitation; without a scratch store it says they were not measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mrl_compress import retention
from mrl_compress.cli import main
from mrl_compress.errors import MissingDependency
from mrl_compress.retention import Row


def test_cli_fit_shows_engine_rows_measured_in_the_engine(capsys, scifact: np.ndarray,
                                                          tmp_path: Path) -> None:
    pytest.importorskip("qdrant_edge")
    np.save(tmp_path / "vectors.npy", scifact[:1500].astype(np.float16))
    out = tmp_path / "docs.mrlc"
    main(["fit", "--source", str(tmp_path / "vectors.npy"), "--method", "pca",
          "--dims", "32,64", "--out", str(out)])
    text = " ".join(capsys.readouterr().out.split())
    manifest = json.loads((out / "manifest.json").read_text())
    rows = {r["name"]: r for r in manifest["retention"]}
    engine = {n: r for n, r in rows.items() if r["kind"] == "engine"}
    # mrl_32 is 128 B: the best within is 96 B (turbo2 or pq16, whichever kept more), the
    # next larger turbo4 (192 B); mrl_64 is 256 B: turbo4 within, int8 (384 B) the next larger
    by_bytes = {r["bytes_per_vector"]: n for n, r in engine.items()}
    assert sorted(by_bytes) == [96, 192, 384] and len(engine) == 3
    assert by_bytes[96] in {"full turbo2", "full pq16"}
    assert by_bytes[192] == "full turbo4" and by_bytes[384] == "full int8"
    for r in engine.values():  # the engine's codes really scored: neither exact nor empty
        assert 0 < r["recall"] < 1 and r["recall"] <= r["two_stage"] <= 1
    assert engine[by_bytes[96]]["recall"] < engine["full turbo4"]["recall"]
    assert not {"int8 (full)", "binary (full)"} & set(rows)
    assert by_bytes[96] in text and "binary (full)" not in text
    assert "measured in Qdrant Edge on the same 1,200 points and 300 held-out queries" in text
    stored = manifest["settings"]["engine_references"]
    assert stored == {**stored, "measured": True, "engine": "Qdrant Edge", "points": 1200,
                      "queries": 300}
    main(["inspect", str(out)])
    assert by_bytes[96] in capsys.readouterr().out


def test_python_api_without_scratch_says_not_measured(scifact: np.ndarray) -> None:
    import mrl_compress

    def missing() -> object:
        raise MissingDependency("Qdrant Edge needs qdrant-edge-py: pip install "
                                "'mrl-compress[qdrant]'")

    result = mrl_compress.fit(scifact[:1500], "pca", dims=(32,), holdout=200, eval_docs=1000,
                              scratch=missing)  # type: ignore[arg-type]
    assert result.references is not None and result.references.engine is None
    assert not any(r.kind == "engine" for r in result.retention)
    note = result.references.note
    assert note.startswith("engine references not measured (Qdrant Edge needs qdrant-edge-py")
    assert "mrl-compress plan" in note


def test_needed_and_shown_pick_the_best_within_and_the_next_larger() -> None:
    offered = ["int8", "turbo4", "turbo2", "turbo1", "binary1-q8"]
    # 384-d: int8 384 B, turbo4 192, turbo2 96, turbo1 and binary1-q8 48
    assert retention.needed([40.0], 384, offered) == ["turbo1", "binary1-q8"]
    assert retention.needed([128.0], 384, offered) == ["turbo4", "turbo2", "turbo1",
                                                       "binary1-q8"]
    assert retention.needed([1000.0], 384, offered) == offered
    rows = [Row("full turbo1", "engine", 48, 0.70, 0.99),
            Row("full binary1-q8", "engine", 48, 0.68, 0.99),
            Row("full turbo2", "engine", 96, 0.84, 1.0)]
    assert [r.name for r in retention.shown(rows, [40.0])] == ["full turbo1"]
    assert [r.name for r in retention.shown(rows, [64.0])] == ["full turbo1", "full turbo2"]
