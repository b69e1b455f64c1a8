"""Qdrant through qdrant-client: a server (``qdrant://``, ``qdrants://``) or its local mode.

=====================================  =====================================================
URI                                    client
=====================================  =====================================================
``qdrant://host:6333``                 ``QdrantClient(url="http://host:6333")``
``qdrants://host:6333``                ``QdrantClient(url="https://host:6333")``
``qdrant-local:./dir``                 ``QdrantClient(path="./dir")`` (local mode, on disk)
``qdrant-local::memory:``              ``QdrantClient(location=":memory:")``
=====================================  =====================================================

The API key comes from ``QDRANT_API_KEY`` only: a key written in the URI would end up in shell
history and logs, so such a URI is refused. A path after ``host:port`` (``/docs``) names a
collection for the CLI and is ignored here.

Compressed outputs become named vectors of the same points (``create_vector_name``, server
>= 1.18 and local mode), and two-stage search runs inside the engine with the Query API:
a ``prefetch`` on the small field, then the full vector rescoring that shortlist
(https://qdrant.tech/documentation/concepts/hybrid-queries/#multi-stage-queries).

The pure helpers below (vector fields from a config, filters, query checks, conversion of
rows, scroll pages, ``describe``'s answer, the two-stage prefetches) are shared with
:mod:`mrl_compress.adapters.qdrant_edge`, which speaks the same engine in-process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from itertools import chain
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from mrl_compress import quantizers, store
from mrl_compress.errors import Conflict, InvalidInput, MrlCompressError, StoreError, require
from mrl_compress.outputs import Output, SparseBatch
from mrl_compress.quantizers import Quantizer
from mrl_compress.store import Batch, CollectionInfo, Filter, Hit, PointId, VectorField, Vectors

T = TypeVar("T")

IN_PLACE_SINCE = (1, 18)
"""First Qdrant server release with ``create_vector_name`` (adding a vector to a collection)."""
ACORN_SINCE = (1, 16)
"""First Qdrant server release with ACORN filtered search (``SearchParams.acorn``)."""
TRIES = 3
BACKOFF_S = (0.2, 0.6)
WRITE_CHUNK = 256
TURBO_SINCE = (1, 18)
"""First Qdrant server release with TurboQuant."""
BINARY_ENCODINGS_SINCE = (1, 15)
"""First Qdrant server release with 1.5- and 2-bit binary codes and scalar query encodings."""
TURBO_BITS = {1.0: "bits1", 1.5: "bits1_5", 2.0: "bits2", 4.0: "bits4", 8.0: "bits8"}
BINARY_BITS = {1.0: "one_bit", 1.5: "one_and_half_bits", 2.0: "two_bits"}
QUERY_ENCODINGS = {"q8": "scalar8bits", "q4": "scalar4bits"}
"""The scheme's spellings -> the values of Qdrant's enums (qdrant-client's ``.value`` and the
strings of Edge's ``edge_config.json`` alike)."""

# ---------------------------------------------------------------------------------------------
# Pure helpers, shared with the Edge adapter (both speak Qdrant's data model).
# ---------------------------------------------------------------------------------------------


def distance_name(engine_distance: Any) -> str:
    """``Distance.COSINE`` / ``"Cosine"`` -> ``"cosine"`` (the protocol's spelling)."""
    return str(getattr(engine_distance, "value", engine_distance)).lower()


def default_vector(collection: str, fields: Mapping[str, VectorField], name: str | None) -> str:
    """The dense field to read: ``name``, else the unnamed ``""``, else the only dense one.

    LangChain and most applications keep their full vector as the unnamed default, and it
    stays the "full" vector after compressed fields are added beside it.
    """
    if name is None and "" in fields and fields[""].kind == "dense":
        return ""
    if name is not None and name not in fields:
        raise store.vector_not_found(collection, name, list(fields))
    info = CollectionInfo(collection, 0, dict(fields))
    return info.dense(name).name


def rerank_vector(
    collection: str,
    fields: Mapping[str, VectorField],
    name: str | None,
    stage1: str,
    queries: Any,
) -> str:
    """The full (rerank) field of a two-stage search: ``name``, else found by the queries' size.

    Without ``name``: the one dense field besides ``stage1`` whose size is the queries'
    dimension (the unnamed ``""`` when it is one of several such); with no such field,
    :func:`default_vector` (whose field then reports the dimension mismatch). Several dense
    fields and no single match: :class:`InvalidInput` asking for ``full_vector``.
    """
    if name is not None:
        return default_vector(collection, fields, name)
    shape = np.shape(queries)
    dim = shape[-1] if shape else None
    dense = [n for n, f in fields.items() if f.kind == "dense"]
    same = [n for n in dense if fields[n].size == dim and n != stage1]
    if len(same) == 1:
        return same[0]
    if "" in same:
        return ""
    if not same and (len(dense) == 1 or "" in dense):
        return default_vector(collection, fields, None)
    sizes = ", ".join(
        f"'{n}' ({f.size}-d)" if f.kind == "dense" else f"'{n}' (sparse)" for n, f in fields.items()
    )
    raise InvalidInput(
        f"cannot tell which vector of '{collection}' is the full one for {dim}-d queries "
        f"(fields: {sizes}): pass full_vector"
    )


def fields_of(params: Any) -> dict[str, VectorField]:
    """The vector fields of a collection's ``config.params`` (sync and async clients alike)."""
    dense = params.vectors
    if dense is not None and not isinstance(dense, dict):
        dense = {"": dense}
    return vector_fields(dense, params.sparse_vectors)


def vector_fields(dense: Mapping[str, Any] | None, sparse: Iterable[str] | None
                  ) -> dict[str, VectorField]:
    """The fields of a collection from the params of its dense vectors (objects of
    qdrant-client's models, or the dicts of Edge's ``edge_config.json``) and the names of its
    sparse ones."""
    fields = {
        name: VectorField(name, "dense", int(config_value(p, "size")),
                          distance_name(config_value(p, "distance")),
                          quantization_of(config_value(p, "quantization_config")))
        for name, p in (dense or {}).items()
    }
    for name in sparse or {}:
        fields[name] = VectorField(name, "sparse", None, None)
    return fields


def config_value(config: Any, key: str) -> Any:
    """``key`` of a config read from qdrant-client (an object) or from Edge (a dict)."""
    return config.get(key) if isinstance(config, dict) else getattr(config, key, None)


def field_of(collection: str, fields: Mapping[str, VectorField], name: str) -> VectorField:
    if name not in fields:
        raise store.vector_not_found(collection, name, list(fields))
    return fields[name]


def quantizable(collection: str, fields: Mapping[str, VectorField], name: str) -> VectorField:
    """The dense field ``name``, whose quantizer :meth:`set_quantizer` sets (NotFound when
    there is none; a sparse one has no quantizer)."""
    field = field_of(collection, fields, name)
    if field.kind != "dense":
        raise InvalidInput(f"vector '{name}' of '{collection}' is sparse: only dense "
                           "vectors have a quantizer")
    return field


def same_fields(collection: str, have: Mapping[str, VectorField],
                fields: Sequence[VectorField]) -> None:
    """``create_collection`` of an existing collection: a no-op with the same fields (a
    resumed migration), Conflict with others."""
    if dict(have) != {f.name: f for f in fields}:
        raise Conflict(
            f"collection '{collection}' already exists with other vector fields: "
            "drop it or choose another name"
        )


def check_queries(field: VectorField, queries: Vectors) -> Vectors:
    """Queries that fit ``field``: sparse batches for sparse fields, (n, size) for dense."""
    if field.kind == "sparse":
        if not isinstance(queries, SparseBatch):
            raise InvalidInput(
                f"vector '{field.name}' is sparse: pass its queries as a SparseBatch, "
                f"not a {type(queries).__name__}"
            )
        return queries
    if isinstance(queries, SparseBatch):
        raise InvalidInput(f"vector '{field.name}' is dense: pass its queries as an array")
    array = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    if array.ndim != 2 or array.shape[1] != field.size:
        raise InvalidInput(
            f"queries for vector '{field.name}' have shape {tuple(array.shape)}; "
            f"the field holds {field.size}-d vectors"
        )
    return array


def sparse_rows(batch: SparseBatch) -> list[tuple[list[int], list[float]]]:
    """(indices, values) per row, zero padding dropped (Qdrant stores only non-zeros)."""
    rows = []
    for i in range(len(batch)):
        indices, values = batch.row(i)
        rows.append((indices.astype(int).tolist(), values.astype(float).tolist()))
    return rows


def vector_rows(values: Vectors, sparse: Callable[[list[int], list[float]], Any]) -> list[Any]:
    """One engine value per row: a list of floats, or ``sparse(indices, values)``."""
    if isinstance(values, SparseBatch):
        return [sparse(i, v) for i, v in sparse_rows(values)]
    return np.atleast_2d(np.asarray(values, dtype=np.float32)).tolist()


PointVector = Callable[[Vectors], list[Any]]
"""A store's conversion of checked rows to its engine's values (``vector_rows`` with its
sparse vector type)."""


def point_rows(collection: str, fields: Mapping[str, VectorField],
               vectors: Mapping[str, Vectors], point_vector: PointVector) -> dict[str, list[Any]]:
    """The engine's values of each named field's rows, checked against ``fields``."""
    return {
        name: point_vector(check_queries(field_of(collection, fields, name), values))
        for name, values in vectors.items()
    }


def two_stage_rows(
    collection: str,
    fields: Mapping[str, VectorField],
    stage1: str,
    stage1_queries: Vectors,
    queries: Any,
    full_vector: str | None,
    point_vector: PointVector,
) -> tuple[str, list[Any], list[Any]]:
    """(the full field, the stage-1 rows, the full rows) of a two-stage search, each
    query checked against its field (:func:`rerank_vector` finds the full one)."""
    full = rerank_vector(collection, fields, full_vector, stage1, queries)
    shortlist = point_vector(check_queries(field_of(collection, fields, stage1), stage1_queries))
    rerank = point_vector(check_queries(fields[full], queries))
    same_length(len(rerank), len(shortlist))
    return full, shortlist, rerank


def payload_filter(filter: Filter | None, models: Any) -> Any | None:
    """``{"metadata.lang": "en"}`` -> ``Filter(must=[FieldCondition(key, MatchValue)])``.

    Qdrant reads dotted keys as paths into nested payload objects
    (https://qdrant.tech/documentation/concepts/filtering/#nested-key), so the protocol's
    dotted keys pass through unchanged. ``models`` is ``qdrant_client.models`` or
    ``qdrant_edge``: both name these classes alike.
    """
    if not filter:
        return None
    conditions = []
    for key, value in filter.items():
        if not isinstance(value, (str, int, bool)):
            raise InvalidInput(
                f"filter value for '{key}' is a {type(value).__name__}; Qdrant matches "
                "exact strings, integers and booleans"
            )
        conditions.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    return models.Filter(must=conditions)


def has_vector(models: Any, name: str) -> Any:
    """The condition "the point holds vector ``name``" (Edge takes the name positionally)."""
    if getattr(models, "__name__", "") == "qdrant_edge":
        return models.HasVectorCondition(name)
    return models.HasVectorCondition(has_vector=name)


def holding_all(models: Any, names: Sequence[str]) -> Any:
    """A filter keeping the points that hold every vector of ``names``."""
    return models.Filter(must=[has_vector(models, n) for n in names])


def lacking_any(models: Any, names: Sequence[str]) -> Any | None:
    """A filter keeping the points that lack at least one vector of ``names`` (None: all)."""
    if not names:
        return None
    return models.Filter(should=[models.Filter(must_not=[has_vector(models, n)])
                                 for n in names])  # fmt: skip


def unsynced(models: Any, stage1: str, where: Any | None) -> Any:
    """The points that match ``where`` (a payload filter, or None) and lack ``stage1``:
    the second prefetch of a two-stage search (see :func:`two_stage_prefetches`)."""
    return models.Filter(must=None if where is None else [where],
                         must_not=[has_vector(models, stage1)])  # fmt: skip


def two_stage_prefetches(
    models: Any,
    field: VectorField,
    small: Any,
    big: Any,
    full: str,
    k: int,
    oversample: int,
    where: Any | None,
    using: Callable[[Any, str], dict[str, Any]],
    lacking: bool = True,
    rescore: float | None = None,
    acorn: bool = True,
) -> list[Any]:
    """The prefetches of a two-stage search, rescored together by the full vector.

    1. ``k * oversample`` candidates on the small field ``field`` (the shortlist);
    2. with ``lacking``: the ``k`` nearest by the full vector among the points that lack
       ``field`` — written, or re-written (an upsert replaces all of a point's vectors),
       after the migration and not synced yet. Every such point that belongs in the final
       top ``k`` is among these ``k``, so a write is found by the next search, not after a
       sync. How the engine searches them depends on how many there are (its estimate):
       few (below its full-scan threshold, ~6,500 384-d vectors per segment), all of them
       exactly, found by checking every point (a ``must_not`` ``HasVector`` filter has no
       index to start from); more, the full vector's HNSW graph with the filter, which
       found 0.16 of their true top 10 at 10 % of 100k points on Qdrant Edge — with
       ``acorn`` (ACORN: the graph walked through neighbours' neighbours, Qdrant >= 1.16,
       up to 40 % of the points) 0.98, and the two-stage recall@10 of an exact search of
       them (docs/benchmarks.md, "Two-stage search with unsynced points").

    ``using(query, name)`` gives each client's spelling of the query on the field ``name``
    (qdrant-client: ``query=``, ``using=``; Edge: ``query=Query.Nearest(..., using=)``).
    ``rescore``: how a quantized ``field`` scores the shortlist (:func:`shortlist_params`).
    """
    shortlist = models.Prefetch(
        limit=k * oversample, filter=where, params=shortlist_params(models, field, rescore),
        **using(small, field.name),
    )  # fmt: skip
    if not lacking:
        return [shortlist]
    params = models.SearchParams(acorn=models.AcornSearchParams(enable=True)) if acorn else None
    return [
        shortlist,
        models.Prefetch(limit=k, filter=unsynced(models, field.name, where), params=params,
                        **using(big, full)),
    ]  # fmt: skip


def client_query(query: Any, name: str) -> dict[str, Any]:
    """qdrant-client's spelling of a query on the field ``name`` (``""``: the default)."""
    return {"query": query, "using": name or None}


def langchain_layout(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """CollectionInfo fields for a langchain-qdrant payload (``page_content``, ``metadata``)."""
    if payload and "page_content" in payload and "metadata" in payload:
        return {"langchain": "qdrant", "text_key": "page_content", "metadata_key": "metadata"}
    return {}


def collection_info(collection: str, count: int, fields: dict[str, VectorField],
                    aliases: Mapping[str, str], first: Sequence[Any]) -> CollectionInfo:
    """What ``describe`` says of ``collection``: ``aliases`` is the store's alias table
    (an alias lists itself among its collection's, as Edge and Milvus do), ``first`` a
    scroll of one point, whose payload tells the LangChain layout."""
    target = aliases.get(collection, collection)
    layout = langchain_layout(first[0].payload if first else None)
    return CollectionInfo(collection, int(count), fields,
                          aliases=[a for a, name in aliases.items() if name == target], **layout)


def needs_field(collection: str, fields: Mapping[str, VectorField], output: Output) -> bool:
    """False when ``output`` already has its field; :class:`Conflict` when the name is taken."""
    found = fields.get(output.name)
    if found is None:
        return True
    if found.kind == output.kind and (output.kind == "sparse" or found.size == output.size):
        return False
    have = f"{found.kind}, {found.size} dims" if found.kind == "dense" else "sparse"
    want = f"{output.kind}, {output.size} dims" if output.kind == "dense" else "sparse"
    raise Conflict(
        f"collection '{collection}' already has vector '{output.name}' ({have}); the "
        f"compressor writes {want}: drop that field or rename the output"
    )


def shortlist_params(models: Any, field: VectorField, rescore: float | None = None) -> Any | None:
    """Search params of a search (or a stage-1 prefetch) on ``field``: how a quantized
    field's candidates are scored (:meth:`mrl_compress.store.VectorStore.search`).

    ``rescore`` None: by the codes alone, no re-scoring by the field's float vectors. For a
    stage-1 shortlist that re-scoring only reorders each segment's candidates with the
    default oversampling (1), and stage 2 re-scores the shortlist by the full vector anyway;
    skipping it for int8: Edge at 1M, mrl_128 x5, +7-8 % q/s at the same recall@10 in two
    runs (docs/benchmarks.md). (Edge 0.9 scored by the codes alone when no params were sent
    too: same recall@10 with and without ``rescore=False`` for every quantizer, 3k and 8k
    points.) A number ``x``: the ``limit * x`` best by the codes, re-scored by the float
    vectors (``rescore=True, oversampling=x``). Unquantized and sparse fields: None, the
    engine's defaults. The HNSW beam stays the engine's (100): a beam as narrow as a
    50-point shortlist was 1.24x faster at 1M but lost a tenth of full search's recall@10
    (bench/results/history.md, fifth session).
    """
    if field.kind != "dense" or field.quantization is None:
        return None
    x = store.check_rescore(rescore)
    codes = (models.QuantizationSearchParams(rescore=False) if x is None
             else models.QuantizationSearchParams(rescore=True, oversampling=x))  # fmt: skip
    return models.SearchParams(quantization=codes)


def quantization_of(config: Any) -> str | None:
    """The scheme's name (:mod:`mrl_compress.quantizers`) of a vector's quantization config:
    an object of qdrant-client's models, or the dict of Edge's ``edge_config.json``; None
    without one.

    scalar -> ``int8``; binary (encoding, query_encoding) -> ``binary1``/``1.5``/``2``
    with ``-q8``/``-q4`` for scalar query encodings (``binary``/``default``: as the codes);
    turbo (bits) -> ``turbo1`` ... ``turbo8``, no bits -> ``turbo4`` (Edge 0.9: the same
    recall@10 as ``bits4``, 0.946 at 3k points, 0.942/0.941 at 8k); product (compression
    ``xN``) -> ``pqN``. A value this release does not know gives None.
    """
    if config is None:
        return None

    def part(obj: Any, key: str) -> Any:
        value = config_value(obj, key)
        return None if value is None else getattr(value, "value", value)

    scalar, binary, turbo, product = (part(config, key)
                                      for key in ("scalar", "binary", "turbo", "product"))
    name: str | None = None
    if scalar is not None:
        name = "int8"
    elif binary is not None:
        bits = _key_of(BINARY_BITS, part(binary, "encoding") or "one_bit")
        query = _key_of(QUERY_ENCODINGS, part(binary, "query_encoding"))
        if bits is not None:
            name = f"binary{bits:g}" + (f"-{query}" if query else "")
    elif turbo is not None:
        bits = _key_of(TURBO_BITS, part(turbo, "bits") or "bits4")
        name = None if bits is None else f"turbo{bits:g}"
    elif product is not None:
        ratio = str(part(product, "compression") or "").lower().lstrip("x")
        name = f"pq{ratio}"
    try:
        return None if name is None else quantizers.parse(name).name
    except InvalidInput:
        return None


def _key_of(table: Mapping[Any, str], value: Any) -> Any | None:
    wanted = None if value is None else str(value).lower()
    return next((key for key, v in table.items() if v == wanted), None)


def offered(engine: Any, version: tuple[int, ...] | None = None) -> list[str]:
    """The names of :func:`mrl_compress.quantizers.names` that ``engine`` (``qdrant_edge``
    or ``qdrant_client.models``) exposes, and a server at ``version`` runs (None: Edge,
    whose engine is the installed package itself)."""
    edge = getattr(engine, "__name__", "") == "qdrant_edge"

    def has(enum: str, value: str) -> bool:
        found = getattr(engine, enum, None)
        if found is None:
            return False
        if edge:  # Edge's enums: attributes named Bits1_5, OneAndHalfBits, Scalar8Bits, X16
            return edge_enum_name(value) in dir(found)
        return value in {member.value for member in found}

    def old(since: tuple[int, ...]) -> bool:
        return version is not None and version < since

    out = []
    for name in quantizers.names():
        q = quantizers.parse(name)
        if q.family == "turbo":
            ok = not old(TURBO_SINCE) and has("TurboQuantBitSize", TURBO_BITS[q.bits])
        elif q.family == "binary":
            plain = q.bits == 1 and q.query is None
            ok = (plain or not old(BINARY_ENCODINGS_SINCE)) and (
                plain or (has("BinaryQuantizationEncoding", BINARY_BITS[q.bits]) and (
                    q.query is None
                    or has("BinaryQuantizationQueryEncoding", QUERY_ENCODINGS[q.query]))))
        elif q.family == "pq":
            ok = has("CompressionRatio", f"x{round(32 / q.bits)}")
        else:
            ok = True
        if ok:
            out.append(name)
    return out


def edge_enum_name(value: str) -> str:
    """An enum value's attribute name in qdrant_edge: ``bits1_5`` -> ``Bits1_5``,
    ``one_and_half_bits`` -> ``OneAndHalfBits``, ``scalar8bits`` -> ``Scalar8Bits``."""
    special = {"one_bit": "OneBit", "one_and_half_bits": "OneAndHalfBits",
               "two_bits": "TwoBits", "scalar8bits": "Scalar8Bits", "scalar4bits": "Scalar4Bits"}
    return special.get(value, value[:1].upper() + value[1:])


def client_quantization(models: Any, q: Quantizer) -> Any | None:
    """qdrant-client's ``quantization_config`` for ``q`` (None for float32), codes in RAM."""
    if q.family == "float32":
        return None
    if q.family == "int8":
        return models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, always_ram=True))  # fmt: skip
    if q.family == "binary":
        encoding = None if q.bits == 1 else models.BinaryQuantizationEncoding(BINARY_BITS[q.bits])
        query = (None if q.query is None
                 else models.BinaryQuantizationQueryEncoding(QUERY_ENCODINGS[q.query]))
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(
            always_ram=True, encoding=encoding, query_encoding=query))  # fmt: skip
    if q.family == "turbo":
        return models.TurboQuantization(turbo=models.TurboQuantQuantizationConfig(
            always_ram=True, bits=models.TurboQuantBitSize(TURBO_BITS[q.bits])))  # fmt: skip
    ratio = models.CompressionRatio(f"x{round(32 / q.bits)}")
    return models.ProductQuantization(product=models.ProductQuantizationConfig(
        always_ram=True, compression=ratio))  # fmt: skip


