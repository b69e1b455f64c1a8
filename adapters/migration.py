"""Migration: write a compressor's outputs beside every stored vector, through any store.

Three steps, each usable from Python (the ``mrl-compress migrate`` command wraps them):

- :func:`plan` reads the collection and the artifact and decides what will happen (mode,
  fields, points, bytes added, index memory); it writes nothing, so ``--dry-run`` prints it.
- :func:`run` carries a plan out in batches: ``in-place`` (``add_outputs`` then
  ``write_outputs`` per batch) where the engine can add a vector field, else ``copy``
  (a new collection with the original vectors, payloads and ids plus the new fields, then a
  reconciliation pass and an optional alias swap). A checkpoint file is replaced atomically
  after every committed batch, so a run killed at any moment continues with ``resume``;
  every write is an idempotent upsert of the same values, so a batch written twice is harmless.
- :func:`verify` checks the result: counts, every point has every new field, and a sample
  (or all points) has byte-identical payloads and original vectors (copy) and new vectors
  equal to a fresh encode.

Everything goes through the :class:`~mrl_compress.adapters.VectorStore` protocol; the only
engine fact used is what ``add_outputs`` raises when it cannot add fields in place
(:class:`~mrl_compress.errors.StoreError`, not its subclasses ``NotFound``/``Conflict``).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mrl_compress.adapters import Batch, PointId, VectorField, VectorStore, connect
from mrl_compress.artifact import MANIFEST, Fingerprint
from mrl_compress.compressor import Compressor, load
from mrl_compress.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    StoreError,
    VerificationFailed,
)
from mrl_compress.outputs import Output, SparseBatch

MODES = ("auto", "in-place", "copy")
FINGERPRINT_SAMPLE = 1000
DENSE_TOLERANCE = 1e-5
HNSW_LINK_BYTES = 2 * 16 * 4
"""Per point, an HNSW graph with m=16 keeps ~2·m links of 4 bytes at layer 0 (Qdrant/Milvus)."""
CHECKPOINT_VERSION = 2
"""2: a copy's checkpoint names the length of its ``.copied`` record (``copied_bytes``)."""
SCAN_BATCH = 2048
"""Points per read in the passes that commit nothing (reconciliation, verification): fewer
round trips (Milvus Lite answers each scan query in time proportional to the collection)."""
Progress = Callable[[int, int], None]
"""``progress(points_done, points_total)`` after every committed batch."""
_Row = tuple[dict[str, np.ndarray], dict[str, Any]]
"""A point's vectors by name, and its payload."""
L = TypeVar("L")
R = TypeVar("R")


# ── plan ─────────────────────────────────────────────────────────────────────────────────


@dataclass
class Checkpoint:
    """What a run has committed; replaced atomically after every batch (see :func:`run`)."""

    target: str
    collection: str
    vector: str
    compressor: str
    compressor_sha256: str
    mode: str
    new_collection: str | None
    offset: Any = None
    """``next_offset`` of the last committed batch (None: start, or the pass is finished)."""
    phase: str = "write"  # write -> reconcile -> verify -> done
    done: int = 0
    total: int = 0
    batches: int = 0
    reconciled: int = 0
    copied_bytes: int = 0
    """Length of the copy record (:class:`CopyRecord`) after the last committed batch."""
    started_at: str = ""
    updated_at: str = ""
    version: int = CHECKPOINT_VERSION

    def save(self, path: Path) -> None:
        self.updated_at = _now()
        scratch = path.with_name(path.name + ".tmp")
        scratch.write_text(json.dumps(asdict(self), indent=1))
        os.replace(scratch, path)  # atomic: a kill leaves the old or the new checkpoint

    @classmethod
    def read(cls, path: Path) -> Checkpoint | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as e:
            raise InvalidInput(
                f"checkpoint {path} is unreadable ({e}): delete it to start over"
            ) from None


