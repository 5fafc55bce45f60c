"""MaxSim (late-interaction) scoring of multi-vector queries against multi-vector documents.

``score(q, D)[i] = sum over query vectors of the largest dot product with a vector of document i``.

Documents are packed into one contiguous ``(total_tokens, dim)`` array plus ``n_docs + 1`` int64
offsets (:class:`PackedDocuments`), then scored block by block: one matrix product per block of
documents (all queries stacked at once for the ``*_many`` functions), a segmented max over each
document's tokens and a (segmented) sum over the query tokens. Memory use is bounded by the block
size, whatever the collection size. float16 documents are converted to float32 one block at a time.

A document with zero vectors scores ``0.0`` (what a zero-padded tensor gives it).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any, Protocol, Union

import numpy as np
import numpy.typing as npt

from lightcol import _validate
from lightcol.errors import NonFiniteWarning, ShapeError

__all__ = [
    "PackedDocuments",
    "pack",
    "score",
    "score_many",
    "rank",
    "rank_many",
    "top_k",
    "nonfinite_documents",
]

# Block sizing (tuned on a 2-core AVX-512 machine, OpenBLAS): a block's float32 product
# (query_rows x block_tokens) is kept around this many bytes so it stays in the last-level cache.
# Blocks are kept large on purpose: each matrix product wakes OpenBLAS's threads, and on a busy
# machine every wake-up can cost milliseconds, so many small products are much slower there.
_PRODUCT_BYTES = 8 << 20
_MIN_BLOCK_TOKENS = 1024
# A list of arrays is copied block by block into one float32 buffer of about this many bytes, so
# that the product reads the copy from the core's cache (measured: 1 MiB, 2048 128-d vectors).
_LIST_BLOCK_BYTES = 1 << 20
_MAX_BLOCK_TOKENS = 65536
# Query rows processed together by score_many (more rows are processed in several passes).
_MAX_QUERY_ROWS = 4096
# A product of at most this many query rows and block tokens is taken token-major, ``block @ q.T``
# (tokens, rows), and max-reduced along its contiguous rows: for one 32-token query and a 4,096-token
# block 0.50 vs 0.67 ms at 1 thread, 0.34 vs 0.39 at 2 (the index's rerank steps). Larger products
# stay query-major, ``q @ block.T``: at 16,384+ tokens token-major loses at 2 threads (1.9 vs 1.5 ms).
_TOKEN_MAJOR_ROWS = 64
_TOKEN_MAJOR_TOKENS = 8192

_F16_SCALE = np.float32(2.0**112)  # float16 bits << 13 read as float32 = value * 2**-112
_F16_MASK = np.int32(-0x70002000)  # 0x8FFFE000: sign bit, exponent and mantissa of the shifted half


class _HasPacked(Protocol):
    @property
    def packed(self) -> PackedDocuments: ...


Documents = Union["PackedDocuments", _HasPacked, Iterable[npt.ArrayLike]]


class PackedDocuments:
    """Ragged documents as one ``(total_tokens, dim)`` float32/float16 array plus int64 offsets.

    Document ``i`` is ``vectors[offsets[i]:offsets[i + 1]]``. Build one with :func:`pack`, or
    directly from arrays (validated: C-contiguous 2-D float16/float32 vectors, finite, offsets
    starting at 0, non-decreasing and ending at ``len(vectors)``).
    """

    __slots__ = ("vectors", "offsets", "_plans")

    vectors: np.ndarray
    offsets: np.ndarray

    def __init__(self, vectors: npt.ArrayLike, offsets: npt.ArrayLike) -> None:
        v = _as_float_matrix(vectors, "vectors", None)
        o = np.asarray(offsets)
        if o.ndim != 1 or o.shape[0] < 1 or o.dtype.kind not in "iu":
            raise ShapeError(
                f"offsets must be a 1-D integer array of length n_docs + 1; got shape {o.shape}, "
                f"dtype {o.dtype}."
            )
        o = np.ascontiguousarray(o, dtype=np.int64)
        if o[0] != 0 or o[-1] != v.shape[0] or (o.shape[0] > 1 and np.any(np.diff(o) < 0)):
            raise ShapeError(
                f"offsets must start at 0, never decrease and end at len(vectors) = {v.shape[0]}; "
                f"got offsets[0] = {o[0]}, offsets[-1] = {o[-1]}."
            )
        if not _all_finite(v):
            bad = int(np.searchsorted(o, int(np.flatnonzero(~np.isfinite(v).all(1))[0]), "right")) - 1
            raise ShapeError(f"document {bad} contains NaN or infinite values.")
        self.vectors = v
        self.offsets = o
        self._plans: dict[int, list[tuple[Any, ...]]] = {}

    @classmethod
    def _trusted(cls, vectors: np.ndarray, offsets: np.ndarray) -> PackedDocuments:
        """Wrap already-validated arrays without checking them."""
        self = object.__new__(cls)
        self.vectors = vectors
        self.offsets = offsets
        self._plans = {}
        return self

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.vectors.shape[1])

    @property
    def dtype(self) -> np.dtype:
        """Storage dtype (float32 or float16)."""
        return self.vectors.dtype

    @property
    def n_tokens(self) -> int:
        """Total number of vectors over all documents."""
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        """Number of vectors of each document, shape (n_docs,)."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"document index {i} out of range for {n} documents")
        i %= n
        return self.vectors[self.offsets[i] : self.offsets[i + 1]]

    def __repr__(self) -> str:
        return (
            f"PackedDocuments(n_docs={len(self)}, n_tokens={self.n_tokens}, dim={self.dim}, "
            f"dtype={self.dtype.name})"
        )

    def _plan(self, block_tokens: int) -> list[tuple[Any, ...]]:
        """Split the documents into blocks of at most ``block_tokens`` vectors (cached).

        Each entry is ``(i, j, t0, t1, starts, where)``: documents ``i:j`` use vectors ``t0:t1``;
        ``starts`` are the block-relative starts of its non-empty documents (``None`` for a single
        document longer than ``block_tokens``, processed in chunks) and ``where`` their positions
        in ``i:j`` (``None`` when no document of the block is empty).
        """
        plan = self._plans.get(block_tokens)
        if plan is not None:
            return plan
        off = self.offsets
        n = len(self)
        plan = []
        i = 0
        while i < n:
            t0 = int(off[i])
            j = int(np.searchsorted(off, t0 + block_tokens, side="right")) - 1
            if j <= i:  # document i alone is longer than a block
                plan.append((i, i + 1, t0, int(off[i + 1]), None, None))
                i += 1
                continue
            t1 = int(off[j])
            starts = off[i:j] - t0
            lengths = np.diff(off[i : j + 1])
            if t1 == t0:
                where = np.empty(0, dtype=np.intp)
                starts = starts[:0]
            elif np.all(lengths > 0):
                where = None
            else:
                where = np.flatnonzero(lengths > 0)
                starts = starts[where]
            plan.append((i, j, t0, t1, starts, where))
            i = j
        if len(self._plans) > 8:
            self._plans.clear()
        self._plans[block_tokens] = plan
        return plan


