"""LangChain: :class:`MatryoshkaRetriever`, a ``BaseRetriever`` over two-stage search.

A query is embedded by the application's own LangChain ``Embeddings``, compressed by the
artifact's runtime (onnxruntime or numpy: torch is never imported here), shortlisted on the
small vector ``stage1`` and reranked exactly on the full vector by the store's
``two_stage_search`` (inside Qdrant with ``prefetch``; Milvus shortlists and the adapter
reranks). Documents come back as langchain-qdrant or langchain-milvus would build them from
the same collection, with the score and the stage in ``metadata["_mrl"]``.

Every setting is a field of the retriever and can be changed per call::

    retriever.invoke("statins", k=3, filter={"metadata.year": 2020})
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from mrl_compress.adapters import connect
from mrl_compress.compressor import Compressor, load
from mrl_compress.errors import InvalidInput, MissingDependency, MrlCompressError
from mrl_compress.store import CollectionInfo, Filter, Hit, VectorStore

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
    )
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict, Field, PrivateAttr
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependency(
        "the LangChain retriever needs langchain-core: pip install 'mrl-compress[langchain]'"
    ) from None

from mrl_compress.adapters.langchain_store import ID_KEY, per_call, positive
from mrl_compress.adapters.langchain_store import MatryoshkaVectorStore as MatryoshkaVectorStore

METADATA_KEY = "_mrl"
"""``Document.metadata[METADATA_KEY]`` = ``{"score": float, "stage1": str, "oversample": int}``."""

PER_CALL = ("k", "stage1", "oversample", "filter", "query_nonzeros")
"""Settings that ``invoke``/``ainvoke`` accept as keyword arguments for one call."""


@dataclass(frozen=True)
class Search:
    """The settings of one call: the retriever's fields, overridden by invoke kwargs."""

    k: int
    stage1: str | None
    """None: a native plan, the full vector searched through the engine's quantizer."""
    oversample: int
    filter: Filter | None
    query_nonzeros: int | None = None


@dataclass(frozen=True)
class Layout:
    """Where a collection keeps the text and metadata (from the adapter's ``describe``)."""

    langchain: str | None
    text_key: str
    metadata_key: str | None


