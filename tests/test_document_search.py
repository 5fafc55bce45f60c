"""DocumentIndex search for RAG: filters (both backends), keyword (FTS5) and hybrid modes, highlights,
count/get/delete by filter, the upgrade of a format-1 index, the CLI and the retrievers with filters."""

from __future__ import annotations

import json
import random
import sqlite3

import numpy as np
import pytest

import lightcol
from lightcol import DocumentIndex, FilterError
from lightcol.document_index import DB_NAME
from lightcol.fusion import RRF_K

from conftest import ONNX_DIR, random_texts
from filter_reference import matches

BACKENDS = ["collection", "index"]
LANGS = ["en", "fr", "de"]


@pytest.fixture(scope="module")
def corpus():
    texts = random_texts(40, seed=21, max_words=90)
    rng = random.Random(3)
    meta = [{"lang": LANGS[i % 3], "year": 2000 + i % 7, "tags": rng.sample(["a", "b", "c", "d"], 2),
             "date": f"2024-0{1 + i % 9}-1{i % 10}", "tenant": "acme" if i % 5 == 0 else "x'); DROP TABLE documents; --"}
            for i in range(len(texts))]
    meta[7] = None
    return texts, [f"d{i}" for i in range(len(texts))], meta


@pytest.fixture(scope="module", params=BACKENDS)
def index(request, tmp_path_factory, model, corpus):
    texts, ids, meta = corpus
    ix = DocumentIndex.create(tmp_path_factory.mktemp("ix") / request.param, model, texts=texts, document_ids=ids,
                              metadata=meta, max_document_length=24, backend=request.param)
    yield ix
    ix.close()


FILTERS = [
    {"lang": "en"},
    {"year": {"$gte": 2003, "$lt": 2005}},
    {"tags": {"$in": ["a"]}},
    {"$or": [{"lang": "fr"}, {"tags": "d"}]},
    {"$not": {"lang": "en"}},
    {"date": {"$gt": "2024-05-01"}},
    {"tenant": "x'); DROP TABLE documents; --"},
    {"lang": {"$ne": "de"}, "year": {"$nin": [2001, 2002]}},
    {"unknown": "x"},
    {"lang": "en", "year": 2000},
]


@pytest.mark.parametrize("where", FILTERS)
def test_filtered_search_is_the_filtered_exhaustive_ranking(index, corpus, where) -> None:
    texts, ids, meta = corpus
    allowed = {d for d, m in zip(ids, meta, strict=True) if matches(where, m)}
    query = "retrieval of late interaction vectors"
    everything = index.search(query, k=index.n_passages, mode="maxsim")  # exhaustive (index: all decoded)
    expected = [r for r in everything if r["document_id"] in allowed]
    for k in (1, 5, 200):
        got = index.search(query, k=k, where=where, mode="maxsim")
        assert len(got) == min(k, len(expected))  # k results whenever k passages match
        assert [(r["passage_id"], r["rank"]) for r in got] == [(r["passage_id"], i + 1) for i, r in
                                                               enumerate(expected[:k])]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected[:k]], rtol=1e-5)
    docs = index.search(query, k=4, where=where, by_document=True, mode="maxsim")
    assert len(docs) == min(4, len(allowed)) and len({r["document_id"] for r in docs}) == len(docs)
    assert {r["document_id"] for r in docs} <= allowed
    assert index.count(where) == len(allowed)
    assert [g["document_id"] for g in index.get(where=where)] == [d for d in ids if d in allowed]
    for mode in ("keyword", "hybrid"):
        assert {r["document_id"] for r in index.search(query, k=50, where=where, mode=mode)} <= allowed


def test_search_many_takes_the_filter(index) -> None:
    where = {"lang": {"$in": ["fr", "de"]}}
    queries = ["late interaction", "library catalog", "precision recall"]
    many = index.search_many(queries, k=6, where=where, mode="hybrid")
    assert many == [index.search(q, k=6, where=where, mode="hybrid") for q in queries]
    assert all(r["metadata"]["lang"] in ("fr", "de") for res in many for r in res)


def test_filter_errors_and_hostile_values(index) -> None:
    with pytest.raises(FilterError, match=r"where\['year'\]\['\$gte'\]: booleans"):
        index.search("q", where={"year": {"$gte": True}})
    with pytest.raises(FilterError, match="unknown operator"):
        index.count({"lang": {"$like": "e%"}})
    with pytest.raises(FilterError):
        index.delete(where={"$or": []})
    for value in ["'; DROP TABLE documents; --", "\" OR 1=1 --", "en' OR '1'='1"]:
        assert index.search("q", where={"lang": value}) == []
        assert index.count({value: "en"}) == 0 and index.get(where={"lang": {"$in": [value]}}) == []
    assert len(index) == 40 and index.count({}) == 40


