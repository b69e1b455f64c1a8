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


def test_a_plan_file_reads_back_and_refuses_edits_and_other_collections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = plan_file(tmp_path)
    read = PlanFile.read(path)
    assert read.candidate == ROWS[5].candidate
    monkeypatch.chdir(tmp_path)
    read.check("edge:./shards", "docs")
    with pytest.raises(InvalidInput) as other:
        read.check("edge:./shards", "notes")
    shards = tmp_path.resolve() / "shards"  # stores are named by their absolute path
    assert str(other.value) == (f"the plan was made for collection 'docs' at edge:{shards}, "
                                f"not 'notes' at edge:{shards}: run mrl-compress plan on this "
                                "collection")
    data: dict[str, Any] = json.loads(path.read_text())
    data["choice"]["candidate"]["quantizer"] = "binary1"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInput, match="was edited after mrl-compress plan wrote it"):
        PlanFile.read(path)
    path.write_text("{}")
    with pytest.raises(InvalidInput, match="is not a plan written by mrl-compress plan"):
        PlanFile.read(path)


def test_a_plan_file_refuses_another_vector_and_files_that_are_no_plan(tmp_path: Path) -> None:
    read = PlanFile.read(plan_file(tmp_path))
    assert read.check("edge:./shards", "docs") == "" == read.check("edge:./shards", "docs", "")
    with pytest.raises(InvalidInput) as other:
        read.check("edge:./shards", "docs", "title")
    assert str(other.value) == ("the plan was made for vector '' of 'docs', not 'title': "
                                "leave out --vector or run mrl-compress plan on that vector")
    bad = tmp_path / "bad.json"
    body = json.loads((tmp_path / "plan.json").read_text())
    body.pop("sha256")
    body.pop("dim")
    missing_field = {**body, "sha256": frontier._digest(body)}  # checksummed, yet no plan
    for content in (b"\x93NUMPY\x01\x00", b"[1, 2]", json.dumps(missing_field).encode()):
        bad.write_bytes(content)
        with pytest.raises(InvalidInput, match=r"^\S+bad.json is not a plan written by "):
            PlanFile.read(bad)


# ── a whole plan, measured in Qdrant Edge, through the CLI ───────────────────────────────

@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """An Edge collection of 4,000 real vectors and a PCA artifact fitted on them."""
    import mrl_compress

    root = tmp_path_factory.mktemp("plan")
    uri, x = fresh_collection(root)
    artifact = mrl_compress.fit(x, "pca", dims=(64, 192)).compressor.save(root / "c.mrlc")
    return uri, artifact


