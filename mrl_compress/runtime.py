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


def _unit(x: np.ndarray) -> np.ndarray:
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
        wanted = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            wanted.insert(0, "CUDAExecutionProvider")
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


class NumpyRuntime:
    """The same maths as the ONNX graph, in numpy (for linear dense methods and CSR)."""

    provider = "numpy"

    def __init__(self, method: str, weights: dict[str, np.ndarray],
                 outputs: Sequence[Output]) -> None:
        if any(k.startswith("residual.") for k in weights):
            raise MissingDependency("this adaptor has a non-linear residual: serve it with "
                                    "onnxruntime (pip install 'mrl-compress[onnx]')")
        self.method = method
        self.w = weights
        self.outputs = list(outputs)

    def run(self, vectors: np.ndarray) -> Encoded:
        x = _unit(np.asarray(vectors, np.float32))
        if self.method == "csr":
            return self._sparse(x)
        y = x - self.w["mean"]
        if "rotation" in self.w:
            y = y @ self.w["rotation"]
        if "index" in self.w:
            y = y[:, self.w["index"]]
        return {o.name: _unit(y[:, : o.size]) for o in self.outputs}

    def _sparse(self, x: np.ndarray) -> Encoded:
        return {out.name: sparse_codes(self.w, x, out.nonzeros or 0) for out in self.outputs}


def sparse_codes(weights: dict[str, np.ndarray], x: np.ndarray, k: int) -> SparseBatch:
    """CSR codes of unit rows ``x`` with ``k`` non-zeros: the top-k latents, ReLU'd, sorted,
    L2-normalised (the ONNX graph's maths, in numpy)."""
    pre = (x - weights["b_pre"]) @ weights["weight"].T + weights["b_enc"]
    idx = np.argpartition(-pre, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(pre, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    vals = _unit(np.maximum(np.take_along_axis(vals, order, axis=1), 0))
    return SparseBatch(idx.astype(np.int32), vals.astype(np.float32), pre.shape[1])
