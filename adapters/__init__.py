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

The protocol they implement (:class:`VectorStore`, :class:`Batch`, :class:`Hit`,
:class:`CollectionInfo`, :class:`VectorField`) lives in the core, :mod:`mrl_compress.store`,
and is re-exported here. The core imports none of these modules; each imports its client
lazily and a missing client raises :class:`~mrl_compress.errors.MissingDependency` naming
the extra.
"""

from __future__ import annotations

from pathlib import Path

from mrl_compress.errors import InvalidInput, NotFound
from mrl_compress.store import (
    Batch,
    CollectionInfo,
    Filter,
    Hit,
    PointId,
    VectorField,
    Vectors,
    VectorStore,
    canonical_uri,
    collection_not_found,
    embedded_path,
    reservoir_sample,
    vector_not_found,
)

__all__ = [
    "Batch",
    "CollectionInfo",
    "Filter",
    "Hit",
    "PointId",
    "VectorField",
    "VectorStore",
    "Vectors",
    "collection_not_found",
    "canonical_uri",
    "connect",
    "is_store_uri",
    "scratch_for",
    "reservoir_sample",
    "vector_not_found",
]


def connect(uri: str, *, existing: bool = False) -> VectorStore:
    """Open the store named by ``uri`` (see the module docstring for the schemes).

    ``existing``: refuse an embedded store's path where nothing is (the CLI's commands that
    read a collection: a mistyped path would otherwise open a new, empty store there).
    """
    scheme, _, rest = uri.partition(":")
    path = embedded_path(uri)
    if existing and path is not None and not path.exists():
        raise NotFound(f"no store at {uri}: check the path")
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


def scratch_for(uri: str, folder: str | Path) -> VectorStore:
    """An embedded store of the engine behind ``uri``, in ``folder``, to build candidates in
    (``mrl-compress plan``): a Qdrant Edge shard for any Qdrant target, Milvus Lite for a
    Milvus one. What it measures is the same engine's own quantizers, not an imitation."""
    scheme = uri.partition(":")[0]
    if scheme == "milvus":
        return connect(f"milvus:{Path(folder) / 'plan.db'}")
    if scheme in ("qdrant", "qdrants", "qdrant-local", "http", "https", "edge"):
        return connect(f"edge:{Path(folder) / 'edge'}")
    return connect(uri)  # unknown schemes: connect says what it expected


def is_store_uri(source: str) -> bool:
    return source.partition(":")[0] in ("qdrant", "qdrants", "qdrant-local", "edge", "milvus")
