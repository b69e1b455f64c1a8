"""Milvus behind the :class:`~mrl_compress.adapters.VectorStore` protocol.

``milvus:./file.db`` opens Milvus Lite (an in-process gRPC server per file, started by
pymilvus); ``milvus://host:19530`` a Milvus server, with the token from ``MILVUS_TOKEN``.

What Milvus cannot do, and what this adapter does instead:

- No vector field can be added to an existing collection (Lite does not implement
  ``add_collection_field``), so :meth:`MilvusStore.add_outputs` refuses and migration copies
  into a new collection (``create_collection(like=...)``) that an alias swap makes live.
- No in-engine rescore of one field's candidates by another (hybrid search only fuses lists),
  and an id-filtered search on an HNSW index missed rows in Lite: the rerank stage fetches
  the shortlist's full vectors and scores them with numpy, as Milvus's own Matryoshka funnel
  tutorial does (https://milvus.io/docs/funnel_search_with_matryoshka.md).
- pymilvus refuses an upsert row that lacks a field unless ``partial_update=True`` (a Milvus
  2.6 feature), so :meth:`MilvusStore.write_outputs` reads the whole rows and writes them back
  with the new fields; float32 values survive the round trip through Python floats exactly.
- No row without one of its vector fields (Lite 3.2.2 refuses a write in which no row has a
  nullable vector and cannot filter on a null one: docs/migrate.md), so every field this
  adapter creates is required and :attr:`MilvusStore.rows_need_every_field` says so; an
  application writing after a copy must send every output.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from mrl_compress import quantizers, store
from mrl_compress.errors import Conflict, InvalidInput, NotFound, StoreError, require
from mrl_compress.outputs import Output, SparseBatch
from mrl_compress.quantizers import Quantizer
from mrl_compress.store import Batch, CollectionInfo, Filter, Hit, PointId, VectorField, Vectors

T = TypeVar("T")

# Milvus metric names <-> the protocol's distance names.
_METRIC_TO_DISTANCE = {"COSINE": "cosine", "IP": "dot", "L2": "euclid"}
_DISTANCE_TO_METRIC = {v: k for k, v in _METRIC_TO_DISTANCE.items()}
_DENSE_TYPES = ("FLOAT_VECTOR", "FLOAT16_VECTOR", "BFLOAT16_VECTOR", "INT8_VECTOR")
_SPARSE_TYPE = "SPARSE_FLOAT_VECTOR"
# Keys of describe_index() that describe the index rather than parametrise it.
_INDEX_INFO_KEYS = {
    "index_type", "metric_type", "field_name", "index_name", "total_rows", "indexed_rows",
    "pending_index_rows", "state", "index_state_fail_reason",
}  # fmt: skip
_RETRIES = 3
_KEY_WINDOW = 16383  # keys per key-range query (see _scan); Milvus caps a query at 16,384
_LIST_ALL_MAX = 500_000  # up to this many rows a scan lists every key in one query (see _scan)
_MIN_KEY = {True: "-9223372036854775808", False: '""'}  # the least INT64 and VARCHAR keys
_WRITE_CHUNK = 1000  # rows per upsert request: far below gRPC's 64 MB message limit at 4k dims
_AUTO_ID_HORIZON = 1_000_000  # see MilvusStore._advance_auto_ids
# Lite runs everything in one Python process; its AUTOINDEX is HNSW when faiss is installed,
# and an id-filtered HNSW search missed rows there: FLAT keeps Lite exact (it is for
# correctness, not speed). A server picks its own index for new fields.
_LITE_INDEX, _SERVER_INDEX = "FLAT", "AUTOINDEX"
# The quantizers of the scheme (mrl_compress.quantizers) as Milvus indexes (see _quantizer_index):
# float32 -> the adapter's default index above; int8 -> HNSW_SQ (sq_type SQ8); float32@ivf ->
# IVF_FLAT; int8@ivf -> IVF_SQ8; pqN -> HNSW_PQ, pqN@ivf -> IVF_PQ (m = 4 * dim / N sub-vectors
# of 8 bits); binary1@ivf -> IVF_RABITQ.
#
# Milvus Lite 3.2.2 (probed here, 3,000 MiniLM rows, 100 queries): HNSW_SQ, IVF_FLAT and
# IVF_SQ8 build and search with their codes (recall@10 0.94-0.98, 0.60-0.74 at nprobe 4-10);
# IVF_PQ ("reserved for a future phase"), HNSW_PQ and IVF_RABITQ ("unknown index_type") fail
# to build, yet the index stays recorded, describe_index still says state "Finished" with
# every row indexed, and search answers by brute force (recall 1.0). Its HNSW_SQ is always
# 8-bit (sq_type is ignored) and has no refine (the same recall with refine=True). So on Lite
# only the four below are offered; the failure is also caught where it shows: Lite builds an
# index only over flushed rows (its memtable, up to 128 MB, is searched by brute force
# whatever the index), so set_quantizer flushes first and Lite's create_index then raises
# for a type it cannot build; the old index is put back (see set_quantizer). A server offers
# every mapping (untested here: no server).
_LITE_QUANTIZERS = ("float32", "int8", "float32@ivf", "int8@ivf")
_SERVER_QUANTIZERS = (
    "float32", "int8", "float32@ivf", "int8@ivf",
    *(f"pq{r}" for r in quantizers.PQ_RATIOS), *(f"pq{r}@ivf" for r in quantizers.PQ_RATIOS),
    "binary1@ivf",
)  # fmt: skip
_HNSW_BUILD = {"M": 16, "efConstruction": 200}
_NLIST = 128


@dataclass
class _Schema:
    """What this adapter needs to know of a collection, read once from ``describe_collection``."""

    name: str
    raw: dict[str, Any]
    pk: str
    pk_is_int: bool
    dynamic: bool
    scalars: list[str]
    vectors: dict[str, VectorField]
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)
    auto_id: bool = False
    """The engine generates the primary key of a row written without one."""
    nullable: set[str] = field(default_factory=set)
    """Vector fields that may be null (collections made elsewhere: this adapter makes none)."""

    @property
    def payload_fields(self) -> list[str]:
        """Output fields that bring back every payload key (``$meta`` holds dynamic ones)."""
        return self.scalars + (["$meta"] if self.dynamic else [])

    def metric(self, name: str) -> str:
        return str(self.indexes.get(name, {}).get("metric_type") or "IP")


class MilvusStore:
    """A Milvus Lite file or a Milvus server, picked by URI (see the module docstring)."""

    rows_need_every_field = True
    """Every vector field is required (:func:`mrl_compress.store.rows_need_every_field`): a
    row written without one is refused, by pymilvus before it is sent. A nullable vector field
    does not help on Milvus Lite 3.2.2 (measured): it accepts the schema, but refuses a write
    in which no row has the field and any null sparse row, and stores a null dense vector as
    zeros that search then returns. Milvus servers from 3.0 document nullable vector fields
    (NULLs skipped by search, no ``IS NULL`` filter on them); this adapter does not use them
    yet, for want of a server to test on."""

    def __init__(self, uri: str, *, connect_timeout: float = 10.0) -> None:
        require("pymilvus", "milvus")
        self.uri = uri
        self._lite, address = _address(uri)
        self._client = _open_client(address, self._lite, connect_timeout)
        self._schemas: dict[str, _Schema] = {}

    # ── reading ──────────────────────────────────────────────────────────────────────────

    def describe(self, collection: str) -> CollectionInfo:
        """Counts, vector fields and aliases, read afresh (this also refreshes the cache)."""
        schema = self._schema(collection, fresh=True)
        count = self._count(collection)
        aliases = self._call(
            "list aliases", self._client.list_aliases, collection_name=schema.raw["collection_name"]
        )
        info = CollectionInfo(
            name=collection,
            count=count,
            fields=dict(schema.vectors),
            aliases=sorted(aliases.get("aliases", [])),
        )
        _detect_langchain(schema, info)
        return info

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
        """Points in primary-key order; ``next_offset`` is the last primary key of a batch.

        ``iterator="True"`` asks for the primary-key order that pymilvus's own query iterator
        relies on: without it Milvus Lite answers ``pk > x`` in insertion order. Keys are
        listed in large windows and rows fetched by key (see ``_scan``: Lite's range queries
        cost the whole collection each); every batch's ``next_offset`` is still its own last
        key, so a resume starts right after any yielded batch.
        """
        schema = self._schema(collection)
        names = self._names(schema, vector, vectors)
        self._required(schema, missing)
        if missing:  # every row holds every required field: none lacks one
            return
        outputs = names + (schema.payload_fields if with_payload else [])
        for chunk, next_offset in self._scan(schema, outputs, batch_size, offset):
            yield self._batch(schema, chunk, names, with_payload, next_offset)

    def point_ids(self, collection: str, batch_size: int = 2048) -> Iterator[list[PointId]]:
        schema = self._schema(collection)
        for chunk, _ in self._scan(schema, [schema.pk], batch_size, None):
            yield [row[schema.pk] for row in chunk]

    def count_having(self, collection: str, names: Sequence[str]) -> int:
        """Every row: the fields are required (``rows_need_every_field``)."""
        self._required(self._schema(collection), names)
        return self.describe(collection).count

    def _required(self, schema: _Schema, names: Sequence[str]) -> None:
        """NotFound for a missing field; StoreError for a nullable one (made elsewhere: this
        adapter makes none), whose null rows no Milvus filter finds (``is null`` is refused on
        vector fields, by Lite and, as documented, by servers)."""
        for name in names:
            self._field(schema, name)
            if name in schema.nullable:
                raise StoreError(
                    f"vector '{name}' of '{schema.name}' is nullable: Milvus has no filter for "
                    "a null vector, so this adapter cannot tell which points lack it"
                )

    def _scan(self, schema: _Schema, outputs: list[str], batch_size: int,
              offset: Any | None) -> Iterator[tuple[list[dict[str, Any]], Any]]:
        """Rows in primary-key order, ``batch_size`` at a time, each with its resume offset
        (None after the last).

        Milvus Lite answers a key query (``pk > x``) in time proportional to the whole
        collection whatever its limit, but a key-list query (``pk in [...]``) in time
        proportional to the keys asked (20,000 rows: ~1 s for either 2,048 or 16,384 keys by
        range, 0.06 s for 1,000 rows by key). So the keys are listed first (key only, no
        vectors) and the rows fetched by key, a batch at a time. Up to ``_LIST_ALL_MAX`` rows
        (counted first) every key after ``offset`` is listed in one query (100,000 rows:
        count 0.6-0.8 s + 3.8-4.1 s, against 1.3-1.7 s for each of seven windows); above it,
        in windows of ``_KEY_WINDOW`` keys (Milvus's cap on a query's limit), which bounds the
        memory of the listing (pymilvus holds ~400 bytes per listed key); also when the one
        query is refused (a server caps a query's output size, so long string keys may not
        fit).
        """
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
        pk, cursor = schema.pk, offset
        window = None if self._count(schema.name) <= _LIST_ALL_MAX else _KEY_WINDOW
        while True:
            after = (f"{pk} >= {_MIN_KEY[schema.pk_is_int]}" if cursor is None
                     else f"{pk} > {_literal(cursor)}")  # fmt: skip
            # ``iterator`` asks for the primary-key order that pymilvus's own query iterator
            # relies on (else Lite answers a limited ``pk > x`` in insertion order)
            limited = {} if window is None else {"limit": window + 1, "iterator": "True",
                                                 "reduce_stop_for_best": "True"}  # fmt: skip
            try:
                listed = self._call(f"read '{schema.name}'", self._client.query, schema.name,
                                    filter=after, output_fields=[pk], **limited)  # fmt: skip
            except StoreError:
                if window is not None:
                    raise
                window = _KEY_WINDOW  # a server may refuse an answer this large: use windows
                continue
            if not listed:
                return
            keys = sorted(row[pk] for row in listed)
            more = window is not None and len(keys) > window  # one more key than the window
            keys = keys[:window]
            for start in range(0, len(keys), batch_size):
                chunk = keys[start : start + batch_size]
                cursor = chunk[-1]
                last = not more and start + batch_size >= len(keys)
                yield self._rows_by_key(schema, chunk, outputs), None if last else cursor
            if not more:
                return

    def _rows_by_key(self, schema: _Schema, keys: list[Any],
                     outputs: list[str]) -> list[dict[str, Any]]:
        """The rows of ``keys`` in that order, read 1,000 keys per query; a key without a
        row (never written, or deleted since it was listed) is skipped."""
        if outputs == [schema.pk]:
            return [{schema.pk: key} for key in keys]
        found: dict[Any, dict[str, Any]] = {}
        for start in range(0, len(keys), _WRITE_CHUNK):
            for row in self._fetch(schema, keys[start : start + _WRITE_CHUNK], outputs):
                found[row[schema.pk]] = row
        return [found[key] for key in keys if key in found]

    def retrieve(
        self,
        collection: str,
        ids: Sequence[PointId],
        vectors: Sequence[str],
        with_payload: bool = True,
    ) -> Batch:
        """``pk in [...]`` queries of at most 1000 ids (one cheap lookup each, also on Lite)."""
        schema = self._schema(collection)
        names = self._names(schema, vectors[0] if vectors else None, vectors[1:])
        outputs = names + (schema.payload_fields if with_payload else [])
        rows = self._rows_by_key(schema, [_check_id(i, schema) for i in ids], outputs)
        return self._batch(schema, rows, names, with_payload, None)

    def sample(self, collection: str, vector: str | None, n: int, seed: int = 0) -> np.ndarray:
        if n < 1:
            raise InvalidInput(f"sample size must be at least 1, got {n}")
        batches = self.iter_batches(collection, vector, batch_size=2048, with_payload=False)
        return store.reservoir_sample(batches, n, seed)

    # ── schema changes ───────────────────────────────────────────────────────────────────

    def create_collection(
        self,
        collection: str,
        fields: Sequence[VectorField],
        like: str | None = None,
    ) -> None:
        """A new collection with ``fields``; with ``like``, also every field of ``like``.

        The copy keeps ``like``'s fields with their settings (``_copyable_schema``: the
        primary key's type, ``max_length`` and ``auto_id``; scalar and dynamic fields), its
        collection properties, vector fields and their indexes: a copy migration writes whole
        points into it. Creating it again with the same fields is a no-op (resume).

        An ``auto_id`` copy still receives the original keys: it gets the property
        ``allow_insert_auto_id`` (a server then takes explicit keys in an insert; Lite takes
        them anyway), and this adapter writes its rows with explicit keys as ``_write``
        says; :meth:`swap_alias` moves Lite's id generator past the copied keys.
        """
        from pymilvus import CollectionSchema

        if self._exists(collection):
            self._check_existing(collection, fields)
            return
        source = self._schema(like) if like is not None else None
        properties: dict[str, Any] = {}
        if source is not None:
            raw = _copyable_schema(source.raw)
            schema = CollectionSchema.construct_from_dict(raw)
            properties = dict(source.raw.get("properties") or {})
            if source.auto_id:
                properties["allow_insert_auto_id"] = "true"
        else:
            schema = self._client.create_schema(auto_id=False, enable_dynamic_field=True)
            schema.add_field("id", _dtype("INT64"), is_primary=True)
        index = self._client.prepare_index_params()
        existing = source.vectors if source is not None else {}
        copied_indexes = source.indexes if source is not None else {}
        for name, copied in existing.items():
            index.add_index(name, **_index_args(copied_indexes.get(name, {}), copied))
        for vf in fields:
            if vf.name in existing:
                _same_field(existing[vf.name], vf, like or collection)
                continue
            _add_vector_field(schema, vf)
            index.add_index(vf.name, **self._new_index(vf))
        what = f"create collection '{collection}'"
        extra = {"properties": properties} if properties else {}
        # Strong consistency: a migration verifies what it has just written.
        if not self._lite:
            self._call(what, self._client.create_collection, collection, schema=schema,
                       index_params=index, consistency_level="Strong", **extra)  # fmt: skip
        else:
            # Lite builds an index inside the CreateIndex call; pymilvus's wait for it asks
            # for AllocTimestamp, which Lite lacks (a logged error and 0.5 s per index).
            self._call(what, self._client.create_collection, collection, schema=schema,
                       consistency_level="Strong", **extra)  # fmt: skip
            self._call(what, self._client.create_index, collection, index, sync=False)
            self._call(what, self._client.load_collection, collection)
        self._schemas.pop(collection, None)

    def add_outputs(
        self, collection: str, outputs: Sequence[Output], quantize: str | None = None
    ) -> None:
        """Milvus adds no field in place: StoreError (migration copies instead), after
        ``quantize`` was checked against :meth:`quantizers`; fields that exist already pass
        (their index is left as it is: :meth:`set_quantizer` changes it)."""
        self._quantizer(quantize)
        schema = self._schema(collection)
        missing = []
        for out in outputs:
            if out.name not in schema.vectors:
                missing.append(out.name)
                continue
            wanted = VectorField(
                out.name, out.kind, out.size if out.kind == "dense" else None, out.distance
            )
            _same_field(schema.vectors[out.name], wanted, collection)
        if missing:
            raise StoreError(
                f"Milvus cannot add a vector field in place (wanted {', '.join(missing)} in "
                f"'{collection}'): migration copies the points into a new collection with the "
                "new fields and swaps an alias to it"
            )

    # ── quantizers ───────────────────────────────────────────────────────────────────────

    def quantizers(self) -> list[str]:
        """Milvus Lite: float32, int8 (HNSW_SQ), float32@ivf (IVF_FLAT), int8@ivf (IVF_SQ8),
        what Lite 3.2.2 really builds and searches with (see ``_LITE_QUANTIZERS``; float32
        alone without faiss-cpu, which its indexes need). A server: every mapping, also
        pqN (HNSW_PQ), pqN@ivf (IVF_PQ) and binary1@ivf (IVF_RABITQ), untested here."""
        if not self._lite:
            return list(_SERVER_QUANTIZERS)
        if importlib.util.find_spec("faiss") is None:
            return ["float32"]
        return list(_LITE_QUANTIZERS)

    def _quantizer(self, name: str | None) -> Quantizer:
        engine = "Milvus Lite" if self._lite else "Milvus"
        return store.check_quantizer(name, engine, self.quantizers())

    def set_quantizer(self, collection: str, vector: str, quantize: str | None) -> None:
        """Replace the index of the dense field ``vector`` by the quantizer's index (None or
        float32: the adapter's default, FLAT on Lite, AUTOINDEX on a server); rows and their
        float vectors stay (Milvus keeps them beside any index).

        Flush (Lite indexes only flushed rows), release, drop the field's index, create the
        new one, load. A build that fails (on Lite ``create_index`` raises for a type it
        cannot build; a server reports state ``Failed``) puts the old index back and raises
        StoreError: a failed build would otherwise leave the new type recorded and searched
        by brute force.
        """
        wanted = self._quantizer(quantize)
        schema = self._schema(collection, fresh=True)
        vf = self._field(schema, vector)
        if vf.kind != "dense":
            raise InvalidInput(f"vector '{vector}' of '{collection}' is sparse: only dense "
                               "vectors have a quantizer")
        index = (self._new_index(vf) if wanted.name == "float32"
                 else _quantizer_index(wanted, vf, schema.metric(vector)))  # fmt: skip
        if (vf.quantization or "float32") == wanted.name:
            return
        real = str(schema.raw["collection_name"])
        old = schema.indexes.get(vector)
        self._call(f"flush '{collection}'", self._client.flush, real)
        try:
            self._rebuild(real, vector, old, index)
        except StoreError as failed:
            if old is not None:
                self._rebuild(real, vector, None, _index_args(old, vf), name=old["index_name"])
            raise StoreError(
                f"Milvus could not build {index['index_type']} for '{vector}' of "
                f"'{collection}' ({failed}); its index is "
                f"{(old or {}).get('index_type', 'none')} again"
            ) from None
        finally:
            self._schemas.pop(collection, None)
            self._schemas.pop(real, None)

    def _rebuild(self, collection: str, vector: str, old: Mapping[str, Any] | None,
                 index: Mapping[str, Any], name: str | None = None) -> None:
        """Release, drop ``vector``'s index (``old``), create ``index``, load; StoreError if
        the build failed."""
        what = f"index '{vector}' of '{collection}'"
        self._call(what, self._client.release_collection, collection)
        name = name or (str(old["index_name"]) if old else vector)
        if vector in {str(i.get("field_name")) for i in self._indexes(collection)}:
            found = next(i for i in self._indexes(collection)
                         if str(i.get("field_name")) == vector)  # fmt: skip
            self._call(what, self._client.drop_index, collection, str(found["index_name"]))
        params = self._client.prepare_index_params()
        params.add_index(vector, index_name=name, **index)
        # Lite: pymilvus's wait for the build asks for AllocTimestamp, which Lite lacks
        self._call(what, self._client.create_index, collection, params, sync=not self._lite)
        self._call(what, self._client.load_collection, collection)
        built = self._call(what, self._client.describe_index, collection, name)
        reason = built.get("index_state_fail_reason")
        if str(built.get("state", "")).lower().endswith("failed") or reason:
            raise StoreError(f"the build failed: {reason or built.get('state')}")

    def _indexes(self, collection: str) -> list[dict[str, Any]]:
        return [self._call("describe an index", self._client.describe_index, collection, n)
                for n in self._call("list indexes", self._client.list_indexes, collection)]

    # ── writing ──────────────────────────────────────────────────────────────────────────

    def upsert(
        self,
        collection: str,
        ids: Sequence[PointId],
        vectors: Mapping[str, Vectors],
        payloads: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        schema = self._schema(collection)
        if payloads is not None and len(payloads) != len(ids):
            raise InvalidInput(f"got {len(ids)} ids but {len(payloads)} payloads")
        columns = {name: self._column(schema, name, v, len(ids)) for name, v in vectors.items()}
        rows = []
        for i, point_id in enumerate(ids):
            row: dict[str, Any] = dict(payloads[i]) if payloads is not None else {}
            row[schema.pk] = _check_id(point_id, schema)
            for name, column in columns.items():
                row[name] = column[i]
            rows.append(row)
        self._write(collection, rows)

    def write_outputs(
        self, collection: str, ids: Sequence[PointId], encoded: Mapping[str, Vectors]
    ) -> None:
        """Read the whole rows, set the new fields, write them back (see the module docstring)."""
        schema = self._schema(collection)
        columns = {name: self._column(schema, name, v, len(ids)) for name, v in encoded.items()}
        rows = {row[schema.pk]: row for row in self._fetch(schema, ids, ["*"])}
        absent = [i for i in ids if i not in rows]
        if absent:
            raise NotFound(
                f"{len(absent)} of {len(ids)} points do not exist in '{collection}' "
                f"(first: {absent[0]!r}): upsert whole points instead"
            )
        out = []
        for i, point_id in enumerate(ids):
            row = rows[point_id]
            for name, column in columns.items():
                row[name] = column[i]
            out.append(row)
        self._write(collection, out)

    # ── searching ────────────────────────────────────────────────────────────────────────

    def search(
        self,
        collection: str,
        vector: str,
        queries: Vectors,
        k: int,
        filter: Filter | None = None,
        rescore: float | None = None,
    ) -> list[list[Hit]]:
        """``rescore`` on a quantized field: Milvus Lite has no rescoring by the float
        vectors (its HNSW_SQ ignores ``refine``), and a server's ``refine`` keeps a second
        copy of the vectors in the index, which this adapter does not build; so the
        ``k * rescore`` best by the codes come back with their stored float vectors and are
        rescored here exactly (COSINE and IP fields), as :meth:`two_stage_search` reranks."""
        schema = self._schema(collection)
        x = store.check_rescore(rescore)
        vf = self._field(schema, vector)
        if x is not None and vf.kind == "dense" and vf.quantization is not None:
            matrix = _as_matrix(queries)  # type: ignore[arg-type]
            fetched = self._ann(schema, vector, matrix, math.ceil(k * x), filter,
                                schema.payload_fields + [vector])  # fmt: skip
            results = [_rescored(q, hits, vf, schema.metric(vector), k)
                       for q, hits in zip(matrix, fetched, strict=True)]  # fmt: skip
        else:
            results = self._ann(schema, vector, queries, k, filter, schema.payload_fields)
        return [
            [Hit(r[schema.pk], float(r["distance"]), _payload(r["entity"], schema)) for r in hits]
            for hits in results
        ]

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
        """Shortlist on ``stage1`` in Milvus, rerank by cosine on the full vectors with numpy.

        Every row holds ``stage1`` (the fields are required: ``rows_need_every_field``), so
        no point waits for a sync and ``unsynced`` changes nothing. ``rescore`` on a
        quantized ``stage1``: the ``k * oversample * rescore`` best by its codes, the
        shortlist the best of those by its float vectors (on the client, see :meth:`search`).

        The shortlist brings its full vectors back as output fields of the stage-1 search.
        Measured on Milvus Lite 3.2.2 here (2,000 × 384 MiniLM rows, 64-d stage 1, k=10,
        oversample=10, one query per call): 23–27 ms per query, against 34–45 ms for a
        stage-1 search followed by ``query(pk in [...])`` for the full vectors — one round
        trip instead of two, and the payloads come with the same answer.
        """
        schema = self._schema(collection)
        queries = _as_matrix(queries)
        full = self._full_field(schema, stage1, queries.shape[1], full_vector)
        limit = max(k, k * oversample)
        x = store.check_rescore(rescore)
        small = self._field(schema, stage1)
        refine = x is not None and small.kind == "dense" and small.quantization is not None
        outputs = schema.payload_fields + [full.name]
        if refine and stage1 != full.name:
            outputs.append(stage1)
        shortlists = self._ann(
            schema, stage1, stage1_queries, math.ceil(limit * x) if refine and x else limit,
            filter, outputs,
        )  # fmt: skip
        if len(shortlists) != len(queries):
            raise InvalidInput(
                f"got {len(queries)} full queries but {len(shortlists)} stage-1 queries"
            )
        if refine:
            rows = _as_matrix(stage1_queries)  # type: ignore[arg-type]
            shortlists = [_rescored(q, hits, small, schema.metric(stage1), limit)
                          for q, hits in zip(rows, shortlists, strict=True)]  # fmt: skip
        return [
            _rerank(query, hits, full, schema, k)
            for query, hits in zip(_normalise(queries), shortlists, strict=True)
        ]

    # ── aliases and lifecycle ────────────────────────────────────────────────────────────

    def swap_alias(self, alias: str, collection: str) -> None:
        self._schema(collection)  # NotFound naming what exists
        if alias in self._call("list collections", self._client.list_collections):
            raise Conflict(
                f"'{alias}' is a collection, not an alias: Milvus cannot alias a name a "
                "collection holds; drop or rename that collection first"
            )
        target = self._alias_target(alias)
        if target == collection:
            return
        self._advance_auto_ids(self._schema(collection))
        action = self._client.create_alias if target is None else self._client.alter_alias
        self._call(f"point alias '{alias}' at '{collection}'", action, collection, alias)
        self._schemas.pop(alias, None)

    def _advance_auto_ids(self, schema: _Schema) -> None:
        """Lite only: move an ``auto_id`` collection's id generator past its largest key.

        Milvus Lite 3.2.2 hands out ``auto_id`` keys from a counter that every row written
        advances by one, whatever its key (and that restarts at the collection's write
        sequence, which counts every write, when the file is opened again), so a copy that
        received its source's keys may give a new row the key of a copied point, and Lite's
        insert then replaces that point (measured: keys 3-6 copied, the next two inserts got
        keys 5 and 6 and replaced those points). The counter is at least the number of rows
        present (each was written once), so before an alias makes such a copy live, partial
        upserts of one stored row's key (each advances the counter by one and rewrites that
        row unchanged) move it past the largest key: ``max key + 1 - rows`` of them, one for
        a source keyed 1..n. Keys more than ``_AUTO_ID_HORIZON`` above the row count (random
        63-bit keys, say) are left to chance: the counter would need that many inserts to
        reach them. A server's keys come from its timestamp oracle.
        """
        if not self._lite or not schema.auto_id:
            return
        keys = [int(key) for chunk in self.point_ids(schema.name, batch_size=_KEY_WINDOW)
                for key in chunk]  # fmt: skip  (auto_id keys are INT64)
        reach = len(keys) + _AUTO_ID_HORIZON
        burn = max((k for k in keys if k < reach), default=0) + 1 - len(keys)
        what = f"advance the key generator of '{schema.name}'"
        for start in range(0, burn if keys else 0, _WRITE_CHUNK):
            rows = [{schema.pk: keys[0]}] * min(_WRITE_CHUNK, burn - start)
            self._call(what, self._client.upsert, schema.name, rows, partial_update=True)

    def delete(self, collection: str, ids: Sequence[PointId]) -> None:
        schema = self._schema(collection)
        if ids:
            self._call(f"delete from '{collection}'", self._client.delete, schema.name,
                       ids=list(ids))  # fmt: skip

    def drop_collection(self, collection: str) -> None:
        self._schemas.pop(collection, None)
        if not self._exists(collection):
            raise store.collection_not_found(
                collection, self._call("list collections", self._client.list_collections)
            )
        self._call(f"drop collection '{collection}'", self._client.drop_collection, collection)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ── internals ────────────────────────────────────────────────────────────────────────

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one pymilvus call; connection blips are retried, refusals become StoreError."""
        from pymilvus.exceptions import MilvusException

        for attempt in range(_RETRIES):
            try:
                return fn(*args, **kwargs)
            except MilvusException as e:
                if not _transient(e) or attempt == _RETRIES - 1:
                    raise StoreError(f"Milvus could not {what}: {_reason(e)}") from None
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def _count(self, collection: str) -> int:
        rows = self._call(f"count the rows of '{collection}'", self._client.query, collection,
                          filter="", output_fields=["count(*)"])  # fmt: skip
        return int(rows[0]["count(*)"])

    def _exists(self, collection: str) -> bool:
        return bool(self._call("list collections", self._client.has_collection, collection))

    def _schema(self, collection: str, fresh: bool = False) -> _Schema:
        """The collection's schema and indexes, cached until this store changes them.

        Another client changing a schema under the same name is not seen until
        :meth:`describe` re-reads it (``fresh``). The indexes (for each field's metric) are
        re-read only when the fields changed: Milvus Lite takes ~0.7 s per index call at
        20,000 rows, while describing the collection is instant.
        """
        cached = self._schemas.get(collection)
        if cached is not None and not fresh:
            return cached
        if not self._exists(collection):
            names = self._call("list collections", self._client.list_collections)
            raise store.collection_not_found(collection, names)
        raw = self._call(f"describe '{collection}'", self._client.describe_collection, collection)
        if cached is not None and _identity(raw) == _identity(cached.raw):
            indexes = cached.indexes
        else:
            indexes = {}
            for index_name in self._call("list indexes", self._client.list_indexes, collection):
                info = self._call(
                    "describe an index", self._client.describe_index, collection, index_name
                )
                indexes[info["field_name"]] = info
        schema = _parse_schema(collection, raw, indexes)
        if cached is None:
            self._ensure_loaded(collection)
        self._schemas[collection] = schema
        return schema

    def _ensure_loaded(self, collection: str) -> None:
        """Load a released collection: Milvus answers no query on it otherwise, and a Lite
        file opened by another process has every collection released."""
        state = self._call(f"read the load state of '{collection}'",
                           self._client.get_load_state, collection)  # fmt: skip
        if getattr(state.get("state"), "name", "") != "Loaded":
            self._call(f"load '{collection}'", self._client.load_collection, collection)

    def _dense(self, schema: _Schema, name: str | None) -> VectorField:
        """The dense field ``name``, or the only one when ``name`` is None."""
        if name is not None:
            vf = self._field(schema, name)
            if vf.kind != "dense":
                raise InvalidInput(f"vector '{name}' of '{schema.name}' is sparse, not dense")
            return vf
        return CollectionInfo(name=schema.name, count=0, fields=schema.vectors).dense(None)

    def _names(self, schema: _Schema, vector: str | None, more: Sequence[str]) -> list[str]:
        """The dense fields one read asks for: ``vector`` (or the only dense one), ``more``."""
        names = [self._dense(schema, vector).name]
        names += [n for n in dict.fromkeys(more) if self._dense(schema, n).name not in names]
        return names

    def _batch(self, schema: _Schema, rows: list[dict[str, Any]], names: list[str],
               with_payload: bool, next_offset: Any) -> Batch:
        fields = {n: _dense_matrix([row[n] for row in rows], schema.vectors[n]) for n in names}
        return Batch(
            ids=[row[schema.pk] for row in rows],
            vectors=fields[names[0]],
            payloads=[_payload(row, schema) for row in rows] if with_payload else [],
            next_offset=next_offset,
            fields=fields,
        )

    def _field(self, schema: _Schema, name: str) -> VectorField:
        if name not in schema.vectors:
            raise store.vector_not_found(schema.name, name, list(schema.vectors))
        return schema.vectors[name]

    def _full_field(self, schema: _Schema, stage1: str, dim: int, name: str | None) -> VectorField:
        """The rerank field: named, or the one dense field (besides stage 1) of the query's size."""
        if name is not None:
            return _check_dense(self._field(schema, name), dim)
        same = [
            f for f in schema.vectors.values()
            if f.kind == "dense" and f.size == dim and f.name != stage1
        ]  # fmt: skip
        if len(same) == 1:
            return same[0]
        sizes = ", ".join(f"'{f.name}' ({f.size or 'sparse'})" for f in schema.vectors.values())
        raise InvalidInput(
            f"cannot tell which vector of '{schema.name}' is the full one for {dim}-d queries "
            f"(fields: {sizes}): pass full_vector"
        )

    def _column(self, schema: _Schema, name: str, values: Vectors, n: int) -> list[Any]:
        """Rows of one vector field as pymilvus takes them: float32 arrays or sparse dicts."""
        rows = _vector_rows(self._field(schema, name), values)
        if len(rows) != n:
            raise InvalidInput(f"got {n} ids but {len(rows)} rows for vector '{name}'")
        return rows

    def _write(self, collection: str, rows: list[dict[str, Any]]) -> None:
        """Write whole rows with their keys, ``_WRITE_CHUNK`` per request, by upsert.

        In an ``auto_id`` collection a Milvus server's upsert gives the new row a new key
        whatever ``allow_insert_auto_id`` says (milvus-io/milvus#46891) while its insert keeps
        an explicit key when that property is set: there each chunk's keys are deleted and the
        rows inserted (a reader may miss them in between). Not run here: no server in the
        tests. Milvus Lite's upsert keeps explicit keys in an ``auto_id`` collection.
        """
        schema = self._schema(collection)
        rekeyed = schema.auto_id and not self._lite
        what = f"write to '{collection}'"
        for start in range(0, len(rows), _WRITE_CHUNK):
            chunk = rows[start : start + _WRITE_CHUNK]
            if rekeyed:
                self._call(what, self._client.delete, collection,
                           ids=[row[schema.pk] for row in chunk])  # fmt: skip
                self._call(what, self._client.insert, collection, chunk)
            else:
                self._call(what, self._client.upsert, collection, chunk)

    def _fetch(
        self, schema: _Schema, ids: Sequence[PointId], outputs: list[str]
    ) -> list[dict[str, Any]]:
        if not ids:
            return []
        checked = [_check_id(i, schema) for i in ids]
        return self._call(
            f"read points of '{schema.name}'",
            self._client.query,
            schema.name,
            filter=f"{schema.pk} in {json.dumps(checked, ensure_ascii=False)}",
            output_fields=outputs,
        )

    def _ann(
        self,
        schema: _Schema,
        vector: str,
        queries: Vectors,
        k: int,
        filter: Filter | None,
        outputs: list[str],
    ) -> list[list[dict[str, Any]]]:
        if k < 1:
            raise InvalidInput(f"k must be at least 1, got {k}")
        data = _vector_rows(self._field(schema, vector), queries)
        if not data:
            return []
        results = self._call(
            f"search '{schema.name}' on '{vector}'",
            self._client.search,
            schema.name,
            data=data,
            anns_field=vector,
            limit=k,
            filter=_filter_expr(filter, schema),
            output_fields=outputs,
            search_params={"metric_type": schema.metric(vector)},
        )
        return [list(hits) for hits in results]

    def _new_index(self, vf: VectorField) -> dict[str, Any]:
        if vf.kind == "sparse":
            return {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "IP"}
        metric = _DISTANCE_TO_METRIC.get(vf.distance or "cosine")
        if metric is None:
            raise InvalidInput(
                f"Milvus has no metric for distance '{vf.distance}' (field '{vf.name}'): "
                f"use one of {', '.join(_DISTANCE_TO_METRIC)}"
            )
        return {"index_type": _LITE_INDEX if self._lite else _SERVER_INDEX, "metric_type": metric}

    def _check_existing(self, collection: str, fields: Sequence[VectorField]) -> None:
        schema = self._schema(collection)
        for vf in fields:
            if vf.name not in schema.vectors:
                raise Conflict(
                    f"collection '{collection}' already exists without vector '{vf.name}': "
                    "drop it or pick another name"
                )
            _same_field(schema.vectors[vf.name], vf, collection)

    def _alias_target(self, alias: str) -> str | None:
        # Listing first: describe_alias on a missing alias fails, and pymilvus logs every
        # failed call with a traceback.
        known = self._call("list aliases", self._client.list_aliases).get("aliases", [])
        if alias not in known:
            return None
        described = self._call(f"describe alias '{alias}'", self._client.describe_alias, alias)
        return str(described.get("collection_name")) or None


