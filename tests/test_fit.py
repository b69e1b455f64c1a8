"""Every method fits, exports to ONNX, and serves the same numbers as the torch module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrl_compress.outputs import SparseBatch
from mrl_compress.runtime import NumpyRuntime

METHODS = ["truncate", "pca", "ads", "adaptor", "csr", "csr-topk"]


def assert_same_codes(a: SparseBatch, indices: np.ndarray, values: np.ndarray,
                      pursuit: bool) -> None:
    """Same active indices and values (≤ 1e-4). A pursuit is greedy: where two atoms' shares of
    the residual tie to float precision, runtimes may take them in another order and go on
    differently, so there 1 % of rows may differ (measured: 0.1–0.7 % on SciFact vectors)."""
    same = (np.sort(a.indices, 1) == np.sort(indices, 1)).all(axis=1)
    assert same.mean() >= (0.99 if pursuit else 1.0)
    order_a, order_b = np.argsort(a.indices[same], 1), np.argsort(indices[same], 1)
    assert np.abs(np.take_along_axis(a.values[same], order_a, 1)
                  - np.take_along_axis(values[same], order_b, 1)).max() <= 1e-4


@pytest.mark.parametrize("method", METHODS)
def test_onnx_output_equals_torch_output(method: str, fitted: dict, scifact: np.ndarray) -> None:
    result = fitted[method]
    x = scifact[3000:3500]
    served = result.compressor.encode(x)
    assert result.compressor.provider == "CPUExecutionProvider"
    with torch.no_grad():
        raw = result.model(torch.from_numpy(x))
    for i, out in enumerate(result.compressor.outputs):
        got = served[out.name]
        if out.kind == "dense":
            assert isinstance(got, np.ndarray) and got.shape == (500, out.size)
            assert np.abs(got - raw[i].numpy()).max() <= 1e-4
        else:
            assert isinstance(got, SparseBatch) and got.indices.shape == (500, out.nonzeros)
            idx, vals = raw[2 * i].numpy(), raw[2 * i + 1].numpy()
            assert_same_codes(got, idx, vals, result.compressor.pursuit)


@pytest.mark.parametrize("method", METHODS)
def test_numpy_runtime_matches_onnx(method: str, fitted: dict, scifact: np.ndarray) -> None:
    c = fitted[method].compressor
    x = scifact[3000:3200]
    onnx = c.encode(x)
    plain = NumpyRuntime(c.method, c.weights, c.outputs, c.dictionary).run(x)
    for out in c.outputs:
        a, b = onnx[out.name], plain[out.name]
        if isinstance(a, SparseBatch):
            assert isinstance(b, SparseBatch)
            assert_same_codes(a, b.indices, b.values, c.pursuit)
        else:
            assert np.abs(a - b).max() <= 1e-4


def test_outputs_are_unit_norm_and_nested(fitted: dict, scifact: np.ndarray) -> None:
    enc = fitted["pca"].compressor.encode(scifact[:100])
    assert np.allclose(np.linalg.norm(enc["mrl_32"], axis=1), 1, atol=1e-5)
    # nested: the 32-d output is the renormalised prefix of the 64-d one
    prefix = enc["mrl_64"][:, :32]
    prefix /= np.linalg.norm(prefix, axis=1, keepdims=True)
    assert np.allclose(prefix, enc["mrl_32"], atol=1e-5)
    sparse = fitted["csr-topk"].compressor.encode(scifact[:100])["csr_16"]
    assert (sparse.values >= 0).all() and sparse.indices.max() < 512
    assert np.allclose(np.linalg.norm(sparse.values, axis=1), 1, atol=1e-5)


def test_truncate_is_the_plain_prefix(fitted: dict, scifact: np.ndarray) -> None:
    enc = fitted["truncate"].compressor.encode(scifact[:50])["mrl_32"]
    prefix = scifact[:50, :32] / np.linalg.norm(scifact[:50, :32], axis=1, keepdims=True)
    assert np.allclose(enc, prefix, atol=1e-5)


def test_retention_rows_carry_bytes_and_references(fitted: dict) -> None:
    rows = {r.name: r for r in fitted["pca"].retention}
    assert rows["mrl_64"].bytes_per_vector == 256 and rows["mrl_64"].kind == "ours"
    assert {"full 384d", "pca 64d", "prefix 64d"} <= set(rows)
    # no numpy imitation of the engine's quantizers: without a scratch store the engine's
    # own rows are absent, and the result says plainly that they were not measured
    assert not any(r.kind == "engine" for r in rows.values())
    assert not {"int8 (full)", "binary (full)"} & set(rows)
    note = fitted["pca"].references.note
    assert note.startswith("engine references not measured") and "mrl-compress plan" in note
    stored = fitted["pca"].compressor.manifest.settings["engine_references"]
    assert stored["measured"] is False and stored["note"] == note
    # PCA on MiniLM keeps more neighbours than the raw prefix (the model is not Matryoshka)
    assert rows["mrl_64"].recall > rows["prefix 64d"].recall
    assert 0 < rows["mrl_32"].recall < rows["mrl_64"].recall <= rows["mrl_64"].two_stage <= 1


def test_target_keeps_the_smallest_output_meeting_it(scifact: np.ndarray) -> None:
    import mrl_compress

    result = mrl_compress.fit(scifact[:2000], "pca", dims=(16, 64, 256), target=0.6,
                              holdout=200, eval_docs=1500)
    assert result.chosen is not None and result.chosen.name == "mrl_64"
    assert [o.name for o in result.compressor.outputs] == ["mrl_64"]
    assert "mrl_64 is the smallest output" in (result.reason or "")
    impossible = mrl_compress.fit(scifact[:2000], "pca", dims=(8,), target=0.99, holdout=200)
    assert impossible.chosen is None and "no output meets the target" in (impossible.reason or "")


@pytest.mark.parametrize(("method", "target"), [("pca", 0.6), ("ads", 0.3)])
def test_target_serves_the_chosen_output_alone(scifact: np.ndarray, method: str,
                                               target: float) -> None:
    """The artifact computes only what it keeps, and computes it exactly as before."""
    import onnx

    import mrl_compress

    kwargs = dict(dims=(16, 64, 256), holdout=200, eval_docs=1500, steps=5)
    every = mrl_compress.fit(scifact[:2000], method, **kwargs)
    chosen = mrl_compress.fit(scifact[:2000], method, target=target, **kwargs)
    kept = chosen.chosen
    assert kept is not None and kept.size < 256, chosen.reason
    graph = onnx.load_from_string(chosen.compressor.onnx_model).graph
    assert [o.name for o in graph.output] == [kept.name]
    width = chosen.compressor.weights.get("index", chosen.compressor.weights.get("rotation"))
    assert width is not None and width.shape[-1] == kept.size
    probe = scifact[3000:3050]
    np.testing.assert_allclose(chosen.compressor.encode(probe)[kept.name],
                               every.compressor.encode(probe)[kept.name], atol=1e-5)


@pytest.mark.parametrize("method", ["adaptor", "csr"])
def test_pairs_add_a_ranking_loss(method: str, scifact: np.ndarray) -> None:
    import mrl_compress

    q, d = scifact[:200] + 0.01, scifact[:200]  # the documents are stored vectors too
    result = mrl_compress.fit(scifact[:1500], method, dims=(32,), k=(8,), hidden=256, steps=5,
                              pairs=(q, d), holdout=200)
    assert result.compressor.manifest.settings["supervised"] is True


def test_ranking_loss_does_not_count_a_copy_of_a_pairs_document_as_a_negative() -> None:
    from mrl_compress.training import losses

    docs = torch.eye(8, 16)
    queries = docs.clone()  # each query matches its document and nothing else
    stored = docs[:4].clone()  # the corpus holds the first four documents
    columns = torch.cat([docs, stored])
    alone = losses.ranking(queries, docs)
    copies = losses.ranking(queries, columns)
    masked = losses.no_negatives(queries, docs, stored)
    assert masked.shape == (8, 12) and masked.sum() == 4 and masked[:4, 8:].diagonal().all()
    assert alone.item() < 1e-6
    assert losses.ranking(queries, columns, masked=masked).item() < 1e-6
    assert copies.item() == pytest.approx(np.log(2) / 2, abs=1e-4)  # four rows tie with a copy


def test_pairs_drawn_twice_or_sharing_a_document_are_not_each_others_negatives() -> None:
    from mrl_compress.training import losses

    docs = torch.eye(4, 16)[[0, 1, 1, 2]]  # pairs 1 and 2: two queries, one document
    queries = torch.eye(16)[[8, 9, 10, 8]]  # pairs 0 and 3: one query, two documents
    masked = losses.no_negatives(queries, docs)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1, 2] = expected[2, 1] = expected[0, 3] = expected[3, 0] = True
    assert torch.equal(masked, expected)


def test_pairs_are_refused_by_a_method_that_does_not_learn_from_them(
        scifact: np.ndarray) -> None:
    import mrl_compress
    from mrl_compress.errors import InvalidInput

    with pytest.raises(InvalidInput, match="learns nothing from pairs"):
        mrl_compress.fit(scifact[:1500], "pca", dims=(32,), pairs=(scifact[:10], scifact[:10]))


def test_sparse_queries_can_keep_more_latents_than_the_stored_codes(
        fitted: dict, scifact: np.ndarray) -> None:
    from mrl_compress.errors import InvalidInput

    compressor = fitted["csr-topk"].compressor
    queries = scifact[3000:3020]
    stored_k = compressor.encode(queries)["csr_8"]
    longer = compressor.encode_queries(queries, "csr_8", nonzeros=32)
    assert longer.indices.shape == (20, 32) and longer.dim == stored_k.dim
    # the first 8 latents are the stored code's, at the same proportions
    assert np.array_equal(longer.indices[:, :8], stored_k.indices)
    ratio = longer.values[:, :8] / stored_k.values
    np.testing.assert_allclose(ratio, ratio[:, :1].repeat(8, axis=1), rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(longer.values, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(InvalidInput, match="'mrl_32' is dense"):
        fitted["pca"].compressor.encode_queries(queries, "mrl_32", nonzeros=64)
    with pytest.raises(InvalidInput, match="from 1 to the 512 latents"):
        compressor.encode_queries(queries, "csr_8", nonzeros=513)


def test_pursuit_codes_and_the_queries_that_score_them(fitted: dict, scifact: np.ndarray) -> None:
    """A pursuit csr stores k distinct atoms per document in signed slots (hidden + atom for a
    negative share), non-negative values scaled so that the reconstruction has length 1; a
    query is its correlation u with every atom (u in slot j, -u in slot hidden + j), so a
    document scores the query's cosine with that reconstruction."""
    compressor, hidden = fitted["csr"].compressor, 512
    dictionary = compressor.dictionary
    assert compressor.pursuit and dictionary is not None
    stored = compressor.encode(scifact[3000:3100])
    small, big = stored["csr_8"], stored["csr_16"]
    assert small.dim == big.dim == 2 * hidden and (big.values >= 0).all()
    atoms, signs = big.indices % hidden, np.where(big.indices >= hidden, -1.0, 1.0)
    assert all(len(set(row)) == 16 for row in atoms)
    assert np.array_equal(small.indices, big.indices[:, :8])  # the 8-step pursuit is a prefix
    recon = np.einsum("nk,nkd->nd", signs * big.values, dictionary.atoms[atoms])
    np.testing.assert_allclose(np.linalg.norm(recon, axis=1), 1.0, rtol=1e-4)

    queries = scifact[4000:4010]
    encoded = compressor.encode_queries(queries, "csr_16")
    assert isinstance(encoded, SparseBatch) and encoded.dim == 2 * hidden
    assert encoded.indices.shape == (10, 2 * hidden)
    unit_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    from mrl_compress import metrics

    # scores are the cosines of the queries with the documents' reconstructions
    np.testing.assert_allclose(metrics.scores(encoded, big), unit_queries @ recon.T, atol=1e-5)
    fewer = compressor.encode_queries(queries, "csr_16", nonzeros=65)
    assert fewer.indices.shape == (10, 65)
    # the 33 atoms largest in |u|, two entries each (the positive first), cut at 65
    largest = np.argsort(-np.abs(unit_queries @ dictionary.atoms.T), axis=1)[:, :33]
    for row, atoms_asked in zip(fewer.indices, largest, strict=True):
        assert set(row % hidden) == set(atoms_asked)
    assert (fewer.values[:, 0::2] > 0).all() and (fewer.values[:, 1::2] < 0).all()


