"""Shared fixtures: real stored vectors from ../shared/data (MiniLM 384-d, float16 on disk)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# ../shared/data beside the checkout; MRL_DATA points at a copy (a GPU machine gets one)
DATA = Path(os.environ.get("MRL_DATA")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data")
METHODS = ["truncate", "pca", "ads", "adaptor", "csr"]


def load_f32(relative: str, rows: int | None = None) -> np.ndarray:
    stored = np.load(DATA / relative, mmap_mode="r")
    return np.asarray(stored[:rows] if rows else stored, dtype=np.float32)


@pytest.fixture(scope="session")
def scifact() -> np.ndarray:
    """5,183 SciFact abstracts as stored all-MiniLM-L6-v2 vectors (rows 2000+ unseen by fits)."""
    return load_f32("beir/scifact/corpus.minilm.f16.npy")


@pytest.fixture(scope="session")
def fitted(scifact: np.ndarray) -> dict:
    """method -> FitResult, one quick fit each (few steps: mechanics, not quality).

    Dense methods give mrl_32 + mrl_64; csr gives csr_8 + csr_16 over 512 latents, coded by
    pursuit (1,024 signed slots); "csr-topk" is csr with the published TopK encoder.
    """
    import mrl_compress

    def quick(method: str, **options: object) -> object:
        return mrl_compress.fit(scifact[:2000], method, dims=(32, 64), k=(8, 16), hidden=512,
                                steps=8, holdout=200, eval_docs=1200, **options)

    return {**{method: quick(method) for method in METHODS},
            "csr-topk": quick("csr", encoder="topk")}