def vector_of(stored: Any, name: str) -> Any:
    """A record's vector ``name``: Qdrant returns a bare list when only ``""`` is present."""
    if isinstance(stored, dict):
        return stored.get(name)
    return stored if name == "" else None


def read_names(
    collection: str, fields: Mapping[str, VectorField], vector: str | None, more: Sequence[str]
) -> list[str]:
    """The dense fields one read asks for: ``vector`` (or the default) first, then ``more``."""
    names = [default_vector(collection, fields, vector)]
    for name in more:
        if field_of(collection, fields, name).kind != "dense":
            raise InvalidInput(f"vector '{name}' of '{collection}' is sparse: only dense "
                               "fields can be read")
        if name not in names:
            names.append(name)
    return names


def to_batch(
    collection: str,
    records: Sequence[Any],
    names: Sequence[str],
    fields: Mapping[str, VectorField],
    next_offset: Any,
    with_payload: bool = True,
) -> Batch:
    """Records (Qdrant or Edge) with the dense vectors ``names`` -> a :class:`Batch`.

    The engines hand vectors back as lists of Python floats; ``np.fromiter`` over the
    chained rows converts them about 1.7x faster than ``np.asarray`` on the nested lists.
    """
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for record in records:
        stored = record.vector
        for name, column in columns.items():
            value = vector_of(stored, name)
            if value is None:
                raise StoreError(
                    f"point {record.id!r} of '{collection}' has no vector '{name}': "
                    "every point must carry the vector being read"
                )
            column.append(value)
    matrices = {}
    for name, column in columns.items():
        size = fields[name].size or 0
        flat = np.fromiter(chain.from_iterable(column), dtype=np.float32,
                           count=len(column) * size)  # fmt: skip
        matrices[name] = flat.reshape(len(column), size)
    return Batch(
        ids=[point_id(record.id) for record in records],
        vectors=matrices[names[0]],
        # without payloads, skip the engine's per-record payload conversion
        payloads=[dict(record.payload or {}) for record in records] if with_payload
        else [{} for _ in records],
        next_offset=None if next_offset is None else point_id(next_offset),
        fields=matrices,
    )