@pytest.mark.parametrize("method", ["truncate", "pca", "ads", "adaptor"])
def test_dense_queries_take_one_product_with_the_graphs_numbers(
        method: str, fitted: dict, scifact: np.ndarray) -> None:
    """``encode_queries`` on a linear method skips the graph (one cached product): the same
    vectors as ``encode`` within 1e-5, and the same refusals of bad input."""
    from mrl_compress.errors import InvalidInput

    compressor = fitted[method].compressor
    queries = scifact[4000:4050]
    for out in compressor.outputs:
        np.testing.assert_allclose(compressor.encode_queries(queries, out.name),
                                   compressor.encode(queries)[out.name], atol=1e-5)
    assert compressor.linear is not None  # the one-product path, not the graph
    bad = queries[:3].copy()
    bad[1] = 0.0
    with pytest.raises(InvalidInput, match="all-zero"):
        compressor.encode_queries(bad, "mrl_32")
    with pytest.raises(InvalidInput, match="expected 384-d"):
        compressor.encode_queries(queries[:, :100], "mrl_32")
    half = compressor.encode_queries(queries.astype(np.float16), "mrl_32")  # validated path
    np.testing.assert_allclose(half, compressor.encode(queries)["mrl_32"], atol=2e-3)


def test_adaptor_spreads_each_shell_without_changing_a_score(scifact: np.ndarray) -> None:
    import mrl_compress

    def quick(spread: bool) -> dict:
        fitted = mrl_compress.fit(scifact[:2000], "adaptor", dims=(32, 64), steps=8,
                                  holdout=200, eval_docs=1200, spread=spread)
        assert fitted.compressor.manifest.settings["spread"] is spread
        return fitted.compressor.encode(scifact[3000:3400])

    spread, plain = quick(True), quick(False)
    for name in ("mrl_32", "mrl_64"):
        # each prefix turned within itself: every score the same, the coordinates not
        assert np.abs(spread[name] @ spread[name].T - plain[name] @ plain[name].T).max() < 1e-4
        assert np.abs(spread[name] - plain[name]).max() > 1e-2
    # the trained basis's variance falls off over the first shell; spread, it is even
    def unevenness(codes: np.ndarray) -> float:
        var = codes[:, :32].var(0)
        return float(var[:8].sum() / var[-8:].sum())

    assert unevenness(spread["mrl_64"]) < 1.5 and unevenness(plain["mrl_64"]) > 2.5


def test_spread_is_left_out_where_it_would_undo_training_or_does_not_apply(
    fitted: dict, scifact: np.ndarray
) -> None:
    import mrl_compress

    def quick(spread: bool) -> object:
        return mrl_compress.fit(scifact[:2000], "adaptor", dims=(32,), steps=8, holdout=200,
                                eval_docs=1200, quantizer="binary1", spread=spread)

    # trained through a sign code, its coordinates are what training fitted to the code
    on, off = quick(True), quick(False)
    assert on.compressor.manifest.settings["spread"] is False
    x = scifact[3000:3100]
    assert np.array_equal(on.compressor.encode(x)["mrl_32"], off.compressor.encode(x)["mrl_32"])
    for method in ("pca", "ads", "truncate", "csr"):
        assert fitted[method].compressor.manifest.settings["spread"] is False
    assert fitted["adaptor"].compressor.manifest.settings["spread"] is True
