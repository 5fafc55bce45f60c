#!/usr/bin/env python
"""Index codec vs the Gaussian rate-distortion bound: how much recall a residual codec of ``nbits`` bits
per dimension can give, on CISI (and optionally dict-gcide) with the MiniLM benchmark model.

    python benchmarks/codec_bound.py [--nbits 1,2,4] [--seeds 3]
    python benchmarks/codec_bound.py --gcide 20000     # also the first 20,000 cached gcide passages

For each nbits it trains the index's codec (:func:`lightcol.index.codec.train`, several seeds),
scores *every* document on decoded vectors (no candidate generation: the codec's ceiling) and reports
recall@10 against exact float32 MaxSim. Then it asks what a far better quantiser of the same rate
would give: the residuals' covariance (in the codec's rotated space) is reverse water-filled at
``dim * nbits`` bits, the least mean squared error *any* quantiser of that rate reaches on a Gaussian
source of that covariance, and each residual is replaced by a draw from the optimal test channel
at that error (``r_hat = a * r + noise`` per principal axis, error exactly the bound) and at half
and a quarter of it. Decoded vectors are re-normalised as the index's are.

A recall the bound's rows do not reach is out of reach at that rate for this model unless a codec
beats the Gaussian bound, which needs residuals easier to compress than Gaussian data of the same
covariance; the row "on Gaussian data" tells whether they are (the codec's quantiser on the real
residuals doing better than on Gaussian draws would say so).
"""

from __future__ import annotations

import argparse

import numpy as np
from common import BENCH_MODEL, CISI_CACHE, embedded_cisi, gcide_query_vectors, gcide_stream, print_table

from lightcol import maxsim
from lightcol.index import codec as _codec


def _top10(vectors: np.ndarray, offsets: np.ndarray, queries: list[np.ndarray]) -> list[set[int]]:
    docs = maxsim.PackedDocuments._trusted(vectors, offsets)  # noqa: SLF001 - benchmark internals
    return [set(maxsim.top_k(maxsim.score(q, docs), 10)[0].tolist()) for q in queries]


def _recall(got: list[set[int]], ref: list[set[int]]) -> float:
    return float(np.mean([len(g & r) / 10 for g, r in zip(got, ref, strict=True)]))


def water_fill(variances: np.ndarray, bits: float) -> np.ndarray:
    """Per-axis distortion ``min(theta, var)`` of the Gaussian rate-distortion bound at ``bits`` in all."""
    lo, hi = 1e-15, float(variances.max())
    for _ in range(200):
        theta = (lo * hi) ** 0.5
        rate = 0.5 * np.log2(variances / np.minimum(theta, variances)).sum()
        lo, hi = (theta, hi) if rate > bits else (lo, theta)
    return np.minimum(theta, variances)


def _decoded_residuals(codec: _codec.Codec, packed: np.ndarray) -> np.ndarray:
    """The residual (rotated, before re-normalisation) that each vector's residual code stands for."""
    lut = codec.lut()
    return np.concatenate([lut[j][packed[:, j]] for j in range(lut.shape[0])], axis=1)


def _gaussian_pq(var: np.ndarray, axes: np.ndarray, nbits: int, n: int, rng: np.random.Generator) -> float:
    """Mean squared error of the codec's residual quantiser (balanced rotation + product quantisation,
    as :func:`lightcol.index.codec.train` fits it) on ``n`` Gaussian draws with covariance ``axes diag(var) axes.T``."""
    dim = var.shape[0]
    g = ((rng.standard_normal((n, dim)) * np.sqrt(var)) @ axes.T).astype(np.float32)
    m = dim * nbits // 8
    pick = rng.choice(n, size=min(_codec._PQ_SAMPLE, n), replace=False)  # noqa: SLF001
    g = g @ _codec._balanced_rotation(g[pick], m)  # noqa: SLF001
    # one zero centroid: the codec's residual code is then the code of the draws themselves
    codec = _codec.Codec(np.zeros((1, dim), dtype=np.float32), _codec.train_books(g[pick], m, rng), nbits)
    _, packed = codec.encode(g)
    return float(np.mean(np.sum((g - _decoded_residuals(codec, packed)) ** 2, axis=1)))


