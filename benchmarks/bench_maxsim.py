"""MaxSim search: a zero-padded tensor (FastEmbed's guide) vs lightcol's packed, blocked kernel.

Synthetic corpus shaped like a real one (ragged documents, unit-norm float32 rows), queries of a
fixed length. Prints queries/second of each approach, ratios vs the padded approach, peak extra
memory per call, and the machine's floors (memory bandwidth and GEMM throughput).

    python benchmarks/bench_maxsim.py                 # 20k documents (~2 minutes on 2 cores)
    python benchmarks/bench_maxsim.py --docs 1400     # quick run

Timings are the best of ``--rounds`` interleaved rounds, which keeps them meaningful on a machine
shared with other work.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from common import gemm_flops, print_table, timed

from lightcol import maxsim


@dataclass
class Approach:
    name: str
    run: Callable[[int], object]  # run(i) handles queries [i, i + per_call)
    per_call: int = 1  # queries answered per call
    times: list[float] = field(default_factory=list)  # seconds per query, one entry per round
    peak: int = 0  # bytes


def make_corpus(rng: np.random.Generator, n_docs: int, lo: int, hi: int, dim: int) -> maxsim.PackedDocuments:
    lengths = rng.integers(lo, hi + 1, size=n_docs)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    vectors = np.empty((int(offsets[-1]), dim), dtype=np.float32)
    step = 1 << 18
    for a in range(0, vectors.shape[0], step):
        x = rng.standard_normal((min(step, vectors.shape[0] - a), dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        vectors[a : a + len(x)] = x
    return maxsim.PackedDocuments(vectors, offsets)


def make_padded(docs: maxsim.PackedDocuments) -> np.ndarray:
    lengths = docs.lengths
    padded = np.zeros((len(docs), int(lengths.max()), docs.dim), dtype=np.float32)
    for i in range(len(docs)):
        padded[i, : lengths[i]] = docs[i]
    return padded


def measure_bandwidth() -> float:
    """Read bandwidth in bytes/s: a BLAS matrix-vector product over a 512 MiB array."""
    a = np.ones((1 << 27) // 128, dtype=np.float32).reshape(-1, 1) * np.ones(128, dtype=np.float32)
    x = np.ones(128, dtype=np.float32)
    a @ x
    best = min(timed(lambda: a @ x) for _ in range(5))
    return a.nbytes / best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=20_000, help="number of documents (default 20000)")
    p.add_argument("--min-len", type=int, default=30, help="shortest document, in vectors (default 30)")
    p.add_argument("--max-len", type=int, default=300, help="longest document, in vectors (default 300)")
    p.add_argument("--dim", type=int, default=128, help="vector dimension (default 128)")
    p.add_argument("--query-len", type=int, default=32, help="vectors per query (default 32)")
    p.add_argument("--batch", type=int, default=64, help="queries per rank_many call (default 64)")
    p.add_argument("--k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds, best kept (default 2)")
    p.add_argument("--seconds", type=float, default=1.0, help="target seconds per approach per round (default 1)")
    p.add_argument("--block-tokens", type=int, default=None, help="lightcol block size (default: automatic)")
    p.add_argument("--no-einsum", action="store_true", help="skip the (slow) padded np.einsum row")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    docs32 = make_corpus(rng, args.docs, args.min_len, args.max_len, args.dim)
    docs16 = maxsim.PackedDocuments(docs32.vectors.astype(np.float16), docs32.offsets)
    padded = make_padded(docs32)
    n_pool = max(args.batch, 64)
    queries = []
    for _ in range(n_pool):
        q = rng.standard_normal((args.query_len, args.dim), dtype=np.float32)
        queries.append(q / np.linalg.norm(q, axis=1, keepdims=True))
    doc_list = [docs32[i].copy() for i in range(len(docs32))]  # separate arrays, as embed() returns them
    from lightcol import MultiVectorCollection

    coll = MultiVectorCollection(dtype="float32")
    coll.add(None, doc_list)
    setup_s = time.perf_counter() - t0
    k, bt = args.k, args.block_tokens
    flat_padded = padded.reshape(-1, padded.shape[2])
    bare_out = np.empty((args.query_len, docs32.n_tokens), dtype=np.float32)

    def q_(i: int) -> np.ndarray:
        return queries[i % n_pool]

    def padded_einsum(i: int) -> np.ndarray:  # as in the FastEmbed late-interaction guide
        scores = np.einsum("qd,bsd->bqs", q_(i), padded)
        return np.argsort(scores.max(axis=2).sum(axis=1))[::-1][:k]

    def padded_matmul(i: int) -> np.ndarray:  # same, with the product done by BLAS
        q = q_(i)
        scores = (q @ flat_padded.T).reshape(len(q), padded.shape[0], padded.shape[1])
        return np.argsort(scores.max(axis=2).sum(axis=0))[::-1][:k]

    def bare(i: int) -> np.ndarray:
        return np.matmul(q_(i), docs32.vectors.T, out=bare_out)

    def batch(i: int) -> list[np.ndarray]:
        return [q_(i + j) for j in range(args.batch)]

    approaches = []
    if not args.no_einsum:
        approaches.append(Approach("padded np.einsum (FastEmbed guide)", padded_einsum))
    approaches += [
        Approach("padded, BLAS matmul", padded_matmul),
        Approach("bare Q @ D.T over packed f32 (no max)", bare),
        Approach("lightcol rank float32", lambda i: maxsim.rank(q_(i), docs32, k, block_tokens=bt)),
        Approach("lightcol rank float32, list of arrays", lambda i: maxsim.rank(q_(i), doc_list, k, block_tokens=bt)),
        Approach("lightcol rank, list packed per call (old)", lambda i: maxsim.rank(q_(i), maxsim.pack(doc_list), k, block_tokens=bt)),
        Approach("MultiVectorCollection.search float32", lambda i: coll.search(q_(i), k, block_tokens=bt)),
        Approach("lightcol rank float16", lambda i: maxsim.rank(q_(i), docs16, k, block_tokens=bt)),
        Approach(
            f"lightcol rank_many float32 ({args.batch}/call)",
            lambda i: maxsim.rank_many(batch(i), docs32, k, block_tokens=bt),
            args.batch,
        ),
        Approach(
            f"lightcol rank_many float16 ({args.batch}/call)",
            lambda i: maxsim.rank_many(batch(i), docs16, k, block_tokens=bt),
            args.batch,
        ),
    ]

    # correctness check: every approach agrees on the top-k of one query
    ref_idx = padded_matmul(0)
    assert maxsim.rank(q_(0), docs32, k)[0].tolist() == ref_idx.tolist(), "lightcol disagrees with padded"
    assert maxsim.rank_many(batch(0), docs32, k)[0][0].tolist() == ref_idx.tolist()

    tracemalloc.start()
    counter = 0
    for r in range(args.rounds):
        for a in approaches:
            if r == 0:  # first call: warm-up, peak memory and calibration
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                first = timed(lambda: a.run(counter))
                a.peak = tracemalloc.get_traced_memory()[1] - base
                counter += a.per_call
                a.calls = max(1, round(args.seconds / first))  # type: ignore[attr-defined]
                if a.per_call > 1 and first > args.seconds / 2:
                    a.times.append(first / a.per_call)  # a long batch call is its own measurement
                    continue
            t = time.perf_counter()
            for _ in range(a.calls):  # type: ignore[attr-defined]
                a.run(counter)
                counter += a.per_call
            a.times.append((time.perf_counter() - t) / (a.calls * a.per_call))  # type: ignore[attr-defined]
    tracemalloc.stop()

    # machine floors
    bw = measure_bandwidth()
    flops = gemm_flops(2048, args.dim, 8192)
    work = 2 * args.query_len * docs32.n_tokens * args.dim

    n_tok = docs32.n_tokens
    print(
        f"MaxSim benchmark: {len(docs32):,} docs, {n_tok:,} vectors (lengths {args.min_len}-{args.max_len}, "
        f"mean {n_tok / len(docs32):.0f}), dim {args.dim}, {args.query_len}-vector queries, k={k}"
    )
    print(
        f"numpy {np.__version__}, {platform.machine()}, {os.cpu_count()} CPUs; setup {setup_s:.1f} s; "
        f"best of {args.rounds} rounds"
    )
    print(
        f"data: padded tensor {padded.nbytes / 2**20:,.0f} MiB {padded.shape}, packed float32 "
        f"{docs32.vectors.nbytes / 2**20:,.0f} MiB, float16 {docs16.vectors.nbytes / 2**20:,.0f} MiB"
    )
    base_qps = max(1 / min(a.times) for a in approaches if a.name.startswith("padded"))
    print()
    print_table(
        ("approach", "queries/s", "ms/query", "vs padded", "peak MiB"),
        [(a.name, f"{1 / min(a.times):.2f}", f"{1e3 * min(a.times):.1f}", f"{1 / min(a.times) / base_qps:.2f}x",
          f"{a.peak / 2**20:.1f}") for a in approaches],
    )
    print("(vs padded: ratio to the faster padded row; peak MiB: extra memory allocated during one call)")
    print()
    print("machine floor (upper bounds on queries/s for this corpus):")
    print(
        f"  memory bandwidth {bw / 1e9:6.1f} GB/s -> stream float32 vectors {bw / docs32.vectors.nbytes:8.2f} q/s, "
        f"float16 {bw / docs16.vectors.nbytes:8.2f} q/s"
    )
    print(
        f"  GEMM {flops / 1e9:6.1f} GFLOP/s (2048x{args.dim} @ {args.dim}x8192) -> "
        f"{work / 1e9:.2f} GFLOP/query -> {flops / work:8.2f} q/s"
    )


if __name__ == "__main__":
    main()
