"""Serving needs no torch: importing the package and encoding through ONNX loads none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_import_pulls_in_no_torch_and_no_store_client() -> None:
    code = (
        "import sys, mrl_compress, mrl_compress.cli, mrl_compress.adapters, mrl_compress.store,"
        " mrl_compress.migration, mrl_compress.adapters.migration;"
        "heavy = [m for m in ('torch', 'qdrant_client', 'qdrant_edge', 'pymilvus',"
        " 'langchain_core', 'onnx', 'matplotlib') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_loading_and_encoding_an_artifact_imports_no_torch(fitted: dict, tmp_path: Path) -> None:
    path = fitted["csr"].compressor.save(tmp_path / "c.mrlc")
    code = (
        "import sys, numpy as np, mrl_compress;"
        f"c = mrl_compress.load({str(path)!r});"
        "out = c.encode(np.random.default_rng(0).normal(size=(5, 384)).astype('float32'));"
        "assert c.provider == 'CPUExecutionProvider', c.provider;"
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