@dataclass
class Plan:
    """What :func:`run` will do. Made by :func:`plan`, which writes nothing."""

    target: str
    collection: str
    vector: str
    """The full (original) dense vector the compressor reads."""
    compressor: str
    compressor_sha256: str
    mode: str
    """``in-place``, ``copy``, or ``auto`` (in place; copy if the engine refuses)."""
    new_collection: str
    """The copy's name (used by ``copy``, and by ``auto`` if it falls back to copying)."""
    outputs: list[Output]
    fields: list[VectorField]
    """Vector fields to create: the outputs (in place), or originals + outputs (copy)."""
    copied_vectors: list[str]
    """Original dense vectors a copy carries over."""
    points: int
    bytes_added: int
    bytes_added_copy: int
    small_index_bytes: int
    full_index_bytes: int
    alias: str | None
    """``collection`` itself when it is an alias (a copy can then be swapped in atomically)."""
    checkpoint: Path
    resume: Checkpoint | None = None
    batch_size: int = 512
    workers: int = 1
    quantize: str | None = None
    swap: bool = False
    verify: int | None = 1000
    """Sample size for verification; None verifies every point."""
    force: bool = False
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The plan in words (``--dry-run`` prints these)."""
        mode = self.mode
        if mode == "auto":
            mode = (f"auto: in place if the engine can add vector fields, else a copy into "
                    f"'{self.new_collection}'")
        elif mode == "copy":
            mode = f"copy into new collection '{self.new_collection}'"
        out = [
            f"migrate '{self.collection}' at {self.target} with {self.compressor}",
            f"  mode: {mode}",
            f"  read vector: {_name(self.vector)} ({self.points} points)",
            "  fields to create: " + ", ".join(_describe_field(f, self.quantize)
                                                 for f in self.fields),
            f"  estimated bytes added: {_size(self.bytes_added)}"
            + (f" in place, {_size(self.bytes_added_copy)} if copied" if self.mode == "auto"
               else ""),
            f"  index memory: small {_size(self.small_index_bytes)} vs full "
            f"{_size(self.full_index_bytes)} (vectors + HNSW links, m=16)",
            f"  batches of {self.batch_size}, {self.workers} worker(s), verify "
            + ("all points" if self.verify is None else f"a sample of {self.verify}"),
            f"  checkpoint: {self.checkpoint}"
            + (f" (resuming at {self.resume.done}/{self.resume.total}, phase "
               f"{self.resume.phase})" if self.resume else ""),
        ]
        if self.mode != "in-place":
            if self.alias and self.swap:
                out.append(f"  then: point alias '{self.alias}' at '{self.new_collection}' "
                           "(atomic)")
            elif self.swap:
                out.append(f"  then: '{self.collection}' is a collection name, not an alias: "
                           "the cutover is printed, not done")
        out += [f"  note: {n}" for n in self.notes]
        return out


def plan(
    target: str,
    collection: str,
    compressor: str | Path,
    *,
    vector: str | None = None,
    mode: str = "auto",
    batch_size: int = 512,
    workers: int = 1,
    resume: bool = False,
    swap: bool = False,
    quantize: str | None = None,
    verify: int | None = 1000,
    force: bool = False,
    new_name: str | None = None,
    checkpoint: str | Path | None = None,
    store: VectorStore | None = None,
) -> Plan:
    """Read the collection and the artifact; refuse bad input with one line; write nothing.

    Refuses: a compressor whose input dimension differs from the vector's (always), or whose
    training fingerprint (:meth:`Fingerprint.mismatch` on a sample of ~1000 stored vectors)
    differs (unless ``force``); a missing collection; a copy target name already taken by
    something this migration did not create; a checkpoint of another migration.
    """
    if mode not in MODES:
        raise InvalidInput(f"--mode must be one of {', '.join(MODES)}, not '{mode}'")
    if quantize not in (None, "int8", "binary"):
        raise InvalidInput(f"--quantize must be int8 or binary, not '{quantize}'")
    if batch_size < 1 or workers < 1:
        raise InvalidInput("--batch and --workers must be at least 1")
    if verify is not None and verify < 0:
        raise InvalidInput(f"--verify must be a number of points or 'all', not {verify}")
    model = load(compressor)
    sha = compressor_sha256(compressor)
    with _opened(target, store) as opened:
        info = opened.describe(collection)
        full = _full_vector(info.fields, vector, collection, {o.name for o in model.outputs})
        if model.input_dim != full.size:
            raise InvalidInput(
                f"compressor {compressor} takes {model.input_dim}-d vectors but vector "
                f"{_name(full.name)} of '{collection}' holds {full.size}-d vectors: use a "
                "compressor fitted on this collection"
            )
        notes: list[str] = []
        fingerprint = model.manifest.fingerprint
        if fingerprint is not None and info.count:
            seen = Fingerprint.of(opened.sample(collection, full.name, FINGERPRINT_SAMPLE))
            why = fingerprint.mismatch(seen)
            if why and not force:
                raise InvalidInput(
                    f"collection '{collection}' does not look like the vectors {compressor} "
                    f"was fitted on ({why}): pass --force to migrate anyway"
                )
            if why:
                notes.append(f"fingerprint differs ({why}); migrating anyway (--force)")
        path = Path(checkpoint) if checkpoint else checkpoint_path(compressor, collection)
        found = Checkpoint.read(path)
        new = new_name or f"{collection}_mrl"
        if found is not None:
            _check_checkpoint(found, path, target, collection, str(compressor), sha)
            if found.phase != "done" and not resume:
                raise InvalidInput(
                    f"a migration of '{collection}' stopped at {found.done}/{found.total} "
                    f"points ({path}): pass --resume to continue it, or delete the checkpoint "
                    "to start over"
                )
            if found.new_collection and new_name is None:
                new = found.new_collection
            if found.mode != "auto" and mode == "auto":
                mode = found.mode
            elif mode != "auto" and found.mode != "auto" and mode != found.mode:
                raise InvalidInput(
                    f"checkpoint {path} is a {found.mode} migration, not {mode}: pass "
                    f"--mode {found.mode} to resume it, or delete the checkpoint to start over"
                )
        if new == collection:
            raise InvalidInput(f"--new-name '{new}' is the collection being migrated")
        ours = found is not None and found.new_collection == new
        if mode == "copy" and not ours:
            _require_free(opened, new)
        outputs = model.outputs
        clash = [o.name for o in outputs if o.name == full.name]
        if clash:
            raise Conflict(
                f"the compressor's output '{clash[0]}' has the name of the vector it reads: "
                "rename the output"
            )
        copied = [name for name, f in info.fields.items()
                  if f.kind == "dense" and name not in {o.name for o in outputs}]
        sparse_kept = [name for name, f in info.fields.items()
                       if f.kind == "sparse" and name not in {o.name for o in outputs}]
        if sparse_kept and mode == "copy":
            raise InvalidInput(
                f"collection '{collection}' has sparse vector(s) {_names(sparse_kept)} that a "
                "copy cannot carry over (the store protocol reads dense vectors only): "
                "migrate in place"
            )
        if sparse_kept and mode == "auto":
            notes.append(f"sparse vector(s) {_names(sparse_kept)} cannot be copied: only "
                         "in-place migration works for this collection")
        if quantize and mode != "in-place":
            notes.append("--quantize applies when fields are added in place; a copy gets the "
                         "engine's default index for its new fields")
        payload_bytes = _payload_bytes(opened, collection, full.name)
    new_fields = [_field_of(o) for o in outputs]
    originals = [info.fields[name] for name in copied]
    per_point_new = sum(o.bytes_per_vector(quantize) for o in outputs)
    per_point_full = sum(4 * (f.size or 0) for f in originals)
    small = min(outputs, key=lambda o: o.bytes_per_vector(quantize))
    return Plan(
        target=target,
        collection=collection,
        vector=full.name,
        compressor=str(compressor),
        compressor_sha256=sha,
        mode=mode,
        new_collection=new,
        outputs=outputs,
        fields=(originals + new_fields) if mode == "copy" else new_fields,
        copied_vectors=copied,
        points=info.count,
        bytes_added=int(info.count * (per_point_new if mode != "copy"
                                      else per_point_new + per_point_full + payload_bytes)),
        bytes_added_copy=int(info.count * (per_point_new + per_point_full + payload_bytes)),
        small_index_bytes=int(info.count * (small.bytes_per_vector(quantize) + HNSW_LINK_BYTES)),
        full_index_bytes=int(info.count * (4 * (full.size or 0) + HNSW_LINK_BYTES)),
        alias=collection if collection in info.aliases else None,
        checkpoint=path,
        resume=found if (found is not None and resume and found.phase != "done") else None,
        batch_size=batch_size,
        workers=workers,
        quantize=quantize,
        swap=swap,
        verify=verify,
        force=force,
        notes=notes,
    )


def checkpoint_path(compressor: str | Path, collection: str) -> Path:
    """``.mrl-migrate-<collection>.json`` beside the artifact directory."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in collection)
    return Path(compressor).resolve().parent / f".mrl-migrate-{safe}.json"


