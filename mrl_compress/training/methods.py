"""One trainer per method: stored vectors (+ optional pairs) in, a torch module out.

Every trainer receives unit-normalised float32 vectors and returns a module whose ``forward``
is exactly what the ONNX graph will compute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch.nn import functional as F

from mrl_compress.errors import InvalidInput
from mrl_compress.training import losses, quantization
from mrl_compress.training.models import DenseNested, SparseTopK
from mrl_compress.training.trainer import (
    Progress,
    Sampler,
    cosine_decay,
    device,
    draw_pairs,
    query_like,
    train_dense,
)

Pairs = tuple[torch.Tensor, torch.Tensor] | None


@dataclass
class TrainSettings:
    dims: tuple[int, ...] = (64, 128, 256)
    ks: tuple[int, ...] = (32,)
    hidden: int | None = None
    steps: int | None = None
    lr: float | None = None
    # teacher temperature of the listwise loss; None = the method's default (adaptor 0.08,
    # ads and csr 0.05). On wordnet-gloss the adaptor kept 0.777 / 0.813 / 0.783 at 64 d with
    # 0.03 / 0.08 / 0.12 (1600 steps), and 0.797 / 0.803 with 0.05 / 0.08 at the defaults.
    tau: float | None = None
    residual_hidden: int = 0
    rotate: bool = False  # ads: select dimensions of a rotation (see init) instead of raw ones
    mix: float = 0.5  # fraction of query-like (blended) anchors, see trainer.query_like
    center: bool = False  # adaptor with init="pca": the uncentred PCA basis (see pca_basis)
    init: str = "auto"  # adaptor, ads --rotate: "local", "pca" or "auto"; see starting_basis
    # adaptor: True trains the largest prefix first, then adds smaller ones (SMEC's SMRL);
    # False (default) trains all prefixes at once, which kept more at 64 d on wordnet-gloss
    sequential: bool = False
    # listwise loss batch: anchors per step and candidates ranked for each (half from the
    # anchors' clusters, half uniform); None = the method's default (adaptor 512/1024, csr
    # 256/1536)
    anchors: int | None = None
    candidates: int | None = None
    csr_similarity: float = 1.0
    # csr: how documents are coded for serving. "pursuit" (the default): matching pursuit over
    # the trained dictionary, queries scored through their correlations with its atoms;
    # "topk": the published CSR encoder, queries coded like documents. k = 32, nDCG@10
    # retention single stage / two-stage: wordnet-gloss 0.845 / 1.000 vs 0.477 / 0.851,
    # SciFact 0.973 / 1.000 vs 0.824 / 0.993 (docs/benchmarks.md)
    encoder: str | None = None
    # weight of the ranking loss on --pairs; None = the method's default (adaptor 0.25, csr
    # 0.1). The adaptor's was chosen on SciFact's train split (bench/quality.py
    # --pair-weights, two seeds: 0.25 kept the most of 0.25 / 0.5 / 1 at 64 d); csr k = 32,
    # test: 0.845 / 0.821 at 0.1 / 1
    pair_weight: float | None = None
    # adaptor --pairs (None = yes; csr ignores it): the step's stored candidates are
    # negatives too, not only the other pairs' documents. SciFact test, 64 d, weight 0.5,
    # seeds 0/1/2: 0.915 / 0.944 / 0.931 vs 0.911 / 0.924 / 0.922. (csr, one ad-hoc run
    # before copies were masked: 0.808 vs 0.845 with in-batch negatives only.)
    corpus_negatives: bool | None = None
    # adaptor: train through a simulation of the engine quantizer the outputs will be stored
    # with (quantization-aware; see training.quantization), e.g. "turbo2"; None = float scores
    quantizer: str | None = None
    # adaptor: after training, turn each nested shell of the basis by a random rotation
    # (spread_within_prefixes). Every prefix scores exactly as trained; the engine's PQ and
    # binary codes keep the spread coordinates better (recall@10 on wordnet-gloss: pq16 of
    # one 192-d output +0.023, binary1-q8 of a 384-d one +0.09; docs/benchmarks.md). Where
    # it does not apply (spreads()) the manifest records False.
    spread: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse a setting of the wrong kind in one line (settings can come from the CLI)."""
        for f in fields(self):
            value, kind = getattr(self, f.name), str(f.type)
            if f.name in ("dims", "ks") or (value is None and "None" in kind):
                continue
            if kind.startswith("bool"):
                ok = isinstance(value, bool)
            elif kind.startswith("str"):
                ok = isinstance(value, str)
            else:
                ok = (isinstance(value, int | float) and not isinstance(value, bool)
                      and value >= 0 and (kind.startswith("float") or value == int(value)))
                if ok and kind.startswith("int"):
                    setattr(self, f.name, int(value))
            if not ok:
                raise InvalidInput(f"training setting {f.name}: expected {kind}, "
                                   f"found {value!r}")
        if self.encoder not in (None, "pursuit", "topk"):
            raise InvalidInput(f"training setting encoder: expected 'pursuit' or 'topk', "
                               f"found {self.encoder!r}")
        self.quantizer = quantization.check(self.quantizer)
        if self.init not in ("auto", "local", "pca"):
            raise InvalidInput(f"training setting init: expected 'auto', 'local' or 'pca', "
                               f"found {self.init!r}")


