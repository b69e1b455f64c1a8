"""The worked examples of docs/cli.md run as written (in a temp dir with real vectors)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from mrl_compress.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"


def examples(doc: str) -> dict[str, list[list[str]]]:
    """Blocks marked ``<!-- test: NAME -->``, as argv lists (``mrl-compress`` dropped)."""
    text = (DOCS / doc).read_text()
    found = {}
    for name, block in re.findall(r"<!-- test: ([\w-]+) -->\s*```\w*\n(.*?)```", text, re.S):
        found[name] = [shlex.split(line)[1:] for line in block.strip().splitlines()]
    return found


def run_example(name: str, verbs: list[str]) -> None:
    """Run docs/cli.md's block ``name`` in the current directory; each command exits 0."""
    commands = examples("cli.md")[name]
    assert [c[0] for c in commands] == verbs
    for argv in commands:
        try:
            main(argv)
        except SystemExit as e:
            assert e.code in (0, None), argv


def test_cli_worked_example_runs(scifact: np.ndarray, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    np.save("vectors.npy", scifact[:1500].astype(np.float16))
    run_example("cli-fit", ["fit", "inspect", "encode"])
    with np.load("codes.npz") as z:
        assert z["mrl_64"].shape == (1500, 64)


def test_cli_pairs_example_runs(scifact: np.ndarray, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    import mrl_compress

    monkeypatch.chdir(tmp_path)
    np.save("vectors.npy", scifact[:1500].astype(np.float16))
    np.savez("pairs.npz", queries=scifact[1500:1700] + 0.01, documents=scifact[1500:1700])
    run_example("cli-pairs", ["fit", "inspect"])
    settings = mrl_compress.load("supervised.mrlc").manifest.settings
    assert settings["supervised"] is True and settings["steps"] == 50


def test_cli_quantizer_example_runs(scifact: np.ndarray, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import mrl_compress
    from mrl_compress import frontier, quantizers

    monkeypatch.chdir(tmp_path)
    np.save("vectors.npy", scifact[:1500].astype(np.float16))
    run_example("cli-quantizer", ["fit", "inspect"])
    trained = mrl_compress.load("signs.mrlc")
    assert trained.manifest.settings["quantizer"] == "binary1-q8"
    found = frontier.candidates(384, [("signs.mrlc", trained)], quantizers.names(), native=(),
                                composed=("int8",))
    assert "adaptor@binary1-q8 mrl_384 384-d binary1-q8" in [c.label for c in found]


def test_artifacts_python_example_runs(fitted: dict, scifact: np.ndarray, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fitted["pca"].compressor.save("docs.mrlc")
    text = (DOCS / "artifacts.md").read_text()
    block = re.search(r"<!-- test: artifacts-python -->\s*```python\n(.*?)```", text, re.S)
    assert block is not None
    scope: dict[str, object] = {"vectors": scifact[:10]}
    exec(block.group(1), scope)
    codes = scope["codes"]
    assert isinstance(codes, dict) and codes["mrl_64"].shape == (10, 64)
