#!/usr/bin/env python
"""Vector stores on CISI: Qdrant local mode and embedded LanceDB vs lightcol's exhaustive MaxSim (quality,
agreement, speed), with the MiniLM benchmark model (``.bench/minilm-colbert-onnx``).

    python benchmarks/bench_integrations.py [--docs 300] [--batch-size 64]

Quality (all 1,460 CISI documents, the 76 judged queries): nDCG@10 of lightcol's exhaustive MaxSim
(``MultiVectorCollection.search``), Qdrant local mode (``:memory:``, plain MaxSim, and MUVERA prefetch +
MaxSim rerank with FastEmbed's default and the fitted encoder) and embedded LanceDB, with each store's
agreement with the exhaustive top 10 (same ids in the same order; recall@10 for MUVERA). The
documents are embedded once and handed to every store through a model stand-in that returns the
cached vectors, so the stores see exactly the vectors lightcol ranks.

Throughput (the first ``--docs`` documents, real embedding each time): documents/s of
``model.embed`` alone, of ``qdrant.upsert`` into local mode and of ``lancedb.create_table``
(embedding + storing), best of ``--rounds`` interleaved rounds, and their ratio to embedding alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np
from common import BENCH_MODEL, load_cisi, ndcg_at_k, print_table, require_bench_model, timed

from lightcol import LateInteractionTextEmbedding, Muvera, MultiVectorCollection
from lightcol.muvera import FASTEMBED_DEFAULTS, RECOMMENDED_FIT


class CachedModel:
    """The model, except that ``embed`` returns vectors computed before (same texts, same order)."""

    def __init__(self, model: LateInteractionTextEmbedding, cache: dict[str, np.ndarray]) -> None:
        self._model, self._cache = model, cache
        self.embedding_size = model.embedding_size

    def embed(self, texts: Any, batch_size: int = 64) -> Any:
        return (self._cache[t] for t in texts)

    def query_embed(self, texts: Any, batch_size: int = 64) -> Any:
        return self._model.query_embed(texts, batch_size=batch_size)


def quality(model: LateInteractionTextEmbedding, batch_size: int, prefetch: int) -> tuple[int, list[tuple[str, float, str, float]]]:
    from qdrant_client import QdrantClient

    import lancedb
    from lightcol.integrations import lancedb as lc
    from lightcol.integrations import qdrant

    docs, queries, qrels = load_cisi()
    ids, texts = list(docs), list(docs.values())
    judged = [(qid, queries[qid]) for qid in queries if qrels.get(qid)]
    t = time.perf_counter()
    vectors = list(model.embed(texts, batch_size=batch_size))
    print(f"embedded {len(texts)} CISI documents in {time.perf_counter() - t:.0f} s", flush=True)
    cached = CachedModel(model, dict(zip(texts, vectors, strict=True)))
    qv = {qid: next(model.query_embed([q])) for qid, q in judged}

    collection = MultiVectorCollection()
    collection.add(ids, vectors)
    reference = {qid: [i for i, _ in collection.search(qv[qid], k=10)] for qid, _ in judged}

    runs: dict[str, Any] = {}
    client = QdrantClient(":memory:")
    qdrant.create_collection(client, "cisi", model)
    qdrant.upsert(client, "cisi", documents=texts, ids=ids, model=cached, batch_size=batch_size, show_progress=False)
    runs["Qdrant local, MaxSim"] = lambda q: [p.id for p in qdrant.query(client, "cisi", q, model=model, limit=10)]
    encoders = {"FastEmbed's default": Muvera(model.embedding_size, **FASTEMBED_DEFAULTS),
                "fitted, RECOMMENDED_FIT": Muvera.fit(vectors, **RECOMMENDED_FIT)}
    for label, muvera in encoders.items():
        name = f"cisi-muvera-{len(runs)}"
        qdrant.create_collection(client, name, model, muvera=muvera)
        qdrant.upsert(client, name, documents=texts, ids=ids, model=cached, muvera=muvera,
                      batch_size=batch_size, show_progress=False)
        runs[f"Qdrant local, MUVERA ({label}) prefetch {prefetch} + MaxSim"] = (
            lambda q, name=name, muvera=muvera: [
                p.id for p in qdrant.query(client, name, q, model=model, limit=10, muvera=muvera, prefetch_limit=prefetch)
            ]
        )
    db = lancedb.connect(tempfile.mkdtemp(prefix="lightcol-bench-lance-"))
    table = lc.create_table(db, "cisi", cached, documents=texts, ids=ids, batch_size=batch_size, show_progress=False)
    runs["LanceDB embedded"] = lambda q: [r["id"] for r in lc.search(table, q, model=model, limit=10)]

    rows = [("lightcol exhaustive (MultiVectorCollection)",
             float(np.mean([ndcg_at_k(reference[qid], qrels[qid]) for qid, _ in judged])), "reference", 0.0)]
    for name, run in runs.items():
        nd, same, recall, secs = [], 0, [], 0.0
        for qid, q in judged:
            t = time.perf_counter()
            got = run(q)
            secs += time.perf_counter() - t
            nd.append(ndcg_at_k(got, qrels[qid]))
            same += got == reference[qid]
            recall.append(len(set(got) & set(reference[qid])) / 10)
        agree = f"{same}/{len(judged)} identical, recall@10 {np.mean(recall):.3f}"
        rows.append((name, float(np.mean(nd)), agree, 1000 * secs / len(judged)))
    client.close()
    return len(judged), rows


def throughput(model: LateInteractionTextEmbedding, n_docs: int, batch_size: int, rounds: int) -> list[tuple[str, float]]:
    """Best docs/s of each path over ``rounds`` interleaved rounds (embed, Qdrant, LanceDB, embed, ...):
    the machine's load drifts, so each path gets the same chances."""
    from qdrant_client import QdrantClient

    import lancedb
    from lightcol.integrations import lancedb as lc
    from lightcol.integrations import qdrant

    docs, _, _ = load_cisi()
    ids, texts = list(docs)[:n_docs], list(docs.values())[:n_docs]
    list(model.embed(texts[:batch_size], batch_size=batch_size))  # warm-up

    def embed_only() -> None:
        for _ in model.embed(texts, batch_size=batch_size):
            pass

    def qdrant_upsert() -> None:
        client = QdrantClient(":memory:")
        qdrant.create_collection(client, "tp", model)
        qdrant.upsert(client, "tp", documents=texts, ids=ids, model=model, batch_size=batch_size, show_progress=False)
        client.close()

    def lance_create() -> None:
        db = lancedb.connect(tempfile.mkdtemp(prefix="lightcol-bench-lance-"))
        lc.create_table(db, "tp", model, documents=texts, ids=ids, batch_size=batch_size, show_progress=False)

    paths = {"embed only": embed_only, "qdrant.upsert (local :memory:)": qdrant_upsert,
             "lancedb.create_table (embedded)": lance_create}
    best = dict.fromkeys(paths, 0.0)
    for _ in range(rounds):
        for name, run in paths.items():
            best[name] = max(best[name], n_docs / timed(run))
    return list(best.items())