def compressor_sha256(compressor: str | Path) -> str:
    """The manifest's sha256: it names the checksums of the weights and the ONNX graph."""
    return hashlib.sha256((Path(compressor) / MANIFEST).read_bytes()).hexdigest()


# ── run ──────────────────────────────────────────────────────────────────────────────────


@dataclass
class Verification:
    points: int = 0
    """Points holding every new field (counted in the engine)."""
    listed: int = 0
    """Point ids listed to draw the sample from — every point of the collection."""
    sampled: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < 10:
            self.problems.append(text)


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

    @property
    def ok(self) -> bool:
        return self.verification.ok

    def lines(self) -> list[str]:
        rate = self.written / self.seconds if self.seconds else 0.0
        v = self.verification
        out = []
        if self.fallback:
            out.append(f"in place refused ({self.fallback}): copied instead")
        out.append(f"{self.mode}: wrote {self.written} points into '{self.collection}' in "
                   f"{self.seconds:.1f} s ({rate:,.0f} points/s, encoding on {self.provider})")
        if self.mode == "copy":
            out.append(f"reconciliation: {self.reconciled} point(s) changed during the copy "
                       f"re-copied; {self.orphans} point(s) deleted from the source remain "
                       "in the copy")
        out.append(f"verification: {v.points} points have every new field; {v.sampled} "
                   "sampled points compared: "
                   + ("all equal" if v.ok else f"{v.problem_count} difference(s)"))
        out += [f"  - {p}" for p in v.problems]
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
    *,
    store: VectorStore | None = None,
    progress: Progress | None = None,
    compressor: Compressor | None = None,
) -> Report:
    """Carry ``plan`` out; returns a :class:`Report` (check ``report.ok``).

    A :class:`StoreError` while writing (the adapters have retried already) stops the run
    with one line saying how far it got; the checkpoint holds every committed batch and
    the same call with ``resume=True`` in :func:`plan` continues from there.
    """
    model = compressor or load(plan.compressor)
    started = time.perf_counter()
    with _opened(plan.target, store) as opened:
        ck = plan.resume or Checkpoint(
            target=plan.target, collection=plan.collection, vector=plan.vector,
            compressor=plan.compressor, compressor_sha256=plan.compressor_sha256,
            mode=plan.mode, new_collection=plan.new_collection, total=plan.points,
            started_at=_now(),
        )  # fmt: skip
        fallback = None
        if ck.mode in ("auto", "in-place"):
            try:
                opened.add_outputs(plan.collection, plan.outputs, plan.quantize)
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
                    _require_free(opened, target)
            info = opened.describe(plan.collection)
            originals = [info.fields[n] for n in plan.copied_vectors]
            sparse = [n for n, f in info.fields.items()
                      if f.kind == "sparse" and n not in {o.name for o in plan.outputs}]
            if sparse:
                raise InvalidInput(
                    f"collection '{plan.collection}' has sparse vector(s) {_names(sparse)} "
                    "that a copy cannot carry over (the store protocol reads dense vectors "
                    "only): migrate in place"
                )
            ck.save(plan.checkpoint)  # before creating: a rerun then knows the copy is ours
            opened.create_collection(
                target, originals + [_field_of(o) for o in plan.outputs], like=plan.collection
            )
        ck.save(plan.checkpoint)
        before = ck.done
        try:
            if ck.phase == "write":
                _write_pass(opened, plan, model, ck, target, progress)
                ck.phase = "reconcile" if ck.mode == "copy" else "verify"
                ck.offset = None
                ck.save(plan.checkpoint)
            orphans = 0
            if ck.phase == "reconcile":
                ck.reconciled, orphans = reconcile(opened, plan, model, target)
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
        report.verification = verify(
            opened, plan.collection, target, model, vector=plan.vector,
            sample=plan.verify, copied=plan.copied_vectors if ck.mode == "copy" else None,
            batch_size=max(plan.batch_size, SCAN_BATCH),
        )  # fmt: skip
        if ck.mode == "copy" and report.ok:
            report.swapped, report.cutover = _cut_over(opened, plan, target)
        ck.phase = "done"
        ck.save(plan.checkpoint)
        CopyRecord.of(plan.checkpoint).remove()
    report.seconds = time.perf_counter() - started
    return report


