"""Choosing a representation: measure every candidate in the engine it will run on, keep the
Pareto frontier of quality against bytes, choose one for a budget or a recall target.

A candidate is a vector to search and the engine's quantizer on it: the full vector alone
with each quantizer the engine offers (*native*: one config line, no fit, nothing to sync),
or a compressor's output with each quantizer (*composed*: a learned reduction stored with
the engine's own low-bit code). Each is built in a scratch store of the target's engine (an
embedded Qdrant Edge shard for a Qdrant target, Milvus Lite for Milvus: the engine's own
quantizer, never a numpy imitation) from a sample of the collection, and measured against
an exact search of the sample's full vectors:

- single-stage recall@10: the codes' own scores, no rescoring;
- two-stage recall@10: ``k * oversample`` candidates by the codes, rescored by the full
  vector (native: the engine's rescore; composed: prefetch on the output, rerank on full);
- queries per second of each, one query per call as the retriever sends them;
- bytes per point: the code the engine keeps in RAM to search, plus the HNSW links.

The engine alone wins wherever a native row is on the frontier; the product then says so.
Store-independent: the caller hands in the store and a factory of scratch stores.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mrl_compress import quantizers
from mrl_compress.compressor import Compressor
from mrl_compress.errors import ArtifactError, InvalidInput
from mrl_compress.store import VectorField, VectorStore, canonical_uri

K = 10
HNSW_LINK_BYTES = 2 * 16 * 4
"""Per point, an HNSW graph with m=16 keeps ~2·m links of 4 bytes at layer 0."""
FORMAT = "mrl-compress-plan"
FORMAT_VERSION = 1
NATIVE_DEFAULT = ("float32", "int8", "binary2-q8", "binary1.5-q8", "binary1-q8", "binary1",
                  "turbo8", "turbo4", "turbo2", "turbo1.5", "turbo1", "pq16", "pq32", "pq64")
"""The engines' quantizers of the full vector for the graph index, each size once or more:
binary with 8-bit queries (and plain at 1 bit), not with 4-bit queries or the plain 1.5- and
2-bit codes (both kept less than 8-bit queries at every size, docs/quantizers.md); product
quantization from ×16 down. PQ is the engine's own learned code: on wordnet-gloss its
``pq32`` (48 B) kept recall@10 0.716 where TurboQuant 1-bit kept 0.689, so a plan without it
would undersell the engine. ``pq4`` and ``pq8`` are left to ``--native``: on every data set
of docs/benchmarks.md they kept less than ``turbo8`` and ``turbo4`` at their sizes by the
codes alone and tied them rescored, and they are the slowest to build (204 s and 108 s of a
wordnet-gloss frontier, 80 s and 49 s of a 6 min 29 s plan at 100k points)."""
COMPOSED_DEFAULT = ("float32", "int8", "turbo4", "turbo2", "turbo1", "binary1-q8", "pq16")
"""On a compressor's outputs: 32, 8, 4, 2 and 1 bits per dimension, and product quantization
at 2 (adaptor ``mrl_192`` as ``pq16`` kept 0.735 on wordnet-gloss, as ``turbo2`` 0.743)."""
Stage = Literal["single", "two-stage"]
Progress = Callable[[int, int, str], None]
"""``progress(done, total, label)`` after each measured candidate."""


@dataclass(frozen=True)
class Candidate:
    """What to search: ``output`` of ``compressor`` (None: the full vector) with ``quantizer``."""

    quantizer: str
    dims: int
    output: str | None = None
    compressor: str | None = None
    method: str | None = None
    """The compressor's method (``pca``, ``adaptor``...) and, when it was trained through a
    quantizer, that quantizer (``adaptor@turbo2``): names the row among artifacts."""

    @property
    def native(self) -> bool:
        return self.output is None

    @property
    def label(self) -> str:
        what = "full" if self.native else self.output
        if self.method:
            what = f"{self.method} {what}"
        return f"{what} {self.dims}-d {self.quantizer}"

    @property
    def code_bytes(self) -> float:
        return quantizers.parse(self.quantizer).code_bytes(self.dims)


@dataclass
class Measured:
    candidate: Candidate
    single: float
    """Single-stage recall@10 against exact search of the full vectors."""
    two_stage: float
    single_se: float
    """Standard error of ``single`` over the queries (the estimate's precision)."""
    two_stage_se: float
    single_qps: float
    two_stage_qps: float
    code_bytes: float
    ram_bytes: float
    """``code_bytes`` plus the HNSW links: what a point costs in RAM to search."""
    seconds: float
    """Time to build the candidate in the scratch store and measure it."""

    def recall(self, stage: Stage) -> float:
        return self.single if stage == "single" else self.two_stage

    def row(self) -> dict[str, Any]:
        return {"kind": "native" if self.candidate.native else "composed",
                "label": self.candidate.label, **asdict(self)}


def candidates(dim: int, compressors: Sequence[tuple[str, Compressor]], offered: Sequence[str],
               native: Sequence[str] = NATIVE_DEFAULT,
               composed: Sequence[str] = COMPOSED_DEFAULT,
               engine: str = "the engine") -> list[Candidate]:
    """The full vector with each quantizer of ``native``, every dense output of each
    compressor with each of ``composed`` and the quantizer it was trained through, if any
    (``fit --option quantizer=NAME``); only names the engine ``offered``."""
    for name in (*native, *composed):
        quantizers.parse_offered(name, engine, offered)  # unknown: refused with the choices
    allowed = set(offered)
    out = [Candidate(quantizers.parse(q).name, dim) for q in native
           if quantizers.parse(q).name in allowed]
    for path, model in compressors:
        if model.input_dim != dim:
            raise InvalidInput(f"compressor {path} takes {model.input_dim}-d vectors, the "
                               f"collection holds {dim}-d vectors")
        trained = model.manifest.settings.get("quantizer")
        names = dict.fromkeys(quantizers.parse(q).name for q in (*composed, trained) if q)
        method = f"{model.method}@{trained}" if trained else model.method
        for o in model.outputs:
            if o.kind != "dense" or o.size is None:
                continue  # sparse codes have no engine quantizer to compose with
            out += [Candidate(q, o.size, o.name, path, method)
                    for q in names if q in allowed]
    return out


def exact_top(docs: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Row i: the ids (positions in ``docs``) of query i's exact top ``k`` by cosine."""
    scores = _unit(queries) @ _unit(docs).T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def measure(candidate: Candidate, docs: np.ndarray, queries: np.ndarray, truth: np.ndarray,
            scratch: VectorStore, model: Compressor | None = None, *, oversample: int = 3,
            timed_queries: int = 200) -> Measured:
    """Build ``candidate`` in ``scratch`` from ``docs``, search ``queries``, compare with
    ``truth`` (:func:`exact_top`); the collection is dropped afterwards."""
    started = time.perf_counter()
    name = "plan_candidate"
    full = VectorField("full", "dense", docs.shape[1], "cosine")
    ids = list(range(len(docs)))
    q = None if candidate.quantizer == "float32" else candidate.quantizer
    if candidate.native:
        scratch.create_collection(name, [full])
        _upsert(scratch, name, ids, {"full": docs})
        if q:
            scratch.set_quantizer(name, "full", q)
        small_queries: Any = queries
        field_name = "full"
    else:
        assert model is not None and candidate.output is not None
        output = model.output(candidate.output)
        # both fields at creation: Milvus cannot add one later, and Edge reopens only once
        scratch.create_collection(name, [full, VectorField(output.name, "dense", output.size,
                                                           output.distance)])
        if q:
            scratch.set_quantizer(name, output.name, q)
        encoded = model.encode(docs)
        _upsert(scratch, name, ids, {"full": docs, output.name: encoded[output.name]})
        small_queries = model.encode_queries(queries, output.name)
        field_name = output.name
    try:
        def single(rows: slice) -> list[list[Any]]:
            return [[h.id for h in hits] for hits in
                    scratch.search(name, field_name, small_queries[rows], K)]

        def two(rows: slice) -> list[list[Any]]:
            if candidate.native:
                found = scratch.search(name, "full", queries[rows], K, rescore=oversample)
            else:
                found = scratch.two_stage_search(name, queries[rows], field_name,
                                                 small_queries[rows], K, oversample,
                                                 full_vector="full")  # fmt: skip
            return [[h.id for h in hits] for hits in found]

        single(slice(0, 1))  # builds the index (Edge optimizes before its first search)
        s_recall, s_se = _recall(_batched(single, len(queries)), truth)
        t_recall, t_se = _recall(_batched(two, len(queries)), truth)
        s_qps = _qps(single, min(timed_queries, len(queries)))
        t_qps = _qps(two, min(timed_queries, len(queries)))
    finally:
        scratch.drop_collection(name)
    return Measured(candidate, s_recall, t_recall, s_se, t_se, s_qps, t_qps,
                    candidate.code_bytes, candidate.code_bytes + HNSW_LINK_BYTES,
                    time.perf_counter() - started)


def pareto(rows: Sequence[Measured], stage: Stage) -> list[Measured]:
    """The rows no other row beats: fewer code bytes and at least as much recall."""
    best: list[Measured] = []
    for r in sorted(rows, key=lambda r: (r.code_bytes, -r.recall(stage))):
        if not best or r.recall(stage) > best[-1].recall(stage):
            best.append(r)
    return best


def choose(rows: Sequence[Measured], stage: Stage, budget: float | None = None,
           target: float | None = None) -> Measured:
    """The best recall within ``budget`` code bytes per point (ties: the faster one), or
    the fewest bytes reaching ``target`` recall (ties: the faster); exactly one of them."""
    if (budget is None) == (target is None):
        raise InvalidInput("give exactly one of --budget BYTES and --target RECALL")
    if not rows:
        raise InvalidInput("no candidate was measured")

    def qps(r: Measured) -> float:
        return r.single_qps if stage == "single" else r.two_stage_qps

    if budget is not None:
        within = [r for r in rows if r.code_bytes <= budget]
        if not within:
            smallest = min(rows, key=lambda r: r.code_bytes)
            raise InvalidInput(f"no candidate fits {budget:g} bytes per point; the smallest "
                               f"reachable is {smallest.code_bytes:g} B "
                               f"({smallest.candidate.label})")
        return max(within, key=lambda r: (round(r.recall(stage), 3), qps(r)))
    assert target is not None
    reaching = [r for r in rows if r.recall(stage) >= target]
    if not reaching:
        top = max(rows, key=lambda r: r.recall(stage))
        raise InvalidInput(f"no candidate reaches {stage} recall@10 {target:g}; the best is "
                           f"{top.recall(stage):.3f} ({top.candidate.label})")
    return min(reaching, key=lambda r: (r.code_bytes, -qps(r)))


@dataclass
class PlanFile:
    """What ``mrl-compress plan`` writes and ``migrate --plan`` applies."""

    target: str
    collection: str
    vector: str
    points: int
    dim: int
    sample: int
    queries: int
    query_source: str
    stage: Stage
    oversample: int
    budget: float | None
    recall_target: float | None
    choice: dict[str, Any]
    """The chosen candidate (:class:`Candidate` fields) and its measurement."""
    compressor_sha256: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    """Quantizers asked for that the engine (or its scratch twin) cannot run."""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    made_at: str = ""

    @property
    def candidate(self) -> Candidate:
        c = self.choice["candidate"]
        return Candidate(c["quantizer"], c["dims"], c["output"], c["compressor"],
                         c.get("method"))

    def save(self, path: str | Path) -> Path:
        body = asdict(self)
        text = json.dumps({**body, "sha256": _digest(body)}, indent=1)
        out = Path(path)
        scratch = out.with_name(out.name + ".tmp")
        scratch.write_text(text)
        scratch.replace(out)
        return out

    @classmethod
    def read(cls, path: str | Path) -> PlanFile:
        def refuse(why: object) -> InvalidInput:
            return InvalidInput(f"{path} is not a plan written by mrl-compress plan ({why})")

        try:
            data = json.loads(Path(path).read_text())  # a binary file: UnicodeDecodeError
        except (OSError, ValueError) as e:
            raise refuse(e) from None
        if not isinstance(data, dict) or "sha256" not in data:
            raise refuse("no 'sha256' in it")
        sha = data.pop("sha256")
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise InvalidInput(f"{path} is not a {FORMAT} file of version {FORMAT_VERSION}")
        if _digest(data) != sha:
            raise InvalidInput(f"{path} was edited after mrl-compress plan wrote it (its "
                               "checksum differs): run plan again rather than editing it")
        try:
            return cls(**data)
        except TypeError as e:  # fields missing or unknown, yet the checksum matches
            raise refuse(e) from None

    def check(self, target: str, collection: str, vector: str | None = None) -> str:
        """Refuse a plan made for another collection or vector, naming what differs; the
        vector to migrate (the plan's). Stores are compared by :func:`canonical_uri` (a
        plan from before this rule may name one by a relative path: it is read from here)."""
        made, given = canonical_uri(self.target), canonical_uri(target)
        if (made, self.collection) != (given, collection):
            raise InvalidInput(f"the plan was made for collection '{self.collection}' at "
                               f"{made}, not '{collection}' at {given}: run "
                               "mrl-compress plan on this collection")
        if vector is not None and vector != self.vector:
            raise InvalidInput(f"the plan was made for vector '{self.vector}' of "
                               f"'{collection}', not '{vector}': leave out --vector or run "
                               "mrl-compress plan on that vector")
        return self.vector

    def artifact(self) -> Path:
        """The artifact of a composed choice, refused where it is gone or is not the one
        measured (its manifest's sha256 differs)."""
        from mrl_compress.artifact import MANIFEST
        from mrl_compress.migration.planning import compressor_sha256

        assert self.candidate.compressor is not None, "a native plan names no artifact"
        path = Path(self.candidate.compressor)
        if not (path / MANIFEST).is_file():
            raise ArtifactError(f"{path}, the artifact the plan chose, is not there (or not "
                                "an artifact): restore it or run mrl-compress plan again")
        if compressor_sha256(path) != self.compressor_sha256:
            raise ArtifactError(f"{path} is not the artifact the plan measured (its "
                                "manifest's sha256 differs): run mrl-compress plan again")
        return path


def plan(store: VectorStore, collection: str, scratch: VectorStore, *,
         vector: str | None = None, compressors: Sequence[str | Path] = (),
         sample: int = 20_000, queries: np.ndarray | None = None, n_queries: int = 500,
         oversample: int = 3, stage: Stage = "two-stage", budget: float | None = None,
         target: float | None = None, native: Sequence[str] = NATIVE_DEFAULT,
         composed: Sequence[str] = COMPOSED_DEFAULT, progress: Progress | None = None,
         seed: int = 0) -> tuple[PlanFile, list[Measured]]:
    """Sample ``collection``, measure every candidate in ``scratch``, choose one.

    The plan names the store by :func:`canonical_uri` (an embedded store by its absolute
    path, so that it names the same store from any directory) and compressors by absolute
    path, for the same reason.

    Queries are the user's (``queries``) or ``n_queries`` stored rows held out of the
    sample. Refuses bad input before measuring anything: a budget below every candidate's
    bytes, queries of another dimension or with NaN/inf/zero rows, an unknown quantizer.
    """
    from mrl_compress.compressor import load
    from mrl_compress.migration.planning import full_vector
    from mrl_compress.vectors import validate

    if (budget is None) == (target is None):
        raise InvalidInput("give exactly one of --budget BYTES and --target RECALL")
    if stage not in ("single", "two-stage"):
        raise InvalidInput(f"--stage must be single or two-stage, not '{stage}'")
    if oversample < 1:
        raise InvalidInput(f"--oversample must be at least 1, not {oversample}")
    info = store.describe(collection)
    full = full_vector(info.fields, vector, collection, set())
    dim = full.size or 0
    models = [(str(Path(p).resolve()), load(p)) for p in compressors]
    offered = [n for n in scratch.quantizers() if n in set(store.quantizers())]
    found = candidates(dim, models, offered, native, composed, engine=store.uri)
    left_out = list(dict.fromkeys(quantizers.parse(n).name for n in (*native, *composed)
                                  if quantizers.parse(n).name not in offered))
    if not found:
        raise InvalidInput(f"none of the quantizers asked for runs on {store.uri}; it offers "
                           + ", ".join(store.quantizers()))
    if budget is not None and min(c.code_bytes for c in found) > budget:
        smallest = min(found, key=lambda c: c.code_bytes)
        raise InvalidInput(f"no candidate fits {budget:g} bytes per point; the smallest "
                           f"reachable is {smallest.code_bytes:g} B ({smallest.label})")
    if queries is not None:
        queries = validate(queries, dim=dim, what="queries").vectors
    held = 0 if queries is not None else n_queries
    rows = store.sample(collection, full.name, sample + held, seed=seed)
    rows = validate(rows, dim=dim, drop_invalid=True, what="stored vectors").vectors
    if len(rows) < held + 2 * K:
        raise InvalidInput(f"collection '{collection}' has {len(rows)} usable vectors: too "
                           f"few to plan on (need more than {held + 2 * K})")
    docs = rows[held:]
    asked = queries if queries is not None else rows[:held]
    truth = exact_top(docs, asked)
    by_path = dict(models)
    measured: list[Measured] = []
    for i, c in enumerate(found):
        measured.append(measure(c, docs, asked, truth, scratch,
                                by_path.get(c.compressor or ""), oversample=oversample))
        if progress:
            progress(i + 1, len(found), c.label)
    chosen = choose(measured, stage, budget, target)
    sha = None
    if chosen.candidate.compressor:
        from mrl_compress.migration.planning import compressor_sha256

        sha = compressor_sha256(chosen.candidate.compressor)
    made = PlanFile(
        target=canonical_uri(store.uri), collection=collection, vector=full.name,
        points=info.count, dim=dim,
        sample=len(docs), queries=len(asked),
        query_source="given" if queries is not None else "held-out stored rows",
        stage=stage, oversample=oversample, budget=budget, recall_target=target,
        choice=asdict(chosen), compressor_sha256=sha, rows=[m.row() for m in measured],
        left_out=left_out,
        made_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )  # fmt: skip
    return made, measured


def table(rows: Sequence[Measured], stage: Stage, chosen: Measured | None = None,
          oversample: int = 3) -> list[str]:
    """The measured rows as aligned text lines (a Markdown table), fewest bytes first;
    ``*`` marks the Pareto frontier of ``stage``, ``<-`` the choice."""
    front = {id(r) for r in pareto(rows, stage)}
    head = ["candidate", "kind", "B/point", "single recall@10", f"x{oversample} recall@10",
            "single q/s", f"x{oversample} q/s", ""]
    body = []
    for r in sorted(rows, key=lambda r: (r.code_bytes, -r.recall(stage))):
        mark = ("*" if id(r) in front else "") + (" <- chosen" if r is chosen else "")
        body.append([
            r.candidate.label, "native" if r.candidate.native else "composed",
            f"{r.code_bytes:g}", f"{r.single:.3f} ± {1.96 * r.single_se:.3f}",
            f"{r.two_stage:.3f} ± {1.96 * r.two_stage_se:.3f}", f"{r.single_qps:,.0f}",
            f"{r.two_stage_qps:,.0f}", mark.strip(),
        ])
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i < 2 or i == 7 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [line(head), rule, *(line(cells) for cells in body)]


def plot(rows: Sequence[Measured], stage: Stage, path: str | Path, title: str = "") -> Path:
    """Recall against code bytes per point: native rows hollow, composed filled, the
    frontier joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    front = pareto(rows, stage)
    for r in rows:
        native = r.candidate.native
        ax.scatter(r.code_bytes, r.recall(stage), marker="s" if native else "o",
                   facecolors="none" if native else "tab:blue",
                   edgecolors="tab:gray" if native else "tab:blue", zorder=3)
    for r in front:  # labels on the frontier only: the rest would overlap
        ax.annotate(r.candidate.label, (r.code_bytes, r.recall(stage)), fontsize=6,
                    xytext=(4, -8), textcoords="offset points")
    ax.plot([r.code_bytes for r in front], [r.recall(stage) for r in front], color="tab:red",
            lw=1, zorder=2, label="frontier")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("code bytes per point in RAM (log scale)")
    ax.set_ylabel(f"{stage} recall@{K} vs exact")
    ax.set_ylim(max(0.0, min(r.recall(stage) for r in rows) - 0.05), 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "candidates: hollow = the engine's quantizer alone, filled = composed")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _upsert(store: VectorStore, name: str, ids: list[int], vectors: dict[str, Any],
            batch: int = 1024) -> None:
    for i in range(0, len(ids), batch):
        store.upsert(name, ids[i : i + batch], {n: v[i : i + batch] for n, v in vectors.items()},
                     [{} for _ in ids[i : i + batch]])


def _batched(search: Callable[[slice], list[list[Any]]], n: int,
             size: int = 256) -> list[list[Any]]:
    out: list[list[Any]] = []
    for i in range(0, n, size):
        out += search(slice(i, min(i + size, n)))
    return out


def _recall(found: list[list[Any]], truth: np.ndarray) -> tuple[float, float]:
    per = np.array([len(set(f[:K]) & set(t.tolist())) / K for f, t in zip(found, truth,
                                                                           strict=True)])
    return float(per.mean()), float(per.std(ddof=1) / np.sqrt(len(per))) if len(per) > 1 else 0.0


def _qps(search: Callable[[slice], list[list[Any]]], n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        search(slice(i, i + 1))
    return n / (time.perf_counter() - started)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