def pages(
    scroll: Callable[[Any], tuple[Sequence[Any], Any]], offset: Any = None
) -> Iterator[tuple[Sequence[Any], Any]]:
    """A scroll from ``offset`` to the end: each non-empty page of records with the offset
    after it (None after the last). ``scroll(offset)`` is one request, as Qdrant and Edge
    answer it: (records, the offset to continue from or None)."""
    while True:
        records, offset = scroll(offset)
        if records:
            yield records, offset
        if offset is None:
            return


def point_id(raw: Any) -> PointId:
    """An engine's point id as the protocol's int or str: Qdrant Edge hands UUID ids back as
    ``uuid.UUID`` objects (qdrant-client as strings), which neither match the ids a caller
    passes nor go into a JSON checkpoint."""
    return raw if isinstance(raw, int) else str(raw)


def in_order(records: Sequence[Any], ids: Sequence[PointId]) -> list[Any]:
    """``records`` (retrieved by id, in the engine's order) in the order of ``ids``."""
    by_id = {point_id(record.id): record for record in records}
    return [by_id[pid] for pid in ids if pid in by_id]


def to_hits(points: Sequence[Any]) -> list[Hit]:
    return [Hit(id=point_id(p.id), score=float(p.score), payload=dict(p.payload or {}))
            for p in points]


