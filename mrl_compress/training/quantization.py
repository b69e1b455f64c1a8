"""Differentiable stand-ins for the engines' quantizers: quantization-aware training.

A reduction stored with the engine's low-bit code is searched through that code, not
through its float values. Training the reduction on float scores teaches it nothing about
the code: the listwise loss is blind to the overall spread of a point's scores (its learned
temperature absorbs it), while the code adds an error of fixed size to every score. Trained
through the code, the map spends its unit length on the directions that separate near
neighbours, where the code's error matters least.

:func:`simulated` returns the document side as the engine would score it: forward, the
dequantized code; backward, the identity (straight-through), so the gradient is the float
one evaluated at the code's scores. The engines' exact code books are theirs; what is
simulated is the part the ranking depends on:

* ``turbo<b>`` (TurboQuant): a random rotation, then each coordinate, distributed about
  N(0, 1/d) for a unit vector, to the nearest of 2^b Lloyd-Max levels of that Gaussian. A
  fresh rotation each step: the engine's own rotation is unknown to us, and the map must
  suit any.
* ``binary<b>`` (sign codes, no rotation): each coordinate's sign (1 bit), scaled to unit
  length; 1.5 and 2 bits are simulated as 3 and 4 Lloyd-Max levels.
* ``int8``, ``turbo8`` and ``float32``: no simulation (their error is below the ranking's
  resolution).

Only the listwise similarity loss is scored through the code; the ranking loss on
``--pairs`` stays on float scores.
"""

from __future__ import annotations

import math
from functools import cache

import torch

from mrl_compress import quantizers
from mrl_compress.errors import InvalidInput

SIMULATED = ("turbo", "binary")


@cache
def lloyd_max(levels: int) -> tuple[float, ...]:
    """The ``levels`` reconstruction points minimising the mean squared error of N(0, 1),
    by Lloyd's iterations on a fine grid from the Gaussian's quantiles, until they move less
    than 1e-9 (2 levels: ±0.798; 4: ±0.453, ±1.510; 16: outermost ±2.73)."""
    grid = torch.linspace(-8, 8, 64001, dtype=torch.float64)
    weight = torch.exp(-grid**2 / 2)
    normal = torch.distributions.Normal(0.0, 1.0)
    centres = normal.icdf((torch.arange(levels, dtype=torch.float64) + 0.5) / levels)
    for _ in range(2000):
        edges = (centres[1:] + centres[:-1]) / 2
        cell = torch.bucketize(grid, edges)
        mass = torch.zeros(levels, dtype=torch.float64).index_add_(0, cell, weight)
        moment = torch.zeros(levels, dtype=torch.float64).index_add_(0, cell, weight * grid)
        moved, centres = centres, moment / mass.clamp_min(1e-300)
        if float((centres - moved).abs().max()) < 1e-9:
            break
    return tuple(float(c) for c in centres)


def check(name: str | None) -> str | None:
    """The canonical name of a quantizer training can simulate, or None for no simulation
    (float32, int8, turbo8: their error is below the ranking's resolution); product
    quantization and the IVF indexes (``@ivf``: Milvus's RaBitQ rotates, unlike a sign code)
    are refused in one line."""
    if name is None:
        return None
    q = quantizers.parse(name)
    if q.index == "hnsw" and (q.family in ("float32", "int8") or q.bits >= 8):
        return None
    if q.family not in SIMULATED or q.index != "hnsw":
        raise InvalidInput(f"training setting quantizer: expected a turbo or binary quantizer "
                           f"of the graph index (or int8, float32), found {name!r}")
    return q.name


def is_symmetric(name: str) -> bool:
    """Whether the engine codes queries like documents (binary without ``-q8``/``-q4``)."""
    q = quantizers.parse(name)
    return q.family == "binary" and q.query is None


def is_sign_code(name: str) -> bool:
    """Whether the engine codes each coordinate as it is, without rotating (binary)."""
    return quantizers.parse(name).family == "binary"


def simulated(z: torch.Tensor, name: str, generator: torch.Generator) -> torch.Tensor:
    """Unit rows ``z`` as the engine's ``name`` code scores them (straight-through).

    The coded rows are scaled back to their input's length, as an engine that keeps each
    vector's norm beside its code scores them; the code's cosine to its input is then
    sqrt(1 - D) for the levels' mean squared error D (2 levels 0.798, 4 levels 0.939)."""
    q = quantizers.parse(name)
    d = z.shape[1]
    levels = 2 if q.bits == 1 else 3 if q.bits == 1.5 else round(2**q.bits)
    book = torch.tensor(lloyd_max(levels), dtype=z.dtype, device=z.device)
    if q.family == "turbo":
        rotation = random_rotation(d, generator).to(z)
        y = z @ rotation * math.sqrt(d)  # coordinates ~ N(0, 1)
        coded = nearest(y, book) @ rotation.t()
    else:
        # as N(0, 1) coordinates: E|y| = sqrt(2 / pi) for a standard Gaussian
        y = z * (math.sqrt(2 / math.pi) / z.abs().mean(dim=1, keepdim=True).clamp_min(1e-12))
        coded = nearest(y, book)
    coded = coded / coded.norm(dim=1, keepdim=True).clamp_min(1e-12) * z.norm(dim=1,
                                                                                keepdim=True)
    return z + (coded - z).detach()


def nearest(y: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    edges = (book[1:] + book[:-1]) / 2
    return book[torch.bucketize(y.detach(), edges)]


def random_rotation(d: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random orthogonal matrix (QR of a Gaussian, signs fixed)."""
    g = torch.randn(d, d, generator=generator)
    qm, r = torch.linalg.qr(g)
    return qm * torch.sign(torch.diagonal(r)).unsqueeze(0)