def _write_pass(store: VectorStore, plan: Plan, model: Compressor, ck: Checkpoint,
                target: str, progress: Progress | None) -> None:
    """Read, encode and write every batch after ``ck.offset``; checkpoint after each."""
    copy = ck.mode == "copy"
    names = plan.copied_vectors if copy else [plan.vector]

    def write(batch: _Rows) -> None:
        encoded = model.encode(batch.vectors[plan.vector])
        if copy:
            store.upsert(target, batch.ids, {**batch.vectors, **encoded}, batch.payloads)
        else:
            store.write_outputs(target, batch.ids, encoded)

    record = CopyRecord.of(plan.checkpoint)
    if copy:  # drop what a stopped run recorded past its last committed batch
        record.truncate(ck.copied_bytes)

    def commit(batch: _Rows) -> None:
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
    rows = _read(store, plan.collection, names, plan.batch_size, ck.offset, with_payload=copy,
                 payload_of=plan.vector)
    _pipeline(rows, write, commit, plan.workers)
    ck.total = max(ck.total, ck.done)


def _pipeline(rows: Iterator[_Rows], write: Callable[[_Rows], None],
              commit: Callable[[_Rows], None], workers: int) -> None:
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
    todo: queue.Queue[tuple[int, _Rows]] = queue.Queue(maxsize=2 * workers)
    done: queue.Queue[tuple[int, _Rows | None, BaseException | None]] = queue.Queue()
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
    waiting: dict[int, _Rows] = {}
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


