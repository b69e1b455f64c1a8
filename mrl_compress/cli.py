"""The ``mrl-compress`` command. Each command is a thin wrapper over one library function.

Errors of our own print one line (``error: ...``) and exit with the error's code; no traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mrl_compress.errors import InvalidInput, MrlCompressError
from mrl_compress.frontier import COMPOSED_DEFAULT, NATIVE_DEFAULT

app = typer.Typer(
    name="mrl-compress",
    help="Make the embeddings you already store smaller and faster to search.\n\n"
    "fit learns a compressor from stored vectors; encode/eval/inspect use it; "
    "migrate writes it into a collection; sync writes what the application added since. "
    "Each command's --help has a worked example.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InvalidInput(f"{option}: expected comma-separated integers, found '{text}'") from None
    if not values:
        raise InvalidInput(f"{option}: expected at least one integer, found '{text}'")
    return values


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int, float | str], None]]:
    """A rich progress bar that appears at the first update (input errors print alone).

    Each update gives the step, the total and what was just done: a training loss, or a
    label (``plan``: the candidate measured).
    """
    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[note]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    bar = Progress(*columns, console=err)
    task = bar.add_task(description, total=None, note="")

    def update(step: int, total: int, done: float | str) -> None:
        if not bar.live.is_started:
            bar.start()
        note = done if isinstance(done, str) else f"loss {done:.4f}"
        bar.update(task, completed=step, total=total, note=note)

    try:
        yield update
    finally:
        if bar.live.is_started:  # stopping a bar never shown prints an empty line
            bar.stop()


def read_source(source: str, collection: str | None, vector: str | None, column: str | None,
                sample: int | None, seed: int) -> np.ndarray:
    """Vectors from a file or a store URI, reservoir-sampled to ``sample`` rows."""
    from mrl_compress.vectors import open_source, sample_array

    if ":" in source and not Path(source).exists():
        from mrl_compress.adapters import connect, is_store_uri

        if is_store_uri(source):
            if not collection:
                raise InvalidInput(f"--source {source} is a store: name the collection with "
                                   "--collection")
            store = connect(source, existing=True)
            try:
                return store.sample(collection, vector, sample or 200_000, seed)
            finally:
                store.close()
    return sample_array(open_source(source, column), sample, seed)


def retention_table(rows: Sequence[Any], title: str) -> Table:
    table = Table(title=title)
    for col in ("representation", "bytes/vector", "recall@10", "two-stage recall@10"):
        table.add_column(col, justify="left" if col == "representation" else "right")
    for r in rows:
        style = "bold" if r.kind == "ours" else "dim"
        two = "-" if r.two_stage is None else f"{r.two_stage:.3f}"
        table.add_row(r.name, f"{r.bytes_per_vector:g}", f"{r.recall:.3f}", two, style=style)
    return table


@app.command()
def fit(
    source: Annotated[str, typer.Option(help="Vectors: a .npy/.parquet file, or a store URI "
                                        "(qdrant://host:6333, edge:./dir, milvus:./x.db, ...).")],
    out: Annotated[Path, typer.Option(help="Artifact directory to write (e.g. ./docs.mrlc).")],
    method: Annotated[str, typer.Option(help="truncate | pca | ads | adaptor | csr")] = "adaptor",
    dims: Annotated[str, typer.Option(help="Nested dense sizes, comma-separated.")] = "64,128,256",
    k: Annotated[str, typer.Option(help="csr: non-zeros per vector, comma-separated.")] = "32",
    hidden: Annotated[int | None, typer.Option(help="csr: latent size (default 4 x input dim).")]
    = None,
    collection: Annotated[str | None, typer.Option(help="Collection, when --source is a store.")]
    = None,
    vector: Annotated[str | None, typer.Option(help="Vector name in the collection.")] = None,
    column: Annotated[str | None, typer.Option(help="Parquet column holding the vectors.")]
    = None,
    sample: Annotated[int | None, typer.Option(help="Reservoir-sample this many rows.")]
    = 200_000,
    pairs: Annotated[Path | None, typer.Option(help=".npz with 'queries' and 'documents' "
                                               "arrays (row i of each is a pair).")] = None,
    target: Annotated[float | None, typer.Option(help="Keep the smallest output whose "
                                                 "neighbour recall@10 meets this.")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps (method default).")] = None,
    rotate: Annotated[bool, typer.Option(help="ads: select dimensions of a rotation fitted "
                                         "to the vectors instead of the raw ones.")] = False,
    option: Annotated[list[str] | None, typer.Option(
        help="A further training setting NAME=VALUE (repeatable), e.g. tau=0.05, "
             "sequential=true, init=pca; see docs/cli.md.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and training.")] = 0,
    drop_invalid: Annotated[bool, typer.Option(help="Skip NaN/inf/zero rows (counted).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Learn a compressor from stored vectors and save it as an artifact directory.

    Prints the retention on held-out vectors beside the engine's own quantizers of the full
    vector at the same budgets, measured in a scratch engine (Qdrant Edge; Milvus Lite for a
    Milvus source), and PCA and prefix truncation.

    Example: mrl-compress fit --source corpus.npy --method adaptor --dims 64,128 --out docs.mrlc
    """
    import tempfile

    from mrl_compress.adapters import is_store_uri, scratch_for
    from mrl_compress.fitting import fit as fit_vectors
    from mrl_compress.retention import plot

    if out.exists() and not overwrite:
        raise InvalidInput(f"{out} already exists: choose another --out or pass --overwrite")
    vectors = read_source(source, collection, vector, column, sample, seed)
    pair_arrays = _read_pairs(pairs) if pairs else None
    # the references are the engine's own quantizers, measured in a scratch store of the
    # source's engine (Milvus Lite for Milvus; Qdrant Edge for Qdrant and for files)
    engine = source if is_store_uri(source) and not Path(source).exists() else "edge:"
    with tempfile.TemporaryDirectory(prefix="mrl-fit-") as folder:
        def scratch() -> Any:
            store = scratch_for(engine, folder)
            err.print("measuring the engine's own quantizers of the full vector as references")
            return store

        with progress_bar(f"fit {method}") as update:
            result = fit_vectors(vectors, method, dims=_ints(dims, "--dims"), k=_ints(k, "--k"),
                                 hidden=hidden, pairs=pair_arrays, target=target, steps=steps,
                                 rotate=rotate, seed=seed, drop_invalid=drop_invalid,
                                 progress=update, scratch=scratch, **_options(option or []))
    if result.dropped:
        err.print(f"dropped {result.dropped} invalid row(s) (NaN/inf or all-zero)")
    console.print(retention_table(result.retention, f"{method}: retention on held-out vectors"))
    if result.references is not None:
        console.print(result.references.note, highlight=False)
    if result.reason:
        console.print(result.reason)
    path = result.compressor.save(out, overwrite=overwrite)
    png = plot(result.retention, path / "retention.png", f"{method} on {Path(source).name}")
    console.print(f"wrote {path} ({', '.join(o.name for o in result.compressor.outputs)}) "
                  f"and {png} in {result.seconds:.0f} s")