@pytest.mark.parametrize("backend", BACKENDS)
def test_count_get_delete_by_filter(tmp_path, model, corpus, backend) -> None:
    texts, ids, meta = corpus
    ix = DocumentIndex.create(tmp_path / "ix", model, texts=texts[:12], document_ids=ids[:12], metadata=meta[:12],
                              max_document_length=24, backend=backend)
    assert ix.get("d3") == {"document_id": "d3", "content": texts[3], "document_metadata": meta[3]}
    page = ix.get(where={"lang": "en"}, limit=2, offset=1)
    assert [g["document_id"] for g in page] == ["d3", "d6"]
    with pytest.raises(lightcol.ArgumentError, match="document_id or where"):
        ix.get()
    assert ix.delete(where={"lang": "en"}) == 4
    assert ix.count({"lang": "en"}) == 0 and len(ix) == 8
    assert all(r.get("metadata", {}).get("lang") != "en" for r in ix.search("query", k=50))
    assert all(r.get("metadata", {}).get("lang") != "en" for r in ix.search("query", k=50, mode="keyword"))
    assert ix.delete(where={"lang": "none"}) == 0
    with pytest.raises(lightcol.ArgumentError, match="not both"):
        ix.delete(["d1"], where={"lang": "fr"})
    ix.close()
    ix = DocumentIndex.open(tmp_path / "ix", model=model)
    assert ix.count({"lang": "fr"}) == 3 and ix.count({"tags": "a"}) == sum(
        1 for m in meta[:12] if m and m["lang"] != "en" and "a" in m["tags"])
    ix.close()


def _fts_rows(path):
    conn = sqlite3.connect(path / DB_NAME)
    try:
        rows = dict(conn.execute("SELECT rowid, text FROM passages_fts"))
        passages = {pid: t for pid, t in conn.execute(
            "SELECT p.passage_id, substr(d.text, p.start + 1, p.end - p.start) FROM passages p "
            "JOIN documents d ON d.key = p.doc_key")}
        return rows, passages
    finally:
        conn.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_keyword_index_follows_adds_and_deletes(tmp_path, model, backend) -> None:
    texts = random_texts(6, seed=2, max_words=60)
    ix = DocumentIndex.create(tmp_path / "ix", model, max_document_length=24, backend=backend)
    ix.add(texts[:3] + ["the part number XJ-9000 is discontinued"], document_ids=[1, 2, 3, "part"])
    rows, passages = _fts_rows(tmp_path / "ix")
    assert rows == passages and len(rows) == ix.n_passages
    res = ix.search("XJ-9000", k=3, mode="keyword")
    assert res[0]["document_id"] == "part" and len(res) == 1  # no other passage holds either word
    assert ix.search("Discontinued parts", k=1, mode="keyword")[0]["document_id"] == "part"  # stemmed, case-folded
    assert ix.search("!!! ???", mode="keyword") == []
    ix.delete(["part", 2])
    rows, passages = _fts_rows(tmp_path / "ix")
    assert rows == passages and len(rows) == ix.n_passages
    assert ix.search("XJ-9000", mode="keyword") == []
    ix.add(texts[3:], document_ids=[4, 5, 6])
    rows, passages = _fts_rows(tmp_path / "ix")
    assert rows == passages and len(rows) == ix.n_passages
    # an add that fails inside its transaction (after the passages went in) leaves the keyword index as it was
    import lightcol.document_index as di

    def broken(*args):
        raise OSError("disk full")

    real = di._insert_fields
    di._insert_fields = broken
    try:
        with pytest.raises(OSError, match="disk full"):
            ix.add(["XJ-9000 again"], document_ids=[7], metadata=[{"a": 1}])
    finally:
        di._insert_fields = real
    assert ix.search("XJ-9000", mode="keyword") == [] and 7 not in ix
    rows, passages = _fts_rows(tmp_path / "ix")
    assert rows == passages and len(rows) == ix.n_passages
    ix.close()


