"""The engines' own quantizers, by one naming scheme for every engine.

A quantizer is a property of a stored vector field's index, not of the vectors: the engine
keeps the float vectors (in RAM or on disk) and searches a compact code of them. Qdrant
(server and Edge) and Milvus offer different sets; each adapter translates a
:class:`Quantizer` into its own config and says which names it cannot run
(:meth:`mrl_compress.store.VectorStore.quantizers`).

========================  ===============================================  ==============
name                      what the engine stores per dimension             bits/dim
========================  ===============================================  ==============
``float32``               the float vector itself (no quantization)         32
``int8``                  scalar quantization to int8                       8
``binary1``               1 bit (sign), the query as 1 bit too              1
``binary1-q8``            1 bit, the query as 8-bit scalars (asymmetric)    1
``binary1-q4``            1 bit, the query as 4-bit scalars                 1
``binary1.5[-q8|-q4]``    Qdrant's 1.5-bit binary encoding                  1.5
``binary2[-q8|-q4]``      Qdrant's 2-bit binary encoding                    2
``turbo1``, ``turbo1.5``, TurboQuant (Qdrant): a random rotation, then        1 … 8
``turbo2``, ``turbo4``,   scalar codes of that many bits
``turbo8``
``pq4`` … ``pq64``        product quantization, compression ratio x4 … x64  32 / ratio
========================  ===============================================  ==============

An index may be named after ``@``: ``int8@ivf`` is Milvus's IVF_SQ8, ``float32@ivf`` its
IVF_FLAT, ``pq16@ivf`` IVF_PQ, ``binary1@ivf`` IVF_RABITQ. Without ``@`` the engine's graph
index is meant (Qdrant's HNSW; Milvus's HNSW, HNSW_SQ, HNSW_PQ). ``binary`` is an older
spelling of ``binary1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mrl_compress.errors import InvalidInput

Family = Literal["float32", "int8", "binary", "turbo", "pq"]
BINARY_BITS = (1.0, 1.5, 2.0)
TURBO_BITS = (1.0, 1.5, 2.0, 4.0, 8.0)
PQ_RATIOS = (4, 8, 16, 32, 64)
QUERY_ENCODINGS = ("q8", "q4")
INDEXES = ("hnsw", "ivf")


@dataclass(frozen=True)
class Quantizer:
    """One quantizer by the scheme above; make one with :func:`parse`."""

    family: Family
    bits: float
    """Bits the code keeps per dimension (32 for float32)."""
    query: str | None = None
    """Binary: how the query is encoded (``q8``, ``q4``; None: as the stored codes)."""
    index: str = "hnsw"

    @property
    def name(self) -> str:
        if self.family == "float32":
            base = "float32"
        elif self.family == "int8":
            base = "int8"
        elif self.family == "pq":
            base = f"pq{round(32 / self.bits)}"
        else:
            base = f"{self.family}{_bits(self.bits)}" + (f"-{self.query}" if self.query else "")
        return base if self.index == "hnsw" else f"{base}@{self.index}"

    def code_bytes(self, dim: int) -> float:
        """Bytes of one vector's code (the part an engine keeps in RAM to search)."""
        return dim * self.bits / 8

    def __str__(self) -> str:
        return self.name


def parse(name: str | None) -> Quantizer:
    """The quantizer called ``name`` (None or ``float32``: no quantization)."""
    if name is None:
        return Quantizer("float32", 32.0)
    text, _, index = name.strip().lower().partition("@")
    index = index or "hnsw"
    if index not in INDEXES:
        raise _unknown(name)
    if text == "binary":
        text = "binary1"
    base, _, query = text.partition("-")
    found: Quantizer | None = None
    if base in ("float32", "none") and not query:
        found = Quantizer("float32", 32.0, index=index)
    elif base == "int8" and not query:
        found = Quantizer("int8", 8.0, index=index)
    elif base.startswith("binary") and (not query or query in QUERY_ENCODINGS):
        bits = _number(base[len("binary"):])
        if bits in BINARY_BITS:
            found = Quantizer("binary", bits, query or None, index)
    elif base.startswith("turbo") and not query:
        bits = _number(base[len("turbo"):])
        if bits in TURBO_BITS:
            found = Quantizer("turbo", bits, index=index)
    elif base.startswith("pq") and not query:
        ratio = _number(base[2:])
        if ratio in PQ_RATIOS:
            found = Quantizer("pq", 32.0 / ratio, index=index)
    if found is None:
        raise _unknown(name)
    return found


def names() -> list[str]:
    """Every name of the scheme for the graph index, smallest codes last."""
    out = ["float32", "int8"]
    for bits in sorted(BINARY_BITS, reverse=True):
        out += [f"binary{_bits(bits)}"] + [f"binary{_bits(bits)}-{q}" for q in QUERY_ENCODINGS]
    out += [f"turbo{_bits(b)}" for b in sorted(TURBO_BITS, reverse=True)]
    out += [f"pq{r}" for r in PQ_RATIOS]
    return out


def refuse(name: str, engine: str, offered: list[str]) -> InvalidInput:
    """The one line for a quantizer an engine cannot run, listing what it offers."""
    return InvalidInput(f"{engine} cannot run quantizer '{name}'; it offers: "
                        f"{', '.join(offered)}")


def parse_offered(name: str | None, engine: str, offered: Sequence[str]) -> Quantizer:
    """:func:`parse`, an unknown name refused with what ``engine`` offers (not the scheme's
    every name, most of which another engine may not run)."""
    try:
        return parse(name)
    except InvalidInput:
        raise InvalidInput(f"unknown quantizer '{name}'; {engine} offers: "
                           f"{', '.join(offered)} (docs/quantizers.md)") from None


def _unknown(name: str) -> InvalidInput:
    return InvalidInput(f"unknown quantizer '{name}': expected one of {', '.join(names())}, "
                        "optionally followed by @ivf (docs/quantizers.md)")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _bits(bits: float) -> str:
    return f"{bits:g}"
