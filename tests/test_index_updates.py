"""Index updates: segments, tombstones, compaction, the write lock, readers' views, drift, crash safety."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lightcol import (ArgumentError, DriftWarning, DuplicateIdError, Index, IndexFormatError, IndexLockedError,
                      MultiVectorCollection)
from lightcol import _durable
from lightcol.index import MergePolicy
from lightcol.index import drift as _drift
from lightcol.index import storage as _storage

DIM = 16
FULL = {"n_interact": 10_000, "n_rerank": 10_000}  # every candidate reranked: results independent of pruning
KNOBS = {"nprobe": 2, "n_interact": 40, "n_rerank": 12}  # pruning hard: candidate generation must match too


def _clustered(rng: np.random.Generator, n_docs: int, centers: np.ndarray, spread: float = 0.35) -> list[np.ndarray]:
    docs = []
    for _ in range(n_docs):
        n = int(rng.integers(3, 12))
        x = centers[rng.integers(0, centers.shape[0], n)] + spread * rng.standard_normal((n, centers.shape[1]))
        docs.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return docs


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((24, DIM))
    docs = _clustered(rng, 260, centers)
    queries = [d[:4] for d in _clustered(rng, 6, centers)]
    return docs, queries


def _build(path: Path, docs: list[np.ndarray], ids=None, **kw) -> Index:
    kw = {"nbits": 2, "n_centroids": 32, "show_progress": False, **kw}
    return Index.build(path, list(range(len(docs))) if ids is None else ids, docs, **kw)


def _results(ix: Index, queries, **knobs) -> list[list[tuple[object, float]]]:
    return [ix.search(q, 10, **knobs) for q in queries]


def test_add_delete_search_equals_the_compacted_index(data, tmp_path):
    docs, queries = data
    ix = _build(tmp_path / "a.lci", docs[:150])
    ix.merge_policy = None
    for s in range(150, 250, 20):  # five segments
        ix.add(range(s, s + 20), docs[s : s + 20])
    ix.delete([3, 4, 151, 170, 249])
    assert ix.n_segments == 5 and ix.n_deleted == 5 and len(ix) == 245
    assert ix.ids == [i for i in range(250) if i not in (3, 4, 151, 170, 249)]
    got = {kw: _results(ix, queries, **dict(kn)) for kw, kn in (("full", FULL), ("knobs", KNOBS))}
    assert all(d not in (3, 4, 151, 170, 249) for r in got["full"] for d, _ in r)
    again = Index.open(ix.path)
    assert again.ids == ix.ids and _results(again, queries, **KNOBS) == got["knobs"]
    ix.compact()
    assert ix.n_segments == 0 and ix.n_deleted == 0 and len(ix) == 245 and ix.ids == again.ids
    assert {f for f in os.listdir(tmp_path)} == {"a.lci", "a.lci.lock"}  # one file again
    assert _storage.open_arrays(ix.path)[0]["format"] == "lightcol-index"
    assert _results(ix, queries, **FULL) == got["full"]
    assert _results(ix, queries, **KNOBS) == got["knobs"]  # the same candidates, not only the same scores
    # and the same as an index built from the same documents with the same codec: exact MaxSim of decoded vectors
    col = MultiVectorCollection()
    keep = ix.ids
    col.add(keep, [ix._codec.decode(*_codes(ix, i)) for i in range(len(keep))])
    for q, r in zip(queries, got["full"], strict=True):
        want = col.search(ix._codec.rotate(q), 10)
        assert [d for d, _ in r] == [d for d, _ in want]
        np.testing.assert_allclose([s for _, s in r], [s for _, s in want], rtol=1e-5)


def _codes(ix: Index, i: int):
    off = ix._a["offsets"]
    return ix._a["codes"][off[i] : off[i + 1]], ix._a["residuals"][off[i] : off[i + 1]]


def test_an_added_segment_is_coded_with_the_existing_codec(data, tmp_path):
    docs, _ = data
    ix = _build(tmp_path / "a.lci", docs[:100])
    before = {n: np.array(ix._a[n]) for n in ("centroids", "books", "rotation")}
    inode = os.stat(ix.path).st_ino
    ix.add([500], docs[100:101])
    seg = ix._parts[1]
    codes, residuals = ix._codec.encode(docs[100])
    np.testing.assert_array_equal(seg.arrays["codes"], codes)
    np.testing.assert_array_equal(seg.arrays["residuals"], residuals)
    assert all(np.array_equal(ix._a[n], v) for n, v in before.items())
    assert sorted(os.listdir(tmp_path)) == ["a.lci", "a.lci.g1.base", "a.lci.g1.seg", "a.lci.lock"]
    assert os.stat(tmp_path / "a.lci.g1.base").st_ino == inode  # the built file, linked, not copied
    assert _storage.open_arrays(ix.path)[0]["format"] == "lightcol-index-manifest"
    assert ix.files == ["a.lci", "a.lci.g1.base", "a.lci.g1.seg"]


def test_ids_duplicates_and_unknown_deletes(data, tmp_path):
    docs, _ = data
    ix = _build(tmp_path / "a.lci", docs[:50], ids=[f"d{i}" for i in range(50)])
    ix.add(["x", "y"], docs[50:52])
    with pytest.raises(DuplicateIdError, match="'x'"):
        ix.add(["z", "x"], docs[52:54])
    with pytest.raises(DuplicateIdError, match="'d7'"):
        ix.add(["d7"], docs[52:53])
    with pytest.raises(ArgumentError, match="not in the index"):
        ix.delete(["x", "nope"])
    assert len(ix) == 52 and "x" in ix and ix.n_deleted == 0 and ix.n_segments == 1
    ix.delete("d7")
    ix.add(["d7"], docs[52:53])  # a deleted id can come back (in a new segment)
    assert ix.ids[-1] == "d7" and ix.ids.count("d7") == 1 and len(ix) == 52
    ix.add([], [])  # nothing to add: nothing written
    assert ix.meta["generation"] == 3


def test_readers_keep_their_view_while_a_writer_changes_the_index(data, tmp_path):
    docs, queries = data
    path = tmp_path / "a.lci"
    writer = _build(path, docs[:120])
    writer.add(range(120, 140), docs[120:140])
    reader = Index.open(path)
    seen = _results(reader, queries, **FULL)
    writer.add(range(140, 180), docs[140:180])
    writer.delete(list(range(0, 120, 3)))
    writer.compact()  # the reader's base and segment files are gone from the folder now
    assert not (tmp_path / "a.lci.g1.seg").exists()
    assert _results(reader, queries, **FULL) == seen and len(reader) == 140
    assert reader.refresh() and len(reader) == 140 and reader.ids == writer.ids
    assert _results(reader, queries, **FULL) == _results(writer, queries, **FULL)
    assert not reader.refresh()


def test_a_second_writer_gets_a_clear_error(data, tmp_path):
    docs, _ = data
    path = tmp_path / "a.lci"
    ix = _build(path, docs[:40])
    other = Index.open(path)
    with _durable.write_lock(str(path)):  # as another writer would hold it
        with pytest.raises(IndexLockedError, match="another writer is changing the index"):
            ix.add([40], docs[40:41])
        with pytest.raises(IndexLockedError):
            other.delete([0])
        with pytest.raises(IndexLockedError):
            other.compact()
    assert len(Index.open(path)) == 40
    # a writer whose object is out of date first follows the other writer's changes (no lost update)
    ix.add([40], docs[40:41])
    other.add([41], docs[41:42])
    assert Index.open(path).ids == list(range(42)) and other.ids == list(range(42))


def test_a_lock_held_by_another_process(data, tmp_path):
    docs, _ = data
    path = tmp_path / "a.lci"
    ix = _build(path, docs[:40])
    code = textwrap.dedent(f"""
        import sys, time
        from lightcol import _durable
        with _durable.write_lock({str(path)!r}):
            print("held", flush=True)
            sys.stdin.readline()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(IndexLockedError):
            ix.add([40], docs[40:41])
    finally:
        p.communicate("\n", timeout=30)
    ix.add([40], docs[40:41])
    assert len(ix) == 41