# ----------------------------------------------------------------------------------------------
# validation


def _all_finite(a: np.ndarray) -> bool:
    """True when ``a`` has no NaN/inf (a float64 sum propagates them and cannot overflow)."""
    if a.size == 0:
        return True
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(np.isfinite(a.sum(dtype=np.float64)))


def _as_float_matrix(x: Any, what: str, dim: int | None) -> np.ndarray:
    """``x`` as a C-contiguous 2-D float32/float16 array (float64 is cast to float32)."""
    a = np.asarray(x)
    expected = f"(n_vectors, {dim})" if dim is not None else "(n_vectors, dim)"
    if a.ndim != 2:
        hint = " (reshape a single vector with v[None, :])" if a.ndim == 1 else ""
        raise ShapeError(f"{what} must be a 2-D array of shape {expected}; got shape {a.shape}{hint}.")
    if a.dtype.kind != "f":
        raise ShapeError(
            f"{what} has dtype {a.dtype}; expected float32 or float16 (convert with .astype(np.float32))."
        )
    if dim is not None and a.shape[1] != dim:
        raise ShapeError(f"{what} has dim {a.shape[1]}; expected shape {expected}.")
    if a.shape[1] == 0:
        raise ShapeError(f"{what} has dim 0; vectors need at least one component.")
    if a.dtype != np.float16 and a.dtype != np.float32:
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)


