"""Exactness and error tests of lightcol.maxsim against a plain per-document NumPy loop."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import unit_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from lightcol import maxsim
from lightcol.errors import ShapeError
from lightcol.maxsim import PackedDocuments

DIM = 48


def reference(q: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    """The straightforward definition (0.0 for a document without vectors)."""
    q = q.astype(np.float32)
    return np.array(
        [(q @ d.astype(np.float32).T).max(1).sum() if len(d) else 0.0 for d in docs], dtype=np.float32
    )


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    return unit_rows(rng, n, dim)


@pytest.fixture(scope="module")
def corpus() -> list[np.ndarray]:
    rng = np.random.default_rng(1234)
    lengths = rng.integers(1, 301, size=120)
    lengths[:3] = 1  # some one-token documents
    lengths[50] = 1
    return [unit(rng, int(n)) for n in lengths]


@pytest.fixture(scope="module")
def queries() -> list[np.ndarray]:
    rng = np.random.default_rng(99)
    return [unit(rng, n) for n in (32, 1, 7, 32, 19)]


def assert_same_ranking(idx: np.ndarray, scores: np.ndarray, ref: np.ndarray, k: int) -> None:
    """Ranking equal to the reference's up to float rounding among near-ties."""
    expected = np.sort(ref)[::-1][:k]
    assert idx.shape == (min(k, len(ref)),)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ref[idx], scores, rtol=1e-5, atol=1e-5)
    assert len(set(idx.tolist())) == len(idx)
    assert np.all(np.diff(scores) <= 0)


@pytest.mark.parametrize("block_tokens", [None, 1, 7, 100, 299, 301, 5000, 10**7])
def test_score_matches_reference(corpus, queries, block_tokens):
    packed = maxsim.pack(corpus)
    for q in queries:
        ref = reference(q, corpus)
        np.testing.assert_allclose(maxsim.score(q, packed, block_tokens=block_tokens), ref, rtol=1e-5, atol=1e-5)


def test_score_accepts_list_generator_and_packed(corpus, queries):
    q = queries[0]
    ref = reference(q, corpus)
    for docs in (corpus, tuple(corpus), (d for d in corpus), maxsim.pack(corpus)):
        s = maxsim.score(q, docs)
        assert s.shape == (len(corpus),) and s.dtype == np.float32
        np.testing.assert_allclose(s, ref, rtol=1e-5, atol=1e-5)


