#!/usr/bin/env python
"""Document scores from passages: which ``by_document`` aggregation ranks documents best, vs truncation.

    python tools/make_bench_model.py                 # once: .bench/minilm-colbert-onnx
    nice python benchmarks/bench_document_scores.py [--length 64]

The MiniLM benchmark model with a document length of ``--length`` tokens embeds each collection twice:
every document truncated at that length (one vector set per document), and split into passages that
fit (:func:`lightcol.split_documents`). Each document-level ranking is scored by nDCG@10 and
recall@100 (exhaustive MaxSim); a document's score from its passages' scores, in passage order:

* ``max``: its best passage (what ``by_document`` did before);
* ``lead w``: ``(1 - w) * best + w * first passage`` (a prior for the lead passage);
* ``mean w``: ``(1 - w) * best + w * mean of its passages``.

Collections:

* CISI: 1,460 abstracts (title + abstract), 112 queries (76 judged); documents are longer than 64
  tokens (median ~ 150), so splitting matters.
* gcide-3000: 3,000 definitions of Debian's dict-gcide (700 characters at most, headword first), with
  200 synthetic known-item queries: for a definition picked at random, 8 words drawn in order from the
  first 16 words of its definition (headword, pronunciation, etymology and part of speech removed),
  the definition alone judged relevant. Short documents whose lead carries the topic: the kind of
  collection where a best-passage ranking loses to truncation.

Score matrices are cached in ``.bench/document-scores/`` (delete to re-embed).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import (BENCH, BENCH_MODEL, _description, _gcide_entries, load_cisi, ndcg_at, print_table, recall_at,
                    require_bench_model)

from bench_documents import with_length
from lightcol import LateInteractionTextEmbedding, maxsim, split_documents

AGGREGATIONS = [("max", 0.0), ("lead", 0.1), ("lead", 0.2), ("lead", 0.3), ("lead", 0.5), ("mean", 0.1),
                ("mean", 0.3), ("mean", 0.5)]


def gcide_collection(n_docs: int = 3000, n_queries: int = 200, seed: int = 3):
    entries = _gcide_entries()[:n_docs]
    rng = random.Random(seed)
    order = list(range(n_docs))
    rng.shuffle(order)
    queries, relevant = [], []
    for i in order:
        d = _description(*entries[i])
        if not d:
            continue
        words = d.split()
        picked = sorted(rng.sample(range(len(words)), min(8, len(words))))
        queries.append(" ".join(words[j] for j in picked))
        relevant.append({i})
        if len(queries) == n_queries:
            break
    return [t for _, t in entries], queries, relevant


def aggregate(s: np.ndarray, owner: np.ndarray, first: np.ndarray, counts: np.ndarray, how: str, w: float) -> np.ndarray:
    n = len(counts)
    best = np.full(n, -np.inf, dtype=np.float64)
    np.maximum.at(best, owner, s)
    if how == "lead":
        return (1 - w) * best + w * s[first]
    if how == "mean":
        return (1 - w) * best + w * np.bincount(owner, weights=s, minlength=n) / counts
    return best


def run(name: str, texts: list[str], queries: list[str], relevant: list[set[int]], model, cache: Path) -> list[list]:
    passages = split_documents(texts, model)
    owner = np.array([p.doc for p in passages])
    f = cache / f"{name}-{model.spec.rules.document_length}.npz"
    if f.exists():
        with np.load(f) as z:
            split_scores, trunc_scores = z["split"], z["truncate"]
    else:
        pv = list(model.embed([p.text for p in passages], batch_size=32))
        tv = list(model.embed(texts, batch_size=32))
        qv = list(model.query_embed(queries))
        split_scores = np.stack(maxsim.score_many(qv, maxsim.pack(pv)))
        trunc_scores = np.stack(maxsim.score_many(qv, maxsim.pack(tv)))
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(f, split=split_scores, truncate=trunc_scores)
    n = len(texts)
    counts = np.bincount(owner, minlength=n)
    first = np.searchsorted(owner, np.arange(n))  # passages are in document order

    def row(label: str, doc_scores: np.ndarray) -> list:
        ranked = [np.argsort(-s, kind="stable")[:100].tolist() for s in doc_scores]
        return [name, label, f"{ndcg_at(ranked, relevant, 10):.4f}", f"{recall_at(ranked, relevant, 100):.4f}"]

    rows = [row("truncate", trunc_scores)]
    for how, w in AGGREGATIONS:
        label = "max (best passage)" if how == "max" else f"{how} {w}"
        rows.append(row(label, np.stack([aggregate(s, owner, first, counts, how, w) for s in split_scores])))
    print(f"{name}: {n} documents, {len(passages)} passages, {len(queries)} queries", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=BENCH_MODEL)
    ap.add_argument("--length", type=int, default=64, help="document length of the model (default 64)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cache", type=Path, default=BENCH / "document-scores")
    args = ap.parse_args()
    require_bench_model(args.model)
    docs, queries, qrels = load_cisi()
    ids = list(docs)
    cisi_rel = [{ids.index(d) for d in qrels.get(q, set()) if d in docs} for q in queries]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = LateInteractionTextEmbedding(specific_model_path=with_length(args.model, args.length, Path(tmp)),
                                             threads=args.threads, cuda=False)
        rows += run("CISI", list(docs.values()), list(queries.values()), cisi_rel, model, args.cache)
        rows += run("gcide-3000", *gcide_collection(), model, args.cache)
    print(f"document length {args.length}, model {args.model.name}")
    print_table(["collection", "document score", "nDCG@10", "R@100"], rows)


if __name__ == "__main__":
    main()
