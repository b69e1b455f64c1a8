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


def test_cli_worked_example_runs(scifact: np.ndarray, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    np.save("vectors.npy", scifact[:1500].astype(np.float16))
    commands = examples("cli.md")["cli-fit"]
    assert [c[0] for c in commands] == ["fit", "inspect", "encode"]
    for argv in commands:
        try:
            main(argv)
        except SystemExit as e:
            assert e.code in (0, None), argv
    with np.load("codes.npz") as z:
        assert z["mrl_64"].shape == (1500, 64)
