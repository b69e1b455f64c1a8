"""The main job (scripts/demo) end to end on a small slice: it migrates, searches, and finds
the documents the application writes after the migration, before and after sync."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_main_job_finds_the_writes_after_its_migration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import main_job
    finally:
        sys.path.remove(str(ROOT / "bench"))
    code = main_job.main(["--docs", "2000", "--queries", "50", "--steps", "10",
                          "--csr-steps", "5", "--out", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert code == 0
    assert "two-stage search finds 100/100 of them in the top 10 for their own text before " \
           "any sync" in out
    assert "sync adaptor: 100 unsynced point(s), 100 written" in out
    assert "after sync: 100/100 found in the top 10 for their own text, 2000/2000 points hold " \
           "every output" in out