def test_keyword_scores_are_bm25(tmp_path, model) -> None:
    texts = ["apple banana", "apple apple cherry", "banana cherry durian", "durian"]
    ix = DocumentIndex.create(tmp_path / "ix", model, texts=texts, document_ids=[0, 1, 2, 3])
    got = {r["document_id"]: r["score"] for r in ix.search("apple durian", k=10, mode="keyword")}
    n, avgdl = 4, sum(len(t.split()) for t in texts) / 4

    def bm25(doc, term):
        words = texts[doc].split()
        df = sum(term in t.split() for t in texts)
        idf = max(np.log((n - df + 0.5) / (df + 0.5)), 1e-6)
        tf = words.count(term)
        return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(words) / avgdl))

    expected = {d: bm25(d, "apple") + bm25(d, "durian") for d in range(4) if any(
        w in texts[d].split() for w in ("apple", "durian"))}
    assert got.keys() == expected.keys()
    for d in got:
        assert got[d] == pytest.approx(expected[d], rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_numpy_keyword_scorer_equals_fts5_bm25(tmp_path, model, backend) -> None:
    """Keyword search scores from cached postings: FTS5's bm25() ranking and values, after adds and
    deletes and with a filter, and FTS5 itself answers a word it reads as a phrase."""
    from lightcol import keyword

    texts = random_texts(30, seed=5, max_words=80) + ["Running runs ran RUNNER résumé resume", "snake_case words"]
    ix = DocumentIndex.create(tmp_path / "ix", model, max_document_length=24, backend=backend)
    ix.add(texts, document_ids=list(range(len(texts))), metadata=[{"even": i % 2 == 0} for i in range(len(texts))])
    rng = random.Random(9)
    queries = [" ".join(rng.sample(t.split(), min(6, len(t.split())))) for t in rng.sample(texts[:30], 8)]
    queries += ["running resume runner", "Résumé", "nothing-matches-zzz", "the of and"]
    from lightcol.document_index import _compile

    even = _compile({"even": True})  # the filter's SQL, as search(where=...) passes it

    def check() -> None:
        stats = ix._keyword_stats
        stats.refresh(ix._meta["generation"], ix.n_passages)
        for q in queries:
            for allowed in (None, even):
                expected = keyword._fts5_search(ix._conn, keyword.match_expression(ix._conn, q, stats), 1000, allowed)
                got = keyword.search(ix._conn, q, 1000, allowed, stats)
                assert [p for p, _ in got] == [p for p, _ in expected], q
                np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-9, atol=0)
                assert keyword.search(ix._conn, q, 3, allowed, stats) == got[:3]
            pids = [p for p, _ in expected][::2] + [10**9]
            assert keyword.scores(ix._conn, q, pids, stats) == pytest.approx(
                keyword.scores(ix._conn, q, pids, None), rel=1e-9, abs=0)
        assert stats.postings is not None  # the NumPy scorer answered

    check()
    before = ix._keyword_stats.postings
    ix.delete([3, 30])
    ix.add(["runner resume words", "a new passage about running"], document_ids=[100, 101])
    check()
    assert ix._keyword_stats.postings is not before  # re-read after the change
    # a word FTS5 tokenizes into two tokens is a phrase: FTS5 scores the query
    got = ix.search("snake_case", k=5, mode="keyword")
    assert [r["document_id"] for r in got] == [31]
    ix.close()


def test_hybrid_fuses_both_rankings(index) -> None:
    query = "information retrieval evaluation"
    dense = {r["passage_id"]: r["score"] for r in index.search(query, k=index.n_passages, mode="maxsim")}
    sparse = {r["passage_id"]: r["score"] for r in index.search(query, k=index.n_passages, mode="keyword")}
    # the fused candidates: each ranking's top 100 (here: every passage), each scored by both
    for fusion in ("relative", "rrf"):
        for alpha in (0.0, 0.3, 1.0):
            got = index.search(query, k=10, mode="hybrid", alpha=alpha, fusion=fusion)
            cand = set(dense)
            kw = {p: sparse.get(p, 0.0) for p in cand}
            if fusion == "relative":
                def norm(s):
                    lo, hi = min(s.values()), max(s.values())
                    return {p: (v - lo) / (hi - lo) for p, v in s.items()}
                d, s = norm(dense), norm(kw)
                fused = {p: alpha * d[p] + (1 - alpha) * s[p] for p in cand}
            else:
                rd = {p: i + 1 for i, p in enumerate(sorted(cand, key=lambda p: (-dense[p], p)))}
                rs = {p: i + 1 for i, p in enumerate(sorted(cand, key=lambda p: (-kw[p], p)))}
                fused = {p: alpha / (RRF_K + rd[p]) + (1 - alpha) / (RRF_K + rs[p]) for p in cand}
            expected = sorted(cand, key=lambda p: (-fused[p], p))[:10]
            assert [r["passage_id"] for r in got] == expected, (fusion, alpha)
            np.testing.assert_allclose([r["score"] for r in got], [fused[p] for p in expected], rtol=1e-5, atol=1e-9)
            for r in got:
                assert r["maxsim_score"] == pytest.approx(dense[r["passage_id"]], rel=1e-5)
                assert r["keyword_score"] == pytest.approx(kw[r["passage_id"]], rel=1e-6)
    if index.backend == "collection":  # alpha=1: the MaxSim ranking
        assert [r["passage_id"] for r in index.search(query, k=5, mode="hybrid", alpha=1.0)] == list(dense)[:5]