def _options(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings to settings; VALUE is JSON (true, 0.05, "pca") or a bare word."""
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidInput(f"--option: expected NAME=VALUE, found '{pair}'")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    return options


def _read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["queries"]), np.asarray(data["documents"])
    except (OSError, KeyError, ValueError) as e:
        raise InvalidInput(f"--pairs {path}: expected an .npz with arrays 'queries' and "
                           f"'documents' ({e})") from None


@app.command()
def encode(
    compressor: Annotated[Path, typer.Option(help="Artifact directory from fit.")],
    input: Annotated[Path, typer.Option(help=".npy (or .parquet) vectors to encode.")],
    output: Annotated[Path, typer.Option(help=".npz to write (format in docs/cli.md).")],
    column: Annotated[str | None, typer.Option(help="Parquet column of vectors.")] = None,
    runtime: Annotated[str, typer.Option(help="auto | onnx | numpy")] = "auto",
    device: Annotated[str, typer.Option(help="auto | cuda | cpu (ONNX provider).")] = "auto",
    drop_invalid: Annotated[bool, typer.Option(help="Skip NaN/inf/zero rows.")] = False,
    queries: Annotated[bool, typer.Option(
        "--queries", help="Write query codes (what eval and the retriever send) instead of "
        "document codes; score = dot product with the documents' .npz (docs/cli.md).")] = False,
    query_nonzeros: Annotated[int | None, typer.Option(
        help="With --queries, sparse (csr) outputs: this many non-zeros per query, as eval's "
             "--query-nonzeros (default: all of a pursuit csr's atom correlations; a TopK "
             "csr's k).")] = None,
) -> None:
    """Encode vectors with a fitted compressor into an .npz (rows keep input order).

    Example: mrl-compress encode --compressor docs.mrlc --input more.npy --output codes.npz
    (then --input queries.npy --output queries.npz --queries for the query side)
    """
    from mrl_compress.codes import encode_to_npz
    from mrl_compress.compressor import load
    from mrl_compress.vectors import open_source, validate

    if query_nonzeros is not None and not queries:
        raise InvalidInput(f"--query-nonzeros {query_nonzeros} applies to query codes: add "
                           "--queries (document codes keep the compressor's k)")
    model = load(compressor, runtime=runtime, device=device)
    vectors = np.asarray(open_source(input, column))
    if not drop_invalid:  # refused here, where the error can offer --drop-invalid
        validate(vectors, dim=model.input_dim, what="vectors to encode", droppable=True)
    written = encode_to_npz(model, vectors, output, queries=queries,
                            query_nonzeros=query_nonzeros, drop_invalid=drop_invalid)
    what = "queries" if queries else f"vectors on {model.provider}"
    console.print(f"encoded {written.rows} {what} → {output} ({', '.join(written.arrays)})")


@app.command(name="eval")
def eval_(
    compressor: Annotated[Path, typer.Option(help="Artifact directory from fit.")],
    corpus: Annotated[Path | None, typer.Option(help="Corpus vectors .npy.")] = None,
    queries: Annotated[Path | None, typer.Option(help="Query vectors .npy.")] = None,
    qrels: Annotated[Path | None, typer.Option(help="BEIR qrels TSV.")] = None,
    corpus_ids: Annotated[Path | None, typer.Option(help="Text file: one corpus id per row "
                                                    "(default: row numbers).")] = None,
    query_ids: Annotated[Path | None, typer.Option(help="Text file: one query id per row.")]
    = None,
    oversample: Annotated[int, typer.Option(help="Two-stage shortlist = 10 x this.")] = 10,
    query_nonzeros: Annotated[int | None, typer.Option(
        help="Sparse outputs: send queries with this many non-zeros, as the retriever's "
             "query_nonzeros does (stored codes keep their k). Default: all of a pursuit "
             "csr's atom correlations (two per atom); a TopK csr's k.")] = None,
    sts: Annotated[Path | None, typer.Option(help="STS mode: .npz with arrays 'a', 'b', "
                                             "'score'.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
) -> None:
    """Measure what a compressor keeps: nDCG@10 / recall@100 (qrels) or STS Spearman.

    Example: mrl-compress eval --compressor docs.mrlc --corpus corpus.npy --queries q.npy
    --qrels test.tsv --corpus-ids corpus.ids --query-ids queries.ids
    """
    from mrl_compress import evaluation
    from mrl_compress.compressor import load
    from mrl_compress.vectors import open_source

    model = load(compressor)
    if sts is not None:
        with np.load(sts, allow_pickle=False) as data:
            rows = evaluation.sts(model, data["a"], data["b"], data["score"])
        _print_rows(rows, as_json, "STS Spearman retention")
        return
    if corpus is None or queries is None or qrels is None:
        raise InvalidInput("eval: expected --corpus, --queries and --qrels (or --sts FILE.npz)")
    c = np.asarray(open_source(corpus))
    q = np.asarray(open_source(queries))
    result = evaluation.retrieval(
        model, c, q, evaluation.read_qrels(qrels),
        evaluation.read_ids(corpus_ids, len(c), "corpus"),
        evaluation.read_ids(query_ids, len(q), "query"), oversample, query_nonzeros)
    _print_rows([r.to_json() for r in result], as_json, "retrieval retention vs full vectors")


def _print_rows(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=title)
    for col in rows[0]:
        table.add_column(col.replace("_", " "), justify="left" if col == "name" else "right")
    for r in rows:
        table.add_row(*("-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
                        for v in r.values()))
    console.print(table)


@app.command()
def inspect(
    compressor: Annotated[Path, typer.Argument(help="Artifact directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Verify an artifact (format version, checksums) and show what it holds.

    Example: mrl-compress inspect docs.mrlc
    """
    from mrl_compress.compressor import load
    from mrl_compress.retention import Row

    model = load(compressor)
    if as_json:
        console.print_json(json.dumps(model.describe()))
        return
    m = model.manifest
    console.print(f"[bold]{compressor}[/bold]: method {m.method}, input {m.input_dim}-d, "
                  f"format v{m.format_version}, checksums ok, serves on {model.provider}")
    for o in m.outputs:
        extra = f", k={o.nonzeros}" if o.kind == "sparse" else ""
        console.print(f"  output {o.name}: {o.kind} {o.size}{extra}, {o.distance}, "
                      f"{o.bytes_per_vector():g} bytes/vector")
    if m.method == "csr":
        console.print("  codes by matching pursuit; queries sent as their signed correlations "
                      "with the dictionary's atoms" if model.pursuit else
                      "  codes by TopK (published CSR); queries coded like documents")
    if m.fingerprint:
        console.print(f"  fitted on {m.fingerprint.count} vectors, mean norm "
                      f"{m.fingerprint.norm_mean:.3f}")
    if m.retention:
        console.print(retention_table([Row(**r) for r in m.retention], "retention at fit"))


@app.command()
def migrate(
    target: Annotated[str, typer.Option(help="Store URI: qdrant://host:6333, qdrant-local:./dir, "
                                        "edge:./shards, milvus:./x.db, milvus://host:19530.")],
    collection: Annotated[str, typer.Option(help="Collection (or alias) the application reads.")],
    compressor: Annotated[Path | None, typer.Option(
        help="Artifact directory from fit (not needed with --mode native).")] = None,
    vector: Annotated[str | None, typer.Option(help="Full vector to compress (default: the "
                                               "unnamed or only dense one).")] = None,
    mode: Annotated[str, typer.Option(
        help="auto | in-place | copy | native (the engine's own --quantize on the full vector "
        "alone: no new field, nothing written or synced).")] = "auto",
    batch: Annotated[int, typer.Option(help="Points per batch (one checkpoint each).")] = 512,
    workers: Annotated[int, typer.Option(
        help="1: read, encode and write each batch in turn; N > 1: a reader thread feeds N "
        "threads that encode and write.")] = 1,
    dry_run: Annotated[bool, typer.Option(help="Print the plan, write nothing.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue from the checkpoint.")] = False,
    swap: Annotated[bool, typer.Option(help="Copy mode: point the alias at the copy.")] = False,
    quantize: Annotated[str | None, typer.Option(
        help="A quantizer of docs/quantizers.md (int8, binary1-q8, turbo2, pq16, int8@ivf, "
        "...) for the new dense fields, or with --mode native for the full vector; refused "
        "unless the target runs it.")] = None,
    verify: Annotated[str, typer.Option(help="Points to compare at the end: N or all.")] = "1000",
    force: Annotated[bool, typer.Option(help="Migrate although the fingerprint differs.")]
    = False,
    new_name: Annotated[str | None, typer.Option(help="Copy mode: name of the new collection "
                                                 "(default <collection>_mrl).")] = None,
    plan_file: Annotated[Path | None, typer.Option(
        "--plan", help="Apply what mrl-compress plan chose: a native plan sets the quantizer "
        "on the full vector, a composed one migrates its compressor with its quantizer "
        "(leave out --compressor, --quantize and --mode).")] = None,
) -> None:
    """Write the compressor's outputs beside every stored vector (resumable, verified).

    Example: mrl-compress migrate --target edge:./shards --collection docs --compressor docs.mrlc
    --dry-run   (then again without --dry-run; --resume after an interruption)

    Native: mrl-compress migrate --target edge:./shards --collection docs --mode native
    --quantize turbo2
    """
    import time

    from mrl_compress import migration
    from mrl_compress.adapters import connect

    if verify != "all" and not verify.isdigit():
        raise InvalidInput(f"--verify: expected a number of points or 'all', found '{verify}'")
    if plan_file is not None:
        compressor, quantize, mode, vector = _from_plan(plan_file, target, collection, vector,
                                                        compressor, quantize, mode)
    store = connect(target, existing=True)
    try:
        plan = migration.plan(store, collection, compressor, vector=vector, mode=mode,
                              batch_size=batch, workers=workers, resume=resume, swap=swap,
                              quantize=quantize, verify=None if verify == "all" else int(verify),
                              force=force, new_name=new_name)
        for line in plan.lines():
            console.print(line, highlight=False, soft_wrap=True)
        if dry_run:
            return
        if plan.mode == "native":  # one config change: no progress to show
            report = migration.run(plan, store)
            return _print_report(report)
        columns = (TextColumn("[bold]migrate"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} points"),
                   TextColumn("{task.fields[rate]} points/s"), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=False) as bar:
            task = bar.add_task("migrate", total=plan.points, rate="-")
            start: list[float | int] = []

            def update(done: int, total: int) -> None:
                if not start:
                    start.extend((time.perf_counter(), done))
                seconds = time.perf_counter() - start[0]
                rate = f"{(done - start[1]) / seconds:,.0f}" if seconds > 0 else "-"
                bar.update(task, completed=done, total=max(total, done), rate=rate)

            report = migration.run(plan, store, progress=update)
    finally:
        store.close()
    _print_report(report)


def _print_report(report: Any) -> None:
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True)
    report.raise_if_failed()


