"""Damaged stored vectors (NaN, +inf, -inf) rank their documents last, never first, and are named.

Vectors are validated on the way in, so the damage is made on disk, under a memory map.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import lightcol
from lightcol import MultiVectorCollection, maxsim


from conftest import unit_rows

DIM = 8


def _damage(path: Path, clean: np.ndarray, value: float, dtype: type = np.float32) -> None:
    """Overwrite component 0 of the stored vector ``clean`` (found by its bytes) in the file ``path``."""
    raw = bytearray(path.read_bytes())
    pos = raw.find(clean.astype(dtype).tobytes())
    assert pos >= 0 and raw.find(clean.astype(dtype).tobytes(), pos + 1) < 0
    raw[pos : pos + np.dtype(dtype).itemsize] = np.array([value], dtype=dtype).tobytes()
    path.write_bytes(bytes(raw))


def _damage_in_zip(path: Path, clean: np.ndarray, value: float) -> None:
    """The same damage written with a valid CRC (a file another tool wrote), readable without a map."""
    with np.load(path) as z:
        arrays = {name: z[name] for name in z.files}
    v = arrays["vectors"]
    row = int(np.flatnonzero((v == clean).all(axis=1))[0])
    v[row, 0] = value
    np.savez(path, **arrays)


def _collection(tmp_path: Path) -> tuple[Path, list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    docs = [unit_rows(rng, 3 + i, DIM) for i in range(5)]
    q = unit_rows(np.random.default_rng(1), 4, DIM)
    q[:, 0] = np.abs(q[:, 0]) + 0.1  # +inf in component 0 of a document vector scores +inf
    c = MultiVectorCollection()
    c.add(list("abcde"), docs)
    path = tmp_path / "c.npz"
    c.save(path)
    return path, docs, q


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("mmap", [True, False])
def test_collection_ranks_a_damaged_document_last_and_names_it(tmp_path: Path, value: float, mmap: bool) -> None:
    path, docs, q = _collection(tmp_path)
    clean = MultiVectorCollection.load(path).search(q, k=5)
    # +inf made 'e' rank first with score inf; -inf left it a finite score from its other vectors
    (_damage if mmap else _damage_in_zip)(path, docs[4][0], value)

    m = MultiVectorCollection.load(path, mmap=mmap)
    assert m.nonfinite_ids() == ["e"]
    with pytest.warns(lightcol.NonFiniteWarning, match=r"document id\(s\) \['e'\].*nonfinite_ids\(\)"):
        got = m.search(q, k=5)
    assert [i for i, _ in got] == [i for i, _ in clean if i != "e"] + ["e"]
    assert [s for _, s in got[:4]] == [s for i, s in clean if i != "e"]
    assert np.isnan(got[-1][1])
    with pytest.warns(lightcol.NonFiniteWarning):
        top = m.search(q, k=2)
    assert [i for i, _ in top] == [i for i, _ in clean if i != "e"][:2]
    with pytest.warns(lightcol.NonFiniteWarning):
        many = m.search_many([q, q[:2]], k=5)
    assert [i for i, _ in many[0]] == [i for i, _ in got] and many[1][-1][0] == "e"
    np.testing.assert_allclose([s for _, s in many[0]], [s for _, s in got], rtol=1e-6)
    with pytest.warns(lightcol.NonFiniteWarning):
        s = m.score(q)
    assert np.isnan(s[4]) and np.isfinite(s[:4]).all()


def test_clean_collection_does_not_warn(tmp_path: Path) -> None:
    path, _, q = _collection(tmp_path)
    m = MultiVectorCollection.load(path, mmap=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(m.search(q, k=5)) == 5
    assert m.nonfinite_ids() == []
    assert MultiVectorCollection().nonfinite_ids() == []


def test_float16_collection_damage_is_found(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    docs = [unit_rows(rng, 4, DIM).astype(np.float16) for _ in range(3)]
    c = MultiVectorCollection(dtype="float16")
    c.add(["x", "y", "z"], docs)
    path = tmp_path / "h.npz"
    c.save(path)
    _damage(path, docs[0][2], np.inf, np.float16)
    m = MultiVectorCollection.load(path, mmap=True)
    assert m.nonfinite_ids() == ["x"]
    assert maxsim.nonfinite_documents(m).tolist() == [0]
    with pytest.warns(lightcol.NonFiniteWarning, match=r"\['x'\]"):
        assert m.search(np.ones((1, DIM), np.float32), k=3)[-1][0] == "x"


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_top_k_ranks_plus_inf_last_and_rank_names_positions() -> None:
    idx, vals = maxsim.top_k(np.array([3.0, np.inf, 2.0, -np.inf, np.nan], dtype=np.float32), 5)
    assert idx.tolist() == [0, 2, 3, 1, 4]
    assert vals[:3].tolist() == [3.0, 2.0, -np.inf] and vals[3] == np.inf and np.isnan(vals[4])
    assert maxsim.top_k(np.array([np.inf, 1.0, np.inf]), 1)[0].tolist() == [1]
    # vectors huge enough to overflow the product: scored +inf, ranked last, named by position
    docs = [np.ones((2, DIM), np.float32), np.full((2, DIM), 1e38, np.float32), -np.ones((1, DIM), np.float32)]
    with pytest.warns(lightcol.NonFiniteWarning, match=r"position\(s\) \[1\]"):
        idx, vals = maxsim.rank(np.ones((1, DIM), np.float32), docs, k=3)
    assert idx.tolist() == [0, 2, 1] and vals[2] == np.inf
    with pytest.warns(lightcol.NonFiniteWarning, match=r"position\(s\) \[1\]"):
        idx, _ = maxsim.rank_many([np.ones((1, DIM), np.float32)] * 2, docs, k=1)
    assert idx.tolist() == [[0], [0]]


def test_index_ranks_a_damaged_full_precision_document_last(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    docs = [unit_rows(rng, 6, DIM) for _ in range(40)]
    path = tmp_path / "i.index"
    lightcol.Index.build(path, [f"p{i}" for i in range(40)], docs, nbits=2, n_centroids=8, keep_full=True,
                         show_progress=False)
    q = docs[7][:3].copy()  # p7 is the clear best match
    clean = lightcol.Index.open(path).search(q, k=40, exact=True)
    assert clean[0][0] == "p7"
    _damage(Path(str(path) + ".full"), docs[7][0], np.inf, np.float16)
    # the query's component 0 is moved to be positive: inf * positive = +inf
    q[:, 0] = np.abs(q[:, 0]) + 0.1
    idx = lightcol.Index.open(path)
    with pytest.warns(lightcol.NonFiniteWarning, match=r"\['p7'\].*Index.delete"):
        got = idx.search(q, k=40, exact=True)
    assert got[-1][0] == "p7" and not np.isfinite(got[-1][1])
    assert all(np.isfinite(s) for _, s in got[:-1])
