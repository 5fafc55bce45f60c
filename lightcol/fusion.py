"""Fusing a MaxSim ranking with a keyword (BM25) ranking: hybrid search.

Both take the same candidates: each ranking's top passages, every one scored by both (a passage that
matches no query word has keyword score 0), so the fusion sees two complete score lists.

* ``"relative"`` (Weaviate's relativeScoreFusion): each list min-max normalised to [0, 1] over the
  candidates, then ``alpha * maxsim + (1 - alpha) * keyword``.
* ``"rrf"`` (reciprocal rank fusion, Cormack et al. 2009): ``alpha / (60 + rank_maxsim) + (1 - alpha) /
  (60 + rank_keyword)``, ranks 1-based over the candidates; ``alpha = 0.5`` is plain RRF (halved).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["fuse", "RRF_K"]

RRF_K = 60


def _normalised(scores: Mapping[int, float]) -> dict[int, float]:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi <= lo:
        return {p: 1.0 if hi > 0 else 0.0 for p in scores}
    return {p: (s - lo) / (hi - lo) for p, s in scores.items()}


def _ranks(scores: Mapping[int, float]) -> dict[int, int]:
    order = sorted(scores, key=lambda p: (-scores[p], p))
    return {p: i + 1 for i, p in enumerate(order)}


def fuse(dense: Mapping[int, float], sparse: Mapping[int, float], alpha: float, method: str = "relative") -> dict[int, float]:
    """Fused scores of the candidates (keys of ``dense``; ``sparse`` scores those of them it matched).

    :param alpha: weight of ``dense`` (MaxSim), ``1 - alpha`` of ``sparse`` (BM25).
    """
    sparse = {p: sparse.get(p, 0.0) for p in dense}
    if method == "relative":
        d, s = _normalised(dense), _normalised(sparse)
        return {p: alpha * d[p] + (1.0 - alpha) * s[p] for p in dense}
    if method == "rrf":
        d, s = _ranks(dense), _ranks(sparse)
        return {p: alpha / (RRF_K + d[p]) + (1.0 - alpha) / (RRF_K + s[p]) for p in dense}
    raise ValueError(f"unknown fusion {method!r}")