def pca_basis(x: torch.Tensor, center: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, eigenvectors sorted by decreasing variance as columns).

    Uncentred (``center=False``: mean = 0, eigenvectors of the second moment) keeps the
    direction all stored vectors share, which scoring L2-normalised prefixes turned out to
    need: on wordnet-gloss it kept more nDCG at 128 and 256 d than the centred basis.
    """
    mean = x.mean(0) if center else torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
    xc = (x - mean).double()
    cov = xc.t() @ xc / max(1, len(x) - 1)
    _, vecs = torch.linalg.eigh(cov)
    return mean, vecs.flip(1).float()


LOCAL_MIN_CLUSTERS = 64


def starting_basis(x: torch.Tensor, sampler: Sampler,
                   s: TrainSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, basis) a rotation starts from: the within-cluster scatter's eigenvectors
    ("local", see :meth:`Sampler.within_cluster_basis`) or PCA's ("pca").

    "auto" takes "local" when the sample forms at least 64 clusters (~16k rows). Measured
    (docs/benchmarks.md): on wordnet-gloss (100k rows, ~390 clusters) the local start kept
    0.725 at 64 d untrained against PCA's 0.655, and 0.804 trained; on SciFact (4k rows, 16
    clusters) and Cranfield (1.1k rows, 4 clusters) the few clusters barely localise and
    PCA's start did better trained (0.889 vs 0.883, 0.938 vs 0.928).
    """
    local = s.init == "local" or (s.init == "auto" and len(sampler.counts) >= LOCAL_MIN_CLUSTERS)
    if local:
        return torch.zeros(x.shape[1], device=x.device), sampler.within_cluster_basis()
    return pca_basis(x, center=s.center)


def spreads(method: str, s: TrainSettings) -> bool:
    """Whether a fit turns its shells after training (``spread``): the adaptor's linear map
    only. Not a residual branch, which reads the basis; not a map trained through a sign
    code, whose coordinates are what that training fitted to the code (turned afterwards,
    binary1 recall@10 fell from 0.52 to 0.47 on SciFact)."""
    sign = s.quantizer is not None and quantization.is_sign_code(s.quantizer)
    return s.spread and method == "adaptor" and not s.residual_hidden and not sign


def spread_within_prefixes(basis: torch.Tensor, dims: tuple[int, ...],
                           seed: int) -> torch.Tensor:
    """The basis with each nested shell (the columns between two prefix sizes) turned by a
    random rotation: every prefix spans what it spanned, but its variance is spread over
    its coordinates instead of falling off with the eigenvalues.

    The engine's data-oblivious-per-coordinate codes waste what a coordinate of little
    variance is given. A sign code (the engine's binary quantizer, which does not rotate)
    keeps one bit per coordinate whatever its variance: from the within-cluster eigenbasis,
    a 384-d adaptor stored as binary1-q8 kept recall@10 0.600 on wordnet-gloss (the full
    vector's own binary1-q8: 0.675). Product quantization gives each run of coordinates
    (Qdrant's PQ cuts the vector into contiguous chunks) the same 256 centroids, so the
    chunks past the first few, of little variance, waste theirs. TurboQuant rotates the
    vector itself, and a rotation changes no float score, so spreading costs those nothing.
    """
    g = torch.Generator().manual_seed(seed + 3)
    out = basis.clone()
    edges = [0, *sorted(set(dims))]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        spin = quantization.random_rotation(hi - lo, g).to(basis)
        out[:, lo:hi] = basis[:, lo:hi] @ spin
    return out