def test_files_of_older_versions_open_and_upgrade_on_their_first_change(data, tmp_path, monkeypatch):
    """A format-4 file built before updates existed (no drift reference) opens, searches, then upgrades."""
    docs, queries = data
    path = tmp_path / "old.lci"

    monkeypatch.setattr(_drift, "reference", lambda *a: None)
    ix = _build(path, docs[:100], keep_full=True)
    monkeypatch.undo()
    meta, _ = _storage.open_arrays(path)
    assert meta["drift_reference"] is None
    # rewrite the footer without the key, as an older lightcol wrote it
    _rewrite_meta(path, {k: v for k, v in meta.items() if k != "drift_reference"})
    assert _storage.open_arrays(path)[0].get("drift_reference", 0) == 0
    old = Index.open(path)
    want = _results(old, queries, **FULL)
    old.add(range(100, 110), docs[100:110])
    assert old.meta["drift_reference"]["source"] == "decoded vectors (estimate)"
    assert old.drift["vectors"] == sum(d.shape[0] for d in docs[100:110])
    old.delete(list(range(100, 110)))
    assert _results(old, queries, **FULL) == want
    assert _results(old, queries, exact=True, **FULL) == _results(Index.open(path), queries, exact=True, **FULL)
    assert set(os.listdir(tmp_path)) == set(Index.open(path).files) | {"old.lci.lock"}
    assert Index.open(path).files == ["old.lci", "old.lci.g1.base", "old.lci.g1.base.full"]  # the segment: all deleted
    old.compact()  # the full-precision vectors move into the one file
    assert sorted(os.listdir(tmp_path)) == ["old.lci", "old.lci.lock"]
    assert _results(old, queries, **FULL) == want
    assert _results(old, queries, exact=True, **FULL) == _results(Index.open(path), queries, exact=True, **FULL)


