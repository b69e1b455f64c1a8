"""Planning a migration: read the collection and the artifact, decide what will happen, write
nothing (``--dry-run`` prints the plan); the checkpoint that a run keeps."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mrl_compress import quantizers
from mrl_compress.artifact import MANIFEST, Fingerprint
from mrl_compress.compressor import Compressor, load
from mrl_compress.errors import Conflict, InvalidInput, NotFound
from mrl_compress.migration.rows import canonical
from mrl_compress.outputs import Output
from mrl_compress.store import (
    CollectionInfo,
    VectorField,
    VectorStore,
    check_quantizer,
    rows_need_every_field,
)

MODES = ("auto", "in-place", "copy", "native")
FINGERPRINT_SAMPLE = 1000
HNSW_LINK_BYTES = 2 * 16 * 4
"""Per point, an HNSW graph with m=16 keeps ~2·m links of 4 bytes at layer 0 (Qdrant/Milvus)."""
CHECKPOINT_VERSION = 2
"""2: a copy's checkpoint names the length of its ``.copied`` record (``copied_bytes``)."""


@dataclass
class Checkpoint:
    """What a run has committed; replaced atomically after every batch (see :func:`run`)."""

    target: str
    collection: str
    vector: str
    compressor: str
    compressor_sha256: str
    mode: str
    new_collection: str | None
    offset: Any = None
    """``next_offset`` of the last committed batch (None: start, or the pass is finished)."""
    phase: str = "write"  # write -> reconcile -> verify -> done
    done: int = 0
    total: int = 0
    batches: int = 0
    reconciled: int = 0
    copied_bytes: int = 0
    """Length of the copy record (:class:`CopyRecord`) after the last committed batch."""
    started_at: str = ""
    updated_at: str = ""
    version: int = CHECKPOINT_VERSION

    def save(self, path: Path) -> None:
        self.updated_at = now()
        scratch = path.with_name(path.name + ".tmp")
        scratch.write_text(json.dumps(asdict(self), indent=1))
        os.replace(scratch, path)  # atomic: a kill leaves the old or the new checkpoint

    @classmethod
    def read(cls, path: Path) -> Checkpoint | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as e:
            raise InvalidInput(
                f"checkpoint {path} is unreadable ({e}): delete it to start over"
            ) from None


