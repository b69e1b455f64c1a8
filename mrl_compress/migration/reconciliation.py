"""Reconciling a copy with a source the application kept writing to during the copy."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrl_compress.compressor import Compressor
from mrl_compress.migration.planning import Plan
from mrl_compress.migration.rows import SCAN_BATCH, Row, Rows, canonical, join, points_of, read_rows
from mrl_compress.store import PointId, VectorStore


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
        source = points_of(read_rows(store, plan.collection, names, scan, None, True, plan.vector))
        with record.rewrite() as keep:
            for pid, now, copied in join(source, record.batches(scan)):
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

    def append(self, batch: Rows, names: Sequence[str]) -> int:
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


def _digest(row: Row, names: Sequence[str]) -> str:
    """A point's original vectors (their bytes, by name) and payload (canonical JSON), hashed.

    Names are taken in sorted order: an engine may list a collection's vectors in another
    order in another process (Qdrant Edge does), and a resumed copy must hash alike.
    """
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(names):
        h.update(name.encode() + b"\0")
        h.update(np.asarray(row[0][name]).tobytes())
    h.update(canonical(row[1]).encode())
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