# ── connection ───────────────────────────────────────────────────────────────────────────


def _address(uri: str) -> tuple[bool, str]:
    """(is Lite, what pymilvus takes) for ``milvus:./x.db`` or ``milvus://host:port``."""
    scheme, _, rest = uri.partition(":")
    if scheme != "milvus" or not rest:
        raise InvalidInput(
            f"not a Milvus URI: '{uri}' (expected milvus:./file.db or milvus://host:port)"
        )
    if rest.startswith("//"):
        host = rest[2:].rstrip("/")
        if not host:
            raise InvalidInput(f"Milvus URI '{uri}' names no host: expected milvus://host:19530")
        return False, ("https://" if host.endswith(":443") else "http://") + host
    if not rest.endswith(".db"):
        raise InvalidInput(
            f"Milvus Lite needs a file ending in .db, got '{rest}': use milvus:./name.db"
        )
    return True, rest


def _open_client(address: str, lite: bool, timeout: float) -> Any:
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    token = "" if lite else os.environ.get("MILVUS_TOKEN", "")
    for attempt in range(_RETRIES):
        try:
            return MilvusClient(uri=address, token=token, timeout=timeout)
        except MilvusException as e:
            if not _transient(e) or attempt == _RETRIES - 1:
                raise StoreError(
                    f"cannot connect to Milvus at {address} ({_RETRIES} tries): {_reason(e)}; "
                    "check the address, that the server runs, and MILVUS_TOKEN"
                ) from None
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _transient(error: Exception) -> bool:
    from pymilvus.exceptions import ConnectError, MilvusUnavailableException

    # code 2 is pymilvus's "Fail connecting to server" (channel never became ready)
    return isinstance(error, ConnectError | MilvusUnavailableException) or (
        getattr(error, "code", None) == 2
    )


