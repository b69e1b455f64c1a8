"""Serving runtimes: onnxruntime (CUDA provider first when present) or plain numpy.

Neither imports torch. The numpy runtime serves the linear dense methods (truncate, pca, ads,
a linear adaptor) and CSR, from the safetensors weights; ONNX serves every method.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from mrl_compress.errors import MissingDependency
from mrl_compress.outputs import Encoded, Output, SparseBatch


class Runtime(Protocol):
    provider: str

    def run(self, vectors: np.ndarray) -> Encoded: ...


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), in the input's dtype."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class OnnxRuntime:
    """Runs ``model.onnx``; ``provider`` is the one onnxruntime actually uses, not the one asked.

    Asking for CUDA where it cannot load silently falls back to CPU with a warning, so the
    provider is read back from the session (DESIGN.md, ONNX facts).
    """

    def __init__(self, model: bytes, outputs: Sequence[Output], device: str = "auto") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependency(
                "serving through ONNX needs onnxruntime: pip install 'mrl-compress[onnx]' "
                "(or 'mrl-compress[onnx-gpu]' on a CUDA machine)"
            ) from None
        available = ort.get_available_providers()
        wanted: list[str | tuple[str, dict[str, str]]] = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            # float32 products, not the provider's default TF32: on an H200, TF32 moved dense
            # outputs by 8e-5 and changed the atoms of 3.3 % of csr codes vs the CPU (float32:
            # 4.2e-7 and 0.02 %), at the same rows/s (docs/gpu.md)
            wanted.insert(0, ("CUDAExecutionProvider", {"use_tf32": "0"}))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.session = ort.InferenceSession(model, options, providers=wanted)
        self.provider = self.session.get_providers()[0]
        self.outputs = list(outputs)

    def run(self, vectors: np.ndarray) -> Encoded:
        raw = self.session.run(None, {"vectors": np.ascontiguousarray(vectors, np.float32)})
        names = [o.name for o in self.session.get_outputs()]
        by_name = dict(zip(names, raw, strict=True))
        result: Encoded = {}
        for out in self.outputs:
            if out.kind == "dense":
                result[out.name] = by_name[out.name]
            else:
                result[out.name] = SparseBatch(
                    by_name[f"{out.name}.indices"].astype(np.int32),
                    by_name[f"{out.name}.values"].astype(np.float32),
                    out.size,
                )
        return result


def is_linear(method: str, weights: dict[str, np.ndarray]) -> bool:
    """A dense method whose graph is one linear map (truncate, pca, ads, an adaptor without
    a residual branch)."""
    return method != "csr" and not any(k.startswith("residual.") for k in weights)


class LinearMap:
    """A linear method's graph as one product: output d is ``unit(y[:, :d])`` with
    ``y = (x @ W) / |x| - offset``, ``W`` the rotation's selected columns (identity and raw
    columns without a rotation) and ``offset`` the mean mapped the same way."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        mean = np.asarray(weights["mean"], np.float64)  # input-sized, whatever the method
        rotation = np.asarray(weights.get("rotation", np.eye(len(mean))), np.float64)
        columns = np.asarray(weights["index"]) if "index" in weights else slice(None)
        chosen = rotation[:, columns]
        self._weight, self._offset = chosen.astype(np.float32), (mean @ chosen).astype(np.float32)
        self._narrow: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def project(self, x: np.ndarray, width: int, norms: np.ndarray | None = None) -> np.ndarray:
        """The first ``width`` columns of ``y`` (un-normalised) for rows ``x``; ``norms``:
        the rows' (n, 1) lengths when the caller has them already."""
        if width not in self._narrow:  # contiguous columns: one query costs one small product
            self._narrow[width] = (np.ascontiguousarray(self._weight[:, :width]),
                                   self._offset[:width].copy())
        weight, offset = self._narrow[width]
        if norms is None:
            norms = np.linalg.norm(x, axis=1, keepdims=True)
        return (x @ weight) / np.maximum(norms, 1e-12) - offset  # the graph's clamp


class NumpyRuntime:
    """The same maths as the ONNX graph, in numpy (for linear dense methods and CSR)."""

    provider = "numpy"

    def __init__(self, method: str, weights: dict[str, np.ndarray], outputs: Sequence[Output],
                 dictionary: Dictionary | None = None) -> None:
        if method != "csr" and not is_linear(method, weights):
            raise MissingDependency("this adaptor has a non-linear residual: serve it with "
                                    "onnxruntime (pip install 'mrl-compress[onnx]')")
        self.method = method
        self.w = weights
        self.outputs = list(outputs)
        self.dictionary = dictionary
        self.linear = LinearMap(weights) if method != "csr" else None

    def run(self, vectors: np.ndarray) -> Encoded:
        x = np.asarray(vectors, np.float32)
        if self.linear is None:
            return self._sparse(unit_rows(x))
        y = self.linear.project(x, max(o.size for o in self.outputs))
        return {o.name: unit_rows(y[:, : o.size]) for o in self.outputs}

    def _sparse(self, x: np.ndarray) -> Encoded:
        if self.dictionary is not None:
            ids, coefs = self.dictionary.pursuit(x, max(o.nonzeros or 0 for o in self.outputs))
            return {o.name: self.dictionary.stored(ids[:, : o.nonzeros], coefs[:, : o.nonzeros])
                    for o in self.outputs}
        return {out.name: sparse_codes(self.w, x, out.nonzeros or 0) for out in self.outputs}