def _rewrite_meta(path: Path, meta: dict) -> None:
    """Rewrite an index file's footer metadata in place of a copy (arrays unchanged)."""
    src_meta, arrays = _storage.open_arrays(path)
    w = _storage.Writer(path)
    for name, a in arrays.items():
        w.array(name, np.array(a))
    w.commit(meta)


def test_exact_search_over_segments_reads_their_full_vectors(data, tmp_path):
    docs, queries = data
    ix = _build(tmp_path / "a.lci", docs[:100], keep_full=True)
    ix.add(range(100, 160), docs[100:160])
    col = MultiVectorCollection()
    col.add(range(160), docs[:160])
    for q in queries:
        got = ix.search(q, 5, exact=True, **FULL)
        want = col.search(q, 5)
        assert [d for d, _ in got] == [d for d, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=2e-2)


def test_merge_policy_merges_small_segments_and_compacts(data, tmp_path):
    docs, queries = data
    ix = _build(tmp_path / "a.lci", docs[:150])
    ix.merge_policy = MergePolicy(max_segments=3)
    for s in range(150, 230, 10):
        ix.add(range(s, s + 10), docs[s : s + 10])
        assert ix.n_segments <= 3
    assert len(ix) == 230 and ix.ids == list(range(230))
    files = set(os.listdir(tmp_path))
    assert files == set(ix.files) | {"a.lci.lock"}  # merged-away segments are deleted
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in ix.files:
        os.link(tmp_path / f, copy / f)
    compacted = Index.open(copy / "a.lci")
    compacted.compact()
    assert _results(ix, queries, **KNOBS) == _results(compacted, queries, **KNOBS)
    ix.delete(list(range(200, 210)))  # a whole segment's documents: the segment goes
    assert all(p.n_live for p in ix._parts[1:])
    ix.merge_policy = MergePolicy(max_deleted=0.05)
    ix.delete(list(range(0, 30)))  # 40 of 230 stored deleted: over 5%, compacted
    assert ix.n_segments == 0 and ix.n_deleted == 0 and len(ix) == 190
    ix.merge_policy = MergePolicy(max_added=0.1)
    ix.add(range(230, 260), docs[230:260])  # 30 more than 10% of the base: compacted
    assert ix.n_segments == 0 and len(ix) == 220