# ── reconciliation ───────────────────────────────────────────────────────────────────────


def reconcile(store: VectorStore, plan: Plan, model: Compressor, target: str,
              rounds: int = 3) -> tuple[int, int]:
    """Re-copy the points the application changed or added during the copy.

    Detection is by content, the same on every engine: the write pass kept a digest of every
    point it copied (payload and original vectors, :class:`CopyRecord`); the source is read
    again, in the same id order, and a point whose digest differs, or that the record lacks,
    is encoded and written again. The copy itself is not read back (a byte-for-byte sample
    of it is compared in verification). Repeated until a pass finds nothing (at most
    ``rounds`` passes), each pass leaving the record of what the copy now holds. Returns
    (points re-copied, points only the copy has); the latter were deleted from the source
    during the copy and are reported, not deleted (the protocol has no delete). Writes that
    land after the last pass are not seen: stop writers, or swap and re-run ``--resume`` on
    a quiet collection (see docs/migrate.md).
    """
    names = plan.copied_vectors
    record = CopyRecord.of(plan.checkpoint)
    scan = max(plan.batch_size, SCAN_BATCH)
    total, orphans = 0, 0
    for _ in range(rounds):
        changed = 0
        orphans = 0
        pending: list[tuple[PointId, dict[str, np.ndarray], dict[str, Any]]] = []
        source = _points(_read(store, plan.collection, names, scan, None, True, plan.vector))
        with record.rewrite() as keep:
            for pid, now, copied in _join(source, record.batches(scan)):
                if now is None:  # only the copy has it
                    assert copied is not None
                    orphans += 1
                    keep(pid, copied)
                    continue
                digest = _digest(now, names)
                keep(pid, digest)
                if digest == copied:
                    continue
                pending.append((pid, now[0], now[1]))
                if len(pending) >= plan.batch_size:
                    changed += _recopy(store, target, model, plan.vector, pending)
                    pending = []
            changed += _recopy(store, target, model, plan.vector, pending)
        total += changed
        if not changed:
            break
    return total, orphans


