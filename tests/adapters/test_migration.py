"""Migration against real engines (Qdrant Edge, qdrant-client local mode, Milvus Lite).

Real MiniLM vectors of WordNet glosses, a real PCA compressor (ONNX), and the real CLI in a
subprocess for the kill/resume proof.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mrl_compress
from mrl_compress import migration
from mrl_compress.adapters import VectorField, connect
from mrl_compress.adapters import migration as legacy  # the deprecated URI-taking path
from mrl_compress.cli import main
from mrl_compress.compressor import Compressor, load
from mrl_compress.errors import InvalidInput, StoreError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wordnet-gloss"
N = 2000
REPO = Path(__file__).resolve().parents[2]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="session")
def glosses() -> tuple[np.ndarray, list[dict[str, Any]]]:
    stored = np.load(DATA / "corpus.minilm.f16.npy", mmap_mode="r")
    with gzip.open(DATA / "corpus.jsonl.gz", "rt") as lines:
        docs = [json.loads(line) for line in islice(lines, N)]
    payloads = [
        {"doc_id": d["_id"], "text": d["text"], "meta": {"parity": ["even", "odd"][i % 2]}}
        for i, d in enumerate(docs)
    ]
    return unit(np.asarray(stored[:N], dtype=np.float32)), payloads


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory, glosses: Any) -> Path:
    """A PCA compressor (mrl_32, mrl_64) fitted on the glosses, saved as an artifact."""
    path = tmp_path_factory.mktemp("artifact") / "c.mrlc"
    mrl_compress.fit(glosses[0], "pca", dims=(32, 64)).compressor.save(path)
    return path


def edge_docs(root: Path, vectors: np.ndarray, payloads: list[dict[str, Any]],
              name: str = "docs") -> str:
    uri = f"edge:{root}"
    store = connect(uri)
    store.create_collection(name, [VectorField("", "dense", vectors.shape[1], "cosine")])
    store.upsert(name, list(range(len(vectors))), {"": vectors}, payloads)
    store.close()
    return uri


def dump(uri: str, collection: str, names: list[str]) -> dict[str, Any]:
    """Every point: ids, payloads and the named dense vectors, in id order."""
    store = connect(uri)
    out: dict[str, Any] = {"ids": [], "payloads": []}
    for name in names:
        batches = list(store.iter_batches(collection, name, batch_size=500))
        out[name] = np.concatenate([b.vectors for b in batches])
        if not out["ids"]:
            out["ids"] = [i for b in batches for i in b.ids]
            out["payloads"] = [p for b in batches for p in b.payloads]
    store.close()
    return out


def cli(*args: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mrl_compress.cli", "migrate", *args],
        cwd=cwd or REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["migrate", *args])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


# ── kill at random moments, resume, compare with an uninterrupted run ────────────────────


def test_sigkill_five_times_then_resume_equals_uninterrupted(
    tmp_path: Path, glosses: Any, artifact: Path
) -> None:
    vectors, payloads = glosses
    killed_uri = edge_docs(tmp_path / "killed", vectors, payloads)
    clean_uri = edge_docs(tmp_path / "clean", vectors, payloads)
    compressor = tmp_path / "c.mrlc"
    shutil.copytree(artifact, compressor)

    plan = legacy.plan(clean_uri, "docs", compressor, batch_size=40,
                          checkpoint=tmp_path / "clean.json")  # fmt: skip
    assert legacy.run(plan).ok

    checkpoint = migration.checkpoint_path(compressor, "docs")
    args = ["--target", killed_uri, "--collection", "docs", "--compressor", str(compressor),
            "--batch", "40", "--workers", "2", "--verify", "all"]  # fmt: skip
    rng = random.Random(7)
    kill_at = sorted(rng.sample(range(40, N), 5))  # points committed when the kill lands
    kills = 0
    for at in kill_at:
        process = cli(*args, *(["--resume"] if kills else []))
        while process.poll() is None:
            state = json.loads(checkpoint.read_text()) if checkpoint.exists() else {}
            if state.get("done", 0) >= at:
                time.sleep(rng.uniform(0, 0.02))  # somewhere inside the next batch
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                break
            time.sleep(0.002)
        else:
            pytest.fail(f"the run finished before the kill at {at}: {process.stderr.read()!r}")
    assert kills == 5
    stopped = json.loads(checkpoint.read_text())
    assert stopped["phase"] != "done" and stopped["done"] >= kill_at[-1]

    process = cli(*args)  # without --resume: refused, nothing written
    _, error = process.communicate()
    assert process.returncode == 2
    assert error.decode().strip() == (
        f"error: a migration of 'docs' stopped at {stopped['done']}/{N} points ({checkpoint}): "
        "pass --resume to continue it, or delete the checkpoint to start over"
    )
    process = cli(*args, "--resume")
    out, error = process.communicate()
    assert process.returncode == 0, error.decode()
    assert "verification: 2000 points have every new field; 2000 sampled points compared: " \
        "all equal" in out.decode()

    names = ["", "mrl_32", "mrl_64"]
    killed, clean = dump(killed_uri, "docs", names), dump(clean_uri, "docs", names)
    assert killed["ids"] == clean["ids"] == list(range(N))
    assert killed["payloads"] == clean["payloads"] == payloads
    assert killed[""].tobytes() == clean[""].tobytes() == vectors.tobytes()
    fresh = load(compressor).encode(vectors)
    for name in ("mrl_32", "mrl_64"):
        np.testing.assert_allclose(killed[name], clean[name], atol=1e-6)
        np.testing.assert_allclose(killed[name], fresh[name], atol=1e-5)

    again = cli(*args)  # a second run over a finished migration is harmless
    assert again.wait() == 0
    assert dump(killed_uri, "docs", [""])["payloads"] == payloads


# ── copy mode: alias swap under queries, reconciliation of concurrent writes ─────────────


def test_milvus_copy_with_swap_keeps_alias_queries_answering(
    tmp_path: Path, glosses: Any, artifact: Path
) -> None:
    pytest.importorskip("milvus_lite")
    vectors, payloads = glosses
    n = 1000
    uri = f"milvus:{tmp_path / 'm.db'}"
    store = connect(uri)
    store.create_collection("docs_v1", [VectorField("full", "dense", 384, "cosine")])
    # ids from 10 up, so that the application can add a point behind the scan (id 5)
    store.upsert("docs_v1", list(range(10, n + 10)), {"full": vectors[:n]}, payloads[:n])
    store.swap_alias("docs", "docs_v1")

    reader = connect(uri)
    errors: list[BaseException] = []
    answered = [0]
    stop = threading.Event()

    def query() -> None:
        while not stop.is_set():
            try:
                hits = reader.search("docs", "full", vectors[5:6], 3)
                assert hits[0][0].id == 15
                answered[0] += 1
            except BaseException as e:  # noqa: BLE001 - the assertion below shows it
                errors.append(e)
                return

    def application_writes(done: int, total: int) -> None:
        """Mid-copy, the application changes a copied point and adds one behind the scan."""
        if done >= n // 2 and not written:
            store.upsert("docs_v1", [13], {"full": vectors[3:4]}, [{"edited": True}])
            store.upsert("docs_v1", [5], {"full": vectors[n : n + 1]}, payloads[n : n + 1])
            written.append(done)

    written: list[int] = []
    thread = threading.Thread(target=query)
    thread.start()
    try:
        plan = migration.plan(store, "docs", artifact, batch_size=100, swap=True,
                              checkpoint=tmp_path / "ck.json")  # fmt: skip
        assert plan.mode == "auto" and plan.alias == "docs"
        report = migration.run(plan, store, progress=application_writes)
        time.sleep(0.3)  # queries after the swap
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert answered[0] > 5 and written
    assert report.ok and report.mode == "copy" and report.swapped == "docs"
    assert report.written == n
    assert report.fallback and report.fallback.startswith("Milvus cannot add a vector field")
    assert report.reconciled == 2 and report.orphans == 0
    info = store.describe("docs")
    assert info.count == n + 1 and {"full", "mrl_32", "mrl_64"} <= set(info.fields)
    assert store.describe("docs_v1").aliases == []
    assert store.describe("docs_v1").count == n + 1  # the old collection is untouched
    hits = store.search("docs", "mrl_64", load(artifact).encode(vectors[3:4])["mrl_64"], 1)
    source = store.search("docs_v1", "full", vectors[3:4], 1)[0][0]
    assert hits[0][0].id == source.id == 13 and hits[0][0].payload == source.payload
    assert hits[0][0].payload["edited"] is True
    hits = store.search("docs", "mrl_64", load(artifact).encode(vectors[n : n + 1])["mrl_64"], 1)
    assert hits[0][0].id == 5 and hits[0][0].payload == payloads[n]
    store.close()
    reader.close()


# ── LangChain collections stay loadable ──────────────────────────────────────────────────


class StoredEmbeddings:
    """The stored vector of a known text: no model runs, real geometry."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.table = dict(zip(texts, vectors.tolist(), strict=True))
        self.other = vectors[0].tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.table.get(text, self.other)