def test_drift_is_measured_and_retrains_when_the_full_vectors_are_kept(tmp_path):
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((24, DIM))
    docs = _clustered(rng, 300, centers)
    ix = _build(tmp_path / "a.lci", docs[:200], keep_full=True)
    ix.merge_policy = None
    assert ix.drift is None and ix.meta["drift_reference"]["source"] == "training sample"
    ix.add(range(200, 300), docs[200:300])  # the same distribution
    d = ix.drift
    assert not d["drifted"] and 0.9 < d["residual_ratio"] < _drift.LIMITS["residual_ratio"] and d["far_share"] < 0.05
    assert d["vectors"] == sum(x.shape[0] for x in docs[200:300])
    other = _clustered(rng, 200, rng.standard_normal((24, DIM)))  # other clusters: drifted
    ix.add(range(300, 500), other)
    d = ix.drift
    assert d["drifted"] and d["residual_ratio"] > 1.5 and d["last"]["far_share"] > 0.3
    codes_before = np.array(ix._a["centroids"])
    ix.merge_policy = MergePolicy()
    ix.add([500], other[:1])  # the policy retrains: full-precision vectors are kept
    assert ix.n_segments == 0 and ix.drift is None and not np.array_equal(codes_before, ix._a["centroids"])
    assert len(ix) == 501 and ix.ids == list(range(501))
    col = MultiVectorCollection()
    col.add(range(500), [*docs, *other])
    q = other[5][:3]
    assert [d for d, _ in ix.search(q, 3, exact=True, **FULL)][:1] == [d for d, _ in col.search(q, 3)][:1]



def test_drift_without_full_vectors_warns(tmp_path):
    rng = np.random.default_rng(2)
    docs = _clustered(rng, 200, rng.standard_normal((24, DIM)))
    ix = _build(tmp_path / "a.lci", docs)
    other = _clustered(rng, 200, rng.standard_normal((24, DIM)))
    with pytest.warns(DriftWarning, match="drifted"):
        ix.add(range(200, 400), other)
    assert ix.drift["drifted"] and ix.n_segments == 1
    with pytest.raises(ArgumentError, match="keep_full=True"):
        ix.compact(retrain=True)


# -- crash safety -------------------------------------------------------------------------------

_CRASH_HELPER = r'''
import json, os, shutil, sys
import numpy as np
import killpoints
from lightcol import Index
from lightcol.index import MergePolicy

root, op = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
def docs(n):
    out = []
    for _ in range(n):
        x = rng.standard_normal((int(rng.integers(2, 6)), 16)).astype(np.float32)
        out.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    return out
D = docs(80)
Q = [d[:2] for d in docs(3)]
seed = os.path.join(root, "seed")
os.makedirs(seed)
ix = Index.build(os.path.join(seed, "i.lci"), range(40), D[:40], nbits=2, n_centroids=8, keep_full=True,
                 show_progress=False)
if op != "first-add":
    ix.add(range(40, 50), D[40:50])
    ix.delete([1, 41])
    ix.add(range(50, 55), D[50:55])

def change(ix):
    if op in ("first-add", "add"):
        ix.add(range(60, 66), D[60:66])
    elif op == "delete":
        ix.delete([2, 3, 42, 51])
    elif op == "compact":
        ix.compact()
    elif op == "merge":
        ix.merge_policy = MergePolicy(max_segments=1)
        ix.add(range(60, 66), D[60:66])

def state(path):
    ix = Index.open(path)
    res = [[(d, round(s, 4)) for d, s in ix.search(q, 5, n_interact=1000, n_rerank=1000, exact=e)]
           for q in Q for e in (False, True)]
    return json.dumps([ix.ids, res])

def fresh(name):
    d = os.path.join(root, name)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(seed, d)
    return os.path.join(d, "i.lci")

def recover(p):  # the next writer: its change commits, and what the crash left behind is deleted
    ix = Index.open(p)
    ix.add([1000], D[70:71])
    files = set(os.listdir(os.path.dirname(p)))
    assert files == set(ix.files) | {"i.lci.lock"}, (files, ix.files)

out = killpoints.run(lambda: fresh("run"), lambda p: change(Index.open(p)), state, recover)
assert out["changed"] or op == "compact"
print(json.dumps(out))
'''


