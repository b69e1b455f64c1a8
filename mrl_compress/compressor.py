"""The serving face of every method: load an artifact, encode vectors. No torch here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mrl_compress import artifact
from mrl_compress.artifact import Manifest
from mrl_compress.errors import InvalidInput
from mrl_compress.outputs import Encoded, Output, SparseBatch
from mrl_compress.runtime import (
    Dictionary,
    LinearMap,
    NumpyRuntime,
    OnnxRuntime,
    Runtime,
    is_linear,
    sparse_codes,
    unit_rows,
)
from mrl_compress.vectors import validate


class Compressor:
    """A fitted compressor: named ``outputs`` and ``encode(vectors) -> {name: array | sparse}``.

    Made by :func:`mrl_compress.fit` or :func:`load`; serving runs the ONNX graph through
    onnxruntime (``runtime="onnx"``), or numpy for the methods that are plain linear maps
    (``runtime="numpy"``). ``runtime="auto"`` prefers ONNX when onnxruntime is installed.
    """

    def __init__(self, manifest: Manifest, weights: dict[str, np.ndarray], onnx_model: bytes,
                 runtime: str = "auto", device: str = "auto") -> None:
        self.manifest = manifest
        self.weights = weights
        self.onnx_model = onnx_model
        self._runtime_choice = runtime
        self._device = device
        self._runtime: Runtime | None = None
        self._dictionary: Dictionary | None = None
        self._linear: LinearMap | None = None

    # -- description ---------------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.manifest.method

    @property
    def input_dim(self) -> int:
        return self.manifest.input_dim

    @property
    def outputs(self) -> list[Output]:
        return list(self.manifest.outputs)

    def output(self, name: str) -> Output:
        for out in self.manifest.outputs:
            if out.name == name:
                return out
        raise InvalidInput(f"compressor has no output '{name}'; it has "
                           f"{', '.join(o.name for o in self.manifest.outputs)}")

    @property
    def pursuit(self) -> bool:
        """A csr compressor that codes documents by matching pursuit and scores queries through
        the dictionary (the default since the fifth session; older artifacts are TopK)."""
        return self.method == "csr" and self.manifest.settings.get("encoder") == "pursuit"

    @property
    def dictionary(self) -> Dictionary | None:
        if self.pursuit and self._dictionary is None:
            self._dictionary = Dictionary(self.weights)
        return self._dictionary

    @property
    def provider(self) -> str:
        """Where encoding runs: 'CUDAExecutionProvider', 'CPUExecutionProvider' or 'numpy'."""
        return self.runtime.provider

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = self._make_runtime()
        return self._runtime

    def _make_runtime(self) -> Runtime:
        choice = self._runtime_choice
        if choice == "auto":
            import importlib.util

            choice = "onnx" if importlib.util.find_spec("onnxruntime") else "numpy"
        if choice == "numpy":
            return NumpyRuntime(self.method, self.weights, self.outputs, self.dictionary)
        if choice == "onnx":
            return OnnxRuntime(self.onnx_model, self.outputs, self._device)
        raise InvalidInput(f"unknown runtime '{choice}': expected auto, onnx or numpy")

    # -- encoding ------------------------------------------------------------------------
    def encode(self, vectors: np.ndarray, batch_size: int = 8192,
               drop_invalid: bool = False) -> Encoded:
        """Encode rows in order. Dense outputs: (n, d) float32; sparse: :class:`SparseBatch`."""
        x = validate(vectors, dim=self.input_dim, drop_invalid=drop_invalid,
                     what="vectors to encode").vectors
        parts = [self.runtime.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        if not parts:
            parts = [self.runtime.run(np.zeros((0, self.input_dim), np.float32))]
        return {out.name: _concat([p[out.name] for p in parts]) for out in self.outputs}

    def encode_queries(self, vectors: np.ndarray, output: str,
                       nonzeros: int | None = None) -> np.ndarray | SparseBatch:
        """Encode queries for a search on ``output``: what the retriever and ``eval`` send.

        Dense outputs: as :meth:`encode`; the linear methods through one cached product
        (:attr:`linear`). Sparse outputs of a pursuit csr: each query's
        signed correlations with the dictionary's atoms in the codes' slots, the ``nonzeros``
        largest (default: all, two per atom); a document's score is then the query's cosine
        with the document's reconstruction. TopK csr: the query's own code, with
        ``nonzeros`` latents instead of the output's k when given (the stored codes keep k).
        More non-zeros keep more of the query, for a longer sparse query (docs/benchmarks.md).
        """
        out = self.output(output)
        if out.kind == "dense" and self.linear is not None and nonzeros is None:
            norms = _plain_norms(vectors, self.input_dim)
            if norms is None:  # validate says what is wrong (or cleans a float64 list)
                vectors = validate(vectors, dim=self.input_dim, what="queries to encode").vectors
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            return unit_rows(self.linear.project(vectors, out.size, norms))
        if out.kind == "sparse" and self.dictionary is not None:
            nonzeros = out.size if nonzeros is None else nonzeros
        elif nonzeros is None or nonzeros == out.nonzeros:
            return self.encode(vectors)[output]
        if out.kind != "sparse" or out.size is None:
            raise InvalidInput(f"query non-zeros apply to a sparse output; '{output}' is dense")
        if isinstance(nonzeros, bool) or not isinstance(nonzeros, int) or not (
                0 < nonzeros <= out.size):
            slots = "slots" if self.pursuit else "latents"
            raise InvalidInput(f"query non-zeros must be an integer from 1 to the {out.size} "
                               f"{slots} of '{output}', not {nonzeros!r}")
        x = validate(vectors, dim=self.input_dim, what="queries to encode").vectors
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        if self.dictionary is not None:
            return self.dictionary.queries(x, nonzeros)
        return sparse_codes(self.weights, x, nonzeros)

    def encode_as_queries(self, vectors: np.ndarray, nonzeros: int | None = None,
                          batch_size: int = 8192, drop_invalid: bool = False) -> Encoded:
        """Every output's query side, rows in order: :meth:`encode_queries` for each output.

        This is what the retriever and ``eval`` send, so the dot product of a row of this with
        a row of :meth:`encode` (the document side) is the score they rank by. Dense outputs:
        the same code as a document. Pursuit csr: the query's signed correlations with the
        atoms, ``nonzeros`` of them (default all, two per atom); values are signed. TopK csr:
        the query's own code with ``nonzeros`` latents (default k). ``nonzeros`` is refused
        for a compressor without a sparse output (docs/cli.md, "The .npz contract").
        """
        if nonzeros is not None and not any(o.kind == "sparse" for o in self.outputs):
            raise InvalidInput(
                f"query non-zeros apply to sparse (csr) outputs; this {self.method} "
                f"compressor's outputs ({', '.join(o.name for o in self.outputs)}) are dense")
        x = validate(vectors, dim=self.input_dim, drop_invalid=drop_invalid,
                     what="queries to encode").vectors
        parts = [{o.name: self.encode_queries(x[i : i + batch_size], o.name,
                                              nonzeros if o.kind == "sparse" else None)
                  for o in self.outputs}
                 for i in range(0, max(len(x), 1), batch_size)]
        return {o.name: _concat([p[o.name] for p in parts]) for o in self.outputs}

    @property
    def linear(self) -> LinearMap | None:
        """A linear method's graph as one cached product (None for csr and a residual adaptor).

        The same numbers as the graph (tests hold it to 1e-5). The retriever encodes one query
        per call, where a graph run's fixed cost is more than the product itself: ~0.5 ms of a
        1 ms two-stage call at 1M points (bench/results/history.md, fifth session).
        """
        if self._linear is None and is_linear(self.method, self.weights):
            self._linear = LinearMap(self.weights)
        return self._linear

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        return artifact.write(path, self.manifest, self.weights, self.onnx_model, overwrite)

    @classmethod
    def load(cls, path: str | Path, runtime: str = "auto", device: str = "auto") -> Compressor:
        manifest, weights, onnx_model = artifact.read(path)
        return cls(manifest, weights, onnx_model, runtime=runtime, device=device)

    def describe(self) -> dict[str, Any]:
        return self.manifest.to_json()


def _concat(parts: list[np.ndarray | SparseBatch]) -> np.ndarray | SparseBatch:
    sparse = [p for p in parts if isinstance(p, SparseBatch)]
    if sparse:
        return SparseBatch(np.concatenate([p.indices for p in sparse]),
                           np.concatenate([p.values for p in sparse]), sparse[0].dim)
    return np.concatenate([p for p in parts if isinstance(p, np.ndarray)])


def _plain_norms(vectors: object, dim: int) -> np.ndarray | None:
    """The (n, 1) row lengths of a float32 (n, dim) array of finite, non-zero rows, else None
    (``validate`` then says what is wrong). The lengths are the check: a NaN or inf entry
    makes its row's length NaN or inf, a zero row makes it 0. Part of a one-query encode,
    where every numpy call counts (bench/results/history.md, sixth session)."""
    if not (isinstance(vectors, np.ndarray) and vectors.dtype == np.float32
            and vectors.ndim == 2 and vectors.shape[1] == dim):
        return None
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not (np.isfinite(norms).all() and norms.all()):
        return None
    return norms


def load(path: str | Path, runtime: str = "auto", device: str = "auto") -> Compressor:
    """Load and verify a compressor artifact directory (see :mod:`mrl_compress.artifact`)."""
    return Compressor.load(path, runtime=runtime, device=device)