def _reason(error: Exception) -> str:
    message = str(getattr(error, "message", "") or error)
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__


# ── schema ───────────────────────────────────────────────────────────────────────────────


def _dtype(name: str) -> Any:
    from pymilvus import DataType

    return DataType[name]


def _identity(raw: dict[str, Any]) -> tuple[Any, ...]:
    """What must not change for cached indexes to still hold: which collection (an alias may
    point elsewhere now), and its fields."""
    fields = tuple(f["name"] for f in raw.get("fields", []))
    return raw.get("collection_id"), raw.get("collection_name"), fields


def _parse_schema(
    collection: str, raw: dict[str, Any], indexes: dict[str, dict[str, Any]]
) -> _Schema:
    pk, pk_is_int, auto_id, scalars, vectors = "", False, False, [], {}
    nullable = {f["name"] for f in raw["fields"] if f.get("nullable")}
    for f in raw["fields"]:
        kind = f["type"].name
        if f.get("is_primary"):
            pk, pk_is_int, auto_id = f["name"], kind == "INT64", bool(f.get("auto_id"))
        elif kind == _SPARSE_TYPE:
            vectors[f["name"]] = VectorField(f["name"], "sparse", None, None)
        elif kind in _DENSE_TYPES or kind == "BINARY_VECTOR":
            index = indexes.get(f["name"], {})
            metric = str(index.get("metric_type") or "")
            dim = int(f["params"]["dim"])
            vectors[f["name"]] = VectorField(
                f["name"], "dense", dim, _METRIC_TO_DISTANCE.get(metric, metric.lower() or None),
                _quantization_of(index, dim) if kind == "FLOAT_VECTOR" else None,
            )  # fmt: skip
        elif not f.get("is_dynamic"):
            scalars.append(f["name"])
    return _Schema(
        name=collection,
        raw=raw,
        pk=pk,
        pk_is_int=pk_is_int,
        dynamic=bool(raw.get("enable_dynamic_field")),
        scalars=scalars,
        vectors=vectors,
        indexes=indexes,
        auto_id=auto_id,
        nullable=nullable & set(vectors),
    )