@dataclass
class Plan:
    """What :func:`run` will do. Made by :func:`plan`, which writes nothing."""

    target: str
    collection: str
    vector: str
    """The full (original) dense vector the compressor reads."""
    compressor: str
    compressor_sha256: str
    mode: str
    """``in-place``, ``copy``, ``auto`` (in place; copy if the engine refuses), or
    ``native`` (the engine's quantizer ``quantize`` set on ``vector`` alone:
    :meth:`~mrl_compress.store.VectorStore.set_quantizer`; no outputs, nothing written)."""
    new_collection: str
    """The copy's name (used by ``copy``, and by ``auto`` if it falls back to copying)."""
    outputs: list[Output]
    fields: list[VectorField]
    """Vector fields to create: the outputs (in place), or originals + outputs (copy)."""
    copied_vectors: list[str]
    """Original dense vectors a copy carries over."""
    points: int
    bytes_added: int
    bytes_added_copy: int
    small_index_bytes: int
    full_index_bytes: int
    alias: str | None
    """``collection`` itself when it is an alias (a copy can then be swapped in atomically)."""
    checkpoint: Path
    resume: Checkpoint | None = None
    batch_size: int = 512
    workers: int = 1
    quantize: str | None = None
    """The quantizer of the new dense fields (its name in :mod:`mrl_compress.quantizers`;
    None: none), or native: of ``vector`` (``float32`` removes one)."""
    current_quantizer: str = "float32"
    """Native: ``vector``'s quantizer before the run."""
    vector_size: int = 0
    """Native: the dimension of ``vector``."""
    swap: bool = False
    verify: int | None = 1000
    """Sample size for verification; None verifies every point."""
    force: bool = False
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The plan in words (``--dry-run`` prints these)."""
        if self.mode == "native":
            return self._native_lines()
        mode = self.mode
        if mode == "auto":
            mode = (f"auto: in place if the engine can add vector fields, else a copy into "
                    f"'{self.new_collection}'")
        elif mode == "copy":
            mode = f"copy into new collection '{self.new_collection}'"
        out = [
            f"migrate '{self.collection}' at {self.target} with {self.compressor}",
            f"  mode: {mode}",
            f"  read vector: {quoted(self.vector)} ({self.points} points)",
            "  fields to create: " + ", ".join(
                _describe_field(f, self.quantize if f.name in {o.name for o in self.outputs}
                                else None) for f in self.fields),
            f"  estimated bytes added: {size_text(self.bytes_added)}"
            + (f" in place, {size_text(self.bytes_added_copy)} if copied" if self.mode == "auto"
               else ""),
            f"  index memory: small {size_text(self.small_index_bytes)} vs full "
            f"{size_text(self.full_index_bytes)} (vectors + HNSW links, m=16)",
            f"  batches of {self.batch_size}, {self.workers} worker(s), verify "
            + ("all points" if self.verify is None else f"a sample of {self.verify}"),
            f"  checkpoint: {self.checkpoint}"
            + (f" (resuming at {self.resume.done}/{self.resume.total}, phase "
               f"{self.resume.phase})" if self.resume else ""),
        ]
        if self.mode != "in-place":
            if self.alias and self.swap:
                out.append(f"  then: point alias '{self.alias}' at '{self.new_collection}' "
                           "(atomic)")
            elif self.swap:
                out.append(f"  then: '{self.collection}' is a collection name, not an alias: "
                           "the cutover is printed, not done")
        out += [f"  note: {n}" for n in self.notes]
        return out

    def _native_lines(self) -> list[str]:
        wanted = quantizers.parse(self.quantize)
        full = 4 * self.vector_size
        out = [
            f"migrate '{self.collection}' at {self.target} natively: the engine's own quantizer "
            "on the full vector",
            f"  mode: native: set quantizer '{wanted.name}' on vector {quoted(self.vector)} "
            f"({self.points} points); no new field, no write pass, nothing to sync",
            f"  quantizer: {self.current_quantizer} now, {wanted.name} after "
            f"({wanted.code_bytes(self.vector_size):,.0f} B of codes per point; float32 "
            f"{full:,} B: the float vectors stay, for rescoring)",
            f"  index memory: codes {size_text(self.small_index_bytes)} vs float32 "
            f"{size_text(self.full_index_bytes)} (+ HNSW links, m=16)",
        ]
        return out + [f"  note: {n}" for n in self.notes]


def plan(
    store: VectorStore,
    collection: str,
    compressor: str | Path | None,
    *,
    vector: str | None = None,
    mode: str = "auto",
    batch_size: int = 512,
    workers: int = 1,
    resume: bool = False,
    swap: bool = False,
    quantize: str | None = None,
    verify: int | None = 1000,
    force: bool = False,
    new_name: str | None = None,
    checkpoint: str | Path | None = None,
) -> Plan:
    """Read the collection and the artifact; refuse bad input with one line; write nothing.

    Refuses: a compressor whose input dimension differs from the vector's (always), or whose
    training fingerprint (:meth:`Fingerprint.mismatch` on a sample of ~1000 stored vectors)
    differs (unless ``force``); a missing collection; a copy target name already taken by
    something this migration did not create; a checkpoint of another migration; a
    ``quantize`` the target cannot run (``store.quantizers()``, any name of
    :mod:`mrl_compress.quantizers`).

    ``mode="native"`` needs ``quantize`` and no compressor (one given only tells which
    fields are its outputs): it plans :meth:`~mrl_compress.store.VectorStore.set_quantizer`
    on the full vector.
    """
    if mode not in MODES:
        raise InvalidInput(f"--mode must be one of {', '.join(MODES)}, not '{mode}'")
    if quantize is not None:
        wanted = check_quantizer(quantize, store.uri, store.quantizers())
        quantize = wanted.name if (mode == "native" or wanted.name != "float32") else None
    if mode == "native":
        return _native_plan(store, collection, compressor, vector, quantize,
                            resume=resume, swap=swap)  # fmt: skip
    if compressor is None:
        raise InvalidInput("--compressor is needed (an artifact from mrl-compress fit), except "
                           "with --mode native")
    if batch_size < 1 or workers < 1:
        raise InvalidInput("--batch and --workers must be at least 1")
    if verify is not None and verify < 0:
        raise InvalidInput(f"--verify must be a number of points or 'all', not {verify}")
    target = store.uri
    model = load(compressor)
    sha = compressor_sha256(compressor)
    info = store.describe(collection)
    full = full_vector(info.fields, vector, collection, {o.name for o in model.outputs})
    check_input(model, full, compressor, collection, "use a compressor fitted on this collection")
    notes: list[str] = []
    fingerprint = model.manifest.fingerprint
    if fingerprint is not None and info.count:
        seen = Fingerprint.of(store.sample(collection, full.name, FINGERPRINT_SAMPLE))
        why = fingerprint.mismatch(seen)
        if why and not force:
            raise InvalidInput(
                f"collection '{collection}' does not look like the vectors {compressor} "
                f"was fitted on ({why}): pass --force to migrate anyway"
            )
        if why:
            notes.append(f"fingerprint differs ({why}); migrating anyway (--force)")
    path = Path(checkpoint) if checkpoint else checkpoint_path(compressor, collection)
    found = Checkpoint.read(path)
    new = new_name or f"{collection}_mrl"
    if found is not None:
        _check_checkpoint(found, path, target, collection, str(compressor), sha)
        if found.phase != "done" and not resume:
            raise InvalidInput(
                f"a migration of '{collection}' stopped at {found.done}/{found.total} "
                f"points ({path}): pass --resume to continue it, or delete the checkpoint "
                "to start over"
            )
        if found.new_collection and new_name is None:
            new = found.new_collection
        if found.mode != "auto" and mode == "auto":
            mode = found.mode
        elif mode != "auto" and found.mode != "auto" and mode != found.mode:
            raise InvalidInput(
                f"checkpoint {path} is a {found.mode} migration, not {mode}: pass "
                f"--mode {found.mode} to resume it, or delete the checkpoint to start over"
            )
    if new == collection:
        raise InvalidInput(f"--new-name '{new}' is the collection being migrated")
    ours = found is not None and found.new_collection == new
    if mode == "copy" and not ours:
        require_free(store, new)
    outputs = model.outputs
    clash = [o.name for o in outputs if o.name == full.name]
    if clash:
        raise Conflict(
            f"the compressor's output '{clash[0]}' has the name of the vector it reads: "
            "rename the output"
        )
    copied = [name for name, f in info.fields.items()
              if f.kind == "dense" and name not in {o.name for o in outputs}]
    sparse_kept = [name for name, f in info.fields.items()
                   if f.kind == "sparse" and name not in {o.name for o in outputs}]
    if sparse_kept and mode == "copy":
        raise InvalidInput(
            f"collection '{collection}' has sparse vector(s) {quoted_names(sparse_kept)} that a "
            "copy cannot carry over (the store protocol reads dense vectors only): "
            "migrate in place"
        )
    if sparse_kept and mode == "auto":
        notes.append(f"sparse vector(s) {quoted_names(sparse_kept)} cannot be copied: only "
                     "in-place migration works for this collection")
    if rows_need_every_field(store):
        notes.append("this engine refuses a point written without every new field: after the "
                     "migration, writes of the full vector alone (langchain-milvus add_texts) "
                     "fail; write through MatryoshkaVectorStore (the full vector and every "
                     "output in one upsert) or give langchain-milvus an embedding per output "
                     "(docs/migrate.md#milvus-and-the-applications-writes)")
    payload_bytes = _payload_bytes(store, collection, full.name)
    new_fields = [field_of(o) for o in outputs]
    originals = [info.fields[name] for name in copied]
    per_point_new = sum(o.bytes_per_vector(quantize) for o in outputs)
    per_point_full = sum(4 * (f.size or 0) for f in originals)
    small = min(outputs, key=lambda o: o.bytes_per_vector(quantize))
    return Plan(
        target=target,
        collection=collection,
        vector=full.name,
        compressor=str(compressor),
        compressor_sha256=sha,
        mode=mode,
        new_collection=new,
        outputs=outputs,
        fields=(originals + new_fields) if mode == "copy" else new_fields,
        copied_vectors=copied,
        points=info.count,
        bytes_added=int(info.count * (per_point_new if mode != "copy"
                                      else per_point_new + per_point_full + payload_bytes)),
        bytes_added_copy=int(info.count * (per_point_new + per_point_full + payload_bytes)),
        small_index_bytes=int(info.count * (small.bytes_per_vector(quantize) + HNSW_LINK_BYTES)),
        full_index_bytes=int(info.count * (4 * (full.size or 0) + HNSW_LINK_BYTES)),
        alias=collection if collection in info.aliases else None,
        checkpoint=path,
        resume=found if (found is not None and resume and found.phase != "done") else None,
        batch_size=batch_size,
        workers=workers,
        quantize=quantize,
        swap=swap,
        verify=verify,
        force=force,
        notes=notes,
    )


def _native_plan(store: VectorStore, collection: str, compressor: str | Path | None,
                 vector: str | None, quantize: str | None, *, resume: bool,
                 swap: bool) -> Plan:
    """The plan of ``--mode native``: the quantizer ``quantize`` on the full vector alone."""
    if quantize is None:
        raise InvalidInput("--mode native sets the engine's own quantizer on the full vector: "
                           "name it with --quantize (docs/quantizers.md)")
    outputs = {o.name for o in load(compressor).outputs} if compressor is not None else set()
    info = store.describe(collection)
    full = full_vector(info.fields, vector, collection, outputs)
    wanted = quantizers.parse(quantize)
    dim = int(full.size or 0)
    notes = []
    current = full.quantization or "float32"
    if current == wanted.name:
        notes.append(f"vector {quoted(full.name)} has quantizer {current} already: nothing "
                     "to change")
    if resume or swap:
        notes.append("--resume and --swap do not apply to --mode native (one config change, "
                     "no copy)")
    if compressor is not None:
        notes.append(f"{compressor} is not used by --mode native (its outputs are not the "
                     "full vector)")
    return Plan(
        target=store.uri, collection=collection, vector=full.name,
        compressor="" if compressor is None else str(compressor), compressor_sha256="",
        mode="native", new_collection="", outputs=[], fields=[], copied_vectors=[],
        points=info.count, bytes_added=0, bytes_added_copy=0,
        small_index_bytes=int(info.count * (wanted.code_bytes(dim) + HNSW_LINK_BYTES)),
        full_index_bytes=int(info.count * (4 * dim + HNSW_LINK_BYTES)),
        alias=None, checkpoint=Path(f".mrl-migrate-{collection}.json"), quantize=wanted.name,
        current_quantizer=current, vector_size=dim, notes=notes,
    )  # fmt: skip


def checkpoint_path(compressor: str | Path, collection: str) -> Path:
    """``.mrl-migrate-<collection>.json`` beside the artifact directory."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in collection)
    return Path(compressor).resolve().parent / f".mrl-migrate-{safe}.json"


