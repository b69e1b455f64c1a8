"""The compressors as torch modules: what is trained, exported to ONNX and saved.

Two shapes cover the five methods:

* :class:`DenseNested` — normalise, centre, optionally rotate (PCA or a learned map), optionally
  gather chosen dimensions (ADS), optionally add a learned residual, then take nested prefixes,
  each L2-normalised. ``truncate``/``pca``/``ads``/``adaptor`` are settings of it.
* :class:`SparseTopK` — CSR's tied-weight TopK autoencoder: keep the k largest pre-activations,
  ReLU, L2-normalise the code; or, once trained, encode by matching pursuit over its dictionary
  (:meth:`SparseTopK.use_pursuit`).
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
        # pursuit's constants (see use_pursuit): graph constants, not saved weights
        self.register_buffer("atoms", None, persistent=False)
        self.register_buffer("gram", None, persistent=False)

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

    # -- pursuit encoding -----------------------------------------------------------------
    atoms: torch.Tensor | None
    gram: torch.Tensor | None

    def use_pursuit(self) -> SparseTopK:
        """Serve codes found by matching pursuit over the trained dictionary (see forward).

        The unit atoms and their Gram matrix are buffers that are not saved with the weights
        (the numpy runtime recomputes them from ``weight``) but are constants of the graph.
        """
        atoms = unit(self.weight.detach())
        self.atoms, self.gram = atoms, atoms @ atoms.t()
        return self

    def pursuit(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Matching pursuit: k greedy steps, each taking the atom (either sign) most correlated
        with what is left of ``x/|x|`` and removing its share. Each atom is taken once.

        The vector itself is pursued, not ``x - b_pre`` as the TopK encoder codes it: scores are
        cosines with the reconstruction, and ranking by them is ranking by ``q·x`` only when
        the reconstruction is of ``x`` (SciFact, k = 32, one ad-hoc fit: 0.982 vs 0.957 of full
        nDCG@10).

        Returns atom ids (n, k) and signed coefficients (n, k), in the order taken, so the
        first j columns are the j-step pursuit: one run serves every smaller k. The residual's
        correlations are updated through the Gram matrix, which costs (n, hidden) per step
        instead of a new (n, dim) × (dim, hidden) product.
        """
        assert self.atoms is not None and self.gram is not None, "call use_pursuit() first"
        norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        corr = (x @ self.atoms.t()) / norm
        taken = torch.zeros_like(corr)
        ids, coefs = [], []
        for _ in range(k):
            j = (corr.abs() - taken).argmax(dim=-1, keepdim=True)
            coef = corr.gather(1, j)
            corr = corr - coef * self.gram.index_select(0, j.squeeze(1))
            taken = taken.scatter(1, j, torch.full_like(coef, 1e9))
            ids.append(j)
            coefs.append(coef)
        return torch.cat(ids, 1), torch.cat(coefs, 1)

    def signed_code(self, ids: torch.Tensor, coefs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Stored form of a pursuit code: slot ``id`` for a positive coefficient and
        ``hidden + id`` for a negative one (engines such as Milvus take no negative sparse
        values), value ``|coef|`` scaled so that the code's reconstruction has length 1 —
        then a query's dictionary correlations score documents by cosine."""
        assert self.atoms is not None, "call use_pursuit() first"
        # the reconstruction itself, one (n, hidden) @ (hidden, dim) product: indexing the Gram
        # matrix by pairs of ids instead made the exporter fold a second copy of it
        shares = torch.zeros(ids.shape[0], self.hidden, device=coefs.device).scatter(1, ids, coefs)
        length = (shares @ self.atoms).norm(dim=-1, keepdim=True).clamp_min(1e-12)
        slots = ids + self.hidden * (coefs < 0).long()
        return slots.to(torch.int32), coefs.abs() / length

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Serving form, per k: indices int32 (n, k), values float32 (n, k).

        TopK (the published CSR): values L2-normalised; one TopK at the largest k serves every
        smaller k, since TopK sorts. Pursuit: see :meth:`pursuit` and :meth:`signed_code`.
        """
        if self.gram is not None:
            ids, coefs = self.pursuit(x, max(self.ks))
            out: list[torch.Tensor] = []
            for k in self.ks:
                out += self.signed_code(ids[:, :k], coefs[:, :k])
            return tuple(out)
        values, indices = self.pre_activation(x).topk(max(self.ks), dim=-1)
        values = F.relu(values)
        out = []
        for k in self.ks:
            out += [indices[:, :k].to(torch.int32), unit(values[:, :k])]
        return tuple(out)
