"""The ``encode`` .npz contract (docs/cli.md): document and query files written by the CLI,
scored with numpy alone by the documented snippet, rank as ``eval`` does, for every method.

Real data: SciFact's 5,183 stored abstracts and its 300 test claims with their qrels; the
compressors are the quick fits of ``conftest.fitted`` (mechanics, not quality).
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mrl_compress
from mrl_compress import evaluation, metrics
from mrl_compress.cli import main
from tests.conftest import DATA, load_f32

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCIFACT = DATA / "beir" / "scifact"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def documented_search() -> Any:
    """The numpy scorer exactly as docs/cli.md gives it (block ``encode-contract``)."""
    text = (DOCS / "cli.md").read_text()
    block = re.search(r"<!-- test: encode-contract -->\s*```python\n(.*?)```", text, re.S)
    assert block is not None
    code = block.group(1)
    imports = set(re.findall(r"^\s*(?:import|from)\s+(\w+)", code, re.M))
    assert imports == {"numpy"}, imports  # numpy alone: a reader needs nothing of ours
    scope: dict[str, Any] = {}
    exec(code, scope)
    return scope["search"]


def _ids(path: Path) -> list[str]:
    with gzip.open(path, "rt") as lines:
        return [json.loads(line)["_id"] for line in lines]


@dataclass
class Task:
    corpus: np.ndarray
    queries: np.ndarray
    corpus_ids: list[str]
    query_ids: list[str]
    qrels: dict[str, dict[str, float]]
    corpus_file: Path
    queries_file: Path


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Task:
    qrels = evaluation.read_qrels(SCIFACT / "qrels" / "test.tsv")
    all_query_ids = _ids(SCIFACT / "queries.jsonl.gz")
    judged = [i for i, q in enumerate(all_query_ids) if q in qrels]
    corpus = load_f32("beir/scifact/corpus.minilm.f16.npy")
    queries = load_f32("beir/scifact/queries.minilm.f16.npy")[judged]
    folder = tmp_path_factory.mktemp("scifact")
    np.save(folder / "corpus.npy", corpus)
    np.save(folder / "queries.npy", queries)
    return Task(corpus, queries, _ids(SCIFACT / "corpus.jsonl.gz"),
                [all_query_ids[i] for i in judged], qrels, folder / "corpus.npy",
                folder / "queries.npy")


@pytest.fixture(scope="module")
def compressors(fitted: dict, scifact: np.ndarray) -> dict[str, Any]:
    """Every method's quick fit, plus an adaptor with a (non-linear) residual branch."""
    residual = mrl_compress.fit(scifact[:2000], "adaptor", dims=(32, 64), steps=8,
                                holdout=200, eval_docs=1200, residual_hidden=16)
    return {**{name: result.compressor for name, result in fitted.items()},
            "adaptor-residual": residual.compressor}


def write_codes(capsys: pytest.CaptureFixture[str], art: Path, task: Task, folder: Path,
                *query_flags: str) -> tuple[Path, Path]:
    docs, queries = folder / "codes.npz", folder / "queries.npz"
    code, _, err = run(capsys, "encode", "--compressor", str(art), "--input",
                       str(task.corpus_file), "--output", str(docs))
    assert code == 0, err
    code, text, err = run(capsys, "encode", "--compressor", str(art), "--input",
                          str(task.queries_file), "--output", str(queries), *query_flags)
    assert code == 0, err
    return docs, queries


def numpy_scores(search: Any, docs: Path, queries: Path, name: str,
                 task: Task) -> tuple[float, float]:
    """Single-stage and two-stage (shortlist 100, full-vector rerank) nDCG@10 of the files."""
    ids = np.asarray(task.corpus_ids)
    single = search(docs, queries, name)
    shortlist = search(docs, queries, name, k=100)
    full_c = task.corpus / np.linalg.norm(task.corpus, axis=1, keepdims=True)
    full_q = task.queries / np.linalg.norm(task.queries, axis=1, keepdims=True)
    exact = np.einsum("nd,nmd->nm", full_q, full_c[shortlist])
    two = np.take_along_axis(shortlist, np.argsort(-exact, axis=1, kind="stable")[:, :10], 1)
    return tuple(metrics.ndcg_at_k([list(ids[t]) for t in top], task.query_ids, task.qrels, 10)
                 for top in (single, two))  # type: ignore[return-value]


def eval_scores(art: Path, task: Task, query_nonzeros: int | None) -> dict[str, Any]:
    rows = evaluation.retrieval(mrl_compress.load(art), task.corpus, task.queries, task.qrels,
                                task.corpus_ids, task.query_ids, 10, query_nonzeros)
    return {r.name: r for r in rows}


