"""lightcol.Index: recall against exhaustive MaxSim, file format errors, add/delete/subset, determinism."""

from __future__ import annotations

import dataclasses
import json
import os
import struct

import numpy as np
import pytest
from conftest import random_texts, unit_rows

from lightcol import (
    ArgumentError,
    DuplicateIdError,
    Index,
    IndexFormatError,
    IndexVersionError,
    MultiVectorCollection,
    ShapeError,
)
from lightcol.index import codec as _codec

KNOBS = {"nprobe": 4, "n_interact": 200, "n_rerank": 60}  # small, so candidate generation really prunes


@pytest.fixture(scope="module")
def corpus(model):
    docs = list(model.embed(random_texts(400, seed=3, max_words=40)))
    queries = list(model.query_embed(random_texts(20, seed=4, max_words=8)))
    return docs, queries


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    docs, _ = corpus
    path = tmp_path_factory.mktemp("ix") / "docs.lci"
    return Index.build(path, [f"d{i}" for i in range(len(docs))], iter(docs), nbits=4, model="tiny",
                       show_progress=False)


def _recall(index, docs, queries, **kw):
    col = MultiVectorCollection()
    col.add(index.ids, docs)
    hits = []
    for q in queries:
        got = {d for d, _ in index.search(q, 10, **kw)}
        want = {d for d, _ in col.search(q, 10)}
        hits.append(len(got & want) / 10)
    return float(np.mean(hits))


def test_build_records_metadata_and_shapes(built, corpus):
    docs, _ = corpus
    assert len(built) == 400
    assert built.n_tokens == sum(len(d) for d in docs)
    assert (built.dim, built.nbits, built.model) == (docs[0].shape[1], 4, "tiny")
    assert built.meta["format"] == "lightcol-index" and built.meta["n_docs"] == 400
    res = built.search(corpus[1][0], k=5)
    assert len(res) == 5 and all(isinstance(d, str) and isinstance(s, float) for d, s in res)
    assert [s for _, s in res] == sorted((s for _, s in res), reverse=True)


@pytest.mark.parametrize(("nbits", "floor"), [(1, 0.8), (2, 0.88), (4, 0.95)])  # measured 0.855 / 0.905 / 0.98
def test_recall_against_exhaustive(corpus, tmp_path, nbits, floor):
    docs, queries = corpus
    ix = Index.build(tmp_path / "i.lci", None, docs, nbits=nbits, show_progress=False)
    pruned = _recall(ix, docs, queries, **KNOBS)
    # with every document reranked, only the codec's error remains
    full = _recall(ix, docs, queries, n_rerank=400)
    assert floor <= pruned <= full + 0.02  # pruning loses (almost) nothing the codec keeps


def test_exact_rerank_with_full_side_file(corpus, tmp_path):
    docs, queries = corpus
    ix = Index.build(tmp_path / "i.lci", None, docs, nbits=1, keep_full=True, show_progress=False)
    assert os.path.isfile(str(tmp_path / "i.lci") + ".full")
    col = MultiVectorCollection(dtype="float16")  # the side file holds float16 vectors
    col.add(None, docs)
    for q in queries[:5]:
        got = ix.search(q, 5, exact=True, n_rerank=400)
        want = col.search(q, 5)
        assert {d for d, _ in got} == {d for d, _ in want}
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-4)
    plain = Index.build(tmp_path / "p.lci", None, docs[:10], nbits=1, show_progress=False)
    with pytest.raises(ArgumentError, match="keep_full=True"):
        plain.search(queries[0], exact=True)


def test_open_is_same_index_and_memory_mapped(built, corpus):
    again = Index.open(built.path, verify=True)
    base = again._a["residuals"]  # a plain ndarray view whose base is the file's map, read-only
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap) and type(again._a["residuals"]) is np.ndarray
    assert not again._a["residuals"].flags.writeable
    q = corpus[1][1]
    assert again.search(q, 10, **KNOBS) == built.search(q, 10, **KNOBS)


def test_deterministic_for_a_fixed_seed(corpus, tmp_path):
    docs, _ = corpus
    a = Index.build(tmp_path / "a.lci", None, docs[:200], nbits=2, seed=7, show_progress=False)
    b = Index.build(tmp_path / "b.lci", None, docs[:200], nbits=2, seed=7, show_progress=False)
    with open(a.path, "rb") as fa, open(b.path, "rb") as fb:
        assert fa.read() == fb.read()