def _check_query(query: Any, dim: int, what: str = "query") -> np.ndarray:
    q = _as_float_matrix(query, what, dim)
    if q.shape[0] == 0:
        raise ShapeError(f"{what} has no vectors; expected shape (n_query_tokens >= 1, {dim}).")
    q = np.ascontiguousarray(q, dtype=np.float32)
    if not np.isfinite(q).all():
        raise ShapeError(f"{what} contains NaN or infinite values.")
    return q


def _storage_dtype(dtype: npt.DTypeLike | None) -> np.dtype | None:
    if dtype is None:
        return None
    dt = np.dtype(dtype)
    if dt != np.float32 and dt != np.float16:
        raise ShapeError(f"storage dtype must be float32 or float16; got {dt}.")
    return dt


def pack(documents: Iterable[npt.ArrayLike], *, dtype: npt.DTypeLike | None = None) -> PackedDocuments:
    """Pack ragged 2-D document arrays ``(n_i, dim)`` into a :class:`PackedDocuments`.

    :param documents: iterable (list, generator such as ``model.embed(...)``) of 2-D float arrays,
        all of the same ``dim``; a document may have zero vectors.
    :param dtype: storage dtype, ``"float32"`` or ``"float16"``; default float16 when every input
        is float16, else float32 (float64 input is cast to float32).
    :raises ShapeError: no documents, a document that is not 2-D, float, finite or of the same dim.
    """
    if isinstance(documents, np.ndarray) and documents.ndim == 2:
        raise ShapeError(
            f"documents must be a sequence of 2-D arrays (one per document); got one 2-D array of "
            f"shape {documents.shape}. Wrap a single document in a list: [doc]."
        )
    target = _storage_dtype(dtype)
    arrays: list[np.ndarray] = []
    dim: int | None = None
    for i, doc in enumerate(documents):
        a = _as_float_matrix(doc, f"document {i}", dim)
        dim = a.shape[1]
        arrays.append(a)
    if not arrays:
        raise ShapeError(
            "no documents to pack (empty list, or a generator that was already consumed); "
            "pass at least one (n_vectors, dim) array."
        )
    if target is None:
        target = np.dtype(np.float16) if all(a.dtype == np.float16 for a in arrays) else np.dtype(np.float32)
    lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    assert dim is not None
    vectors = np.empty((int(offsets[-1]), dim), dtype=target)
    with np.errstate(over="ignore", invalid="ignore"):
        np.concatenate(arrays, axis=0, out=vectors, casting="same_kind")
    if not _all_finite(vectors):
        for i, a in enumerate(arrays):
            if not np.isfinite(vectors[offsets[i] : offsets[i + 1]]).all():
                hint = " (float16 overflow: |values| must be < 65504)" if np.isfinite(a).all() else ""
                raise ShapeError(f"document {i} contains NaN or infinite values{hint}.")
    return PackedDocuments._trusted(vectors, offsets)


