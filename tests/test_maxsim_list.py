"""maxsim on a plain list of arrays: block-wise copies into a reusable buffer, same scores as packed."""

from __future__ import annotations

import numpy as np
import pytest

from lightcol import ShapeError, maxsim
from lightcol.maxsim import _as_list


def _docs(rng, lengths, dim=16, dtype=np.float32):
    out = []
    for n in lengths:
        x = rng.standard_normal((n, dim)).astype(np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        out.append(x.astype(dtype))
    return out


def _reference(q, docs):
    return np.array([(q @ d.astype(np.float32).T).max(axis=1).sum() if len(d) else 0.0 for d in docs], dtype=np.float32)


@pytest.mark.parametrize("block_tokens", [None, 1, 7, 50, 10_000])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_list_equals_packed_and_reference(block_tokens, dtype) -> None:
    rng = np.random.default_rng(0)
    lengths = [0, 5, 0, 0, 120, 1, 33, 0, 64, 2, 0]
    docs = _docs(rng, lengths, dtype=dtype)
    assert _as_list(docs) is not None  # the list path is taken
    q = _docs(rng, [9])[0]
    got = maxsim.score(q, docs, block_tokens=block_tokens)
    packed = maxsim.score(q, maxsim.pack(docs), block_tokens=block_tokens)
    np.testing.assert_allclose(got, _reference(q, docs), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, packed, rtol=1e-5, atol=1e-5)
    qs = _docs(rng, [3, 9, 1])
    many = maxsim.score_many(qs, docs, block_tokens=block_tokens)
    np.testing.assert_allclose(many, np.stack([_reference(x, docs) for x in qs]), rtol=1e-5, atol=1e-5)
    idx, vals = maxsim.rank(q, tuple(docs), 4, block_tokens=block_tokens)
    assert idx.tolist() == maxsim.rank(q, maxsim.pack(docs), 4, block_tokens=block_tokens)[0].tolist()


def test_mixed_dtypes_and_fallbacks() -> None:
    rng = np.random.default_rng(1)
    docs = _docs(rng, [4, 6]) + _docs(rng, [5], dtype=np.float16)
    q = _docs(rng, [3])[0]
    np.testing.assert_allclose(maxsim.score(q, docs), _reference(q, docs), rtol=1e-5, atol=1e-5)
    strided = [np.asfortranarray(d) for d in _docs(rng, [4, 6])]
    assert _as_list(strided) is None  # not C-contiguous: packed as before
    np.testing.assert_allclose(maxsim.score(q, strided), _reference(q, strided), rtol=1e-5, atol=1e-5)
    assert _as_list([d.astype(np.float64) for d in docs]) is None
    assert _as_list([d.tolist() for d in docs]) is None


def test_list_errors_stay_precise() -> None:
    rng = np.random.default_rng(2)
    docs = _docs(rng, [4, 6, 3])
    q = _docs(rng, [3])[0]
    bad = [d.copy() for d in docs]
    bad[1][2, 5] = np.nan
    with pytest.raises(ShapeError, match="document 1 contains NaN"):
        maxsim.score(q, bad)
    bad[1][2, 5] = np.inf
    with pytest.raises(ShapeError, match="document 1 contains NaN"):
        maxsim.rank_many([q, q], bad)
    with pytest.raises(ShapeError, match="dim"):
        maxsim.score(q, [docs[0], rng.standard_normal((3, 8)).astype(np.float32)])
    with pytest.raises(ShapeError, match="dim"):
        maxsim.score(q[:, :8], docs)
    with pytest.raises(ShapeError, match="no documents"):
        maxsim.score(q, [])


def test_buffer_reused_across_blocks() -> None:
    rng = np.random.default_rng(3)
    docs = _docs(rng, [10] * 50)
    dl = _as_list(docs)
    assert dl is not None
    first = dl.block(0, 40)
    again = dl.block(40, 80)
    assert np.shares_memory(first, again)  # one buffer, not a copy of everything
    np.testing.assert_array_equal(again, np.concatenate(docs[4:8]))
