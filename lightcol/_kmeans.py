"""k-means helpers (NumPy) shared by the index codec and fitted MUVERA: spherical k-means, assignment, row sums.

With many centroids (``k >= 2048``, the index's codec on 50k+ vectors) an exact assignment costs
``n * k`` dot products: 41 TFLOP to encode 5M vectors against 32,768 centroids. There the centroids are
grouped by a small k-means of the centroids themselves (``~sqrt(k)`` groups) and each vector is
compared with the groups, then with the members of its ``_PROBE`` best groups only (~40x fewer dot
products at k = 32,768). The grouping is a pure function of the centroids, so a build and a later
``add`` assign alike. Measured on CISI's 177,706 vectors and 4,096 centroids: 0.39 s vs 2.4 s for the
exact assignment, and the index codec trained with it decodes to the same recall (0.926 vs 0.918).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["assign", "spherical_kmeans", "add_rows", "Groups", "group"]

_CHUNK_BYTES = 64 << 20  # bound on the (rows, K) score matrix of one assignment step


#: from this many centroids on, :func:`assign` searches groups of centroids (see the module docstring)
GROUPED_FROM = 2048
_PROBE = 4  # groups searched per vector
_GROUP_ITERS = 4


class Groups(NamedTuple):
    """Centroids grouped for :func:`assign`: group centroids ``(g, dim)``, member ids sorted by group
    and each group's slice ``members[offsets[i]:offsets[i + 1]]``."""

    centroids: np.ndarray
    members: np.ndarray
    offsets: np.ndarray


def group(centroids: np.ndarray) -> Groups | None:
    """Deterministic grouping of ``centroids`` (k, dim): spherical k-means of them into ~sqrt(k) groups;
    ``None`` below :data:`GROUPED_FROM` centroids (exact assignment)."""
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    k = c.shape[0]
    if k < GROUPED_FROM:
        return None
    g = 1 << max(1, (int(np.sqrt(k)) - 1).bit_length())  # a power of two >= sqrt(k)
    gc = spherical_kmeans(c, min(g, k), _GROUP_ITERS, np.random.default_rng(0))
    a = _flat_assign(c, gc)
    members = np.argsort(a, kind="stable")
    offsets = np.zeros(gc.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(a, minlength=gc.shape[0]), out=offsets[1:])
    return Groups(gc, members, offsets)


def assign(x: np.ndarray, centroids: np.ndarray, groups: Groups | None = None) -> np.ndarray:
    """Index of the most similar centroid (dot product) of each row of ``x``.

    Exact below :data:`GROUPED_FROM` centroids; from there, searched in the vector's best groups
    (``groups``, computed by :func:`group` when not given).
    """
    groups = group(centroids) if groups is None else groups
    return _flat_assign(x, centroids) if groups is None else _grouped_assign(x, centroids, groups)


def _grouped_assign(x: np.ndarray, centroids: np.ndarray, groups: Groups) -> np.ndarray:
    c = np.asarray(centroids, dtype=np.float32)
    gc, members, goff = groups
    p = min(_PROBE, gc.shape[0])
    out = np.empty(x.shape[0], dtype=np.int64)
    step = max(1, _CHUNK_BYTES // (4 * max(gc.shape[0], 256 * p)))
    gct = np.ascontiguousarray(gc.T)
    for a in range(0, x.shape[0], step):
        xa = np.asarray(x[a : a + step], dtype=np.float32)
        n = xa.shape[0]
        s = xa @ gct
        top = np.argpartition(-s, p - 1, axis=1)[:, :p] if p < gc.shape[0] else np.broadcast_to(np.arange(p), (n, p))
        grp = top.ravel()
        rows = np.repeat(np.arange(n), p)
        order = np.argsort(grp, kind="stable")
        grp, rows = grp[order], rows[order]
        bounds = np.flatnonzero(np.r_[True, grp[1:] != grp[:-1], True])
        best = np.full(n, -np.inf, dtype=np.float32)
        arg = np.zeros(n, dtype=np.int64)
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            r = rows[lo:hi]  # distinct rows: a vector probes a group once
            ch = members[goff[grp[lo]] : goff[grp[lo] + 1]]
            if ch.shape[0] == 0:
                continue
            sc = xa[r] @ c[ch].T
            m = np.argmax(sc, axis=1)
            val = sc[np.arange(r.shape[0]), m]
            better = val > best[r]
            best[r[better]] = val[better]
            arg[r[better]] = ch[m[better]]
        out[a : a + step] = arg
    return out


def _flat_assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=np.int64)
    step = max(1, _CHUNK_BYTES // (4 * centroids.shape[0]))
    ct = np.ascontiguousarray(centroids.T, dtype=np.float32)  # float16 centroids too
    for a in range(0, x.shape[0], step):
        out[a : a + step] = np.argmax(np.asarray(x[a : a + step], dtype=np.float32) @ ct, axis=1)
    return out


def add_rows(sums: np.ndarray, a: np.ndarray, x: np.ndarray) -> None:
    """``sums[a[i]] += x[i]`` via a sort (faster than ``np.add.at`` for many rows), in chunks of rows
    (the sorted copy of ``x`` is one chunk, not all of it)."""
    step = max(1, _CHUNK_BYTES // max(1, 4 * x.shape[1]))
    for lo in range(0, x.shape[0], step):
        ac = a[lo : lo + step]
        order = np.argsort(ac, kind="stable")
        sa = ac[order]
        starts = np.flatnonzero(np.r_[True, sa[1:] != sa[:-1]])
        sums[sa[starts]] += np.add.reduceat(np.asarray(x[lo : lo + step])[order], starts, axis=0)


def spherical_kmeans(x: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> np.ndarray:
    """Spherical k-means (deterministic for a given ``rng``); empty clusters are re-seeded. ``(k, dim)`` float32."""
    c = x[rng.choice(x.shape[0], size=k, replace=False)].copy()
    for _ in range(iters):
        a = assign(x, c)  # grouped (approximate) from GROUPED_FROM centroids on
        sums = np.zeros_like(c)
        add_rows(sums, a, x)
        counts = np.bincount(a, minlength=k)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            sums[empty] = x[rng.choice(x.shape[0], size=empty.size, replace=False)]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        c = sums / np.maximum(norms, 1e-12)
    return c.astype(np.float32)