def same_length(*sizes: int) -> None:
    if len(set(sizes)) > 1:
        raise InvalidInput(f"ids, vectors and payloads have different lengths: {sizes}")


def parse_version(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


# ---------------------------------------------------------------------------------------------
# qdrant-client
# ---------------------------------------------------------------------------------------------


def client_settings(uri: str) -> tuple[bool, dict[str, Any], str]:
    """(local?, QdrantClient kwargs, where) for a store URI; the key only from the env."""
    scheme, _, rest = uri.partition(":")
    if scheme == "qdrant-local":
        if rest in (":memory:", ""):
            return True, {"location": ":memory:"}, "memory"
        return True, {"path": rest}, rest
    if scheme not in ("qdrant", "qdrants", "http", "https"):
        raise InvalidInput(f"not a Qdrant URI: '{uri}'")
    parts = urlsplit(uri)
    if parts.username or parts.password or "api_key" in parts.query.lower():
        raise InvalidInput(
            "do not put the Qdrant API key in the URI: set the environment variable "
            "QDRANT_API_KEY instead"
        )
    secure = scheme in ("qdrants", "https")
    url = f"{'https' if secure else 'http'}://{parts.hostname}:{parts.port or 6333}"
    settings = {"url": url, "api_key": os.environ.get("QDRANT_API_KEY") or None}
    return False, settings, url


def is_transient(error: BaseException) -> bool:
    """Connection-level failures worth another try (refused, reset, timed out)."""
    from qdrant_client.http.exceptions import ResponseHandlingException

    return isinstance(error, (ResponseHandlingException, ConnectionError, TimeoutError))


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class QdrantStore:
    """A Qdrant server or qdrant-client local mode behind :class:`VectorStore`.

    ``client`` lets an application that already holds a ``QdrantClient`` (for example a
    ``langchain_qdrant.QdrantVectorStore.client``) share it: local mode locks its folder to
    one client per process.

    :meth:`atwo_stage_search` is the async twin of :meth:`two_stage_search`: on a server it
    speaks through an ``AsyncQdrantClient`` (made on first use, or ``async_client``); local
    mode cannot open its folder from a second client, so there it runs the sync search in a
    worker thread.
    """

    def __init__(
        self, uri: str, client: Any | None = None, async_client: Any | None = None
    ) -> None:
        require("qdrant_client", "qdrant")
        from qdrant_client import QdrantClient, models

        self.uri = uri
        self._models = models
        self._local, settings, self._where = client_settings(uri)
        if client is None:
            if not self._local:
                settings["check_compatibility"] = False  # we probe the version ourselves
            client = QdrantClient(**settings)
        self._client = client
        self._async_client = async_client
        self._searched: dict[str, dict[str, VectorField]] = {}
        """Fields of the collections searched, so that a search costs one request, not four
        (list collections, list aliases, read the collection, query). See _search_fields."""
        self._version = parse_version(self._call("ask the version", lambda: client.info().version))
        self._acorn = not self._local and self._version >= ACORN_SINCE
        """ACORN for the unsynced points' prefetch: on a server that has it (local mode
        searches exactly, and warns about search params it ignores)."""

    # -- plumbing -------------------------------------------------------------------------

    def _call(self, what: str, action: Callable[[], T]) -> T:
        """Run one client call; retry transient failures on a server, then one clear error."""
        for attempt in range(TRIES):
            try:
                return action()
            except MrlCompressError:
                raise
            except Exception as error:  # the client raises many types: translate them once
                time.sleep(self._backoff(what, error, attempt))
        raise AssertionError("unreachable")

    def _backoff(self, what: str, error: Exception, attempt: int) -> float:
        """Seconds to wait before trying ``what`` again after ``error`` failed attempt
        ``attempt`` (0, 1, ...); the one-line StoreError instead when no try is left: local
        mode and errors that are not transient get one, a server ``TRIES``."""
        if self._local or not is_transient(error):
            raise StoreError(f"Qdrant could not {what}: {one_line(error)}") from error
        if attempt + 1 == TRIES:
            raise StoreError(
                f"cannot reach Qdrant at {self._where} after {TRIES} tries: {one_line(error)}"
            ) from error
        return BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]

    def _collections(self) -> list[str]:
        listed = self._call("list collections", self._client.get_collections)
        return [c.name for c in listed.collections]

    def _aliases(self) -> dict[str, str]:
        listed = self._call("list aliases", self._client.get_aliases)
        return {a.alias_name: a.collection_name for a in listed.aliases}

    def _exists(self, collection: str) -> bool:
        return collection in self._collections() or collection in self._aliases()

    def _require(self, collection: str) -> None:
        if not self._exists(collection):
            raise store.collection_not_found(collection, self._collections())

    def _fields(self, collection: str) -> dict[str, VectorField]:
        self._require(collection)
        params = self._call(
            f"read collection '{collection}'", lambda: self._client.get_collection(collection)
        ).config.params
        return fields_of(params)

    def _search_fields(self, collection: str, *needed: str | None) -> dict[str, VectorField]:
        """The fields of ``collection``, read once per store and kept for later searches.

        Read again when a field a search needs is not among them (another process added it,
        or pointed an alias elsewhere). This store's own schema changes forget them;
        :meth:`refresh` forgets them too.
        """
        fields = self._searched.get(collection)
        if fields is None or any(name and name not in fields for name in needed):
            fields = self._searched[collection] = self._fields(collection)
        return fields

    def refresh(self) -> None:
        """Forget the fields kept for searching, so other processes' changes are seen."""
        self._searched.clear()

    def _point_vector(self, values: Vectors) -> list[Any]:
        models = self._models
        return vector_rows(values, lambda i, v: models.SparseVector(indices=i, values=v))

    # -- reading --------------------------------------------------------------------------

    def describe(self, collection: str) -> CollectionInfo:
        fields = self._fields(collection)
        client = self._client
        count = self._call("count points", lambda: client.count(collection, exact=True).count)
        first, _ = self._call(
            "read a point",
            lambda: client.scroll(collection, limit=1, with_payload=True, with_vectors=False),
        )
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
        """Scroll in point-id order (Qdrant's scroll order): ``next_offset`` is the next id."""
        fields = self._fields(collection)
        names = read_names(collection, fields, vector, vectors)
        for name in missing:
            field_of(collection, fields, name)  # NotFound for a missing field
        where = lacking_any(self._models, missing)
        scroll = partial(self._client.scroll, collection, limit=batch_size,
                         with_payload=with_payload, with_vectors=names, scroll_filter=where)
        for records, after in pages(self._scroll(collection, scroll), offset):
            yield to_batch(collection, records, names, fields, after, with_payload)

    def point_ids(self, collection: str, batch_size: int = 2048) -> Iterator[list[PointId]]:
        self._require(collection)
        scroll = partial(self._client.scroll, collection, limit=batch_size, with_payload=False,
                         with_vectors=False)
        for records, _ in pages(self._scroll(collection, scroll)):
            yield [point_id(record.id) for record in records]

    def _scroll(self, collection: str, scroll: Callable[..., Any]
                ) -> Callable[[Any], tuple[Sequence[Any], Any]]:
        """One request of :func:`pages`: ``scroll`` (the client's, all but the offset set)."""
        return lambda offset: self._call(f"scroll '{collection}'", partial(scroll, offset=offset))

    def count_having(self, collection: str, names: Sequence[str]) -> int:
        models = self._models
        fields = self._fields(collection)
        for name in names:
            field_of(collection, fields, name)  # NotFound for a missing field
        where = holding_all(models, names)
        return int(self._call(
            f"count points of '{collection}'",
            lambda: self._client.count(collection, count_filter=where, exact=True).count,
        ))  # fmt: skip

    def retrieve(
        self,
        collection: str,
        ids: Sequence[PointId],
        vectors: Sequence[str],
        with_payload: bool = True,
    ) -> Batch:
        fields = self._fields(collection)
        names = read_names(collection, fields, vectors[0] if vectors else None, vectors[1:])
        records = self._call(
            f"read points of '{collection}'",
            partial(self._client.retrieve, collection, list(ids), with_payload=with_payload,
                    with_vectors=names),
        )  # fmt: skip
        return to_batch(collection, in_order(records, ids), names, fields, None, with_payload)

    def sample(self, collection: str, vector: str | None, n: int, seed: int = 0) -> np.ndarray:
        batches = self.iter_batches(collection, vector, batch_size=1024, with_payload=False)
        return store.reservoir_sample(batches, n, seed)

    # -- schema ---------------------------------------------------------------------------

    def _distance(self, name: str | None) -> Any:
        table = {d.value.lower(): d for d in self._models.Distance}
        if (name or "cosine") not in table:
            raise InvalidInput(f"unknown distance '{name}': expected one of {sorted(table)}")
        return table[name or "cosine"]

    def create_collection(
        self,
        collection: str,
        fields: Sequence[VectorField],
        like: str | None = None,
    ) -> None:
        """A new collection; a repeated call with the same fields is a no-op (resumable)."""
        self._searched.clear()
        models = self._models
        if self._exists(collection):
            same_fields(collection, self._fields(collection), fields)
            return
        dense: dict[str, Any] = {
            f.name: models.VectorParams(size=int(f.size or 0), distance=self._distance(f.distance))
            for f in fields
            if f.kind == "dense"
        }
        sparse = {f.name: models.SparseVectorParams() for f in fields if f.kind == "sparse"}
        vectors: Any = dense[""] if list(dense) == [""] else dense
        self._call(
            f"create collection '{collection}'",
            lambda: self._client.create_collection(
                collection, vectors_config=vectors, sparse_vectors_config=sparse or None
            ),
        )
        if like is not None:
            self._copy_payload_indexes(like, collection)

    def _copy_payload_indexes(self, source: str, target: str) -> None:
        self._require(source)
        schema = self._call(
            f"read collection '{source}'", lambda: self._client.get_collection(source)
        ).payload_schema
        for key, index in (schema or {}).items():
            spec = index.params or index.data_type
            self._call(
                f"index payload key '{key}'",
                partial(self._client.create_payload_index, target, key, field_schema=spec),
            )

    def _check_in_place(self) -> None:
        if not self._local and self._version < IN_PLACE_SINCE:
            found = ".".join(map(str, self._version))
            raise StoreError(
                f"Qdrant {found} at {self._where} cannot add a vector to an existing collection "
                "(needs 1.18 or later): upgrade it, or migrate into a new collection and swap "
                "an alias"
            )

    def add_outputs(
        self, collection: str, outputs: Sequence[Output], quantize: str | None = None
    ) -> None:
        """One named vector per output via ``create_vector_name`` (server >= 1.18, local).

        ``quantize`` (a name of :meth:`quantizers`) sets the quantizer of the new dense
        vectors (https://qdrant.tech/documentation/manage-data/quantization/); qdrant-client
        local mode keeps no quantization, so there anything but float32 is refused.
        """
        self._searched.clear()
        wanted = self._quantizer(quantize)
        fields = self._fields(collection)
        todo = [output for output in outputs if needs_field(collection, fields, output)]
        if todo:
            self._check_in_place()
        for output in todo:
            self._create_vector(collection, output)
            if wanted.family != "float32" and output.kind == "dense":
                self._quantize(collection, output.name, wanted)

    def quantizers(self) -> list[str]:
        """Local mode: ``float32`` only (it keeps no quantization). A server: every name of
        the scheme that the installed qdrant-client models and the server's version have
        (TurboQuant from 1.18, 1.5/2-bit binary codes and scalar query encodings from 1.15);
        not run against a server here."""
        if self._local:
            return ["float32"]
        return offered(self._models, self._version)

    def _quantizer(self, name: str | None) -> Quantizer:
        engine = ("qdrant-client local mode (it keeps no quantization)" if self._local
                  else f"Qdrant {'.'.join(map(str, self._version))} at {self._where}")  # fmt: skip
        return store.check_quantizer(name, engine, self.quantizers())

    def set_quantizer(self, collection: str, vector: str, quantize: str | None) -> None:
        """``update_collection`` with the vector's new ``quantization_config`` (``Disabled``
        to remove it); the server keeps the vectors and rebuilds the codes in its optimizer
        (untested here: no server). Local mode: only float32, which changes nothing."""
        wanted = self._quantizer(quantize)
        field = quantizable(collection, self._fields(collection), vector)
        self._searched.clear()
        have = field.quantization or "float32"
        if self._local or have == wanted.name:
            return
        name = self._aliases().get(collection, collection)
        self._quantize(name, vector, wanted)

    def _create_vector(self, collection: str, output: Output) -> None:
        models = self._models
        config: Any
        if output.kind == "sparse":
            config = models.SparseVectorNameConfig(sparse=models.SparseVectorConfig())
        else:
            dense = models.DenseVectorConfig(
                size=output.size, distance=self._distance(output.distance)
            )
            config = models.DenseVectorNameConfig(dense=dense)
        self._call(
            f"add vector '{output.name}' to '{collection}'",
            lambda: self._client.create_vector_name(collection, output.name, config),
        )

    def _quantize(self, collection: str, name: str, quantize: Quantizer) -> None:
        models = self._models
        config = client_quantization(models, quantize) or models.Disabled.DISABLED
        diff = {name: models.VectorParamsDiff(quantization_config=config)}
        self._call(
            f"quantize vector '{name}'",
            lambda: self._client.update_collection(collection, vectors_config=diff),
        )

    # -- writing --------------------------------------------------------------------------

    def upsert(
        self,
        collection: str,
        ids: Sequence[PointId],
        vectors: Mapping[str, Vectors],
        payloads: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        rows = point_rows(collection, self._fields(collection), vectors, self._point_vector)
        same_length(len(ids), *(len(r) for r in rows.values()), len(payloads or ids))
        points = [
            self._models.PointStruct(
                id=pid,
                vector={name: r[i] for name, r in rows.items()},
                payload=payloads[i] if payloads is not None else None,
            )
            for i, pid in enumerate(ids)
        ]
        self._write(f"upsert into '{collection}'", self._client.upsert, collection, points)

    def write_outputs(
        self, collection: str, ids: Sequence[PointId], encoded: Mapping[str, Vectors]
    ) -> None:
        """``update_vectors``: Qdrant replaces only the vectors named, payloads stay as-is."""
        rows = point_rows(collection, self._fields(collection), encoded, self._point_vector)
        same_length(len(ids), *(len(r) for r in rows.values()))
        points = [
            self._models.PointVectors(id=pid, vector={name: r[i] for name, r in rows.items()})
            for i, pid in enumerate(ids)
        ]
        self._write(f"write vectors into '{collection}'", self._client.update_vectors,
                    collection, points)  # fmt: skip

    def _write(self, what: str, write: Callable[..., Any], collection: str,
               points: list[Any]) -> None:
        """``write`` (the client's ``upsert`` or ``update_vectors``) ``WRITE_CHUNK`` points a
        request, each waited for."""
        for start in range(0, len(points), WRITE_CHUNK):
            chunk = points[start : start + WRITE_CHUNK]
            self._call(what, partial(write, collection, chunk, wait=True))

    # -- search ---------------------------------------------------------------------------

    def _query(self, collection: str, requests: list[Any]) -> list[list[Hit]]:
        responses = self._call(
            f"search '{collection}'",
            lambda: self._client.query_batch_points(collection, requests),
        )
        return [to_hits(response.points) for response in responses]

    def search(
        self,
        collection: str,
        vector: str,
        queries: Vectors,
        k: int,
        filter: Filter | None = None,
        rescore: float | None = None,
    ) -> list[list[Hit]]:
        """``rescore``: see :func:`shortlist_params` (the field's quantization as last read)."""
        field = field_of(collection, self._search_fields(collection, vector), vector)
        rows = self._point_vector(check_queries(field, queries))
        where = payload_filter(filter, self._models)
        params = shortlist_params(self._models, field, rescore)
        requests = [
            self._models.QueryRequest(
                query=row, using=vector or None, limit=k, filter=where, with_payload=True,
                params=params,
            )
            for row in rows
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
        unsynced: bool = True,
        rescore: float | None = None,
    ) -> list[list[Hit]]:
        """``prefetch`` ``k * oversample`` on ``stage1``, then rescore by the full vector.

        ``unsynced``: a second prefetch finds the points that lack ``stage1`` by the full
        vector (see :func:`two_stage_prefetches`); other clients write to the collection, so
        it runs on every call. ``rescore``: how a quantized ``stage1`` scores the shortlist
        (:func:`shortlist_params`).
        """
        requests = self._two_stage_requests(
            self._search_fields(collection, stage1, full_vector), collection, queries, stage1,
            stage1_queries, k,
            oversample, full_vector, filter, unsynced, rescore,
        )  # fmt: skip
        return self._query(collection, requests)

    async def atwo_stage_search(
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
        """:meth:`two_stage_search` through ``AsyncQdrantClient`` (local mode: in a thread)."""
        client = self._aclient()
        if client is None:
            return await asyncio.to_thread(
                self.two_stage_search, collection, queries, stage1, stage1_queries, k,
                oversample, full_vector, filter, unsynced, rescore,
            )  # fmt: skip
        if not await self._acall("list collections", lambda: client.collection_exists(collection)):
            raise store.collection_not_found(collection, self._collections())
        info = await self._acall(
            f"read collection '{collection}'", lambda: client.get_collection(collection)
        )
        requests = self._two_stage_requests(
            fields_of(info.config.params), collection, queries, stage1, stage1_queries, k,
            oversample, full_vector, filter, unsynced, rescore,
        )  # fmt: skip
        responses = await self._acall(
            f"search '{collection}'", lambda: client.query_batch_points(collection, requests)
        )
        return [to_hits(response.points) for response in responses]

    def _two_stage_requests(
        self,
        fields: Mapping[str, VectorField],
        collection: str,
        queries: np.ndarray,
        stage1: str,
        stage1_queries: Vectors,
        k: int,
        oversample: int,
        full_vector: str | None,
        filter: Filter | None,
        unsynced: bool = True,
        rescore: float | None = None,
    ) -> list[Any]:
        models = self._models
        full, shortlist, rerank = two_stage_rows(collection, fields, stage1, stage1_queries,
                                                 queries, full_vector, self._point_vector)
        where = payload_filter(filter, models)
        return [
            models.QueryRequest(
                prefetch=two_stage_prefetches(
                    models, fields[stage1], small, big, full, k, oversample, where, client_query,
                    unsynced, rescore, acorn=self._acorn,
                ),
                query=big,
                using=full or None,
                limit=k,
                filter=where,
                with_payload=True,
            )
            for small, big in zip(shortlist, rerank, strict=True)
        ]

    # -- async ----------------------------------------------------------------------------

    def _aclient(self) -> Any | None:
        """The ``AsyncQdrantClient`` for a server (made once); None in local mode."""
        if self._async_client is None and not self._local:
            from qdrant_client import AsyncQdrantClient

            _, settings, _ = client_settings(self.uri)
            self._async_client = AsyncQdrantClient(**settings, check_compatibility=False)
        return self._async_client

    async def _acall(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """:meth:`_call` for coroutines: the same retries and the same one-line errors."""
        for attempt in range(TRIES):
            try:
                return await action()
            except MrlCompressError:
                raise
            except Exception as error:
                await asyncio.sleep(self._backoff(what, error, attempt))
        raise AssertionError("unreachable")

    # -- lifecycle ------------------------------------------------------------------------

    def swap_alias(self, alias: str, collection: str) -> None:
        """Delete and create the alias in one request: Qdrant applies the list atomically."""
        self._searched.clear()
        models = self._models
        if collection not in self._collections():
            raise store.collection_not_found(collection, self._collections())
        actions: list[Any] = []
        if alias in self._aliases():
            actions.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
            )
        create = models.CreateAlias(collection_name=collection, alias_name=alias)
        actions.append(models.CreateAliasOperation(create_alias=create))
        self._call(
            f"point alias '{alias}' at '{collection}'",
            lambda: self._client.update_collection_aliases(actions),
        )

    def delete(self, collection: str, ids: Sequence[PointId]) -> None:
        self._require(collection)
        if not ids:
            return
        selector = self._models.PointIdsList(points=list(ids))
        self._call(
            f"delete from '{collection}'",
            lambda: self._client.delete(collection, points_selector=selector, wait=True),
        )

    def drop_collection(self, collection: str) -> None:
        self._searched.clear()
        if collection not in self._collections():
            raise store.collection_not_found(collection, self._collections())
        self._call(
            f"drop collection '{collection}'",
            lambda: self._client.delete_collection(collection),
        )

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.close()
            self._async_client = None