def fit_truncate(x: torch.Tensor, s: TrainSettings, pairs: Pairs,
                 progress: Progress | None) -> DenseNested:
    """Matryoshka prefix: nothing to learn (no centring, so it equals the plain prefix)."""
    return DenseNested(torch.zeros(x.shape[1]), s.dims).eval()


def fit_pca(x: torch.Tensor, s: TrainSettings, pairs: Pairs,
            progress: Progress | None) -> DenseNested:
    mean, basis = pca_basis(x)
    return DenseNested(mean, s.dims, rotation=basis[:, : max(s.dims)]).eval()


def fit_adaptor(x: torch.Tensor, s: TrainSettings, pairs: Pairs,
                progress: Progress | None) -> DenseNested:
    """Matryoshka-Adaptor / SMEC's SMRL, unsupervised: a map from the full vector to nested
    prefixes, trained to preserve each point's similarity ranking.

    On a large enough sample it starts from the eigenvectors of the within-cluster scatter
    rather than PCA's (:func:`starting_basis`): on wordnet-gloss that start alone kept 0.725
    at 64 d (PCA 0.655); trained with the defaults it keeps 0.804 after a 58 s fit, where the
    PCA start (with the earlier defaults) needed 3600 steps and 264 s.

    All nested prefixes are trained at once by default. ``sequential=True`` follows SMEC's
    SMRL instead: the largest prefix first, each later stage adding the next smaller one, so
    small prefixes are fitted on top of settled large ones. On wordnet-gloss (docs/
    benchmarks.md) joint training kept more at 64 d (0.766 vs 0.749 nDCG@10 retention; two-
    stage 0.993 vs 0.988) and sequential more at 128 d (0.949 vs 0.940).
    """
    x = F.normalize(x.to(device()).float(), dim=-1)
    sampler = Sampler.build(x, seed=s.seed)
    mean, basis = starting_basis(x, sampler, s)
    if s.quantizer is not None and quantization.is_sign_code(s.quantizer):
        basis = spread_within_prefixes(basis, s.dims, s.seed)
    model = DenseNested(mean.cpu(), s.dims, rotation=basis[:, : max(s.dims)].cpu(),
                        residual_hidden=s.residual_hidden)
    steps = s.steps or 1200
    candidates = s.candidates or 1024
    largest_first = sorted(s.dims, reverse=True)
    stages = ([tuple(sorted(largest_first[: i + 1])) for i in range(len(largest_first))]
              if s.sequential else [tuple(sorted(s.dims))])
    per_stage = [steps // len(stages)] * len(stages)
    per_stage[-1] += steps - sum(per_stage)
    done = 0
    for i, (stage_dims, n) in enumerate(zip(stages, per_stage, strict=True)):
        model.dims = stage_dims
        model = train_dense(model, x, n, lr=s.lr or 2e-3, tau=s.tau or 0.08, mix=s.mix,
                            pairs=pairs, pair_weight=_default(s.pair_weight, 0.25),
                            corpus_negatives=s.corpus_negatives is not False,
                            anchors=s.anchors or 512, hard=candidates // 2,
                            random=candidates // 2, sampler=sampler,
                            quantizer=s.quantizer, seed=s.seed + i,
                            progress=_offset(progress, done, steps))
        done += n
    model.dims = tuple(s.dims)
    if spreads("adaptor", s) and model.rotation is not None:
        with torch.no_grad():
            model.rotation.copy_(spread_within_prefixes(model.rotation.detach(), s.dims,
                                                        s.seed + 1))
    return model.eval()


def fit_ads(x: torch.Tensor, s: TrainSettings, pairs: Pairs,
            progress: Progress | None) -> DenseNested:
    """SMEC's Adaptive Dimension Selection: learn an importance score per dimension with a
    Gumbel-softmax relaxation of "keep the top d", for every requested d at once, trained to
    preserve similarity rankings. Inference keeps the top-d dimensions: a gather.

    The scores start from the better of two orders — the stored prefix (right for a
    Matryoshka-trained model) and decreasing second moment (right for most others) — judged
    by the ranking loss on a fixed evaluation draw, and the learned order is kept only if it
    beats that start on the same draw. With ``rotate`` the dimensions are those of a rotation:
    the adaptor's starting basis (see :func:`starting_basis`).
    """
    dev = device()
    tau = s.tau or 0.05
    x = F.normalize(x.to(dev).float(), dim=-1)
    sampler = Sampler.build(x, seed=s.seed)
    zero = torch.zeros(x.shape[1], device=dev)
    if s.rotate:
        mean, basis = starting_basis(x, sampler, s)
    else:
        mean, basis = (x.mean(0) if s.center else zero), None
    y = (x - mean) @ basis if basis is not None else x - mean
    gen = torch.Generator().manual_seed(s.seed)
    fixed_draw = [sampler.draw(256, 2048, 2048) for _ in range(4)]

    def ranking_loss(order: torch.Tensor) -> float:
        """Listwise loss of hard top-d selections by ``order`` (lower is better)."""
        total = 0.0
        for a, c in fixed_draw:
            teacher = (x[a] @ x[c].t()).masked_fill(a[:, None] == c[None, :], -1e4)
            for d in s.dims:
                keep = order[:d].to(dev)
                ya, yc = F.normalize(y[a][:, keep], dim=-1), F.normalize(y[c][:, keep], dim=-1)
                student = (ya @ yc.t()).masked_fill(a[:, None] == c[None, :], -1e4)
                total += float(losses.similarity_preservation(teacher, student, tau, tau))
        return total

    dim = y.shape[1]
    priors = {"prefix": torch.arange(dim), "moment": torch.argsort((y**2).mean(0).cpu(),
                                                                   descending=True)}
    start = min(priors, key=lambda name: ranking_loss(priors[name]))
    # scores with unit spread, ordered like the chosen prior
    logits = torch.empty(dim, device=dev)
    logits[priors[start].to(dev)] = torch.linspace(2.0, -2.0, dim, device=dev)
    logits.requires_grad_(True)
    scale = torch.zeros(1, device=dev, requires_grad=True)
    opt = torch.optim.Adam([logits, scale], lr=s.lr or 0.02)
    steps = s.steps or 300
    for step in range(steps):
        temp = 0.05 ** (step / max(1, steps - 1))  # anneal the relaxation 1 → 0.05
        a, c = sampler.draw(256, 2048, 2048)
        xa, real = query_like(x, a, s.mix, sampler.generator)
        self_match = (a[:, None] == c[None, :]) & real[:, None]
        teacher = (xa @ x[c].t()).masked_fill(self_match, -1e4)
        ya_all = (xa - mean) @ basis if basis is not None else xa - mean
        noisy = logits + 0.5 * temp * _gumbel(logits.shape, gen, dev)
        loss = torch.zeros((), device=dev)
        for d in s.dims:
            threshold = noisy.topk(d).values[-1].detach()
            mask = torch.sigmoid((noisy - threshold) / temp)
            ya, yc = F.normalize(ya_all * mask, dim=-1), F.normalize(y[c] * mask, dim=-1)
            student = (ya @ yc.t()).masked_fill(self_match, -1e4)
            loss = loss + losses.similarity_preservation(teacher, student, tau,
                                                         tau * torch.exp(scale))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1, steps, loss.item())
    learned = torch.argsort(logits.detach(), descending=True).cpu()
    order = learned if ranking_loss(learned) < ranking_loss(priors[start]) else priors[start]
    return DenseNested(mean.cpu(), s.dims, rotation=basis.cpu() if basis is not None else None,
                       index=order[: max(s.dims)]).eval()


