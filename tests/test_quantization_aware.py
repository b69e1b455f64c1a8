"""Quantization-aware training: the simulated engine codes and the setting that uses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mrl_compress
from mrl_compress import frontier, quantizers
from mrl_compress.errors import InvalidInput
from mrl_compress.training import quantization
from mrl_compress.training.methods import TrainSettings


def test_lloyd_max_levels_are_the_gaussians_known_optimum() -> None:
    assert quantization.lloyd_max(2) == pytest.approx((-0.7979, 0.7979), abs=1e-3)
    assert quantization.lloyd_max(4) == pytest.approx((-1.510, -0.4528, 0.4528, 1.510), abs=2e-3)
    assert quantization.lloyd_max(16)[-1] == pytest.approx(2.73, abs=3e-3)


# cosine of a Lloyd-Max code to its Gaussian input: sqrt(1 - D), D its mean squared error
# (Max 1960: D = 0.3634, 0.1902, 0.1175, 0.0095 for 2, 3, 4, 16 levels)
CODE_COSINE = {"turbo1": 0.798, "turbo1.5": 0.900, "turbo2": 0.939, "turbo4": 0.995,
               "binary1-q8": 0.798, "binary1.5-q8": 0.900, "binary2-q8": 0.939}


@pytest.mark.parametrize("name", sorted(CODE_COSINE))
def test_a_simulated_code_keeps_its_levels_share_and_passes_the_gradient_straight(
        name: str) -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(256, 192, generator=g), dim=1).requires_grad_()
    coded = quantization.simulated(z, name, g)
    cosine = torch.nn.functional.cosine_similarity(coded, z, dim=1).mean().detach()
    assert float(cosine) == pytest.approx(CODE_COSINE[name], abs=0.01)
    assert torch.allclose(coded.norm(dim=1), z.norm(dim=1))  # the input's length, kept
    coded.sum().backward()
    assert z.grad is not None and torch.allclose(z.grad, torch.ones_like(z))


def test_spreading_a_basis_keeps_what_each_prefix_spans() -> None:
    from mrl_compress.training.methods import spread_within_prefixes

    basis, _ = torch.linalg.qr(torch.randn(48, 48, generator=torch.Generator().manual_seed(0)))
    spread = spread_within_prefixes(basis, (8, 24), seed=0)
    for d in (8, 24):
        assert torch.allclose(spread[:, :d] @ spread[:, :d].t(), basis[:, :d] @ basis[:, :d].t(),
                              atol=1e-5)
    assert not torch.allclose(spread[:, :8], basis[:, :8])  # turned within the prefix


def test_a_setting_training_cannot_simulate_is_refused_in_one_line(
        scifact: np.ndarray) -> None:
    with pytest.raises(InvalidInput, match="expected a turbo or binary quantizer"):
        TrainSettings(quantizer="pq16")
    with pytest.raises(InvalidInput, match="expected a turbo or binary quantizer"):
        TrainSettings(quantizer="binary1@ivf")  # Milvus's RaBitQ rotates: not a sign code
    with pytest.raises(InvalidInput, match="unknown quantizer"):
        TrainSettings(quantizer="int4")
    assert TrainSettings(quantizer="int8").quantizer is None  # no simulation needed
    assert TrainSettings(quantizer="turbo8").quantizer is None
    assert TrainSettings(quantizer="TURBO2").quantizer == "turbo2"
    with pytest.raises(InvalidInput, match="only the adaptor trains through an engine code"):
        mrl_compress.fit(scifact[:1000], "pca", dims=(32,), quantizer="turbo2")


def test_the_artifact_records_the_quantizer_it_was_trained_through(scifact: np.ndarray) -> None:
    result = mrl_compress.fit(scifact[:3000], "adaptor", dims=(64,), steps=20,
                              quantizer="turbo2")
    assert result.compressor.manifest.settings["quantizer"] == "turbo2"
    plain = mrl_compress.fit(scifact[:3000], "adaptor", dims=(64,), steps=20)
    assert "quantizer" not in plain.compressor.manifest.settings
    # the same start and draws (turbo2 turns no basis), only the scores differ: so do the maps
    a = result.compressor.encode(scifact[3000:3100])["mrl_64"]
    b = plain.compressor.encode(scifact[3000:3100])["mrl_64"]
    assert np.abs(a - b).max() > 1e-3
    # plan measures each output with the code it was trained through, asked for or not, once
    found = frontier.candidates(scifact.shape[1], [("qat.mrlc", result.compressor)],
                                offered=quantizers.names(), native=(),
                                composed=("int8", "turbo2"))
    assert [c.label for c in found] == ["adaptor@turbo2 mrl_64 64-d int8",
                                        "adaptor@turbo2 mrl_64 64-d turbo2"]
    found = frontier.candidates(scifact.shape[1], [("qat.mrlc", result.compressor)],
                                offered=quantizers.names(), native=(), composed=("int8",))
    assert [c.quantizer for c in found] == ["int8", "turbo2"]


def test_training_through_a_symmetric_code_codes_the_anchors_too() -> None:
    from mrl_compress.training.models import DenseNested
    from mrl_compress.training.trainer import dense_step_loss

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(96, 32, generator=g), dim=1)
    model = DenseNested(torch.zeros(32), (16,), rotation=torch.eye(32)[:, :16])
    no_self = torch.zeros(32, 64, dtype=torch.bool)
    scales = torch.zeros(1)

    def loss(name: str) -> float:
        with torch.no_grad():
            return float(dense_step_loss(model, x[:32], x[32:], no_self, scales, 0.05, name,
                                         torch.Generator().manual_seed(1)))

    # plain binary codes queries too; with 8-bit queries only the stored side is coded
    assert loss("binary1") != pytest.approx(loss("binary1-q8"), rel=1e-4)
