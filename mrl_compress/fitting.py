"""``fit``: stored vectors in, a :class:`~mrl_compress.compressor.Compressor` out.

Holds out a slice of the vectors, trains the chosen method on the rest (PyTorch), exports
the ONNX graph, measures retention on the held-out slice through the *exported* graph (what
serving will run), and optionally keeps only the smallest output meeting ``target``. Given a
factory of scratch stores (the CLI hands in a Qdrant Edge shard), the retention table carries
the engine's own quantizers of the full vector at our outputs' budgets, measured in that
engine on the same vectors; without one it says they were not measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING

import numpy as np

from mrl_compress import retention
from mrl_compress.artifact import METHODS, Fingerprint, Manifest
from mrl_compress.compressor import Compressor
from mrl_compress.errors import InvalidInput, MissingDependency, MrlCompressError, require
from mrl_compress.outputs import Output
from mrl_compress.retention import EngineReferences
from mrl_compress.vectors import validate

if TYPE_CHECKING:  # torch is imported only when training
    from mrl_compress.store import VectorStore
    from mrl_compress.training.models import DenseNested, SparseTopK

MIN_ROWS = 256
CSR_ENCODER = "pursuit"  # csr's default serving encoder (see TrainSettings.encoder)
LEARNS_FROM_PAIRS = ("adaptor", "csr")  # the methods whose loss has a ranking term for --pairs
Progress = Callable[[int, int, float], None]
Scratch = Callable[[], "VectorStore"]
"""A factory of an empty scratch store of the engine (``adapters.scratch_for``); fit closes it."""


@dataclass
class FitResult:
    compressor: Compressor
    retention: list[retention.Row]
    chosen: Output | None = None
    reason: str | None = None
    dropped: int = 0
    seconds: float = 0.0
    model: object = None
    """The trained torch module (training side only; serving uses ``compressor``)."""
    references: EngineReferences | None = None
    """The engine rows of ``retention`` and what they were measured on, or why not."""


def output_specs(method: str, dim: int, dims: Sequence[int], ks: Sequence[int],
                 hidden: int | None, encoder: object = None) -> list[Output]:
    if method == "csr":
        h = hidden or 4 * dim
        for k in ks:
            if not 0 < k <= h:
                raise InvalidInput(f"--k {k} must be between 1 and the hidden size {h}")
        # a pursuit code's coefficients are signed: atom j's negative share has slot h + j
        slots = 2 * h if (encoder or CSR_ENCODER) == "pursuit" else h
        return [Output(f"csr_{k}", "sparse", slots, nonzeros=k) for k in sorted(set(ks))]
    for d in dims:
        if not 0 < d <= dim:
            raise InvalidInput(f"--dims {d} must be between 1 and the input dimension {dim}")
    return [Output(f"mrl_{d}", "dense", d) for d in sorted(set(dims))]


def split_holdout(n: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return perm[holdout:], perm[:holdout]


def fit(
    vectors: np.ndarray,
    method: str = "adaptor",
    *,
    dims: Sequence[int] = (64, 128, 256),
    k: Sequence[int] = (32,),
    hidden: int | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    target: float | None = None,
    holdout: int = 1000,
    eval_docs: int = 20000,
    steps: int | None = None,
    residual_hidden: int = 0,
    rotate: bool = False,
    seed: int = 0,
    drop_invalid: bool = False,
    progress: Progress | None = None,
    scratch: Scratch | None = None,
    **options: object,
) -> FitResult:
    """Learn ``method`` from ``vectors`` (n, D); see docs/cli.md for every setting.

    ``scratch``: a factory of an empty scratch store of the engine (e.g.
    ``lambda: mrl_compress.adapters.scratch_for("edge:x", folder)``) in which the engine's
    own quantizers of the full vector are measured as references (``retention`` rows of kind
    ``engine``); without it the rows are absent and ``references.note`` says so.

    ``options`` are further training settings (fields of
    ``mrl_compress.training.methods.TrainSettings``, e.g. ``tau``, ``mix``, ``sequential``).
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise InvalidInput(f"unknown method '{method}': expected one of {', '.join(METHODS)}")
    checked = validate(vectors, drop_invalid=drop_invalid, what="source vectors",
                       droppable=True)
    x = checked.vectors
    dim = x.shape[1]
    outputs = output_specs(method, dim, dims, k, hidden, options.get("encoder"))
    holdout = min(holdout, len(x) // 5)
    if len(x) - holdout < MIN_ROWS:
        raise InvalidInput(f"source vectors: need at least {MIN_ROWS + holdout} valid rows to "
                           f"fit and measure, found {len(x)}")
    if pairs is not None and method not in LEARNS_FROM_PAIRS:
        raise InvalidInput(f"--pairs: method '{method}' learns nothing from pairs; use "
                           f"{' or '.join(LEARNS_FROM_PAIRS)}, or fit without --pairs")
    if pairs is not None:
        pairs = (validate(pairs[0], dim=dim, what="pair queries").vectors,
                 validate(pairs[1], dim=dim, what="pair documents").vectors)
        if len(pairs[0]) != len(pairs[1]):
            raise InvalidInput(f"pairs: {len(pairs[0])} queries but {len(pairs[1])} documents")
    train_idx, held_idx = split_holdout(len(x), holdout, seed)
    train = x[train_idx]

    model, settings = _train(method, train, outputs, pairs, progress, steps=steps,
                             hidden=hidden, residual_hidden=residual_hidden, rotate=rotate,
                             seed=seed, **options)
    from mrl_compress.exporters.onnx import export
    from mrl_compress.training.methods import weights_of

    manifest = Manifest(
        method=method, input_dim=dim, outputs=outputs, settings=settings,
        fingerprint=Fingerprint.of(train),
    )
    compressor = Compressor(manifest, weights_of(model), export(model, dim, outputs))

    docs = train[: eval_docs]
    rows = retention.measure(compressor.encode, outputs, x[held_idx], docs,
                             encode_queries=compressor.encode_queries)
    references = _engine_references(scratch, outputs, x[held_idx], docs)
    rows = retention.combine(rows, references.rows)
    manifest.settings["engine_references"] = references.to_json()
    result = FitResult(compressor, rows, dropped=checked.dropped, model=model,
                       references=references)
    if target is not None:
        result.chosen, result.reason = retention.choose(rows, outputs, target)
        if result.chosen is not None:
            chosen = result.chosen
            keep = chosen.nonzeros if chosen.kind == "sparse" else chosen.size
            assert keep is not None  # a sparse output always records its k
            model.keep_only(keep)
            manifest.outputs = [chosen]
            compressor = Compressor(manifest, weights_of(model), export(model, dim, [chosen]))
            result.compressor = compressor
    manifest.retention = [r.to_json() for r in rows]
    result.seconds = time.perf_counter() - started
    manifest.settings["fit_seconds"] = round(result.seconds, 1)
    return result


def _engine_references(scratch: Scratch | None, outputs: Sequence[Output], queries: np.ndarray,
                       docs: np.ndarray) -> EngineReferences:
    if scratch is None:
        return retention.not_measured("fit was given no scratch store")
    try:
        store = scratch()
    except MissingDependency as e:
        return retention.not_measured(str(e))
    try:
        return retention.engine_rows(outputs, queries, docs, store)
    except MrlCompressError as e:  # the fit is done: keep it, and say what failed
        return retention.not_measured(f"{store.uri} failed: {e}")
    finally:
        store.close()


def _train(method: str, train: np.ndarray, outputs: list[Output],
           pairs: tuple[np.ndarray, np.ndarray] | None, progress: Progress | None,
           **options: object) -> tuple[DenseNested | SparseTopK, dict[str, object]]:
    require("torch", "train")
    import torch

    from mrl_compress.training.methods import TRAINERS, TrainSettings, spreads

    known = {f.name for f in fields(TrainSettings)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInput(f"unknown training setting(s) {', '.join(unknown)}; expected "
                           f"some of {', '.join(sorted(known - {'dims', 'ks'}))}")
    settings = TrainSettings(
        dims=tuple(o.size for o in outputs if o.kind == "dense") or (64,),
        ks=tuple(o.nonzeros or 0 for o in outputs if o.kind == "sparse") or (32,),
        **options,  # type: ignore[arg-type]
    )
    if settings.quantizer is not None and method != "adaptor":
        raise InvalidInput(f"training setting quantizer: only the adaptor trains through an "
                           f"engine code; method '{method}' learns no map to train (fit "
                           f"--method adaptor --option quantizer={settings.quantizer})")
    if method != "csr":
        settings = replace(settings, hidden=None, encoder=None)
    elif settings.encoder is None:
        settings = replace(settings, encoder=CSR_ENCODER)
    settings = replace(settings, spread=spreads(method, settings))
    torch.manual_seed(settings.seed)
    t_pairs = (torch.from_numpy(pairs[0]), torch.from_numpy(pairs[1])) if pairs else None
    model = TRAINERS[method](torch.from_numpy(train), settings, t_pairs, progress)
    record = {k: v for k, v in asdict(settings).items() if v is not None}
    record.update(train_rows=len(train), supervised=pairs is not None,
                  device=str(torch.device("cuda" if torch.cuda.is_available() else "cpu")))
    return model, record
