#!/usr/bin/env python
"""Embed dict-gcide's definitions with the MiniLM benchmark model, once, for the index benchmarks.

    apt-get install dict-gcide && python tools/make_bench_model.py       # once
    python benchmarks/embed_gcide.py --n 200000     # resumable: chunks of 10,000 in $LIGHTCOL_GCIDE_CACHE

Passages and held-out queries: :func:`common.gcide_passages` and :func:`common.gcide_queries`. The
cache (default ``.bench/gcide``) holds, per chunk ``chunk_NNNN.npz``, float16 ``vectors``
(tokens, dim) and int64 ``lengths``; ``common.gcide_vectors`` and ``common.gcide_stream`` read it.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from common import BENCH_MODEL, GCIDE_CACHE, GCIDE_CHUNK, gcide_passages, require_bench_model


def main() -> None:
    from lightcol import LateInteractionTextEmbedding

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    GCIDE_CACHE.mkdir(parents=True, exist_ok=True)
    texts = gcide_passages(args.n)
    model = LateInteractionTextEmbedding(specific_model_path=require_bench_model(BENCH_MODEL), threads=args.threads)
    for i in range(0, len(texts), GCIDE_CHUNK):
        f = GCIDE_CACHE / f"chunk_{i // GCIDE_CHUNK:04d}.npz"
        if f.exists():
            continue
        t0 = time.time()
        embs = list(model.embed(texts[i : i + GCIDE_CHUNK], batch_size=64, dtype="float16"))
        lengths = np.array([len(e) for e in embs], dtype=np.int64)
        tmp = f.with_suffix(".tmp.npz")
        np.savez(tmp, vectors=np.concatenate(embs), lengths=lengths)
        os.replace(tmp, f)
        print(f"chunk {i // GCIDE_CHUNK}: {len(embs)} docs, {lengths.sum()} tokens, {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
