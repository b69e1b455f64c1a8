"""Sync against the real embedded engines: points written after a migration get their outputs.

Real MiniLM vectors of WordNet glosses and a real PCA compressor. The application's writes are
whole-point upserts of the full vector only, as langchain-qdrant and langchain-milvus write.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mrl_compress
from mrl_compress import migration, sync
from mrl_compress.adapters import VectorField, VectorStore, connect
from mrl_compress.cli import main
from mrl_compress.errors import InvalidInput, NotFound, StoreError
from mrl_compress.outputs import Output
from tests.conftest import DATA

N = 1200
NEW = 150
REWRITTEN = 40
ENGINES = [pytest.param("edge:{tmp}/edge", id="edge"),
           pytest.param("qdrant-local::memory:", id="qdrant-local")]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def glosses() -> np.ndarray:
    stored = np.load(DATA / "wordnet-gloss" / "corpus.minilm.f16.npy", mmap_mode="r")
    return unit(np.asarray(stored[: N + NEW], dtype=np.float32))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, glosses: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("artifact") / "c.mrlc"
    mrl_compress.fit(glosses[:N], "pca", dims=(32, 64)).compressor.save(path)
    return path


@pytest.fixture(params=ENGINES)
def migrated(request: Any, tmp_path: Path, glosses: np.ndarray, artifact: Path) -> Any:
    """A collection migrated in place, then written by the application: NEW new points and
    REWRITTEN re-written ones (new full vectors), all without outputs."""
    store = connect(request.param.format(tmp=tmp_path))
    store.create_collection("docs", [VectorField("", "dense", 384, "cosine")])
    store.upsert("docs", list(range(N)), {"": glosses[:N]}, [{"i": i} for i in range(N)])
    plan = migration.plan(store, "docs", artifact, checkpoint=tmp_path / "ck.json")
    assert migration.run(plan, store).ok
    new_ids = list(range(N, N + NEW))
    store.upsert("docs", new_ids, {"": glosses[N:]}, [{"i": i} for i in new_ids])
    rewritten = list(range(0, 4 * REWRITTEN, 4))
    shifted = unit(glosses[rewritten] + glosses[[i + 1 for i in rewritten]])
    store.upsert("docs", rewritten, {"": shifted}, [{"i": i} for i in rewritten])
    yield store, new_ids + rewritten
    store.close()


def lacking(store: VectorStore) -> list[Any]:
    batches = store.iter_batches("docs", "", missing=["mrl_32", "mrl_64"], with_payload=False)
    return sorted(pid for batch in batches for pid in batch.ids)


def test_sync_writes_exactly_the_points_written_after_the_migration(
    migrated: Any, artifact: Path
) -> None:
    store, written = migrated
    model = mrl_compress.load(artifact)
    plan = sync.plan(store, "docs", artifact, batch_size=64)
    assert (plan.points, plan.unsynced) == (N + NEW, NEW + REWRITTEN)
    assert lacking(store) == sorted(written)
    seen: list[tuple[int, int]] = []
    report = sync.run(plan, store, progress=lambda done, total: seen.append((done, total)))
    assert report.written == NEW + REWRITTEN and not report.skipped and not report.stopped
    assert seen[-1] == (NEW + REWRITTEN, NEW + REWRITTEN)
    assert store.count_having("docs", ["mrl_32", "mrl_64"]) == N + NEW
    # every point's outputs equal a fresh encode of its current full vector (no stale one)
    result = migration.verify(store, "docs", "docs", model, vector="", sample=None)
    assert result.ok, result.problems
    again = sync.run(sync.plan(store, "docs", artifact), store)
    assert again.written == 0


def test_a_stopped_sync_continues_where_it_stopped(migrated: Any, artifact: Path) -> None:
    store, written = migrated
    plan = sync.plan(store, "docs", artifact, batch_size=50)
    first = sync.run(plan, store, stop=lambda: True)  # stops after its first batch
    assert first.stopped and first.written == 50
    assert len(lacking(store)) == len(written) - 50
    rest = sync.run(sync.plan(store, "docs", artifact, batch_size=50), store, confirm=False)
    assert rest.written == len(written) - 50 and lacking(store) == []


class LosesServer:
    """A real store whose ``write_outputs`` fails after ``ok`` calls, as an adapter does once
    its retries are spent."""

    def __init__(self, store: VectorStore, ok: int) -> None:
        self.store, self.ok = store, ok

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def write_outputs(self, *args: Any) -> None:
        if self.ok == 0:
            raise StoreError("cannot reach Qdrant at http://db:6333 after 3 tries: refused")
        self.ok -= 1
        self.store.write_outputs(*args)


def test_watch_losing_the_server_stops_and_the_next_run_continues(
    migrated: Any, artifact: Path
) -> None:
    store, written = migrated
    flaky: Any = LosesServer(store, ok=2)
    plan = sync.plan(store, "docs", artifact, batch_size=30)
    with pytest.raises(StoreError, match="after 3 tries"):
        sync.watch(plan, flaky, 0.05, stop=lambda: False)
    assert len(lacking(store)) == len(written) - 60
    assert sync.run(sync.plan(store, "docs", artifact), store).written == len(written) - 60


def test_watch_syncs_each_pass_and_sigterm_stops_it_between_batches(
    migrated: Any, artifact: Path, glosses: np.ndarray
) -> None:
    from mrl_compress.cli import _stop_on_signals

    store, written = migrated
    passes: list[int] = []

    def on_pass(one: sync.SyncReport) -> None:
        passes.append(one.written)
        if len(passes) == 1:  # the application writes again between two passes
            store.upsert("docs", [N + NEW], {"": glosses[:1]}, [{"i": N + NEW}])
        if len(passes) == 2:
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()

    with _stop_on_signals() as stopping:
        report = sync.watch(sync.plan(store, "docs", artifact), store, 0.2, stop=stopping,
                            on_pass=on_pass)
    assert report.stopped and passes[:2] == [len(written), 1]
    assert report.written == len(written) + 1 and lacking(store) == []


def test_points_with_an_invalid_full_vector_are_skipped_and_named(
    migrated: Any, artifact: Path
) -> None:
    store, written = migrated
    store.upsert("docs", [N + NEW + 7], {"": np.zeros((1, 384), np.float32)}, [{}])
    report = sync.run(sync.plan(store, "docs", artifact), store)
    assert report.written == len(written) and report.skipped == [N + NEW + 7]
    assert "skipped 1 point(s) whose full vector is NaN/inf or all zeros (first: 1357)" in \
        "\n".join(report.lines())


def test_a_collection_never_migrated_is_refused_naming_migrate(
    tmp_path: Path, glosses: np.ndarray, artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"edge:{tmp_path}/edge"
    store = connect(uri)
    store.create_collection("raw", [VectorField("", "dense", 384, "cosine")])
    store.upsert("raw", [1, 2], {"": glosses[:2]}, [{}, {}])
    with pytest.raises(NotFound) as refused:
        sync.plan(store, "raw", artifact)
    assert str(refused.value) == (
        f"collection 'raw' has no field 'mrl_32' of compressor {artifact}: run mrl-compress "
        f"migrate --target ... --collection raw --compressor {artifact} first"
    )
    store.add_outputs("raw", [Output("mrl_32", "sparse", 64, nonzeros=8),
                              Output("mrl_64", "dense", 64)])  # another artifact's fields
    with pytest.raises(InvalidInput) as refused_kind:
        sync.plan(store, "raw", artifact)
    assert str(refused_kind.value) == (
        f"field 'mrl_32' of 'raw' is sparse, compressor {artifact} writes dense 32: this "
        "collection was migrated with another compressor; sync with that one, or run "
        "mrl-compress migrate with this one"
    )
    store.close()
    code, out, err = run_cli(capsys, "--target", uri, "--collection", "raw", "--compressor",
                             str(artifact))
    assert code != 0 and "run mrl-compress migrate" in err and "Traceback" not in err
    store = connect(uri)
    assert store.count_having("raw", ["mrl_64"]) == 0  # nothing written
    store.close()


def test_cli_dry_run_says_how_many_are_unsynced_then_sync_writes_them(
    tmp_path: Path, glosses: np.ndarray, artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"edge:{tmp_path}/edge"
    store = connect(uri)
    store.create_collection("docs", [VectorField("", "dense", 384, "cosine")])
    store.upsert("docs", list(range(300)), {"": glosses[:300]}, [{}] * 300)
    store.add_outputs("docs", mrl_compress.load(artifact).outputs)
    store.close()
    args = ("--target", uri, "--collection", "docs", "--compressor", str(artifact))
    code, out, _ = run_cli(capsys, *args, "--dry-run")
    assert code == 0 and "unsynced: 300 of 300 points lack an output" in out
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "synced 300 point(s) of 'docs'" in out
    code, out, _ = run_cli(capsys, *args, "--dry-run")
    assert "unsynced: 0 of 300 points" in out


def test_migrate_catches_up_writes_behind_its_cursor(
    tmp_path: Path, glosses: np.ndarray, artifact: Path
) -> None:
    store = connect(f"edge:{tmp_path}/edge")
    store.create_collection("docs", [VectorField("", "dense", 384, "cosine")])
    store.upsert("docs", list(range(2, N)), {"": glosses[2:N]}, [{}] * (N - 2))
    late = iter([[0, 1]])

    def application_writes(done: int, total: int) -> None:
        ids = next(late, None) if done >= 400 else None
        if ids:  # ids before the write pass's cursor: it will not come back for them
            store.upsert("docs", ids, {"": glosses[ids]}, [{}, {}])

    plan = migration.plan(store, "docs", artifact, batch_size=200,
                          checkpoint=tmp_path / "ck.json")  # fmt: skip
    report = migration.run(plan, store, progress=application_writes)
    assert report.ok and report.caught_up == 2 and report.verification.unsynced == 0
    assert "caught up: 2 point(s) written during the pass got their outputs" in report.lines()
    assert store.count_having("docs", ["mrl_32", "mrl_64"]) == N
    store.close()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["sync", *args])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_on_milvus_every_row_holds_its_outputs_so_sync_writes_nothing(
    tmp_path: Path, glosses: np.ndarray, artifact: Path
) -> None:
    """Milvus Lite refuses a row without its output fields (docs/migrate.md), so after a
    migration nothing is ever unsynced there: sync says so and writes nothing."""
    model = mrl_compress.load(artifact)
    store = connect(f"milvus:{tmp_path / 'm.db'}")
    store.create_collection("docs", [VectorField("full", "dense", 384, "cosine"),
                                     *(VectorField(o.name, "dense", o.size, o.distance)
                                       for o in model.outputs)])  # fmt: skip
    store.upsert("docs", list(range(300)), {"full": glosses[:300], **model.encode(glosses[:300])},
                 [{} for _ in range(300)])
    with pytest.raises(StoreError, match="mrl_32"):  # the application's full-vector-only write
        store.upsert("docs", [300], {"full": glosses[300:301]}, [{}])
    plan = sync.plan(store, "docs", artifact, vector="full")
    assert (plan.points, plan.unsynced) == (300, 0)
    assert sync.run(plan, store).written == 0
    store.close()


class RewritesDuringSync:
    """A real store where the application re-writes (or deletes) a point of the batch between
    sync's read and its write, the race a live collection has."""

    def __init__(self, store: VectorStore, glosses: np.ndarray, delete: bool) -> None:
        self.store, self.glosses, self.delete_instead, self.done = store, glosses, delete, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def write_outputs(self, collection: str, ids: Any, encoded: Any) -> None:
        if not self.done:
            self.done = True
            if self.delete_instead:
                self.store.delete(collection, [ids[0]])
            else:
                self.store.upsert(collection, [ids[0]], {"": self.glosses[:1]}, [{}])
        self.store.write_outputs(collection, ids, encoded)


