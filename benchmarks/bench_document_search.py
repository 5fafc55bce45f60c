#!/usr/bin/env python
"""DocumentIndex search for RAG: quality of keyword, MaxSim and hybrid search, and filter / keyword speed.

    python tools/make_bench_model.py                      # once: .bench/minilm-colbert-onnx
    nice python benchmarks/bench_document_search.py [--quality] [--speed]

Quality (``--quality``): CISI (1,460 abstracts, 76 judged queries) in a ``DocumentIndex`` (``--backend``,
default collection; MiniLM benchmark model, documents split at its 180 tokens), ranked by document
(``by_document=True``) in each mode: nDCG@10 and recall@100 for ``keyword`` (FTS5 BM25), ``maxsim``
and ``hybrid`` at several ``alpha`` and both fusions.

Speed (``--speed``): 100,000 passages (dict-gcide definitions as text, so FTS5 indexes real words;
*synthetic* unit vectors of 16-48 tokens, dim 128, in the ``--backend``: compressed ``index``, nbits
2, or exact float16 ``collection``), a
``tenant`` field with 100 values: p50 / p90 over the queries of unfiltered MaxSim search, MaxSim
filtered to one tenant (1% of the passages) and whether its results equal the exhaustive ranking
filtered afterwards, keyword search alone and filtered.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import (BENCH_MODEL, gcide_passages, gcide_queries, latencies_ms, load_cisi, machine, ndcg_at, p50_p99,
                    print_table, recall_at, require_bench_model)


def quality(args: argparse.Namespace) -> None:
    from lightcol import DocumentIndex, LateInteractionTextEmbedding

    docs, queries, qrels = load_cisi()
    q_ids = [q for q in queries if qrels.get(q)]
    q_texts = [queries[q] for q in q_ids]
    relevant = [qrels[q] for q in q_ids]
    model = LateInteractionTextEmbedding(specific_model_path=args.model, threads=args.threads, cuda=False)
    settings = [("keyword", "keyword", 0.5, "relative"), ("maxsim", "maxsim", 0.5, "relative")]
    settings += [(f"hybrid relative alpha={a}", "hybrid", a, "relative") for a in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    settings += [(f"hybrid rrf alpha={a}", "hybrid", a, "rrf") for a in (0.3, 0.5, 0.7)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        index = DocumentIndex.create(Path(tmp) / "cisi", model, texts=list(docs.values()), document_ids=list(docs),
                                     backend=args.backend)
        print(f"CISI: {len(index)} documents, {index.n_passages} passages, {len(q_ids)} judged queries "
              f"(built in {time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
        for name, mode, alpha, fusion in settings:
            t = time.perf_counter()
            found = index.search_many(q_texts, k=100, by_document=True, mode=mode, alpha=alpha, fusion=fusion)
            s = time.perf_counter() - t
            ranked = [[r["document_id"] for r in res] for res in found]
            rows.append([name, f"{ndcg_at(ranked, relevant, 10):.4f}", f"{recall_at(ranked, relevant, 100):.4f}",
                         f"{1000 * s / len(q_texts):.1f}"])
            print(f"  {name}: done", file=sys.stderr, flush=True)
        index.close()
    print(f"\nCISI by document, backend={args.backend}, model={args.model.name}")
    print_table(["mode", "nDCG@10", "R@100", "ms/query (k=100)"], rows)


def speed(args: argparse.Namespace) -> None:
    from lightcol import DocumentIndex, LateInteractionTextEmbedding, keyword, passage_search

    n = args.n
    texts = gcide_passages(n)
    rng = np.random.default_rng(0)
    lengths = rng.integers(16, 49, size=n)
    dim = 128

    def vectors():
        r = np.random.default_rng(1)
        for m in lengths.tolist():
            v = r.standard_normal((m, dim), dtype=np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            yield v

    model = LateInteractionTextEmbedding(specific_model_path=args.model, threads=args.threads, cuda=False)
    query_texts = gcide_queries(n, args.queries)
    qrng = np.random.default_rng(2)
    qv = []
    for _ in query_texts:
        q = qrng.standard_normal((32, dim), dtype=np.float32)
        qv.append(q / np.linalg.norm(q, axis=1, keepdims=True))
    metadata = [{"tenant": f"t{i % 100}", "year": 1990 + i % 35} for i in range(n)]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-document-search-"))
    path = workdir / f"gcide-{n}-synthetic-{args.backend}"
    if not (path / "documents.sqlite").exists() or args.rebuild:
        t = time.perf_counter()
        index = DocumentIndex.create(path, model, split_documents=False, backend=args.backend, dtype="float16",
                                     overwrite=True)
        model.embed = lambda texts, batch_size=64, **kw: vectors()  # synthetic vectors (see the module doc)
        index.add(texts, list(range(n)), metadata)
        index.close()
        print(f"built {n} passages in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    if args.build_only:
        return
    with DocumentIndex.open(path, model=model) as index:
        where = {"tenant": "t7"}
        vec = index._vectors

        def timed(fn):
            return p50_p99(latencies_ms(fn, range(len(qv))))

        def allowed_for():
            return index._allowed(where)

        rows = []
        rows.append(["MaxSim, unfiltered", *timed(lambda i: passage_search.top(vec, qv[i], 10, None))])
        rows.append(["MaxSim, filter 1% (SQL + search)",
                     *timed(lambda i: passage_search.top(vec, qv[i], 10, allowed_for()[1]))])
        rows.append(["  of which the SQL filter", *timed(lambda i: allowed_for())])
        # keyword search: the postings (read once per index state, on the first keyword search) against
        # FTS5 scoring every matching passage with bm25(), both timed here on the same queries
        stats = index._keyword_stats
        stats.refresh(index._meta["generation"], len(vec))
        t = time.perf_counter()
        post = keyword.Postings.read(index._conn)
        build_s = time.perf_counter() - t
        stats.postings_for(index._conn)
        sql = allowed_for()[0]
        for label, where_sql in (("unfiltered", None), ("filter 1%", sql)):
            rows.append([f"keyword (BM25), {label}", *timed(lambda i: index._ranked(
                query_texts[i], None, 10, "keyword", 0.5, "relative", where_sql, None))])
            rows.append([f"  FTS5 bm25() alone, {label}", *timed(lambda i: keyword._fts5_search(
                index._conn, keyword.match_expression(index._conn, query_texts[i], stats), 10, where_sql))])
        same = sum(keyword.search(index._conn, q, 10, None, stats) == keyword._fts5_search(
            index._conn, keyword.match_expression(index._conn, q, stats), 10, None) for q in query_texts)
        # exactness: the filtered results against the exhaustive (all decoded) ranking, filtered afterwards
        allowed = set(allowed_for()[1])
        exact = 0
        checks = min(args.exact_checks, len(qv))
        for i in range(checks):
            full = vec.search(qv[i], n, n_rerank=n) if args.backend == "index" else vec.search(qv[i], n)
            expected = [p for p, _ in full if p in allowed][:10]
            got = [p for p, _ in passage_search.top(vec, qv[i], 10, sorted(allowed))]
            exact += got == expected
    backend = "index backend nbits=2" if args.backend == "index" else "collection backend float16"
    print(f"\n{n:,} passages (gcide texts, synthetic vectors, {backend}), {len(qv)} queries, "
          f"filter {where} selects {len(allowed)} passages ({len(allowed) / n:.1%})")
    print_table(["search", "p50 ms", "p99 ms"], [[r[0], f"{r[1]:.2f}", f"{r[2]:.2f}"] for r in rows])
    print(f"filtered MaxSim top 10 equal to the exhaustive ranking filtered afterwards: {exact}/{checks} queries")
    print(f"keyword top 10 equal to FTS5 bm25()'s (passages and scores): {same}/{len(query_texts)} queries; "
          f"postings read in {build_s * 1000:.0f} ms, {post.nbytes / 2**20:.1f} MiB "
          f"({len(post.rows):,} postings, {len(post.terms):,} terms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=BENCH_MODEL)
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--backend", default="collection", choices=("collection", "index"))
    ap.add_argument("--n", type=int, default=100_000, help="passages of the speed test (default 100,000)")
    ap.add_argument("--queries", type=int, default=100, help="queries of the speed test (default 100)")
    ap.add_argument("--exact-checks", type=int, default=10, help="queries checked against exhaustive search")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workdir", default=None, help="folder keeping the speed test's index between runs "
                    "(default: a new temporary folder)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the index in --workdir")
    ap.add_argument("--build-only", action="store_true", help="build the speed test's index, time nothing (run the "
                    "build outside the benchmark lock, the timing inside)")
    args = ap.parse_args()
    require_bench_model(args.model)
    if not args.quality and not args.speed:
        args.quality = args.speed = True
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}, threads={args.threads or 'default'}")
    if args.quality:
        quality(args)
    if args.speed:
        speed(args)


if __name__ == "__main__":
    main()