def _detect_langchain(schema: _Schema, info: CollectionInfo) -> None:
    """langchain-milvus 0.4 defaults: primary ``pk``, VARCHAR ``text``, vector ``vector``.

    Its metadata is either one scalar field per key (the default), dynamic fields
    (``enable_dynamic_field=True``) or one JSON field (``metadata_field=...``, deprecated).
    ``metadata_key`` names that JSON field, and is None when the metadata is every payload
    key but the text (the first two layouts: this adapter returns dynamic keys flattened).
    """
    if schema.pk != "pk" or "text" not in schema.scalars or "vector" not in schema.vectors:
        return
    info.langchain = "milvus"
    info.text_key = "text"
    types = {f["name"]: f["type"].name for f in schema.raw["fields"]}
    if types.get("metadata") == "JSON":
        info.metadata_key = "metadata"


def _copyable_schema(raw: dict[str, Any]) -> dict[str, Any]:
    """``like``'s schema for a copy, every field's settings as they are: the primary key's
    type, ``max_length`` and ``auto_id`` (the application's writes keep working after the
    swap; the migration writes the original keys all the same, see ``create_collection``),
    scalar fields' ``max_length``/``nullable``/``default_value``, ``enable_dynamic_field``."""
    copied = dict(raw)
    # enable_dynamic_field recreates $meta
    copied["fields"] = [dict(f) for f in raw["fields"] if not f.get("is_dynamic")]
    return copied