def compressor_sha256(compressor: str | Path) -> str:
    """The manifest's sha256: it names the checksums of the weights and the ONNX graph."""
    return hashlib.sha256((Path(compressor) / MANIFEST).read_bytes()).hexdigest()



def full_vector(fields: dict[str, VectorField], vector: str | None, collection: str,
                 outputs: set[str]) -> VectorField:
    """``vector``, else ``""``, else the only dense field that is not one of our outputs
    (so that running the same migration again needs no ``--vector``)."""
    if vector is None and "" in fields and fields[""].kind == "dense":
        return fields[""]
    if vector is None:
        fields = {n: f for n, f in fields.items() if n not in outputs}
    return CollectionInfo(collection, 0, fields).dense(vector)


def check_input(model: Compressor, full: VectorField, compressor: str | Path, collection: str,
                what_to_do: str) -> None:
    """Refuse a compressor whose input dimension is not the full vector's."""
    if model.input_dim != full.size:
        raise InvalidInput(
            f"compressor {compressor} takes {model.input_dim}-d vectors but vector "
            f"{quoted(full.name)} of '{collection}' holds {full.size}-d vectors: {what_to_do}"
        )


def require_free(store: VectorStore, name: str) -> None:
    try:
        store.describe(name)
    except NotFound:
        return
    raise Conflict(
        f"collection '{name}' already exists and no checkpoint of this migration names it: "
        "choose another --new-name, or drop it"
    )