def fit_csr(x: torch.Tensor, s: TrainSettings, pairs: Pairs,
            progress: Progress | None) -> SparseTopK:
    """CSR (Wen et al. 2025): TopK sparse autoencoder with tied weights on the frozen vectors.

    Loss per step: L(k) + ⅛·L(4k) reconstruction + aux-k/32 (dead latents reconstruct the
    residual) + listwise similarity preservation of the L2-normalised codes (our unsupervised
    stand-in for CSR's contrastive term: it ranks neighbours like the full vectors do)
    + ranking on pairs when given. Dead latent = silent for 30 steps; aux-k = 512 as published.
    """
    dev = device()
    tau = s.tau or 0.05
    x = F.normalize(x.to(dev).float(), dim=-1)
    dim = x.shape[1]
    hidden = s.hidden or 4 * dim
    k = max(s.ks)
    # initialise the dictionary on data points: every latent starts alive
    g = torch.Generator().manual_seed(s.seed)
    mean = x.mean(0)
    # distinct rows where there are enough: a row drawn twice made two atoms that training
    # never parted (cosine > 0.999), and pursuit then meets exact ties between them
    rows = (torch.randperm(len(x), generator=g)[:hidden] if hidden <= len(x)
            else torch.randint(0, len(x), (hidden,), generator=g))
    init = x[rows.to(dev)] - mean
    model = SparseTopK(dim, hidden, s.ks, init=init.cpu(), mean=mean.cpu()).to(dev)
    log_scale = torch.zeros(1, device=dev, requires_grad=True)
    opt = torch.optim.Adam([*model.parameters(), log_scale], lr=s.lr or 1e-3)
    steps = s.steps or 800
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: cosine_decay(t, steps))
    sampler = Sampler.build(x, seed=s.seed)
    silent = torch.zeros(hidden, device=dev)
    anchors, candidates = s.anchors or 256, s.candidates or 1536
    for step in range(steps):
        a, c = sampler.draw(anchors, candidates // 2, candidates // 2)
        xa = x[a]
        pre = model.pre_activation(xa)
        h = model.codes(pre, k)
        loss = losses.reconstruction(xa, model.decode(h))
        h4 = model.codes(pre, min(4 * k, hidden))
        loss = loss + losses.reconstruction(xa, model.decode(h4)) / 8
        silent = torch.where((h > 0).any(0), torch.zeros_like(silent), silent + 1)
        dead = silent >= 30
        if dead.any():
            residual = (xa - model.decode(h)).detach()
            aux = model.codes(pre.masked_fill(~dead, -1e4), min(512, int(dead.sum())))
            loss = loss + losses.reconstruction(residual, aux @ model.weight) / 32
        # similarity preservation on the codes, from query-like anchors (see trainer.query_like)
        qa, real = query_like(x, a, s.mix, sampler.generator)
        ha = model.codes(model.pre_activation(qa), k)
        hc = model.codes(model.pre_activation(x[c]), k)
        self_match = (a[:, None] == c[None, :]) & real[:, None]
        teacher = (qa @ x[c].t()).masked_fill(self_match, -1e4)
        student = (F.normalize(ha, dim=-1) @ F.normalize(hc, dim=-1).t()).masked_fill(
            self_match, -1e4)
        loss = loss + s.csr_similarity * losses.similarity_preservation(
            teacher, student, tau, tau * torch.exp(log_scale))
        if pairs is not None:
            q, d = draw_pairs(pairs, g, dev)
            hq = F.normalize(model.codes(model.pre_activation(q), k), dim=-1)
            hd = F.normalize(model.codes(model.pre_activation(d), k), dim=-1)
            loss = loss + _default(s.pair_weight, 0.1) * losses.ranking(
                hq, hd, masked=losses.no_negatives(q, d))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(step + 1, steps, loss.item())
    model = model.cpu().eval()
    return model.use_pursuit() if s.encoder == "pursuit" else model


def _default(value: float | None, default: float) -> float:
    """A setting's value, or the method's default where it was left unset (0 is a value)."""
    return default if value is None else value


def _gumbel(shape: torch.Size, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
    # drawn on the CPU (gen is a CPU generator), so a GPU fit draws the same noise
    u = torch.rand(shape, generator=gen).clamp(1e-6, 1 - 1e-6).to(dev)
    return -torch.log(-torch.log(u))


def _offset(progress: Progress | None, done: int, total: int) -> Progress | None:
    if progress is None:
        return None
    return lambda step, _steps, loss: progress(done + step, total, loss)


Trainer = Callable[[torch.Tensor, TrainSettings, Pairs, Progress | None], DenseNested | SparseTopK]

TRAINERS: dict[str, Trainer] = {
    "truncate": fit_truncate,
    "pca": fit_pca,
    "ads": fit_ads,
    "adaptor": fit_adaptor,
    "csr": fit_csr,
}


def weights_of(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Parameters and buffers as numpy arrays, under the names the numpy runtime reads."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items() if v is not None}