def test_one_token_documents():
    rng = np.random.default_rng(5)
    docs = [unit(rng, 1) for _ in range(40)]
    q = unit(rng, 32)
    np.testing.assert_allclose(maxsim.score(q, docs), reference(q, docs), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(maxsim.score(q, docs, block_tokens=1), reference(q, docs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [1, 5, 10, 119, 120, 121, 1000])
def test_rank_matches_reference(corpus, queries, k):
    for q in queries:
        ref = reference(q, corpus)
        idx, scores = maxsim.rank(q, corpus, k)
        assert_same_ranking(idx, scores, ref, k)


def test_rank_k_zero_and_negative(corpus, queries):
    idx, scores = maxsim.rank(queries[0], corpus, 0)
    assert idx.shape == (0,) and scores.shape == (0,)
    with pytest.raises(ValueError):
        maxsim.rank(queries[0], corpus, -1)


def test_block_smaller_than_one_document(queries):
    rng = np.random.default_rng(3)
    docs = [unit(rng, n) for n in (300, 5, 250, 1, 299)]
    for bt in (1, 2, 16, 64, 100):
        for q in queries:
            np.testing.assert_allclose(
                maxsim.score(q, docs, block_tokens=bt), reference(q, docs), rtol=1e-5, atol=1e-5
            )
            np.testing.assert_allclose(
                maxsim.score_many([q, q[:3]], docs, block_tokens=bt),
                np.stack([reference(q, docs), reference(q[:3], docs)]),
                rtol=1e-5,
                atol=1e-5,
            )


@pytest.mark.parametrize("block_tokens", [None, 1, 3, 10])
def test_empty_documents_score_zero(block_tokens):
    rng = np.random.default_rng(8)
    empty = np.zeros((0, DIM), dtype=np.float32)
    docs = [empty, unit(rng, 4), empty, empty, unit(rng, 3), unit(rng, 20), empty]
    q = -np.abs(unit(rng, 5))  # negative scores: 0.0 for the empty ones is visible
    s = maxsim.score(q, docs, block_tokens=block_tokens)
    np.testing.assert_allclose(s, reference(q, docs), rtol=1e-5, atol=1e-6)
    assert s[0] == s[2] == s[3] == s[6] == 0.0
    many = maxsim.score_many([q, q[:2]], docs, block_tokens=block_tokens)
    np.testing.assert_allclose(many, np.stack([reference(q, docs), reference(q[:2], docs)]), rtol=1e-5, atol=1e-6)
    all_empty = maxsim.score(q, [empty, empty], block_tokens=block_tokens)
    assert all_empty.tolist() == [0.0, 0.0]


def test_score_many_equals_stacked_score(corpus, queries):
    packed = maxsim.pack(corpus)
    many = maxsim.score_many(queries, packed)
    assert many.shape == (len(queries), len(corpus))
    stacked = np.stack([maxsim.score(q, packed) for q in queries])
    np.testing.assert_allclose(many, stacked, rtol=1e-5, atol=1e-5)
    # also as a 3-D array of equal-length queries and with small blocks
    same = np.stack([queries[0], queries[3]])
    np.testing.assert_allclose(maxsim.score_many(same, packed, block_tokens=13), stacked[[0, 3]], rtol=1e-5, atol=1e-5)


def test_rank_many_equals_rank(corpus, queries):
    idx, scores = maxsim.rank_many(queries, corpus, 7)
    assert idx.shape == scores.shape == (len(queries), 7)
    for r, q in enumerate(queries):
        assert_same_ranking(idx[r], scores[r], reference(q, corpus), 7)
    idx, scores = maxsim.rank_many(queries, corpus, 10_000)
    assert idx.shape == (len(queries), len(corpus))


def test_ties_broken_by_lower_index():
    rng = np.random.default_rng(11)
    a, b, c = unit(rng, 5), unit(rng, 9), unit(rng, 2)
    docs = [a, b, a, c, b, a, c, c, a, b] * 5  # many exact duplicates
    q = unit(rng, 6)
    ref = reference(q, docs)
    for k in (1, 2, 3, 7, 11, 20, 50, 60):
        idx, scores = maxsim.rank(q, docs, k)
        expected = np.argsort(-ref, kind="stable")[:k]  # stable: equal scores keep index order
        assert idx.tolist() == expected.tolist()
        idx_many, _ = maxsim.rank_many([q, q], docs, k)
        assert idx_many[0].tolist() == idx_many[1].tolist() == expected.tolist()
    same = [a] * 30
    assert maxsim.rank(q, same, 10)[0].tolist() == list(range(10))


def test_top_k():
    s = np.array([1.0, 3.0, 3.0, 2.0, 3.0, 0.5], dtype=np.float32)
    idx, val = maxsim.top_k(s, 2)
    assert idx.tolist() == [1, 2] and val.tolist() == [3.0, 3.0]
    idx, _ = maxsim.top_k(s, 4)
    assert idx.tolist() == [1, 2, 4, 3]
    idx, _ = maxsim.top_k(s, 100)
    assert idx.tolist() == [1, 2, 4, 3, 0, 5]


def test_float16_storage_close_to_float32(corpus, queries):
    p32 = maxsim.pack(corpus)
    p16 = maxsim.pack(corpus, dtype="float16")
    assert p16.dtype == np.float16 and p16.vectors.nbytes * 2 == p32.vectors.nbytes
    for q in queries:
        s32 = maxsim.score(q, p32)
        s16 = maxsim.score(q, p16, block_tokens=50)
        np.testing.assert_allclose(s16, s32, rtol=1e-2, atol=1e-2 * q.shape[0])
        # exactly the float32 scores of the float16-rounded vectors
        rounded = [d.astype(np.float16) for d in corpus]
        np.testing.assert_allclose(s16, reference(q, rounded), rtol=1e-5, atol=1e-5)
        top32 = set(maxsim.rank(q, p32, 10)[0].tolist())
        top16 = set(maxsim.rank(q, p16, 10)[0].tolist())
        assert len(top32 & top16) >= 8
    np.testing.assert_allclose(
        maxsim.score_many(queries, p16), np.stack([maxsim.score(q, p16) for q in queries]), rtol=1e-5, atol=1e-5
    )


def test_float16_with_large_query_values(corpus):
    rng = np.random.default_rng(2)
    q = unit(rng, 4) * 1e5  # too large to pre-scale by 2**112: converted block is rescaled instead
    p16 = maxsim.pack(corpus, dtype="float16")
    rounded = [d.astype(np.float16) for d in corpus]
    np.testing.assert_allclose(maxsim.score(q, p16), reference(q, rounded), rtol=1e-5)


def test_pack_dtypes():
    rng = np.random.default_rng(0)
    d32 = unit(rng, 3)
    assert maxsim.pack([d32.astype(np.float16)] * 2).dtype == np.float16
    assert maxsim.pack([d32.astype(np.float16), d32]).dtype == np.float32
    assert maxsim.pack([d32.astype(np.float64)]).dtype == np.float32
    assert maxsim.pack([d32], dtype="float16").dtype == np.float16
    p = maxsim.pack([d32, d32[:0], d32[:1]])
    assert len(p) == 3 and p.n_tokens == 4 and p.dim == DIM
    assert p.offsets.tolist() == [0, 3, 3, 4] and p.lengths.tolist() == [3, 0, 1]
    np.testing.assert_array_equal(p[0], d32)
    np.testing.assert_array_equal(p[-1], d32[:1])
    with pytest.raises(IndexError):
        p[3]
    with pytest.raises(ShapeError):
        maxsim.pack([d32], dtype="int8")


def test_packed_documents_constructor_validates():
    v = np.ones((5, 4), dtype=np.float32)
    p = PackedDocuments(v, [0, 2, 5])
    assert len(p) == 2 and p.offsets.dtype == np.int64
    for bad in ([0, 2, 4], [1, 2, 5], [0, 3, 2, 5], [[0, 5]], [0.0, 5.0]):
        with pytest.raises(ShapeError):
            PackedDocuments(v, bad)
    v[3, 1] = np.nan
    with pytest.raises(ShapeError, match="document 1"):
        PackedDocuments(v, [0, 2, 5])
    with pytest.raises(ShapeError):
        PackedDocuments(np.ones(5, dtype=np.float32), [0, 5])


def test_errors_documents():
    rng = np.random.default_rng(0)
    d = unit(rng, 3)
    q = unit(rng, 2)
    with pytest.raises(ShapeError, match=r"document 1 has dim 47.*\(n_vectors, 48\)"):
        maxsim.score(q, [d, unit(rng, 3, DIM - 1)])
    with pytest.raises(ShapeError, match="document 1 must be a 2-D array"):
        maxsim.score(q, [d, d[0]])
    with pytest.raises(ShapeError, match="no documents"):
        maxsim.score(q, [])
    gen = (x for x in [d])
    maxsim.pack(gen)
    with pytest.raises(ShapeError, match="already consumed"):
        maxsim.pack(gen)
    bad = d.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ShapeError, match="document 2 contains NaN"):
        maxsim.score(q, [d, d, bad])
    inf = d.copy()
    inf[0, 0] = np.inf
    with pytest.raises(ShapeError, match="document 0 contains NaN or infinite"):
        maxsim.pack([inf])
    with pytest.raises(ShapeError, match="float16 overflow"):
        maxsim.pack([d * 1e6], dtype="float16")
    with pytest.raises(ShapeError, match="dtype int64"):
        maxsim.pack([np.ones((2, DIM), dtype=np.int64)])
    with pytest.raises(ShapeError, match="Wrap a single document"):
        maxsim.pack(d)
    assert issubclass(ShapeError, ValueError)


def test_errors_queries(corpus):
    rng = np.random.default_rng(0)
    with pytest.raises(ShapeError, match=r"query has dim 47.*\(n_vectors, 48\)"):
        maxsim.score(unit(rng, 4, DIM - 1), corpus)
    with pytest.raises(ShapeError, match="query must be a 2-D array"):
        maxsim.score(unit(rng, 1)[0], corpus)
    with pytest.raises(ShapeError, match="no vectors"):
        maxsim.score(np.zeros((0, DIM), np.float32), corpus)
    q = unit(rng, 4)
    q[1, 1] = np.nan
    with pytest.raises(ShapeError, match="query contains NaN"):
        maxsim.rank(q, corpus, 3)
    with pytest.raises(ShapeError, match="query 1 contains NaN"):
        maxsim.score_many([unit(rng, 2), q], corpus)
    with pytest.raises(ShapeError, match="no queries"):
        maxsim.score_many([], corpus)
    with pytest.raises(ShapeError, match="sequence of 2-D arrays"):
        maxsim.score_many(unit(rng, 4), corpus)
    with pytest.raises(ValueError):
        maxsim.score(unit(rng, 4), corpus, block_tokens=0)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=12),
    q_len=st.integers(1, 5),
    block_tokens=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_property_exact_on_small_integers(lengths, q_len, block_tokens, seed):
    """Small-integer vectors make every float32 sum exact: scores must equal the loop exactly."""
    rng = np.random.default_rng(seed)
    docs = [rng.integers(-4, 5, size=(n, 6)).astype(np.float32) for n in lengths]
    q = rng.integers(-4, 5, size=(q_len, 6)).astype(np.float32)
    ref = reference(q, docs)
    np.testing.assert_array_equal(maxsim.score(q, docs, block_tokens=block_tokens), ref)
    np.testing.assert_array_equal(maxsim.score(q, maxsim.pack(docs, dtype="float16"), block_tokens=block_tokens), ref)
    np.testing.assert_array_equal(maxsim.score_many([q, q[:1]], docs, block_tokens=block_tokens)[0], ref)
    idx, _ = maxsim.rank(q, docs, 5)
    assert idx.tolist() == np.argsort(-ref, kind="stable")[:5].tolist()