@dataclass
class CopyRecord:
    """What a copy holds: ``[id, digest]`` JSON lines beside the checkpoint, one per copied
    point, in the order they were read (the source's id order).

    The write pass appends a committed batch's digests before the checkpoint names the new
    length (``Checkpoint.copied_bytes``), and a resumed pass cuts the record back to it, so the
    record holds exactly the committed points. Reconciliation compares the source against it
    instead of reading the copy whole, and leaves a new record per pass (replaced atomically).
    """

    path: Path

    @classmethod
    def of(cls, checkpoint: Path) -> CopyRecord:
        return cls(checkpoint.with_name(checkpoint.name + ".copied"))

    def truncate(self, size: int) -> None:
        if self.path.is_file() and self.path.stat().st_size > size:
            os.truncate(self.path, size)

    def append(self, batch: _Rows, names: Sequence[str]) -> int:
        """Record ``batch``'s points; returns the record's new length in bytes."""
        lines = "".join(
            _record_line(pid, _digest(({n: batch.vectors[n][i] for n in names},
                                       batch.payloads[i]), names))
            for i, pid in enumerate(batch.ids)
        )  # fmt: skip
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(lines)
            return f.tell()

    def batches(self, size: int) -> Iterator[list[tuple[PointId, str]]]:
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8") as f:
            batch: list[tuple[PointId, str]] = []
            for line in f:
                pid, digest = json.loads(line)
                batch.append((pid, digest))
                if len(batch) == size:
                    yield batch
                    batch = []
            if batch:
                yield batch

    @contextmanager
    def rewrite(self) -> Iterator[Callable[[PointId, str], None]]:
        """A new record, written through the yielded ``keep(id, digest)``; it replaces the
        old one only when the block ends without an error."""
        scratch = self.path.with_name(self.path.name + ".tmp")
        with open(scratch, "w", encoding="utf-8") as f:

            def keep(pid: PointId, digest: str) -> None:
                f.write(_record_line(pid, digest))

            yield keep
        os.replace(scratch, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _record_line(pid: PointId, digest: str) -> str:
    return json.dumps([pid, digest], ensure_ascii=False) + "\n"


def _digest(row: _Row, names: Sequence[str]) -> str:
    """A point's original vectors (their bytes, by name) and payload (canonical JSON), hashed.

    Names are taken in sorted order: an engine may list a collection's vectors in another
    order in another process (Qdrant Edge does), and a resumed copy must hash alike.
    """
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(names):
        h.update(name.encode() + b"\0")
        h.update(np.asarray(row[0][name]).tobytes())
    h.update(_canonical(row[1]).encode())
    return h.hexdigest()


def _recopy(store: VectorStore, target: str, model: Compressor, vector: str,
            points: list[tuple[PointId, dict[str, np.ndarray], dict[str, Any]]]) -> int:
    if not points:
        return 0
    ids = [p[0] for p in points]
    vectors = {name: np.stack([p[1][name] for p in points]) for name in points[0][1]}
    encoded = model.encode(vectors[vector])
    store.upsert(target, ids, {**vectors, **encoded}, [p[2] for p in points])
    return len(points)


# ── verification ─────────────────────────────────────────────────────────────────────────


def verify(
    store: VectorStore,
    source: str,
    target: str,
    compressor: Compressor,
    *,
    vector: str,
    sample: int | None = 1000,
    copied: Sequence[str] | None = None,
    batch_size: int = SCAN_BATCH,
    seed: int = 0,
) -> Verification:
    """Check a migration; problems are collected, not raised (see :meth:`Report.ok`).

    - counts: the copy has as many points as the source (copy mode);
    - every point has every new field, dense and sparse: counted in the engine
      (:meth:`VectorStore.count_having`), so no vector is read for it;
    - on ``sample`` points (None: all), chosen uniformly by position in the list of ids
      (:meth:`VectorStore.point_ids`) and read back by id (:meth:`VectorStore.retrieve`, from
      the copy and the source): payloads and original vectors byte-identical to the source
      (copy mode), dense outputs within 1e-5 of a fresh encode of the stored original, and
      each sparse output found by searching its own fresh code with a score within 1e-5 of
      that code's squared length (1 for an L2-normalised TopK code). A missing, stale or
      other point's code fails it; it is not a byte-for-byte read (the protocol reads dense
      vectors only).
    """
    result = Verification()
    outputs = compressor.outputs
    dense = [o.name for o in outputs if o.kind == "dense"]
    sparse = [o.name for o in outputs if o.kind == "sparse"]
    count = store.describe(target).count
    if copied is not None:
        source_count = store.describe(source).count
        if source_count != count:
            result.problem(f"'{source}' has {source_count} points but '{target}' has {count}")
    chosen = _positions(count, sample, seed)
    # originals to compare (copy) or to encode afresh (in place); the full vector first
    originals = [vector] + [n for n in (copied or ()) if n != vector]
    read = originals + [n for n in dense if n not in originals]

    def check(ids: list[PointId]) -> None:
        """Read the sampled points back by id and compare them (see the docstring)."""
        if not ids:
            return
        stored = store.retrieve(target, ids, read, with_payload=copied is not None)
        found = set(stored.ids)
        for pid in ids:
            if pid not in found:
                result.problem(f"point {pid!r} of '{target}' could not be read back")
        if not stored.ids:
            return
        fresh = compressor.encode(stored.fields[vector])
        for name in dense:
            diff = np.abs(stored.fields[name] - np.asarray(fresh[name])).max(axis=1)
            for k in np.flatnonzero(diff > DENSE_TOLERANCE):
                result.problem(f"point {stored.ids[k]!r}: '{name}' differs from a fresh encode "
                               f"by {diff[k]:.2g}")
        for name in sparse:
            code = fresh[name]
            assert isinstance(code, SparseBatch)
            hits = store.search(target, name, code, k=10)
            # a code scores its own copy by its squared length: 1 for a TopK code, other values
            # for a pursuit code (scaled to a unit reconstruction, not to unit length)
            own = (code.values.astype(np.float64) ** 2).sum(axis=1)
            for pid, hit, expected in zip(stored.ids, hits, own, strict=True):
                score = next((h.score for h in hit if h.id == pid), None)
                if score is None or abs(score / expected - 1.0) > DENSE_TOLERANCE:
                    result.problem(f"point {pid!r}: sparse '{name}' differs from a fresh encode"
                                   + (" (not found)" if score is None else f" (score {score})"))
        if copied is not None:
            _compare_copy(store, source, target, stored, originals, result)

    try:
        having = store.count_having(target, [o.name for o in outputs])
        if having != count:
            result.problem(f"{count - having} of {count} points of '{target}' lack a new field "
                           f"({_names([o.name for o in outputs])})")
        picked: list[PointId] = []
        for ids in store.point_ids(target, batch_size):
            picked += [pid for i, pid in enumerate(ids) if result.listed + i in chosen]
            result.listed += len(ids)
            if len(picked) >= batch_size:
                check(picked)
                result.sampled += len(picked)
                picked = []
        check(picked)
        result.sampled += len(picked)
        result.points = having
    except StoreError as e:  # e.g. a sampled point without a new dense field
        result.problem(str(e))
    if result.listed != count:
        result.problem(f"listed {result.listed} points of '{target}'; it counts {count}")
    return result


def _compare_copy(store: VectorStore, source: str, target: str, stored: Batch,
                  names: list[str], result: Verification) -> None:
    """Payloads and original vectors of the sampled points, byte for byte, by id.

    A point of the source missing from the copy shows in the counts (and reconciliation
    re-copies it); one of the copy missing from the source is named here.
    """
    original = store.retrieve(source, stored.ids, names, with_payload=True)
    rows = {pid: i for i, pid in enumerate(original.ids)}
    for i, pid in enumerate(stored.ids):
        j = rows.get(pid)
        if j is None:
            result.problem(f"point {pid!r} of '{target}' is not in '{source}'")
            continue
        left = ({n: stored.fields[n][i] for n in names}, stored.payloads[i])
        right = ({n: original.fields[n][j] for n in names}, original.payloads[j])
        if not _same(left, right, names):
            result.problem(f"point {pid!r}: payload or original vectors differ from '{source}'")


def _positions(count: int, sample: int | None, seed: int) -> set[int]:
    if sample is None or sample >= count:
        return set(range(count))
    rng = np.random.default_rng(seed)
    return {int(i) for i in rng.choice(count, size=sample, replace=False)}


# ── cutover ──────────────────────────────────────────────────────────────────────────────


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


# ── reading helpers ──────────────────────────────────────────────────────────────────────


@dataclass
class _Rows:
    """One batch of several vector fields of the same points."""

    ids: list[PointId]
    vectors: dict[str, np.ndarray]
    payloads: list[dict[str, Any]]
    next_offset: Any


def _read(store: VectorStore, collection: str, names: Sequence[str], batch_size: int,
          offset: Any, with_payload: bool, payload_of: str) -> Iterator[_Rows]:
    """Stream several dense fields of the same points in one scan (``payload_of`` first)."""
    more = [n for n in names if n != payload_of]
    for batch in store.iter_batches(collection, payload_of, batch_size, offset,
                                    with_payload=with_payload, vectors=more):  # fmt: skip
        fields = batch.fields or {payload_of: batch.vectors}
        yield _Rows(batch.ids, {n: fields[n] for n in [payload_of, *more]}, batch.payloads,
                    batch.next_offset)


def _points(rows: Iterator[_Rows]) -> Iterator[list[tuple[PointId, _Row]]]:
    """The points of each batch as (id, (vectors, payload))."""
    for batch in rows:
        yield [(pid, ({n: v[i] for n, v in batch.vectors.items()},
                      batch.payloads[i] if batch.payloads else {}))
               for i, pid in enumerate(batch.ids)]  # fmt: skip


def _join(left: Iterator[list[tuple[PointId, L]]], right: Iterator[list[tuple[PointId, R]]]
          ) -> Iterator[tuple[PointId, L | None, R | None]]:
    """Points of two id-ordered streams matched by id, in ``left``'s order then the rest.

    Both streams are read a batch at a time, alternately; points wait in a dict until
    their partner arrives, so memory stays at about a batch when the orders agree.
    """
    wait_left: dict[PointId, L] = {}
    wait_right: dict[PointId, R] = {}
    order: list[PointId] = []
    live = {"left": True, "right": True}

    while live["left"] or live["right"]:
        if live["left"]:
            batch = next(left, None)
            if batch is None:
                live["left"] = False
            else:
                for pid, row in batch:
                    wait_left[pid] = row
                    order.append(pid)
        if live["right"]:
            other = next(right, None)
            if other is None:
                live["right"] = False
            else:
                wait_right.update(other)
        keep = []
        for pid in order:
            if pid in wait_right:
                yield pid, wait_left.pop(pid), wait_right.pop(pid)
            elif not live["right"]:
                yield pid, wait_left.pop(pid), None
            else:
                keep.append(pid)
        order = keep
        if not live["left"]:
            for pid in list(wait_right):
                yield pid, None, wait_right.pop(pid)


def _same(a: _Row, b: _Row, names: Sequence[str]) -> bool:
    return all(np.asarray(a[0][n]).tobytes() == np.asarray(b[0][n]).tobytes() for n in names) \
        and _canonical(a[1]) == _canonical(b[1])


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)


