"""Training loops (PyTorch, CPU or CUDA). Unsupervised by default: the stored vectors teach.

Candidates for the listwise loss come from two sources each step: points of the anchors' own
k-means clusters (hard candidates: near neighbours in the full space, the part of the ranking
that retrieval needs), and uniformly random points (the global shape). This plays the role of
SMEC's cross-batch memory (S-XBM) at a fraction of the cost of exact kNN on the full sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from mrl_compress.training import losses, quantization
from mrl_compress.training.models import DenseNested

Progress = Callable[[int, int, float], None]
"""Called as progress(step, total_steps, loss)."""


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cosine_decay(step: int, steps: int) -> float:
    """Learning-rate factor: 1 → 0 along half a cosine."""
    return 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))


def kmeans(x: torch.Tensor, clusters: int, iters: int = 8, seed: int = 0) -> torch.Tensor:
    """Spherical k-means assignments (n,), enough to group near neighbours together."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    centroids = x[torch.randperm(len(x), generator=g)[:clusters].to(x.device)].clone()
    assign = torch.zeros(len(x), dtype=torch.long, device=x.device)
    for _ in range(iters):
        for start in range(0, len(x), 16384):
            assign[start : start + 16384] = (x[start : start + 16384] @ centroids.t()).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=clusters).unsqueeze(1)
        centroids = torch.where(counts > 0, F.normalize(sums, dim=1), centroids)
    return assign