CASES = [  # (compressor, --query-nonzeros)
    ("truncate", None), ("pca", None), ("ads", None), ("adaptor", None),
    ("adaptor-residual", None), ("csr", None), ("csr", 64), ("csr", 33),
    ("csr-topk", None), ("csr-topk", 4),
]


@pytest.mark.parametrize(("method", "nonzeros"), CASES,
                         ids=[f"{m}-{n or 'default'}" for m, n in CASES])
def test_numpy_scored_files_equal_eval(capsys, method: str, nonzeros: int | None,
                                       compressors: dict, task: Task, tmp_path: Path) -> None:
    art = compressors[method].save(tmp_path / "c.mrlc")
    flags = ["--queries"] + ([] if nonzeros is None else ["--query-nonzeros", str(nonzeros)])
    docs, queries = write_codes(capsys, art, task, tmp_path, *flags)
    expected = eval_scores(art, task, nonzeros)
    search = documented_search()
    with np.load(queries) as z:
        for out in compressors[method].outputs:
            if out.kind == "sparse":
                width = z[f"{out.name}.indices"].shape[1]
                full = out.size if compressors[method].pursuit else out.nonzeros
                assert width == (nonzeros or full)
    for out in compressors[method].outputs:
        single, two = numpy_scores(search, docs, queries, out.name, task)
        row = expected[out.name]
        assert single == pytest.approx(row.ndcg10, abs=1e-3), (out.name, single, row.ndcg10)
        assert two == pytest.approx(row.two_stage_ndcg10, abs=1e-3), (out.name, two)


def test_pursuit_queries_coded_as_documents_miss_eval(capsys, compressors: dict, task: Task,
                                                      tmp_path: Path) -> None:
    """The defect the contract test guards against: a pursuit csr's queries written as
    document codes (no --queries) score far from what eval reports."""
    art = compressors["csr"].save(tmp_path / "c.mrlc")
    docs, queries = write_codes(capsys, art, task, tmp_path)  # no --queries
    expected = eval_scores(art, task, None)
    for out in compressors["csr"].outputs:
        single, _ = numpy_scores(documented_search(), docs, queries, out.name, task)
        assert abs(single - expected[out.name].ndcg10) > 0.02, (out.name, single)


# -- bad input: one line, exit 2, nothing written ---------------------------------------------

def refused(capsys, art: Path, tmp_path: Path, *flags: str) -> str:
    src = tmp_path / "q.npy"
    np.save(src, load_f32("beir/scifact/queries.minilm.f16.npy", 5))
    out = tmp_path / "q.npz"
    code, text, err = run(capsys, "encode", "--compressor", str(art), "--input", str(src),
                          "--output", str(out), *flags)
    assert code == 2 and not text
    assert not out.exists() and not list(tmp_path.glob("*.partial.npz"))
    return err


def test_query_nonzeros_needs_queries(capsys, compressors: dict, tmp_path: Path) -> None:
    art = compressors["csr"].save(tmp_path / "c.mrlc")
    assert refused(capsys, art, tmp_path, "--query-nonzeros", "8") == (
        "error: --query-nonzeros 8 applies to query codes: add --queries (document codes keep "
        "the compressor's k)")


def test_query_nonzeros_needs_a_sparse_output(capsys, compressors: dict, tmp_path: Path) -> None:
    art = compressors["pca"].save(tmp_path / "p.mrlc")
    assert refused(capsys, art, tmp_path, "--queries", "--query-nonzeros", "8") == (
        "error: query non-zeros apply to sparse (csr) outputs; this pca compressor's outputs "
        "(mrl_32, mrl_64) are dense")


def test_query_nonzeros_out_of_range(capsys, compressors: dict, tmp_path: Path) -> None:
    art = compressors["csr"].save(tmp_path / "c.mrlc")
    err = refused(capsys, art, tmp_path, "--queries", "--query-nonzeros", "5000")
    assert err.startswith("error: query non-zeros must be an integer from 1 to the 1024 slots")


def test_python_twin_writes_the_same_file(compressors: dict, task: Task,
                                          tmp_path: Path) -> None:
    from mrl_compress.codes import encode_to_npz

    c = compressors["csr"]
    written = encode_to_npz(c, task.queries[:20], tmp_path / "q.npz", queries=True,
                            query_nonzeros=10)
    assert written.rows == 20 and "csr_16.indices" in written.arrays
    expected = c.encode_queries(task.queries[:20], "csr_16", 10)
    with np.load(written.path) as z:
        np.testing.assert_array_equal(z["csr_16.indices"], expected.indices)
        np.testing.assert_array_equal(z["csr_16.values"], expected.values)
        assert int(z["csr_16.dim"]) == expected.dim
