"""Deprecated import path, kept for one release: migration lives in :mod:`mrl_compress.migration`.

``mrl_compress.adapters.migration.plan(uri, collection, compressor, store=None, ...)`` and
``run(plan, store=None, ...)`` keep their first-release signatures here: they open the store
from the URI when none is given, then call :func:`mrl_compress.migration.plan` and
:func:`mrl_compress.migration.run`, which take the opened store. Everything else is
re-exported unchanged. New code imports :mod:`mrl_compress.migration`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mrl_compress import migration as _core
from mrl_compress.adapters import connect
from mrl_compress.compressor import Compressor
from mrl_compress.migration import (  # noqa: F401 (re-exported)
    CHECKPOINT_VERSION,
    MODES,
    Checkpoint,
    CopyRecord,
    Plan,
    Progress,
    Report,
    Verification,
    checkpoint_path,
    compressor_sha256,
    reconcile,
    verify,
)
from mrl_compress.store import VectorStore


def plan(target: str, collection: str, compressor: str | Path, *,
         store: VectorStore | None = None, **options: Any) -> Plan:
    """:func:`mrl_compress.migration.plan` on ``store``, or on ``connect(target)``."""
    with _opened(target, store) as opened:
        return _core.plan(opened, collection, compressor, **options)


def run(plan: Plan, *, store: VectorStore | None = None, progress: Progress | None = None,
        compressor: Compressor | None = None) -> Report:
    """:func:`mrl_compress.migration.run` on ``store``, or on ``connect(plan.target)``."""
    with _opened(plan.target, store) as opened:
        return _core.run(plan, opened, progress=progress, compressor=compressor)


@contextmanager
def _opened(target: str, store: VectorStore | None) -> Iterator[VectorStore]:
    if store is not None:
        yield store
        return
    opened = connect(target)
    try:
        yield opened
    finally:
        opened.close()
