"""PLAID-style residual codec: a centroid id plus ``nbits`` bits per dimension of residual.

A vector ``v`` is stored as ``code = argmax(C @ v)`` (spherical k-means centroids ``C``) and the
residual ``v - C[code]`` quantised per dimension into ``2**nbits`` buckets (cut points and bucket
values are per-dimension quantiles of training residuals). Decoding is one table lookup per packed
byte; decoded vectors are re-normalised, as the originals are unit length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lightcol.errors import ArgumentError

__all__ = ["Codec", "train", "auto_centroids"]

_CHUNK_BYTES = 64 << 20  # bound on the (rows, K) score matrix of one assignment step


def auto_centroids(n_tokens: int) -> int:
    """Default number of centroids for ``n_tokens`` training vectors: a power of two ~ n/50, in [16, 65536]."""
    k = 16
    while k * 2 * 50 <= n_tokens and k < 65536:
        k *= 2
    return k


def _assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the most similar centroid (dot product) of each row of ``x``."""
    out = np.empty(x.shape[0], dtype=np.int64)
    step = max(1, _CHUNK_BYTES // (4 * centroids.shape[0]))
    ct = np.ascontiguousarray(centroids.T)
    for a in range(0, x.shape[0], step):
        out[a : a + step] = np.argmax(np.asarray(x[a : a + step], dtype=np.float32) @ ct, axis=1)
    return out


def _kmeans(x: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> np.ndarray:
    """Spherical k-means (deterministic for a given ``rng``); empty clusters are re-seeded."""
    c = x[rng.choice(x.shape[0], size=k, replace=False)].copy()
    for _ in range(iters):
        a = _assign(x, c)
        sums = np.zeros_like(c)
        _add_rows(sums, a, x)
        counts = np.bincount(a, minlength=k)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            sums[empty] = x[rng.choice(x.shape[0], size=empty.size, replace=False)]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        c = sums / np.maximum(norms, 1e-12)
    return c.astype(np.float32)


def _add_rows(sums: np.ndarray, a: np.ndarray, x: np.ndarray) -> None:
    """``sums[a[i]] += x[i]`` via a sort (faster than ``np.add.at`` for many rows)."""
    order = np.argsort(a, kind="stable")
    sa = a[order]
    starts = np.flatnonzero(np.r_[True, sa[1:] != sa[:-1]])
    sums[sa[starts]] += np.add.reduceat(x[order], starts, axis=0)


@dataclass(frozen=True)
class Codec:
    """Centroids (K, dim) float32, per-dim bucket ``cutoffs`` (dim, 2**nbits - 1) and ``weights`` (dim, 2**nbits)."""

    centroids: np.ndarray
    cutoffs: np.ndarray
    weights: np.ndarray
    nbits: int

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def code_bytes(self) -> int:
        """Bytes of packed residual per vector."""
        return self.dim * self.nbits // 8

    @property
    def code_dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.centroids.shape[0] <= 65536 else np.uint32)

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Codes (n,) and packed residuals (n, code_bytes) uint8 of unit vectors ``x`` (n, dim)."""
        x = np.asarray(x, dtype=np.float32)
        codes = _assign(x, self.centroids)
        b = self.nbits
        per = 8 // b
        packed = np.empty((x.shape[0], self.code_bytes), dtype=np.uint8)
        step = 1 << 16
        for s in range(0, x.shape[0], step):
            r = x[s : s + step] - self.centroids[codes[s : s + step]]
            buckets = np.zeros(r.shape, dtype=np.uint8)
            for j in range(self.cutoffs.shape[1]):
                buckets += r > self.cutoffs[:, j]
            grouped = buckets.reshape(r.shape[0], -1, per)
            acc = np.zeros(grouped.shape[:2], dtype=np.uint8)
            for i in range(per):
                acc |= grouped[:, :, i] << (b * i)
            packed[s : s + step] = acc
        return codes.astype(self.code_dtype), packed

    def lut(self) -> np.ndarray:
        """(code_bytes, 256, 8 // nbits) float32: the residual values one packed byte stands for."""
        b, per = self.nbits, 8 // self.nbits
        v = np.arange(256)
        idx = (v[:, None] >> (b * np.arange(per))[None, :]) & ((1 << b) - 1)  # (256, per)
        dims = np.arange(self.dim).reshape(-1, per)  # (code_bytes, per)
        return self.weights[dims[:, None, :], idx[None, :, :]].astype(np.float32)

    def decode(self, codes: np.ndarray, packed: np.ndarray, lut: np.ndarray | None = None) -> np.ndarray:
        """Unit vectors (n, dim) float32 from codes and packed residuals."""
        lut = self.lut() if lut is None else lut
        r = lut[np.arange(lut.shape[0])[None, :], packed].reshape(packed.shape[0], self.dim)
        r += self.centroids[codes]
        r /= np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
        return r


def train(sample: np.ndarray, nbits: int, n_centroids: int | None = None, *, seed: int = 0, iters: int = 8) -> Codec:
    """Fit a :class:`Codec` on sample vectors (n, dim) float (unit length)."""
    if nbits not in (1, 2, 4, 8):
        raise ArgumentError(f"nbits must be 1, 2, 4 or 8; got {nbits!r}.")
    x = np.ascontiguousarray(sample, dtype=np.float32)
    if (x.shape[1] * nbits) % 8:
        raise ArgumentError(f"dim * nbits must be a multiple of 8; got dim {x.shape[1]}, nbits {nbits}.")
    k = auto_centroids(x.shape[0]) if n_centroids is None else int(n_centroids)
    if not 1 <= k <= 1 << 32:
        raise ArgumentError(f"n_centroids must be positive; got {n_centroids!r}.")
    k = min(k, x.shape[0])
    rng = np.random.default_rng(seed)
    c = _kmeans(x, k, iters, rng)
    r = x - c[_assign(x, c)]
    n_b = 1 << nbits
    cutoffs = np.quantile(r, np.arange(1, n_b) / n_b, axis=0).T.astype(np.float32)  # (dim, n_b - 1)
    weights = np.quantile(r, (np.arange(n_b) + 0.5) / n_b, axis=0).T.astype(np.float32)  # (dim, n_b)
    return Codec(c, np.ascontiguousarray(cutoffs), np.ascontiguousarray(weights), nbits)