def _rows(vectors: np.ndarray, offsets: np.ndarray, queries: list[np.ndarray], ref: list[set[int]], nbits: int,
          seeds: int) -> list[tuple]:
    """Table rows for one nbits; ``ref`` is the exact top 10 of each query."""
    recalls, mses = [], []
    for seed in range(seeds):
        codec = _codec.train(vectors, nbits, seed=seed)
        codes, packed = codec.encode(vectors)
        rotated = codec.rotate(vectors)
        centre = codec.centroids[codes.astype(np.int64)]
        mses.append(float(np.mean(np.sum((rotated - centre - _decoded_residuals(codec, packed)) ** 2, axis=1))))
        rq = [codec.rotate(q) for q in queries]
        recalls.append(_recall(_top10(codec.decode(codes, packed), offsets, rq), ref))
        if seed == 0:  # the bound is taken on seed 0's residuals (the others' differ by noise)
            residual, keep_centre, keep_q = rotated - centre, centre, rq
    mean = residual.mean(axis=0)
    var, axes = np.linalg.eigh(np.cov(residual - mean, rowvar=False))
    var = np.maximum(var, 1e-15)
    bound = water_fill(var, vectors.shape[1] * nbits)
    rng = np.random.default_rng(0)
    y = (residual - mean) @ axes
    out = [(nbits, f"codec, seeds 0-{seeds - 1}", f"{np.mean(mses):.5f}", f"{np.mean(mses) / bound.sum():.2f}",
            f"{np.mean(recalls):.3f} ({min(recalls):.3f}-{max(recalls):.3f})")]
    g_mse = _gaussian_pq(var, axes, nbits, residual.shape[0], np.random.default_rng(1))
    out.append((nbits, "the codec's quantiser on Gaussian data of the same covariance", f"{g_mse:.5f}",
                f"{g_mse / bound.sum():.2f}", "-"))
    for share in (1.0, 0.5, 0.25):
        d = bound * share
        a = 1.0 - d / var
        got = []
        for _ in range(seeds):  # draws of the test channel's noise
            y_hat = y * a + rng.standard_normal(y.shape) * np.sqrt(np.maximum(d * a, 0.0))
            ideal = (y_hat @ axes.T + mean).astype(np.float32)
            mse = float(np.mean(np.sum((ideal - residual) ** 2, axis=1)))
            x = keep_centre + ideal
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            got.append(_recall(_top10(x, offsets, keep_q), ref))
        label = "optimal at the Gaussian bound" if share == 1.0 else f"optimal at {share:g} x the bound"
        out.append((nbits, f"{label}, {seeds} draws", f"{mse:.5f}", f"{share:.2f}",
                    f"{np.mean(got):.3f} ({min(got):.3f}-{max(got):.3f})"))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nbits", default="1,2,4")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--gcide", type=int, default=0, help="also the first N cached gcide passages (100 describe queries)")
    args = p.parse_args()
    nbits = [int(b) for b in args.nbits.split(",")]
    sets = []
    _, dv, _, qv, _, _ = embedded_cisi(BENCH_MODEL, cache=CISI_CACHE)
    sets.append((f"CISI ({len(dv):,} abstracts, {sum(map(len, dv)):,} vectors, {len(qv)} queries)", dv, qv))
    if args.gcide:
        dv = list(gcide_stream(args.gcide))
        qv = gcide_query_vectors(args.gcide, 100, "describe")
        sets.append((f"dict-gcide ({args.gcide:,} passages, {sum(map(len, dv)):,} vectors, 100 describe queries)", dv, qv))
    for name, dv, qv in sets:
        offsets = np.zeros(len(dv) + 1, dtype=np.int64)
        np.cumsum([len(d) for d in dv], out=offsets[1:])
        vectors = np.concatenate(dv).astype(np.float32)
        queries = [np.asarray(q, dtype=np.float32) for q in qv]
        print(f"\n{name}: recall@10 of MaxSim over every document's decoded vectors vs exact float32\n")
        ref = _top10(vectors, offsets, queries)
        print_table(("nbits", "residual quantiser", "residual MSE", "MSE / bound", "recall@10"),
                    [row for b in nbits for row in _rows(vectors, offsets, queries, ref, b, args.seeds)])


if __name__ == "__main__":
    main()