def test_streaming_build_trains_on_a_sample(corpus, tmp_path):
    docs, queries = corpus
    ix = Index.build(tmp_path / "s.lci", None, (d for d in docs), nbits=4, sample_tokens=500, show_progress=False)
    assert len(ix) == 400 and ix.n_tokens == sum(len(d) for d in docs)
    assert _recall(ix, docs, queries, n_rerank=400) >= 0.85


def test_subset_restricts_results(built, corpus):
    q = corpus[1][2]
    allowed = {f"d{i}" for i in range(0, 400, 7)}
    res = built.search(q, 10, subset=allowed, **KNOBS)
    assert len(res) == 10 and {d for d, _ in res} <= allowed
    tiny = built.search(q, 10, subset=["d3", "d5", "nope"])
    assert {d for d, _ in tiny} == {"d3", "d5"}
    assert built.search(q, 10, subset=[]) == []
    many = built.search_many(corpus[1][:3], 4, subset=["d1", "d2"])
    assert [len(r) for r in many] == [2, 2, 2]


def test_add_and_delete(corpus, tmp_path):
    docs, queries = corpus
    ix = Index.build(tmp_path / "i.lci", range(300), docs[:300], nbits=4, show_progress=False)
    ix.add([300 + i for i in range(100)], docs[300:])
    assert len(ix) == 400 and ix.ids[-1] == 399
    assert len(Index.open(ix.path)) == 400
    assert _recall(ix, docs, queries, n_rerank=400) >= 0.9
    with pytest.raises(DuplicateIdError):
        ix.add([5], docs[:1])
    ix.delete([0, 1, 2])
    assert len(ix) == 397 and 0 not in ix and 3 in ix
    assert all(d not in (0, 1, 2) for d, _ in ix.search(queries[0], 400, n_rerank=400))
    with pytest.raises(ArgumentError, match="not in the index"):
        ix.delete([12345])
    assert len(Index.open(ix.path)) == 397


def test_dim_mismatch_is_a_shape_error(built, tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(ShapeError, match="dim"):
        built.search(unit_rows(rng, 4, built.dim + 1))
    with pytest.raises(ShapeError, match="dim"):
        Index.build(tmp_path / "x.lci", None, [unit_rows(rng, 3, 8), unit_rows(rng, 3, 16)], show_progress=False)
    with pytest.raises(ShapeError, match="dim"):
        built.add(["new"], [unit_rows(rng, 3, built.dim + 2)])
    with pytest.raises(ShapeError, match="without vectors"):
        Index.build(tmp_path / "y.lci", None, [], show_progress=False)
    assert not os.path.exists(tmp_path / "x.lci")


def test_not_an_index_truncated_corrupted_and_newer_version(built, tmp_path):
    data = open(built.path, "rb").read()
    bad = tmp_path / "bad.lci"
    bad.write_bytes(b"hello world, not an index at all")
    with pytest.raises(IndexFormatError, match="not a lightcol index"):
        Index.open(bad)
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match="truncated"):
        Index.open(bad)
    flipped = bytearray(data)
    flipped[-30] ^= 0xFF  # inside the JSON footer
    bad.write_bytes(bytes(flipped))
    with pytest.raises(IndexFormatError, match="corrupted"):
        Index.open(bad)
    flipped = bytearray(data)
    flipped[100] ^= 0xFF  # inside the residuals: found by verify=True
    bad.write_bytes(bytes(flipped))
    Index.open(bad)
    with pytest.raises(IndexFormatError, match="checksum"):
        Index.open(bad, verify=True)
    newer = bytearray(data)
    newer[8:12] = struct.pack("<I", 99)
    bad.write_bytes(bytes(newer))
    with pytest.raises(IndexVersionError, match="version 99"):
        Index.open(bad)
    older = bytearray(data)
    older[8:12] = struct.pack("<I", 1)  # format 1: per-dimension buckets, no longer read
    bad.write_bytes(bytes(older))
    with pytest.raises(IndexVersionError, match="version 1.*rebuild"):
        Index.open(bad)
    with pytest.raises(FileNotFoundError):
        Index.open(tmp_path / "missing.lci")