def test_search_options_are_checked(index) -> None:
    with pytest.raises(lightcol.ArgumentError, match="mode must be one of"):
        index.search("q", mode="bm25")
    with pytest.raises(lightcol.ArgumentError, match="alpha must be a number from 0"):
        index.search("q", mode="hybrid", alpha=1.5)
    with pytest.raises(lightcol.ArgumentError, match="fusion must be one of"):
        index.search("q", mode="hybrid", fusion="max")


def test_highlights_are_the_argmax_tokens_as_character_spans(index, model) -> None:
    from lightcol.highlights import token_spans

    query = "late interaction retrieval"
    res = index.search(query, k=3, mode="maxsim", highlights=True)
    q = next(model.query_embed([query]))
    for r in res:
        text = r["content"]
        vectors = next(model.embed([text]))
        spans = token_spans(model, text)
        assert len(spans) == len(vectors) and spans[0] is None and spans[1] is None and spans[-1] is None
        enc = model._doc_tokenizer.encode(text)
        words = {(s, e) for (s, e), sp in zip(enc.offsets, enc.special_tokens_mask, strict=True) if not sp}
        assert {s for s in spans if s is not None} <= words
        # the spans chosen: each query token's argmax passage token, merged when adjacent
        chosen = {spans[j] for j in (q @ vectors.T).argmax(axis=1).tolist() if spans[j] is not None}
        covered = set()
        for h in r["highlights"]:
            assert h["text"] == text[h["start"]:h["end"]] and h["text"].strip() == h["text"] and h["score"] > 0
            covered |= {s for s in chosen if h["start"] <= s[0] and s[1] <= h["end"]}
        assert covered == chosen
        starts = [h["start"] for h in r["highlights"]]
        assert starts == sorted(starts)
    assert "highlights" not in index.search(query, k=1)[0]
    assert index.search(query, k=2, mode="keyword", highlights=True)[0]["highlights"]


def test_a_format_1_index_is_upgraded_on_open(tmp_path, model, corpus) -> None:
    texts, ids, meta = corpus
    path = tmp_path / "ix"
    DocumentIndex.create(path, model, texts=texts[:9], document_ids=ids[:9], metadata=meta[:9],
                         max_document_length=24).close()
    # as lightcol wrote it before filters and keyword search: no fields, no FTS, format_version 1
    conn = sqlite3.connect(path / DB_NAME)
    for name in ("passages_fts_insert", "passages_fts_delete"):
        conn.execute(f"DROP TRIGGER {name}")
    for name in ("passages_vocab", "passages_fts", "fields"):
        conn.execute(f"DROP TABLE {name}")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    conn.commit()
    conn.close()
    ix = DocumentIndex.open(path, model=model)
    assert ix._meta["format_version"] == 2
    assert ix.count({"lang": "en"}) == 3
    rows, passages = _fts_rows(path)
    assert rows == passages and len(rows) == ix.n_passages
    assert ix.search("query", k=3, where={"lang": "fr"}, mode="hybrid")
    ix.add(texts[9:10], document_ids=[ids[9]], metadata=[meta[9]])
    assert ix.count({"lang": "en"}) == 4
    ix.close()
    ix = DocumentIndex.open(path, model=model)  # opens again without upgrading twice
    assert ix.count({"lang": "en"}) == 4 and len(_fts_rows(path)[0]) == ix.n_passages
    ix.close()