def _add_vector_field(schema: Any, vf: VectorField) -> None:
    if vf.kind == "sparse":
        schema.add_field(vf.name, _dtype(_SPARSE_TYPE))
    else:
        if not vf.size:
            raise InvalidInput(f"dense field '{vf.name}' needs a size")
        schema.add_field(vf.name, _dtype("FLOAT_VECTOR"), dim=vf.size)


def _index_args(info: dict[str, Any], vf: VectorField) -> dict[str, Any]:
    """Index arguments that rebuild ``info`` (from describe_index) on a copied field."""
    if not info:
        return {"index_type": "SPARSE_INVERTED_INDEX" if vf.kind == "sparse" else "FLAT",
                "metric_type": "IP" if vf.kind == "sparse" else "COSINE"}  # fmt: skip
    params = {k: v for k, v in info.items() if k not in _INDEX_INFO_KEYS}
    return {"index_type": info["index_type"], "metric_type": info["metric_type"], "params": params}


def _same_field(have: VectorField, want: VectorField, collection: str) -> None:
    """Conflict unless ``have`` can serve as ``want`` (sparse sizes are not in the schema)."""
    if have.kind != want.kind or (want.kind == "dense" and have.size != want.size):
        size = "sparse" if have.kind == "sparse" else f"dense, {have.size} dims"
        wanted = "sparse" if want.kind == "sparse" else f"dense, {want.size} dims"
        raise Conflict(
            f"vector '{want.name}' of '{collection}' is {size}, not {wanted}: "
            "pick another output name or drop the field's collection"
        )


