"""The store protocol: what every vector store behind :func:`mrl_compress.adapters.connect`
can do, and the data that crosses it.

The core works over this protocol only (migration, sync, planning); each engine room in
``adapters/`` implements it and imports its client lazily. Nothing here imports a store client.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from mrl_compress import quantizers
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
    quantization: str | None = field(default=None, compare=False)
    """The engine's quantizer of the field, by the one naming scheme
    (:mod:`mrl_compress.quantizers`: ``quantizers.parse(x).name``, e.g. ``int8``,
    ``binary1-q8``, ``turbo2``, ``pq16``, ``int8@ivf``), as each adapter reads it from the
    engine's config; None for float32 (no quantization) and for sparse fields. A property
    of the index, not of the vectors, so fields compare equal without it."""


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
    """What every backend can do. Sync methods; async twins live beside them where offered.

    Optional facts a backend may tell as attributes (read them with the functions below this
    class, which give the default when a backend lacks one):

    - ``rows_need_every_field`` (:func:`rows_need_every_field`, default False): True when the
      engine refuses a point written without one of the collection's vector fields, so that
      once outputs are added, a writer that sends the full vector alone (langchain-milvus's
      ``add_texts``) fails. The Milvus adapter says so (its fields are required).
    """

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
        missing: Sequence[str] = (),
    ) -> Iterator[Batch]:
        """Stream points in a stable order; resumable from a batch's ``next_offset``.

        ``vectors`` names more dense fields to read in the same scan (into ``Batch.fields``,
        beside ``vector``); a point lacking any field read raises
        :class:`~mrl_compress.errors.StoreError`. ``missing`` keeps only the points that lack
        at least one of these fields (dense or sparse), found by the engine's own filter (no
        vector of a skipped point is read): what :mod:`mrl_compress.sync` writes.
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

    def delete(self, collection: str, ids: Sequence[PointId]) -> None:
        """Remove these points (ids that do not exist are ignored)."""
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
        ``quantize``: a name of :meth:`quantizers` for the new dense fields (None or
        ``float32``: none; ``binary`` is ``binary1``); a name the engine cannot run raises
        :func:`mrl_compress.quantizers.refuse` (:class:`InvalidInput`) before anything changes.
        """
        ...

    def quantizers(self) -> list[str]:
        """The quantizer names (:mod:`mrl_compress.quantizers`) this engine, at this version,
        really builds and searches with; always ``float32`` first."""
        ...

    def set_quantizer(self, collection: str, vector: str, quantize: str | None) -> None:
        """Set the quantizer of the existing dense field ``vector`` (None or ``float32``:
        remove it), keeping every vector and payload: the engine rebuilds the field's codes.

        The *native* plan (``mrl-compress migrate --mode native``): the engine's own
        quantizer on the full vector alone, no new field, nothing to sync. A name not in
        :meth:`quantizers` raises :func:`mrl_compress.quantizers.refuse` before anything
        changes; a sparse or missing field raises as :meth:`search` does.
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
        rescore: float | None = None,
    ) -> list[list[Hit]]:
        """Single-stage search on one field (full or compressed) for a batch of queries.

        ``rescore``, for a quantized field: None searches by the codes' own scores (no
        rescoring by the float vectors); a number ``x >= 1`` takes the ``k * x`` best by the
        codes and rescores them by the field's float vectors (Qdrant: ``rescore=True,
        oversampling=x``; Milvus: see its adapter). Unquantized fields ignore it.
        """
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
        unsynced: bool = True,
        rescore: float | None = None,
    ) -> list[list[Hit]]:
        """Shortlist ``k * oversample`` on ``stage1``, rerank exactly on the full vector.

        Points that lack ``stage1`` (written after a migration and not synced yet) are still
        candidates, scored on the full vector in the same query, so no write is ever missing
        from the results while it waits for :mod:`mrl_compress.sync`. ``unsynced=False``
        leaves them out (the shortlist alone), where finding them costs too much; a store
        whose rows always hold every field may leave the argument out. ``rescore``: how a
        quantized ``stage1`` scores the shortlist, as in :meth:`search` (None: by its codes).
        """
        ...

    def swap_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` atomically (creating the alias if needed)."""
        ...

    def drop_collection(self, collection: str) -> None: ...

    def close(self) -> None: ...


EMBEDDED_SCHEMES = ("qdrant-local", "edge", "milvus")
"""URI schemes that name a path on this machine (``milvus://host`` is a server)."""


def embedded_path(uri: str) -> Path | None:
    """The path an embedded store's URI names (as the stores open it), else None."""
    scheme, _, rest = uri.partition(":")
    if scheme not in EMBEDDED_SCHEMES or rest.startswith("//") or rest in ("", ":memory:"):
        return None
    return Path(rest)


def canonical_uri(uri: str) -> str:
    """``uri`` with an embedded store's path made absolute: one name for one store from any
    working directory (a plan file names the store it measured by it)."""
    path = embedded_path(uri)
    return uri if path is None else f"{uri.partition(':')[0]}:{path.resolve()}"


def rows_need_every_field(store: VectorStore) -> bool:
    """Whether ``store``'s engine refuses a point that lacks one of the collection's vector
    fields (the optional attribute of that name; False when a backend does not say)."""
    return bool(getattr(store, "rows_need_every_field", False))


def check_quantizer(name: str | None, engine: str,
                    offered: Sequence[str]) -> quantizers.Quantizer:
    """The quantizer called ``name`` if ``engine`` offers it (None: float32): an unknown name
    and one the engine cannot run are refused with one line listing the choices."""
    found = quantizers.parse_offered(name, engine, offered)
    if found.name not in offered:
        raise quantizers.refuse(str(name), engine, list(offered))
    return found


def check_rescore(rescore: float | None) -> float | None:
    """``rescore`` of :meth:`VectorStore.search`: None, or an oversampling factor >= 1."""
    if rescore is None:
        return None
    if isinstance(rescore, bool) or not isinstance(rescore, int | float) or not rescore >= 1:
        raise InvalidInput(f"rescore must be None or a number >= 1 (candidates per hit "
                           f"rescored by the float vectors), not {rescore!r}")
    return float(rescore)


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
