"""The CLI contract: each command end to end, and bad input → one line, exit code, no files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mrl_compress.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


@pytest.fixture()
def vectors_file(scifact: np.ndarray, tmp_path: Path) -> Path:
    path = tmp_path / "vectors.npy"
    np.save(path, scifact[:1500].astype(np.float16))
    return path


def test_fit_encode_inspect_eval(capsys, vectors_file: Path, scifact: np.ndarray,
                                 tmp_path: Path) -> None:
    out = tmp_path / "docs.mrlc"
    code, text, err = run(capsys, "fit", "--source", str(vectors_file), "--method", "pca",
                          "--dims", "32,64", "--out", str(out))
    assert code == 0, err
    # the engine's best at 96 B: TurboQuant 2-bit or product quantization x16
    assert "mrl_64" in text and "prefix 64d" in text
    assert "full turbo2" in text or "full pq16" in text
    assert (out / "retention.png").stat().st_size > 1000

    more = tmp_path / "more.npy"
    np.save(more, scifact[4000:4010])
    codes = tmp_path / "codes.npz"
    code, text, err = run(capsys, "encode", "--compressor", str(out), "--input", str(more),
                          "--output", str(codes))
    assert code == 0, err
    with np.load(codes) as z:
        assert sorted(z.files) == ["mrl_32", "mrl_64"]
        assert z["mrl_64"].shape == (10, 64) and z["mrl_64"].dtype == np.float32
    assert "CPUExecutionProvider" in text

    code, text, _ = run(capsys, "inspect", str(out))
    assert code == 0 and "checksums ok" in text and "mrl_32: dense 32" in text

    q = tmp_path / "q.npy"
    np.save(q, scifact[:20] + 0.01)
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{i}\t{i}\t1\n" for i in range(20)))
    code, text, err = run(capsys, "eval", "--compressor", str(out), "--corpus",
                          str(vectors_file), "--queries", str(q), "--qrels", str(qrels), "--json")
    assert code == 0, err
    rows = json.loads(text)
    assert rows[0]["name"] == "full 384d" and rows[0]["ndcg10"] > 0.9
    assert {r["name"] for r in rows} == {"full 384d", "mrl_32", "mrl_64"}


def test_encode_writes_the_sparse_layout(capsys, fitted: dict, scifact: np.ndarray,
                                         tmp_path: Path) -> None:
    art = fitted["csr"].compressor.save(tmp_path / "csr.mrlc")
    src = tmp_path / "in.npy"
    np.save(src, scifact[:7])
    code, _, err = run(capsys, "encode", "--compressor", str(art), "--input", str(src),
                       "--output", str(tmp_path / "c.npz"))
    assert code == 0, err
    with np.load(tmp_path / "c.npz") as z:
        assert z["csr_16.indices"].shape == (7, 16) and z["csr_16.indices"].dtype == np.int32
        # a pursuit code: 2 × 512 signed slots
        assert z["csr_16.values"].dtype == np.float32 and int(z["csr_16.dim"]) == 1024
    code, text, _ = run(capsys, "inspect", str(art))
    assert code == 0 and "codes by matching pursuit" in text
    topk = fitted["csr-topk"].compressor.save(tmp_path / "topk.mrlc")
    code, text, _ = run(capsys, "inspect", str(topk))
    assert code == 0 and "codes by TopK" in text and "sparse 512, k=8" in text


def test_sts_mode(capsys, fitted: dict, tmp_path: Path) -> None:
    from tests.conftest import load_f32

    a, b = load_f32("stsb/dev.s1.minilm.f16.npy", 300), load_f32("stsb/dev.s2.minilm.f16.npy", 300)
    gold = np.einsum("nd,nd->n", a, b) + np.random.default_rng(0).normal(0, 0.1, 300)
    np.savez(tmp_path / "sts.npz", a=a, b=b, score=gold)
    art = fitted["pca"].compressor.save(tmp_path / "p.mrlc")
    code, text, err = run(capsys, "eval", "--compressor", str(art), "--sts",
                          str(tmp_path / "sts.npz"), "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(text)}
    assert rows["mrl_64"]["retention"] > 0.5


# -- bad input: one line naming expected and found, non-zero exit, nothing written ------------

def bad_fit(capsys, tmp_path: Path, data: np.ndarray, *extra: str) -> tuple[int, str]:
    src = tmp_path / "bad.npy"
    np.save(src, data)
    out = tmp_path / "never.mrlc"
    code, _, err = run(capsys, "fit", "--source", str(src), "--out", str(out), *extra)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.npy"]
    return code, err


def test_nan_rows_are_refused(capsys, scifact: np.ndarray, tmp_path: Path) -> None:
    data = scifact[:600].copy()
    data[5, 3] = np.nan
    data[9] = np.inf
    code, err = bad_fit(capsys, tmp_path, data, "--method", "pca", "--dims", "32")
    assert code == 2
    assert err == ("error: source vectors: 2 invalid row(s) (NaN/inf or all-zero), first at row 5 "
                   "(NaN/inf); fix them or pass --drop-invalid to skip them")


def test_zero_rows_are_refused(capsys, scifact: np.ndarray, tmp_path: Path) -> None:
    data = scifact[:600].copy()
    data[0] = 0
    code, err = bad_fit(capsys, tmp_path, data, "--method", "pca", "--dims", "32")
    assert code == 2 and "first at row 0 (all-zero)" in err


def test_drop_invalid_counts_what_it_dropped(capsys, scifact: np.ndarray, tmp_path: Path) -> None:
    data = scifact[:800].copy()
    data[3] = np.nan
    src = tmp_path / "v.npy"
    np.save(src, data)
    code, _, err = run(capsys, "fit", "--source", str(src), "--method", "pca", "--dims", "16",
                       "--out", str(tmp_path / "o.mrlc"), "--drop-invalid")
    assert code == 0 and "dropped 1 invalid row(s)" in err


def test_dims_larger_than_input(capsys, scifact: np.ndarray, tmp_path: Path) -> None:
    code, err = bad_fit(capsys, tmp_path, scifact[:600], "--dims", "64,512")
    assert code == 2 and err == "error: --dims 512 must be between 1 and the input dimension 384"


def test_k_larger_than_hidden(capsys, scifact: np.ndarray, tmp_path: Path) -> None:
    code, err = bad_fit(capsys, tmp_path, scifact[:600], "--method", "csr", "--k", "600",
                        "--hidden", "512")
    assert code == 2 and err == "error: --k 600 must be between 1 and the hidden size 512"


def test_too_few_rows(capsys, scifact: np.ndarray, tmp_path: Path) -> None:
    code, err = bad_fit(capsys, tmp_path, scifact[:100], "--method", "pca", "--dims", "8")
    assert code == 2
    assert err == ("error: source vectors: need at least 276 valid rows to fit and measure, "
                   "found 100")


def test_not_a_matrix(capsys, tmp_path: Path) -> None:
    code, err = bad_fit(capsys, tmp_path, np.zeros(10, dtype=np.float32))
    assert code == 2 and "expected a 2-d array (rows = vectors), found shape (10,)" in err


def test_unknown_method(capsys, scifact: np.ndarray, tmp_path: Path) -> None:
    code, err = bad_fit(capsys, tmp_path, scifact[:600], "--method", "magic")
    assert code == 2
    assert err == ("error: unknown method 'magic': expected one of truncate, pca, ads, adaptor, "
                   "csr")


def test_bad_training_options(capsys, scifact: np.ndarray, tmp_path: Path) -> None:
    code, err = bad_fit(capsys, tmp_path, scifact[:600], "--option", "tau=warm")
    assert code == 2 and err == "error: training setting tau: expected float | None, found 'warm'"
    code, err = bad_fit(capsys, tmp_path, scifact[:600], "--option", "init=random")
    assert code == 2
    assert err == "error: training setting init: expected 'auto', 'local' or 'pca', found 'random'"
    code, err = bad_fit(capsys, tmp_path, scifact[:600], "--option", "colour=1")
    assert code == 2 and err.startswith("error: unknown training setting(s) colour; expected")
    code, err = bad_fit(capsys, tmp_path, scifact[:600], "--option", "tau")
    assert code == 2 and err == "error: --option: expected NAME=VALUE, found 'tau'"


def test_training_options_reach_the_manifest(capsys, vectors_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.mrlc"
    code, _, err = run(capsys, "fit", "--source", str(vectors_file), "--method", "adaptor",
                       "--dims", "16", "--steps", "5", "--option", "tau=0.07",
                       "--option", "init=pca", "--out", str(out))
    assert code == 0, err
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert settings["tau"] == 0.07 and settings["init"] == "pca" and settings["steps"] == 5


def test_missing_source(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "fit", "--source", str(tmp_path / "nope.npy"), "--out",
                       str(tmp_path / "o"))
    assert code == 2 and "does not exist (expected a .npy or .parquet file)" in err


def test_encode_input_of_another_dimension(capsys, fitted: dict, tmp_path: Path) -> None:
    art = fitted["pca"].compressor.save(tmp_path / "p.mrlc")
    src = tmp_path / "wide.npy"
    np.save(src, np.ones((4, 256), dtype=np.float32))
    out = tmp_path / "codes.npz"
    code, _, err = run(capsys, "encode", "--compressor", str(art), "--input", str(src),
                       "--output", str(out))
    assert code == 2 and err == "error: vectors to encode: expected 384-d vectors, found 256-d"
    assert not out.exists()


def test_tampered_artifact_exits_3(capsys, fitted: dict, tmp_path: Path) -> None:
    art = fitted["pca"].compressor.save(tmp_path / "p.mrlc")
    (art / "weights.safetensors").write_bytes(b"x")
    code, _, err = run(capsys, "inspect", str(art))
    assert code == 3 and "checksum does not match the manifest" in err


def test_every_command_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    from mrl_compress.cli import app

    for command in app.registered_commands:
        name = command.name or command.callback.__name__  # type: ignore[union-attr]
        assert f"## mrl-compress {name}" in docs, name


def test_fit_reads_a_sample_from_a_store(capsys, scifact: np.ndarray, tmp_path: Path) -> None:
    from mrl_compress.adapters import VectorField, connect

    store = connect(f"edge:{tmp_path / 'shards'}")
    store.create_collection("docs", [VectorField("", "dense", 384, "cosine")])
    ids = list(range(1200))
    store.upsert("docs", ids, {"": scifact[:1200]}, [{"n": i} for i in ids])
    store.close()
    out = tmp_path / "docs.mrlc"
    code, text, err = run(capsys, "fit", "--source", f"edge:{tmp_path / 'shards'}",
                          "--collection", "docs", "--method", "pca", "--dims", "32",
                          "--sample", "1000", "--out", str(out))
    assert code == 0, err
    import mrl_compress

    assert mrl_compress.load(out).manifest.fingerprint.count == 800  # 1000 sampled - 200 held out


def test_store_source_needs_a_collection(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "fit", "--source", f"edge:{tmp_path}", "--out",
                       str(tmp_path / "o.mrlc"))
    assert code == 2
    assert err == (f"error: --source edge:{tmp_path} is a store: name the collection with "
                   "--collection")


def test_usage_errors_are_one_message_and_exit_2(capsys) -> None:
    """An unknown option or a missing required one: click's usage message, no traceback."""
    code, _, err = run(capsys, "fit", "--bogus")
    assert code == 2 and "No such option: --bogus" in err and "Traceback" not in err
    code, _, err = run(capsys, "migrate", "--collection", "docs")
    assert code == 2 and "Missing option" in err and "--target" in err
