#!/usr/bin/env python
"""Long documents on CISI: splitting into passages vs truncating at the model's length, document-level nDCG@10.

    python tools/make_bench_model.py            # once: .bench/minilm-colbert-onnx
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_documents.py [--length 64] [--overlap 16]

With the MiniLM benchmark model given a document length of ``--length`` tokens (a copy of its
folder whose ``lightcol_config.json`` says so; the ONNX files are linked, not copied), each CISI
abstract (title + abstract, 1,460 documents, 112 queries) is either truncated at that length (what
embedding does by default) or split with :func:`lightcol.split_documents` into passages that fit;
a document scores its best passage (exhaustive MaxSim), as ``DocumentIndex.search(by_document=True)``.
The reference row is the model's own length (180), truncating. Prints one table: passages, nDCG@10
and recall@100 at document level, embedding time, and splitting time as a share of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import BENCH_MODEL, load_cisi, ndcg_at, print_table, recall_at, require_bench_model

from lightcol import LateInteractionTextEmbedding, maxsim, split_documents
from lightcol.splitting import full_tokenizer


def with_length(model_dir: Path, length: int, into: Path) -> Path:
    """A folder like ``model_dir`` (files linked) whose rules have ``document_length = length``."""
    folder = into / f"{model_dir.name}-doc{length}"
    folder.mkdir()
    for f in model_dir.iterdir():
        if f.name != "lightcol_config.json":
            (folder / f.name).symlink_to(f.resolve())
    cfg = json.loads((model_dir / "lightcol_config.json").read_text(encoding="utf-8"))
    cfg["rules"]["document_length"] = length
    (folder / "lightcol_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return folder


def document_ranking(model, passages_text: list[str], owner: np.ndarray, n_docs: int, queries: list[str], k: int):
    """Embed the passages; for each query, document indices best first (a document's score: its best passage)."""
    t = time.perf_counter()
    vectors = list(model.embed(passages_text, batch_size=32))
    embed_s = time.perf_counter() - t
    packed = maxsim.pack(vectors)
    out = []
    for scores in maxsim.score_many(list(model.query_embed(queries)), packed):
        best = np.full(n_docs, -np.inf, dtype=np.float32)
        np.maximum.at(best, owner, scores)
        out.append(np.argsort(-best, kind="stable")[:k].tolist())
    return out, embed_s, sum(len(v) for v in vectors)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=BENCH_MODEL)
    ap.add_argument("--length", type=int, default=64, help="short document length (default 64)")
    ap.add_argument("--overlap", type=int, default=16, help="also split with this overlap (0: skip; default 16)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rows", default="truncate,split,overlap,reference",
                    help="rows to run, comma-separated, of: truncate, split, overlap (split at --length), "
                         "reference (truncate at the model's length), split-reference (split at the model's length)")
    args = ap.parse_args()
    require_bench_model(args.model)
    docs, queries, qrels = load_cisi()
    doc_ids, texts = list(docs), list(docs.values())
    q_ids, q_texts = list(queries), list(queries.values())
    relevant = [{doc_ids.index(d) for d in qrels.get(q, set()) if d in docs} for q in q_ids]
    full = LateInteractionTextEmbedding(specific_model_path=args.model, threads=args.threads, cuda=False)
    ref_length = full.spec.rules.document_length
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        short = LateInteractionTextEmbedding(
            specific_model_path=with_length(args.model, args.length, Path(tmp)), threads=args.threads, cuda=False
        )
        untruncated = [len(e.ids) + 1 for e in full_tokenizer(short).encode_batch(texts)]
        over = sum(n > args.length for n in untruncated)
        print(f"CISI: {len(texts)} documents, {len(q_texts)} queries; {over} documents ({over / len(texts):.0%}) "
              f"exceed {args.length} tokens, {sum(n > ref_length for n in untruncated)} exceed {ref_length}; "
              f"tokens per document: median {int(np.median(untruncated))}, max {max(untruncated)}")
        owner = np.arange(len(texts))
        every = {
            "truncate": (f"truncate at {args.length}", short, None),
            "split": (f"split at {args.length}", short, 0),
            "overlap": (f"split at {args.length}, overlap {args.overlap}", short, args.overlap),
            "reference": (f"truncate at {ref_length} (reference)", full, None),
            "split-reference": (f"split at {ref_length}", full, 0),
        }
        wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
        unknown = sorted(set(wanted) - set(every))
        if unknown:
            raise SystemExit(f"unknown --rows {unknown}; choose from {sorted(every)}")
        for name, model, overlap in (every[r] for r in wanted):
            split_s = 0.0
            if overlap is None:
                ptexts, powner = texts, owner
            else:
                t = time.perf_counter()
                passages = split_documents(texts, model, overlap_tokens=overlap)
                split_s = time.perf_counter() - t
                ptexts = [p.text for p in passages]
                powner = np.array([p.doc for p in passages])
            ranked, embed_s, vecs = document_ranking(model, ptexts, powner, len(texts), q_texts, 100)
            rows.append((name, len(ptexts), vecs, ndcg_at(ranked, relevant, 10), recall_at(ranked, relevant, 100),
                         embed_s, split_s))
            print(f"  {name}: done in {embed_s + split_s:.0f} s", file=sys.stderr, flush=True)
    print_table(("setting", "passages", "vectors", "nDCG@10", "R@100", "embed s", "split s", "split/embed"),
                [(name, n, vecs, f"{nd:.4f}", f"{rc:.4f}", f"{es:.1f}", f"{ss:.2f}", f"{ss / es:.1%}" if ss else "-")
                 for name, n, vecs, nd, rc, es, ss in rows])
    print(f"threads={args.threads or 'default'}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")


if __name__ == "__main__":
    main()
