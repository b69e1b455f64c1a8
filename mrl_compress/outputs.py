"""What a compressor produces: named outputs, dense arrays or sparse batches.

An :class:`Output` is everything a store adapter needs to create a field for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Kind = Literal["dense", "sparse"]


@dataclass(frozen=True)
class Output:
    """One named representation written beside the full vector.

    ``size`` is the dimension for a dense output and the number of slots for a sparse one
    (a TopK csr's hidden latents; 2 × hidden for a pursuit csr, whose negative shares have
    slots of their own); ``nonzeros`` is k for a sparse output (stored entries per vector).
    Scores are cosines (dense: L2-normalised vectors; sparse: see :class:`SparseBatch`), so
    ``distance`` is ``cosine``.
    """

    name: str
    kind: Kind
    size: int
    distance: str = "cosine"
    nonzeros: int | None = None

    def bytes_per_vector(self, quantize: str | None = None) -> float:
        """Bytes one vector takes as stored: float32 values (+ int32 indices when sparse);
        a dense one with the quantizer ``quantize`` (:mod:`mrl_compress.quantizers`), its
        code's bytes."""
        if self.kind == "sparse":
            return float((self.nonzeros or 0) * 8)
        from mrl_compress import quantizers

        return quantizers.parse(quantize).code_bytes(self.size)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Output:
        return cls(**data)


@dataclass
class SparseBatch:
    """k non-zeros per row: ``indices`` (n, k) int32, ``values`` (n, k) float32, in ``dim`` slots.

    Stored codes' values are non-negative. A TopK csr code is L2-normalised, so the dot
    product of two codes is a cosine; a pursuit csr code is scaled so that its reconstruction
    has length 1, and a query's signed dictionary correlations (``Compressor.encode_queries``)
    score it by cosine. Zero values (a row with fewer than k active latents) are padding and
    may be dropped.
    """

    indices: np.ndarray
    values: np.ndarray
    dim: int

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The non-zero (indices, values) of row ``i``, padding dropped."""
        keep = self.values[i] != 0
        return self.indices[i][keep], self.values[i][keep]

    def to_dense(self) -> np.ndarray:
        dense = np.zeros((len(self), self.dim), dtype=np.float32)
        np.put_along_axis(dense, self.indices.astype(np.int64), self.values, axis=1)
        return dense

    def __getitem__(self, rows: slice | np.ndarray) -> SparseBatch:
        return SparseBatch(self.indices[rows], self.values[rows], self.dim)


Encoded = dict[str, "np.ndarray | SparseBatch"]
