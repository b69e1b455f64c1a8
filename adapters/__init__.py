"""Vector stores behind one interface, picked by URI.

``connect(uri)`` returns a :class:`VectorStore`; callers never branch on the backend:

=====================================  ==================================================
URI                                    backend (module)
=====================================  ==================================================
``qdrant://host:6333``, ``qdrants://`` qdrant-client to a server (``adapters/qdrant.py``),
                                       API key from ``QDRANT_API_KEY``
``qdrant-local:./dir``, ``:memory:``   qdrant-client local mode (``adapters/qdrant.py``)
``edge:./shard-dir``                   Qdrant Edge in-process (``adapters/qdrant_edge.py``)
``milvus:./file.db``                   Milvus Lite (``adapters/milvus.py``)
``milvus://host:19530``                Milvus server, token from ``MILVUS_TOKEN``
=====================================  ==================================================

The core (``mrl_compress``) imports none of these modules; each imports its client lazily and
a missing client raises :class:`~mrl_compress.errors.MissingDependency` naming the extra.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from mrl_compress.errors import InvalidInput, NotFound
from mrl_compress.outputs import Output, SparseBatch

PointId = int | str
Filter = Mapping[str, Any]
"""Equality filter on payload keys, e.g. ``{"metadata.lang": "en"}`` (dots walk nested dicts)."""


@dataclass(frozen=True)
class VectorField:
    name: str
    kind: Literal["dense", "sparse"]
    size: int | None  # None for sparse fields
    distance: str | None  # "cosine" | "dot" | "euclid" | ... ; None for sparse
    # the engine's quantization of the field ("int8", "binary"), where it reports one; a
    # property of the index, not of the vectors, so fields compare equal without it
    quantization: str | None = field(default=None, compare=False)


@dataclass
class CollectionInfo:
    name: str
    count: int
    fields: dict[str, VectorField]
    langchain: Literal["qdrant", "milvus"] | None = None
    """Which LangChain integration made this collection, if any (its payload layout)."""
    text_key: str | None = None
    metadata_key: str | None = None
    aliases: list[str] = field(default_factory=list)

    def dense(self, name: str | None) -> VectorField:
        """The dense vector field ``name`` (or the only/default one when ``name`` is None)."""
        dense = {n: f for n, f in self.fields.items() if f.kind == "dense"}
        if name is None:
            if len(dense) == 1:
                return next(iter(dense.values()))
            raise InvalidInput(
                f"collection '{self.name}' has {len(dense)} dense vectors "
                f"({', '.join(repr(n) for n in dense)}): name one with --vector"
            )
        if name not in dense:
            from mrl_compress.errors import NotFound

            raise NotFound(
                f"collection '{self.name}' has no dense vector '{name}'; it has "
                f"{', '.join(repr(n) for n in dense) or 'none'}"
            )
        return dense[name]


@dataclass
class Batch:
    """Points read from a collection: ids, their full vectors (float32) and payloads."""

    ids: list[PointId]
    vectors: np.ndarray
    payloads: list[dict[str, Any]]
    next_offset: Any | None
    """Resume token: pass it back as ``offset`` to continue after this batch; None at the end."""
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    """Every dense field read, by name (float32 rows in ``ids`` order): the one in
    ``vectors`` and those asked for with ``vectors=`` (:meth:`VectorStore.iter_batches`,
    :meth:`VectorStore.retrieve`)."""


@dataclass
class Hit:
    id: PointId
    score: float
    payload: dict[str, Any]


Vectors = np.ndarray | SparseBatch


@runtime_checkable
class VectorStore(Protocol):
    """What every backend can do. Sync methods; async twins live beside them where offered."""

    uri: str

    def describe(self, collection: str) -> CollectionInfo: ...

    def iter_batches(
        self,
        collection: str,
        vector: str | None = None,
        batch_size: int = 512,
        offset: Any | None = None,
        with_payload: bool = True,
        vectors: Sequence[str] = (),
    ) -> Iterator[Batch]:
        """Stream points in a stable order; resumable from a batch's ``next_offset``.

        ``vectors`` names more dense fields to read in the same scan (into ``Batch.fields``,
        beside ``vector``); a point lacking any field read raises
        :class:`~mrl_compress.errors.StoreError`.
        """
        ...

    def point_ids(self, collection: str, batch_size: int = 2048) -> Iterator[list[PointId]]:
        """Every point id, in the order of :meth:`iter_batches`, reading no vector or payload."""
        ...

    def count_having(self, collection: str, names: Sequence[str]) -> int:
        """How many points hold every field of ``names`` (dense or sparse): a count in the
        engine, reading no vector."""
        ...

    def retrieve(
        self,
        collection: str,
        ids: Sequence[PointId],
        vectors: Sequence[str],
        with_payload: bool = True,
    ) -> Batch:
        """The points of ``ids`` that exist, in the order asked, with the dense ``vectors``.

        ``Batch.fields`` holds every named field, ``Batch.vectors`` the first; ids that do
        not exist are left out; a point lacking a named field raises
        :class:`~mrl_compress.errors.StoreError`. ``next_offset`` is None.
        """
        ...

    def sample(self, collection: str, vector: str | None, n: int, seed: int = 0) -> np.ndarray:
        """A uniform reservoir sample of ``n`` stored vectors, streamed with bounded memory."""
        ...

    def create_collection(
        self,
        collection: str,
        fields: Sequence[VectorField],
        like: str | None = None,
    ) -> None:
        """A new collection with these vector fields (copying ``like``'s payload schema)."""
        ...

    def add_outputs(
        self, collection: str, outputs: Sequence[Output], quantize: str | None = None
    ) -> None:
        """Create a field per compressor output in an existing collection (in place).

        Idempotent when the field exists with the same kind and size; raises
        :class:`~mrl_compress.errors.Conflict` when it exists with another, and
        :class:`~mrl_compress.errors.StoreError` when the engine cannot add fields in place.
        """
        ...

    def upsert(
        self,
        collection: str,
        ids: Sequence[PointId],
        vectors: Mapping[str, Vectors],
        payloads: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Write whole points (all named vectors and payloads)."""
        ...

    def write_outputs(
        self, collection: str, ids: Sequence[PointId], encoded: Mapping[str, Vectors]
    ) -> None:
        """Add/overwrite only the named compressed vectors of existing points."""
        ...

    def search(
        self,
        collection: str,
        vector: str,
        queries: Vectors,
        k: int,
        filter: Filter | None = None,
    ) -> list[list[Hit]]:
        """Single-stage search on one field (full or compressed) for a batch of queries."""
        ...

    def two_stage_search(
        self,
        collection: str,
        queries: np.ndarray,
        stage1: str,
        stage1_queries: Vectors,
        k: int,
        oversample: int = 10,
        full_vector: str | None = None,
        filter: Filter | None = None,
    ) -> list[list[Hit]]:
        """Shortlist ``k * oversample`` on ``stage1``, rerank exactly on the full vector."""
        ...

    def swap_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` atomically (creating the alias if needed)."""
        ...

    def drop_collection(self, collection: str) -> None: ...

    def close(self) -> None: ...


def connect(uri: str) -> VectorStore:
    """Open the store named by ``uri`` (see the module docstring for the schemes)."""
    scheme, _, rest = uri.partition(":")
    if scheme in ("qdrant", "qdrants", "qdrant-local", "http", "https"):
        from mrl_compress.adapters.qdrant import QdrantStore

        return QdrantStore(uri)
    if scheme == "edge":
        from mrl_compress.adapters.qdrant_edge import EdgeStore

        return EdgeStore(uri)
    if scheme == "milvus":
        from mrl_compress.adapters.milvus import MilvusStore

        return MilvusStore(uri)
    raise InvalidInput(
        f"unknown store URI '{uri}': expected qdrant://host:port, qdrants://host:port, "
        "qdrant-local:./dir (or qdrant-local::memory:), edge:./shard-dir, milvus:./file.db "
        "or milvus://host:port"
    )


def is_store_uri(source: str) -> bool:
    return source.partition(":")[0] in ("qdrant", "qdrants", "qdrant-local", "edge", "milvus")


def collection_not_found(collection: str, existing: Sequence[str]) -> NotFound:
    """The one-line :class:`NotFound` every backend raises for a missing collection."""
    names = ", ".join(repr(n) for n in sorted(existing)) or "none"
    return NotFound(f"collection '{collection}' does not exist; the store has {names}")


def vector_not_found(collection: str, vector: str, existing: Sequence[str]) -> NotFound:
    """The one-line :class:`NotFound` every backend raises for a missing vector field."""
    names = ", ".join(repr(n) for n in existing) or "none"
    return NotFound(f"collection '{collection}' has no vector '{vector}'; it has {names}")


def reservoir_sample(batches: Iterator[Batch], n: int, seed: int = 0) -> np.ndarray:
    """Algorithm R over streamed batches: a uniform sample of ``n`` rows, memory O(n·d).

    Deterministic for a given ``seed`` and batch order, so every backend that streams in a
    stable order returns the same sample on every run. Fewer rows than ``n``: all of them.
    """
    rng = np.random.default_rng(seed)
    reservoir: np.ndarray | None = None
    seen = 0
    for batch in batches:
        rows = np.asarray(batch.vectors, dtype=np.float32)
        if reservoir is None:
            reservoir = np.empty((n, rows.shape[1]), dtype=np.float32)
        fill = max(0, min(n - seen, len(rows)))
        reservoir[seen : seen + fill] = rows[:fill]
        rest = rows[fill:]
        if len(rest):
            # Row t (0-based, global) replaces slot j ~ U[0, t] when j < n.
            t = seen + fill + np.arange(len(rest))
            slots = rng.integers(0, t + 1)
            keep = slots < n
            slots, rest = slots[keep], rest[keep]
            # Later rows win a slot chosen twice, as in the sequential algorithm.
            _, last = np.unique(slots[::-1], return_index=True)
            pick = len(slots) - 1 - last
            reservoir[slots[pick]] = rest[pick]
        seen += len(rows)
    if reservoir is None:
        return np.empty((0, 0), dtype=np.float32)
    return reservoir[: min(n, seen)]
