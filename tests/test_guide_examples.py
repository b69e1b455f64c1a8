"""The worked Python examples of docs/quickstart.md, retriever.md, gpu.md, live.md,
langchain-migration.md and vectorstore.md run as written: blocks marked ``<!-- test: NAME -->``.

Each runs in a temp folder holding what its text says is there; ``embeddings`` (the
reader's LangChain ``Embeddings``) answers SciFact texts with their stored MiniLM vectors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.scifact_sample import corpus, langchain_payloads, stored_embeddings

DOCS = Path(__file__).resolve().parents[1] / "docs"


def example(doc: str, name: str) -> str:
    text = (DOCS / doc).read_text()
    found = dict(re.findall(r"<!-- test: ([\w-]+) -->\s*```python\n(.*?)```", text, re.S))
    return found[name]


def run(doc: str, name: str, **given: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"docs.{name}", **given}
    exec(compile(example(doc, name), f"{DOCS / doc}:{name}", "exec"), namespace)
    return namespace


def test_quickstart_then_retriever_then_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mrl_compress.adapters import VectorField, connect

    monkeypatch.chdir(tmp_path)
    data = corpus()
    store = connect("edge:./shard")
    store.create_collection("docs", [VectorField("", "dense", 384, "cosine")])
    store.upsert("docs", list(range(len(data.ids))), {"": data.vectors}, langchain_payloads(data))
    store.close()
    embeddings = stored_embeddings(data)

    done = run("quickstart.md", "quickstart", embeddings=embeddings)
    assert len(done["docs"]) == 10 and done["docs"][0].metadata["_mrl"]["stage1"] == "mrl_64"
    best = int((data.vectors @ data.queries[0]).argmax())  # the query is SciFact claim 0
    assert done["docs"][0].metadata["doc_id"] == data.ids[best]
    run("retriever.md", "retriever", embeddings=embeddings)
    run("gpu.md", "gpu")


def test_langchain_migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = corpus()
    n = 600
    done = run(
        "langchain-migration.md", "langchain-qdrant",
        texts=data.texts[:n], embeddings=stored_embeddings(data),
        metadatas=[p["metadata"] for p in langchain_payloads(data)[:n]],
    )  # fmt: skip
    assert len(done["ours"]) == 4
    done["vectorstore"].client.close()


def test_live_collections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    import mrl_compress
    from mrl_compress.adapters import VectorField, connect

    monkeypatch.chdir(tmp_path)
    data = corpus()
    stored, new = data.vectors[:1500], data.vectors[1500:1600]
    store = connect("edge:./shard")
    store.create_collection("docs", [VectorField("", "dense", 384, "cosine")])
    store.upsert("docs", list(range(len(stored))), {"": stored},
                 langchain_payloads(data)[: len(stored)])
    store.close()
    path = mrl_compress.fit(stored, "pca", dims=(32, 64)).compressor.save(tmp_path / "c.mrlc")
    run("live.md", "live", vectors=stored, new=new, compressor=path)
    assert capsys.readouterr().out.split() == ["True", "100", "100", "0"]


def test_vectorstore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A langchain-qdrant collection migrated in place, then the example's one-line change;
    afterwards langchain-qdrant reads the documents the example added."""
    from langchain_qdrant import QdrantVectorStore

    import mrl_compress
    from mrl_compress.adapters.qdrant import QdrantStore

    monkeypatch.chdir(tmp_path)
    data = corpus()
    n = 600
    embeddings = stored_embeddings(data)
    metadatas = [p["metadata"] for p in langchain_payloads(data)]
    before = QdrantVectorStore.from_texts(
        data.texts[:n], embeddings, metadatas=metadatas[:n], path="./qdrant-data",
        collection_name="docs",
    )  # fmt: skip
    store = QdrantStore("qdrant-local:./qdrant-data", client=before.client)
    compressor = mrl_compress.fit(data.vectors[:n], "pca", dims=(64, 128), holdout=100,
                                  eval_docs=300).compressor  # fmt: skip
    compressor.save("./docs.mrlc")
    store.add_outputs("docs", compressor.outputs)  # what mrl-compress migrate does in place
    for batch in store.iter_batches("docs", with_payload=False):
        store.write_outputs("docs", batch.ids, compressor.encode(batch.vectors))
    before.client.close()

    new = list(range(n, n + 5))
    done = run("vectorstore.md", "vectorstore", embeddings=embeddings,
               new_texts=[data.texts[i] for i in new],
               new_metadatas=[metadatas[i] for i in new])  # fmt: skip
    after = QdrantVectorStore.from_existing_collection(
        path="./qdrant-data", collection_name="docs", embedding=embeddings
    )
    ids = done["ids"]
    found = after.get_by_ids(ids)
    assert [d.metadata.pop("_id") for d in found] == ids[:-1]  # the last was deleted
    assert [(d.page_content, d.metadata) for d in found] == [
        (data.texts[i], {**metadatas[i], "_collection_name": "docs"}) for i in new[:-1]
    ]
    assert after.similarity_search(data.texts[new[1]], k=1)[0].metadata["_id"] == ids[1]
    after.client.close()