def _quantization_of(index: Mapping[str, Any], dim: int) -> str | None:
    """The scheme's name of a field's index (``describe_index``), None for float32 (FLAT,
    HNSW, AUTOINDEX, ...) and for indexes the scheme has no name for (HNSW_SQ with sq_type
    SQ4/SQ6/FP16/BF16, other PQ bit widths). Lite reports no build parameters: its HNSW_SQ
    is 8-bit whatever it was asked."""
    kind = str(index.get("index_type") or "").upper()
    simple = {"IVF_FLAT": "float32@ivf", "IVF_SQ8": "int8@ivf", "IVF_RABITQ": "binary1@ivf"}
    if kind in simple:
        return simple[kind]
    if kind == "HNSW_SQ":
        return "int8" if str(index.get("sq_type") or "SQ8").upper() == "SQ8" else None
    if kind in ("HNSW_PQ", "IVF_PQ"):
        m, nbits = int(index.get("m") or 0), int(index.get("nbits") or 8)
        ratio = 32 * dim / (m * nbits) if m else 0
        if ratio in quantizers.PQ_RATIOS:
            return f"pq{int(ratio)}" + ("@ivf" if kind == "IVF_PQ" else "")
    return None


def _quantizer_index(q: Quantizer, vf: VectorField, metric: str) -> dict[str, Any]:
    """``add_index`` arguments of the quantizer ``q`` on the dense field ``vf`` (not
    float32, which is the adapter's default index); InvalidInput when PQ's sub-vectors do
    not divide the field's dimension."""
    params: dict[str, Any]
    if q.family == "int8":
        kind, params = (("IVF_SQ8", {"nlist": _NLIST}) if q.index == "ivf"
                        else ("HNSW_SQ", {**_HNSW_BUILD, "sq_type": "SQ8"}))  # fmt: skip
    elif q.family == "float32":
        kind, params = "IVF_FLAT", {"nlist": _NLIST}
    elif q.family == "binary":
        kind, params = "IVF_RABITQ", {"nlist": _NLIST}
    else:
        dim = int(vf.size or 0)
        m = dim * q.bits / 8  # bytes of the code = sub-vectors of 8 bits
        if m != int(m) or not m or dim % int(m):
            raise InvalidInput(f"quantizer '{q.name}' needs {dim * q.bits / 8:g} PQ "
                               f"sub-vectors of '{vf.name}' ({dim}-d), which do not divide it: "
                               "pick another ratio")
        build = {"m": int(m), "nbits": 8}
        kind, params = (("IVF_PQ", {"nlist": _NLIST, **build}) if q.index == "ivf"
                        else ("HNSW_PQ", {**_HNSW_BUILD, **build}))  # fmt: skip
    return {"index_type": kind, "metric_type": metric, "params": params}


