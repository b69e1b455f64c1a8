"""Sync: write a compressor's outputs for the points that lack them, after a migration.

The application keeps writing after ``migrate``, through its own classes (langchain-qdrant's
``add_texts``, langchain-milvus's ``add_texts``, or any upsert), and those writes carry the
full vector only. Every engine here replaces a point's vectors (Qdrant's upsert) or its row
(Milvus's upsert) when it is written, so a point written *or re-written* after the migration
has no output at all until it is synced: "lacks an output" is exactly "needs encoding", and
the engine finds such points by a filter (:meth:`~mrl_compress.store.VectorStore.iter_batches`
with ``missing=``), never by a scan of every vector in Python. Meanwhile two-stage search
still finds them by the full vector (:meth:`~mrl_compress.store.VectorStore.two_stage_search`).

A sync keeps no checkpoint because it needs none: what it wrote no longer matches the filter,
so a run stopped anywhere (Ctrl-C, a lost server) is continued by running it again, and a run
over a synced collection writes nothing. The one write it cannot see is an update of the full
vector alone that keeps the old outputs (Qdrant's ``update_vectors`` on that vector, which no
LangChain class issues): rewrite such points whole, or re-run ``migrate``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrl_compress.compressor import Compressor, load
from mrl_compress.errors import InvalidInput, NotFound, StoreError
from mrl_compress.migration.planning import check_input, full_vector, quoted
from mrl_compress.outputs import Output
from mrl_compress.store import CollectionInfo, PointId, VectorStore
from mrl_compress.vectors import valid_rows

Progress = Callable[[int, int], None]
"""``progress(points_done, points_total)`` after every written batch."""
Stop = Callable[[], bool]
"""Asked between batches: True ends the run cleanly (what ``--watch`` does on Ctrl-C)."""


@dataclass
class SyncPlan:
    """What :func:`run` will do; made by :func:`plan`, which writes nothing."""

    target: str
    collection: str
    vector: str
    """The full vector the compressor reads."""
    compressor: str
    outputs: list[Output]
    points: int
    unsynced: int
    """Points lacking at least one output, counted by the engine when the plan was made."""
    batch_size: int = 512

    def lines(self) -> list[str]:
        """The status in words (``sync --dry-run`` prints these)."""
        names = ", ".join(quoted(o.name) for o in self.outputs)
        return [
            f"sync '{self.collection}' at {self.target} with {self.compressor}",
            f"  read vector: {quoted(self.vector)}; outputs: {names}",
            f"  unsynced: {self.unsynced} of {self.points} points lack an output",
        ]


@dataclass
class SyncReport:
    collection: str
    written: int = 0
    """Points whose outputs this run wrote."""
    skipped: list[PointId] = field(default_factory=list)
    """Points whose stored full vector cannot be encoded (NaN/inf or all zeros): left as they
    are, still found by the full vector."""
    passes: int = 0
    stopped: bool = False
    """True when ``stop`` ended the run between batches (run again to continue)."""
    seconds: float = 0.0

    def lines(self) -> list[str]:
        rate = self.written / self.seconds if self.seconds else 0.0
        out = [f"synced {self.written} point(s) of '{self.collection}' in {self.seconds:.1f} s "
               f"({rate:,.0f} points/s)"]
        if self.skipped:
            shown = ", ".join(repr(p) for p in self.skipped[:5])
            out.append(f"skipped {len(self.skipped)} point(s) whose full vector is NaN/inf or "
                       f"all zeros (first: {shown}): fix them in the application")
        if self.stopped:
            out.append("stopped between batches: run the same command again to continue")
        return out


def plan(store: VectorStore, collection: str, compressor: str | Path, *,
         vector: str | None = None, batch_size: int = 512,
         model: Compressor | None = None) -> SyncPlan:
    """Check that ``collection`` holds the compressor's outputs and count what is unsynced.

    Refuses with one line: a collection without one of the outputs, or with it in another
    kind or size (never migrated, or migrated with another artifact): run ``migrate`` first.
    """
    if batch_size < 1:
        raise InvalidInput(f"--batch must be at least 1, not {batch_size}")
    model = model or load(compressor)
    info = store.describe(collection)
    full = full_vector(info.fields, vector, collection, {o.name for o in model.outputs})
    check_input(model, full, compressor, collection,
                "use the compressor this collection was migrated with")
    _require_outputs(info, model.outputs, compressor)
    having = store.count_having(collection, [o.name for o in model.outputs])
    return SyncPlan(
        target=store.uri, collection=collection, vector=full.name, compressor=str(compressor),
        outputs=model.outputs, points=info.count, unsynced=info.count - having,
        batch_size=batch_size,
    )  # fmt: skip


def run(plan: SyncPlan, store: VectorStore, *, compressor: Compressor | None = None,
        progress: Progress | None = None, stop: Stop | None = None,
        confirm: bool = True) -> SyncReport:
    """Encode and write the outputs of every point that lacks one; see the module docstring.

    Reads the points the engine's filter finds, in batches; each batch is checked, encoded
    and written by :func:`write_confirmed` (the points' full vectors and payloads stay as
    they are). ``confirm=False`` writes without reading the batch back: about 1.7x the points/s on
    Qdrant Edge (docs/benchmarks.md), at the price of the race :func:`write_confirmed`
    closes. A :class:`~mrl_compress.errors.StoreError` (the adapters have retried already)
    propagates: what was written stays written, and the next run continues.
    """
    model = compressor or load(plan.compressor)
    names = [o.name for o in plan.outputs]
    report = SyncReport(plan.collection, passes=1)
    started = time.perf_counter()
    total = plan.unsynced
    if progress:
        progress(0, total)
    for batch in store.iter_batches(plan.collection, plan.vector, plan.batch_size,
                                    with_payload=False, missing=names):  # fmt: skip
        vectors = np.asarray(batch.vectors, dtype=np.float32)
        good = valid_rows(vectors)
        ids = [pid for pid, ok in zip(batch.ids, good, strict=True) if ok]
        report.skipped += [pid for pid, ok in zip(batch.ids, good, strict=True) if not ok]
        if ids and confirm:
            report.written += write_confirmed(store, plan.collection, plan.vector, ids,
                                              vectors[good], model)
        elif ids:
            store.write_outputs(plan.collection, ids, model.encode(vectors[good]))
            report.written += len(ids)
        if progress:
            done = report.written + len(report.skipped)
            progress(done, max(total, done))
        if stop is not None and stop():
            report.stopped = True
            break
    report.seconds = time.perf_counter() - started
    return report


CONFIRM_ROUNDS = 3


def write_confirmed(store: VectorStore, collection: str, vector: str, ids: list[PointId],
                    vectors: np.ndarray, model: Compressor) -> int:
    """Write the outputs of ``ids`` encoded from ``vectors``, then read their full vectors
    back: a point the application re-wrote (or deleted) between our read and our write would
    otherwise keep outputs of its old vector, which no filter can find again. Changed points
    are encoded again from what they hold now, up to ``CONFIRM_ROUNDS`` times; deleted ones
    are dropped. Returns the points whose outputs match their full vector as read last.

    What remains is a re-write landing between the last read-back and the last write, a
    window of one batch's round trip (docs/live.md).
    """
    written = 0
    for _ in range(CONFIRM_ROUNDS):
        try:
            store.write_outputs(collection, ids, model.encode(vectors))
        except StoreError:
            # a point deleted since the read fails the whole batch on Qdrant: write the rest
            now = store.retrieve(collection, ids, [vector], with_payload=False)
            if len(now.ids) == len(ids):
                raise  # every point is there: the store itself is failing
            ids, vectors = list(now.ids), now.vectors
            continue
        now = store.retrieve(collection, ids, [vector], with_payload=False)
        before = dict(zip(ids, vectors, strict=True))
        changed = [i for i, pid in enumerate(now.ids)
                   if not np.array_equal(before[pid], now.vectors[i])]
        written += len(now.ids) - len(changed)
        if not changed:
            return written
        ids = [now.ids[i] for i in changed]
        vectors = now.vectors[changed]
    return written


def watch(plan: SyncPlan, store: VectorStore, every: float, *,
          compressor: Compressor | None = None, stop: Stop,
          on_pass: Callable[[SyncReport], None] | None = None,
          confirm: bool = True) -> SyncReport:
    """:func:`run` every ``every`` seconds until ``stop()``; returns the summed report.

    ``stop`` is asked between batches and while waiting, so Ctrl-C or SIGTERM (which set it
    in the CLI) end the run between two batches. A store error propagates after the
    adapter's retries: the command stops cleanly and the next one continues.
    """
    if not (every > 0 and math.isfinite(every)):
        raise InvalidInput(f"--watch takes a number of seconds above 0, not {every}")
    model = compressor or load(plan.compressor)
    names = [o.name for o in plan.outputs]
    total = SyncReport(plan.collection)
    started = time.perf_counter()
    while True:
        plan.points = store.describe(plan.collection).count
        plan.unsynced = plan.points - store.count_having(plan.collection, names)
        one = run(plan, store, compressor=model, stop=stop, confirm=confirm)
        total.written += one.written
        total.skipped = one.skipped  # the same points again each pass: the last pass's list
        total.passes += 1
        if on_pass:
            on_pass(one)
        if one.stopped or _wait(every, stop):
            total.stopped = True
            break
    total.seconds = time.perf_counter() - started
    return total


def _wait(seconds: float, stop: Stop) -> bool:
    """Sleep up to ``seconds``, asking ``stop`` ten times a second; True when asked to stop."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if stop():
            return True
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))
    return stop()


def _require_outputs(info: CollectionInfo, outputs: list[Output], compressor: str | Path) -> None:
    for out in outputs:
        found = info.fields.get(out.name)
        if found is None:
            raise NotFound(
                f"collection '{info.name}' has no field '{out.name}' of compressor {compressor}: "
                f"run mrl-compress migrate --target ... --collection {info.name} --compressor "
                f"{compressor} first"
            )
        if found.kind != out.kind or (out.kind == "dense" and found.size != out.size):
            have = f"{found.kind} {found.size or ''}".strip()
            want = f"{out.kind} {out.size if out.kind == 'dense' else ''}".strip()
            raise InvalidInput(
                f"field '{out.name}' of '{info.name}' is {have}, compressor {compressor} writes "
                f"{want}: this collection was migrated with another compressor; sync with that "
                "one, or run mrl-compress migrate with this one"
            )
