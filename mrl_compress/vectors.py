"""Reading stored embeddings from files: validation, memory-mapped reading, reservoir sampling.

Sources are ``.npy`` (float16/float32, rows = vectors, read memory-mapped) and ``.parquet``
(a list / fixed-size-list column). Store URIs are read by the adapters, not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrl_compress.errors import InvalidInput


@dataclass
class Checked:
    """Validated float32 vectors and how many invalid rows were dropped."""

    vectors: np.ndarray
    dropped: int = 0


def valid_rows(vectors: np.ndarray) -> np.ndarray:
    """Which rows have a direction: finite and not all-zero (a boolean mask)."""
    x = np.asarray(vectors)
    return np.isfinite(x).all(axis=1) & (np.abs(x).sum(axis=1) > 0)


def first_invalid(vectors: np.ndarray) -> int | None:
    """The first row that is NaN/inf or all-zero, else None."""
    bad = ~valid_rows(vectors)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def validate(vectors: np.ndarray, *, dim: int | None = None, drop_invalid: bool = False,
             what: str = "input", droppable: bool = False) -> Checked:
    """Refuse (or drop with ``drop_invalid``) NaN/inf rows and all-zero rows; check the dim.

    A zero vector has no direction: cosine scores against it are meaningless. ``droppable``:
    the caller offers ``--drop-invalid`` (``drop_invalid=True``), and the error says so.
    """
    x = np.asarray(vectors)
    if x.ndim != 2:
        raise InvalidInput(f"{what}: expected a 2-d array (rows = vectors), found shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise InvalidInput(f"{what}: expected float16/float32 vectors, found dtype {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise InvalidInput(f"{what}: expected {dim}-d vectors, found {x.shape[1]}-d")
    x = x.astype(np.float32, copy=False)
    bad = ~valid_rows(x)
    n_bad = int(bad.sum())
    if n_bad and not drop_invalid:
        first = int(np.flatnonzero(bad)[0])
        kind = "NaN/inf" if not np.isfinite(x[first]).all() else "all-zero"
        raise InvalidInput(
            f"{what}: {n_bad} invalid row(s) (NaN/inf or all-zero), first at row {first} "
            f"({kind}); " + ("fix them or pass --drop-invalid to skip them"
                             if droppable else "fix or remove those rows")
        )
    return Checked(x[~bad] if n_bad else x, n_bad)


def open_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InvalidInput(f"{path}: not a readable .npy array of vectors ({e})") from None
    if arr.ndim != 2:
        raise InvalidInput(
            f"{path}: expected a 2-d array (rows = vectors), found shape {arr.shape}")
    return arr


def read_parquet(path: Path, column: str | None) -> np.ndarray:
    from mrl_compress.errors import require

    require("pyarrow", "parquet")
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    names = [f.name for f in schema if str(f.type).startswith(("list", "fixed_size_list",
                                                               "large_list"))]
    if column is None:
        if len(names) != 1:
            raise InvalidInput(
                f"{path}: expected one list column of vectors, found {len(names)} "
                f"({', '.join(names) or 'none'}): name it with --column"
            )
        column = names[0]
    elif column not in schema.names:
        raise InvalidInput(f"{path}: no column '{column}'; columns are {', '.join(schema.names)}")
    table = pq.read_table(path, columns=[column])
    values = table.column(column).to_pylist()
    lengths = {len(v) for v in values if v is not None}
    if len(lengths) > 1:
        raise InvalidInput(f"{path}: column '{column}' mixes dimensions {sorted(lengths)}")
    if any(v is None for v in values):
        raise InvalidInput(f"{path}: column '{column}' has null rows")
    return np.asarray(values, dtype=np.float32)


def open_source(path: str | Path, column: str | None = None) -> np.ndarray:
    """The vectors of a file, memory-mapped where the format allows."""
    p = Path(path)
    if not p.exists():
        raise InvalidInput(f"source '{path}' does not exist (expected a .npy or .parquet file)")
    if p.suffix == ".npy":
        return open_npy(p)
    if p.suffix == ".parquet":
        return read_parquet(p, column)
    raise InvalidInput(f"source '{path}': expected a .npy or .parquet file, found '{p.suffix}'")


def reservoir_sample(rows: Iterator[np.ndarray], n: int, seed: int = 0) -> np.ndarray:
    """Uniform sample of ``n`` rows from a stream of row blocks, holding at most ``n`` rows.

    Algorithm R applied block-wise: row t (0-based) replaces a random slot with prob. n/(t+1).
    """
    rng = np.random.default_rng(seed)
    reservoir: np.ndarray | None = None
    seen = 0
    for block in rows:
        block = np.asarray(block, dtype=np.float32)
        if reservoir is None:
            reservoir = np.empty((n, block.shape[1]), dtype=np.float32)
        take = min(max(n - seen, 0), len(block))
        reservoir[seen : seen + take] = block[:take]
        rest = block[take:]
        if len(rest):
            t = seen + take + np.arange(len(rest))
            slots = (rng.random(len(rest)) * (t + 1)).astype(np.int64)
            keep = slots < n
            # later rows in the block win over earlier ones for the same slot, as in Algorithm R
            reservoir[slots[keep]] = rest[keep]
        seen += len(block)
    if reservoir is None:
        return np.empty((0, 0), dtype=np.float32)
    return reservoir[: min(n, seen)]


def sample_array(arr: np.ndarray, n: int | None, seed: int = 0, block: int = 65536) -> np.ndarray:
    """Read ``arr`` (possibly memory-mapped) in blocks, keeping a reservoir sample of ``n``."""
    if n is None or n >= len(arr):
        return np.asarray(arr, dtype=np.float32)
    blocks = (arr[i : i + block] for i in range(0, len(arr), block))
    return reservoir_sample(blocks, n, seed)