def _from_plan(path: Path, target: str, collection: str, vector: str | None,
               compressor: Path | None, quantize: str | None,
               mode: str) -> tuple[Path | None, str | None, str, str]:
    """``migrate --plan``: the compressor, quantizer, mode and full vector the plan chose."""
    from mrl_compress.frontier import PlanFile

    given = [flag for flag, value in (("--compressor", compressor), ("--quantize", quantize))
             if value is not None] + (["--mode"] if mode != "auto" else [])
    if given:
        raise InvalidInput(f"--plan sets the compressor, quantizer and mode: leave out "
                           f"{', '.join(given)}")
    made = PlanFile.read(path)
    vector = made.check(target, collection, vector)
    chosen = made.candidate
    if chosen.native:  # float32 too: native mode then removes any quantizer of the full vector
        console.print(f"plan: the engine's {chosen.quantizer} on the full vector (native)",
                      highlight=False)
        return None, chosen.quantizer, "native", vector
    artifact = made.artifact()
    console.print(f"plan: {chosen.output} of {artifact} as {chosen.quantizer}; every output "
                  "of the artifact is written (fit with only that --dims to write one)",
                  highlight=False)
    return (artifact, None if chosen.quantizer == "float32" else chosen.quantizer, "auto",
            vector)


@app.command()
def sync(
    target: Annotated[str, typer.Option(help="Store URI, as for migrate.")],
    collection: Annotated[str, typer.Option(help="Collection (or alias) the application writes.")],
    compressor: Annotated[Path, typer.Option(help="The artifact the collection was migrated "
                                             "with.")],
    vector: Annotated[str | None, typer.Option(help="Full vector (default: the unnamed or only "
                                               "dense one).")] = None,
    batch: Annotated[int, typer.Option(help="Points per batch.")] = 512,
    watch: Annotated[float | None, typer.Option(
        help="Sync again every this many seconds until Ctrl-C or SIGTERM (stops between "
        "batches).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print how many points are unsynced, write "
                                          "nothing.")] = False,
    confirm: Annotated[bool, typer.Option(
        help="Read each batch's full vectors back after writing and re-encode the points "
        "the application re-wrote meanwhile (--no-confirm: faster, leaves that race "
        "open).")] = True,
) -> None:
    """Write the outputs of points written after the migration (they lack them).

    The engine finds them by a filter; a run writes only what is missing, so it is safe to
    repeat and a stopped run is continued by running it again.

    Example: mrl-compress sync --target edge:./shards --collection docs --compressor docs.mrlc
    --dry-run   (then without it; add --watch 30 to keep a collection in step)
    """
    from mrl_compress import sync as syncing
    from mrl_compress.adapters import connect
    from mrl_compress.compressor import load

    model = load(compressor)
    store = connect(target, existing=True)
    try:
        plan = syncing.plan(store, collection, compressor, vector=vector, batch_size=batch,
                            model=model)
        for line in plan.lines():
            console.print(line, highlight=False, soft_wrap=True)
        if dry_run:
            return
        if watch is not None:
            with _stop_on_signals() as stopping:
                def said(one: syncing.SyncReport) -> None:
                    if one.written or one.skipped:
                        for line in one.lines():
                            console.print(line, highlight=False, soft_wrap=True)

                report = syncing.watch(plan, store, watch, compressor=model, stop=stopping,
                                       on_pass=said, confirm=confirm)
            console.print(f"watch ended after {report.passes} pass(es): {report.written} "
                          "point(s) synced", highlight=False)
            return
        columns = (TextColumn("[bold]sync"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} points"), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=False) as bar:
            task = bar.add_task("sync", total=plan.unsynced)
            report = syncing.run(plan, store, compressor=model, confirm=confirm,
                                 progress=lambda done, total:
                                 bar.update(task, completed=done, total=total))
        left = store.describe(plan.collection).count - store.count_having(
            plan.collection, [o.name for o in plan.outputs])
    finally:
        store.close()
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"unsynced now: {left} point(s) (written since this run read them, or "
                  "skipped)", highlight=False)


