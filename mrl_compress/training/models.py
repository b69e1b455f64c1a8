"""The compressors as torch modules: what is trained, exported to ONNX and saved.

Two shapes cover the five methods:

* :class:`DenseNested` — normalise, centre, optionally rotate (PCA or a learned map), optionally
  gather chosen dimensions (ADS), optionally add a learned residual, then take nested prefixes,
  each L2-normalised. ``truncate``/``pca``/``ads``/``adaptor`` are settings of it.
* :class:`SparseTopK` — CSR's tied-weight TopK autoencoder: keep the k largest pre-activations,
  ReLU, L2-normalise the code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DenseNested(nn.Module):
    mean: torch.Tensor
    index: torch.Tensor | None

    def __init__(
        self,
        mean: torch.Tensor,
        dims: tuple[int, ...],
        rotation: torch.Tensor | None = None,
        index: torch.Tensor | None = None,
        residual_hidden: int = 0,
    ) -> None:
        super().__init__()
        self.dims = tuple(dims)
        self.register_buffer("mean", mean.float().clone())
        self.rotation = nn.Parameter(rotation.float().clone()) if rotation is not None else None
        self.register_buffer("index", index.long().clone() if index is not None else None)
        width = max(self.dims)
        self.residual: nn.Sequential | None = None
        if residual_hidden:
            inner = rotation.shape[1] if rotation is not None else mean.shape[0]
            last = nn.Linear(residual_hidden, width)
            # start as the identity map: the residual branch adds nothing until trained
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.residual = nn.Sequential(nn.Linear(inner, residual_hidden), nn.GELU(), last)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The un-normalised nested coordinates (n, max(dims)).

        Computes ``(x/|x| - mean) @ rotation`` as ``(x @ rotation)/|x| - mean @ rotation``:
        the same numbers, but the division and the subtraction run on the narrow output
        instead of the wide input, which is what makes the exported graph fast.
        """
        norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        y, offset = x, self.mean
        if self.rotation is not None:
            y, offset = y @ self.rotation, offset @ self.rotation
        if self.index is not None:
            y, offset = y.index_select(1, self.index), offset.index_select(0, self.index)
        if self.residual is None:
            width = max(self.dims)
            return y[:, :width] / norm - offset[:width]
        y = y / norm - offset
        return y[:, : max(self.dims)] + self.residual(y)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z = self.project(x)
        return tuple(unit(z[:, :d]) for d in self.dims)

    def keep_only(self, size: int) -> DenseNested:
        """Serve the prefix ``size`` alone (``fit --target``): the columns after it are
        dropped, so the exported graph computes no more than it returns."""
        self.dims = (size,)
        if self.residual is not None:  # the residual branch reads every rotated column
            return self
        if self.index is not None:
            self.index = self.index[:size].clone()
        elif self.rotation is not None:
            self.rotation = nn.Parameter(self.rotation.detach()[:, :size].clone())
        return self


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to length 1. Unlike F.normalize it exports without an Expand node."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class SparseTopK(nn.Module):
    """CSR (Wen et al., "Beyond Matryoshka", 2025): TopK sparse autoencoder on frozen vectors.

    Encoder ``h = TopK(W (x - b_pre) + b_enc)`` then ReLU; decoder tied, ``x̂ = Wᵀ h + b_pre``.
    """

    def __init__(self, dim: int, hidden: int, ks: tuple[int, ...],
                 init: torch.Tensor | None = None, mean: torch.Tensor | None = None) -> None:
        super().__init__()
        self.ks = tuple(sorted(ks))
        self.hidden = hidden
        w = torch.randn(hidden, dim) if init is None else init.clone()
        self.weight = nn.Parameter(F.normalize(w.float(), dim=1))
        self.b_enc = nn.Parameter(torch.zeros(hidden))
        b_pre = torch.zeros(dim) if mean is None else mean.float().clone()
        self.b_pre = nn.Parameter(b_pre)

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """``W (x/|x| - b_pre) + b_enc``, with the division on the narrow side (see project)."""
        norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return (x @ self.weight.t()) / norm - self.b_pre @ self.weight.t() + self.b_enc

    def codes(self, pre: torch.Tensor, k: int) -> torch.Tensor:
        """Dense (n, hidden) code keeping the top-k pre-activations, ReLU'd."""
        values, indices = pre.topk(k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, F.relu(values))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.weight + self.b_pre

    def keep_only(self, k: int) -> SparseTopK:
        """Serve ``k`` non-zeros alone (``fit --target``)."""
        self.ks = (k,)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Serving form, per k: indices int32 (n, k), values float32 (n, k) L2-normalised.

        One TopK at the largest k serves every smaller k: TopK sorts, so each is a prefix.
        """
        values, indices = self.pre_activation(x).topk(max(self.ks), dim=-1)
        values = F.relu(values)
        out: list[torch.Tensor] = []
        for k in self.ks:
            out += [indices[:, :k].to(torch.int32), unit(values[:, :k])]
        return tuple(out)
