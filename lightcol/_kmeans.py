"""k-means helpers (NumPy) shared by the index codec and fitted MUVERA: spherical k-means, assignment, row sums."""

from __future__ import annotations

import numpy as np

__all__ = ["assign", "spherical_kmeans", "add_rows"]

_CHUNK_BYTES = 64 << 20  # bound on the (rows, K) score matrix of one assignment step


def assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the most similar centroid (dot product) of each row of ``x``."""
    out = np.empty(x.shape[0], dtype=np.int64)
    step = max(1, _CHUNK_BYTES // (4 * centroids.shape[0]))
    ct = np.ascontiguousarray(centroids.T, dtype=np.float32)  # float16 centroids too
    for a in range(0, x.shape[0], step):
        out[a : a + step] = np.argmax(np.asarray(x[a : a + step], dtype=np.float32) @ ct, axis=1)
    return out


def add_rows(sums: np.ndarray, a: np.ndarray, x: np.ndarray) -> None:
    """``sums[a[i]] += x[i]`` via a sort (faster than ``np.add.at`` for many rows)."""
    order = np.argsort(a, kind="stable")
    sa = a[order]
    starts = np.flatnonzero(np.r_[True, sa[1:] != sa[:-1]])
    sums[sa[starts]] += np.add.reduceat(x[order], starts, axis=0)


def spherical_kmeans(x: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> np.ndarray:
    """Spherical k-means (deterministic for a given ``rng``); empty clusters are re-seeded. ``(k, dim)`` float32."""
    c = x[rng.choice(x.shape[0], size=k, replace=False)].copy()
    for _ in range(iters):
        a = assign(x, c)
        sums = np.zeros_like(c)
        add_rows(sums, a, x)
        counts = np.bincount(a, minlength=k)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            sums[empty] = x[rng.choice(x.shape[0], size=empty.size, replace=False)]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        c = sums / np.maximum(norms, 1e-12)
    return c.astype(np.float32)
