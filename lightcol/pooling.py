"""Token pooling: fewer vectors per document by Ward clustering of its token vectors (NumPy only).

The recipe of Answer.AI / PyLate: the first ``protected_tokens`` rows (``[CLS]``) are kept as they
are; the other ``n`` rows are clustered by Ward's hierarchical method on the cosine distance
``1 - cos`` and cut into ``max(n // pool_factor, 1)`` clusters; each cluster becomes the mean of its
members. The clusters equal SciPy's ``fcluster(linkage(1 - cos, "ward"), t, "maxclust")`` except
where two merge distances tie exactly (then either choice is a valid Ward clustering).

Ward merges are reducible, so cutting the tree at ``t`` clusters is the same as performing the
``n - t`` closest merges in order: this module runs that greedy loop for a whole batch of documents
at once (one NumPy step per merge for every document together), keeping each row's nearest
neighbour so a step costs O(n) per document, not O(n^2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from lightcol import _validate
from lightcol.errors import ShapeError

__all__ = ["pool_tokens", "pool_tokens_batch"]

#: Documents clustered together in one padded batch (bounds the (batch, n, n) distance arrays).
_BATCH_DOCS = 64


def _check_args(pool_factor: int, protected_tokens: int) -> tuple[int, int]:
    pf = _validate.integer("pool_factor", pool_factor, minimum=1)
    pt = _validate.integer("protected_tokens", protected_tokens, minimum=0)
    return pf, pt  # type: ignore[return-value]


def _as_document(v: npt.ArrayLike, k: int) -> np.ndarray:
    a = np.asarray(v)
    if a.ndim != 2 or a.dtype.kind != "f":
        raise ShapeError(f"document {k} must be a 2-D float array (n_tokens, dim); got shape {a.shape}, dtype {a.dtype}.")
    return a


def pool_tokens(vectors: npt.ArrayLike, pool_factor: int = 2, protected_tokens: int = 1) -> np.ndarray:
    """Pool one document's token vectors: ``(n, dim)`` -> ``(protected + max((n - protected) // pool_factor, 1), dim)``.

    :param vectors: the document's vectors (as ``embed`` yields them).
    :param pool_factor: about how many vectors become one; ``1`` returns the vectors unchanged.
    :param protected_tokens: leading rows kept as they are (``[CLS]`` for ColBERT models).
    :return: the protected rows, then one mean vector per cluster (clusters ordered by their first
        member); same dtype as the input.
    """
    return pool_tokens_batch([vectors], pool_factor, protected_tokens)[0]


def pool_tokens_batch(
    documents: Iterable[npt.ArrayLike], pool_factor: int = 2, protected_tokens: int = 1
) -> list[np.ndarray]:
    """:func:`pool_tokens` for many documents, clustered together in vectorised batches (faster)."""
    pf, pt = _check_args(pool_factor, protected_tokens)
    docs = [_as_document(v, k) for k, v in enumerate(documents)]
    if pf == 1:
        return docs
    out: list[np.ndarray] = [None] * len(docs)  # type: ignore[list-item]
    work: list[int] = []
    for k, d in enumerate(docs):
        n = d.shape[0] - pt
        if n <= 1:  # nothing or one vector to pool: unchanged
            out[k] = d
        else:
            work.append(k)
    # similar lengths together: less padding in the batched distance arrays
    work.sort(key=lambda k: docs[k].shape[0])
    for s in range(0, len(work), _BATCH_DOCS):
        chunk = work[s : s + _BATCH_DOCS]
        labels = _ward_labels([docs[k][pt:] for k in chunk], pf)
        for k, lab in zip(chunk, labels, strict=True):
            out[k] = _cluster_means(docs[k], pt, lab)
    return out


def _cluster_means(doc: np.ndarray, protected: int, labels: np.ndarray) -> np.ndarray:
    """Protected rows, then the mean of each cluster (``labels`` = cluster representative per row)."""
    rest = doc[protected:].astype(np.float32, copy=False)
    # representatives in order of first appearance -> 0..c-1
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    cluster = rank[inverse]
    c = order.shape[0]
    sums = np.zeros((c, doc.shape[1]), dtype=np.float64)
    np.add.at(sums, cluster, rest)
    counts = np.bincount(cluster, minlength=c)
    means = (sums / counts[:, None]).astype(doc.dtype)
    return np.concatenate([doc[:protected], means]) if protected else means


def _ward_labels(docs: Sequence[np.ndarray], pool_factor: int) -> list[np.ndarray]:
    """Ward clusters of each document's rows cut at ``max(n // pool_factor, 1)``: a representative index per row."""
    b = len(docs)
    sizes = np.array([d.shape[0] for d in docs])
    m = int(sizes.max())
    dim = docs[0].shape[1]
    x = np.zeros((b, m, dim), dtype=np.float64)
    for k, d in enumerate(docs):
        x[k, : d.shape[0]] = d
    norms = np.linalg.norm(x, axis=2, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    x /= norms
    # Ward works on squared distances (Lance-Williams); the dissimilarity is 1 - cos, as PyLate's.
    dist = np.empty((b, m, m))
    for k in range(b):  # one BLAS call per document (a stacked matmul of transposed views is not BLAS)
        np.matmul(x[k], x[k].T, out=dist[k])
    np.subtract(1.0, dist, out=dist)
    np.maximum(dist, 0.0, out=dist)
    d2 = dist * dist
    valid = np.arange(m)[None, :] < sizes[:, None]
    d2[~valid[:, :, None] | ~valid[:, None, :]] = np.inf
    rows = np.arange(m)
    d2[:, rows, rows] = np.inf
    count = valid.astype(np.float64)
    nn_dist = d2.min(axis=2)
    nn_idx = d2.argmin(axis=2)
    labels = np.broadcast_to(rows, (b, m)).copy()
    steps = sizes - np.maximum(sizes // pool_factor, 1)
    for step in range(int(steps.max())):
        bs = np.flatnonzero(steps > step)
        nb = bs.shape[0]
        ar = np.arange(nb)
        i = nn_dist[bs].argmin(axis=1)
        j = nn_idx[bs, i]
        ni = count[bs, i][:, None]
        nj = count[bs, j][:, None]
        nk = count[bs]
        dij = d2[bs, i, j][:, None]
        with np.errstate(invalid="ignore"):
            new = ((nk + ni) * d2[bs, i] + (nk + nj) * d2[bs, j] - nk * dij) / (ni + nj + nk)
        new[~np.isfinite(new) | (nk == 0)] = np.inf
        new[ar, i] = np.inf
        new[ar, j] = np.inf
        d2[bs, i, :] = new
        d2[bs, :, i] = new
        d2[bs, j, :] = np.inf
        d2[bs, :, j] = np.inf
        count[bs, i] += count[bs, j]
        count[bs, j] = 0.0
        lab = labels[bs]
        lab[lab == j[:, None]] = np.broadcast_to(i[:, None], lab.shape)[lab == j[:, None]]
        labels[bs] = lab
        # nearest neighbours: rows that pointed at i or j (and row i) are recomputed; others may now prefer i
        nd, ni_ = nn_dist[bs], nn_idx[bs]
        stale = (ni_ == i[:, None]) | (ni_ == j[:, None])
        stale[ar, i] = True
        better = (new < nd) & ~stale
        nd = np.where(better, new, nd)
        ni_ = np.where(better, i[:, None], ni_)
        nd[ar, j] = np.inf
        stale[ar, j] = False
        sb, sr = np.nonzero(stale)
        if sb.shape[0]:
            block = d2[bs[sb], sr]
            nd[sb, sr] = block.min(axis=1)
            ni_[sb, sr] = block.argmin(axis=1)
        nn_dist[bs] = nd
        nn_idx[bs] = ni_
    return [labels[k, : sizes[k]] for k in range(b)]
