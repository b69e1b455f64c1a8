"""One query through ``Compressor.encode_queries`` (a linear dense output), hot and cold.

    python bench/query_encode.py --compressor ADAPTOR --output mrl_128

Times the shipped path against the path it replaced in the sixth session (finite / non-zero
checked by ``isfinite`` and an abs-sum, the row's norm taken again in the product, the result
copied by ``astype``), interleaved call by call in one process. "cold": before each call a
160 MB array is touched every 4 KiB, evicting the caches as a search at 1M does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search as bench  # noqa: E402

import mrl_compress  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--compressor", default="/tmp/mrl-search/adaptor.mrlc")
    p.add_argument("--output", default="mrl_128")
    p.add_argument("--rounds", type=int, default=2000)
    args = p.parse_args()
    comp = mrl_compress.load(args.compressor)
    q = bench.queries(300)

    def before(x: np.ndarray) -> np.ndarray:
        """The replaced path, step by step (same lookups as ``encode_queries``)."""
        out = comp.output(args.output)
        assert out.kind == "dense" and comp.linear is not None
        assert (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2
                and x.shape[1] == comp.input_dim and bool(np.isfinite(x).all())
                and bool(np.abs(x).sum(axis=1).all()))
        y = comp.linear.project(x, out.size)  # takes the row norm itself
        return (y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)).astype(
            np.float32)

    def now(x: np.ndarray) -> np.ndarray:
        return comp.encode_queries(x, args.output)

    big = np.ones(40_000_000, np.float32)
    for cold in (False, True):
        times: dict[str, list[float]] = {"before": [], "now": []}
        for i in range(args.rounds):
            x = q[i % len(q) : i % len(q) + 1]
            for name, fn in (("before", before), ("now", now))[:: 1 if i % 2 else -1]:
                if cold:
                    big[::1024] += 1
                started = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - started)
        b, n = (np.median(times[k]) * 1e6 for k in ("before", "now"))
        print(f"{'cold' if cold else 'hot '}: before {b:5.1f} us, now {n:5.1f} us p50 "
              f"(now / before {n / b:.2f})", flush=True)


if __name__ == "__main__":
    main()
