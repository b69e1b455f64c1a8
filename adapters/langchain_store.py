"""LangChain: :class:`MatryoshkaVectorStore`, a ``VectorStore`` that writes and searches the
compressed vectors beside the full one.

It wraps a store of this package (:func:`mrl_compress.adapters.connect`), a compressor and the
application's LangChain ``Embeddings``:

- ``add_texts`` / ``add_documents`` embed the texts, check every vector of the call, encode
  them with the compressor and write the full vector and *every* output in one
  ``store.upsert``, in the layout of the LangChain integration that owns the collection
  (langchain-qdrant: payload ``page_content`` + ``metadata``, unnamed vector ``""``;
  langchain-milvus: ``pk``, ``text``, ``vector``, metadata as fields or dynamic fields), so
  ``QdrantVectorStore`` and ``Milvus`` still read every point written here;
- ``similarity_search*`` run the store's two-stage search (shortlist on the small output
  ``stage1``, exact rerank on the full vector);
- ``as_retriever()`` returns the two-stage
  :class:`~mrl_compress.adapters.langchain.MatryoshkaRetriever` configured like the store.

Moving an application over is one line (docs/vectorstore.md)::

    vectorstore = MatryoshkaVectorStore.from_existing(
        "qdrant-local:./qdrant-data", "docs", embeddings, "./docs.mrlc")
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mrl_compress.adapters import connect
from mrl_compress.compressor import Compressor, load
from mrl_compress.errors import Conflict, InvalidInput, MissingDependency, NotFound
from mrl_compress.store import CollectionInfo, Filter, Hit, PointId, VectorField
from mrl_compress.store import VectorStore as Store
from mrl_compress.vectors import valid_rows

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependency(
        "the LangChain vector store needs langchain-core: pip install 'mrl-compress[langchain]'"
    ) from None

if TYPE_CHECKING:
    from mrl_compress.adapters.langchain import MatryoshkaRetriever

ID_KEY = "_mrl_id"
"""Qdrant payload key holding a document id that is not a Qdrant point id (an unsigned integer
or a UUID): the point's id is then ``uuid5(ID_NAMESPACE, id)`` and the id itself is kept here,
so ``get_by_ids`` and search results give it back. langchain-qdrant ignores the key."""
ID_NAMESPACE = uuid.UUID("6f0e1a52-3c3e-5d6b-9c61-6d726c2d6964")

SEARCH_OPTIONS = ("stage1", "oversample", "query_nonzeros")
"""Keyword arguments ``similarity_search*`` accept besides ``k`` and ``filter``."""

MILVUS_TEXT_MAX = 65_535  # langchain-milvus's VARCHAR length for its pk and text fields


@dataclass(frozen=True)
class Layout:
    """Where the collection keeps text, metadata and ids (see :func:`layout_of`)."""

    engine: str
    """``qdrant`` (server, local mode, Edge) or ``milvus``."""
    langchain: str | None
    """The LangChain integration whose layout this is (``qdrant``, ``milvus``) or None."""
    text_key: str
    metadata_key: str | None
    """Payload key of a metadata dict; None: every other payload key is metadata."""


@dataclass(frozen=True)
class Search:
    k: int
    stage1: str
    oversample: int
    query_nonzeros: int | None
    filter: Filter | None


def engine_of(store: Store) -> str:
    return "milvus" if store.uri.partition(":")[0] == "milvus" else "qdrant"


def layout_of(
    info: CollectionInfo, engine: str, text_key: str | None, metadata_key: str | None
) -> Layout:
    """The collection's layout: as given, else as ``describe`` reports it.

    An empty Qdrant collection reports no layout (``describe`` reads it from a point): it
    gets langchain-qdrant's, so that ``QdrantVectorStore`` reads what is written here. A
    collection of neither integration keeps its own payload: the text under ``text_key``
    (default ``text``), the metadata as the other payload keys.
    """
    langchain = info.langchain
    detected_text: str
    detected_metadata: str | None
    if langchain is None and engine == "qdrant" and info.count == 0:
        langchain = "qdrant"
        detected_text, detected_metadata = "page_content", "metadata"
    else:
        detected_text, detected_metadata = info.text_key or "text", info.metadata_key
    return Layout(engine, langchain, text_key or detected_text, metadata_key or detected_metadata)


def full_vector_of(info: CollectionInfo, compressor: Compressor, name: str | None) -> VectorField:
    """The full (dense) vector: ``name``, else ``""``, else langchain-milvus's ``vector``, else
    the one dense field that is no output of the compressor."""
    outputs = {o.name for o in compressor.outputs}
    if name is None:
        dense = [n for n, f in info.fields.items() if f.kind == "dense" and n not in outputs]
        if "" in dense:
            name = ""
        elif info.langchain == "milvus" and "vector" in dense:
            name = "vector"
        elif len(dense) == 1:
            name = dense[0]
        else:
            listed = ", ".join(repr(n) for n in dense) or "none"
            raise InvalidInput(
                f"cannot tell the full vector of '{info.name}' (dense fields besides the "
                f"compressor's outputs: {listed}): pass full_vector"
            )
    field = info.dense(name)
    if field.size != compressor.input_dim:
        raise InvalidInput(
            f"the compressor encodes {compressor.input_dim}-d vectors but '{info.name}' holds "
            f"{field.size}-d ones in '{name}': it was fitted on another collection's vectors"
        )
    return field


def check_outputs(info: CollectionInfo, compressor: Compressor, uri: str) -> None:
    """Every output of ``compressor`` must be a field of the collection, of its kind and size."""
    run = (f"run `mrl-compress migrate --target {uri} --collection {info.name} --compressor "
           "<this artifact>` first")  # fmt: skip
    missing = [o.name for o in compressor.outputs if o.name not in info.fields]
    if missing:
        have = ", ".join(repr(n) for n in info.fields) or "none"
        raise NotFound(
            f"collection '{info.name}' has no field for the compressor's output(s) "
            f"{', '.join(missing)} (it has {have}): {run}"
        )
    for output in compressor.outputs:
        field = info.fields[output.name]
        if field.kind != output.kind or (output.kind == "dense" and field.size != output.size):
            have = f"{field.size}-d" if field.kind == "dense" else "sparse"
            want = f"{output.size}-d" if output.kind == "dense" else "sparse"
            raise InvalidInput(
                f"collection '{info.name}' holds '{output.name}' as {have} vectors but this "
                f"compressor writes {want} ones: it is another artifact than the one migrated "
                f"there; use that one, or {run}"
            )


class MatryoshkaVectorStore(VectorStore):
    """A LangChain ``VectorStore`` over two-stage search on compressed vectors.

    ``store`` is a store from :func:`mrl_compress.adapters.connect` (or its URI), holding
    ``collection`` with the full vector and every output of ``compressor`` (a loaded
    :class:`~mrl_compress.compressor.Compressor` or the path of its artifact): what
    ``mrl-compress migrate`` leaves, or what :meth:`create` / :meth:`from_texts` make.
    A collection without the outputs is refused with a line naming ``mrl-compress migrate``.

    Search settings (``stage1``, ``oversample``, ``query_nonzeros``) mean what they mean for
    :class:`~mrl_compress.adapters.langchain.MatryoshkaRetriever` and can be given per call.
    ``langchain_metadata=True`` adds the metadata keys the integration adds to what it
    returns (langchain-qdrant: ``_id``, ``_collection_name``; langchain-milvus: ``pk``); by
    default a document's metadata is what was written, and its id is ``Document.id``.
    """

    def __init__(
        self,
        store: Store | str,
        collection: str,
        embeddings: Embeddings,
        compressor: Compressor | str | Path,
        *,
        stage1: str | None = None,
        oversample: int = 10,
        query_nonzeros: int | None = None,
        full_vector: str | None = None,
        text_key: str | None = None,
        metadata_key: str | None = None,
        langchain_metadata: bool = False,
    ) -> None:
        if not isinstance(compressor, Compressor):
            # the CPU provider, as MatryoshkaRetriever.from_store: one query per call
            compressor = load(compressor, device="cpu")
        self.store: Store = connect(store) if isinstance(store, str) else store
        self.collection = collection
        self._embeddings = embeddings
        self.compressor = compressor
        self.stage1 = stage1 or compressor.outputs[0].name
        self.oversample = oversample
        self.query_nonzeros = query_nonzeros
        self.langchain_metadata = langchain_metadata
        self._search(4, None, {})  # the settings are checked now, not at the first query
        info = self.store.describe(collection)
        field = full_vector_of(info, compressor, full_vector)
        check_outputs(info, compressor, self.store.uri)
        self.full_vector = field.name
        self.dim = int(field.size or 0)
        self.layout = layout_of(info, engine_of(self.store), text_key, metadata_key)
        written = {self.full_vector, *(o.name for o in compressor.outputs)}
        self._unwritten = [n for n in info.fields if n not in written]
        self._milvus = MilvusColumns(self.store, collection) if self.layout.engine == "milvus" \
            else None  # fmt: skip

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_existing(
        cls,
        store: Store | str,
        collection: str,
        embeddings: Embeddings,
        compressor: Compressor | str | Path,
        **settings: Any,
    ) -> MatryoshkaVectorStore:
        """The vector store of an existing collection that holds the compressor's outputs.

        ``store``: a URI for :func:`~mrl_compress.adapters.connect` (``qdrant-local:./dir``,
        ``qdrant://host:6333``, ``edge:./dir``, ``milvus:./file.db``...) or an open store;
        ``settings``: the keyword arguments of the constructor.
        """
        return cls(store, collection, embeddings, compressor, **settings)

    @classmethod
    def create(
        cls,
        store: Store | str,
        collection: str,
        embeddings: Embeddings,
        compressor: Compressor | str | Path,
        **settings: Any,
    ) -> MatryoshkaVectorStore:
        """A new, empty collection in the LangChain integration's layout, with the full
        vector and one field per output of ``compressor`` (cosine); Conflict if it exists.

        Qdrant (server, local mode, Edge): langchain-qdrant's unnamed vector ``""`` beside
        the outputs' named vectors. Milvus: langchain-milvus's ``pk`` (VARCHAR), ``text``,
        ``vector`` and dynamic fields for the metadata (``Milvus(..., auto_id=False,
        enable_dynamic_field=True)`` reads it), beside the outputs' fields.
        """
        if not isinstance(compressor, Compressor):
            compressor = load(compressor, device="cpu")
        opened: Store = connect(store) if isinstance(store, str) else store
        if collection_exists(opened, collection):
            raise Conflict(
                f"collection '{collection}' already exists: open it with "
                "MatryoshkaVectorStore.from_existing"
            )
        create_collection(opened, collection, compressor)
        return cls(opened, collection, embeddings, compressor, **settings)

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        store: Store | str | None = None,
        collection: str | None = None,
        compressor: Compressor | str | Path | None = None,
        **settings: Any,
    ) -> MatryoshkaVectorStore:
        """Add ``texts`` to ``collection`` of ``store`` (a URI or an open store), creating the
        collection first (:meth:`create`) when it does not exist."""
        if store is None or collection is None or compressor is None:
            raise InvalidInput(
                "MatryoshkaVectorStore.from_texts needs store= (a URI or an open store), "
                "collection= and compressor= (an artifact path or a loaded Compressor)"
            )
        opened: Store = connect(store) if isinstance(store, str) else store
        if collection_exists(opened, collection):
            vectorstore = cls(opened, collection, embedding, compressor, **settings)
        else:
            vectorstore = cls.create(opened, collection, embedding, compressor, **settings)
        vectorstore.add_texts(texts, metadatas, ids=ids)
        return vectorstore

    @property
    def embeddings(self) -> Embeddings:
        return self._embeddings

    # -- writing --------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> list[str]:
        """Embed, check, encode and write ``texts`` in one upsert; returns their ids.

        ``ids`` absent (or None for a text): a new UUID string. Every vector of the call is
        checked before anything is written (its dimension, NaN/inf, all-zero), so a call is
        written whole or not at all. ``batch_size`` texts go to each ``embed_documents`` call.
        """
        texts = list(texts)
        _no_more(kwargs, "add_texts")
        vectors = [v for part in _parts(texts, batch_size)
                   for v in self._embeddings.embed_documents(part)]  # fmt: skip
        return self._write(texts, vectors, metadatas, ids)

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> list[str]:
        """:meth:`add_texts` with ``aembed_documents``; the write runs in a worker thread."""
        texts = list(texts)
        _no_more(kwargs, "aadd_texts")
        vectors = [v for part in _parts(texts, batch_size)
                   for v in await self._embeddings.aembed_documents(part)]  # fmt: skip
        return await asyncio.to_thread(self._write, texts, vectors, metadatas, ids)

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Write ``documents``; ``ids=`` wins over their ``Document.id`` (as in LangChain)."""
        texts, metadatas, ids = _unpack(documents, kwargs)
        return self.add_texts(texts, metadatas, ids=ids, **kwargs)

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        texts, metadatas, ids = _unpack(documents, kwargs)
        return await self.aadd_texts(texts, metadatas, ids=ids, **kwargs)

    def _write(
        self,
        texts: list[str],
        embedded: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, Any] | None] | None,
        ids: Sequence[str | int | None] | None,
    ) -> list[str]:
        n = len(texts)
        if metadatas is not None and len(metadatas) != n:
            raise InvalidInput(f"got {n} texts but {len(metadatas)} metadatas; nothing was written")
        if ids is not None and len(ids) != n:
            raise InvalidInput(f"got {n} texts but {len(ids)} ids; nothing was written")
        if self._unwritten:
            raise InvalidInput(
                f"collection '{self.collection}' has vector field(s) "
                f"{', '.join(repr(n) for n in self._unwritten)} besides the full vector and the "
                "compressor's outputs, which this store cannot compute: its points would lack "
                "them; write through the application that fills them"
            )
        if n == 0:
            return []
        doc_ids = [self._new_id() if i is None else str(i) for i in (ids or [None] * n)]
        if len(set(doc_ids)) != n:
            first = next(i for i in doc_ids if doc_ids.count(i) > 1)
            raise InvalidInput(f"id {first!r} is given twice in one call; nothing was written")
        vectors = checked_vectors(embedded, n, self.dim, self.full_vector)
        point_ids, payloads = [], []
        for i, (doc_id, text) in enumerate(zip(doc_ids, texts, strict=True)):
            metadata = dict((metadatas[i] if metadatas is not None else None) or {})
            point_id, keep_id = self._point_id(doc_id)
            point_ids.append(point_id)
            payloads.append(self._payload(text, metadata, doc_id if keep_id else None))
        encoded = self.compressor.encode(vectors)
        self.store.upsert(
            self.collection, point_ids, {self.full_vector: vectors, **encoded}, payloads
        )
        return doc_ids

    def _new_id(self) -> str:
        if self._milvus is not None and self._milvus.int_ids:
            return str(uuid.uuid4().int >> 65)  # a positive INT64
        return str(uuid.uuid4())

    def _point_id(self, doc_id: str) -> tuple[PointId, bool]:
        """(the engine's id for ``doc_id``, whether ``doc_id`` itself must be kept in ID_KEY)."""
        if self._milvus is not None:
            return self._milvus.key(doc_id), False
        if doc_id.isascii() and doc_id.isdigit() and str(int(doc_id)) == doc_id \
                and int(doc_id) < 2**64:  # fmt: skip
            return int(doc_id), False
        try:
            canonical = str(uuid.UUID(doc_id))
        except ValueError:
            return str(uuid.uuid5(ID_NAMESPACE, doc_id)), True
        return canonical, canonical != doc_id

    def _lookup(self, ids: Iterable[str]) -> list[PointId]:
        """The engine's ids of ``ids``, leaving out those no point can have (a non-integer id
        in a Milvus collection with integer keys)."""
        found = []
        for doc_id in ids:
            try:
                found.append(self._point_id(str(doc_id))[0])
            except InvalidInput:
                continue
        return found

    def _payload(self, text: str, metadata: dict[str, Any], keep_id: str | None) -> dict[str, Any]:
        layout = self.layout
        if not isinstance(text, str):
            raise InvalidInput(f"texts must be strings, not {type(text).__name__}")
        if layout.metadata_key is not None:
            payload: dict[str, Any] = {layout.text_key: text, layout.metadata_key: metadata}
        else:
            if self._milvus is not None:
                metadata = self._milvus.columns(metadata, layout.text_key)
            reserved = {layout.text_key, ID_KEY} & set(metadata)
            if reserved:
                raise InvalidInput(
                    f"metadata key '{reserved.pop()}' is taken by the collection's layout "
                    f"(text under '{layout.text_key}'): rename it; nothing was written"
                )
            payload = {layout.text_key: text, **metadata}
        if keep_id is not None:
            payload[ID_KEY] = keep_id
        return payload

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Remove the documents of ``ids`` (ids that do not exist are ignored)."""
        _no_more(kwargs, "delete")
        if ids is None:
            raise InvalidInput(
                "delete needs the ids to remove; to empty the collection, drop it "
                "(store.drop_collection) and create it again"
            )
        self.store.delete(self.collection, self._lookup(ids))
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        return await asyncio.to_thread(partial(self.delete, ids, **kwargs))

    # -- reading --------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents of ``ids`` that exist, in the order asked."""
        if not ids:
            return []
        point_ids = self._lookup(ids)
        if not point_ids:
            return []
        batch = self.store.retrieve(self.collection, point_ids, [self.full_vector])
        return [self._document(pid, payload) for pid, payload in
                zip(batch.ids, batch.payloads, strict=True)]  # fmt: skip

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return await asyncio.to_thread(self.get_by_ids, ids)

    def _document(self, point_id: PointId, stored: Mapping[str, Any]) -> Document:
        """A document as written: its id, text and metadata (see ``langchain_metadata``)."""
        layout = self.layout
        payload = dict(stored)
        doc_id = payload.pop(ID_KEY, None) or str(point_id)
        text = payload.pop(layout.text_key, "")
        if layout.metadata_key is not None:
            metadata = dict(payload.get(layout.metadata_key) or {})
        else:
            metadata = payload
        if self.langchain_metadata and layout.langchain == "qdrant":
            metadata.update(_id=point_id, _collection_name=self.collection)
        elif self.langchain_metadata and layout.langchain == "milvus":
            metadata = {"pk": point_id, **metadata}
        return Document(id=str(doc_id), page_content=str(text), metadata=metadata)

    # -- search ---------------------------------------------------------------------------

    def _search(self, k: int, filter: Filter | None, options: Mapping[str, Any]) -> Search:
        merged = per_call(self, SEARCH_OPTIONS, options, "search argument",
                          f"a search accepts k, filter, {', '.join(SEARCH_OPTIONS)}")
        output = self.compressor.output(merged["stage1"])  # InvalidInput naming the outputs
        nonzeros = merged["query_nonzeros"]
        checked = {"k": k, "oversample": merged["oversample"]}
        if nonzeros is not None:
            checked["query_nonzeros"] = nonzeros
        for name, value in checked.items():
            positive(name, value)
        if nonzeros is not None and output.kind != "sparse":
            raise InvalidInput(
                f"query_nonzeros applies to a sparse stage 1; '{output.name}' is dense"
            )
        if filter is not None and not isinstance(filter, Mapping):
            raise InvalidInput(
                "filter must be a dict of payload keys to values, e.g. {'metadata.lang': 'en'}, "
                f"not a {type(filter).__name__}"
            )
        return Search(k, output.name, merged["oversample"], nonzeros, dict(filter or {}) or None)

    def _queries(self, embedding: Sequence[float], search: Search) -> tuple[np.ndarray, Any]:
        full = np.asarray([embedding], dtype=np.float32)
        if full.shape != (1, self.dim):
            raise InvalidInput(
                f"the query embedding has shape {full.shape[1:]}; '{self.collection}' holds "
                f"{self.dim}-d vectors"
            )
        return full, self.compressor.encode_queries(full, search.stage1, search.query_nonzeros)

    def _hits(self, embedding: Sequence[float], search: Search) -> list[Hit]:
        full, small = self._queries(embedding, search)
        return self.store.two_stage_search(
            self.collection, full, search.stage1, small, search.k,
            oversample=search.oversample, full_vector=self.full_vector, filter=search.filter,
        )[0]  # fmt: skip

    async def _ahits(self, embedding: Sequence[float], search: Search) -> list[Hit]:
        full, small = self._queries(embedding, search)
        call: dict[str, Any] = {"oversample": search.oversample, "full_vector": self.full_vector,
                                "filter": search.filter}  # fmt: skip
        arguments = (self.collection, full, search.stage1, small, search.k)
        native: Any = getattr(self.store, "atwo_stage_search", None)
        if native is not None:
            hits: list[list[Hit]] = await native(*arguments, **call)
        else:
            hits = await asyncio.to_thread(partial(self.store.two_stage_search, *arguments, **call))
        return hits[0]

    def _scored(self, hits: list[Hit]) -> list[tuple[Document, float]]:
        return [(self._document(hit.id, hit.payload), hit.score) for hit in hits]

    def similarity_search_by_vector_with_score(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Two-stage search for ``embedding``: (document, full-vector score), best first."""
        return self._scored(self._hits(embedding, self._search(k, filter, kwargs)))

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Embed ``query`` (``embed_query``) and search: the score is the engine's similarity
        on the full vector (cosine for cosine collections)."""
        search = self._search(k, filter, kwargs)
        return self._scored(self._hits(self._embeddings.embed_query(query), search))

    def similarity_search(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        scored = self.similarity_search_by_vector_with_score(embedding, k, filter, **kwargs)
        return [doc for doc, _ in scored]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``aembed_query``, then the store's async two-stage search where it has one
        (Qdrant server), else the sync one in a worker thread."""
        search = self._search(k, filter, kwargs)
        embedding = await self._embeddings.aembed_query(query)
        return self._scored(await self._ahits(embedding, search))

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        scored = await self.asimilarity_search_with_score(query, k, filter, **kwargs)
        return [doc for doc, _ in scored]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        search = self._search(k, filter, kwargs)
        return [doc for doc, _ in self._scored(await self._ahits(embedding, search))]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Cosine similarity in [-1, 1] -> relevance in [0, 1]."""
        return lambda score: (1.0 + score) / 2.0

    # -- retriever ------------------------------------------------------------------------

    def as_retriever(self, **kwargs: Any) -> MatryoshkaRetriever:  # type: ignore[override]
        """The two-stage :class:`~mrl_compress.adapters.langchain.MatryoshkaRetriever` over
        this collection, with this store's settings.

        Accepts LangChain's ``search_type="similarity"`` (the only one) and ``search_kwargs``
        (``k``, ``filter``, ``stage1``, ``oversample``, ``query_nonzeros``), and any field of
        the retriever as a keyword (``k=10``, ``tags=[...]``). Its documents carry
        ``metadata["_mrl"]`` (score and stage), as the retriever's always do.
        """
        from mrl_compress.adapters.langchain import PER_CALL, MatryoshkaRetriever

        search_type = kwargs.pop("search_type", "similarity")
        if search_type != "similarity":
            raise InvalidInput(
                f"search_type '{search_type}' is not offered: the two-stage retriever runs "
                "'similarity' only"
            )
        search_kwargs = dict(kwargs.pop("search_kwargs", None) or {})
        unknown = sorted(set(search_kwargs) - set(PER_CALL))
        fields = set(MatryoshkaRetriever.model_fields)
        unknown += sorted(set(kwargs) - fields)
        if unknown:
            raise InvalidInput(
                f"unknown retriever argument(s) {', '.join(unknown)}: search_kwargs accepts "
                f"{', '.join(PER_CALL)}, and keywords any field of MatryoshkaRetriever"
            )
        settings: dict[str, Any] = {
            "store": self.store,
            "collection": self.collection,
            "embeddings": self._embeddings,
            "compressor": self.compressor,
            "stage1": self.stage1,
            "oversample": self.oversample,
            "query_nonzeros": self.query_nonzeros,
            "full_vector": self.full_vector,
            "text_key": self.layout.text_key,
            "metadata_key": self.layout.metadata_key,
        }
        settings.update(search_kwargs)
        settings.update(kwargs)
        settings.setdefault("tags", self._get_retriever_tags())
        return MatryoshkaRetriever(**settings)


# -- helpers ----------------------------------------------------------------------------------


def checked_vectors(embedded: Any, n: int, dim: int, field: str) -> np.ndarray:
    """``n`` finite, non-zero ``dim``-d rows (the rules of :func:`mrl_compress.vectors.validate`),
    or one line saying which row is not and that nothing was written."""
    try:
        vectors = np.asarray(embedded, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"the embeddings of the {n} texts are not {n} vectors of one length; "
            "nothing was written"
        ) from None
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise InvalidInput(
            f"the embeddings have shape {vectors.shape} for {n} texts; nothing was written"
        )
    if vectors.shape[1] != dim:
        raise InvalidInput(
            f"the embeddings are {vectors.shape[1]}-d but the full vector '{field}' holds "
            f"{dim}-d ones: another embedding model? nothing was written"
        )
    bad = ~valid_rows(vectors)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        kind = "NaN/inf" if not np.isfinite(vectors[first]).all() else "all-zero"
        raise InvalidInput(
            f"{int(bad.sum())} of {n} embeddings are NaN/inf or all-zero (first: text {first}, "
            f"{kind}); nothing was written"
        )
    return vectors


def _unpack(
    documents: Sequence[Document], kwargs: dict[str, Any]
) -> tuple[list[str], list[dict[str, Any]], list[str | None] | None]:
    ids = kwargs.pop("ids", None)
    if ids is None and any(doc.id for doc in documents):
        ids = [doc.id or None for doc in documents]
    texts = [doc.page_content for doc in documents]
    return texts, [dict(doc.metadata) for doc in documents], ids


def _no_more(kwargs: Mapping[str, Any], what: str) -> None:
    if kwargs:
        raise InvalidInput(f"{what} got unknown argument(s) {', '.join(sorted(kwargs))}")


def _parts(texts: list[str], batch_size: int) -> list[list[str]]:
    """``texts`` ``batch_size`` at a time (at least one), one ``embed_documents`` call each."""
    return [texts[start : start + batch_size] for start in range(0, len(texts), max(1, batch_size))]


def per_call(owner: Any, names: Sequence[str], given: Mapping[str, Any], what: str,
             accepts: str) -> dict[str, Any]:
    """The settings ``names`` of ``owner`` (a vector store, a retriever), with those ``given``
    to one call over them (None: the owner's); a name not among them is refused with ``what``
    and ``accepts`` (InvalidInput "unknown {what}(s) ...: {accepts}")."""
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InvalidInput(f"unknown {what}(s) {', '.join(unknown)}: {accepts}")
    merged = {name: getattr(owner, name) for name in names}
    merged.update({name: value for name, value in given.items() if value is not None})
    return merged


def positive(name: str, value: Any) -> None:
    """InvalidInput unless ``value`` (the setting ``name``) is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a positive integer, not {value!r}")


def collection_exists(store: Store, collection: str) -> bool:
    try:
        store.describe(collection)
    except NotFound:
        return False
    return True


def create_collection(store: Store, collection: str, compressor: Compressor) -> None:
    """An empty collection in the LangChain integration's layout (see ``create``)."""
    full = VectorField("", "dense", compressor.input_dim, "cosine")
    outputs = [
        VectorField(o.name, o.kind, o.size if o.kind == "dense" else None, o.distance)
        for o in compressor.outputs
    ]
    if engine_of(store) == "milvus":
        MilvusColumns.create(store, collection, VectorField("vector", "dense", full.size,
                                                            "cosine"), outputs)  # fmt: skip
    else:
        store.create_collection(collection, [full, *outputs])


class MilvusColumns:
    """What a Milvus write needs beyond the protocol: the primary key's type and the scalar /
    dynamic metadata fields (langchain-milvus writes metadata keys that are fields, or any
    key with dynamic fields on, and skips the rest).

    It reads the adapter's cached schema (``MilvusStore._schema``), and :meth:`create` uses
    the adapter's client: the protocol has neither a schema of scalar fields nor a way to
    make a VARCHAR primary key.
    """

    def __init__(self, store: Store, collection: str) -> None:
        schema = store._schema(collection)  # type: ignore[attr-defined]
        self.collection = collection
        self.int_ids: bool = bool(schema.pk_is_int)
        self.dynamic: bool = bool(schema.dynamic)
        self.scalars: list[str] = list(schema.scalars)
        self.reserved = {schema.pk, *schema.vectors}
        lengths = {f["name"]: (f.get("params") or {}).get("max_length")
                   for f in schema.raw.get("fields", [])}  # fmt: skip
        self.pk_length = int(lengths.get(schema.pk) or MILVUS_TEXT_MAX)

    def key(self, doc_id: str) -> PointId:
        if self.int_ids:
            if not (doc_id.lstrip("-").isascii() and doc_id.lstrip("-").isdigit()
                    and str(int(doc_id)) == doc_id and -(2**63) <= int(doc_id) < 2**63):
                raise InvalidInput(
                    f"collection '{self.collection}' has integer ids: {doc_id!r} is not one; "
                    "nothing was written"
                )
            return int(doc_id)
        if len(doc_id.encode()) > self.pk_length:
            raise InvalidInput(
                f"id {doc_id[:40]!r}... is longer than the {self.pk_length} bytes of "
                f"'{self.collection}'s primary key; nothing was written"
            )
        return doc_id

    def columns(self, metadata: dict[str, Any], text_key: str) -> dict[str, Any]:
        """The metadata as the row's fields: every key with dynamic fields on, else the keys
        that are scalar fields (as langchain-milvus); each scalar field must be given."""
        taken = self.reserved & set(metadata)
        if taken:
            raise InvalidInput(
                f"metadata key '{taken.pop()}' names a field of '{self.collection}' (its "
                "primary key or a vector): rename it; nothing was written"
            )
        fields = [f for f in self.scalars if f != text_key]
        missing = [f for f in fields if f not in metadata]
        if missing:
            raise InvalidInput(
                f"collection '{self.collection}' keeps metadata in the fields "
                f"{', '.join(fields)}: every document needs them (missing: "
                f"{', '.join(missing)}); nothing was written"
            )
        if self.dynamic:
            return metadata
        return {k: v for k, v in metadata.items() if k in fields}

    @staticmethod
    def create(store: Store, collection: str, full: VectorField,
               outputs: Sequence[VectorField]) -> None:
        """langchain-milvus's layout (``pk`` VARCHAR, ``text`` VARCHAR, ``vector``, dynamic
        fields) plus the outputs' fields, indexed as the adapter indexes new fields."""
        from pymilvus import DataType

        client: Any = store._client  # type: ignore[attr-defined]
        schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=MILVUS_TEXT_MAX)
        schema.add_field("text", DataType.VARCHAR, max_length=MILVUS_TEXT_MAX)
        index = client.prepare_index_params()
        for field in (full, *outputs):
            if field.kind == "sparse":
                schema.add_field(field.name, DataType.SPARSE_FLOAT_VECTOR)
            else:
                schema.add_field(field.name, DataType.FLOAT_VECTOR, dim=field.size)
            index.add_index(field.name, **store._new_index(field))  # type: ignore[attr-defined]
        if store._lite:  # type: ignore[attr-defined]
            # as MilvusStore.create_collection: Lite builds the index in the CreateIndex call
            client.create_collection(collection, schema=schema, consistency_level="Strong")
            client.create_index(collection, index, sync=False)
            client.load_collection(collection)
        else:
            client.create_collection(collection, schema=schema, index_params=index,
                                     consistency_level="Strong")  # fmt: skip