class Dictionary:
    """A csr compressor's dictionary served by matching pursuit (numpy, as the ONNX graph).

    Documents are stored as pursuit codes (:meth:`pursuit`, :meth:`stored`); a query is not
    coded but scored through its correlation with every atom (:meth:`queries`), so a document's
    score is the query's cosine with the document's reconstruction. See
    ``SparseTopK.pursuit`` for the maths and docs/methods.md for why.
    """

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.atoms = unit_rows(np.asarray(weights["weight"], np.float32))
        self.hidden = self.atoms.shape[0]
        self._gram: np.ndarray | None = None

    @property
    def gram(self) -> np.ndarray:
        """The atoms' Gram matrix, built on first use: only coding documents needs it."""
        if self._gram is None:
            self._gram = self.atoms @ self.atoms.T
        return self._gram

    def pursuit(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Atom ids (n, k) and signed coefficients of the k-step pursuit of unit rows ``x``."""
        corr = x @ self.atoms.T
        rows = np.arange(len(x))
        ids = np.empty((len(x), k), np.int64)
        coefs = np.empty((len(x), k), np.float32)
        taken = np.zeros_like(corr)
        for step in range(k):
            j = (np.abs(corr) - taken).argmax(axis=1)
            coef = corr[rows, j]
            corr -= coef[:, None] * self.gram[j]
            taken[rows, j] = 1e9  # each atom once
            ids[:, step], coefs[:, step] = j, coef
        return ids, coefs

    def stored(self, ids: np.ndarray, coefs: np.ndarray) -> SparseBatch:
        """Signed slots (``hidden + id`` for a negative coefficient), values scaled so that
        the reconstruction has length 1."""
        shares = np.zeros((len(ids), self.hidden), np.float32)
        np.put_along_axis(shares, ids, coefs, axis=1)
        length = np.maximum(np.linalg.norm(shares @ self.atoms, axis=1), 1e-12)
        slots = ids + self.hidden * (coefs < 0)
        return SparseBatch(slots.astype(np.int32),
                           (np.abs(coefs) / length[:, None]).astype(np.float32),
                           2 * self.hidden)

    def queries(self, x: np.ndarray, nonzeros: int) -> SparseBatch:
        """Unit query rows as their correlation u with the atoms, in the stored codes' slots.

        Each atom gives two entries, one per slot a stored share of it may have: u in slot j
        and -u in slot hidden + j (which holds the magnitude of a negative share), so the
        dot product with a stored code is exactly the query's cosine with the code's
        reconstruction (values are not rescaled: scores are cosines). Atoms are taken by
        decreasing |u|, each one's positive entry first, and the first ``nonzeros`` entries
        are kept: an odd count ends on a positive entry, so an engine that takes only the
        positive ones (Milvus) gets the same atoms.
        """
        corr = x @ self.atoms.T
        atoms = min(self.hidden, (nonzeros + 1) // 2)
        top = np.argpartition(-np.abs(corr), atoms - 1, axis=1)[:, :atoms]
        u = np.take_along_axis(corr, top, axis=1)
        order = np.argsort(-np.abs(u), axis=1, kind="stable")
        top, u = np.take_along_axis(top, order, axis=1), np.take_along_axis(u, order, axis=1)
        positive = top + self.hidden * (u < 0)  # the slot where u's sign scores positively
        negative = top + self.hidden * (u >= 0)
        idx = np.stack([positive, negative], axis=2).reshape(len(x), -1)[:, :nonzeros]
        vals = np.stack([np.abs(u), -np.abs(u)], axis=2).reshape(len(x), -1)[:, :nonzeros]
        return SparseBatch(idx.astype(np.int32), vals.astype(np.float32), 2 * self.hidden)


def sparse_codes(weights: dict[str, np.ndarray], x: np.ndarray, k: int) -> SparseBatch:
    """CSR codes of unit rows ``x`` with ``k`` non-zeros: the top-k latents, ReLU'd, sorted,
    L2-normalised (the ONNX graph's maths, in numpy)."""
    pre = (x - weights["b_pre"]) @ weights["weight"].T + weights["b_enc"]
    idx = np.argpartition(-pre, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(pre, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    vals = unit_rows(np.maximum(np.take_along_axis(vals, order, axis=1), 0))
    return SparseBatch(idx.astype(np.int32), vals.astype(np.float32), pre.shape[1])
