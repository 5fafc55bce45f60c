#!/usr/bin/env python
"""Index build at scale, streamed from Parquet shards: build time, peak RSS, size, open time, p50 vs corpus size.

    python benchmarks/bench_scale.py generate --vectors 2500000 20000000 --out /data/scale/2m5 /data/scale/20m
    nice python benchmarks/bench_scale.py run scale/2m5 scale/20m --workdir scale-ix

Synthetic vectors, drawn to match the benchmark model's statistics (not real text): a Gaussian mixture fitted
to the CISI vectors of the MiniLM benchmark model (``common.embedded_cisi``'s cache): 4,096 spherical k-means
components weighted by their sizes, plus the pooled residual covariance around the components, each
draw re-normalised to unit length; document lengths drawn from the gcide passages' token counts
(``benchmarks/embed_gcide.py``'s cache) when present, else from CISI's. Queries: 32 vectors from the same mixture.
Shards are ``lightcol embed``'s Parquet layout (int64 ids, float16 vectors), ~1M vectors each.

``run`` builds each corpus in a fresh process, streamed from its shards (``lightcol.parquet.iter_documents``
into ``Index.build``, as ``lightcol index build --parquet`` does) at one memory setting (``--sample-tokens``),
and prints one table: vectors, documents, build s, peak RSS (VmHWM of the build process), index bytes and
bytes/vector, open s (fresh process, page cache warm), single-query p50 / p99 (1 thread), and each
column's growth against the first corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import CISI_CACHE, GCIDE_CACHE, peak_rss_mib, table_lines

SHARD_VECTORS = 1 << 20
N_COMPONENTS = 4096


def _model_stats(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(component centres (K, dim), weights (K,), residual Cholesky factor (dim, dim), document lengths)."""
    from lightcol._kmeans import assign, spherical_kmeans

    cache = CISI_CACHE
    if not cache.exists():
        raise SystemExit(f"{cache} missing: run benchmarks/bench_index.py --cisi-only once (it embeds CISI)")
    with np.load(cache) as z:
        x = z["vectors"].astype(np.float32)
        lengths = np.diff(z["offsets"])
    chunk = GCIDE_CACHE / "chunk_0000.npz"
    if chunk.exists():
        with np.load(chunk) as z:
            lengths = z["lengths"]
    rng = np.random.default_rng(seed)
    c = spherical_kmeans(x, N_COMPONENTS, 4, rng)
    a = assign(x, c)
    weights = np.bincount(a, minlength=N_COMPONENTS).astype(np.float64)
    r = x - c[a]
    cov = (r.T.astype(np.float64) @ r) / r.shape[0]
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(cov.shape[0])).T.astype(np.float32)
    return c, weights / weights.sum(), chol, lengths


def _draw(rng: np.random.Generator, n: int, c: np.ndarray, w: np.ndarray, chol: np.ndarray) -> np.ndarray:
    x = c[rng.choice(c.shape[0], size=n, p=w)]
    x += rng.standard_normal((n, c.shape[1]), dtype=np.float32) @ chol
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def generate(args: argparse.Namespace) -> None:
    if len(args.vectors) != len(args.out):
        raise SystemExit("give one --out folder per --vectors count")
    c, w, chol, lengths = _model_stats(args.seed)
    for i, (n, out) in enumerate(zip(args.vectors, args.out, strict=True)):
        _generate_one(n, Path(out), c, w, chol, lengths, args.queries, np.random.default_rng(args.seed + 1 + i))


