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
* gcide-3000: 3,000 definitions of Debian's dict-gcide (700 characters at most, headword first: ~2
  passages each at 64 tokens), with two sets of 200 synthetic judged queries: ``describe`` (for a
  definition picked at random, 8 words drawn in order from the first 16 words of its definition,
  headword, pronunciation, etymology and part of speech removed; that definition relevant) and
  ``headword`` (a headword alone, as a name look-up; every entry of that headword relevant: the
  topic sits in the lead, and the later passages of long entries are distractors).

Vectors (float16) are cached in ``.bench/document-scores/`` (delete to re-embed).
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
    """Texts, and two query sets: ``describe`` (8 words of a definition's start, that entry relevant)
    and ``headword`` (a headword alone, every entry of that headword relevant)."""
    entries = _gcide_entries()[:n_docs]
    rng = random.Random(seed)
    order = list(range(n_docs))
    rng.shuffle(order)
    describe, describe_rel = [], []
    for i in order:
        d = _description(*entries[i])
        if not d:
            continue
        words = d.split()
        picked = sorted(rng.sample(range(len(words)), min(8, len(words))))
        describe.append(" ".join(words[j] for j in picked))
        describe_rel.append({i})
        if len(describe) == n_queries:
            break
    by_head: dict[str, set[int]] = {}
    for i, (head, _) in enumerate(entries):
        by_head.setdefault(head.lower(), set()).add(i)
    heads = sorted(h for h in by_head if any(c.isalpha() for c in h))
    picked_heads = random.Random(seed + 1).sample(heads, n_queries)
    return [t for _, t in entries], {"describe": (describe, describe_rel),
                                     "headword": (picked_heads, [by_head[h] for h in picked_heads])}


def aggregate(s: np.ndarray, owner: np.ndarray, first: np.ndarray, counts: np.ndarray, how: str, w: float) -> np.ndarray:
    n = len(counts)
    best = np.full(n, -np.inf, dtype=np.float64)
    np.maximum.at(best, owner, s)
    if how == "lead":
        return (1 - w) * best + w * s[first]
    if how == "mean":
        return (1 - w) * best + w * np.bincount(owner, weights=s, minlength=n) / counts
    return best


def _vectors(model, texts: list[str], f: Path) -> list[np.ndarray]:
    """Embedded ``texts``, cached in ``f`` (float16)."""
    if f.exists():
        with np.load(f) as z:
            v, off = z["vectors"].astype(np.float32), z["offsets"]
        return [v[off[i] : off[i + 1]] for i in range(len(off) - 1)]
    out = list(model.embed(texts, batch_size=32))
    f.parent.mkdir(parents=True, exist_ok=True)
    off = np.zeros(len(out) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in out], out=off[1:])
    np.savez(f, vectors=np.concatenate(out).astype(np.float16), offsets=off)
    return [x.astype(np.float16).astype(np.float32) for x in out]  # as read back from the cache


def run(name: str, texts: list[str], query_sets: dict, model, cache: Path) -> list[list]:
    passages = split_documents(texts, model)
    owner = np.array([p.doc for p in passages])
    length = model.spec.rules.document_length
    pv = _vectors(model, [p.text for p in passages], cache / f"{name}-{length}-passages.npz")
    tv = _vectors(model, texts, cache / f"{name}-{length}-truncated.npz")
    n = len(texts)
    counts = np.bincount(owner, minlength=n)
    first = np.searchsorted(owner, np.arange(n))  # passages are in document order
    rows = []
    for qname, (queries, relevant) in query_sets.items():
        qv = list(model.query_embed(queries))
        split_scores = np.stack(maxsim.score_many(qv, maxsim.pack(pv)))
        trunc_scores = np.stack(maxsim.score_many(qv, maxsim.pack(tv)))

        def row(label: str, doc_scores: np.ndarray) -> list:
            ranked = [np.argsort(-s, kind="stable")[:100].tolist() for s in doc_scores]
            return [f"{name} ({qname}, {len(queries)} queries)", label, f"{ndcg_at(ranked, relevant, 10):.4f}",
                    f"{recall_at(ranked, relevant, 100):.4f}"]

        rows.append(row("truncate", trunc_scores))
        for how, w in AGGREGATIONS:
            label = "max (best passage)" if how == "max" else f"{how} {w}"
            rows.append(row(label, np.stack([aggregate(s, owner, first, counts, how, w) for s in split_scores])))
    print(f"{name}: {n} documents, {len(passages)} passages", file=sys.stderr, flush=True)
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
        texts, query_sets = gcide_collection()
        rows += run("gcide-3000", texts, query_sets, model, args.cache)
        rows += run("CISI", list(docs.values()), {"judged": (list(queries.values()), cisi_rel)}, model, args.cache)
    print(f"document length {args.length}, model {args.model.name}")
    print_table(["collection", "document score", "nDCG@10", "R@100"], rows)


if __name__ == "__main__":
    main()
