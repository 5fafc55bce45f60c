"""DocumentIndex changes without rewrites: segments and tombstones on both backends, the writer lock,
stores of the single-file layout, and a writer killed at every durable step."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lightcol import DocumentIndex, IndexLockedError, MultiVectorCollection
from lightcol import _durable

from conftest import ONNX_DIR, random_texts

BACKENDS = ["collection", "index"]


@pytest.fixture(scope="module")
def texts():
    return random_texts(16, seed=11, max_words=60)


def _stored(folder: Path) -> dict[str, tuple[int, int]]:
    return {f: (os.stat(folder / f).st_ino, os.stat(folder / f).st_mtime_ns) for f in os.listdir(folder)
            if f.startswith("vectors-")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_changes_write_new_files_and_never_rewrite_stored_vectors(tmp_path, model, texts, backend):
    path = tmp_path / "ix"
    index = DocumentIndex.create(path, model, texts=texts[:10], document_ids=list(range(10)), backend=backend)
    before = _stored(path)
    data = {f for f in before if not f.endswith((".collection", ".index"))} or set(before)
    index.add(texts[10:12], document_ids=[10, 11])
    after = _stored(path)
    for f in data:  # the stored vectors: the same files (inode, mtime), still used by the new state
        assert after[f] == before[f] and f in index._vectors.files
    assert len(set(after) - set(before)) >= 1
    res = index.search("query document", k=5)
    index.delete([3, 10])
    after_delete = _stored(path)
    assert all(after_delete[f] == after[f] for f in data) and len(index) == 10
    assert {r["document_id"] for r in index.search("query document", k=40, by_document=True)} == set(index.document_ids)
    assert set(after_delete) == set(index._vectors.files)  # files of earlier states are gone
    reopened = DocumentIndex.open(path, model=model)
    assert reopened.search("query document", k=5) == index.search("query document", k=5)
    assert res  # searched before the delete


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_over_segments_equals_one_file(tmp_path, model, texts, backend):
    """The same passages added in three changes or in one: the same results (exact for the collection)."""
    one = DocumentIndex.create(tmp_path / "one", model, texts=texts, document_ids=list(range(16)), backend=backend)
    many = DocumentIndex.create(tmp_path / "many", model, texts=texts[:8], document_ids=list(range(8)), backend=backend)
    many.add(texts[8:12], document_ids=list(range(8, 12)))
    many.add(texts[12:], document_ids=list(range(12, 16)))
    for q in ("query document", "science library index"):
        a, b = one.search(q, k=8), many.search(q, k=8)
        if backend == "collection":
            assert [(r["passage_id"], r["content"]) for r in a] == [(r["passage_id"], r["content"]) for r in b]
            assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], rel=1e-6)
        else:  # the codec was trained on the first change's passages: same documents, close scores
            assert {r["document_id"] for r in a} & {r["document_id"] for r in b}


def test_a_store_of_the_single_file_layout_opens_and_changes(tmp_path, model, texts):
    """Document indexes written before segments kept one ``.npz`` per state: it opens, then gets segments."""
    path = tmp_path / "ix"
    index = DocumentIndex.create(path, model, texts=texts[:6], document_ids=list(range(6)))
    want = index.search("query document", k=6)
    old = MultiVectorCollection(index._meta["dim"])
    old.add(index._vectors.ids, iter(index._vectors))
    old.save(path / "vectors-7.npz")
    index.close()
    conn = sqlite3.connect(path / "documents.sqlite")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'vectors'", (json.dumps("vectors-7.npz"),))
    conn.commit()
    conn.close()
    for f in os.listdir(path):
        if f.startswith("vectors-") and f != "vectors-7.npz":
            os.unlink(path / f)
    index = DocumentIndex.open(path, model=model)
    assert index.search("query document", k=6) == want
    index.add(texts[6:8], document_ids=[6, 7])
    assert "vectors-7.npz" in index._vectors.files and len(index) == 8
    index.delete([0])
    assert {r["document_id"] for r in index.search("query", k=30, by_document=True)} == set(range(1, 8))


def test_a_second_writer_gets_a_clear_error(tmp_path, model, texts):
    path = tmp_path / "ix"
    index = DocumentIndex.create(path, model, texts=texts[:4], document_ids=list(range(4)))
    other = DocumentIndex.open(path, model=model)
    with _durable.write_lock(str(path / "documents")):
        with pytest.raises(IndexLockedError, match="another writer"):
            index.add(texts[4:5], document_ids=[4])
        with pytest.raises(IndexLockedError):
            other.delete([0])
    assert len(DocumentIndex.open(path, model=model)) == 4
    index.add(texts[4:5], document_ids=[4])
    other.add(texts[5:6], document_ids=[5])  # follows the first writer's change, then commits its own
    assert DocumentIndex.open(path, model=model).document_ids == [0, 1, 2, 3, 4, 5]


_CRASH_HELPER = r'''
import hashlib, json, os, shutil, sys
import numpy as np
import killpoints
from lightcol import DocumentIndex, LateInteractionTextEmbedding

root, backend, op, onnx = sys.argv[1:5]
texts = json.loads(sys.argv[5])
model = LateInteractionTextEmbedding(specific_model_path=onnx, cuda=False)

def embed(batch, batch_size=None, **kw):  # no ONNX Runtime in the forked writers: vectors from the text
    for t in batch:
        rng = np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
        x = rng.standard_normal((4, model.dim)).astype(np.float32)
        yield x / np.linalg.norm(x, axis=1, keepdims=True)

model.embed = embed
model.query_embed = lambda batch, **kw: (x[:2] for x in embed(list(batch)))
seed = os.path.join(root, "seed")
ix = DocumentIndex.create(seed, model, texts=texts[:10], document_ids=list(range(10)), backend=backend)
ix.add(texts[10:12], document_ids=[10, 11])
ix.close()

def change(ix):
    if op == "add":
        ix.add(texts[12:14], document_ids=[12, 13])
    else:
        ix.delete([1, 10])

def state(path):
    ix = DocumentIndex.open(path, model=model)
    hits = ix.search("query", k=50)
    out = json.dumps([ix.document_ids, sorted(r["passage_id"] for r in hits), len(ix._vectors.ids)])
    ix.close()
    return out

def fresh():
    d = os.path.join(root, "run")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(seed, d)
    return d

def change_at(p):
    ix = DocumentIndex.open(p, model=model)
    change(ix)
    ix.close()

def recover(p):  # the next writer recovers and clears what the crash left
    ix = DocumentIndex.open(p, model=model)
    ix.add(texts[14:15], document_ids=[99])
    left = {f for f in os.listdir(p) if "vectors-" in f}
    assert left == set(ix._vectors.files), (left, ix._vectors.files)
    ix.close()

out = killpoints.run(fresh, change_at, state, recover)
assert out["changed"]
print(json.dumps(out))
'''


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["add", "delete"])
def test_a_writer_killed_at_any_step_leaves_the_state_before_or_after(tmp_path, texts, backend, op):
    script = tmp_path / "helper.py"
    script.write_text(_CRASH_HELPER)
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": f"{here.parent}{os.pathsep}{here}", "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("LIGHTCOL_TEST_CRASH_AT", None)
    r = subprocess.run([sys.executable, str(script), str(tmp_path), backend, op, str(ONNX_DIR), json.dumps(texts)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["steps"] >= 4 and out["before"] + out["after"] == out["steps"], out
    # the database commits after every vector file is written (killed before it: the state before); then
    # the files of the earlier state are deleted (killed then: the state after)
    assert out["before"] >= 4 and out["after"] >= 1, out
