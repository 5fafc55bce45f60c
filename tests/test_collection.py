"""Tests of lightcol.collection.MultiVectorCollection: growth, search, atomic save/load."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import unit_rows

from lightcol import maxsim
from lightcol.collection import MultiVectorCollection
from lightcol.errors import ShapeError

DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    return unit_rows(rng, n, dim)


@pytest.fixture(scope="module")
def docs() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [unit(rng, int(n)) for n in rng.integers(1, 120, size=60)]


@pytest.fixture(scope="module")
def query() -> np.ndarray:
    return unit(np.random.default_rng(8), 16)


def make(docs: list[np.ndarray], dtype: str = "float32") -> MultiVectorCollection:
    c = MultiVectorCollection(dtype=dtype)
    c.add([f"doc-{i}" for i in range(len(docs))], docs)
    return c


def test_add_and_access(docs):
    c = MultiVectorCollection()
    assert len(c) == 0 and c.dim is None and c.ids == []
    c.add(["a", 7], (d for d in docs[:2]))  # a generator, as model.embed() yields
    c.add(None, docs[2:4])  # automatic ids continue from len(c)
    assert len(c) == 4 and c.dim == DIM and c.ids == ["a", 7, 2, 3]
    assert c.n_tokens == sum(len(d) for d in docs[:4])
    for i in range(4):
        np.testing.assert_array_equal(c.get(i), docs[i])
        np.testing.assert_array_equal(c[i], docs[i])
    np.testing.assert_array_equal(c[-1], docs[3])
    assert [len(v) for v in c] == [len(d) for d in docs[:4]]
    with pytest.raises(IndexError):
        c[4]
    with pytest.raises(ValueError):
        c.get(0)[0, 0] = 1.0  # read-only view
    c.add([np.int64(9)], [np.zeros((0, DIM), np.float32)])  # numpy ints become int, empty docs are fine
    assert c.ids[-1] == 9 and type(c.ids[-1]) is int and c[-1].shape == (0, DIM)


def test_dim_fixed_and_errors_leave_collection_unchanged(docs):
    c = MultiVectorCollection(dim=DIM)
    c.add(["x"], docs[:1])
    before = (len(c), c.n_tokens, c.ids)
    rng = np.random.default_rng(0)
    bad_nan = unit(rng, 3)
    bad_nan[0, 0] = np.nan
    cases = [
        (["y", "z"], [docs[1], unit(rng, 2, DIM + 1)], ShapeError, "embedding 1 has dim 33"),
        (["y"], [docs[1][0]], ShapeError, "2-D"),
        (["y", "z"], [docs[1], bad_nan], ShapeError, "NaN"),
        (["y", "z", "w"], docs[1:3], ShapeError, "more ids than embeddings"),
        (["y"], docs[1:3], ShapeError, "more embeddings than ids"),
        (["y", 1.5], docs[1:3], TypeError, "str or int"),
        ("abc", docs[1:4], TypeError, "iterable of ids"),
        (["y"], [np.ones((2, DIM), dtype=np.int32)], ShapeError, "dtype int32"),
    ]
    for ids, embs, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            c.add(ids, embs)
        assert (len(c), c.n_tokens, c.ids) == before
    with pytest.raises(ShapeError, match="float16 overflow"):
        MultiVectorCollection(dtype="float16").add([0], [docs[0] * 1e6])
    with pytest.raises(ShapeError):
        MultiVectorCollection(dtype="int8")

    def failing():
        yield docs[1]
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        c.add(["y", "z"], failing())
    assert (len(c), c.n_tokens, c.ids) == before
    # a failed first add does not fix the dim
    e = MultiVectorCollection()
    with pytest.raises(ShapeError):
        e.add([1, 2], [unit(rng, 2, 8), unit(rng, 2, 9)])
    assert e.dim is None and len(e) == 0
    e.add([1], [unit(rng, 2, 9)])
    assert e.dim == 9


def test_growth_is_amortised():
    rng = np.random.default_rng(1)
    c = MultiVectorCollection(dim=8)
    buffers = set()
    for i in range(2000):
        c.add([i], [rng.standard_normal((5, 8), dtype=np.float32)])
        buffers.add(id(c._vectors))
    assert len(c) == 2000 and c.n_tokens == 10_000
    assert len(buffers) <= 6  # capacity doubles: O(log n) reallocations
    assert c._vectors.shape[0] < 2 * 10_000 + 1024


def test_search_matches_maxsim(docs, query):
    c = make(docs)
    ref_idx, ref_scores = maxsim.rank(query, docs, 5)
    hits = c.search(query, k=5)
    assert [h[0] for h in hits] == [f"doc-{i}" for i in ref_idx]
    np.testing.assert_allclose([h[1] for h in hits], ref_scores, rtol=1e-6)
    assert all(isinstance(h[1], float) for h in hits)
    assert len(c.search(query, k=1000)) == len(docs)
    np.testing.assert_allclose(c.score(query), maxsim.score(query, docs), rtol=1e-6)
    # the collection itself is accepted by maxsim functions
    np.testing.assert_allclose(maxsim.score(query, c), maxsim.score(query, docs), rtol=1e-6)
    queries = [query, query[:3], query[5:]]
    many = c.search_many(queries, k=4)
    assert len(many) == 3
    for m, q in zip(many, queries, strict=True):
        single = c.search(q, k=4)
        assert [h[0] for h in m] == [h[0] for h in single]
        np.testing.assert_allclose([h[1] for h in m], [h[1] for h in single], rtol=1e-6)


def test_search_empty_collection(query):
    c = MultiVectorCollection()
    assert c.search(query, 3) == []
    assert c.search_many([query, query], 3) == [[], []]


def test_float16_collection(docs, query):
    c32, c16 = make(docs), make(docs, "float16")
    assert c16.dtype == np.float16 and c16.nbytes * 2 == c32.nbytes
    top32 = [h[0] for h in c32.search(query, 10)]
    top16 = [h[0] for h in c16.search(query, 10)]
    assert len(set(top32) & set(top16)) >= 8
    np.testing.assert_allclose(c16.score(query), c32.score(query), rtol=1e-2)


def test_search_after_more_adds(docs, query):
    c = MultiVectorCollection()
    c.add(range(30), docs[:30])
    c.search(query, 3)  # caches a packed view
    c.add(range(30, 60), docs[30:])
    np.testing.assert_allclose(c.score(query), maxsim.score(query, docs), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_roundtrip(tmp_path, docs, query, dtype, mmap):
    c = MultiVectorCollection(dtype=dtype)
    ids = ["ünïcode", 3, "x" * 100] + list(range(100, 100 + len(docs) - 3))
    c.add(ids, docs)
    path = tmp_path / "coll.npz"
    c.save(path)
    assert os.listdir(tmp_path) == ["coll.npz"]
    d = MultiVectorCollection.load(path, mmap=mmap)
    assert d.ids == ids and d.dim == DIM and d.dtype == np.dtype(dtype) and len(d) == len(c)
    for i in range(len(c)):
        np.testing.assert_array_equal(d[i], c[i])
    assert d.search(query, 7) == c.search(query, 7)
    if mmap:
        assert not d._vectors.flags.owndata and not d._vectors.flags.writeable
    # a loaded (even memory-mapped) collection can grow; the file stays as it was
    d.add(["new"], [docs[0]])
    assert len(d) == len(c) + 1 and d.ids[-1] == "new"
    again = MultiVectorCollection.load(path)
    assert len(again) == len(c)


def test_save_load_empty(tmp_path):
    path = tmp_path / "empty.npz"
    MultiVectorCollection(dtype="float16").save(path)
    e = MultiVectorCollection.load(path, mmap=True)
    assert len(e) == 0 and e.dim is None and e.dtype == np.float16
    MultiVectorCollection(dim=4).save(path)
    e = MultiVectorCollection.load(path, mmap=True)
    assert len(e) == 0 and e.dim == 4
    e.add(["a"], [np.ones((2, 4), np.float32)])
    assert e.search(np.ones((1, 4), np.float32), 1) == [("a", 4.0)]


def test_failed_save_keeps_old_file(tmp_path, docs, monkeypatch):
    path = tmp_path / "coll.npz"
    make(docs[:5]).save(path)
    old = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        make(docs).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["coll.npz"]  # the temp file was removed
    assert len(MultiVectorCollection.load(path)) == 5

    def broken_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="I/O error"):
        make(docs).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["coll.npz"]


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.arange(3))
    with pytest.raises(ShapeError, match="not a lightcol collection"):
        MultiVectorCollection.load(path)
