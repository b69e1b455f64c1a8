"""The compressor artifact: a directory that serving can trust without unpickling anything.

::

    docs.mrlc/
      manifest.json       format + version, method, input dim, outputs, settings, source
                          fingerprint, retention measured at fit, sha256 of each file below
      weights.safetensors the parameters (numpy on load: no torch needed)
      model.onnx          the encoder graph run by onnxruntime

The method is a name from a fixed list; loading never imports a path written in a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrl_compress.errors import ArtifactError
from mrl_compress.outputs import Output

FORMAT = "mrl-compress-artifact"
FORMAT_VERSION = 1
METHODS = ("truncate", "pca", "ads", "adaptor", "csr")
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ONNX = "model.onnx"


@dataclass
class Fingerprint:
    """What the training vectors looked like: a migration compares it with the target's."""

    dim: int
    count: int
    norm_mean: float
    norm_std: float
    centroid_norm: float

    @classmethod
    def of(cls, vectors: np.ndarray) -> Fingerprint:
        norms = np.linalg.norm(vectors, axis=1)
        unit = vectors / np.maximum(norms[:, None], 1e-12)
        return cls(
            dim=int(vectors.shape[1]),
            count=int(len(vectors)),
            norm_mean=float(norms.mean()),
            norm_std=float(norms.std()),
            centroid_norm=float(np.linalg.norm(unit.mean(0))),
        )

    def mismatch(self, other: Fingerprint, tolerance: float = 0.1) -> str | None:
        """Why ``other`` does not look like the same embedding model's vectors, or None."""
        if other.dim != self.dim:
            return f"dimension {other.dim} ≠ the compressor's {self.dim}"
        if abs(other.norm_mean - self.norm_mean) > tolerance * max(self.norm_mean, 1e-6):
            return f"mean norm {other.norm_mean:.3f} ≠ the training vectors' {self.norm_mean:.3f}"
        if abs(other.centroid_norm - self.centroid_norm) > max(0.1, 0.5 * self.centroid_norm):
            return (f"centroid norm {other.centroid_norm:.3f} far from the training vectors' "
                    f"{self.centroid_norm:.3f} (another embedding model?)")
        return None


@dataclass
class Manifest:
    method: str
    input_dim: int
    outputs: list[Output]
    settings: dict[str, Any] = field(default_factory=dict)
    fingerprint: Fingerprint | None = None
    retention: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outputs"] = [o.to_json() for o in self.outputs]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], where: Path) -> Manifest:
        if data.get("format") != FORMAT:
            raise ArtifactError(f"{where}: not an mrl-compress artifact (format "
                                f"'{data.get('format')}', expected '{FORMAT}')")
        if data.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(
                f"{where}: artifact format version {data.get('format_version')} is not "
                f"supported (this mrl-compress reads version {FORMAT_VERSION}); refit it or "
                "install the mrl-compress version that wrote it"
            )
        if data.get("method") not in METHODS:
            raise ArtifactError(f"{where}: unknown method '{data.get('method')}' "
                                f"(expected one of {', '.join(METHODS)})")
        try:
            fp = data.get("fingerprint")
            return cls(
                method=data["method"],
                input_dim=int(data["input_dim"]),
                outputs=[Output.from_json(o) for o in data["outputs"]],
                settings=dict(data.get("settings", {})),
                fingerprint=Fingerprint(**fp) if fp else None,
                retention=list(data.get("retention", [])),
                files=dict(data.get("files", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{where}: malformed manifest ({e})") from None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write(path: str | Path, manifest: Manifest, weights: dict[str, np.ndarray],
          onnx_model: bytes, overwrite: bool = False) -> Path:
    """Write the artifact atomically: a temp dir beside ``path``, renamed when complete."""
    from safetensors.numpy import save_file

    target = Path(path)
    if target.exists() and not overwrite:
        raise ArtifactError(f"{target} already exists: choose another --out or pass --overwrite")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(tmp / WEIGHTS))
        (tmp / ONNX).write_bytes(onnx_model)
        manifest.files = {name: sha256(tmp / name) for name in (WEIGHTS, ONNX)}
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read(path: str | Path) -> tuple[Manifest, dict[str, np.ndarray], bytes]:
    """Read and verify an artifact: format version, method name, file checksums."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    root = Path(path)
    if not (root / MANIFEST).is_file():
        raise ArtifactError(f"{root}: not a compressor artifact (no {MANIFEST}); "
                            "expected a directory written by 'mrl-compress fit'")
    try:
        data = json.loads((root / MANIFEST).read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{root / MANIFEST}: not valid JSON ({e})") from None
    manifest = Manifest.from_json(data, root)
    for name in (WEIGHTS, ONNX):
        file = root / name
        if not file.is_file():
            raise ArtifactError(f"{root}: {name} is missing")
        expected = manifest.files.get(name)
        if expected is None or sha256(file) != expected:
            raise ArtifactError(
                f"{file}: checksum does not match the manifest (the file was modified or "
                "corrupted); refit or restore the artifact"
            )
    try:
        weights = load_file(str(root / WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise ArtifactError(f"{root / WEIGHTS}: unreadable ({e})") from None
    return manifest, weights, (root / ONNX).read_bytes()