@dataclass
class Sampler:
    """Draws anchors and candidates: clustered (hard) plus uniform (random)."""

    x: torch.Tensor
    assign: torch.Tensor
    order: torch.Tensor  # point indices sorted by cluster
    starts: torch.Tensor  # first position of each cluster in ``order``
    counts: torch.Tensor
    generator: torch.Generator

    @classmethod
    def build(cls, x: torch.Tensor, cluster_size: int = 256, seed: int = 0) -> Sampler:
        clusters = max(1, len(x) // cluster_size)
        assign = kmeans(x, clusters, seed=seed)
        # index bookkeeping stays on the CPU, where draw()'s generator makes its indices
        # (on a GPU run a cuda ``order`` met CPU random indices in torch.cat)
        order = torch.argsort(assign).cpu()
        counts = torch.bincount(assign, minlength=clusters).cpu()
        starts = torch.cumsum(counts, 0) - counts
        return cls(x, assign, order, starts, counts, torch.Generator().manual_seed(seed))

    def within_cluster_basis(self) -> torch.Tensor:
        """Eigenvectors (columns, by decreasing eigenvalue) of the within-cluster scatter.

        The directions along which near neighbours differ from each other: the ones a ranking
        among neighbours depends on. The shared direction of all stored vectors, which PCA
        puts first, carries almost none of that. As a start for the adaptor it kept 0.725 of
        wordnet-gloss nDCG@10 at 64 d before any training, against 0.655 for PCA.
        """
        x = self.x.double()
        sums = torch.zeros(len(self.counts), x.shape[1], dtype=x.dtype,
                           device=x.device).index_add_(0, self.assign, x)
        means = sums / self.counts.clamp_min(1).unsqueeze(1).to(x)
        scatter = x.t() @ x - sums.t() @ means
        _, vecs = torch.linalg.eigh(scatter)
        return vecs.flip(1).float()

    def draw(self, anchors: int, hard: int, random: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(anchor indices, candidate indices) on the data's device; anchors come from a few
        clusters. Drawn on the CPU (the generator's device), so a GPU fit makes the same draws."""
        n_clusters = len(self.counts)
        picks = torch.randint(0, n_clusters, (max(1, hard // 256),), generator=self.generator)
        members = torch.cat([
            self.order[self.starts[c] : self.starts[c] + self.counts[c]] for c in picks.tolist()
        ])[:hard]
        if len(members) == 0:
            members = torch.randint(0, len(self.x), (hard,), generator=self.generator)
        pos = torch.randint(0, len(members), (anchors,), generator=self.generator)
        rand = torch.randint(0, len(self.x), (random,), generator=self.generator)
        return members[pos].to(self.x.device), torch.cat([members, rand]).to(self.x.device)


def query_like(x: torch.Tensor, anchors: torch.Tensor, mix: float,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor vectors, a fraction ``mix`` of them blended with a random point.

    Queries sit farther from their nearest documents than documents sit from each other
    (wordnet-gloss: top-1 cosine 0.60 vs 0.74), so their neighbourhoods are flatter. Blending
    an anchor with a random point (cosine ≈ 0.8 to the original) gives such anchors without
    any query log. Returns (vectors, is_real) — a blended anchor is no candidate's duplicate.
    """
    xa = x[anchors]
    blend = torch.rand(len(anchors), generator=generator) < mix
    if blend.any():
        partner = x[torch.randint(0, len(x), (int(blend.sum()),), generator=generator)]
        blended = F.normalize(xa[blend.to(x.device)] + 0.75 * partner, dim=-1)
        xa = xa.clone()
        xa[blend.to(x.device)] = blended
    return xa, ~blend.to(x.device)


def dense_step_loss(model: DenseNested, xa: torch.Tensor, xc: torch.Tensor,
                    self_match: torch.Tensor, log_scales: torch.Tensor,
                    tau: float, quantizer: str | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Listwise loss of every nested prefix; with ``quantizer``, the candidates (the stored
    side) are scored through a simulation of that engine code (:mod:`.quantization`), and
    the anchors too where the engine codes queries like documents (symmetric binary)."""
    # an anchor is its own best candidate in every space: mask it out of the ranking
    teacher = (xa @ xc.t()).masked_fill(self_match, -1e4)
    za, zc = model.project(xa), model.project(xc)
    total = torch.zeros((), device=xa.device)
    symmetric = quantizer is not None and quantization.is_symmetric(quantizer)
    for i, d in enumerate(model.dims):
        sa, sc = F.normalize(za[:, :d], dim=-1), F.normalize(zc[:, :d], dim=-1)
        if quantizer is not None:
            assert generator is not None
            sc = quantization.simulated(sc, quantizer, generator)
            if symmetric:
                sa = quantization.simulated(sa, quantizer, generator)
        student = (sa @ sc.t()).masked_fill(self_match, -1e4)
        tau_s = tau * torch.exp(log_scales[i])
        total = total + losses.similarity_preservation(teacher, student, tau, tau_s)
    return total / len(model.dims)


def draw_pairs(pairs: tuple[torch.Tensor, torch.Tensor], generator: torch.Generator,
               dev: torch.device, size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of distinct pairs (drawn without replacement: a pair drawn twice would be its
    own negative)."""
    idx = torch.randperm(len(pairs[0]), generator=generator)[:size]
    return pairs[0][idx].to(dev), pairs[1][idx].to(dev)


def pair_ranking_loss(model: DenseNested, q: torch.Tensor, d: torch.Tensor,
                      stored: torch.Tensor | None) -> torch.Tensor:
    """Ranking on pairs, averaged over the nested prefixes: query i against the batch's
    documents and, where given, ``stored`` vectors (copies of its own documents masked)."""
    columns = d if stored is None else torch.cat([d, stored])
    masked = losses.no_negatives(q, d, stored)
    outs = zip(model(q), model(columns), strict=True)
    return sum((losses.ranking(zq, zc, masked=masked) for zq, zc in outs),
               torch.zeros((), device=q.device)) / len(model.dims)


def train_dense(
    model: DenseNested,
    x: torch.Tensor,
    steps: int,
    *,
    anchors: int = 256,
    hard: int = 2048,
    random: int = 2048,
    lr: float = 1e-3,
    tau: float = 0.05,
    mix: float = 0.5,
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
    pair_weight: float = 0.25,
    corpus_negatives: bool = True,
    sampler: Sampler | None = None,
    quantizer: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> DenseNested:
    """Similarity preservation over nested prefixes (+ ranking on pairs when given); the
    former through a simulation of the engine's ``quantizer`` where given (dense_step_loss)."""
    torch.manual_seed(seed)
    dev = device()
    model.to(dev)
    x = F.normalize(x.to(dev).float(), dim=-1)
    sampler = sampler or Sampler.build(x, seed=seed)
    log_scales = torch.zeros(len(model.dims), device=dev, requires_grad=True)
    params = [p for p in model.parameters() if p.requires_grad] + [log_scales]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_decay(s, steps))
    pair_gen = torch.Generator().manual_seed(seed + 1)
    code_gen = torch.Generator().manual_seed(seed + 2)
    for step in range(steps):
        a, c = sampler.draw(anchors, hard, random)
        xa, real = query_like(x, a, mix, sampler.generator)
        self_match = (a[:, None] == c[None, :]) & real[:, None]
        loss = dense_step_loss(model, xa, x[c], self_match, log_scales, tau, quantizer,
                               code_gen)
        if pairs is not None:
            q, d = draw_pairs(pairs, pair_gen, dev)
            stored = x[c] if corpus_negatives else None
            loss = loss + pair_weight * pair_ranking_loss(model, q, d, stored)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(step + 1, steps, loss.item())
    return model.cpu().eval()
