"""Running a plan: fields created (in place) or a copy made, the write pass in batches with a
checkpoint after each, then reconciliation, verification and the cutover."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mrl_compress.compressor import Compressor, load
from mrl_compress.errors import Conflict, InvalidInput, NotFound, StoreError, VerificationFailed
from mrl_compress.migration.planning import (
    Checkpoint,
    Plan,
    field_of,
    now,
    quoted,
    quoted_names,
    require_free,
)
from mrl_compress.migration.reconciliation import CopyRecord, reconcile
from mrl_compress.migration.rows import SCAN_BATCH, Rows, read_rows
from mrl_compress.migration.verification import Verification, verify
from mrl_compress.outputs import Encoded
from mrl_compress.store import VectorStore
from mrl_compress.vectors import first_invalid

Progress = Callable[[int, int], None]
"""``progress(points_done, points_total)`` after every committed batch."""


@dataclass
class Report:
    mode: str
    collection: str
    """Where the new fields now live (the copy's name in copy mode)."""
    written: int
    """Points written by this call (a resumed run counts only what it wrote)."""
    seconds: float
    reconciled: int = 0
    orphans: int = 0
    """Points of the copy that the source no longer has (deleted during the copy)."""
    verification: Verification = field(default_factory=Verification)
    swapped: str | None = None
    cutover: list[str] = field(default_factory=list)
    fallback: str | None = None
    provider: str = ""
    caught_up: int = 0
    """In place: points the application wrote behind the write pass's cursor, written by a
    last pass over the points lacking an output (:func:`mrl_compress.sync.run`)."""
    quantizer: str | None = None
    """Native: the quantizer set on ``vector`` (``float32``: removed)."""
    vector: str = ""

    @property
    def ok(self) -> bool:
        return self.verification.ok

    def lines(self) -> list[str]:
        rate = self.written / self.seconds if self.seconds else 0.0
        v = self.verification
        if self.mode == "native":
            return [
                f"native: set quantizer '{self.quantizer}' on vector {quoted(self.vector)} of "
                f"'{self.collection}' in {self.seconds:.1f} s; no field added, no point "
                "written, nothing to sync",
                f"verification: {v.points} points; the engine reports "
                + ("the quantizer back" if v.ok else f"{v.problem_count} difference(s)"),
                *(f"  - {p}" for p in v.problems),
            ]
        out = []
        if self.fallback:
            out.append(f"in place refused ({self.fallback}): copied instead")
        out.append(f"{self.mode}: wrote {self.written} points into '{self.collection}' in "
                   f"{self.seconds:.1f} s ({rate:,.0f} points/s, encoding on {self.provider})")
        if self.mode == "copy":
            out.append(f"reconciliation: {self.reconciled} point(s) changed during the copy "
                       f"re-copied; {self.orphans} point(s) deleted from the source remain "
                       "in the copy")
        if self.mode == "in-place":
            out.append(f"caught up: {self.caught_up} point(s) written during the pass got "
                       "their outputs")
        out.append(f"verification: {v.points} points have every new field; {v.sampled} "
                   "sampled points compared: "
                   + ("all equal" if v.ok else f"{v.problem_count} difference(s)"))
        out += [f"  - {p}" for p in v.problems]
        if self.mode == "in-place":
            out.append(f"unsynced: {v.unsynced} point(s) lack an output (written since; "
                       "two-stage search finds them by the full vector, mrl-compress sync "
                       "writes them)")
        if self.swapped:
            out.append(f"alias '{self.swapped}' now points at '{self.collection}'")
        out += self.cutover
        return out

    def raise_if_failed(self) -> None:
        v = self.verification
        if not v.ok:
            raise VerificationFailed(
                f"verification of '{self.collection}' found {v.problem_count} difference(s); "
                f"first: {v.problems[0]}"
            )


def run(
    plan: Plan,
    store: VectorStore,
    *,
    progress: Progress | None = None,
    compressor: Compressor | None = None,
) -> Report:
    """Carry ``plan`` out; returns a :class:`Report` (check ``report.ok``).

    A :class:`StoreError` while writing (the adapters have retried already) stops the run
    with one line saying how far it got; the checkpoint holds every committed batch and
    the same call with ``resume=True`` in :func:`plan` continues from there.

    ``native``: :meth:`~mrl_compress.store.VectorStore.set_quantizer` on the full vector,
    then a check that the engine reports it back and kept every point (no checkpoint: the
    change is one config call, and running it again sets the same quantizer).
    """
    if plan.mode == "native":
        return _native(plan, store)
    model = compressor or load(plan.compressor)
    started = time.perf_counter()
    ck = plan.resume or Checkpoint(
        target=plan.target, collection=plan.collection, vector=plan.vector,
        compressor=plan.compressor, compressor_sha256=plan.compressor_sha256,
        mode=plan.mode, new_collection=plan.new_collection, total=plan.points,
        started_at=now(),
    )  # fmt: skip
    fallback = None
    if ck.mode in ("auto", "in-place"):
        try:
            store.add_outputs(plan.collection, plan.outputs, plan.quantize)
            ck.mode = "in-place"
        except (NotFound, Conflict):
            raise
        except StoreError as refused:
            if ck.mode == "in-place":
                raise
            fallback = str(refused)
            ck.mode = "copy"
    target = plan.collection
    if ck.mode == "copy":
        target = plan.new_collection
        if plan.resume is None:
            fresh = Checkpoint.read(plan.checkpoint)
            if fresh is None or fresh.new_collection != target:
                require_free(store, target)
        info = store.describe(plan.collection)
        originals = [info.fields[n] for n in plan.copied_vectors]
        sparse = [n for n, f in info.fields.items()
                  if f.kind == "sparse" and n not in {o.name for o in plan.outputs}]
        if sparse:
            raise InvalidInput(
                f"collection '{plan.collection}' has sparse vector(s) {quoted_names(sparse)} "
                "that a copy cannot carry over (the store protocol reads dense vectors "
                "only): migrate in place"
            )
        ck.save(plan.checkpoint)  # before creating: a rerun then knows the copy is ours
        store.create_collection(
            target, originals + [field_of(o) for o in plan.outputs], like=plan.collection
        )
        if plan.quantize:  # the copy's new dense fields get the quantizer too
            made = store.describe(target).fields
            for o in plan.outputs:
                if o.kind == "dense" and (made[o.name].quantization or "float32") != plan.quantize:
                    store.set_quantizer(target, o.name, plan.quantize)
    ck.save(plan.checkpoint)
    before = ck.done
    try:
        if ck.phase == "write":
            _write_pass(store, plan, model, ck, target, progress)
            ck.phase = "reconcile" if ck.mode == "copy" else "verify"
            ck.offset = None
            ck.save(plan.checkpoint)
        orphans = 0
        if ck.phase == "reconcile":
            ck.reconciled, orphans = reconcile(store, plan, model, target)
            ck.phase = "verify"
            ck.save(plan.checkpoint)
    except StoreError as e:
        raise StoreError(
            f"{e} — stopped after {ck.done}/{ck.total} points; {plan.checkpoint} holds "
            "every committed batch: run the same command with --resume to continue"
        ) from e
    report = Report(
        mode=ck.mode, collection=target, written=ck.done - before, seconds=0.0,
        reconciled=ck.reconciled, orphans=orphans, fallback=fallback,
        provider=model.provider,
    )  # fmt: skip
    if ck.mode == "in-place":
        report.caught_up = _catch_up(store, plan, model)
    report.verification = verify(
        store, plan.collection, target, model, vector=plan.vector,
        sample=plan.verify, copied=plan.copied_vectors if ck.mode == "copy" else None,
        batch_size=max(plan.batch_size, SCAN_BATCH), live=ck.mode == "in-place",
    )  # fmt: skip
    if ck.mode == "copy" and report.ok:
        report.swapped, report.cutover = _cut_over(store, plan, target)
    ck.phase = "done"
    ck.save(plan.checkpoint)
    CopyRecord.of(plan.checkpoint).remove()
    report.seconds = time.perf_counter() - started
    return report


def _native(plan: Plan, store: VectorStore) -> Report:
    """Set the quantizer of the full vector; check what the engine reports afterwards."""
    started = time.perf_counter()
    assert plan.quantize is not None  # plan() refuses native without --quantize
    store.set_quantizer(plan.collection, plan.vector, plan.quantize)
    info = store.describe(plan.collection)
    v = Verification(points=info.count)
    got = info.fields[plan.vector].quantization or "float32"
    if got != plan.quantize:
        v.problem(f"the engine reports quantizer {got} on vector {quoted(plan.vector)}, not "
                  f"{plan.quantize}")
    if info.count < plan.points:
        v.problem(f"'{plan.collection}' holds {info.count} points, {plan.points} before")
    return Report(mode="native", collection=plan.collection, written=0,
                  seconds=time.perf_counter() - started, verification=v,
                  quantizer=plan.quantize, vector=plan.vector)  # fmt: skip


def _catch_up(store: VectorStore, plan: Plan, model: Compressor) -> int:
    """The points written behind the write pass's cursor lack outputs: sync them."""
    from mrl_compress import sync  # imported here: sync builds on this package

    found = sync.plan(store, plan.collection, plan.compressor, vector=plan.vector,
                      batch_size=plan.batch_size, model=model)  # fmt: skip
    if not found.unsynced:
        return 0
    return sync.run(found, store, compressor=model).written


def encode_stored(model: Compressor, batch: Rows, vector: str) -> Encoded:
    """Encode a batch's stored vectors; one with no direction (NaN/inf or all-zero) is
    refused by its point id, before anything of the batch is written."""
    x = batch.vectors[vector]
    bad = first_invalid(x)
    if bad is not None:
        raise InvalidInput(f"point {batch.ids[bad]!r} holds a NaN/inf or all-zero '{vector}' "
                           "vector, which has no direction to compress: fix or delete it, "
                           "then run migrate again")
    return model.encode(x)


def _write_pass(store: VectorStore, plan: Plan, model: Compressor, ck: Checkpoint,
                target: str, progress: Progress | None) -> None:
    """Read, encode and write every batch after ``ck.offset``; checkpoint after each."""
    copy = ck.mode == "copy"
    names = plan.copied_vectors if copy else [plan.vector]

    def write(batch: Rows) -> None:
        encoded = encode_stored(model, batch, plan.vector)
        if copy:
            store.upsert(target, batch.ids, {**batch.vectors, **encoded}, batch.payloads)
        else:
            store.write_outputs(target, batch.ids, encoded)

    record = CopyRecord.of(plan.checkpoint)
    if copy:  # drop what a stopped run recorded past its last committed batch
        record.truncate(ck.copied_bytes)

    def commit(batch: Rows) -> None:
        if copy:
            ck.copied_bytes = record.append(batch, names)
        ck.done += len(batch.ids)
        ck.batches += 1
        ck.offset = batch.next_offset
        ck.save(plan.checkpoint)
        if progress:
            progress(ck.done, ck.total)

    if progress:
        progress(ck.done, ck.total)
    if ck.offset is None and ck.done:
        return  # the pass had finished before the stop
    rows = read_rows(store, plan.collection, names, plan.batch_size, ck.offset, with_payload=copy,
                 payload_of=plan.vector)
    _pipeline(rows, write, commit, plan.workers)
    ck.total = max(ck.total, ck.done)


def _pipeline(rows: Iterator[Rows], write: Callable[[Rows], None],
              commit: Callable[[Rows], None], workers: int) -> None:
    """Write every batch, then commit it; commits in read order.

    One worker reads, encodes, writes and commits each batch in turn. More workers run one
    reader thread and ``workers`` threads that encode and write, with commits on the calling
    thread; the checkpoint only moves past batch i once batches 0..i are all written, so a
    stop at any moment loses nothing, and at most ``3 * workers`` batches are in memory.
    Threads are not the default: Qdrant Edge holds the GIL while it reads and writes, and on
    2 cores the threaded single worker was slower than the plain loop (write pass 0.78-0.83
    vs 0.85-0.89 of raw upsert at 100k, three alternating runs; docs/benchmarks.md).
    """
    if workers == 1:
        for each in rows:
            write(each)
            commit(each)
        return
    todo: queue.Queue[tuple[int, Rows]] = queue.Queue(maxsize=2 * workers)
    done: queue.Queue[tuple[int, Rows | None, BaseException | None]] = queue.Queue()
    stop, read_all = threading.Event(), threading.Event()
    total = [-1]

    def reader() -> None:
        seq = 0
        try:
            for batch in rows:
                while not stop.is_set():
                    try:
                        todo.put((seq, batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
                seq += 1
        except BaseException as e:  # handed to the main thread
            done.put((-1, None, e))
        finally:
            total[0] = seq
            read_all.set()

    def worker() -> None:
        while not stop.is_set():
            try:
                seq, batch = todo.get(timeout=0.1)
            except queue.Empty:
                if read_all.is_set():
                    return
                continue
            try:
                write(batch)
                done.put((seq, batch, None))
            except BaseException as e:  # handed to the main thread
                done.put((seq, None, e))
                return

    threads = [threading.Thread(target=reader, daemon=True)]
    threads += [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    waiting: dict[int, Rows] = {}
    following = 0
    try:
        while total[0] < 0 or following < total[0]:
            try:
                seq, batch, error = done.get(timeout=0.1)
            except queue.Empty:
                if not any(t.is_alive() for t in threads) and done.empty():
                    raise StoreError("the migration workers stopped without finishing: "
                                     "run again with --resume") from None
                continue
            if error is not None:
                raise error
            assert batch is not None
            waiting[seq] = batch
            while following in waiting:
                commit(waiting.pop(following))
                following += 1
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)


def _cut_over(store: VectorStore, plan: Plan, target: str) -> tuple[str | None, list[str]]:
    """Swap the alias the application reads (atomic), or say how to switch."""
    if plan.alias and plan.swap:
        store.swap_alias(plan.alias, target)
        return plan.alias, [f"'{plan.collection}' answers from '{target}' now; the old "
                            "collection is untouched: drop it once satisfied"]
    if plan.alias:
        return None, [f"'{plan.collection}' still points at the old collection; switch with "
                      f"--swap (or swap alias '{plan.alias}' to '{target}' yourself)"]
    return None, [
        f"'{plan.collection}' is a collection name, not an alias, so no atomic switch exists:",
        f"  1. point the application at '{target}' (its collection name setting), or",
        f"  2. make the name an alias: drop or rename '{plan.collection}' after a backup, "
        f"then create alias '{plan.collection}' -> '{target}' (queries fail in between);",
        "  from then on, later migrations swap the alias atomically",
    ]