def _payload_bytes(store: VectorStore, collection: str, vector: str) -> float:
    """Mean JSON size of the first few payloads (a copy stores them again)."""
    batch = next(store.iter_batches(collection, vector, batch_size=64), None)
    if batch is None or not batch.payloads:
        return 0.0
    return float(np.mean([len(_canonical(p).encode()) for p in batch.payloads]))


# ── small helpers ────────────────────────────────────────────────────────────────────────


@contextmanager
def _opened(target: str, store: VectorStore | None) -> Iterator[VectorStore]:
    if store is not None:
        yield store
        return
    opened = connect(target)
    try:
        yield opened
    finally:
        opened.close()


def _full_vector(fields: dict[str, VectorField], vector: str | None, collection: str,
                 outputs: set[str]) -> VectorField:
    """``vector``, else ``""``, else the only dense field that is not one of our outputs
    (so that running the same migration again needs no ``--vector``)."""
    from mrl_compress.adapters import CollectionInfo

    if vector is None and "" in fields and fields[""].kind == "dense":
        return fields[""]
    if vector is None:
        fields = {n: f for n, f in fields.items() if n not in outputs}
    return CollectionInfo(collection, 0, fields).dense(vector)


def _require_free(store: VectorStore, name: str) -> None:
    try:
        store.describe(name)
    except NotFound:
        return
    raise Conflict(
        f"collection '{name}' already exists and no checkpoint of this migration names it: "
        "choose another --new-name, or drop it"
    )


