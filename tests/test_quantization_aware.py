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


@pytest.mark.parametrize("name", ["turbo1", "turbo2", "turbo4", "binary1-q8", "binary2-q8"])
def test_a_simulated_code_is_near_its_input_and_passes_the_gradient_straight(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(64, 96, generator=g), dim=1).requires_grad_()
    coded = quantization.simulated(z, name, g)
    cosine = float(torch.nn.functional.cosine_similarity(coded, z, dim=1).mean().detach())
    # a coarser code is farther from its input: 1 bit keeps a cosine of ~0.8, 4 bits ~0.99
    assert (0.95 if quantizers.parse(name).bits >= 4 else 0.75) < cosine < 0.999
    assert not torch.allclose(coded, z)
    coded.sum().backward()
    assert z.grad is not None and torch.allclose(z.grad, torch.ones_like(z))


def test_a_setting_training_cannot_simulate_is_refused_in_one_line() -> None:
    with pytest.raises(InvalidInput, match="expected a turbo or binary quantizer"):
        TrainSettings(quantizer="pq16")
    with pytest.raises(InvalidInput, match="unknown quantizer"):
        TrainSettings(quantizer="int4")
    assert TrainSettings(quantizer="int8").quantizer is None  # no simulation needed
    assert TrainSettings(quantizer="TURBO2").quantizer == "turbo2"


def test_the_artifact_records_the_quantizer_it_was_trained_through(scifact: np.ndarray) -> None:
    result = mrl_compress.fit(scifact[:3000], "adaptor", dims=(64,), steps=20,
                              quantizer="binary1-q8")
    assert result.compressor.manifest.settings["quantizer"] == "binary1-q8"
    # plan measures each output with the code it was trained through, asked for or not
    found = frontier.candidates(scifact.shape[1], [("qat.mrlc", result.compressor)],
                                offered=quantizers.names(), native=(), composed=("int8",))
    assert [c.label for c in found] == ["adaptor@binary1-q8 mrl_64 64-d int8",
                                        "adaptor@binary1-q8 mrl_64 64-d binary1-q8"]
    plain = mrl_compress.fit(scifact[:3000], "adaptor", dims=(64,), steps=20)
    # the same draws, only the simulated code differs: the learned maps differ
    a = result.compressor.encode(scifact[3000:3100])["mrl_64"]
    b = plain.compressor.encode(scifact[3000:3100])["mrl_64"]
    assert np.abs(a - b).max() > 1e-3