def _check_checkpoint(found: Checkpoint, path: Path, target: str, collection: str,
                      compressor: str, sha: str) -> None:
    if found.version != CHECKPOINT_VERSION:
        raise InvalidInput(f"checkpoint {path} has version {found.version}, this mrl-compress "
                           f"writes {CHECKPOINT_VERSION}: delete it to start over")
    if (found.target, found.collection) != (target, collection):
        raise InvalidInput(
            f"checkpoint {path} belongs to collection '{found.collection}' at {found.target}, "
            f"not '{collection}' at {target}: delete it to start over"
        )
    if found.compressor_sha256 != sha:
        raise InvalidInput(
            f"checkpoint {path} was written with another compressor ({found.compressor}, "
            f"sha256 {found.compressor_sha256[:12]}), not {compressor} (sha256 {sha[:12]}): "
            "resume with that compressor, or delete the checkpoint to start over"
        )


def field_of(output: Output) -> VectorField:
    if output.kind == "sparse":
        return VectorField(output.name, "sparse", None, None)
    return VectorField(output.name, "dense", output.size, output.distance)


def _describe_field(f: VectorField, quantize: str | None) -> str:
    if f.kind == "sparse":
        return f"{quoted(f.name)} (sparse)"
    return f"{quoted(f.name)} (dense {f.size}, {f.distance}" + (
        f", quantizer {quantize})" if quantize else ")")


def quoted(name: str) -> str:
    return "'' (default)" if name == "" else f"'{name}'"


def quoted_names(names: Sequence[str]) -> str:
    return ", ".join(quoted(n) for n in names)


def size_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _payload_bytes(store: VectorStore, collection: str, vector: str) -> float:
    """Mean JSON size of the first few payloads (a copy stores them again)."""
    batch = next(store.iter_batches(collection, vector, batch_size=64), None)
    if batch is None or not batch.payloads:
        return 0.0
    return float(np.mean([len(canonical(p).encode()) for p in batch.payloads]))