def test_langchain_qdrant_collection_migrates_in_place_and_still_loads(
    tmp_path: Path, glosses: Any, artifact: Path
) -> None:
    from langchain_core.embeddings import Embeddings
    from langchain_qdrant import QdrantVectorStore

    from mrl_compress.adapters.qdrant import QdrantStore

    class Stored(StoredEmbeddings, Embeddings):
        pass

    vectors, payloads = glosses
    n = 200
    texts = [p["text"] for p in payloads[:n]]
    embeddings = Stored(texts, vectors[:n])
    path = str(tmp_path / "qdrant")
    made = QdrantVectorStore.from_texts(
        texts, embeddings, metadatas=[{"doc_id": p["doc_id"]} for p in payloads[:n]],
        ids=list(range(n)), path=path, collection_name="lc",
    )  # fmt: skip
    uri = f"qdrant-local:{path}"
    store = QdrantStore(uri, client=made.client)  # local mode: one client per folder
    plan = migration.plan(store, "lc", artifact, batch_size=64,
                          checkpoint=tmp_path / "ck.json")  # fmt: skip
    assert plan.vector == "" and [f.name for f in plan.fields] == ["mrl_32", "mrl_64"]
    report = migration.run(plan, store)
    assert report.ok and report.mode == "in-place" and report.written == n
    assert set(store.describe("lc").fields) == {"", "mrl_32", "mrl_64"}
    store.close()

    reopened = QdrantVectorStore.from_existing_collection(
        collection_name="lc", embedding=embeddings, path=path
    )
    found = reopened.similarity_search(texts[11], k=1)
    assert found[0].page_content == texts[11]
    assert found[0].metadata["doc_id"] == payloads[11]["doc_id"]
    reopened.client.close()