class _DocumentList:
    """A list of float document arrays scored without packing them all: each block of documents is
    copied into one reusable float32 buffer of ``block_tokens`` rows (in cache) just before its product.

    Only for plain lists/tuples of C-contiguous 2-D float32/float16 ``ndarray``s of one dim (checked
    cheaply by :func:`_as_list`); anything else is packed with full validation. Non-finite vectors
    are found from the scores afterwards (:meth:`check_scores`), not by a pass over all the data.
    """

    __slots__ = ("arrays", "offsets", "dim", "vectors", "_plans", "_buffer")

    def __init__(self, arrays: list[np.ndarray], dim: int) -> None:
        self.arrays = arrays
        lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
        self.offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.dim = dim
        self.vectors = None
        self._plans: dict[int, list[tuple[Any, ...]]] = {}
        self._buffer = np.empty((0, dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.arrays)

    _plan = PackedDocuments._plan

    def block(self, t0: int, t1: int) -> np.ndarray:
        """Vectors ``t0:t1`` (global rows) as one float32 array: a view of a single document when they
        lie inside one, else documents copied into the reusable buffer."""
        off = self.offsets
        i = int(np.searchsorted(off, t0, side="right")) - 1  # the (non-empty) document holding row t0
        if t1 <= off[i + 1]:  # inside document i (a long document in chunks, or one document)
            a = self.arrays[i][t0 - off[i] : t1 - off[i]]
            return a if a.dtype == np.float32 else a.astype(np.float32)
        j = int(np.searchsorted(off, t1, side="left"))
        m = t1 - t0
        if self._buffer.shape[0] < m:
            self._buffer = np.empty((m, self.dim), dtype=np.float32)
        buf = self._buffer[:m]
        np.concatenate(self.arrays[i:j], axis=0, out=buf, casting="same_kind")
        return buf

    def check_scores(self, out: np.ndarray) -> None:
        """Raise :class:`ShapeError` for a document with NaN/inf vectors (its scores are not finite)."""
        if _all_finite(out):
            return
        for d in np.flatnonzero(~np.isfinite(out).all(axis=0)).tolist():
            if not np.isfinite(self.arrays[d]).all():
                raise ShapeError(f"document {d} contains NaN or infinite values.")


def _as_list(documents: Any, dim: int | None = None) -> _DocumentList | None:
    """``documents`` as a :class:`_DocumentList` when it is a plain list/tuple of well-formed arrays, else ``None``."""
    if type(documents) is not list and type(documents) is not tuple or not documents:
        return None
    first = documents[0]
    if type(first) is not np.ndarray or first.ndim != 2:
        return None
    d = first.shape[1]
    if d == 0 or (dim is not None and d != dim):
        return None
    for a in documents:
        if (
            type(a) is not np.ndarray
            or a.ndim != 2
            or a.shape[1] != d
            or (a.dtype != np.float32 and a.dtype != np.float16)
            or not a.flags.c_contiguous
        ):
            return None
    return _DocumentList(list(documents), d)


def _as_packed(documents: Documents) -> PackedDocuments:
    if isinstance(documents, PackedDocuments):
        return documents
    packed = getattr(documents, "packed", None)
    if isinstance(packed, PackedDocuments):
        return packed
    return pack(documents)  # type: ignore[arg-type]


def _stack_queries(queries: Iterable[npt.ArrayLike], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack queries into one float32 ``(sum_q_tokens, dim)`` matrix plus int64 row offsets."""
    if isinstance(queries, np.ndarray) and queries.ndim == 2:
        raise ShapeError(
            f"queries must be a sequence of 2-D arrays (one per query); got one 2-D array of shape "
            f"{queries.shape}. Use score()/rank() for a single query, or wrap it in a list."
        )
    qs = [_check_query(q, dim, f"query {i}") for i, q in enumerate(queries)]
    if not qs:
        raise ShapeError(
            "no queries (empty list, or a generator that was already consumed); pass at least one "
            f"(n_query_tokens, {dim}) array."
        )
    offsets = np.zeros(len(qs) + 1, dtype=np.int64)
    np.cumsum([q.shape[0] for q in qs], out=offsets[1:])
    return np.concatenate(qs, axis=0), offsets


# ----------------------------------------------------------------------------------------------
# kernel


def _auto_block_tokens(query_rows: int) -> int:
    bt = _PRODUCT_BYTES // (4 * max(query_rows, 1))
    return int(min(max(bt, _MIN_BLOCK_TOKENS), _MAX_BLOCK_TOKENS))


def _check_block_tokens(block_tokens: int | None, query_rows: int, docs: Any = None) -> int:
    if block_tokens is None:
        if isinstance(docs, _DocumentList):  # the copied block stays in cache too
            return min(_auto_block_tokens(query_rows), max(_MIN_BLOCK_TOKENS, _LIST_BLOCK_BYTES // (4 * docs.dim)))
        return _auto_block_tokens(query_rows)
    return _validate.integer("block_tokens", block_tokens, minimum=1)  # type: ignore[return-value]


def _token_major(rows: int, tokens: int) -> bool:
    """Whether a product of ``rows`` query rows and ``tokens`` vectors is taken token-major."""
    return rows <= _TOKEN_MAJOR_ROWS and tokens <= _TOKEN_MAJOR_TOKENS


def _score_into(
    q: np.ndarray,
    q_offsets: np.ndarray | None,
    docs: PackedDocuments | _DocumentList,
    out: np.ndarray,
    block_tokens: int,
) -> None:
    """Write MaxSim scores of the stacked query rows ``q`` into ``out`` (n_queries, n_docs).

    ``q_offsets`` delimits the queries inside ``q``; ``None`` means a single query. ``docs`` is
    packed, or a :class:`_DocumentList` whose blocks are copied one at a time into a reusable buffer.
    """
    rows, dim = q.shape
    listed = isinstance(docs, _DocumentList)
    vectors = docs.vectors
    half = not listed and vectors.dtype == np.float16
    bt = block_tokens
    prod = np.empty(rows * bt, dtype=np.float32)
    if half:
        # float16 -> float32 by bit manipulation (exact for finite values, ~6x faster than astype):
        # the shifted/masked half reads as value * 2**-112, so the query is scaled by 2**112 instead
        # (float16 subnormals become float32 subnormals: still exact unless the process flushes
        # denormals to zero, and then off by < 6.1e-5 per component, below float16 rounding).
        conv = np.empty(bt * dim, dtype=np.int32)
        scale_block = float(np.abs(q).max()) >= 2.0**14
        if not scale_block:
            q = q * _F16_SCALE
    q_sum_starts = None if q_offsets is None else q_offsets[:-1]

    def reduce_queries(m: np.ndarray) -> np.ndarray:
        """Per-query sums of the per-row maxima ``m`` (rows, k) -> (n_queries, k)."""
        if q_sum_starts is None:
            return m.sum(axis=0)
        return np.add.reduceat(m, q_sum_starts, axis=0)

    def product(t0: int, t1: int) -> np.ndarray:
        """Similarities (rows, m) of the query rows to vectors ``t0:t1``; a transposed view when the
        product is small enough to be taken token-major (:data:`_TOKEN_MAJOR_ROWS`)."""
        m = t1 - t0
        token_major = _token_major(rows, m)
        s = prod[: rows * m].reshape((m, rows) if token_major else (rows, m))
        if listed:
            blk = docs.block(t0, t1)  # type: ignore[union-attr]
        else:
            blk = vectors[t0:t1]
            if half:
                c = conv[: m * dim].reshape(m, dim)
                np.copyto(c, blk.view(np.int16))  # sign-extending cast
                np.left_shift(c, 13, out=c)
                np.bitwise_and(c, _F16_MASK, out=c)
                blk = c.view(np.float32)
                if scale_block:
                    np.multiply(blk, _F16_SCALE, out=blk)
        if token_major:
            np.matmul(blk, q.T, out=s)
            return s.T
        np.matmul(q, blk.T, out=s)
        return s

    for i, j, t0, t1, starts, where in docs._plan(bt):
        if starts is None:  # one document longer than a block: running max over chunks
            best = np.full(rows, -np.inf, dtype=np.float32)
            for c0 in range(t0, t1, bt):
                np.maximum(best, product(c0, min(c0 + bt, t1)).max(axis=1), out=best)
            out[:, i] = reduce_queries(best[:, None]).reshape(-1)
            continue
        if where is not None:
            out[:, i:j] = 0.0
            if where.shape[0] == 0:
                continue
        s = product(t0, t1)
        if _token_major(rows, t1 - t0):  # maxima along the contiguous rows of the (tokens, rows) product
            m = np.maximum.reduceat(s.T, starts, axis=0).T
        else:
            m = np.maximum.reduceat(s, starts, axis=1)
        if where is None:
            out[:, i:j] = reduce_queries(m)
        else:
            out[:, i + where] = reduce_queries(m)


# ----------------------------------------------------------------------------------------------
# public API


def score(query: npt.ArrayLike, documents: Documents, *, block_tokens: int | None = None) -> np.ndarray:
    """MaxSim score of one query against every document.

    :param query: (n_query_tokens, dim) float array.
    :param documents: list of (n_i, dim) arrays, a :class:`PackedDocuments` or a collection.
    :param block_tokens: document vectors per block (bounds memory); default tuned for speed.
    :return: float32 array of shape (n_docs,).
    """
    docs = _as_list(documents) or _as_packed(documents)
    q = _check_query(query, docs.dim)
    out = np.empty((1, len(docs)), dtype=np.float32)
    _score_into(q, None, docs, out, _check_block_tokens(block_tokens, q.shape[0], docs))
    if isinstance(docs, _DocumentList):
        docs.check_scores(out)
    return out[0]


def score_many(
    queries: Iterable[npt.ArrayLike], documents: Documents, *, block_tokens: int | None = None
) -> np.ndarray:
    """MaxSim scores of several queries (lengths may differ), all scored in one pass.

    :return: float32 array of shape (n_queries, n_docs).
    """
    docs = _as_list(documents) or _as_packed(documents)
    q, q_off = _stack_queries(queries, docs.dim)
    n_q = q_off.shape[0] - 1
    out = np.empty((n_q, len(docs)), dtype=np.float32)
    # Cut very large batches into groups of at most _MAX_QUERY_ROWS rows (whole queries).
    a = 0
    while a < n_q:
        b = max(a + 1, int(np.searchsorted(q_off, q_off[a] + _MAX_QUERY_ROWS, side="right")) - 1)
        b = min(b, n_q)
        rows = q[q_off[a] : q_off[b]]
        sub_off = q_off[a : b + 1] - q_off[a]
        _score_into(rows, sub_off, docs, out[a:b], _check_block_tokens(block_tokens, rows.shape[0], docs))
        a = b
    if isinstance(docs, _DocumentList):
        docs.check_scores(out)
    return out


def top_k(scores: npt.ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest scores, best first, ties broken by lower index.

    Uses ``np.argpartition`` and sorts only the selected entries; ``k`` larger than
    ``len(scores)`` returns all of them. NaN and ``+inf`` scores (damaged vectors: see
    :func:`nonfinite_documents`) rank last, below ``-inf``, in index order: they never hide valid results.
    """
    s = np.asarray(scores)
    if s.ndim != 1:
        raise ShapeError(f"scores must be 1-D; got shape {s.shape}.")
    k = _validate.k(k)
    n = s.shape[0]
    k = min(k, n)
    if k == 0:
        return np.empty(0, dtype=np.int64), s[:0].copy()
    key = s
    nan = _damaged_scores(s) if s.dtype.kind == "f" else None
    if nan is not None and nan.any():
        # NaN compares false with everything and +inf above everything: rank both below every
        # number (-inf included).
        valid = np.flatnonzero(~nan)
        if k > valid.shape[0]:
            idx = np.concatenate([valid[np.argsort(-s[valid], kind="stable")], np.flatnonzero(nan)])[:k]
            return idx.astype(np.int64, copy=False), s[idx]
        key = np.where(nan, -np.inf, s)
    if k < n:
        part = np.argpartition(key, n - k)[n - k :]
        threshold = key[part].min()
        candidates = np.flatnonzero(key >= threshold)  # includes every tie at the threshold
        if nan is not None and key is not s:
            candidates = candidates[~nan[candidates]]
    else:
        candidates = np.arange(n)
    order = np.argsort(-key[candidates], kind="stable")[:k]
    idx = candidates[order].astype(np.int64, copy=False)
    return idx, s[idx]


def rank(
    query: npt.ArrayLike, documents: Documents, k: int = 10, *, block_tokens: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` documents for one query: ``(indices, scores)``, best first, ties by lower index.

    A document whose score is NaN or ``+inf`` (damaged vectors, e.g. in a memory-mapped file) ranks
    last, with a :class:`~lightcol.errors.NonFiniteWarning` naming it.
    """
    scores = score(query, documents, block_tokens=block_tokens)
    _warn_nonfinite(scores, None)
    return top_k(scores, k)


def rank_many(
    queries: Iterable[npt.ArrayLike],
    documents: Documents,
    k: int = 10,
    *,
    block_tokens: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` documents for each query: ``(indices, scores)`` of shape (n_queries, min(k, n_docs))."""
    k = _validate.k(k)
    scores = score_many(queries, documents, block_tokens=block_tokens)
    _warn_nonfinite(scores, None)
    return _top_k_many(scores, k)


def _top_k_many(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` of each row of ``scores`` (n_queries, n_docs): arrays of shape (n_queries, min(k, n_docs))."""
    k = _validate.k(k)
    n_q, n = scores.shape
    kk = min(k, n)
    indices = np.empty((n_q, kk), dtype=np.int64)
    values = np.empty((n_q, kk), dtype=np.float32)
    for r in range(n_q):
        indices[r], values[r] = top_k(scores[r], kk)
    return indices, values


# ----------------------------------------------------------------------------------------------
# damaged vectors


def _damaged_scores(s: np.ndarray) -> np.ndarray:
    """Mask of the scores no undamaged document can have: NaN and ``+inf``."""
    return np.isnan(s) | (s == np.inf)


def nonfinite_documents(documents: Documents, *, block_tokens: int = 1 << 16) -> np.ndarray:
    """Positions of the documents with a NaN or infinite value in their vectors (sorted, int64).

    Vectors validated on the way in are always finite; this finds damage in vectors read back
    unchecked, such as a memory-mapped collection file (read ``block_tokens`` vectors at a time).
    """
    docs = _as_packed(documents)
    v, off = docs.vectors, docs.offsets
    bad: list[np.ndarray] = []
    for t0 in range(0, v.shape[0], block_tokens):
        block = v[t0 : t0 + block_tokens]
        if _all_finite(block):
            continue
        rows = t0 + np.flatnonzero(~np.isfinite(block).all(axis=1))
        bad.append(np.searchsorted(off, rows, side="right") - 1)
    if not bad:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.concatenate(bad)).astype(np.int64, copy=False)


def _warn_nonfinite(scores: np.ndarray, name: Any = None, *, hint: str = "", stacklevel: int = 3) -> None:
    """Warn (:class:`~lightcol.errors.NonFiniteWarning`) when a score is NaN or ``+inf``, naming the
    documents: ``name(i)`` for document ``i`` (``name=None``: the positions)."""
    if _all_finite(scores):
        return
    bad = _damaged_scores(scores)
    if bad.ndim > 1:
        bad = bad.any(axis=0)
    where = np.flatnonzero(bad).tolist()
    if not where:
        return
    names = [name(i) for i in where[:10]] if name is not None else where[:10]
    more = f" and {len(where) - 10} more" if len(where) > 10 else ""
    what = "document id(s)" if name is not None else "document(s) at position(s)"
    warnings.warn(
        f"{what} {names!r}{more} scored NaN or infinite: their stored vectors hold NaN or infinite values "
        f"(damaged data); they rank last.{hint or ' Find every such document with maxsim.nonfinite_documents(documents).'}",
        NonFiniteWarning,
        stacklevel=stacklevel,
    )
