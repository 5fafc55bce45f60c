"""Candidate generation: an inverted file (centroid -> documents) and PLAID-style centroid interaction.

For a query ``Q`` and centroids ``C``, ``S = Q @ C.T`` approximates every token similarity by the
similarity to the token's centroid; it is kept transposed, ``ST = C @ Q.T`` (K + 1, n_query_tokens)
with a ``-inf`` last row (:func:`centroid_scores`): the faster product (~30% at 32 x 32,768) and
the layout stage 2 gathers rows of. Three stages, each on fewer documents:

1. *probe*: each query token's ``nprobe`` best centroids; documents in their inverted lists are the
   candidates, scored ``sum_q max`` over the probed centroids they contain (others count as the
   query token's ``IMPUTE_RANK``-th best centroid score) - reads only the inverted lists;
2. *centroid interaction*: the best ``n_interact`` of them are scored with every token's centroid,
   ``sum_q max_t S[q, code_t]`` - reads 2 bytes per token;
3. the best ``n_rerank`` are decoded and scored exactly by MaxSim (in :mod:`lightcol.index.index`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import numpy as np

__all__ = ["build_ivf", "centroid_scores", "probe", "interact", "token_ranges", "token_steps"]


#: a document missing from a query token's probed lists is scored that token's ``IMPUTE_RANK``-th best
#: centroid score. The (nprobe + 1)-th (an upper bound) ranked documents matching a few query tokens
#: as high as those matching all: on 100,000 gcide passages (32,768 centroids, nprobe 8) recall@10
#: went from 0.741 to 0.782 with rank 64 at the same budget (rank 256: 0.779).
IMPUTE_RANK = 64


_IVF_STEP = 1 << 22  # tokens per step of build_ivf (its temporaries: ~100 MB)


def build_ivf(codes: np.ndarray, offsets: np.ndarray, n_centroids: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverted lists: ``docs[ivf_offsets[c]:ivf_offsets[c+1]]`` are the (sorted, distinct) documents
    holding a token of centroid ``c``. Returns ``(docs int32, ivf_offsets int64 (K+1,))``.

    Built in steps of whole documents (``_IVF_STEP`` tokens): each step's distinct (centroid,
    document) pairs, then a counting sort over centroids places them; steps are in document order,
    so every list comes out sorted. Besides its inputs it holds ~12 bytes per pair at most (640M
    vectors: ~6 GB), not a sort of one int64 key per vector (~15 GB).
    """
    lens = np.diff(offsets)
    parts: collections.deque[tuple[np.ndarray, np.ndarray]] = collections.deque()
    counts = np.zeros(n_centroids, dtype=np.int64)
    for a, b in token_steps(lens, _IVF_STEP):
        n = b - a
        local = np.repeat(np.arange(n, dtype=np.int64), lens[a:b])
        key = np.unique(np.asarray(codes[offsets[a] : offsets[b]], dtype=np.int64) * n + local)
        cent = key // n
        parts.append((cent.astype(np.int32 if n_centroids < 2**31 else np.int64), (key - cent * n + a).astype(np.int32)))
        counts += np.bincount(cent, minlength=n_centroids)
    ivf_offsets = np.zeros(n_centroids + 1, dtype=np.int64)
    np.cumsum(counts, out=ivf_offsets[1:])
    docs = np.empty(int(ivf_offsets[-1]), dtype=np.int32)
    cursor = ivf_offsets[:-1].copy()  # where each centroid's next documents go
    while parts:
        cent, doc = parts.popleft()  # freed as placed
        step = np.bincount(cent, minlength=n_centroids)
        first = np.zeros(n_centroids, dtype=np.int64)  # where each centroid's run starts in this step
        np.cumsum(step[:-1], out=first[1:])
        docs[cursor[cent] + np.arange(cent.shape[0], dtype=np.int64) - first[cent]] = doc
        cursor += step
    return docs, ivf_offsets


