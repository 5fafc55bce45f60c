"""Index.build in bounded memory: spilled state, the inverted file placed in ranges, memory set by sample_tokens."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from lightcol import Index
from lightcol.errors import DuplicateIdError
from lightcol.index import candidates as cand
from lightcol.index import external
from lightcol.index import storage


def _corpus(n_docs: int, dim: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((64, dim)).astype(np.float32)
    docs = []
    for n in rng.integers(1, 40, n_docs):
        x = centers[rng.integers(0, 64, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
        docs.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    return docs


def _arrays(path: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in storage.open_arrays(path)[1].items()}


class _Sink:
    """A stand-in for storage.Writer that keeps what is written."""

    def __init__(self) -> None:
        self.arrays: dict[str, list[np.ndarray]] = {}
        self._name = ""

    def begin(self, name: str, dtype, row_shape=()) -> None:
        self._name = name
        self.arrays[name] = []

    def extend(self, a: np.ndarray) -> None:
        self.arrays[self._name].append(np.asarray(a))

    def end(self) -> None:
        pass

    def array(self, name: str, a: np.ndarray) -> None:
        self.arrays[name] = [np.asarray(a)]

    def get(self, name: str) -> np.ndarray:
        return np.concatenate(self.arrays[name])


@pytest.mark.parametrize("budget", [24, 24 * 50, 1 << 30])
def test_ivf_spill_equals_in_memory_build(tmp_path, budget):
    rng = np.random.default_rng(1)
    k = 97
    lengths = rng.integers(0, 30, 3000)
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    codes = rng.integers(0, k, int(offsets[-1])).astype(np.uint16)
    ivf = external.IvfSpill(str(tmp_path), k)
    try:
        for a in range(0, lengths.shape[0], 211):  # chunks of whole documents
            b = min(a + 211, lengths.shape[0])
            ivf.add(codes[offsets[a] : offsets[b]], lengths[a:b], a)
        sink = _Sink()
        ivf.write(sink, budget)  # budget 24: one centroid per range
    finally:
        ivf.close()
    docs, ivf_offsets = cand.build_ivf(codes, offsets, k)
    np.testing.assert_array_equal(sink.get("ivf_docs"), docs)
    np.testing.assert_array_equal(sink.get("ivf_offsets"), ivf_offsets)
    assert sink.get("ivf_docs").dtype == np.int32
    assert list(tmp_path.iterdir()) == []  # temporary files removed


def test_streamed_parquet_build_equals_in_memory_build(tmp_path):
    pytest.importorskip("pyarrow")
    from lightcol import parquet

    docs = _corpus(700)
    ids = [f"doc-{i}" for i in range(len(docs))]
    schema = parquet.schema(32, "float32", id_type="string")
    shards = tmp_path / "shards"
    shards.mkdir()
    for s, a in enumerate(range(0, len(docs), 250)):  # three shards, as `lightcol embed` writes them
        with parquet.Writer(shards / f"part-{s:05d}.parquet", schema) as w:
            w.write(ids[a : a + 250], docs[a : a + 250])
    kw = {"nbits": 2, "n_centroids": 32, "sample_tokens": 3000, "show_progress": False}
    ref = Index.build(tmp_path / "memory.lci", ids, docs, **kw)
    pairs = list(parquet.iter_documents(shards, batch_size=64))
    assert [p[0] for p in pairs] == ids
    assert all(np.array_equal(v, d) for (_, v), d in zip(pairs, docs, strict=True))
    got = parquet.build_index(tmp_path / "streamed.lci", shards, **kw)
    assert (tmp_path / "memory.lci").read_bytes() == (tmp_path / "streamed.lci").read_bytes()
    a = _arrays(got.path)
    ivf_docs, ivf_offsets = cand.build_ivf(a["codes"], a["offsets"], a["centroids"].shape[0])
    np.testing.assert_array_equal(a["ivf_docs"], ivf_docs)
    np.testing.assert_array_equal(a["ivf_offsets"], ivf_offsets)
    assert got.ids == ids and ref.ids == ids
    q = docs[3][:5]
    assert got.search(q, 5) == ref.search(q, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.lci", "memory.lci.lock", "shards", "streamed.lci",
                                                           "streamed.lci.lock"]


def _peak_build_bytes(path, docs, sample_tokens: int) -> int:
    tracemalloc.start()
    try:
        Index.build(path, None, iter(docs), nbits=1, n_centroids=16, sample_tokens=sample_tokens, show_progress=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_build_peak_memory_follows_the_setting_not_the_corpus(tmp_path, monkeypatch):
    from lightcol.index import index as index_module

    monkeypatch.setattr(index_module, "_ENCODE_CHUNK", 2048)  # both corpora span many encode steps
    small, large = _corpus(800, seed=2), _corpus(3200, seed=3)  # ~16k and ~62k vectors
    n_small, n_large = sum(map(len, small)), sum(map(len, large))
    assert n_large > 3.5 * n_small
    p_small = _peak_build_bytes(tmp_path / "a.lci", small, 1 << 11)
    p_large = _peak_build_bytes(tmp_path / "b.lci", large, 1 << 11)
    p_wide = _peak_build_bytes(tmp_path / "c.lci", large, 1 << 13)
    vec_bytes = 32 * 4
    # 4x the corpus: the same peak (within 10%); the in-memory state it replaced grew by ~14 B per vector
    assert p_large < 1.1 * p_small, (p_small, p_large)
    # 4x the sample: the peak grows by at least the sample's extra bytes
    assert p_wide - p_large > 0.9 * ((1 << 13) - (1 << 11)) * vec_bytes, (p_large, p_wide)
    assert len(Index.open(tmp_path / "b.lci")) == 3200


def test_duplicate_ids_found_on_disk(tmp_path):
    docs = _corpus(50)
    with pytest.raises(DuplicateIdError, match="id 7 .*document 30.* given twice"):
        Index.build(tmp_path / "x.lci", [*range(30), 7, *range(31, 50)], docs, n_centroids=8, show_progress=False)
    with pytest.raises(DuplicateIdError, match="'b' .*document 2.* given twice"):
        Index.build(tmp_path / "x.lci", ["a", "b", "b", *map(str, range(47))], docs, n_centroids=8, show_progress=False)
    # nothing written, temporary files removed; the lock file stays (removing one another writer may have
    # opened would let two writers hold the path)
    assert [p.name for p in tmp_path.iterdir()] == ["x.lci.lock"]


@pytest.mark.parametrize("budget", [48, 1 << 20])  # 48: many passes over residues
def test_id_spill_duplicates_and_forms(tmp_path, budget):
    ints = external.IdSpill(str(tmp_path))
    for i in [5, -3, 2**62, 9, 11]:
        ints.add(i)
    assert ints.duplicate(budget) is None
    ints.add(9)
    assert ints.duplicate(budget) == 5 and ints.get(5) == 9
    ints.close()
    mixed = external.IdSpill(str(tmp_path))
    for i in [1, 2, 3]:
        mixed.add(i)
    mixed.add("1")  # a string after ints: the JSON form, and "1" is not 1
    mixed.add(2**70)
    assert mixed.duplicate(budget) is None
    mixed.add(3)
    assert mixed.duplicate(budget) == 5 and mixed.get(5) == 3
    sink = _Sink()
    mixed.write(sink, "ids")
    assert bytes(sink.get("ids")) == b'[1, 2, 3, "1", 1180591620717411303424, 3]'
    mixed.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ids", [None, "strings"])
def test_spilled_build_writes_what_the_in_memory_writer_writes(tmp_path, ids):
    """The file Index.build streams through temporary files equals, byte for byte, the one the in-memory
    writer (index._finish: codes, offsets and ids in memory, candidates.build_ivf) makes of the same arrays."""
    from lightcol.index import index as index_module

    docs = _corpus(600, seed=4)
    id_list = None if ids is None else [f"p{i}" for i in range(len(docs))]
    ix = Index.build(tmp_path / "spilled.lci", id_list, docs, nbits=2, n_centroids=32, sample_tokens=2000,
                     show_progress=False)
    a = _arrays(ix.path)
    meta = {k: v for k, v in ix.meta.items() if k not in (*index_module._DERIVED, *index_module._STATE)}
    writer = storage.Writer(tmp_path / "memory.lci")
    writer.array("residuals", a["residuals"])
    index_module._finish(writer, ix._codec, a["codes"], a["offsets"], ix.ids, meta)  # noqa: SLF001
    assert (tmp_path / "spilled.lci").read_bytes() == (tmp_path / "memory.lci").read_bytes()


def _peak_compact_bytes(path, docs, sample_tokens: int, ids=None) -> int:
    n = len(docs) - len(docs) // 8
    ix = Index.build(path, None if ids is None else ids[:n], iter(docs[:n]), nbits=1, n_centroids=64,
                     sample_tokens=sample_tokens, show_progress=False)
    ix.merge_policy = None
    ix.add(None if ids is None else ids[n:], docs[n:])
    ix.delete(ix.ids[1 : len(docs) // 4 : 2])  # an eighth of the documents
    tracemalloc.start()
    try:
        ix.compact()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_compact_peak_memory_follows_the_setting_not_the_corpus(tmp_path, monkeypatch):
    """compact() spills codes, lengths, ids and the inverted file's pairs as a build does."""
    from lightcol.index import index as index_module

    monkeypatch.setattr(index_module, "_ENCODE_CHUNK", 256)  # both corpora span many steps,
    monkeypatch.setattr(external, "_READ_ROWS", 4096)  # and many read-back steps of the spilled columns
    # both have more inverted-file pairs than one placement range holds (the 1 MB floor of the budget)
    small, large = _corpus(6000, seed=2), _corpus(24000, seed=3)
    p_small = _peak_compact_bytes(tmp_path / "a.lci", small, 1 << 11)
    p_large = _peak_compact_bytes(tmp_path / "b.lci", large, 1 << 11)
    assert p_large < 1.1 * p_small, (p_small, p_large)
    ix = Index.open(tmp_path / "b.lci")
    assert len(ix) == 24000 - 3000 and ix.n_segments == 0 and ix.n_deleted == 0