@app.command()
def plan(
    source: Annotated[str, typer.Option(help="Store URI of the collection, as for migrate.")],
    collection: Annotated[str, typer.Option(help="Collection (or alias) to plan for.")],
    out: Annotated[Path, typer.Option(help="Plan file to write (migrate --plan applies it).")],
    budget: Annotated[float | None, typer.Option(
        help="Bytes per point the search code may take in RAM: the best recall within it.")]
    = None,
    target: Annotated[float | None, typer.Option(
        help="Recall@10 to reach: the fewest bytes per point that reach it.")] = None,
    stage: Annotated[str, typer.Option(help="Judge by single | two-stage recall@10.")]
    = "two-stage",
    compressor: Annotated[list[Path] | None, typer.Option(
        help="A fitted artifact whose dense outputs are candidates, stored with each "
        "quantizer (repeat for several). Without one, only the engine's quantizers of the "
        "full vector are candidates.")] = None,
    queries: Annotated[Path | None, typer.Option(help=".npy of real queries (default: stored "
                                                 "rows held out of the sample).")] = None,
    n_queries: Annotated[int, typer.Option(help="Held-out stored rows used as queries.")] = 500,
    sample: Annotated[int, typer.Option(help="Stored vectors each candidate is built from.")]
    = 20_000,
    oversample: Annotated[int, typer.Option(help="Two-stage: k x this candidates rescored by "
                                            "the full vector.")] = 3,
    native: Annotated[str, typer.Option(help="Quantizers of the full vector to try "
                                        "(docs/quantizers.md).")]
    = ",".join(NATIVE_DEFAULT),
    composed: Annotated[str, typer.Option(help="Quantizers to try on each compressor output.")]
    = ",".join(COMPOSED_DEFAULT),
    vector: Annotated[str | None, typer.Option(help="Full vector (default: the unnamed or only "
                                               "dense one).")] = None,
    plot_to: Annotated[Path | None, typer.Option(
        "--plot", help="PNG of the frontier (default: beside --out; needs matplotlib).")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Measure the engine's quantizers and compressed outputs on a sample, choose one.

    Each candidate is built in an embedded engine of the target's kind (Qdrant Edge for
    Qdrant, Milvus Lite for Milvus) and measured against exact search: single-stage and
    two-stage recall@10, queries/s, bytes per point. Prints the table, marks the Pareto
    frontier, writes the choice.

    Example: mrl-compress plan --source edge:./shards --collection docs --budget 48
    --compressor docs.mrlc --out plan.json   (then: mrl-compress migrate --plan plan.json ...)
    """
    import tempfile

    from mrl_compress import frontier
    from mrl_compress.adapters import connect, scratch_for
    from mrl_compress.vectors import open_npy

    if stage not in ("single", "two-stage"):
        raise InvalidInput(f"--stage: expected single or two-stage, found '{stage}'")
    asked = np.asarray(open_npy(queries)) if queries is not None else None
    store = connect(source, existing=True)
    with tempfile.TemporaryDirectory(prefix="mrl-plan-") as folder:
        scratch = scratch_for(source, folder)
        try:
            with progress_bar("plan") as update:
                made, rows = frontier.plan(
                    store, collection, scratch, vector=vector, compressors=compressor or (),
                    sample=sample, queries=asked, n_queries=n_queries, oversample=oversample,
                    stage=stage,  # type: ignore[arg-type]
                    budget=budget, target=target, native=_names(native),
                    composed=_names(composed), seed=seed,
                    progress=update,
                )  # fmt: skip
        finally:
            scratch.close()
            store.close()
    chosen = next(r for r in rows if r.candidate == made.candidate)
    console.print(f"{len(rows)} candidates built from {made.sample:,} stored vectors, "
                  f"{made.queries} queries ({made.query_source}); recall@10 against exact "
                  "search, ± its 95 % interval; * = on the frontier of "
                  f"{made.stage} recall against bytes", highlight=False, soft_wrap=True)
    for line in frontier.table(rows, made.stage, chosen, oversample):
        console.print(line, highlight=False, soft_wrap=True)
    if made.left_out:
        console.print(f"left out, {source} or the embedded engine plan measures in cannot "
                      f"run them: {', '.join(made.left_out)}", highlight=False, soft_wrap=True)
    c = made.candidate
    if c.native:
        console.print(f"chosen: the engine's own {c.quantizer} of the full vector "
                      f"({chosen.code_bytes:g} B/point): the engine alone is best here; no fit "
                      "or migration of new fields is needed", highlight=False)
    else:
        console.print(f"chosen: {c.output} of {c.compressor} stored as {c.quantizer} "
                      f"({chosen.code_bytes:g} B/point)", highlight=False)
    made.save(out)
    try:
        picture = frontier.plot(rows, made.stage, plot_to or out.with_suffix(".png"),
                                title=f"'{collection}': {made.stage} recall@10 vs bytes")
        console.print(f"plot: {picture}")
    except ImportError:
        console.print("no plot: matplotlib is not installed (pip install 'mrl-compress[train]')")
    console.print(f"plan written to {out}: apply it with mrl-compress migrate --target "
                  f"{source} --collection {collection} --plan {out}", highlight=False)


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


@contextmanager
def _stop_on_signals() -> Iterator[Callable[[], bool]]:
    """SIGINT and SIGTERM set a flag (asked between batches) instead of killing mid-write."""
    import signal
    import threading

    asked = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if asked.is_set():  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        asked.set()
        err.print("stopping after this batch (again to stop now)")

    before = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked.is_set
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning our errors into one line and an exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except MrlCompressError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except typer.Abort:
        sys.exit(130)
    except Exception as e:  # usage errors come through here in non-standalone mode
        # click's ClickException (typer < 0.29) or typer's vendored copy of it (typer >= 0.29,
        # which no longer installs click): both say what went wrong through show()
        show, code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise


if __name__ == "__main__":
    main()
