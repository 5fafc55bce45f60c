"""Token pooling (vs SciPy's Ward clustering) and MUVERA (vs FastEmbed's encodings)."""

from __future__ import annotations

import os
import subprocess
import textwrap

import numpy as np
import pytest

import lightcol
from lightcol import Muvera, MultiVectorCollection, maxsim, pool_tokens, pool_tokens_batch
from lightcol.errors import ArgumentError, ShapeError
from lightcol.muvera import FASTEMBED_DEFAULTS, RECOMMENDED, WEAVIATE_DEFAULTS
from lightcol.pooling import _ward_labels

from conftest import random_texts, unit_rows

hierarchy = pytest.importorskip("scipy.cluster.hierarchy")
from scipy.spatial.distance import squareform  # noqa: E402


def _scipy_clusters(rows: np.ndarray, factor: int) -> np.ndarray:
    """PyLate's recipe: Ward on the condensed 1 - cos matrix, cut with maxclust."""
    x = rows.astype(np.float64) / np.linalg.norm(rows, axis=1, keepdims=True)
    d = 1.0 - x @ x.T
    np.fill_diagonal(d, 0.0)
    d = np.maximum((d + d.T) / 2, 0.0)
    z = hierarchy.linkage(squareform(d, checks=False), method="ward")
    return hierarchy.fcluster(z, t=max(len(rows) // factor, 1), criterion="maxclust")


def _partition(labels) -> list[tuple[int, ...]]:
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(np.asarray(labels).tolist()):
        groups.setdefault(lab, []).append(i)
    return sorted(tuple(g) for g in groups.values())


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_ward_clusters_equal_scipy(factor: int) -> None:
    rng = np.random.default_rng(factor)
    docs = [unit_rows(rng, int(rng.integers(2, 181)), 16) for _ in range(40)]
    for doc, labels in zip(docs, _ward_labels(docs, factor), strict=True):
        assert _partition(labels) == _partition(_scipy_clusters(doc, factor))


@pytest.mark.parametrize("protected", [0, 1, 3])
def test_pool_tokens_is_the_mean_of_scipy_clusters(protected: int) -> None:
    rng = np.random.default_rng(protected)
    doc = unit_rows(rng, 57, 16)
    got = pool_tokens(doc, 2, protected_tokens=protected)
    rest = doc[protected:]
    parts = sorted(_partition(_scipy_clusters(rest, 2)), key=min)
    expected = np.concatenate([doc[:protected], np.stack([rest[list(p)].mean(axis=0) for p in parts])])
    assert got.shape == (protected + (57 - protected) // 2, 16) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_pool_edge_cases_and_errors() -> None:
    rng = np.random.default_rng(0)
    doc = unit_rows(rng, 9, 8)
    assert pool_tokens(doc, 1) is doc or np.array_equal(pool_tokens(doc, 1), doc)
    one = unit_rows(rng, 1, 8)
    np.testing.assert_array_equal(pool_tokens(one, 4), one)  # a one-token document pools to itself
    two = unit_rows(rng, 2, 8)
    np.testing.assert_array_equal(pool_tokens(two, 2), two)  # [CLS] + one token: nothing to merge
    assert pool_tokens(unit_rows(rng, 3, 8), 5).shape == (2, 8)  # at least one cluster
    half = pool_tokens(doc.astype(np.float16), 2)
    assert half.dtype == np.float16 and half.shape == (5, 8)
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ArgumentError, match="pool_factor"):
            pool_tokens(doc, bad)
    with pytest.raises(ArgumentError, match="protected_tokens"):
        pool_tokens(doc, 2, protected_tokens=-1)
    with pytest.raises(ShapeError):
        pool_tokens(doc[0], 2)
    batch = pool_tokens_batch([doc, one, two], 3)
    assert [b.shape[0] for b in batch] == [1 + 8 // 3, 1, 2]


def test_embed_with_pooling_everywhere(model) -> None:
    texts = random_texts(40, seed=3)
    plain = list(model.embed(texts))
    pooled = list(model.embed(texts, pool_factor=2))
    for a, b in zip(plain, pooled, strict=True):
        np.testing.assert_allclose(b, pool_tokens(a, 2), atol=1e-6)
        assert b.shape[0] == 1 + (a.shape[0] - 1) // 2 or a.shape[0] <= 2
    half = list(model.embed(texts, pool_factor=2, dtype="float16", protected_tokens=0))
    assert all(h.dtype == np.float16 for h in half)
    par = list(model.embed(texts * 8, pool_factor=2, batch_size=16, parallel=2))
    for a, b in zip(pooled * 8, par, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    coll = MultiVectorCollection()
    coll.add(None, pooled)
    q = next(model.query_embed("retrieval of documents"))
    assert coll.search(q, k=3) == [(i, s) for i, s in zip(*[x.tolist() for x in maxsim.rank(q, pooled, 3)], strict=True)]
    with pytest.raises(ArgumentError, match="pool_factor"):
        model.embed(texts, pool_factor=0)  # checked at the call


# ------------------------------------------------------------------------------------------- MUVERA
FASTEMBED_PYTHON = os.environ.get("LIGHTCOL_FASTEMBED_PYTHON")

_FASTEMBED_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from fastembed.postprocess import Muvera
    z = np.load(sys.argv[1]); out = {}
    for dim, k, p, r, seed in z["configs"].tolist():
        m = Muvera(dim, k_sim=k, dim_proj=p, r_reps=r, random_seed=seed)
        key = f"{k}_{p}_{r}_{seed}"
        out["d" + key] = np.stack([m.process_document(z[f"v{i}"]) for i in range(int(z["n"]))])
        out["q" + key] = np.stack([m.process_query(z[f"v{i}"]) for i in range(int(z["n"]))])
        out["s" + key] = np.array(m.embedding_size)
    np.savez(sys.argv[2], **out)
    """
)


@pytest.mark.skipif(not FASTEMBED_PYTHON, reason="no FastEmbed environment: run tools/setup_dev.sh")
def test_muvera_equals_fastembed(tmp_path) -> None:
    rng = np.random.default_rng(7)
    vecs = [unit_rows(rng, int(n), 16) for n in [1, 2, 5, 31, 32, 33, 100, 180]]
    configs = [[16, 5, 16, 20, 42], [16, 4, 16, 10, 42], [16, 3, 8, 12, 7], [16, 2, 4, 40, 123]]
    np.savez(tmp_path / "in.npz", configs=np.array(configs), n=len(vecs), **{f"v{i}": v for i, v in enumerate(vecs)})
    subprocess.run([FASTEMBED_PYTHON, "-c", _FASTEMBED_SCRIPT, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                   check=True, timeout=300)
    ref = np.load(tmp_path / "out.npz")
    for _, k, p, r, seed in configs:
        m = Muvera(16, k_sim=k, dim_proj=p, r_reps=r, random_seed=seed)
        key = f"{k}_{p}_{r}_{seed}"
        assert m.embedding_size == int(ref["s" + key]) == r * 2**k * p
        docs, queries = m.process_documents(vecs), m.process_queries(vecs)
        assert docs.shape == queries.shape == (len(vecs), m.embedding_size) and docs.dtype == np.float32
        assert np.abs(docs - ref["d" + key]).max() <= 1e-5
        assert np.abs(queries - ref["q" + key]).max() <= 1e-5
        np.testing.assert_allclose(m.process_document(vecs[3]), docs[3], rtol=0, atol=1e-6)
        np.testing.assert_allclose(m.process_query(vecs[3]), queries[3], rtol=0, atol=1e-6)


def test_muvera_api_and_errors(model) -> None:
    m = Muvera.from_multivector_model(model, **RECOMMENDED)
    assert (m.dim, m.k_sim, m.dim_proj, m.r_reps) == (16, 4, 8, 80) and m.embedding_size == 10240
    assert Muvera(128, **FASTEMBED_DEFAULTS).embedding_size == 10240
    assert Muvera(128, **WEAVIATE_DEFAULTS).embedding_size == 2560
    docs = list(model.embed(random_texts(12, seed=5)))
    q = next(model.query_embed("late interaction retrieval"))
    fd, fq = m.process_documents(docs), m.process_query(q)
    assert fd.shape == (12, 10240) and fq.shape == (10240,)
    # the FDE dot product tracks MaxSim: the best MaxSim document ranks in the FDE's top half
    best = int(np.argmax(maxsim.score(q, docs)))
    assert best in np.argsort(-(fd @ fq))[:6]
    np.testing.assert_array_equal(m.process_documents(docs), fd)  # deterministic
    with pytest.raises(ShapeError, match="dim=16"):
        m.process_document(np.ones((3, 8), np.float32))
    with pytest.raises(ShapeError, match="empty"):
        m.process_document(np.ones((0, 16), np.float32))
    with pytest.raises(ArgumentError, match="dim_proj"):
        Muvera(8, dim_proj=16)
    with pytest.raises(ArgumentError, match="k_sim"):
        Muvera(8, k_sim=0)
    assert isinstance(m, lightcol.Muvera)


def test_fitted_muvera_is_the_documented_encoding(model) -> None:
    """With one repetition and a full-rank projection, fitted FDEs are exactly: sum over buckets of
    <query vectors summed in the bucket, the document's unit-length bucket mean (or its vector most
    similar to the centroid when the bucket is empty)>."""
    docs = list(model.embed(random_texts(40, seed=7)))
    queries = list(model.query_embed(random_texts(5, seed=8)))
    m = Muvera.fit(docs, k_sim=2, dim_proj=16, r_reps=1, random_seed=3)
    assert m.fitted and m.embedding_size == 4 * 16
    c = m._centroids.T  # (buckets, dim)

    def reference(q: np.ndarray, d: np.ndarray) -> float:
        total = 0.0
        qb, db = np.argmax(q @ c.T, 1), np.argmax(d @ c.T, 1)
        for b in range(4):
            members = d[db == b]
            rep = members.mean(0) if len(members) else d[np.argmax(d @ c[b])]
            rep = rep / np.linalg.norm(rep)
            total += float(q[qb == b].sum(0) @ rep)
        return total

    fd, fq = m.process_documents(docs), m.process_queries(queries)
    expected = np.array([[reference(q, d) for d in docs] for q in queries])
    np.testing.assert_allclose(fq @ fd.T, expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(m.process_document(docs[3]), fd[3], rtol=0, atol=1e-6)  # one = batch


def test_fitted_muvera_tracks_maxsim_better_than_simhash(model) -> None:
    docs = list(model.embed(random_texts(300, seed=9)))
    queries = list(model.query_embed(random_texts(30, seed=10)))
    exact = np.stack([maxsim.score(q, docs) for q in queries])
    top10 = np.argsort(-exact, axis=1)[:, :10]

    def recall(m: Muvera, n: int) -> float:
        order = np.argsort(-(m.process_queries(queries) @ m.process_documents(docs).T), axis=1)[:, :n]
        return float(np.mean([len(set(t) & set(o)) / 10 for t, o in zip(top10, order)]))

    fitted = Muvera.fit(docs, k_sim=4, dim_proj=8, r_reps=5, random_seed=0)
    simhash = Muvera(16, k_sim=4, dim_proj=8, r_reps=5, random_seed=0)  # same 640 dimensions
    assert recall(fitted, 30) > recall(simhash, 30) + 0.05


def test_fitted_muvera_save_load_and_errors(model, tmp_path) -> None:
    docs = list(model.embed(random_texts(30, seed=11)))
    m = Muvera.fit(docs, k_sim=3, dim_proj=4, r_reps=2, random_seed=5)
    again = Muvera.fit(docs, k_sim=3, dim_proj=4, r_reps=2, random_seed=5)
    np.testing.assert_array_equal(again.process_documents(docs), m.process_documents(docs))  # deterministic
    m.save(tmp_path / "m.npz")
    loaded = Muvera.load(tmp_path / "m.npz")
    assert loaded.fitted and repr(loaded) == repr(m)
    np.testing.assert_array_equal(loaded.process_documents(docs), m.process_documents(docs))
    plain = Muvera(16, **WEAVIATE_DEFAULTS)
    plain.save(tmp_path / "p.npz")
    np.testing.assert_array_equal(Muvera.load(tmp_path / "p.npz").process_documents(docs), plain.process_documents(docs))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(lightcol.IndexFormatError, match="not a Muvera file"):
        Muvera.load(tmp_path / "bad.npz")
    with pytest.raises(ArgumentError, match="at least 2\\*\\*k_sim = 64"):
        Muvera.fit(docs[:1], k_sim=6, dim_proj=4)
    with pytest.raises(ShapeError):
        Muvera.fit([np.ones(16, np.float32)])
    assert not list(tmp_path.glob("*.tmp-*"))


def test_fit_with_recommended_settings_works_for_any_dim(model, tmp_path) -> None:
    """RECOMMENDED_FIT has dim_proj=32; below that dim, fit keeps all dim dimensions per bucket."""
    from lightcol.muvera import RECOMMENDED_FIT

    docs = list(model.embed(random_texts(40, seed=12)))
    assert model.dim == 16 < RECOMMENDED_FIT["dim_proj"]
    m = Muvera.fit(docs, **RECOMMENDED_FIT)
    assert m.dim_proj == 16 and m.embedding_size == 5 * 64 * 16
    same = Muvera.fit(docs, **{**RECOMMENDED_FIT, "dim_proj": 16})
    np.testing.assert_array_equal(m.process_documents(docs), same.process_documents(docs))
    m.save(tmp_path / "m.npz")
    q = next(model.query_embed("late interaction"))
    np.testing.assert_array_equal(Muvera.load(tmp_path / "m.npz").process_query(q), m.process_query(q))
    with pytest.raises(ArgumentError, match="dim_proj must be an int >= 1"):
        Muvera.fit(docs, dim_proj=0)
    with pytest.raises(ArgumentError, match=r"dim_proj=32 > dim=16\): pass dim_proj <= 16"):
        Muvera(16, **RECOMMENDED_FIT)