def report_throughput(model: LateInteractionTextEmbedding, args: argparse.Namespace) -> None:
    tp = throughput(model, args.docs, args.batch_size, args.rounds)
    embed = tp[0][1]
    print(f"\nThroughput, first {args.docs} CISI documents, batch_size {args.batch_size}, best of {args.rounds} "
          "interleaved rounds (ratio to embedding only):")
    print_table(("path", "docs/s", "ratio"), [(name, f"{dps:.1f}", f"{dps / embed:.2f}") for name, dps in tp])


def report_quality(model: LateInteractionTextEmbedding, args: argparse.Namespace) -> None:
    n_queries, rows = quality(model, args.batch_size, args.prefetch)
    print(f"\nCISI nDCG@10 (all documents, {n_queries} judged queries), MiniLM ColBERT:")
    print_table(("search path", "nDCG@10", "top 10 vs exhaustive", "ms/query"),
                [(name, f"{nd:.4f}", agree, f"{ms:.1f}") for name, nd, agree, ms in rows])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=300, help="documents for the throughput runs (default 300)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds, best of (default 3)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--prefetch", type=int, default=100, help="MUVERA candidates reranked by MaxSim (default 100)")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args()
    model = LateInteractionTextEmbedding(specific_model_path=require_bench_model(BENCH_MODEL), cuda=False)
    if not args.skip_throughput:
        report_throughput(model, args)
    if not args.skip_quality:
        report_quality(model, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