def centroid_scores(q: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``ST`` (K + 1, n_query_tokens) float32: row ``c`` holds centroid ``c``'s similarity to each query
    token; row K is ``-inf`` (the padding sentinel of :func:`interact`)."""
    k = centroids.shape[0]
    st = np.empty((k + 1, q.shape[0]), dtype=np.float32)
    np.matmul(centroids, q.T, out=st[:k])
    st[k] = -np.inf
    return st


def _top(s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best centroids of each query token, best first: ids and scores, both (nq, n).

    ``s`` is (K, nq). A plain ``argpartition`` of 32 x 32,768 scores takes ~12 ms; instead the
    centroids are cut into blocks of ``b`` (~sqrt(K / n)), and only the ``n`` blocks with the best
    maxima are partitioned: they hold the ``n`` best scores (any other block's maximum is beaten by ``n``
    scores already); centroids past the last whole block are always kept. Ties at the cut may pick
    another of the equal centroids.
    """
    k, nq = s.shape
    b = 1 << max(0, int(np.log2(max(1.0, np.sqrt(k / max(n, 1))))))
    nb = k // b
    if b > 1 and nb > n:
        blocks = s[: nb * b].reshape(nb, b, nq).max(axis=1).T  # (nq, nb)
        best = np.argpartition(-blocks, n - 1, axis=1)[:, :n]  # (nq, n) block ids
        ids = (best[:, :, None] * b + np.arange(b)).reshape(nq, n * b)
        ids = np.concatenate([ids, np.broadcast_to(np.arange(nb * b, k), (nq, k - nb * b))], axis=1)
        vals = s[ids, np.arange(nq)[:, None]]
    else:
        ids, vals = np.broadcast_to(np.arange(k), (nq, k)), np.ascontiguousarray(s.T)
    if n < vals.shape[1]:
        part = np.argpartition(-vals, n - 1, axis=1)[:, :n]
        ids, vals = np.take_along_axis(ids, part, axis=1), np.take_along_axis(vals, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(vals, order, axis=1)


def probe(
    st: np.ndarray, ivf_docs: np.ndarray, ivf_offsets: np.ndarray, n_docs: int, nprobe: int,
    allowed: np.ndarray | None = None, gather: Callable[[np.ndarray], list[np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1: candidate documents and their approximate scores from the inverted lists only.

    :param st: (K + 1, n_query_tokens) centroid scores (:func:`centroid_scores`).
    :param allowed: optional boolean mask over documents (``subset=``).
    :param gather: the (sorted) documents of each of the given centroids, instead of
        ``ivf_docs``/``ivf_offsets`` (an index of several segments: their lists, concatenated).
    """
    s = st[:-1]
    k, nq = s.shape
    nprobe = min(nprobe, k)
    fr = min(max(nprobe, IMPUTE_RANK), k - 1)
    top, top_s = _top(s, fr + 1 if nprobe < k else k)
    floor = top_s[:, fr] if nprobe < k else np.full(nq, top_s[:, -1].min() - 1.0, dtype=s.dtype)
    probed = top[:, :nprobe]
    u = np.unique(probed)
    lists = [ivf_docs[ivf_offsets[c] : ivf_offsets[c + 1]] for c in u] if gather is None else gather(u)
    by_centroid = dict(zip(u.tolist(), lists, strict=True))
    if not lists:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    member = np.zeros(n_docs, dtype=bool)  # a mask, not np.unique: no sort of the concatenated lists
    for d in lists:
        member[d] = True
    if allowed is not None:
        member &= allowed
    cand = np.flatnonzero(member)
    pos = np.empty(n_docs, dtype=np.int64)
    pos[cand] = np.arange(cand.shape[0])
    acc = np.zeros(cand.shape[0], dtype=np.float32)
    m = np.empty(cand.shape[0], dtype=np.float32)
    for q in range(nq):
        m.fill(floor[q])
        for j in range(nprobe - 1, -1, -1):  # ascending score: the best centroid is written last
            d = by_centroid[int(probed[q, j])]
            if allowed is not None:
                d = d[member[d]]
            m[pos[d]] = top_s[q, j]
        acc += m
    return cand, acc


def token_ranges(offsets: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token indices of ``docs`` (concatenated) and each document's start within them."""
    starts, ends = offsets[docs], offsets[docs + 1]
    lens = ends - starts
    local = np.zeros(docs.shape[0] + 1, dtype=np.int64)
    np.cumsum(lens, out=local[1:])
    idx = np.arange(local[-1], dtype=np.int64) - np.repeat(local[:-1] - starts, lens)
    return idx, local


def token_steps(lens: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Consecutive ranges ``[a, b)`` of documents with ``lens`` tokens, each of at most ``size``
    tokens (or one longer document): the steps candidates are interacted, decoded and scored in."""
    ends = np.cumsum(lens)
    steps: list[tuple[int, int]] = []
    a, done = 0, 0
    while a < lens.shape[0]:
        b = max(a + 1, int(np.searchsorted(ends, done + size, side="right")))
        steps.append((a, b))
        a, done = b, int(ends[b - 1])
    return steps


_BLOCK = 8  # tokens max-reduced together as one dense block in :func:`interact`
_STEP_TOKENS = 8192  # candidate tokens gathered per step of :func:`interact` (1 MB at 32 query tokens)


def interact(st: np.ndarray, codes: np.ndarray, offsets: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """Stage 2: ``sum_q max_t S[q, code_t]`` for each of ``docs`` (documents with no token score 0).

    ``st`` is :func:`centroid_scores`. Each document's tokens are padded to a multiple of 8 with its
    ``-inf`` row, gathered as rows of ``st`` and max-reduced 8 rows at a time densely before the
    per-document reduction (NumPy's ``reduceat`` is slow per element; the dense ``max`` is
    vectorised). Documents are taken ``_STEP_TOKENS`` tokens at a time (:func:`token_steps`):
    cache-sized temporaries, not a fresh (page-faulted) 10 MB gather per query. (Running the steps
    on two threads did not help: 12.1 vs 12.0 ms per CISI query, most of a step holds the GIL.)
    """
    out = np.zeros(docs.shape[0], dtype=np.float32)
    lens = offsets[docs + 1] - offsets[docs]
    if docs.shape[0] == 0 or int(lens.sum()) == 0:
        return out
    for a, b in token_steps(lens, _STEP_TOKENS):
        out[a:b] = _interact_step(st, codes, offsets[docs[a:b]], lens[a:b])
    return out


def _interact_step(st: np.ndarray, codes: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    k, nq = st.shape[0] - 1, st.shape[1]
    blocks = -(-lens // _BLOCK)
    bstart = np.zeros(lens.shape[0] + 1, dtype=np.int64)
    np.cumsum(blocks, out=bstart[1:])
    pad = np.full(int(bstart[-1]) * _BLOCK, k, dtype=np.int64)
    before = np.zeros(lens.shape[0], dtype=np.int64)  # tokens of the earlier candidates
    np.cumsum(lens[:-1], out=before[1:])
    p = np.arange(int(lens.sum()), dtype=np.int64)
    pad[p + np.repeat(bstart[:-1] * _BLOCK - before, lens)] = codes[p + np.repeat(starts - before, lens)]
    g = np.take(st, pad, axis=0).reshape(-1, _BLOCK, nq)  # take: ~3x faster than st[pad] for rows
    w = _BLOCK  # each block's max as a tree of element-wise maxima (2x faster than g.max(axis=1))
    while w > 1:
        w //= 2
        np.maximum(g[:, :w], g[:, w : 2 * w], out=g[:, :w])
    g = g[:, 0]  # (blocks, nq)
    out = np.zeros(lens.shape[0], dtype=np.float32)
    nonempty = blocks > 0
    if nonempty.any():
        out[nonempty] = np.maximum.reduceat(g, bstart[:-1][nonempty], axis=0).sum(axis=1)
    return out
