"""The ``.npz`` file of codes that ``mrl-compress encode`` writes (a stable layout, docs/cli.md).

Dense output ``<name>``: array ``<name>``, (n, d) float32. Sparse output ``<name>``: arrays
``<name>.indices`` (n, k) int32, ``<name>.values`` (n, k) float32 and ``<name>.dim`` (scalar
int64, the number of slots). A document file (``queries=False``) holds :meth:`Compressor.encode`;
a query file (``queries=True``) holds :meth:`Compressor.encode_as_queries`, so the dot product
of a query row with a document row, both densified, is the score the retriever and ``eval``
rank by.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrl_compress.compressor import Compressor
from mrl_compress.outputs import Encoded, SparseBatch


@dataclass(frozen=True)
class Written:
    """What :func:`encode_to_npz` wrote: ``rows`` encoded and the ``arrays`` in the file."""

    path: Path
    rows: int
    arrays: list[str]


def to_arrays(encoded: Encoded) -> dict[str, np.ndarray]:
    """Encoded outputs as the file's named arrays."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in encoded.items():
        if isinstance(value, SparseBatch):
            arrays[f"{name}.indices"] = value.indices.astype(np.int32)
            arrays[f"{name}.values"] = value.values.astype(np.float32)
            arrays[f"{name}.dim"] = np.asarray(value.dim, dtype=np.int64)
        else:
            arrays[name] = value.astype(np.float32)
    return arrays


def encode_to_npz(compressor: Compressor, vectors: np.ndarray, path: str | Path, *,
                  queries: bool = False, query_nonzeros: int | None = None,
                  drop_invalid: bool = False) -> Written:
    """Encode ``vectors`` (rows kept in order) and write them to ``path``.

    ``queries=False``: document codes, what ``migrate`` stores. ``queries=True``: query codes
    (:meth:`Compressor.encode_as_queries`), with ``query_nonzeros`` non-zeros for a sparse
    output (``eval``'s ``--query-nonzeros``). Everything is encoded before anything is written,
    and the file is written under a temporary name and then renamed, so an error leaves no file.
    """
    from mrl_compress.errors import InvalidInput

    if query_nonzeros is not None and not queries:
        raise InvalidInput(f"query_nonzeros={query_nonzeros} applies to query codes: pass "
                           "queries=True (document codes keep the compressor's k)")
    if queries:
        encoded = compressor.encode_as_queries(vectors, query_nonzeros, drop_invalid=drop_invalid)
    else:
        encoded = compressor.encode(vectors, drop_invalid=drop_invalid)
    arrays = to_arrays(encoded)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(out)
    rows = len(next(iter(encoded.values()))) if encoded else 0
    return Written(out, rows, list(arrays))