@pytest.mark.parametrize("ids", [None, "strings"])
def test_compact_writes_what_the_in_memory_writer_writes(tmp_path, ids):
    from lightcol.index import index as index_module

    docs = _corpus(600, seed=5)
    id_list = list(range(600)) if ids is None else [f"p{i}" for i in range(600)]
    ix = Index.build(tmp_path / "c.lci", id_list[:500], docs[:500], nbits=2, n_centroids=32, sample_tokens=2000,
                     show_progress=False)
    ix.merge_policy = None
    ix.add(id_list[500:], docs[500:])
    ix.delete(id_list[::7])
    want = [ix.search(d[:4], 10) for d in docs[:20:3]]
    ix.compact()
    assert [ix.search(d[:4], 10) for d in docs[:20:3]] == want
    assert ix.ids == [d for i, d in enumerate(id_list) if i % 7]
    a = _arrays(ix.path)
    meta = {k: v for k, v in ix.meta.items() if k not in (*index_module._DERIVED, *index_module._STATE)}
    meta["generation"] = ix.meta["generation"]
    writer = storage.Writer(tmp_path / "memory.lci")
    writer.array("residuals", a["residuals"])
    index_module._finish(writer, ix._codec, a["codes"], a["offsets"], ix.ids, meta)  # noqa: SLF001
    assert (tmp_path / "c.lci").read_bytes() == (tmp_path / "memory.lci").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.lci", "c.lci.lock", "memory.lci"]