def _generate_one(n_vectors: int, out: Path, c: np.ndarray, w: np.ndarray, chol: np.ndarray, lengths: np.ndarray,
                  n_queries: int, rng: np.random.Generator) -> None:
    from lightcol import parquet

    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "queries.npy", np.stack([_draw(rng, 32, c, w, chol) for _ in range(n_queries)]))
    schema = parquet.schema(c.shape[1], "float16", "int64", meta={"model": "synthetic (MiniLM benchmark model statistics)"})
    done, doc, shard = 0, 0, 0
    t = time.perf_counter()
    while done < n_vectors:
        lens = rng.choice(lengths, size=max(1, SHARD_VECTORS // max(1, int(lengths.mean()))))
        lens = lens[: int(np.searchsorted(np.cumsum(lens), n_vectors - done, side="left")) + 1]  # the last reaches n
        x = _draw(rng, int(lens.sum()), c, w, chol).astype(np.float16)
        off = np.zeros(lens.shape[0] + 1, dtype=np.int64)
        np.cumsum(lens, out=off[1:])
        f = out / f"part-{shard:05d}.parquet"
        tmp = out / f".part-{shard:05d}.parquet.tmp"
        with parquet.Writer(tmp, schema) as wr:
            for a in range(0, lens.shape[0], 8192):
                b = min(a + 8192, lens.shape[0])
                wr.write(list(range(doc + a, doc + b)), [x[off[i] : off[i + 1]] for i in range(a, b)])
        os.replace(tmp, f)
        done += int(off[-1])
        doc += lens.shape[0]
        shard += 1
        print(f"{out.name} shard {shard}: {done:,} vectors, {doc:,} documents, {time.perf_counter() - t:.0f} s", flush=True)
    (out / "corpus.json").write_text(json.dumps({"vectors": done, "documents": doc, "shards": shard}))


def _child_build(args: argparse.Namespace) -> None:
    from lightcol import Index, parquet

    t = time.perf_counter()
    if args.positional_ids:  # ids 0, 1, 2...: a corpus made of the same shards read several times repeats its ids
        ix = Index.build(args.index, None, (v for _, v in parquet.iter_documents(args.shards)), nbits=args.nbits,
                         sample_tokens=args.sample_tokens, show_progress=False)
    else:  # as `lightcol index build --parquet`
        ix = parquet.build_index(args.index, args.shards, nbits=args.nbits, sample_tokens=args.sample_tokens,
                                 show_progress=False)
    secs = time.perf_counter() - t
    print(json.dumps({"seconds": secs, "rss_mb": peak_rss_mib("hwm"), "n_docs": len(ix), "n_tokens": ix.n_tokens,
                      "n_centroids": int(ix.meta["n_centroids"])}))


def _child_open(args: argparse.Namespace) -> None:
    from lightcol import Index

    t = time.perf_counter()
    ix = Index.open(args.index)
    print(json.dumps({"seconds": time.perf_counter() - t, "n": len(ix)}))


def _child(*argv: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> None:
    from threadpoolctl import threadpool_limits

    from lightcol import Index

    os.makedirs(args.workdir, exist_ok=True)
    rows = []
    for shards in args.corpora:
        name = Path(shards).name
        while not (Path(shards) / "corpus.json").exists():  # still being generated: wait for its last shard
            time.sleep(10)
        index = os.path.join(args.workdir, f"{name}-nbits{args.nbits}.lci")
        b = _child("child", "build", "--shards", shards, "--index", index, "--nbits", str(args.nbits),
                   "--sample-tokens", str(args.sample_tokens), *(["--positional-ids"] if args.positional_ids else []))
        print(name, "built", b, flush=True)
        o = min(_child("child", "open", "--index", index)["seconds"] for _ in range(3))
        ix = Index.open(index)
        queries = np.load(Path(shards) / "queries.npy")
        ms = []
        with threadpool_limits(limits=1):
            ix.search(queries[0], 10)
            for q in queries:
                t = time.perf_counter()
                ix.search(q, 10)
                ms.append((time.perf_counter() - t) * 1000)
        size = os.path.getsize(index)
        rows.append({"name": name, "vectors": b["n_tokens"], "docs": b["n_docs"], "K": b["n_centroids"],
                     "build_s": b["seconds"], "rss_mb": b["rss_mb"], "bytes": size, "open_s": o,
                     "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))})
        print(rows[-1], flush=True)
        if not args.keep:
            os.unlink(index)
    base = rows[0]
    g = lambda r, k: f" ({r[k] / base[k]:.2f}x)" if r is not base else ""  # noqa: E731
    print()
    print("\n".join(table_lines(
        [f"corpus (nbits={args.nbits}, sample_tokens={args.sample_tokens:,})", "vectors", "documents", "centroids", "build s",
         "build peak RSS MB", "index GB", "bytes/vector", "open s", "p50 / p99 ms (1 thread)"],
        [(r["name"], f"{r['vectors']:,}{g(r, 'vectors')}", f"{r['docs']:,}", f"{r['K']:,}", f"{r['build_s']:.0f}{g(r, 'build_s')}",
          f"{r['rss_mb']:.0f}{g(r, 'rss_mb')}", f"{r['bytes'] / 1e9:.2f}{g(r, 'bytes')}", f"{r['bytes'] / r['vectors']:.1f}",
          f"{r['open_s']:.3f}{g(r, 'open_s')}", f"{r['p50']:.1f} / {r['p99']:.1f}{g(r, 'p50')}") for r in rows])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--vectors", type=int, nargs="+", required=True)
    g.add_argument("--out", nargs="+", required=True)
    g.add_argument("--queries", type=int, default=50)
    g.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("corpora", nargs="+", help="shard folders, smallest first")
    r.add_argument("--workdir", required=True)
    r.add_argument("--nbits", type=int, default=2)
    r.add_argument("--sample-tokens", dest="sample_tokens", type=int, default=1 << 20)
    r.add_argument("--keep", action="store_true", help="keep the index files")
    r.add_argument("--positional-ids", dest="positional_ids", action="store_true",
                   help="index with ids 0, 1, 2... instead of the shards' ids (shards repeated to make a larger corpus)")
    c = sub.add_parser("child", help=argparse.SUPPRESS)
    c.add_argument("what", choices=["build", "open"])
    c.add_argument("--shards")
    c.add_argument("--index")
    c.add_argument("--nbits", type=int, default=2)
    c.add_argument("--sample-tokens", dest="sample_tokens", type=int, default=1 << 20)
    c.add_argument("--positional-ids", dest="positional_ids", action="store_true")
    args = ap.parse_args()
    if args.mode == "generate":
        generate(args)
    elif args.mode == "run":
        run(args)
    else:
        {"build": _child_build, "open": _child_open}[args.what](args)


if __name__ == "__main__":
    main()