class MatryoshkaRetriever(BaseRetriever):
    """Two-stage retrieval on compressed vectors, a drop-in LangChain retriever.

    Stage 1 searches ``k * oversample`` candidates on the compressed field ``stage1`` (dense
    ``mrl_64``-style or sparse ``csr_32``-style, an output of ``compressor`` that migration
    wrote into the collection); stage 2 rescores them by the full vector and keeps ``k``.

    Sync calls run the store's ``two_stage_search``. Async calls embed with
    ``Embeddings.aembed_query`` and search with the store's ``atwo_stage_search`` where the
    adapter has one (Qdrant server: ``AsyncQdrantClient``; qdrant-client local mode runs the
    sync search in a worker thread), and otherwise run the sync search in a worker thread
    with ``asyncio.to_thread`` (Qdrant Edge, Milvus).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: Any = Field(description="A VectorStore from mrl_compress.adapters.connect().")
    collection: str
    embeddings: Embeddings
    compressor: Compressor | None = None
    """None serves a native plan (``from_plan``): the full vector alone, searched through the
    engine's own quantizer with ``k * oversample`` candidates rescored by the float vectors."""
    k: int = 4
    """Documents returned (LangChain's default for vector-store retrievers)."""
    stage1: str | None = None
    """The compressed output to shortlist on; None: the compressor's first (smallest) output."""
    oversample: int = 10
    """Stage 1 keeps ``k * oversample`` candidates for the exact rerank."""
    query_nonzeros: int | None = None
    """Sparse stage 1 only: entries of the sparse query. Pursuit csr (the default): None
    sends all (two per atom), fewer keep the largest, for a cheaper search. TopK csr: None
    keeps the output's k, more keep more of the query. See ``Compressor.encode_queries``."""
    filter: dict[str, Any] | None = None
    """Equality filter on payload keys, applied to both stages: ``{"metadata.lang": "en"}``."""
    full_vector: str | None = None
    """The full vector's field; None: the collection's default (``""`` or its only one)."""
    unsynced: bool = True
    """Also find the points that lack ``stage1`` (written after the migration, not synced
    yet) by their full vector, in the same query. On Qdrant this costs a scan of the
    collection's points per query while any point lacks it (Qdrant Edge skips it when none
    does): False leaves them out until ``sync`` writes their small vectors. See
    docs/retriever.md, "Writes after a migration"."""
    text_key: str | None = None
    """Payload key of the text; None: as ``describe`` reports (langchain layouts) or ``text``."""
    metadata_key: str | None = None
    """Payload key holding the metadata dict; None: as ``describe`` reports, else the rest."""

    _layout: Layout | None = PrivateAttr(default=None)

    @classmethod
    def from_store(
        cls,
        uri: str,
        collection: str,
        *,
        embeddings: Embeddings,
        compressor: Compressor | str | Path,
        **settings: Any,
    ) -> MatryoshkaRetriever:
        """Connect to ``uri`` (see :func:`mrl_compress.adapters.connect`) and search there.

        ``compressor`` is a loaded :class:`~mrl_compress.compressor.Compressor` or the path
        of its artifact directory; ``settings`` are the other fields (``k``, ``stage1``...).
        """
        if not isinstance(compressor, Compressor):
            # the CPU provider: a retriever encodes one query per call, and on an H200 one
            # row through the CUDA provider ran at 0.13-0.20x the CPU's rows/s (docs/gpu.md)
            compressor = load(compressor, device="cpu")
        return cls(
            store=connect(uri),
            collection=collection,
            embeddings=embeddings,
            compressor=compressor,
            **settings,
        )

    @classmethod
    def from_plan(cls, plan: str | Path, store: VectorStore | str, *, embeddings: Embeddings,
                  **settings: Any) -> MatryoshkaRetriever:
        """The retriever of what ``mrl-compress plan`` chose (and ``migrate --plan`` applied).

        A native plan searches the full vector through the engine's quantizer and rescores
        ``k * oversample`` candidates by the float vectors; a composed one prefetches on the
        chosen output and reranks on the full vector. ``oversample`` is the plan's unless
        given. Refuses a plan for another collection, an edited one, and an artifact that is
        not the one the plan measured.
        """
        from mrl_compress.frontier import PlanFile

        made = PlanFile.read(plan)
        opened = connect(store) if isinstance(store, str) else store
        try:
            made.check(opened.uri, made.collection)
            artifact = None if made.candidate.native else made.artifact()
        except MrlCompressError:
            if isinstance(store, str):
                opened.close()
            raise
        chosen = made.candidate
        settings.setdefault("oversample", made.oversample)
        if artifact is None:  # native
            return cls(store=opened, collection=made.collection, embeddings=embeddings,
                       full_vector=made.vector, **settings)  # fmt: skip
        return cls(store=opened, collection=made.collection, embeddings=embeddings,
                   compressor=load(artifact, device="cpu"), stage1=chosen.output,
                   full_vector=made.vector, **settings)  # fmt: skip

    # -- settings ---------------------------------------------------------------------------

    def _search(self, overrides: dict[str, Any]) -> Search:
        merged = per_call(self, PER_CALL, overrides, "retriever argument",
                          f"per call it accepts {', '.join(PER_CALL)}")
        nonzeros = merged["query_nonzeros"]
        if self.compressor is None:  # a native plan: no stage-1 field
            if merged["stage1"] is not None or nonzeros is not None:
                raise InvalidInput("stage1 and query_nonzeros need a compressor; this retriever "
                                   "searches the full vector through the engine's quantizer")
            for name in ("k", "oversample"):
                positive(name, merged[name])
            return Search(merged["k"], None, merged["oversample"], merged["filter"] or None)
        stage1 = merged["stage1"] or self.compressor.outputs[0].name
        output = self.compressor.output(stage1)  # InvalidInput naming the outputs it has
        for name in ("k", "oversample") + (("query_nonzeros",) if nonzeros is not None else ()):
            positive(name, merged[name])
        if nonzeros is not None and output.kind != "sparse":
            raise InvalidInput(f"query_nonzeros applies to a sparse stage 1; '{stage1}' is dense")
        return Search(merged["k"], stage1, merged["oversample"], merged["filter"] or None,
                      merged["query_nonzeros"])

    def layout(self) -> Layout:
        """The collection's text/metadata keys, read once with ``describe``."""
        if self._layout is None:
            info: CollectionInfo = self._store().describe(self.collection)
            self._layout = Layout(
                langchain=info.langchain,
                text_key=self.text_key or info.text_key or "text",
                metadata_key=self.metadata_key or info.metadata_key,
            )
        return self._layout

    def _store(self) -> VectorStore:
        store: VectorStore = self.store
        return store

    # -- the two stages ---------------------------------------------------------------------

    def _unsynced(self) -> dict[str, Any]:
        """``two_stage_search``'s ``unsynced`` argument, sent only when it is not the
        protocol's default (True), so stores whose rows always hold every field take none."""
        return {} if self.unsynced else {"unsynced": False}

    def _encode(self, vector: list[float], search: Search) -> tuple[np.ndarray, Any]:
        query = np.asarray([vector], dtype=np.float32)
        if self.compressor is None or search.stage1 is None:
            return query, None
        return query, self.compressor.encode_queries(query, search.stage1, search.query_nonzeros)

    def _full_name(self) -> str:
        """The full vector's field: ``full_vector``, else ``""``, else the only dense one
        (read once with ``describe``, not on every query)."""
        if self.full_vector is None:
            fields = self._store().describe(self.collection).fields
            self.full_vector = "" if "" in fields else CollectionInfo(
                self.collection, 0, fields).dense(None).name
        return self.full_vector

    def _native(self, full: np.ndarray, search: Search) -> list[list[Hit]]:
        """A native plan: the full vector through the engine's quantizer, rescored."""
        return self._store().search(self.collection, self._full_name(), full, search.k,
                                    filter=search.filter, rescore=search.oversample)

    def _documents(self, hits: list[Hit], search: Search) -> list[Document]:
        layout = self.layout()
        return [self._document(hit, layout, search) for hit in hits]

    def _document(self, hit: Hit, layout: Layout, search: Search) -> Document:
        """What langchain-qdrant / langchain-milvus would return, plus ``METADATA_KEY``."""
        payload = dict(hit.payload)
        text = payload.pop(layout.text_key, "")
        # MatryoshkaVectorStore keeps an id Qdrant cannot take (not an int or UUID) here
        doc_id = payload.pop(ID_KEY, None)
        if layout.metadata_key is not None:
            metadata = dict(payload.get(layout.metadata_key) or {})
        elif layout.langchain == "milvus":
            metadata = {"pk": hit.id, **payload}  # langchain-milvus returns its primary key
        else:
            metadata = payload
        if layout.langchain == "qdrant":
            metadata["_id"] = hit.id
            metadata["_collection_name"] = self.collection
        metadata[METADATA_KEY] = {
            "score": hit.score,
            "stage1": search.stage1,
            "oversample": search.oversample,
        }
        return Document(id=str(hit.id if doc_id is None else doc_id), page_content=str(text),
                        metadata=metadata)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        search = self._search(kwargs)
        full, small = self._encode(self.embeddings.embed_query(query), search)
        if search.stage1 is None:
            return self._documents(self._native(full, search)[0], search)
        hits = self._store().two_stage_search(
            self.collection, full, search.stage1, small, search.k,
            oversample=search.oversample, full_vector=self.full_vector, filter=search.filter,
            **self._unsynced(),
        )  # fmt: skip
        return self._documents(hits[0], search)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        search = self._search(kwargs)
        full, small = self._encode(await self.embeddings.aembed_query(query), search)
        store = self._store()
        if search.stage1 is None:
            found = await asyncio.to_thread(self._native, full, search)
            if self._layout is None:
                await asyncio.to_thread(self.layout)
            return self._documents(found[0], search)
        arguments = (self.collection, full, search.stage1, small, search.k)
        options: dict[str, Any] = {
            "oversample": search.oversample,
            "full_vector": self.full_vector,
            "filter": search.filter,
            **self._unsynced(),
        }
        native: Any = getattr(store, "atwo_stage_search", None)
        hits: list[list[Hit]]
        if native is not None:
            hits = await native(*arguments, **options)
        else:
            hits = await asyncio.to_thread(partial(store.two_stage_search, *arguments, **options))
        if self._layout is None:
            await asyncio.to_thread(self.layout)
        return self._documents(hits[0], search)
