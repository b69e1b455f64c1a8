"""mrl-compress: smaller, faster embeddings for the vectors you already store.

``import mrl_compress`` pulls in no torch and no store client: training (``fit``) imports
torch when called, and the store adapters live in :mod:`mrl_compress.adapters`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mrl_compress.compressor import Compressor, load
from mrl_compress.errors import MrlCompressError
from mrl_compress.outputs import Output, SparseBatch

if TYPE_CHECKING:
    from mrl_compress.fitting import FitResult

__version__ = "0.1.0"
__all__ = ["Compressor", "MrlCompressError", "Output", "SparseBatch", "fit", "load"]


def fit(vectors: Any, method: str = "adaptor", **settings: Any) -> FitResult:
    """Learn a compressor from stored vectors (needs the ``train`` extra). See ``fitting.fit``."""
    from mrl_compress.fitting import fit as _fit

    return _fit(vectors, method=method, **settings)
