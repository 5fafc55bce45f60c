#!/usr/bin/env python
"""A ternary residual codec (next-plaid's kind: 3 levels per dimension, 5 trits per byte) vs lightcol's
product-quantised residuals, on recall per byte.

    python benchmarks/codec_ternary.py [--seeds 2]

On CISI with the MiniLM benchmark model: every codec starts from the same centroids and rotation (those
``lightcol.index.codec.train`` fits at nbits=2); each residual dimension is quantised to ``{-a_d, 0, +a_d}``
with ``a_d`` fitted by Lloyd-Max on the training residuals (threshold ``a_d / 2``), 5 dimensions per byte
(3^5 = 243 <= 256): ``ceil(dim / 5)`` bytes, 26 at dim 128 (1.625 bits per dimension). Scored like the
index: every document decoded (re-normalised), MaxSim, recall@10 against exhaustive float32 MaxSim (the
ceiling of any candidate generation on that codec), and bytes per vector (residual code + 2-byte centroid id).
"""

from __future__ import annotations

import argparse

import numpy as np
from common import BENCH_MODEL, CISI_CACHE, embedded_cisi, table_lines

from lightcol import maxsim
from lightcol._kmeans import assign
from lightcol.index import codec as _codec


def _ternary_fit(r: np.ndarray, iters: int = 20) -> np.ndarray:
    """Per-dimension level ``a_d`` of the quantiser {-a, 0, a} (threshold a/2), Lloyd-Max on ``r`` (n, dim)."""
    a = 1.5 * np.abs(r).mean(axis=0)
    for _ in range(iters):
        big = np.abs(r) > a / 2
        a = np.where(big.any(axis=0), (np.abs(r) * big).sum(axis=0) / np.maximum(big.sum(axis=0), 1), a)
    return a.astype(np.float32)


def _ternary_decode(r: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The residuals as the ternary codec stores them: ``sign(r) * a`` where ``|r| > a / 2``, else 0."""
    return np.where(np.abs(r) > a / 2, np.sign(r) * a, 0.0).astype(np.float32)


def _recall(qv: list[np.ndarray], decoded: np.ndarray, offsets: np.ndarray, ref: list[list[int]]) -> float:
    x = decoded / np.maximum(np.linalg.norm(decoded, axis=1, keepdims=True), 1e-12)
    got = maxsim.rank_many(qv, maxsim.PackedDocuments(x.astype(np.float32), offsets), 10)[0]
    return float(np.mean([len(set(map(int, g)) & set(r)) / 10 for g, r in zip(got, ref, strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    _, dv, _, qv, _, _ = embedded_cisi(BENCH_MODEL, cache=CISI_CACHE)
    x = np.concatenate(dv).astype(np.float32)
    offsets = np.zeros(len(dv) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in dv], out=offsets[1:])
    qv = [np.asarray(q, dtype=np.float32) for q in qv]
    ref = [list(map(int, r)) for r in maxsim.rank_many(qv, maxsim.PackedDocuments(x, offsets), 10)[0]]
    dim = x.shape[1]
    results: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        base = _codec.train(x, 2, seed=seed)  # centroids + rotation shared by every row
        qr = [base.rotate(q) for q in qv]
        xr = base.rotate(x)
        codes = assign(xr, base.centroids, base.groups)
        r = xr - base.centroids[codes]
        rng = np.random.default_rng(seed)
        pick = rng.choice(x.shape[0], size=min(1 << 15, x.shape[0]), replace=False)
        levels = _ternary_fit(r[pick])
        results.setdefault("ternary", []).append(_recall(qr, base.centroids[codes] + _ternary_decode(r, levels), offsets, ref))
        for nbits in (1, 2):
            m = dim * nbits // 8
            books = _codec.train_books(r[pick], m, rng)
            c = _codec.Codec(base.centroids, books, nbits, base.rotation)
            c.__dict__["groups"] = base.groups
            cc, packed = c.encode(x)
            results.setdefault(f"pq{nbits}", []).append(_recall(qr, c.decode(cc, packed), offsets, ref))
        results.setdefault("centroid only", []).append(_recall(qr, base.centroids[codes], offsets, ref))
        print({k: v[-1] for k, v in results.items()}, flush=True)
    rows = [("centroid id only", 2, results["centroid only"]),
            ("lightcol PQ nbits=1 (16 x 256-codeword books of 8 dims)", 2 + dim // 8, results["pq1"]),
            ("ternary per dimension, 5 trits per byte", 2 + -(-dim // 5), results["ternary"]),
            ("lightcol PQ nbits=2 (32 x 256-codeword books of 4 dims)", 2 + dim // 4, results["pq2"])]
    print()
    print(f"CISI, {x.shape[0]:,} vectors, {len(qv)} queries, {args.seeds} seed(s); every document decoded")
    pq_b = [2 + dim // 8, 2 + dim // 4]
    pq_r = [np.mean(results["pq1"]), np.mean(results["pq2"])]
    print("\n".join(table_lines(["codec", "bytes/vector (code + centroid id)", "recall@10 vs exhaustive (mean; range)",
                                 "lightcol PQ at the same bytes (interpolated)"],
                                [(name, b, f"{np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})",
                                  f"{np.interp(b, pq_b, pq_r):.3f}" if pq_b[0] < b < pq_b[1] else "-")
                                 for name, b, v in rows])))


if __name__ == "__main__":
    main()