def fresh_collection(root: Path) -> tuple[str, np.ndarray]:
    from mrl_compress.adapters import VectorField, connect
    from tests.conftest import DATA

    stored = np.load(DATA / "wordnet-gloss" / "corpus.minilm.f16.npy", mmap_mode="r")
    x = np.asarray(stored[:4000], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    uri = f"edge:{root / 'edge'}"
    store = connect(uri)
    store.create_collection("docs", [VectorField("", "dense", 384, "cosine")])
    store.upsert("docs", list(range(len(x))), {"": x}, [{"text": str(i)} for i in range(len(x))])
    store.close()
    return uri, x


def plan_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from mrl_compress.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["plan", *args])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_plan_measures_in_the_engine_and_writes_the_choice(
    collection: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, artifact = collection
    out = tmp_path / "plan.json"
    code, text, err = plan_cli(
        capsys, "--source", uri, "--collection", "docs", "--budget", "48", "--stage", "single",
        "--compressor", str(artifact), "--native", "int8,turbo1,binary1",
        "--composed", "turbo2,int8", "--sample", "3000", "--n-queries", "200", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    made = PlanFile.read(out)
    labels = {r["label"]: r for r in made.rows}
    assert set(labels) == {"full 384-d int8", "full 384-d turbo1", "full 384-d binary1",
                           "pca mrl_64 64-d turbo2", "pca mrl_64 64-d int8",
                           "pca mrl_192 192-d turbo2", "pca mrl_192 192-d int8"}
    # the engine's own quantizer really ran: 1-bit codes lose recall that int8 keeps
    assert labels["full 384-d binary1"]["single"] < labels["full 384-d int8"]["single"] - 0.2
    assert labels["full 384-d int8"]["single"] > 0.9
    best = max((r for r in made.rows if r["code_bytes"] <= 48), key=lambda r: r["single"])
    assert made.choice["candidate"] == best["candidate"]
    assert made.sample == 3000 and made.queries == 200 and made.target == uri
    assert "<- chosen" in text and (out.with_suffix(".png")).is_file()
    made.check(uri, "docs")


def test_plan_refuses_bad_input_before_measuring(
    collection: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, artifact = collection
    base = ("--source", uri, "--collection", "docs", "--out", str(tmp_path / "p.json"))
    code, _, err = plan_cli(capsys, *base, "--budget", "4", "--native", "int8,turbo1")
    assert code == 2 and "no candidate fits 4 bytes per point; the smallest reachable is 48 B " \
        "(full 384-d turbo1)" in err
    code, _, err = plan_cli(capsys, *base, "--budget", "48", "--native", "int4")
    assert code == 2 and f"unknown quantizer 'int4'; {uri} offers: float32, int8" in err
    np.save(tmp_path / "q.npy", np.ones((5, 100), np.float32))
    code, _, err = plan_cli(capsys, *base, "--budget", "48", "--queries", str(tmp_path / "q.npy"))
    assert code == 2 and "queries: expected 384-d vectors, found 100-d" in err
    code, _, err = plan_cli(capsys, *base, "--budget", "48", "--target", "0.9")
    assert code == 2 and "exactly one of --budget BYTES and --target RECALL" in err
    from tests.conftest import DATA

    nan = np.load(DATA / "wordnet-gloss" / "queries.dev.minilm.f16.npy")[:5].astype(np.float32)
    nan[3, 7] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    code, _, err = plan_cli(capsys, *base, "--budget", "48", "--queries", str(tmp_path / "nan.npy"))
    # one line, nothing before it, and no --drop-invalid (plan has none) offered
    assert code == 2 and err == ("error: queries: 1 invalid row(s) (NaN/inf or all-zero), first "
                                 "at row 3 (NaN/inf); fix or remove those rows\n")
    np.save(tmp_path / "file.npy", nan)
    code, _, err = plan_cli(capsys, "--source", f"edge:{tmp_path / 'file.npy'}", *base[2:],
                            "--budget", "48")
    assert code == 2 and "file.npy is a file, not a Qdrant Edge directory" in err
    assert not (tmp_path / "p.json").exists()


def test_a_plan_names_its_store_and_artifact_from_any_directory(
    collection: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os
    import shutil

    uri, artifact = collection
    shards = Path(uri.partition(":")[2])
    shutil.copytree(artifact, tmp_path / "c.mrlc")
    monkeypatch.chdir(tmp_path)
    relative = f"edge:{os.path.relpath(shards, tmp_path)}"
    code, text, err = plan_cli(
        capsys, "--source", relative, "--collection", "docs", "--budget", "48", "--native", "",
        "--composed", "turbo2,int8@ivf", "--compressor", "c.mrlc", "--sample", "2000",
        "--n-queries", "50", "--out", "plan.json",
    )  # fmt: skip
    assert code == 0, err
    assert f"left out, {relative} or the embedded engine plan measures in cannot run them: " \
        "int8@ivf" in text
    made = PlanFile.read("plan.json")
    assert made.target == f"edge:{shards.resolve()}" and made.left_out == ["int8@ivf"]
    assert made.candidate.compressor == str((tmp_path / "c.mrlc").resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    plan = str(tmp_path / "plan.json")
    # the same store by its absolute path, from another directory: the plan applies
    code, text, err = migrate_cli(capsys, "--target", uri, "--collection", "docs", "--plan",
                                  plan, "--dry-run")
    assert code == 0, err
    assert "turbo2" in text
    # the plan's relative spelling, from here, names another place: refused, nothing created
    code, _, err = migrate_cli(capsys, "--target", relative, "--collection", "docs", "--plan",
                               plan, "--dry-run")
    assert code == 2 and f"the plan was made for collection 'docs' at edge:{shards}" in err
    code, _, err = migrate_cli(capsys, "--target", relative, "--collection", "docs",
                               "--mode", "native", "--quantize", "int8", "--dry-run")
    assert code == 5 and "no store at" in err and os.listdir(".") == []
    code, _, err = migrate_cli(capsys, "--target", uri, "--collection", "docs", "--vector",
                               "title", "--plan", plan, "--dry-run")
    assert code == 2 and "the plan was made for vector '' of 'docs', not 'title'" in err
    (tmp_path / "c.mrlc").rename(tmp_path / "moved.mrlc")
    code, _, err = migrate_cli(capsys, "--target", uri, "--collection", "docs", "--plan", plan,
                               "--dry-run")
    assert code == 3 and "the artifact the plan chose, is not there" in err
    (tmp_path / "moved.mrlc").rename(tmp_path / "c.mrlc")
    manifest = tmp_path / "c.mrlc" / "manifest.json"
    manifest.write_text(manifest.read_text() + " ")  # another artifact at the same path
    code, _, err = migrate_cli(capsys, "--target", uri, "--collection", "docs", "--plan", plan,
                               "--dry-run")
    assert code == 3 and "c.mrlc is not the artifact the plan measured" in err
    from mrl_compress.adapters.langchain import MatryoshkaRetriever
    from mrl_compress.errors import ArtifactError

    with pytest.raises(ArtifactError, match="is not the artifact the plan measured"):
        MatryoshkaRetriever.from_plan(plan, uri, embeddings=None)  # type: ignore[arg-type]


def test_a_plan_naming_its_store_by_a_relative_path_is_read_from_where_it_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = PlanFile.read(plan_file(tmp_path))  # target "edge:./shards", as plans once were
    monkeypatch.chdir(tmp_path)
    read.check(f"edge:{tmp_path / 'shards'}", "docs")
    with pytest.raises(InvalidInput, match="the plan was made for collection 'docs' at edge:"):
        read.check(f"edge:{tmp_path / 'other'}", "docs")


def migrate_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from mrl_compress.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["migrate", *args])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


@pytest.mark.parametrize("kind", ["native", "composed"])
def test_plan_then_migrate_then_the_retriever_serves_it(
    kind: str, collection: tuple[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from langchain_core.embeddings import Embeddings

    from mrl_compress.adapters import connect
    from mrl_compress.adapters.langchain import MatryoshkaRetriever

    _, artifact = collection
    uri, x = fresh_collection(tmp_path)
    out = tmp_path / "plan.json"
    native, composed, budget = ("turbo2", "", "96") if kind == "native" else ("", "turbo2", "48")
    code, _, err = plan_cli(
        capsys, "--source", uri, "--collection", "docs", "--budget", budget, "--compressor",
        str(artifact), "--native", native, "--composed", composed, "--sample", "3000",
        "--n-queries", "100", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    args = ("--target", uri, "--collection", "docs", "--plan", str(out))
    code, _, err = migrate_cli(capsys, *args, "--quantize", "int8")
    assert code == 2 and "--plan sets the compressor, quantizer and mode: leave out --quantize" \
        in err
    code, _, err = migrate_cli(capsys, "--target", uri, "--collection", "other", "--plan",
                               str(out))
    assert code == 2 and "the plan was made for collection 'docs'" in err
    code, text, err = migrate_cli(capsys, *args)
    assert code == 0, err
    store = connect(uri)
    fields = store.describe("docs").fields
    if kind == "native":
        assert fields[""].quantization == "turbo2" and set(fields) == {""}
    else:
        assert fields["mrl_192"].quantization == "turbo2" and fields[""].quantization is None

    class Lookup(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [x[int(t)].tolist() for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return x[int(text)].tolist()

    retriever = MatryoshkaRetriever.from_plan(out, store, embeddings=Lookup(), k=10)
    assert retriever.stage1 == (None if kind == "native" else "mrl_192")
    queries = list(range(3900, 4000))
    exact = np.argsort(-(x[queries] @ x.T), axis=1)[:, :10]
    found = [[int(d.page_content) for d in retriever.invoke(str(q))] for q in queries]
    recall = np.mean([len(set(f) & set(e.tolist())) / 10 for f, e in zip(found, exact,
                                                                         strict=True)])
    assert recall > 0.9, recall  # x3 rescored by the full vector
    store.close()
