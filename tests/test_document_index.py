"""DocumentIndex: ids and metadata round trips, add/delete/reopen, duplicates, both backends, by_document."""

from __future__ import annotations

import os

import numpy as np
import pytest

import lightcol
from lightcol import DocumentIndex, maxsim
from lightcol.document_index import DB_NAME, document_id_for
from lightcol.splitting import split_documents

from conftest import ONNX_DIR, model_with_rules, random_texts

BACKENDS = ["collection", "index"]


@pytest.fixture(scope="module")
def texts():
    return random_texts(12, seed=5, max_words=150)


def _reference(model, texts, query, max_tokens=None):
    """Exact passage ranking by brute-force MaxSim: [(doc, text, score)] best first."""
    passages = split_documents(texts, model, max_tokens)
    vectors = list(model.embed([p.text for p in passages]))
    q = next(model.query_embed([query]))
    idx, scores = maxsim.rank(q, vectors, len(passages))
    return [(passages[i].doc, passages[i].text, s) for i, s in zip(idx.tolist(), scores.tolist(), strict=True)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_returns_ragatouille_results_with_ids_and_metadata(tmp_path, model, texts, backend) -> None:
    ids = [f"doc-{i}" for i in range(len(texts))]
    meta = [{"n": i, "tags": ["a", "b"], "title": f"T{i}"} if i % 2 == 0 else None for i in range(len(texts))]
    index = DocumentIndex.create(tmp_path / "ix", model, texts=texts, document_ids=ids, metadata=meta,
                                 max_document_length=32, backend=backend)
    assert len(index) == len(texts)
    assert index.document_ids == ids
    query = "late interaction retrieval"
    res = index.search(query, k=5, mode="maxsim")
    assert [r["rank"] for r in res] == [1, 2, 3, 4, 5]
    ref = _reference(model, texts, query, 32)[:5]
    if backend == "collection":  # exact MaxSim: the same passages and scores as brute force
        assert [(ids[d], t) for d, t, _ in ref] == [(r["document_id"], r["content"]) for r in res]
        np.testing.assert_allclose([r["score"] for r in res], [s for *_, s in ref], rtol=1e-5)
    for r in res:
        assert set(r) >= {"content", "score", "rank", "document_id", "passage_id"}
        i = ids.index(r["document_id"])
        assert r["content"] in texts[i]
        if meta[i] is None:
            assert "document_metadata" not in r and "metadata" not in r
        else:
            assert r["document_metadata"] == r["metadata"] == meta[i]
    assert res == sorted(res, key=lambda r: -r["score"])
    index.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_add_delete_reopen(tmp_path, model, texts, backend) -> None:
    path = tmp_path / "ix"
    index = DocumentIndex.create(path, model, max_document_length=24, backend=backend)
    assert len(index) == 0 and index.search("anything") == []
    first = index.add(texts[:8], metadata=[{"i": i} for i in range(8)])
    assert first == [document_id_for(t) for t in texts[:8]]  # generated: content hash
    index.add(texts[8:], document_ids=[100, 101, 102, 103])  # int ids stay ints
    n_passages = index.n_passages
    before = index.search_many(["query document", "science library"], k=6)
    index.close()

    index = DocumentIndex.open(path)  # the model recorded at creation (the fixture folder)
    assert index.model.model_dir == ONNX_DIR.absolute()
    assert len(index) == 12 and index.n_passages == n_passages
    assert index.document_ids == first + [100, 101, 102, 103]
    assert index.search_many(["query document", "science library"], k=6) == before
    assert index.get(101) == {"document_id": 101, "content": texts[9]}
    assert index.get(first[3])["document_metadata"] == {"i": 3}

    index.delete([first[0], 101])
    index.delete(102)
    assert len(index) == 9 and first[0] not in index and 101 not in index and "101" not in index
    left = {r["document_id"] for r in index.search("query document", k=50, by_document=True)}
    assert left == set(index.document_ids) and len(left) == 9
    files = {f for f in os.listdir(path) if f.startswith("vectors-")}
    assert files == set(index._vectors.files)  # older states' files are removed once the switch is committed
    index.close()

    index = DocumentIndex.open(path, model=model)
    assert len(index) == 9
    with pytest.raises(lightcol.ArgumentError, match="not in the index"):
        index.delete(["nope", first[1]])
    assert len(index) == 9
    index.delete(index.document_ids)
    assert len(index) == 0 and index.n_passages == 0 and index.search("query") == []
    index.add(texts[:2])  # after emptying: vectors again
    assert len(index.search("query", k=3)) == 3 or index.n_passages < 3


def test_duplicate_ids_are_named_and_nothing_is_added(tmp_path, model, texts) -> None:
    index = DocumentIndex.create(tmp_path / "ix", model)
    index.add(texts[:3], document_ids=["a", "b", "c"])
    with pytest.raises(lightcol.DuplicateIdError, match="'b'.*already in the index"):
        index.add(texts[3:5], document_ids=["x", "b"])
    with pytest.raises(lightcol.DuplicateIdError, match="'y'.*given twice"):
        index.add(texts[3:5], document_ids=["y", "y"])
    with pytest.raises(lightcol.DuplicateIdError, match="generated from the text"):
        index.add([texts[6], texts[6]])
    assert len(index) == 3 and "x" not in index
    index.add(texts[3:4], document_ids=[1])
    index.add(texts[4:5], document_ids=["1"])  # str and int ids are distinct
    assert index.document_ids == ["a", "b", "c", 1, "1"]


def test_bad_arguments(tmp_path, model, texts) -> None:
    index = DocumentIndex.create(tmp_path / "ix", model)
    with pytest.raises(lightcol.ArgumentError, match=r"metadata\[1\] is not JSON"):
        index.add(texts[:2], metadata=[{"ok": 1}, {"bad": object()}])
    with pytest.raises(lightcol.ArgumentError, match=r"metadata\[0\] is list"):
        index.add(texts[:1], metadata=[[1, 2]])
    with pytest.raises(lightcol.ArgumentError, match="2 texts but 1 document_ids"):
        index.add(texts[:2], document_ids=["a"])
    with pytest.raises(lightcol.ArgumentError, match="ids must be str or int"):
        index.add(texts[:1], document_ids=[1.5])
    with pytest.raises(lightcol.ArgumentError, match="list of str"):
        index.add("one text")
    assert len(index) == 0
    with pytest.raises(FileExistsError, match="overwrite=True"):
        DocumentIndex.create(tmp_path / "ix", model)
    DocumentIndex.create(tmp_path / "ix", model, overwrite=True).close()
    with pytest.raises(lightcol.ArgumentError, match="document length"):
        DocumentIndex.create(tmp_path / "iy", model, max_document_length=65)
    with pytest.raises(lightcol.ArgumentError, match="backend"):
        DocumentIndex.create(tmp_path / "iz", model, backend="faiss")
    with pytest.raises(FileNotFoundError):
        DocumentIndex.open(tmp_path / "missing")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("aggregation", [("max", 0.0), ("lead", 0.2), ("mean", 0.3)])
def test_by_document_gives_each_document_once_scored_from_its_passages(tmp_path, model, texts, backend, aggregation,
                                                                       monkeypatch) -> None:
    import lightcol.document_index as di

    monkeypatch.setattr(di, "DOCUMENT_AGGREGATION", aggregation)
    index = DocumentIndex.create(tmp_path / "ix", model, texts=texts, max_document_length=16, backend=backend)
    query = "retrieval model evaluation"
    passages = index.search(query, k=index.n_passages, mode="maxsim")  # exhaustive on both backends
    by_doc: dict = {}
    for r in sorted(passages, key=lambda r: r["passage_id"]):  # passage order: the lead passage first
        by_doc.setdefault(r["document_id"], []).append(r)
    how, w = aggregation
    expected = []
    for doc, rs in by_doc.items():
        best = max(rs, key=lambda r: r["score"])
        scores = [r["score"] for r in rs]
        score = {"max": best["score"], "lead": (1 - w) * best["score"] + w * scores[0],
                 "mean": (1 - w) * best["score"] + w * sum(scores) / len(scores)}[how]
        expected.append((doc, best["passage_id"], score))
    expected.sort(key=lambda e: -e[2])
    for k in (1, 4, 50):
        docs = index.search(query, k=k, by_document=True, mode="maxsim")
        assert [(r["document_id"], r["passage_id"]) for r in docs] == [e[:2] for e in expected[:k]]
        np.testing.assert_allclose([r["score"] for r in docs], [e[2] for e in expected[:k]], rtol=1e-5)
        assert [r["rank"] for r in docs] == list(range(1, min(k, len(texts)) + 1))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("by_document", [False, True])
def test_search_many_equals_search(tmp_path, model, texts, backend, by_document) -> None:
    index = DocumentIndex.create(tmp_path / "ix", model, texts=texts, max_document_length=20, backend=backend)
    queries = ["late interaction", "library catalog science", "precision and recall"]
    many = index.search_many(queries, k=7, by_document=by_document)
    for q, res in zip(queries, many, strict=True):
        one = index.search(q, k=7, by_document=by_document)
        assert [(r["passage_id"], r["rank"]) for r in res] == [(r["passage_id"], r["rank"]) for r in one]
        np.testing.assert_allclose([r["score"] for r in res], [r["score"] for r in one], rtol=1e-5)


def test_unsplit_documents_are_one_passage_each(tmp_path, model, texts) -> None:
    index = DocumentIndex.create(tmp_path / "ix", model, texts=texts, split_documents=False)
    assert index.n_passages == len(texts)
    res = index.search("document", k=3)
    assert all(r["content"] == texts[index.document_ids.index(r["document_id"])] for r in res)


def test_open_checks_the_model(tmp_path, model, texts) -> None:
    path = tmp_path / "ix"
    DocumentIndex.create(path, model, texts=texts[:2], max_document_length=32).close()
    # a copy of the model folder with other rules: refused, naming what differs
    other = model_with_rules(tmp_path / "other-model", query_length=16)
    with pytest.raises(lightcol.IncompatibleModelError, match="query_length: 32 in the index, 16 in the model"):
        DocumentIndex.open(path, model=other)
    model_with_rules(other, query_length=32, document_length=24)
    with pytest.raises(lightcol.IncompatibleModelError, match="passages of up to 32 tokens"):
        DocumentIndex.open(path, model=str(other))
    model_with_rules(other, document_length=48)  # longer documents: compatible
    assert len(DocumentIndex.open(path, model=other)) == 2
    model_with_rules(other, model="someone/else")
    with pytest.raises(lightcol.IncompatibleModelError, match="built with model 'lightcol/tiny-colbert'"):
        DocumentIndex.open(path, model=other)


def test_not_a_document_index(tmp_path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"garbage" * 100)
    with pytest.raises(lightcol.IndexFormatError):
        DocumentIndex.open(tmp_path)


def test_a_failed_write_leaves_the_index_unchanged(tmp_path, model, texts, monkeypatch) -> None:
    index = DocumentIndex.create(tmp_path / "ix", model, texts=texts[:4], document_ids=["a", "b", "c", "d"])
    before = index.search("query", k=5)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(lightcol.MultiVectorCollection, "save", boom)  # the new segment
    with pytest.raises(OSError, match="disk full"):
        index.add(texts[4:6], document_ids=["e", "f"])
    monkeypatch.undo()
    from lightcol.index import storage

    monkeypatch.setattr(storage.Writer, "commit", boom)  # the manifest with the tombstones
    with pytest.raises(OSError, match="disk full"):
        index.delete(["a"])
    monkeypatch.undo()
    assert index.document_ids == ["a", "b", "c", "d"]
    assert index.search("query", k=5) == before
    reopened = DocumentIndex.open(tmp_path / "ix", model=model)
    assert reopened.document_ids == ["a", "b", "c", "d"] and reopened.search("query", k=5) == before
    first = sorted(f for f in os.listdir(tmp_path / "ix") if f.startswith("vectors-"))
    assert first == ["vectors-1.collection", "vectors-1.collection.g1.npz"]
    # a file left by a write that crashed goes with the next change; the first segment stays as it was
    (tmp_path / "ix" / "vectors-0.npz").write_bytes(b"stale")
    (tmp_path / "ix" / ".vectors-2.collection.g2.npz.x1.tmp").write_bytes(b"stale")
    inode = os.stat(tmp_path / "ix" / first[1]).st_ino
    reopened.add(texts[4:5], document_ids=["e"])
    assert sorted(f for f in os.listdir(tmp_path / "ix") if "vectors-" in f) == [
        "vectors-1.collection.g1.npz", "vectors-2.collection", "vectors-2.collection.g2.npz"]
    assert os.stat(tmp_path / "ix" / first[1]).st_ino == inode


def test_langchain_retriever_returns_documents(tmp_path, model, texts) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    meta = [{"source": f"s{i}"} for i in range(len(texts))]
    index = DocumentIndex.create(tmp_path / "ix", model, texts=texts, document_ids=[f"d{i}" for i in range(len(texts))],
                                 metadata=meta, max_document_length=24)
    query = "information retrieval"
    docs = index.as_langchain_retriever(k=3).invoke(query)
    expected = index.search(query, k=3)
    assert all(isinstance(d, Document) for d in docs)
    assert [d.page_content for d in docs] == [r["content"] for r in expected]
    for d, r in zip(docs, expected, strict=True):
        assert d.metadata["document_id"] == r["document_id"] and d.metadata["passage_id"] == r["passage_id"]
        assert d.metadata["source"] == r["document_metadata"]["source"]
        assert d.metadata["relevance_score"] == pytest.approx(r["score"], rel=1e-5)
    per_doc = index.as_langchain_retriever(k=4, by_document=True).invoke(query)
    assert len({d.metadata["document_id"] for d in per_doc}) == 4


def test_a_reader_follows_changes_committed_by_another_writer(tmp_path, model, texts) -> None:
    writer = DocumentIndex.create(tmp_path / "ix", model, texts=texts[:4], document_ids=["a", "b", "c", "d"])
    reader = DocumentIndex.open(tmp_path / "ix", model=model)
    assert {r["document_id"] for r in reader.search("query", k=10, by_document=True)} == {"a", "b", "c", "d"}
    writer.delete(["b", "c"])
    writer.add(texts[4:5], document_ids=["e"])
    assert {r["document_id"] for r in reader.search("query", k=10, by_document=True)} == {"a", "d", "e"}
    assert reader.search("query", k=10) == writer.search("query", k=10)
