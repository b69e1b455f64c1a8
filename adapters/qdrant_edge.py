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
searched exactly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mrl_compress.adapters import (
    Batch,
    CollectionInfo,
    Filter,
    Hit,
    PointId,
    VectorField,
    Vectors,
    collection_not_found,
    reservoir_sample,
)
from mrl_compress.adapters.qdrant import (
    check_quantize,
    check_queries,
    default_vector,
    field_of,
    in_order,
    langchain_layout,
    needs_field,
    one_line,
    payload_filter,
    read_names,
    same_length,
    to_batch,
    to_hits,
    vector_rows,
)
from mrl_compress.errors import Conflict, InvalidInput, MrlCompressError, StoreError, require
from mrl_compress.outputs import Output

T = TypeVar("T")

ALIASES = "aliases.json"
CONFIG = "edge_config.json"
WRITE_CHUNK = 2048
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


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
        self._root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, Any] = {}
        self._dirty: set[str] = set()

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
        return sorted(p.name for p in self._root.iterdir() if (p / CONFIG).is_file())

    def _aliases(self) -> dict[str, str]:
        path = self._root / ALIASES
        return dict(json.loads(path.read_text())) if path.is_file() else {}

    def _write_aliases(self, aliases: Mapping[str, str]) -> None:
        path = self._root / ALIASES
        scratch = path.with_suffix(".json.tmp")
        scratch.write_text(json.dumps(dict(sorted(aliases.items())), indent=1))
        os.replace(scratch, path)  # atomic on POSIX: readers see the old or the new table

    def _resolve(self, collection: str) -> str:
        """The collection an alias points at (or ``collection`` itself); NotFound otherwise."""
        name = self._aliases().get(collection, collection)
        if name not in self._collections():
            raise collection_not_found(collection, self._collections())
        return name

    def _shard(self, collection: str) -> Any:
        name = self._resolve(collection)
        if name not in self._shards:
            path = str(self._root / name)
            self._shards[name] = self._call(
                f"open '{name}'", lambda: self._edge.EdgeShard.load(path)
            )
        return self._shards[name]

    def _fields(self, collection: str) -> dict[str, VectorField]:
        config = json.loads((self._root / self._resolve(collection) / CONFIG).read_text())
        fields = {
            name: VectorField(name, "dense", int(p["size"]), str(p["distance"]).lower())
            for name, p in (config.get("vectors") or {}).items()
        }
        for name in config.get("sparse_vectors") or {}:
            fields[name] = VectorField(name, "sparse", None, None)
        return fields

    def _update(self, collection: str, operation: Any) -> None:
        shard = self._shard(collection)
        self._call(f"update '{collection}'", lambda: shard.update(operation))
        self._dirty.add(self._resolve(collection))

    def _ready(self, collection: str) -> Any:
        """The shard, optimized first if written since its last search."""
        shard = self._shard(collection)
        name = self._resolve(collection)
        if name in self._dirty:
            self._call(f"optimize '{name}'", shard.optimize)
            self._dirty.discard(name)
        return shard

    def optimize(self, collection: str) -> None:
        """Merge segments and build indexes now (otherwise done before the next search)."""
        self._dirty.add(self._resolve(collection))
        self._ready(collection)

    def _point_vector(self, values: Vectors) -> list[Any]:
        return vector_rows(values, self._edge.SparseVector)

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
        target = self._resolve(collection)
        aliases = [a for a, name in self._aliases().items() if name == target]
        layout = langchain_layout(first[0].payload if first else None)
        fields = self._fields(collection)
        return CollectionInfo(collection, int(count), fields, aliases=aliases, **layout)

    def iter_batches(
        self,
        collection: str,
        vector: str | None = None,
        batch_size: int = 512,
        offset: Any | None = None,
        with_payload: bool = True,
        vectors: Sequence[str] = (),
    ) -> Iterator[Batch]:
        """Scroll in point-id order: ``next_offset`` is the first id of the next batch."""
        edge = self._edge
        fields = self._fields(collection)
        names = read_names(collection, fields, vector, vectors)
        shard = self._shard(collection)
        while True:
            request = edge.ScrollRequest(
                offset=offset, limit=batch_size, with_payload=with_payload, with_vector=names
            )
            records, offset = self._call(f"scroll '{collection}'", partial(shard.scroll, request))
            if records:
                yield to_batch(collection, records, names, fields, offset, with_payload)
            if offset is None:
                return

    def retrieve(
        self,
        collection: str,
        ids: Sequence[PointId],
        vectors: Sequence[str],
        with_payload: bool = True,
    ) -> Batch:
        fields = self._fields(collection)
        names = read_names(collection, fields, vectors[0] if vectors else None, vectors[1:])
        shard = self._shard(collection)
        records = self._call(
            f"read points of '{collection}'",
            partial(shard.retrieve, list(ids), with_payload, names),
        )
        return to_batch(collection, in_order(records, ids), names, fields, None, with_payload)

    def sample(self, collection: str, vector: str | None, n: int, seed: int = 0) -> np.ndarray:
        batches = self.iter_batches(collection, vector, batch_size=2048, with_payload=False)
        return reservoir_sample(batches, n, seed)

    # -- schema ---------------------------------------------------------------------------

    def _vector_params(self, field: VectorField, quantize: str | None = None) -> Any:
        edge = self._edge
        quantization = None
        if quantize == "int8":
            quantization = edge.ScalarQuantizationConfig(type=edge.ScalarType.Int8)
        elif quantize == "binary":
            quantization = edge.BinaryQuantizationConfig()
        return edge.EdgeVectorParams(
            size=int(field.size or 0),
            distance=self._distance(field.distance),
            quantization_config=quantization,
        )

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
            if self._fields(collection) != {f.name: f for f in fields}:
                raise Conflict(
                    f"collection '{collection}' already exists with other vector fields: "
                    "drop it or choose another name"
                )
            return
        if collection in self._aliases():
            raise Conflict(f"'{collection}' is an alias: choose another collection name")
        config = edge.EdgeConfig(
            vectors={f.name: self._vector_params(f) for f in fields if f.kind == "dense"},
            sparse_vectors={
                f.name: edge.EdgeSparseVectorParams() for f in fields if f.kind == "sparse"
            },
        )
        path = str(self._root / collection)
        self._shards[collection] = self._call(
            f"create '{collection}'", lambda: edge.EdgeShard.create(path, config)
        )
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

        Edge sets per-vector quantization only through the shard config, so ``quantize``
        reopens the shard with the new vectors' ``quantization_config``; ``load`` checks the
        config against the stored segments and persists it.
        """
        check_quantize(quantize)
        edge = self._edge
        fields = self._fields(collection)
        todo = [output for output in outputs if needs_field(collection, fields, output)]
        for output in todo:
            if output.kind == "sparse":
                operation = edge.UpdateOperation.create_sparse_vector(output.name)
            else:
                operation = edge.UpdateOperation.create_dense_vector(
                    output.name, output.size, self._distance(output.distance)
                )
            self._update(collection, operation)
        dense_new = {o.name for o in todo if o.kind == "dense"}
        if quantize and dense_new:
            self._reopen_quantized(collection, dense_new, quantize)

    def _reopen_quantized(self, collection: str, names: set[str], quantize: str) -> None:
        edge = self._edge
        fields = self._fields(collection)
        config = edge.EdgeConfig(
            vectors={
                name: self._vector_params(f, quantize if name in names else None)
                for name, f in fields.items()
                if f.kind == "dense"
            },
            sparse_vectors={
                name: edge.EdgeSparseVectorParams()
                for name, f in fields.items()
                if f.kind == "sparse"
            },
        )
        name = self._resolve(collection)
        shard = self._shards.pop(name)
        shard.flush()
        shard.close()
        path = str(self._root / name)
        self._shards[name] = self._call(
            f"quantize vectors of '{name}'", lambda: edge.EdgeShard.load(path, config)
        )
        self._dirty.add(name)

    # -- writing --------------------------------------------------------------------------

    def _rows(self, collection: str, vectors: Mapping[str, Vectors]) -> dict[str, list[Any]]:
        fields = self._fields(collection)
        return {
            name: self._point_vector(check_queries(field_of(collection, fields, name), values))
            for name, values in vectors.items()
        }

    def upsert(
        self,
        collection: str,
        ids: Sequence[PointId],
        vectors: Mapping[str, Vectors],
        payloads: Sequence[dict[str, Any]] | None = None,
    ) -> None:
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
        for start in range(0, len(points), WRITE_CHUNK):
            chunk = points[start : start + WRITE_CHUNK]
            self._update(collection, edge.UpdateOperation.upsert_points(chunk))

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

    # -- search ---------------------------------------------------------------------------

    def _query(self, collection: str, requests: list[Any]) -> list[list[Hit]]:
        shard = self._ready(collection)
        batch = self._edge.QueryBatchRequest(requests)
        results = self._call(f"search '{collection}'", lambda: shard.query_batch(batch))
        return [to_hits(points) for points in results]

    def search(
        self,
        collection: str,
        vector: str,
        queries: Vectors,
        k: int,
        filter: Filter | None = None,
    ) -> list[list[Hit]]:
        edge = self._edge
        field = field_of(collection, self._fields(collection), vector)
        where = payload_filter(filter, edge)
        requests = [
            edge.QueryRequest(
                limit=k,
                query=edge.Query.Nearest(row, using=vector),
                filter=where,
                with_payload=True,
            )
            for row in self._point_vector(check_queries(field, queries))
        ]
        return self._query(collection, requests)

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
        """One query per row: ``Prefetch`` ``k * oversample`` on ``stage1``, rescore by full."""
        edge = self._edge
        fields = self._fields(collection)
        full = default_vector(collection, fields, full_vector)
        shortlist = self._point_vector(
            check_queries(field_of(collection, fields, stage1), stage1_queries)
        )
        rerank = self._point_vector(check_queries(fields[full], queries))
        same_length(len(rerank), len(shortlist))
        where = payload_filter(filter, edge)
        requests = [
            edge.QueryRequest(
                limit=k,
                prefetches=[
                    edge.Prefetch(
                        limit=k * oversample,
                        query=edge.Query.Nearest(small, using=stage1),
                        filter=where,
                    )
                ],
                query=edge.Query.Nearest(big, using=full),
                filter=where,
                with_payload=True,
            )
            for small, big in zip(shortlist, rerank, strict=True)
        ]
        return self._query(collection, requests)

    # -- lifecycle ------------------------------------------------------------------------

    def swap_alias(self, alias: str, collection: str) -> None:
        if collection not in self._collections():
            raise collection_not_found(collection, self._collections())
        if alias in self._collections():
            raise Conflict(f"'{alias}' is a collection, not an alias: choose another alias name")
        self._write_aliases({**self._aliases(), alias: collection})

    def drop_collection(self, collection: str) -> None:
        """Remove the shard directory and, as Qdrant does, the aliases that pointed at it."""
        if collection not in self._collections():
            raise collection_not_found(collection, self._collections())
        shard = self._shards.pop(collection, None)
        if shard is not None:
            shard.close()
        self._dirty.discard(collection)
        shutil.rmtree(self._root / collection)
        aliases = self._aliases()
        if collection in aliases.values():
            self._write_aliases({a: c for a, c in aliases.items() if c != collection})

    def close(self) -> None:
        for shard in self._shards.values():
            shard.flush()
            shard.close()
        self._shards.clear()
        self._dirty.clear()
