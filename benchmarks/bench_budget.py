#!/usr/bin/env python
"""Recall@10 and single-query latency of ``Index.search`` across search budgets (``n_rerank``) on gcide passages.

    python benchmarks/bench_budget.py --n 10000 --nbits 4 --rerank 512,768,1024,2048 [--nprobe 8,12]
    python benchmarks/bench_budget.py --vectors-file W/Parquet-2m5-vectors.npz --index W/Parquet-2m5-lightcol4.lci

Builds one index from the cached passages (``benchmarks/embed_gcide.py``; or opens ``--index``, an index of
the same passages in order, e.g. the one ``bench_index.py --fastplaid --workdir`` leaves), then searches the
100 held-out describe queries at each ``nprobe`` and ``n_rerank`` (``n_interact`` four times it, the default
rule) and prints recall@10 against exhaustive float32 MaxSim and p50 / p99 with one thread, plus p50
relative to the first setting. ``--vectors-file`` takes the passages and queries from the vectors file
``bench_index.py --fastplaid --workdir W`` writes (``vectors``, ``offsets``, ``queries``) instead of gcide.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from common import gcide_query_vectors, gcide_vectors, latencies_ms, p50_p99, table_lines

from lightcol import Index, maxsim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--nbits", type=int, default=4)
    ap.add_argument("--rerank", default="512,768,1024,2048")
    ap.add_argument("--nprobe", default="8", help="probed centroids per query token, comma-separated")
    ap.add_argument("--index", default=None, help="search this index of the same passages instead of building one")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--vectors-file", dest="vectors_file", default=None,
                    help="an .npz of vectors, offsets and queries (from bench_index.py --fastplaid --workdir)")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    if args.vectors_file:
        with np.load(args.vectors_file) as z:
            vec, off = z["vectors"], z["offsets"]
            qs = [q.astype(np.float32) for q in z["queries"][: args.queries]]
        args.n = len(off) - 1
    else:
        vec, off = gcide_vectors(args.n)
        qs = gcide_query_vectors(args.n, args.queries, "describe")
    ref = [list(map(int, r)) for r in maxsim.rank_many(qs, maxsim.PackedDocuments(vec.astype(np.float32), off), 10)[0]]
    if args.index:
        ix = Index.open(args.index)
        if ix.n_tokens != int(off[-1]) or ix.nbits != args.nbits:
            raise SystemExit(f"{args.index} is not an nbits={args.nbits} index of these {args.n:,} passages")
    else:
        path = os.path.join(args.workdir or tempfile.mkdtemp(prefix="bench_budget_"), f"gcide{args.n}-{args.nbits}.lci")
        ix = Index.build(path, None, (vec[a:b] for a, b in zip(off[:-1], off[1:], strict=True)), nbits=args.nbits,
                         show_progress=False)
    rows, base = [], None
    for nprobe in (int(x) for x in args.nprobe.split(",")):
        for r in (int(x) for x in args.rerank.split(",")):
            kw = {"nprobe": nprobe, "n_rerank": r, "n_interact": 4 * r}
            got = [[d for d, _ in ix.search(q, 10, **kw)] for q in qs]
            rec = float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, ref, strict=True)]))
            with threadpool_limits(1):
                p50, p99 = p50_p99(latencies_ms(lambda q: ix.search(q, 10, **kw), qs))  # noqa: B023
            base = base or p50
            rows.append((str(nprobe), f"{r:,} of {4 * r:,}", f"{rec:.3f}", f"{p50:.1f} / {p99:.1f}", f"{p50 / base:.2f}x"))
            print(rows[-1], flush=True)
    print()
    print("\n".join(table_lines(["nprobe", f"reranked of interacted (nbits={args.nbits}, {args.n:,} passages)", "recall@10",
                                 "p50 / p99 ms (1 thread)", "p50 vs the first"], rows)))


if __name__ == "__main__":
    main()