def test_failed_build_leaves_the_previous_file_intact(built, corpus, tmp_path):
    docs, _ = corpus
    path = tmp_path / "keep.lci"
    Index.build(path, None, docs[:50], show_progress=False)
    before = path.read_bytes()

    def broken():
        yield from docs[:60]
        raise RuntimeError("embedding crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        Index.build(path, None, broken(), show_progress=False)
    assert path.read_bytes() == before
    # no temp file left behind (the lock file of a build over an index stays, as every writer's does)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.lci", "keep.lci.lock"]


def test_codec_round_trip_error_shrinks_with_bits():
    rng = np.random.default_rng(1)
    x = unit_rows(rng, 3000, 32)
    errs = []
    for nbits in (1, 2, 4, 8):
        c = _codec.train(x, nbits, 32)
        codes, packed = c.encode(x)
        assert packed.shape == (3000, 32 * nbits // 8) and codes.dtype == np.uint16
        errs.append(float(np.mean(np.sum(c.decode(codes, packed) * c.rotate(x), axis=1))))  # decoded: rotated
    assert errs == sorted(errs) and errs[-1] > 0.99
    with pytest.raises(ArgumentError):
        _codec.train(x, 3)


def test_ids_are_json_round_tripped(corpus, tmp_path):
    docs, _ = corpus
    ix = Index.build(tmp_path / "i.lci", ["a", 7, "b"], docs[:3], show_progress=False)
    assert Index.open(ix.path).ids == ["a", 7, "b"]
    meta = json.loads(json.dumps(ix.meta))
    assert meta["n_docs"] == 3
    with pytest.raises(ArgumentError):
        Index.build(tmp_path / "j.lci", [1.5], docs[:1], show_progress=False)


def test_codec_encodes_each_subvector_to_its_nearest_codeword():
    rng = np.random.default_rng(2)
    x = unit_rows(rng, 2000, 32)
    c = _codec.train(x, 2, 16)
    codes, packed = c.encode(x[:50])
    assert c.books.shape == (8, 256, 4)  # 32 dims * 2 bits = 8 bytes: 8 sub-spaces of 4 dims
    r = c.rotate(x[:50]) - c.centroids[codes]  # the codec works in its rotated space
    for j in range(8):
        d = ((r[:, None, 4 * j : 4 * j + 4] - c.books[j][None]) ** 2).sum(-1)
        np.testing.assert_array_equal(packed[:, j], d.argmin(1))
    want = c.centroids[codes] + c.books[np.arange(8)[None, :], packed].reshape(50, 32)
    np.testing.assert_allclose(c.decode(codes, packed), want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize(("dim", "nbits"), [(32, 1), (32, 2), (32, 4), (32, 8), (288, 8)])
def test_codec_decodes_the_centroid_plus_each_bytes_codeword(dim, nbits):
    """Decoding is the centroid plus the codeword of every residual byte, re-normalised, for every
    code size (288 dims at nbits=8: more than 65,536 table entries, the index arithmetic widens)."""
    rng = np.random.default_rng(4)
    m = dim * nbits // 8
    books = rng.standard_normal((m, 256, dim // m)).astype(np.float32)
    c = _codec.Codec(unit_rows(rng, 40, dim), books, nbits)
    codes = rng.integers(0, 40, 500).astype(np.uint16)
    packed = rng.integers(0, 256, (500, m)).astype(np.uint8)
    want = c.centroids[codes] + books[np.arange(m)[None, :], packed].reshape(500, dim)
    np.testing.assert_allclose(c.decode(codes, packed), want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-6)


def test_codec_rotation_is_orthogonal_and_keeps_scores():
    """The codec's rotation is orthogonal: rotated queries and documents score as the originals do, and
    every sub-space gets axes of similar variance (the greedy deal), not the top axes in one."""
    rng = np.random.default_rng(3)
    x = unit_rows(rng, 4000, 32) * np.linspace(3, 0.1, 32)[None, :].astype(np.float32)  # very unequal axes
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    c = _codec.train(x, 2, 16)
    r = c.rotation
    np.testing.assert_allclose(r.T @ r, np.eye(32), atol=1e-5)
    q = unit_rows(rng, 5, 32)
    np.testing.assert_allclose(c.rotate(q) @ c.rotate(x[:100]).T, q @ x[:100].T, atol=1e-5)
    res = c.rotate(x) - c.centroids[c.encode(x)[0]]
    var = res.var(axis=0).reshape(8, 4)  # 8 sub-spaces of 4 dims
    log_prod = np.log(var).sum(axis=1)
    assert log_prod.max() - log_prod.min() < 0.35 * (np.log(var).max() - np.log(var).min()) * 4


def test_many_centroids_are_searched_by_group():
    """From GROUPED_FROM centroids on, assignment searches each vector's best groups: nearly always the
    exact nearest centroid, never one far off."""
    from lightcol import _kmeans

    rng = np.random.default_rng(4)
    topics = unit_rows(rng, 64, 16)  # clustered, as token vectors are

    def near(n: int) -> np.ndarray:
        v = topics[rng.integers(0, 64, n)] + 0.3 * unit_rows(rng, n, 16)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    c, x = near(_kmeans.GROUPED_FROM), near(3000)
    got = _kmeans.assign(x, c)
    exact = np.argmax(x @ c.T, axis=1)
    assert (got == exact).mean() > 0.9
    lost = np.sum(x * c[exact], axis=1) - np.sum(x * c[got], axis=1)
    assert lost.min() >= 0 and lost.max() < 0.1
    g = _kmeans.group(c)
    assert sorted(g.members.tolist()) == list(range(c.shape[0])) and g.offsets[-1] == c.shape[0]
    np.testing.assert_array_equal(_kmeans.assign(x, c, g), got)


def test_integer_ids_stored_as_an_array_other_ids_as_json(corpus, tmp_path):
    """Integer ids open as a memory-mapped int64 array (cheap at 10M documents); str/mixed ids as JSON."""
    from lightcol.index import storage as _storage

    docs, queries = corpus
    small = docs[:50]
    ints = Index.build(tmp_path / "i.lci", [10 * i for i in range(50)], iter(small), nbits=2, show_progress=False)
    strs = Index.build(tmp_path / "s.lci", [f"d{i}" for i in range(50)], iter(small), nbits=2, show_progress=False)
    mixed = Index.build(tmp_path / "m.lci", [i if i % 2 else f"d{i}" for i in range(50)], iter(small), nbits=2,
                        show_progress=False)
    big = Index.build(tmp_path / "b.lci", [2**70 + i for i in range(50)], iter(small), nbits=2, show_progress=False)
    _, arrays = _storage.open_arrays(ints.path)
    assert arrays["ids"].dtype == np.int64 and arrays["ids"].tolist() == [10 * i for i in range(50)]
    for ix in (strs, mixed, big):
        assert _storage.open_arrays(ix.path)[1]["ids"].dtype == np.uint8  # JSON
    assert ints.ids == [10 * i for i in range(50)] and big.ids == [2**70 + i for i in range(50)]
    hits = ints.search(queries[0], k=5)
    assert [type(d) for d, _ in hits] == [int] * 5
    assert [d // 10 for d, _ in hits] == [int(d[1:]) for d, _ in strs.search(queries[0], k=5)]
    assert 490 in ints and 491 not in ints and "d3" not in ints
    assert [d for d, _ in ints.search(queries[0], k=3, subset=[0, 10, 20])] == sorted(
        [0, 10, 20], key=lambda d: -dict(ints.search(queries[0], k=50))[d])
    ints.add([7, 8], iter(docs[50:52]))
    ints.delete([0])
    assert len(ints) == 51 and ints.ids[-2:] == [7, 8] and 0 not in ints
    assert Index.open(ints.path).ids == ints.ids
    ints.add(["x"], iter(docs[52:53]))  # a str id among ints: its segment holds JSON ids
    assert ints.ids[-1] == "x" and Index.open(ints.path).ids == ints.ids
    ints.compact()  # one file again: the ids are JSON
    assert _storage.open_arrays(ints.path)[1]["ids"].dtype == np.uint8 and ints.ids[-1] == "x"
    assert Index.open(ints.path).ids == ints.ids


def test_format_2_and_3_files_without_rotation_still_open(corpus, tmp_path, monkeypatch):
    """Format 4 added the rotation; older files (none stored) open as unrotated and search as they did."""
    docs, queries = corpus
    train = _codec.train
    monkeypatch.setattr(_codec, "_balanced_rotation", lambda r, m: np.eye(r.shape[1], dtype=np.float32))
    monkeypatch.setattr(_codec, "train", lambda *a, **k: dataclasses.replace(train(*a, **k), rotation=None))
    ix = Index.build(tmp_path / "v4.lci", [f"d{i}" for i in range(len(docs))], iter(docs), nbits=4, show_progress=False)
    assert ix._codec.rotation is None and "rotation" not in ix._a  # noqa: SLF001
    want = [ix.search(q, 10, **KNOBS) for q in queries]
    data = bytearray(open(ix.path, "rb").read())
    assert struct.unpack("<I", bytes(data[8:12]))[0] == 4
    for version in (3, 2):  # format 2 = format 3 with JSON ids: what this file has (str ids)
        data[8:12] = struct.pack("<I", version)
        old = tmp_path / f"v{version}.lci"
        old.write_bytes(bytes(data))
        got = Index.open(old)
        assert got.ids == ix.ids and [got.search(q, 10, **KNOBS) for q in queries] == want


def test_default_budget_scales_with_the_index(built, corpus, monkeypatch):
    """Small indexes decode a tenth of their documents (at least 64), large ones at most 512."""
    from lightcol.index.index import default_budget

    assert default_budget(100) == (256, 64)
    assert default_budget(1_460) == (584, 146)
    assert default_budget(5_120) == (2048, 512)
    assert default_budget(10_000_000) == (2048, 512)
    assert default_budget(1_460, nbits=4) == (584, 146)  # small indexes: the same tenth at every nbits
    assert default_budget(10_000_000, nbits=4) == (4096, 1024)
    assert default_budget(10_000_000, nbits=1) == (2048, 512)
    decoded: list[int] = []
    real = Index._score
    monkeypatch.setattr(Index, "_score", lambda self, q, docs, exact: decoded.append(len(docs)) or real(self, q, docs, exact))
    _, queries = corpus
    built.search(queries[0], k=10)  # 400 documents: 64 reranked
    built.search(queries[0], k=10, n_rerank=200)  # explicit knobs win
    built.search(queries[0], k=100)  # never fewer than k
    assert decoded == [64, 200, 100]


def test_default_nprobe_follows_the_number_of_centroids(built, corpus, monkeypatch):
    """8 centroids probed per query token up to 16,384 centroids, then one per 2,048; search uses it."""
    from lightcol.index.index import default_nprobe

    assert [default_nprobe(k) for k in (64, 4_096, 16_384, 32_768, 65_536)] == [8, 8, 8, 16, 32]
    probed: list[int] = []
    real = Index._candidates
    monkeypatch.setattr(Index, "_candidates", lambda self, q, allowed, nprobe, *a: probed.append(nprobe)
                        or real(self, q, allowed, nprobe, *a))
    _, queries = corpus
    built.search(queries[0], k=10, n_rerank=12)
    built.search(queries[0], k=10, n_rerank=12, nprobe=3)  # an explicit nprobe wins
    assert probed == [default_nprobe(built._a["centroids"].shape[0]), 3]


def test_probe_imputes_the_impute_rank_score_for_unprobed_tokens():
    """A document missing from a query token's probed lists counts that token's IMPUTE_RANK-th best
    centroid score (0-based), not the best unprobed one."""
    from lightcol.index import candidates as cand

    k = 200
    rng = np.random.default_rng(5)
    s = rng.permutation(k * 2).reshape(2, k).astype(np.float32) / (2 * k)  # distinct scores
    best = np.argmax(s, axis=1)
    codes = np.array([best[1], best[0]])  # document 0 holds token 1's best centroid, document 1 token 0's
    offsets = np.array([0, 1, 2])
    ivf_docs, ivf_offsets = cand.build_ivf(codes, offsets, k)
    st = np.vstack([s.T, np.full((1, 2), -np.inf, dtype=np.float32)])  # centroid_scores' layout
    docs, approx = cand.probe(st, ivf_docs, ivf_offsets, 2, nprobe=1)
    ranked = np.sort(s, axis=1)[:, ::-1]
    r = cand.IMPUTE_RANK
    np.testing.assert_allclose(approx, [ranked[0, r] + ranked[1, 0], ranked[0, 0] + ranked[1, r]], rtol=1e-6)
    assert docs.tolist() == [0, 1]


def test_build_with_grouped_centroids_encodes_as_add_would(corpus, tmp_path):
    """With GROUPED_FROM centroids or more the build assigns through centroid groups; the stored codes
    are what the opened index's codec gives the same vectors (so ``add`` encodes alike)."""
    from lightcol import _kmeans

    docs, queries = corpus
    ix = Index.build(tmp_path / "g.lci", None, iter(docs), nbits=2, n_centroids=_kmeans.GROUPED_FROM, show_progress=False)
    codec = Index.open(ix.path)._codec  # noqa: SLF001
    assert codec.centroids.shape[0] == _kmeans.GROUPED_FROM and codec.groups is not None
    x = np.concatenate(docs[:50])
    codes, packed = codec.encode(x)
    np.testing.assert_array_equal(codes, ix._a["codes"][: x.shape[0]])  # noqa: SLF001
    np.testing.assert_array_equal(packed, ix._a["residuals"][: x.shape[0]])  # noqa: SLF001
    assert _recall(ix, docs, queries, n_rerank=400) >= 0.85


def test_top_centroids_from_the_best_blocks_equal_a_full_sort():
    """Stage 1 takes each query token's best centroids from the blocks with the best maxima (and the
    centroids past the last whole block): the same ids and scores as sorting all of them."""
    from lightcol.index import candidates as cand

    rng = np.random.default_rng(3)
    for k, n in [(32_768, 65), (4_096, 65), (5_003, 65), (1_000, 9), (64, 64)]:
        s = rng.standard_normal((k, 3)).astype(np.float32)
        ids, vals = cand._top(s, n)
        want = np.argsort(-s.T, axis=1, kind="stable")[:, :n]
        assert ids.tolist() == want.tolist()
        np.testing.assert_array_equal(vals, np.take_along_axis(s.T, want, axis=1))


def test_search_is_the_same_in_any_step_size(built, corpus, monkeypatch):
    """Candidates are interacted, decoded and scored a few thousand tokens at a time; the steps are
    whole documents, so any step size gives the same ranking and scores."""
    from lightcol.index import candidates as cand
    from lightcol.index import index as index_module

    _, queries = corpus
    want = [built.search(q, 10, **KNOBS) for q in queries[:4]]
    monkeypatch.setattr(index_module, "_SCORE_TOKENS", 7)  # about one document per step
    monkeypatch.setattr(cand, "_STEP_TOKENS", 3)
    got = [built.search(q, 10, **KNOBS) for q in queries[:4]]
    assert [[d for d, _ in r] for r in got] == [[d for d, _ in r] for r in want]
    np.testing.assert_allclose([[s for _, s in r] for r in got], [[s for _, s in r] for r in want], rtol=1e-6)


def test_build_with_the_model_records_its_rules(model, corpus, tmp_path):
    """``model=`` the embedding model records its name, dim and encoding rules; a name records the name."""
    docs, _ = corpus
    ix = Index.build(tmp_path / "m.lci", None, docs[:30], model=model, show_progress=False)
    assert ix.model == model.model_name and ix.rules == dataclasses.asdict(model.spec.rules)
    assert Index.open(ix.path).rules == ix.rules
    assert Index.build(tmp_path / "n.lci", None, docs[:30], model="name", show_progress=False).rules is None
    with pytest.raises(ShapeError, match="dim"):
        Index.build(tmp_path / "d.lci", None, [unit_rows(np.random.default_rng(0), 5, model.dim + 1)], model=model,
                    show_progress=False)
    with pytest.raises(ArgumentError, match="model must be a model name"):
        Index.build(tmp_path / "x.lci", None, docs[:30], model=3, show_progress=False)


def test_inverted_lists_built_in_steps_equal_one_sort(monkeypatch):
    """build_ivf works in steps of whole documents and places pairs by a counting sort: the same lists
    as sorting every distinct (centroid, document) pair at once, for any step size (empty documents too)."""
    from lightcol.index import candidates as cand

    rng = np.random.default_rng(11)
    lens = rng.integers(0, 40, size=300)
    lens[[0, 17, 299]] = 0
    offsets = np.concatenate([[0], np.cumsum(lens)])
    codes = rng.integers(0, 50, size=int(offsets[-1])).astype(np.uint16)
    doc_of = np.repeat(np.arange(lens.shape[0]), lens)
    pairs = sorted({(int(c), int(d)) for c, d in zip(codes.tolist(), doc_of.tolist(), strict=True)})
    want_docs = [d for _, d in pairs]
    want_offsets = np.searchsorted([c for c, _ in pairs], np.arange(51))
    for step in (1, 7, 100, 1 << 22):
        monkeypatch.setattr(cand, "_IVF_STEP", step)
        docs, ivf_offsets = cand.build_ivf(codes, offsets, 50)
        assert docs.dtype == np.int32 and ivf_offsets.tolist() == want_offsets.tolist()
        assert docs.tolist() == want_docs
    docs, ivf_offsets = cand.build_ivf(np.empty(0, np.uint16), np.zeros(1, np.int64), 4)
    assert docs.shape == (0,) and ivf_offsets.tolist() == [0, 0, 0, 0, 0]