@pytest.mark.parametrize("delete", [False, True], ids=["rewrite", "delete"])
def test_a_point_rewritten_or_deleted_during_sync_never_keeps_stale_outputs(
    migrated: Any, artifact: Path, glosses: np.ndarray, delete: bool
) -> None:
    store, written = migrated
    racing: Any = RewritesDuringSync(store, glosses, delete)
    report = sync.run(sync.plan(store, "docs", artifact, batch_size=50), racing)
    assert report.written == len(written) - (1 if delete else 0)
    assert lacking(store) == []
    result = migration.verify(store, "docs", "docs", mrl_compress.load(artifact), vector="",
                              sample=None)
    assert result.ok, result.problems  # every output equals a fresh encode of its vector


def test_verification_of_a_live_collection_counts_unsynced_points_instead_of_failing(
    migrated: Any, artifact: Path
) -> None:
    store, written = migrated
    model = mrl_compress.load(artifact)
    live = migration.verify(store, "docs", "docs", model, vector="", sample=None, live=True)
    assert live.ok, live.problems
    assert (live.unsynced, live.points, live.sampled) == (len(written), N + NEW - len(written),
                                                          N + NEW - len(written))
    strict = migration.verify(store, "docs", "docs", model, vector="", sample=None)
    assert not strict.ok  # a finished copy or migration must hold every field


def test_migrate_plan_applies_a_native_float32_choice(
    tmp_path: Path, glosses: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"edge:{tmp_path}/edge"
    store = connect(uri)
    store.create_collection("docs", [VectorField("", "dense", 384, "cosine")])
    store.upsert("docs", list(range(600)), {"": glosses[:600]}, [{}] * 600)
    store.close()
    out = tmp_path / "plan.json"
    with pytest.raises(SystemExit) as done:
        main(["plan", "--source", uri, "--collection", "docs", "--budget", "100000",
              "--native", "float32", "--composed", "", "--sample", "500", "--n-queries", "50",
              "--out", str(out)])
        raise SystemExit(0)
    assert done.value.code in (0, None)
    with pytest.raises(SystemExit) as done:
        main(["migrate", "--target", uri, "--collection", "docs", "--plan", str(out)])
        raise SystemExit(0)
    assert done.value.code in (0, None), capsys.readouterr().err
    store = connect(uri)
    assert store.describe("docs").fields[""].quantization is None
    store.close()
