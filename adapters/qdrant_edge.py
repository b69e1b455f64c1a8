"""Qdrant Edge (``qdrant-edge-py``): the Qdrant engine in-process, for ``edge:./shard-dir``.

An Edge shard is one collection's worth of data in one directory
(https://qdrant.tech/documentation/edge/edge-api/shard-lifecycle/). The store directory
holds one shard per collection and a small alias table::

    shard-dir/
        docs/              an EdgeShard (edge_config.json, segments/, wal/)
        docs_mrl/          another collection
        aliases.json       {"live": "docs_mrl"}

A collection's vector fields are read from the shard's ``edge_config.json``, which Edge
rewrites on every schema change (``create_dense_vector`` / ``create_sparse_vector``); the
Python bindings expose no getter for it. Edge has no aliases: ``aliases.json`` is replaced
atomically (``os.replace``), so a swap is all-or-nothing.

Writes leave fresh, unindexed segments; the first search after writes runs ``optimize()``
(Edge's optimizers run only when asked: https://qdrant.tech/documentation/edge/edge-api/configuration/),
so search speed is the indexed speed. Small shards stay below the indexing threshold and are
searched exactly, unless a field is quantized: such a shard is indexed at any size, so that its
quantizer really runs (:meth:`EdgeStore.set_quantizer`).

A store keeps each collection's vector fields and the alias table in memory, so a search
touches no file but one ``stat`` of ``aliases.json``:

* its own writes (``create_collection``, ``add_outputs``, ``swap_alias``,
  ``drop_collection``) update what it holds;
* an alias swapped by another process (``mrl-compress migrate --swap``) is seen on the next
  call: the alias table is re-read whenever the file's mtime, inode or size changed (about
  2 µs a call), and a collection it now points at is opened from disk on first use;
* a field another process added to a collection this store has read is picked up when a call
  names it (the config is re-read before saying it does not exist), and ``describe`` and the
  schema calls always re-read ``edge_config.json``;
* anything else another process changed (a collection dropped or re-created under the same
  name, points written to a shard this store has open) is seen after :meth:`EdgeStore.refresh`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mrl_compress import quantizers, store
from mrl_compress.adapters.qdrant import (
    BINARY_BITS,
    QUERY_ENCODINGS,
    TURBO_BITS,
    check_queries,
    collection_info,
    edge_enum_name,
    field_of,
    holding_all,
    in_order,
    lacking_any,
    needs_field,
    offered,
    one_line,
    pages,
    payload_filter,
    point_id,
    point_rows,
    quantizable,
    read_names,
    same_fields,
    same_length,
    shortlist_params,
    to_batch,
    two_stage_prefetches,
    two_stage_rows,
    vector_fields,
    vector_rows,
)
from mrl_compress.errors import Conflict, InvalidInput, MrlCompressError, StoreError, require
from mrl_compress.outputs import Output
from mrl_compress.quantizers import Quantizer
from mrl_compress.store import Batch, CollectionInfo, Filter, Hit, PointId, VectorField, Vectors

T = TypeVar("T")

ALIASES = "aliases.json"
CONFIG = "edge_config.json"
WRITE_CHUNK = 2048
SCROLL_CHUNK = 256  # points per scroll request (see iter_batches)
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
QUANTIZED_INDEXING_KB = 1
"""The optimizers' indexing threshold (KB of vectors per segment) of a shard with a quantized
field: such a shard is indexed at any size (see :meth:`EdgeStore.set_quantizer`)."""


class EdgeStore:
    """A directory of Qdrant Edge shards, one per collection, behind :class:`VectorStore`."""

    def __init__(self, uri: str) -> None:
        require("qdrant_edge", "qdrant")
        import qdrant_edge

        scheme, _, rest = uri.partition(":")
        if scheme != "edge" or not rest:
            raise InvalidInput(f"not a Qdrant Edge URI: '{uri}' (expected edge:./shard-dir)")
        self.uri = uri
        self._edge = qdrant_edge
        self._root = Path(rest)
        if self._root.exists() and not self._root.is_dir():
            raise InvalidInput(f"{uri}: {rest} is a file, not a Qdrant Edge directory")
        # made by the first collection created: opening a mistyped path creates nothing
        self._shards: dict[str, Any] = {}
        self._dirty: set[str] = set()
        self._configs: dict[str, dict[str, VectorField]] = {}
        """Vector fields per collection (by its real name), as last read from its config."""
        self._alias_table: dict[str, str] = {}
        self._alias_stamp: tuple[int, int, int] | None = None
        """(mtime_ns, inode, size) of aliases.json when last read; None: read it again."""
        self._every: dict[str, dict[str, bool]] = {}
        """Per open collection, field -> whether every point holds it (True) or some lack it
        (False), as last counted and kept up to date by this store's own writes; a field not
        listed is counted again (see :meth:`_may_lack`)."""
        self._lock = threading.Lock()
        self._writing = 0
        """Upserts in flight that leave a field out."""
        self._generation = 0
        """Bumped when such an upsert starts and ends, and when ``_every`` is forgotten."""

    def refresh(self) -> None:
        """Forget what this store holds in memory: the collections' fields, the alias table
        and the open shards (flushed and closed; reopened on next use), so that changes made
        by another process are seen. An alias swap is seen without this (see the module)."""
        self._configs.clear()
        self._alias_stamp = None
        for shard in self._shards.values():
            shard.flush()
            shard.close()
        self._shards.clear()
        self._forget_fields()

    # -- plumbing -------------------------------------------------------------------------

    @staticmethod
    def _call(what: str, action: Callable[[], T]) -> T:
        """Edge raises bare ``Exception``s: turn them into one-line store errors."""
        try:
            return action()
        except MrlCompressError:
            raise
        except Exception as error:
            raise StoreError(f"Qdrant Edge could not {what}: {one_line(error)}") from error

    def _collections(self) -> list[str]:
        """The collections on disk (lists the directory: for writes and error messages)."""
        if not self._root.is_dir():
            return []
        return sorted(p.name for p in self._root.iterdir() if (p / CONFIG).is_file())

    def _aliases(self) -> Mapping[str, str]:
        """The alias table, re-read only when ``aliases.json`` changed (one ``stat``)."""
        path = self._alias_path
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            stamp = (-1, -1, -1)
        else:
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        if stamp != self._alias_stamp:
            try:
                with open(path, encoding="utf-8") as file:
                    table = dict(json.load(file))
            except (FileNotFoundError, NotADirectoryError):
                table = {}
            # stamp taken before the read: a table replaced in between is read again next call
            self._alias_table, self._alias_stamp = table, stamp
        return self._alias_table

    @property
    def _alias_path(self) -> str:
        return os.path.join(self._root, ALIASES)

    def _write_aliases(self, aliases: Mapping[str, str]) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        path = self._root / ALIASES
        scratch = path.with_suffix(".json.tmp")
        scratch.write_text(json.dumps(dict(sorted(aliases.items())), indent=1))
        os.replace(scratch, path)  # atomic on POSIX: readers see the old or the new table
        self._alias_stamp = None

    def _read_config(self, name: str) -> dict[str, VectorField] | None:
        """Read ``name``'s ``edge_config.json`` into the cache; None when no such collection."""
        try:
            if not NAME.match(name):  # an alias value is a directory name, never a path
                raise FileNotFoundError(name)
            with open(self._root / name / CONFIG, encoding="utf-8") as file:
                config = json.load(file)
        except (FileNotFoundError, NotADirectoryError):
            self._configs.pop(name, None)
            return None
        fields = vector_fields(config.get("vectors"), config.get("sparse_vectors"))
        self._configs[name] = fields
        return fields

    def _target(
        self, collection: str, want: Iterable[str] = (), fresh: bool = False
    ) -> tuple[str, dict[str, VectorField]]:
        """(the collection behind ``collection`` — itself or an alias's —, its vector fields).

        The fields come from memory; ``edge_config.json`` is read on first use, when
        ``fresh``, or when a field in ``want`` is not among them (another process may have
        added it). NotFound when there is no such collection.
        """
        name = self._aliases().get(collection, collection)
        fields = self._configs.get(name)
        if fields is None or fresh or any(w not in fields for w in want):
            fields = self._read_config(name)
            if fields is None:
                raise store.collection_not_found(collection, self._collections())
        return name, fields

    def _resolve(self, collection: str) -> str:
        """The collection an alias points at (or ``collection`` itself); NotFound otherwise."""
        return self._target(collection)[0]

    def _fields(self, collection: str, fresh: bool = False) -> dict[str, VectorField]:
        return self._target(collection, fresh=fresh)[1]

    def _open(self, name: str) -> Any:
        """The shard of the collection ``name`` (a real name, not an alias), opened once."""
        shard = self._shards.get(name)
        if shard is None:
            path = str(self._root / name)
            shard = self._call(f"open '{name}'", lambda: self._edge.EdgeShard.load(path))
            self._shards[name] = shard
            self._forget_fields(name)  # another process may have written while it was closed
        return shard

    # -- which points lack a field (two-stage search) ---------------------------------------

    def _forget_fields(self, name: str | None = None) -> None:
        """Count again which fields every point holds (of ``name``, or of every collection)."""
        with self._lock:
            self._generation += 1
            if name is None:
                self._every.clear()
            else:
                self._every.pop(name, None)

    def _may_lack(self, name: str, field: str) -> bool:
        """Whether some point of ``name`` may lack ``field`` (so a two-stage search needs its
        second prefetch): known from this store's writes, else one exact count in the engine.

        A shard's WAL is locked by the one store that opened it (a second ``EdgeStore`` on
        the same directory, in this process or another, cannot open it), so its writes all
        come through this store: an upsert that leaves ``field`` out marks it before writing
        (a search that starts after the upsert returns sees the mark); ``write_outputs`` of
        ``field`` and ``delete`` drop the mark, and the next search counts. A count is kept
        only if no such upsert was in flight or started while it ran.
        """
        known = self._every.get(name, {}).get(field)
        if known is not None:
            return not known
        with self._lock:
            start, quiet = self._generation, self._writing == 0
        edge = self._edge
        shard = self._ready(name)
        where = edge.Filter(must_not=[edge.HasVectorCondition(field)])
        lacking = int(self._call(
            f"count points of '{name}'",
            lambda: shard.count(edge.CountRequest(exact=True, filter=where)),
        ))  # fmt: skip
        with self._lock:
            if quiet and self._generation == start:
                self._every.setdefault(name, {})[field] = lacking == 0
        return lacking > 0

    def _leaving_out(self, name: str, fields: Iterable[str]) -> None:
        """An upsert is about to write points without ``fields``: mark them, before it writes."""
        with self._lock:
            self._writing += 1
            self._generation += 1
            known = self._every.setdefault(name, {})
            for field in fields:
                known[field] = False

    def _written(self) -> None:
        with self._lock:
            self._writing -= 1
            self._generation += 1

    def _maybe_filled(self, name: str, fields: Iterable[str] | None) -> None:
        """Points got ``fields`` (None: points were deleted): count again those marked lacking."""
        with self._lock:
            known = self._every.get(name, {})
            for field in list(known) if fields is None else fields:
                if known.get(field) is False:
                    del known[field]

    def _shard(self, collection: str) -> Any:
        return self._open(self._resolve(collection))

    def _update(self, collection: str, operation: Any) -> None:
        name = self._resolve(collection)
        shard = self._open(name)
        self._call(f"update '{collection}'", lambda: shard.update(operation))
        self._dirty.add(name)

    def _ready(self, name: str) -> Any:
        """The shard of ``name`` (resolved), optimized first if written since its last search."""
        shard = self._open(name)
        if name in self._dirty:
            self._call(f"optimize '{name}'", shard.optimize)
            self._dirty.discard(name)
        return shard

    def optimize(self, collection: str) -> None:
        """Merge segments and build indexes now (otherwise done before the next search)."""
        name = self._resolve(collection)
        self._dirty.add(name)
        self._ready(name)

    def _point_vector(self, values: Vectors) -> list[Any]:
        return vector_rows(values, self._edge.SparseVector)

    def _nearest(self, query: Any, name: str) -> dict[str, Any]:
        """Edge's spelling of a query on the field ``name`` (see ``two_stage_prefetches``)."""
        return {"query": self._edge.Query.Nearest(query, using=name)}

    def _distance(self, name: str | None) -> Any:
        table = {"cosine": "Cosine", "dot": "Dot", "euclid": "Euclid", "manhattan": "Manhattan"}
        if (name or "cosine") not in table:
            raise InvalidInput(f"unknown distance '{name}': expected one of {sorted(table)}")
        return getattr(self._edge.Distance, table[name or "cosine"])

    # -- reading --------------------------------------------------------------------------

    def describe(self, collection: str) -> CollectionInfo:
        edge = self._edge
        shard = self._shard(collection)
        count = self._call("count points", lambda: shard.count(edge.CountRequest(exact=True)))
        first, _ = self._call(
            "read a point",
            lambda: shard.scroll(edge.ScrollRequest(limit=1, with_payload=True, with_vector=False)),
        )
        _, fields = self._target(collection, fresh=True)
        return collection_info(collection, count, fields, self._aliases(), first)

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
        """Scroll in point-id order: ``next_offset`` is the first id of the next batch.

        A batch is gathered from scrolls of at most ``SCROLL_CHUNK`` points, each turned into
        arrays at once: Edge returns vectors as Python lists, and converting a few at a time
        is faster. Reading 100k 384-d vectors: 1.6 s in batches of 512 and 2.3 s in batches
        of 2048 as single scrolls; 1.3 s and 1.4 s this way.
        """
        edge = self._edge
        name, fields = self._target(collection,
                                    [*([vector] if vector else []), *vectors, *missing])
        names = read_names(collection, fields, vector, vectors)
        for field in missing:
            field_of(collection, fields, field)  # NotFound for a missing field
        where = lacking_any(edge, missing)
        shard = self._open(name)
        while True:
            parts: list[Batch] = []
            got = 0
            while got < batch_size:
                request = edge.ScrollRequest(
                    offset=offset, limit=min(SCROLL_CHUNK, batch_size - got),
                    with_payload=with_payload, with_vector=names, filter=where,
                )  # fmt: skip
                records, offset = self._call(
                    f"scroll '{collection}'", partial(shard.scroll, request)
                )
                if records:  # converted now, while the engine's lists are fresh in cache
                    parts.append(to_batch(collection, records, names, fields, offset,
                                          with_payload))  # fmt: skip
                    got += len(records)
                if offset is None:
                    break
            if parts:
                yield _joined(parts)
            if offset is None:
                return

    def point_ids(self, collection: str, batch_size: int = 2048) -> Iterator[list[PointId]]:
        edge = self._edge
        name, _ = self._target(collection)
        shard = self._open(name)

        def scroll(offset: Any) -> tuple[list[Any], Any]:
            request = edge.ScrollRequest(
                offset=offset, limit=batch_size, with_payload=False, with_vector=False
            )
            return self._call(f"scroll '{collection}'", partial(shard.scroll, request))

        for records, _ in pages(scroll):
            yield [point_id(record.id) for record in records]

    def count_having(self, collection: str, names: Sequence[str]) -> int:
        edge = self._edge
        name, fields = self._target(collection, names)
        for field in names:
            field_of(collection, fields, field)  # NotFound for a missing field
        shard = self._open(name)
        where = holding_all(edge, names)
        return int(self._call(
            f"count points of '{collection}'",
            lambda: shard.count(edge.CountRequest(exact=True, filter=where)),
        ))  # fmt: skip

    def retrieve(
        self,
        collection: str,
        ids: Sequence[PointId],
        vectors: Sequence[str],
        with_payload: bool = True,
    ) -> Batch:
        name, fields = self._target(collection, vectors)
        names = read_names(collection, fields, vectors[0] if vectors else None, vectors[1:])
        shard = self._open(name)
        records = self._call(
            f"read points of '{collection}'",
            partial(shard.retrieve, list(ids), with_payload, names),
        )
        return to_batch(collection, in_order(records, ids), names, fields, None, with_payload)

    def sample(self, collection: str, vector: str | None, n: int, seed: int = 0) -> np.ndarray:
        batches = self.iter_batches(collection, vector, batch_size=2048, with_payload=False)
        return store.reservoir_sample(batches, n, seed)

    # -- schema ---------------------------------------------------------------------------

    def _vector_params(self, field: VectorField, quantize: Quantizer | None = None) -> Any:
        return self._edge.EdgeVectorParams(
            size=int(field.size or 0),
            distance=self._distance(field.distance),
            quantization_config=self._quantization(quantize),
        )

    def _quantization(self, q: Quantizer | None) -> Any | None:
        """Edge's ``quantization_config`` for ``q`` (None for float32)."""
        edge = self._edge
        if q is None or q.family == "float32":
            return None
        if q.family == "int8":
            return edge.ScalarQuantizationConfig(type=edge.ScalarType.Int8)

        def member(enum: str, value: str) -> Any:
            return getattr(getattr(edge, enum), edge_enum_name(value))

        if q.family == "binary":
            return edge.BinaryQuantizationConfig(
                encoding=None if q.bits == 1
                else member("BinaryQuantizationEncoding", BINARY_BITS[q.bits]),
                query_encoding=None if q.query is None
                else member("BinaryQuantizationQueryEncoding", QUERY_ENCODINGS[q.query]),
            )  # fmt: skip
        if q.family == "turbo":
            return edge.TurboQuantQuantizationConfig(
                bits=member("TurboQuantBitSize", TURBO_BITS[q.bits]))
        return edge.ProductQuantizationConfig(
            compression=member("CompressionRatio", f"x{round(32 / q.bits)}"))

    def quantizers(self) -> list[str]:
        """Every name of the scheme whose config the installed ``qdrant-edge-py`` exposes
        (0.9: all of them, :func:`mrl_compress.quantizers.names`)."""
        return offered(self._edge)

    def _quantizer(self, name: str | None) -> Quantizer:
        return store.check_quantizer(name, f"Qdrant Edge at {self._root}", self.quantizers())

    def create_collection(
        self,
        collection: str,
        fields: Sequence[VectorField],
        like: str | None = None,
    ) -> None:
        """A new shard directory; a repeated call with the same fields is a no-op."""
        edge = self._edge
        if not NAME.match(collection) or collection == ALIASES:
            raise InvalidInput(
                f"collection name '{collection}' must be letters, digits, '_', '-' or '.' "
                "(it names a directory)"
            )
        if collection in self._collections():
            same_fields(collection, self._fields(collection, fresh=True), fields)
            return
        if collection in self._aliases():
            raise Conflict(f"'{collection}' is an alias: choose another collection name")
        config = edge.EdgeConfig(
            vectors={f.name: self._vector_params(f) for f in fields if f.kind == "dense"},
            sparse_vectors={
                f.name: edge.EdgeSparseVectorParams() for f in fields if f.kind == "sparse"
            },
        )
        self._root.mkdir(parents=True, exist_ok=True)
        path = str(self._root / collection)
        self._configs.pop(collection, None)  # read from the new shard's config on first use
        self._shards[collection] = self._call(
            f"create '{collection}'", lambda: edge.EdgeShard.create(path, config)
        )
        self._forget_fields(collection)
        if like is not None:
            self._copy_payload_indexes(like, collection)

    def _copy_payload_indexes(self, source: str, target: str) -> None:
        schema = self._shard(source).info().payload_schema
        for key, index in schema.items():
            spec = index.params or index.data_type
            self._update(target, self._edge.UpdateOperation.create_field_index(key, spec))

    def add_outputs(
        self, collection: str, outputs: Sequence[Output], quantize: str | None = None
    ) -> None:
        """Add named vectors in place (``create_dense_vector`` / ``create_sparse_vector``).

        Edge sets per-vector quantization only through the shard config, so ``quantize`` (a
        name of :meth:`quantizers`) reopens the shard with the new vectors'
        ``quantization_config`` (see :meth:`set_quantizer`); ``load`` checks the config
        against the stored segments and persists it.
        """
        wanted = self._quantizer(quantize)
        edge = self._edge
        name, fields = self._target(collection, fresh=True)
        todo = [output for output in outputs if needs_field(collection, fields, output)]
        self._configs.pop(name, None)  # re-read after the schema change
        self._forget_fields(name)  # the points lack the new fields
        for output in todo:
            if output.kind == "sparse":
                operation = edge.UpdateOperation.create_sparse_vector(output.name)
            else:
                operation = edge.UpdateOperation.create_dense_vector(
                    output.name, output.size, self._distance(output.distance)
                )
            self._update(collection, operation)
        dense_new = {o.name for o in todo if o.kind == "dense"}
        if wanted.family != "float32" and dense_new:
            self._reopen_quantized(collection, dict.fromkeys(dense_new, wanted))

    def set_quantizer(self, collection: str, vector: str, quantize: str | None) -> None:
        """Reopen the shard with ``vector``'s new ``quantization_config`` (the others keep
        theirs) and ``optimize()`` it, which builds the codes of the stored vectors
        (measured: a float shard of 8k points, then int8, turbo1, none, turbo2 in turn:
        recall@10 0.973, 0.66, 0.995, 0.812 by the codes alone, every point kept). Built
        now, not at this store's next search: a shard reopened by another process (the
        application after ``migrate --mode native``) is not optimized until it is written,
        and until then searched without the codes (measured: recall@10 1.0 for turbo2).

        A shard with a quantized field gets the optimizers' indexing threshold
        ``QUANTIZED_INDEXING_KB`` (an existing lower one stays), so it is indexed at any
        size: below Edge's default threshold (10,000 KB of vectors, ~6,500 384-d points)
        its points stay in an appendable segment, which keeps no int8 or PQ codes at all and
        binary codes only at 1 bit (measured at 3k points: int8 and pq16 recall@10 1.0, i.e.
        not quantized; binary2-q8 equal to binary1-q8), so those quantizers would not run.
        """
        wanted = self._quantizer(quantize)
        name, fields = self._target(collection, fresh=True)
        field = quantizable(collection, fields, vector)
        if (field.quantization or "float32") == wanted.name:
            return
        self._reopen_quantized(collection, {vector: wanted})
        self._ready(name)

    def _reopen_quantized(self, collection: str, wanted: Mapping[str, Quantizer]) -> None:
        """Reopen the shard with the quantizers ``wanted`` (by field); the other dense fields
        keep the quantizer they have."""
        edge = self._edge
        target, fields = self._target(collection, fresh=True)
        chosen = {
            name: wanted.get(name) or quantizers.parse(f.quantization)
            for name, f in fields.items()
            if f.kind == "dense"
        }
        config = edge.EdgeConfig(
            vectors={name: self._vector_params(fields[name], q) for name, q in chosen.items()},
            sparse_vectors={
                name: edge.EdgeSparseVectorParams()
                for name, f in fields.items()
                if f.kind == "sparse"
            },
            optimizers=self._optimizers(
                target, any(q.family != "float32" for q in chosen.values())
            ),
        )
        self._configs.pop(target, None)
        shard = self._shards.pop(target, None)
        if shard is not None:
            shard.flush()
            shard.close()
        path = str(self._root / target)
        self._shards[target] = self._call(
            f"quantize vectors of '{target}'", lambda: edge.EdgeShard.load(path, config)
        )
        self._forget_fields(target)
        self._dirty.add(target)

    def _optimizers(self, name: str, quantized: bool) -> Any | None:
        """The shard's optimizers config as stored, with the indexing threshold of a shard
        with a quantized field (see :meth:`set_quantizer`); None when it has neither."""
        with open(self._root / name / CONFIG, encoding="utf-8") as file:
            stored = dict(json.load(file).get("optimizers") or {})
        known = ("deleted_threshold", "vacuum_min_vector_number", "default_segment_number",
                 "max_segment_size", "indexing_threshold", "prevent_unoptimized")
        settings = {key: stored[key] for key in known if stored.get(key) is not None}
        if quantized:
            threshold = settings.get("indexing_threshold")
            settings["indexing_threshold"] = (QUANTIZED_INDEXING_KB if threshold is None
                                              else min(int(threshold), QUANTIZED_INDEXING_KB))
        return self._edge.EdgeOptimizersConfig(**settings) if settings else None

    # -- writing --------------------------------------------------------------------------

    def _rows(self, collection: str, vectors: Mapping[str, Vectors]) -> dict[str, list[Any]]:
        _, fields = self._target(collection, vectors)
        return point_rows(collection, fields, vectors, self._point_vector)

    def upsert(
        self,
        collection: str,
        ids: Sequence[PointId],
        vectors: Mapping[str, Vectors],
        payloads: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Whole points: a field left out of ``vectors`` is absent from them afterwards (an
        upsert replaces every vector of an existing point), until ``write_outputs``."""
        edge = self._edge
        rows = self._rows(collection, vectors)
        same_length(len(ids), *(len(r) for r in rows.values()), len(payloads or ids))
        points = [
            edge.Point(
                pid,
                {name: r[i] for name, r in rows.items()},
                payloads[i] if payloads is not None else None,
            )
            for i, pid in enumerate(ids)
        ]
        name, fields = self._target(collection, vectors)
        left_out = [field for field in fields if field not in vectors] if ids else []
        if left_out:
            self._open(name)  # opening forgets the marks: open first, then mark
            self._leaving_out(name, left_out)
        try:
            for start in range(0, len(points), WRITE_CHUNK):
                chunk = points[start : start + WRITE_CHUNK]
                self._update(collection, edge.UpdateOperation.upsert_points(chunk))
        finally:
            if left_out:
                self._written()

    def write_outputs(
        self, collection: str, ids: Sequence[PointId], encoded: Mapping[str, Vectors]
    ) -> None:
        """``update_vectors`` replaces only the vectors named; payloads stay as they are."""
        edge = self._edge
        rows = self._rows(collection, encoded)
        same_length(len(ids), *(len(r) for r in rows.values()))
        names = list(rows)
        points = [
            edge.PointVectors(pid, dict(zip(names, values, strict=True)))
            for pid, *values in zip(ids, *rows.values(), strict=True)
        ]
        for start in range(0, len(points), WRITE_CHUNK):
            chunk = points[start : start + WRITE_CHUNK]
            self._update(collection, edge.UpdateOperation.update_vectors(chunk))
        self._maybe_filled(self._resolve(collection), names)

    # -- search ---------------------------------------------------------------------------

    def _query(self, name: str, collection: str, requests: list[Any]) -> list[list[Hit]]:
        shard = self._ready(name)
        if len(requests) == 1:  # the common case: one query per call, no batch wrapper
            results = [self._call(f"search '{collection}'", partial(shard.query, requests[0]))]
        else:
            batch = self._edge.QueryBatchRequest(requests)
            results = self._call(f"search '{collection}'", partial(shard.query_batch, batch))
        # Edge builds a new dict (or None) on every ``.payload`` read: read it once, no copy
        return [
            [Hit(point_id(p.id), p.score, p.payload or {}) for p in points] for points in results
        ]

    def search(
        self,
        collection: str,
        vector: str,
        queries: Vectors,
        k: int,
        filter: Filter | None = None,
        rescore: float | None = None,
    ) -> list[list[Hit]]:
        """``rescore``: how a quantized field scores its candidates (``shortlist_params``)."""
        edge = self._edge
        name, fields = self._target(collection, (vector,))
        field = field_of(collection, fields, vector)
        where = payload_filter(filter, edge)
        params = shortlist_params(edge, field, rescore)
        requests = [
            edge.QueryRequest(
                limit=k,
                query=edge.Query.Nearest(row, using=vector),
                filter=where,
                with_payload=True,
                params=params,
            )
            for row in self._point_vector(check_queries(field, queries))
        ]
        return self._query(name, collection, requests)

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
        """One query per row: ``Prefetch`` ``k * oversample`` on ``stage1``, rescore by full.

        ``full_vector`` None: the dense field (besides ``stage1``) of the queries' size.
        ``unsynced``: points that lack ``stage1`` are found by a second prefetch on the full
        vector (``two_stage_prefetches``), sent only while some point may lack it
        (:meth:`_may_lack`): when every point holds ``stage1`` the search costs what it did
        before. ``rescore``: how a quantized ``stage1`` scores the shortlist
        (``shortlist_params``).
        """
        edge = self._edge
        want = (stage1,) if full_vector is None else (stage1, full_vector)
        name, fields = self._target(collection, want)
        full, shortlist, rerank = two_stage_rows(collection, fields, stage1, stage1_queries,
                                                 queries, full_vector, self._point_vector)
        where = payload_filter(filter, edge)
        lacking = unsynced and self._may_lack(name, stage1)
        requests = [
            edge.QueryRequest(
                limit=k,
                prefetches=two_stage_prefetches(
                    edge, fields[stage1], small, big, full, k, oversample, where, self._nearest,
                    lacking, rescore,
                ),
                query=edge.Query.Nearest(big, using=full),
                filter=where,
                with_payload=True,
            )
            for small, big in zip(shortlist, rerank, strict=True)
        ]
        return self._query(name, collection, requests)

    # -- lifecycle ------------------------------------------------------------------------

    def swap_alias(self, alias: str, collection: str) -> None:
        if collection not in self._collections():
            raise store.collection_not_found(collection, self._collections())
        if alias in self._collections():
            raise Conflict(f"'{alias}' is a collection, not an alias: choose another alias name")
        self._write_aliases({**self._aliases(), alias: collection})

    def delete(self, collection: str, ids: Sequence[PointId]) -> None:
        if ids:
            self._update(collection, self._edge.UpdateOperation.delete_points(list(ids)))
            self._maybe_filled(self._resolve(collection), None)  # perhaps the last lacking
        else:
            self._resolve(collection)  # NotFound for a missing collection

    def drop_collection(self, collection: str) -> None:
        """Remove the shard directory and, as Qdrant does, the aliases that pointed at it."""
        if collection not in self._collections():
            raise store.collection_not_found(collection, self._collections())
        shard = self._shards.pop(collection, None)
        if shard is not None:
            shard.close()
        self._dirty.discard(collection)
        self._configs.pop(collection, None)
        self._forget_fields(collection)
        shutil.rmtree(self._root / collection)
        aliases = self._aliases()
        if collection in aliases.values():
            self._write_aliases({a: c for a, c in aliases.items() if c != collection})

    def close(self) -> None:
        """Flush and close every shard and forget all that :meth:`refresh` forgets, and
        which shards were written since their last optimize."""
        self.refresh()
        self._dirty.clear()


def _joined(parts: list[Batch]) -> Batch:
    """Consecutive batches of one scan as one; the last part's offset resumes after all."""
    if len(parts) == 1:
        return parts[0]
    fields = {name: np.concatenate([p.fields[name] for p in parts]) for name in parts[0].fields}
    return Batch(
        ids=[pid for p in parts for pid in p.ids],
        vectors=np.concatenate([p.vectors for p in parts]),
        payloads=[payload for p in parts for payload in p.payloads],
        next_offset=parts[-1].next_offset,
        fields=fields,
    )
