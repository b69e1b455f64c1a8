"""Choosing a representation: the frontier, the choice, the plan file (no engine needed),
then a whole plan measured in Qdrant Edge on real vectors."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mrl_compress import frontier
from mrl_compress.errors import InvalidInput
from mrl_compress.frontier import Candidate, Measured, PlanFile


def row(label_q: str, dims: int, single: float, two: float, qps: float = 100.0,
        output: str | None = None) -> Measured:
    c = Candidate(label_q, dims, output, "c.mrlc" if output else None)
    return Measured(c, single, two, 0.01, 0.01, qps, qps, c.code_bytes, c.code_bytes + 128, 1.0)


ROWS = [
    row("float32", 384, 0.99, 1.00),  # 1536 B
    row("int8", 384, 0.97, 0.99),  # 384 B
    row("turbo2", 384, 0.84, 0.98),  # 96 B
    row("turbo1", 384, 0.69, 0.93),  # 48 B
    row("binary1", 384, 0.54, 0.79),  # 48 B
    row("turbo2", 192, 0.75, 0.96, output="mrl_192"),  # 48 B
    row("int8", 128, 0.75, 0.95, output="mrl_128"),  # 128 B: beaten by turbo2 native
]


def test_pareto_keeps_the_rows_nothing_smaller_beats() -> None:
    front = frontier.pareto(ROWS, "single")
    assert [(r.candidate.label, r.code_bytes) for r in front] == [
        ("mrl_192 192-d turbo2", 48), ("full 384-d turbo2", 96), ("full 384-d int8", 384),
        ("full 384-d float32", 1536),
    ]
    two = [r.candidate.label for r in frontier.pareto(ROWS, "two-stage")]
    assert two == ["mrl_192 192-d turbo2", "full 384-d turbo2", "full 384-d int8",
                   "full 384-d float32"]


def test_choose_by_budget_or_target() -> None:
    assert frontier.choose(ROWS, "single", budget=48).candidate.output == "mrl_192"
    assert frontier.choose(ROWS, "single", budget=128).candidate.label == "full 384-d turbo2"
    assert frontier.choose(ROWS, "two-stage", target=0.98).candidate.label == "full 384-d turbo2"
    assert frontier.choose(ROWS, "two-stage", target=0.95).candidate.output == "mrl_192"
    with pytest.raises(InvalidInput) as small:
        frontier.choose(ROWS, "single", budget=16)
    assert str(small.value) == ("no candidate fits 16 bytes per point; the smallest reachable "
                                "is 48 B (full 384-d turbo1)")
    with pytest.raises(InvalidInput, match="the best is 1.000"):
        frontier.choose(ROWS, "two-stage", target=1.01)
    with pytest.raises(InvalidInput, match="exactly one of --budget BYTES and --target"):
        frontier.choose(ROWS, "single", budget=48, target=0.9)


def test_candidates_keep_only_what_the_engine_offers() -> None:
    found = frontier.candidates(384, [], offered=["float32", "int8", "turbo2"],
                                native=("int8", "turbo2", "binary1"))
    assert [c.label for c in found] == ["full 384-d int8", "full 384-d turbo2"]
    with pytest.raises(InvalidInput, match="unknown quantizer 'int4'"):
        frontier.candidates(384, [], offered=["int8"], native=("int4",))


def test_exact_top_is_the_brute_force_order() -> None:
    rng = np.random.default_rng(0)
    docs, queries = rng.normal(size=(300, 16)), rng.normal(size=(7, 16))
    top = frontier.exact_top(docs, queries, k=5)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    want = np.argsort(-(unit(queries) @ unit(docs).T), axis=1)[:, :5]
    assert (top == want).all()


def plan_file(tmp_path: Path) -> Path:
    chosen = ROWS[5]
    made = PlanFile(
        target="edge:./shards", collection="docs", vector="", points=1000, dim=384,
        sample=900, queries=100, query_source="held-out stored rows", stage="single",
        oversample=3, budget=48, recall_target=None, choice=asdict(chosen),
        compressor_sha256="ab" * 32, rows=[r.row() for r in ROWS],
    )  # fmt: skip
    return made.save(tmp_path / "plan.json")


def test_a_plan_file_reads_back_and_refuses_edits_and_other_collections(tmp_path: Path) -> None:
    path = plan_file(tmp_path)
    read = PlanFile.read(path)
    assert read.candidate == ROWS[5].candidate
    read.check("edge:./shards", "docs")
    with pytest.raises(InvalidInput) as other:
        read.check("edge:./shards", "notes")
    assert str(other.value) == ("the plan was made for collection 'docs' at edge:./shards, not "
                                "'notes' at edge:./shards: run mrl-compress plan on this "
                                "collection")
    data: dict[str, Any] = json.loads(path.read_text())
    data["choice"]["candidate"]["quantizer"] = "binary1"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInput, match="was edited after mrl-compress plan wrote it"):
        PlanFile.read(path)
    path.write_text("{}")
    with pytest.raises(InvalidInput, match="is not a plan written by mrl-compress plan"):
        PlanFile.read(path)