def test_cli_search_with_filter_mode_and_highlights(tmp_path, capsys, model, corpus) -> None:
    from lightcol.cli import main

    texts, ids, meta = corpus
    with open(tmp_path / "docs.jsonl", "w", encoding="utf-8") as f:
        for d, t, m in zip(ids[:15], texts[:15], meta[:15], strict=True):
            f.write(json.dumps({"id": d, "text": t, "metadata": m}) + "\n")
    ix = str(tmp_path / "docs")
    assert main(["index", "build", ix, "--documents", str(tmp_path / "docs.jsonl"), "--model-path", str(ONNX_DIR),
                 "--max-document-length", "24", "--backend", "collection", "-q"]) == 0
    capsys.readouterr()
    where = '{"lang": "fr", "year": {"$gte": 2002}}'
    assert main(["index", "search", ix, "late interaction", "-k", "3", "--where", where, "--mode", "hybrid",
                 "--alpha", "0.7", "--highlights"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    index = DocumentIndex.open(ix)
    expected = index.search("late interaction", k=3, where=json.loads(where), mode="hybrid", alpha=0.7,
                            highlights=True)
    assert json.loads(line)["results"] == json.loads(json.dumps(expected))
    assert all(r["metadata"]["lang"] == "fr" and r["metadata"]["year"] >= 2002 for r in expected)
    assert main(["index", "search", ix, "q", "--where", "{lang: fr}"]) == 2
    assert "--where is not JSON" in capsys.readouterr().err
    assert main(["index", "search", ix, "q", "--where", '{"lang": {"$regex": "f"}}']) == 2
    err = capsys.readouterr().err
    assert "--where" in err and "unknown operator '$regex'" in err and len(err.strip().splitlines()) == 1


def test_langchain_retriever_takes_filters(index) -> None:
    pytest.importorskip("langchain_core")
    query = "information retrieval"
    retriever = index.as_langchain_retriever(k=4, filter={"lang": "en"}, mode="hybrid")
    docs = retriever.invoke(query)
    expected = index.search(query, k=4, where={"lang": "en"}, mode="hybrid")
    assert [d.page_content for d in docs] == [r["content"] for r in expected]
    assert all(d.metadata["lang"] == "en" for d in docs)
    assert [d.metadata["relevance_score"] for d in docs] == [r["score"] for r in expected]
    docs = retriever.invoke(query, filter={"lang": "de"})  # per call
    assert docs and all(d.metadata["lang"] == "de" for d in docs)
    by_search_kwargs = index.as_langchain_retriever(search_kwargs_k := 2, where={"year": 2001}).invoke(query)
    assert len(by_search_kwargs) == search_kwargs_k and all(d.metadata["year"] == 2001 for d in by_search_kwargs)


def test_llama_index_retriever_takes_metadata_filters(index) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

    from lightcol.integrations.llama_index import where_from_filters

    filters = MetadataFilters(filters=[
        MetadataFilter(key="lang", value="fr"),
        MetadataFilters(filters=[MetadataFilter(key="year", value=2003, operator=FilterOperator.GTE),
                                 MetadataFilter(key="tags", value="a", operator=FilterOperator.CONTAINS)],
                        condition=FilterCondition.OR),
    ])
    where = where_from_filters(filters)
    assert where == {"$and": [{"lang": {"$eq": "fr"}}, {"$or": [{"year": {"$gte": 2003}}, {"tags": {"$eq": "a"}}]}]}
    nodes = index.as_llama_index_retriever(similarity_top_k=5, filters=filters, mode="maxsim").retrieve("catalog")
    expected = index.search("catalog", k=5, where=where, mode="maxsim")
    assert [n.node.get_content() for n in nodes] == [r["content"] for r in expected]
    assert all(n.node.metadata["lang"] == "fr" for n in nodes)
    with pytest.raises(FilterError, match="text_match"):
        where_from_filters(MetadataFilters(filters=[MetadataFilter(key="lang", value="f",
                                                                   operator=FilterOperator.TEXT_MATCH)]))


def test_a_large_filter_on_the_index_backend_goes_through_candidate_generation(tmp_path, model, corpus,
                                                                                monkeypatch) -> None:
    from lightcol import passage_search

    texts, ids, meta = corpus
    ix = DocumentIndex.create(tmp_path / "ix", model, texts=texts, document_ids=ids, metadata=meta,
                              max_document_length=24, backend="index")
    where = {"lang": {"$in": ["en", "fr"]}}
    exact = ix.search("library catalog", k=7, where=where, mode="maxsim")
    monkeypatch.setattr(passage_search, "EXACT_SUBSET", 2)  # every filter now takes the candidate path
    approx = ix.search("library catalog", k=7, where=where, mode="maxsim")
    assert len(approx) == 7 and all(r["metadata"]["lang"] in ("en", "fr") for r in approx)
    assert all(r["score"] <= exact[0]["score"] + 1e-6 for r in approx)
    # far more than the candidates can hold: the exhaustive fallback still gives k
    assert len(ix.search("library catalog", k=60, where=where, mode="maxsim")) == 60
    ix.close()
