"""Verifying a migration: counts, every point has every new field, a sample compared."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mrl_compress.compressor import Compressor
from mrl_compress.errors import StoreError
from mrl_compress.migration.planning import quoted_names
from mrl_compress.migration.rows import SCAN_BATCH, same_point
from mrl_compress.outputs import SparseBatch
from mrl_compress.store import Batch, PointId, VectorStore

DENSE_TOLERANCE = 1e-5


@dataclass
class Verification:
    points: int = 0
    """Points holding every new field (counted in the engine)."""
    unsynced: int = 0
    """Points lacking a new field, when they are allowed to (``live``): written after the
    migration's passes, found by two-stage search meanwhile, written by ``sync``."""
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
    live: bool = False,
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
        names = [o.name for o in outputs]
        having = store.count_having(target, names)
        result.points = having
        lacking: set[PointId] = set()
        if live:  # points the application wrote since: not sampled, counted as unsynced
            result.unsynced = count - having
            if having != count:
                lacking = {pid for b in store.iter_batches(target, vector, batch_size,
                                                           with_payload=False, missing=names)
                           for pid in b.ids}  # fmt: skip
        elif having != count:
            result.problem(f"{count - having} of {count} points of '{target}' lack a new field "
                           f"({quoted_names(names)})")
        picked: list[PointId] = []
        for ids in store.point_ids(target, batch_size):
            picked += [pid for i, pid in enumerate(ids)
                       if result.listed + i in chosen and pid not in lacking]
            result.listed += len(ids)
            if len(picked) >= batch_size:
                check(picked)
                result.sampled += len(picked)
                picked = []
        check(picked)
        result.sampled += len(picked)
    except StoreError as e:  # e.g. a sampled point without a new dense field
        result.problem(str(e))
    if result.listed != count and not live:  # live: the application may insert or delete
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
        if not same_point(left, right, names):
            result.problem(f"point {pid!r}: payload or original vectors differ from '{source}'")


def _positions(count: int, sample: int | None, seed: int) -> set[int]:
    if sample is None or sample >= count:
        return set(range(count))
    rng = np.random.default_rng(seed)
    return {int(i) for i in rng.choice(count, size=sample, replace=False)}
