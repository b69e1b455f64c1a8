"""The artifact directory: round trip, and refusal of anything not written by fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import mrl_compress
from mrl_compress.errors import ArtifactError


@pytest.fixture()
def saved(fitted: dict, tmp_path: Path) -> Path:
    return fitted["adaptor"].compressor.save(tmp_path / "docs.mrlc")


def test_round_trip_encodes_identically(saved: Path, fitted: dict, scifact: np.ndarray) -> None:
    loaded = mrl_compress.load(saved)
    before = fitted["adaptor"].compressor.encode(scifact[:64])
    after = loaded.encode(scifact[:64])
    for name in before:
        assert np.array_equal(before[name], after[name])
    assert loaded.manifest.fingerprint is not None
    assert loaded.manifest.fingerprint.dim == 384
    assert {r["name"] for r in loaded.manifest.retention} >= {"mrl_32", "mrl_64"}


def test_manifest_lists_checksums_of_both_files(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    assert set(manifest["files"]) == {"weights.safetensors", "model.onnx"}
    assert manifest["format_version"] == 1 and manifest["method"] == "adaptor"


def test_tampered_weights_are_refused(saved: Path) -> None:
    data = bytearray((saved / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (saved / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as e:
        mrl_compress.load(saved)
    assert str(e.value) == (
        f"{saved / 'weights.safetensors'}: checksum does not match the manifest (the file was "
        "modified or corrupted); refit or restore the artifact"
    )


def test_tampered_onnx_is_refused(saved: Path) -> None:
    (saved / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="model.onnx: checksum does not match"):
        mrl_compress.load(saved)


def test_other_format_version_is_refused(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["format_version"] = 99
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError) as e:
        mrl_compress.load(saved)
    assert str(e.value) == (
        f"{saved}: artifact format version 99 is not supported (this mrl-compress reads "
        "version 1); refit it or install the mrl-compress version that wrote it"
    )


def test_unknown_method_is_refused_without_importing_anything(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["method"] = "os.system"
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="unknown method 'os.system'"):
        mrl_compress.load(saved)


def test_not_an_artifact(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a compressor artifact"):
        mrl_compress.load(tmp_path)


def test_save_refuses_to_overwrite_and_writes_atomically(saved: Path, fitted: dict) -> None:
    with pytest.raises(ArtifactError, match="already exists"):
        fitted["pca"].compressor.save(saved)
    fitted["pca"].compressor.save(saved, overwrite=True)
    assert mrl_compress.load(saved).method == "pca"
    leftovers = [p for p in saved.parent.iterdir() if p.name.startswith(".docs.mrlc")]
    assert leftovers == []
    shutil.rmtree(saved)