def test_langchain_milvus_collection_is_copied_and_the_copy_loads(
    tmp_path: Path, glosses: Any, artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("milvus_lite")
    from langchain_core.embeddings import Embeddings
    from langchain_milvus import Milvus

    class Stored(StoredEmbeddings, Embeddings):
        pass

    vectors, payloads = glosses
    n = 300
    texts = [p["text"] for p in payloads[:n]]
    embeddings = Stored(texts, vectors[:n])
    db = tmp_path / "lc.db"
    Milvus.from_texts(
        texts, embeddings, metadatas=[{"doc_id": p["doc_id"]} for p in payloads[:n]],
        ids=[p["doc_id"] for p in payloads[:n]], connection_args={"uri": str(db)},
        collection_name="lc",
    )  # fmt: skip
    code, out, err = run_main(capsys, "--target", f"milvus:{db}", "--collection", "lc",
                              "--compressor", str(artifact), "--batch", "100", "--swap")
    assert code == 0, err
    assert "copy: wrote 300 points into 'lc_mrl'" in out
    assert ("'lc' is a collection name, not an alias, so no atomic switch exists:" in out)

    before = Milvus(embeddings, collection_name="lc", connection_args={"uri": str(db)})
    after = Milvus(embeddings, collection_name="lc_mrl", connection_args={"uri": str(db)})
    old, new = before.similarity_search(texts[17], k=5), after.similarity_search(texts[17], k=5)
    assert [d.page_content for d in new] == [d.page_content for d in old]
    assert [{k: v for k, v in d.metadata.items() if not k.startswith("mrl_")} for d in new] == [
        d.metadata for d in old
    ]


# ── bad input, word for word ─────────────────────────────────────────────────────────────


def test_bad_inputs_are_one_line_and_write_nothing(
    tmp_path: Path, glosses: Any, artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors, payloads = glosses
    n = 300
    uri = edge_docs(tmp_path / "edge", vectors[:n], payloads[:n])
    store = connect(uri)
    store.create_collection("small", [VectorField("", "dense", 128, "cosine")])
    store.upsert("small", [1], {"": vectors[:1, :128]})
    # dot, not cosine: Qdrant normalises vectors of a cosine field on write
    store.create_collection("loud", [VectorField("", "dense", 384, "dot")])
    store.upsert("loud", list(range(n)), {"": 3 * vectors[:n]})
    store.create_collection("docs_mrl", [VectorField("x", "dense", 4, "cosine")])
    zeros = vectors[:n].copy()
    zeros[7] = 0  # a point with no direction (dot: a cosine field would normalise it)
    store.create_collection("zeros", [VectorField("", "dense", 384, "dot")])
    store.upsert("zeros", list(range(n)), {"": zeros})
    store.close()
    base = ["--target", uri, "--compressor", str(artifact)]

    def fails(*args: str) -> tuple[int, str]:
        code, _, err = run_main(capsys, *base, *args)
        return code, err.strip()

    assert fails("--collection", "nope") == (5, (
        "error: collection 'nope' does not exist; the store has 'docs', 'docs_mrl', 'loud', "
        "'small', 'zeros'"))  # fmt: skip
    code, err = fails("--collection", "zeros")  # after its progress bar had started
    assert (code, err.splitlines()[-1]) == (2, (
        "error: point 7 holds a NaN/inf or all-zero '' vector, which has no direction to "
        "compress: fix or delete it, then run migrate again"))  # fmt: skip
    migration.checkpoint_path(artifact, "zeros").unlink(missing_ok=True)
    assert connect(uri).count_having("zeros", ["mrl_32"]) == 0  # no point's outputs written
    assert fails("--collection", "small") == (2, (
        f"error: compressor {artifact} takes 384-d vectors but vector '' (default) of 'small' "
        "holds 128-d vectors: use a compressor fitted on this collection"))  # fmt: skip
    assert fails("--collection", "loud") == (2, (
        f"error: collection 'loud' does not look like the vectors {artifact} was fitted on "
        "(mean norm 3.000 ≠ the training vectors' 1.000): pass --force to migrate anyway"
    ))  # fmt: skip
    assert fails("--collection", "docs", "--mode", "copy") == (5, (
        "error: collection 'docs_mrl' already exists and no checkpoint of this migration "
        "names it: choose another --new-name, or drop it"))  # fmt: skip
    assert fails("--collection", "docs", "--verify", "some") == (2, (
        "error: --verify: expected a number of points or 'all', found 'some'"))  # fmt: skip
    assert not migration.checkpoint_path(artifact, "docs").exists()
    assert set(dump(uri, "docs", [""])) == {"ids", "payloads", ""}
    assert connect(uri).describe("docs").fields.keys() == {""}  # nothing was added

    code, out, _ = run_main(capsys, *base, "--collection", "loud", "--force", "--dry-run")
    assert code == 0 and "note: fingerprint differs (mean norm 3.000" in out

    # a checkpoint of another compressor, or of the same name in another store
    other = tmp_path / "other.mrlc"
    shutil.copytree(artifact, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["settings"]["note"] = "refit"
    (other / "manifest.json").write_text(json.dumps(manifest))
    ck = migration.checkpoint_path(artifact, "docs")
    try:
        legacy.plan(uri, "docs", artifact, checkpoint=ck, batch_size=100)
        state = migration.Checkpoint(uri, "docs", "", str(other), "f" * 64, "in-place",
                                     None, offset=100, done=100, total=n)  # fmt: skip
        state.save(ck)
        code, err = fails("--collection", "docs", "--resume")
        assert (code, err) == (2, (
            f"error: checkpoint {ck} was written with another compressor ({other}, sha256 "
            f"ffffffffffff), not {artifact} (sha256 "
            f"{migration.compressor_sha256(artifact)[:12]}): resume with that compressor, or "
            "delete the checkpoint to start over"))  # fmt: skip
        state.target, state.compressor_sha256 = "edge:./elsewhere", migration.compressor_sha256(
            artifact
        )
        state.save(ck)
        assert fails("--collection", "docs", "--resume") == (2, (
            f"error: checkpoint {ck} belongs to collection 'docs' at edge:./elsewhere, not "
            f"'docs' at {uri}: delete it to start over"))  # fmt: skip
    finally:
        ck.unlink(missing_ok=True)


class FlakyStore:
    """A real store whose writes fail after ``ok`` batches, as an adapter does once its
    retries are spent (the server went away)."""

    def __init__(self, store: Any, ok: int) -> None:
        self.store, self.ok = store, ok

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def write_outputs(self, *args: Any) -> None:
        self._spend()
        self.store.write_outputs(*args)

    def upsert(self, *args: Any) -> None:
        self._spend()
        self.store.upsert(*args)

    def _spend(self) -> None:
        if self.ok <= 0:
            raise StoreError("cannot reach Qdrant at http://db:6333 after 3 tries: refused")
        self.ok -= 1


def test_server_going_away_stops_cleanly_and_resume_finishes(
    tmp_path: Path, glosses: Any, artifact: Path
) -> None:
    vectors, payloads = glosses
    n = 500
    uri = edge_docs(tmp_path / "edge", vectors[:n], payloads[:n])
    store = connect(uri)
    ck = tmp_path / "ck.json"
    plan = migration.plan(store, "docs", artifact, batch_size=100, checkpoint=ck)
    with pytest.raises(StoreError) as stopped:
        migration.run(plan, FlakyStore(store, ok=2))  # type: ignore[arg-type]
    assert str(stopped.value) == (
        "cannot reach Qdrant at http://db:6333 after 3 tries: refused — stopped after "
        f"200/500 points; {ck} holds every committed batch: run the same command with "
        "--resume to continue"
    )
    with pytest.raises(InvalidInput):
        migration.plan(store, "docs", artifact, batch_size=100, checkpoint=ck)
    plan = migration.plan(store, "docs", artifact, batch_size=100, checkpoint=ck,
                          resume=True, verify=None)  # fmt: skip
    assert plan.resume is not None and plan.resume.done == 200
    report = migration.run(plan, store)
    assert report.ok and report.written == 300 and report.verification.sampled == n
    store.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_resumed_copy_keeps_a_record_of_exactly_the_committed_points(
    tmp_path: Path, glosses: Any, artifact: Path, workers: int
) -> None:
    """Reconciliation compares the source with the record the write pass kept: a resumed
    copy cuts off what a stopped run recorded past its checkpoint, so an untouched source
    re-copies nothing and the copy has no orphans. UUID ids and two original vectors."""
    vectors, payloads = glosses
    n = 500
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    uri = f"edge:{tmp_path / 'edge'}"
    store = connect(uri)
    store.create_collection("docs", [VectorField("full", "dense", 384, "cosine"),
                                     VectorField("title", "dense", 16, "dot")])  # fmt: skip
    store.upsert("docs", ids, {"full": vectors[:n], "title": vectors[:n, :16]}, payloads[:n])
    ck = tmp_path / "ck.json"
    plan = migration.plan(store, "docs", artifact, vector="full", mode="copy", batch_size=100,
                          workers=workers, checkpoint=ck)  # fmt: skip
    assert sorted(plan.copied_vectors) == ["full", "title"]
    with pytest.raises(StoreError):
        migration.run(plan, FlakyStore(store, ok=2))  # type: ignore[arg-type]
    record = migration.CopyRecord.of(ck)
    done = json.loads(ck.read_text())["done"]
    recorded = record.path.read_text().splitlines() if record.path.exists() else []
    assert done in (0, 100, 200) and len(recorded) == done  # 2 workers: the stop may come first
    with open(record.path, "a") as f:  # as if killed after recording a batch, before its commit
        f.write('["00000000-0000-0000-0000-00000000ffff", "00000000000000000000000000000000"]\n')
    plan = migration.plan(store, "docs", artifact, vector="full", mode="copy", batch_size=100,
                          workers=workers, checkpoint=ck, resume=True,
                          verify=None)  # fmt: skip
    plan.copied_vectors.reverse()  # another process may list the vectors in another order
    report = migration.run(plan, store)
    assert report.ok and report.written == n - done and report.verification.sampled == n
    assert (report.reconciled, report.orphans) == (0, 0)
    assert not record.path.exists()  # removed once the migration is done
    copy = store.retrieve("docs_mrl", ids[-3:], ["full", "title", "mrl_64"])
    assert copy.ids == ids[-3:] and copy.payloads == payloads[n - 3 : n]
    store.close()


def migrated_edge(tmp_path: Path, glosses: Any, artifact: Path,
                  capsys: pytest.CaptureFixture[str], n: int) -> str:
    """An Edge collection of ``n`` glosses, migrated in place by the CLI; its URI."""
    vectors, payloads = glosses
    uri = edge_docs(tmp_path / "edge", vectors[:n], payloads[:n])
    args = ["--target", uri, "--collection", "docs", "--compressor", str(artifact)]
    assert run_main(capsys, *args, "--verify", "10")[0] == 0
    return uri


def test_verification_finds_a_wrong_vector(
    tmp_path: Path, glosses: Any, artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors, _ = glosses
    uri = migrated_edge(tmp_path, glosses, artifact, capsys, n=300)
    store = connect(uri)
    wrong = load(artifact).encode(vectors[:2])
    store.write_outputs("docs", [7], {"mrl_64": np.asarray(wrong["mrl_64"])[1:2]})
    store.close()
    store = connect(uri)
    result = migration.verify(store, "docs", "docs", load(artifact), vector="", sample=None)
    store.close()
    assert not result.ok and result.problem_count == 1
    assert result.problems[0].startswith("point 7: 'mrl_64' differs from a fresh encode by ")
    migration.checkpoint_path(artifact, "docs").unlink()


def test_verification_counts_a_point_without_the_new_fields(
    tmp_path: Path, glosses: Any, artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors, payloads = glosses
    n = 300
    uri = migrated_edge(tmp_path, glosses, artifact, capsys, n)
    store = connect(uri)
    store.upsert("docs", [n], {"": vectors[n : n + 1]}, [payloads[n]])  # written after
    result = migration.verify(store, "docs", "docs", load(artifact), vector="", sample=5)
    store.close()
    assert not result.ok and result.points == n and result.listed == n + 1
    assert result.problems[0] == (f"1 of {n + 1} points of 'docs' lack a new field "
                                  "('mrl_32', 'mrl_64')")
    migration.checkpoint_path(artifact, "docs").unlink()


# ── sparse outputs (CSR) ─────────────────────────────────────────────────────────────────


@pytest.mark.slow
def test_sparse_outputs_in_place_on_edge_are_verified(tmp_path: Path, glosses: Any) -> None:
    vectors, payloads = glosses
    csr: Compressor = mrl_compress.fit(vectors, "csr", k=(8,), steps=20, hidden=512).compressor
    path = csr.save(tmp_path / "csr.mrlc")
    n = 500
    uri = edge_docs(tmp_path / "edge", vectors[:n], payloads[:n])
    plan = legacy.plan(uri, "docs", path, batch_size=100, verify=None)
    report = legacy.run(plan)
    assert report.ok and report.verification.sampled == n
    store = connect(uri)
    assert store.describe("docs").fields["csr_8"].kind == "sparse"
    other = csr.encode(vectors[1:2])
    store.write_outputs("docs", [0], other)  # point 0 now holds point 1's code
    result = migration.verify(store, "docs", "docs", load(path), vector="", sample=None)
    store.close()
    assert result.problem_count == 1 and result.problems[0].startswith(
        "point 0: sparse 'csr_8' differs from a fresh encode"
    )


def test_dry_run_prints_the_plan_and_writes_nothing(
    tmp_path: Path, glosses: Any, artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors, payloads = glosses
    uri = edge_docs(tmp_path / "edge", vectors[:100], payloads[:100])
    code, out, _ = run_main(capsys, "--target", uri, "--collection", "docs", "--compressor",
                            str(artifact), "--dry-run", "--mode", "copy", "--new-name", "v2")
    assert code == 0
    assert out.splitlines()[1:4] == [
        "  mode: copy into new collection 'v2'",
        "  read vector: '' (default) (100 points)",
        "  fields to create: '' (default) (dense 384, cosine), 'mrl_32' (dense 32, cosine), "
        "'mrl_64' (dense 64, cosine)",
    ]
    assert "index memory: small 25.6 KB vs full 166.4 KB" in out
    store = connect(uri)
    assert [c for c in os.listdir(tmp_path / "edge") if not c.startswith(".")] == ["docs"]
    assert store.describe("docs").fields.keys() == {""}
    store.close()
    assert not migration.checkpoint_path(artifact, "docs").exists()