def _exact(query: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """Scores as Milvus gives them for ``metric`` (COSINE, IP), computed from the floats."""
    if metric == "COSINE":
        return np.asarray(_normalise(vectors) @ _normalise(query[None, :])[0])
    if metric == "IP":
        return np.asarray(vectors @ query)
    raise InvalidInput(f"rescore on Milvus scores on the client for COSINE and IP fields, not "
                       f"{metric}: pass rescore=None")


def _rescored(query: np.ndarray, hits: list[dict[str, Any]], vf: VectorField, metric: str,
              keep: int) -> list[dict[str, Any]]:
    """The ``keep`` best of ``hits`` by the float vectors of ``vf`` (fetched with them), each
    hit's ``distance`` replaced by that exact score."""
    if not hits:
        return []
    scores = _exact(query, _dense_matrix([h["entity"][vf.name] for h in hits], vf), metric)
    order = np.argsort(-scores, kind="stable")[:keep]
    return [{**hits[i], "distance": float(scores[i])} for i in order]


# ── values ───────────────────────────────────────────────────────────────────────────────


def _as_matrix(values: np.ndarray) -> np.ndarray:
    matrix = np.asarray(values, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise InvalidInput(f"expected a 2-d array of vectors, got shape {matrix.shape}")
    return matrix


def _check_dense(vf: VectorField, dim: int) -> VectorField:
    if vf.kind != "dense":
        raise InvalidInput(f"vector '{vf.name}' is sparse: pass a SparseBatch")
    if vf.size != dim:
        raise InvalidInput(f"vector '{vf.name}' has {vf.size} dims but the input has {dim}")
    return vf


def _vector_rows(vf: VectorField, values: Vectors) -> list[Any]:
    """Rows of one vector field as pymilvus takes them: float32 arrays or sparse dicts."""
    if vf.kind == "sparse":
        if not isinstance(values, SparseBatch):
            raise InvalidInput(f"vector '{vf.name}' is sparse: pass a SparseBatch")
        return [_sparse_row(values, i) for i in range(len(values))]
    if isinstance(values, SparseBatch):
        raise InvalidInput(f"vector '{vf.name}' is dense: pass an array, not a SparseBatch")
    matrix = _as_matrix(values)
    _check_dense(vf, matrix.shape[1])
    return list(matrix)


def _sparse_row(batch: SparseBatch, i: int) -> dict[int, float]:
    """Milvus takes no negative sparse values: entries below zero are dropped with the zero
    padding. Stored codes have none; a pursuit csr query then counts only the positive shares
    of its cosine with each document's reconstruction (docs/benchmarks.md measures the cost)."""
    indices, values = batch.row(i)
    return {int(j): float(v) for j, v in zip(indices, values, strict=True) if v > 0}


def _dense_matrix(rows: list[Any], vf: VectorField) -> np.ndarray:
    if not rows:
        return np.empty((0, vf.size or 0), dtype=np.float32)
    if isinstance(rows[0], bytes | bytearray):  # float16 fields come back as raw bytes
        return np.stack([np.frombuffer(r, dtype=np.float16) for r in rows]).astype(np.float32)
    return np.asarray(rows, dtype=np.float32)


def _payload(row: Mapping[str, Any], schema: _Schema) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != schema.pk and k not in schema.vectors}


def _check_id(point_id: PointId, schema: _Schema) -> PointId:
    if schema.pk_is_int and not isinstance(point_id, int | np.integer):
        raise InvalidInput(
            f"collection '{schema.name}' has integer ids ('{schema.pk}'), got {point_id!r}"
        )
    if not schema.pk_is_int and not isinstance(point_id, str):
        raise InvalidInput(
            f"collection '{schema.name}' has string ids ('{schema.pk}'), got {point_id!r}"
        )
    return int(point_id) if schema.pk_is_int else point_id


def _literal(value: Any) -> str:
    """A Milvus expression literal: JSON's quoting matches Milvus's string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | np.integer | np.floating):
        return repr(value.item() if isinstance(value, np.generic) else value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise InvalidInput(f"cannot filter on {value!r}: use a string, number, bool or list")


def _filter_expr(filter: Filter | None, schema: _Schema) -> str:
    """``{"metadata.lang": "en", "n": [1, 2]}`` → ``metadata["lang"] == "en" and n in [1, 2]``.

    A dot walks into a JSON (or dynamic) field. On a langchain-milvus collection whose
    metadata keys are fields of their own, ``metadata.`` is dropped, so filters written for
    langchain-qdrant's nested ``metadata`` payload work unchanged.
    """
    parts = []
    for key, value in (filter or {}).items():
        head, *path = key.split(".")
        if head == "metadata" and path and "metadata" not in schema.scalars and schema.pk == "pk":
            head, *path = path
        if head not in schema.scalars and head != schema.pk and not schema.dynamic:
            raise InvalidInput(
                f"cannot filter on '{key}': '{schema.name}' has no field '{head}' "
                f"(fields: {', '.join(schema.scalars) or 'none'})"
            )
        target = head + "".join(f"[{json.dumps(p, ensure_ascii=False)}]" for p in path)
        if isinstance(value, list | tuple | set):
            parts.append(f"{target} in [{', '.join(_literal(v) for v in value)}]")
        else:
            parts.append(f"{target} == {_literal(value)}")
    return " and ".join(parts)


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _rerank(
    query: np.ndarray, hits: list[dict[str, Any]], full: VectorField, schema: _Schema, k: int
) -> list[Hit]:
    """Exact cosine of the normalised query against each candidate's full vector."""
    if not hits:
        return []
    vectors = _dense_matrix([h["entity"][full.name] for h in hits], full)
    scores = _normalise(vectors) @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [
        Hit(hits[i][schema.pk], float(scores[i]), _payload(hits[i]["entity"], schema))
        for i in order
    ]
