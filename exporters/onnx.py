"""Export a trained compressor (torch module) to an ONNX graph with a dynamic batch axis.

The graph's input is ``vectors`` (n, input_dim) float32; its outputs are named after the
compressor's outputs: ``<name>`` for a dense one, ``<name>.indices`` and ``<name>.values`` for
a sparse one. Uses the TorchScript-based exporter, which needs no onnxscript and writes the
weights inside the single ``.onnx`` file.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

from mrl_compress.errors import require
from mrl_compress.outputs import Output

OPSET = 17


def output_names(outputs: Sequence[Output]) -> list[str]:
    names: list[str] = []
    for out in outputs:
        names += [out.name] if out.kind == "dense" else [f"{out.name}.indices",
                                                         f"{out.name}.values"]
    return names


def export(model: object, input_dim: int, outputs: Sequence[Output]) -> bytes:
    """The ONNX model bytes of ``model`` (a torch ``nn.Module`` in eval mode)."""
    require("torch", "train")
    require("onnx", "train")
    import torch

    names = output_names(outputs)
    example = torch.randn(4, input_dim)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,  # type: ignore[arg-type]
            (example,),
            buffer,  # type: ignore[arg-type]  # file-like objects are accepted
            input_names=["vectors"],
            output_names=names,
            dynamic_axes={"vectors": {0: "n"}, **{n: {0: "n"} for n in names}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()
