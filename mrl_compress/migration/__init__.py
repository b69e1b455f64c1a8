"""Migration: write a compressor's outputs beside every stored vector, through any store.

Three steps, each usable from Python (the ``mrl-compress migrate`` command wraps them):

- :func:`plan` (:mod:`~mrl_compress.migration.planning`) reads the collection and the
  artifact and decides what will happen (mode, fields, points, bytes added, index memory); it
  writes nothing, so ``--dry-run`` prints it.
- :func:`run` (:mod:`~mrl_compress.migration.writing`) carries a plan out in batches:
  ``in-place`` (``add_outputs`` then ``write_outputs`` per batch) where the engine can add a
  vector field, else ``copy`` (a new collection with the original vectors, payloads and ids
  plus the new fields, then a :func:`reconcile` pass and an optional alias swap). A checkpoint
  file is replaced atomically after every committed batch, so a run killed at any moment
  continues with ``resume``; every write is an idempotent upsert of the same values, so a
  batch written twice is harmless. ``native`` writes no field at all: it sets the engine's
  own quantizer on the full vector (``set_quantizer``; docs/quantizers.md).
- :func:`verify` (:mod:`~mrl_compress.migration.verification`) checks the result: counts,
  every point has every new field, and a sample (or all points) has byte-identical payloads
  and original vectors (copy) and new vectors equal to a fresh encode.

Everything goes through the :class:`~mrl_compress.store.VectorStore` protocol, and the caller
opens the store (``mrl_compress.adapters.connect(uri)``); the only engine fact used is what
``add_outputs`` raises when it cannot add fields in place
(:class:`~mrl_compress.errors.StoreError`, not its subclasses ``NotFound``/``Conflict``).
"""

from mrl_compress.migration.planning import (
    CHECKPOINT_VERSION,
    MODES,
    Checkpoint,
    Plan,
    checkpoint_path,
    compressor_sha256,
    plan,
)
from mrl_compress.migration.reconciliation import CopyRecord, reconcile
from mrl_compress.migration.verification import Verification, verify
from mrl_compress.migration.writing import Progress, Report, run

__all__ = [
    "CHECKPOINT_VERSION",
    "MODES",
    "Checkpoint",
    "CopyRecord",
    "Plan",
    "Progress",
    "Report",
    "Verification",
    "checkpoint_path",
    "compressor_sha256",
    "plan",
    "reconcile",
    "run",
    "verify",
]