def _check_checkpoint(found: Checkpoint, path: Path, target: str, collection: str,
                      compressor: str, sha: str) -> None:
    if found.version != CHECKPOINT_VERSION:
        raise InvalidInput(f"checkpoint {path} has version {found.version}, this mrl-compress "
                           f"writes {CHECKPOINT_VERSION}: delete it to start over")
    if (found.target, found.collection) != (target, collection):
        raise InvalidInput(
            f"checkpoint {path} belongs to collection '{found.collection}' at {found.target}, "
            f"not '{collection}' at {target}: delete it to start over"
        )
    if found.compressor_sha256 != sha:
        raise InvalidInput(
            f"checkpoint {path} was written with another compressor ({found.compressor}, "
            f"sha256 {found.compressor_sha256[:12]}), not {compressor} (sha256 {sha[:12]}): "
            "resume with that compressor, or delete the checkpoint to start over"
        )


def _field_of(output: Output) -> VectorField:
    if output.kind == "sparse":
        return VectorField(output.name, "sparse", None, None)
    return VectorField(output.name, "dense", output.size, output.distance)


def _describe_field(f: VectorField, quantize: str | None) -> str:
    if f.kind == "sparse":
        return f"{_name(f.name)} (sparse)"
    return f"{_name(f.name)} (dense {f.size}, {f.distance})"


def _name(name: str) -> str:
    return "'' (default)" if name == "" else f"'{name}'"


def _names(names: Sequence[str]) -> str:
    return ", ".join(_name(n) for n in names)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

