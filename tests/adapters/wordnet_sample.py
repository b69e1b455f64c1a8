"""Helpers for the adapter tests: the data location and the two toy compressors.

Small vectors are made the simplest honest way so that a numpy brute force can check the
engines: ``mrl_64`` is the renormalised 64-d prefix, ``csr`` keeps the 32 largest positive
coordinates (non-negative, L2-normalised, like a CSR code).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrl_compress.outputs import Output, SparseBatch

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "wordnet-gloss"
N_POINTS = 1500
N_QUERIES = 20
SMALL = 64
NONZEROS = 32

OUTPUTS = [
    Output("mrl_64", "dense", SMALL),
    Output("csr", "sparse", 384, nonzeros=NONZEROS),
]


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def truncate(x: np.ndarray) -> np.ndarray:
    return normalise(x[:, :SMALL])


def sparse_code(x: np.ndarray, nonzeros: int = NONZEROS) -> SparseBatch:
    positive = np.maximum(x, 0)
    idx = np.argsort(-positive, axis=1)[:, :nonzeros].astype(np.int32)
    values = np.take_along_axis(positive, idx, axis=1)
    values = values / np.linalg.norm(values, axis=1, keepdims=True)
    return SparseBatch(idx, values.astype(np.float32), x.shape[1])


def encode(x: np.ndarray) -> dict[str, np.ndarray | SparseBatch]:
    return {"mrl_64": truncate(x), "csr": sparse_code(x)}