@pytest.mark.parametrize("op", ["first-add", "add", "delete", "compact", "merge"])
def test_a_writer_killed_at_any_step_leaves_the_state_before_or_after(op, tmp_path):
    """The writer SIGKILLs itself after its N-th durable step (write, fsync, rename, folder fsync,
    link, unlink), for every N until the change completes: the index opens as before or after."""
    script = tmp_path / "helper.py"
    script.write_text(_CRASH_HELPER)
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": f"{here.parent}{os.pathsep}{here}", "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    env.pop("LIGHTCOL_TEST_CRASH_AT", None)
    r = subprocess.run([sys.executable, str(script), str(tmp_path), op], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # each file: write, fsync, rename, folder fsync; a delete writes only the manifest
    assert out["steps"] >= {"delete": 4, "compact": 4}.get(op, 8), out
    assert out["before"] + out["after"] == out["steps"]
    if op == "compact":  # the same documents and results before and after
        assert out["before"] == out["steps"], out
    else:
        assert out["before"] >= 2 and out["after"] >= 2, out  # killed before the commit and after it


def test_a_missing_part_is_a_clear_error_and_compact_of_one_file_writes_nothing(data, tmp_path):
    docs, _ = data
    ix = _build(tmp_path / "a.lci", docs[:40])
    inode = os.stat(ix.path).st_ino
    ix.compact()  # nothing to merge: the file stays
    assert os.stat(ix.path).st_ino == inode
    ix.add([40], docs[40:41])
    os.unlink(tmp_path / "a.lci.g1.seg")
    with pytest.raises(IndexFormatError, match=r"a.lci.g1.seg.*copy all of them"):
        Index.open(ix.path)


def test_centroid_groups_are_stored_and_an_older_file_groups_them_on_first_use(tmp_path):
    """From GROUPED_FROM centroids on, build and compact store the groups; open reads them, equal to
    grouping anew; a file without them (written before they were stored) still opens and adds alike."""
    from lightcol import _kmeans
    from lightcol.index import codec as _codec

    rng = np.random.default_rng(3)
    docs = _clustered(rng, 500, rng.standard_normal((300, DIM)), spread=0.5)
    path = tmp_path / "g.lci"
    ix = _build(path, docs[:450], n_centroids=_kmeans.GROUPED_FROM)
    _, arrays = _storage.open_arrays(path)
    assert set(_codec.GROUP_ARRAYS) <= set(arrays)
    opened = Index.open(path)
    assert "groups" in opened._codec.__dict__  # read at open: the first add does not group again
    computed = _kmeans.group(opened._codec.centroids)
    for got, want in zip(opened._codec.groups, computed, strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)

    old = tmp_path / "old.lci"
    w = _storage.Writer(old)
    meta, arrays = _storage.open_arrays(path)
    for name, a in arrays.items():
        if name not in _codec.GROUP_ARRAYS:
            w.array(name, np.array(a))
    w.commit(meta)
    older = Index.open(old)
    assert "groups" not in older._codec.__dict__
    for i in (opened, older):
        i.merge_policy = None
        i.add(range(450, 500), docs[450:500])
    assert "groups" in older._codec.__dict__  # grouped on first use, kept while the centroids are the same
    seg = [_storage.open_arrays(tmp_path / i.files[-1])[1] for i in (opened, older)]
    assert np.array_equal(seg[0]["codes"], seg[1]["codes"]) and np.array_equal(seg[0]["residuals"], seg[1]["residuals"])
    assert _results(opened, [d[:4] for d in docs[:5]], **FULL) == _results(older, [d[:4] for d in docs[:5]], **FULL)
    older.compact()  # the one file written again holds the groups
    assert set(_codec.GROUP_ARRAYS) <= set(_storage.open_arrays(old)[1])

    # groups that do not fit the centroids: a corrupted file, said so
    meta, arrays = _storage.open_arrays(old)
    w = _storage.Writer(old)
    for name, a in arrays.items():
        w.array(name, np.array(a)[:-1] if name == "group_members" else np.array(a))
    w.commit(meta)
    with pytest.raises(IndexFormatError, match="centroid groups"):
        Index.open(old)
    # fewer centroids than GROUPED_FROM: exact assignment, nothing stored
    small = _build(tmp_path / "s.lci", docs[:100])
    assert not set(_codec.GROUP_ARRAYS) & set(_storage.open_arrays(small.path)[1])


def test_a_build_over_an_existing_index_takes_the_write_lock(data, tmp_path):
    docs, queries = data
    path = tmp_path / "a.lci"
    ix = _build(path, docs[:60], keep_full=True)
    ix.merge_policy = None
    ix.add(range(60, 80), docs[60:80])
    ix.delete([1, 2])
    before = _results(ix, queries, **FULL)
    with _durable.write_lock(str(path)):  # another writer is changing it
        with pytest.raises(IndexLockedError, match="another writer is changing the index"):
            _build(path, docs[100:140])
    assert _results(Index.open(path), queries, **FULL) == before  # untouched
    assert sorted(os.listdir(tmp_path)) == ["a.lci", "a.lci.g1.base", "a.lci.g1.base.full", "a.lci.g1.seg",
                                            "a.lci.lock"]
    # not locked: the build replaces the index; the replaced one's files go, a reader keeps its view
    rebuilt = _build(path, docs[100:140], ids=list(range(100, 140)))
    assert sorted(os.listdir(tmp_path)) == ["a.lci", "a.lci.lock"]  # nor is the old side file taken for this one's
    assert rebuilt.ids == list(range(100, 140)) and rebuilt._full is None
    assert _results(ix, queries, **FULL) == before
    assert _results(Index.open(path), queries, **FULL) == _results(rebuilt, queries, **FULL)


def test_a_killed_build_leaves_files_the_next_build_removes_and_builds_race_for_the_lock(data, tmp_path):
    docs, queries = data
    path = tmp_path / "k.lci"
    np.save(tmp_path / "docs.npy", np.concatenate(docs[:80]))
    np.save(tmp_path / "lens.npy", np.array([len(d) for d in docs[:80]]))
    code = f"""
import os, signal, numpy as np
from lightcol import Index
x, lens = np.load({str(tmp_path / 'docs.npy')!r}), np.load({str(tmp_path / 'lens.npy')!r})
def docs():
    for i, d in enumerate(np.split(x, np.cumsum(lens)[:-1])):
        if i == 60:  # past the training sample: the spill files exist and hold 60 documents
            os.kill(os.getpid(), signal.SIGKILL)
        yield d
Index.build({str(path)!r}, None, docs(), nbits=2, n_centroids=8, sample_tokens=50, show_progress=False)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    left = sorted(f for f in os.listdir(tmp_path) if f.endswith(".tmp"))
    assert left and all(f.startswith(".k.lci.g0.") for f in left), left
    assert not path.exists()
    # another writer holds the path: a second build on it (the path is still new) is refused
    with _durable.write_lock(str(path)):
        with pytest.raises(IndexLockedError, match="another writer is changing the index"):
            _build(path, docs[:20])
    assert not path.exists()
    built = _build(path, docs[:80])
    assert sorted(os.listdir(tmp_path)) == ["docs.npy", "k.lci", "k.lci.lock", "lens.npy"]  # the killed build's files went
    assert built.ids == list(range(80))
    assert _results(built, queries, **FULL) == _results(_build(tmp_path / "fresh.lci", docs[:80]), queries, **FULL)
