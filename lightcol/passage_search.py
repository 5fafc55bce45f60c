"""MaxSim over a subset of a :class:`~lightcol.DocumentIndex`'s passages, exactly, on either vector backend.

A metadata filter selects passages before the top ``k`` is taken: :func:`top` ranks only the allowed
passages (``k`` results whenever ``k`` passages are allowed), and :func:`scores` gives the exact
MaxSim of given passages (hybrid fusion and document aggregation need the scores of passages that
one ranking found and the other did not).

* ``MultiVectorCollection`` (exact): a small subset is gathered and scored alone; a large one is
  scored with everything and masked (the same cost as an unfiltered search).
* ``Index`` (compressed): up to :data:`EXACT_SUBSET` allowed passages are all decoded and scored
  (exhaustive over the subset, so a selective filter is exact and faster than an unfiltered search);
  more go through the index's candidate generation restricted to them, as an unfiltered search does,
  and fall back to scoring every allowed passage if that finds fewer than ``k``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from lightcol import maxsim

__all__ = ["top", "scores", "EXACT_SUBSET"]

#: allowed passages an ``Index`` scores exhaustively (decoded) rather than through its candidate generation
EXACT_SUBSET = 8192
#: above this share of a collection, score everything and mask instead of gathering the subset
_GATHER_SHARE = 0.25
_IDS: weakref.WeakKeyDictionary[Any, tuple[np.ndarray, np.ndarray, np.ndarray]] = weakref.WeakKeyDictionary()


def _is_index(vectors: Any) -> bool:
    from lightcol.index import Index

    return isinstance(vectors, Index)


def _ids(vectors: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A collection's passage ids by position, sorted, and the sorting permutation (cached per object)."""
    cached = _IDS.get(vectors)
    if cached is None:
        ids = np.asarray(vectors.ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        cached = (ids, ids[order], order)
        _IDS[vectors] = cached
    return cached


def _positions(vectors: Any, pids: Sequence[int]) -> np.ndarray:
    """Sorted positions (insertion order) of the passage ids ``pids`` in a collection (ids not in it dropped)."""
    _, sorted_ids, order = _ids(vectors)
    if len(sorted_ids) == 0:
        return np.empty(0, dtype=np.int64)
    want = np.asarray(pids, dtype=np.int64)
    i = np.minimum(np.searchsorted(sorted_ids, want), len(sorted_ids) - 1)
    return np.unique(order[i[sorted_ids[i] == want]])


def _collection_scores(vectors: Any, q: np.ndarray, pos: np.ndarray) -> np.ndarray:
    n = len(vectors)
    if len(pos) > _GATHER_SHARE * n:
        return vectors.score(q)[pos]
    return maxsim.score(q, [vectors.get(int(i)) for i in pos]) if len(pos) else np.empty(0, np.float32)


def top(vectors: Any, q: np.ndarray, k: int, allowed: Sequence[int] | None = None) -> list[tuple[int, float]]:
    """``(passage_id, score)`` of the ``k`` best passages for one query, best first, among ``allowed``
    passage ids (``None``: all)."""
    if vectors is None or len(vectors) == 0:
        return []
    if allowed is None:
        return [(int(p), s) for p, s in vectors.search(q, min(k, len(vectors)))]
    if len(allowed) == 0:
        return []
    if _is_index(vectors):
        n_allowed = len(allowed)
        if n_allowed <= EXACT_SUBSET:
            return vectors.search(q, min(k, n_allowed), allowed, n_rerank=n_allowed)
        hits = vectors.search(q, k, allowed)
        if len(hits) < min(k, n_allowed):
            hits = vectors.search(q, min(k, n_allowed), allowed, n_rerank=n_allowed)
        return hits
    pos = _positions(vectors, allowed)
    if len(pos) == 0:
        return []
    s = _collection_scores(vectors, q, pos)
    idx, vals = maxsim.top_k(s, min(k, len(pos)))
    ids = _ids(vectors)[0]
    return [(int(ids[pos[i]]), float(v)) for i, v in zip(idx.tolist(), vals.tolist(), strict=True)]


def scores(vectors: Any, q: np.ndarray, pids: Sequence[int]) -> dict[int, float]:
    """Exact MaxSim (decoded vectors for an ``Index``) of the passages ``pids`` (ids not stored are absent)."""
    if vectors is None or len(vectors) == 0 or len(pids) == 0:
        return {}
    if _is_index(vectors):
        return {int(p): s for p, s in vectors.search(q, len(pids), list(pids), n_rerank=len(pids))}
    pos = _positions(vectors, pids)
    s = _collection_scores(vectors, q, pos)
    ids = _ids(vectors)[0]
    return {int(ids[p]): float(v) for p, v in zip(pos.tolist(), s.tolist(), strict=True)}
