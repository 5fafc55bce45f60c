#!/usr/bin/env python
"""Index updates: what adding and deleting documents costs next to a full build, and search after updates.

    env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \\
        python benchmarks/bench_updates.py --vectors v.npz --n 100000     # synthetic passages
    ... python benchmarks/bench_updates.py --vectors v.npz                # the file's documents as they are

``v.npz`` holds ``vectors`` (n_vectors, dim), ``offsets`` (n_docs + 1,) and ``queries`` (n_queries,
n_tokens, dim): a corpus embedded with the benchmark model (e.g. CISI). ``--n N`` draws N synthetic
passages from it instead: each a run of 8-36 consecutive token vectors of a random document (22 on
average, as dict-gcide passages have), each vector jittered with Gaussian noise (cosine 0.95 to
its source) and normalised - the model's token statistics at any corpus size. Without ``--n`` the
last 10% of the documents are held out as the documents added.

Prints one table: the time of one ``Index.add`` / ``Index.delete`` of 0.1% and 1% of the documents
(median of ``--repeats`` runs, each on a fresh copy of the built index) as a share of the full build
(``Index.build`` of the same documents, timed once), and single-query search p50 after ``--updates``
such changes (add 1%, delete 0.1%, add 0.1%, delete 1%, repeated; the default merge policy) against
the same index after ``compact()``, with how many queries returned the same top 10 (ids and scores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import common
import numpy as np

from lightcol import Index


def synthetic(vectors: np.ndarray, offsets: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` passages of 8-36 jittered token vectors, each a run from one source document."""
    lens = rng.integers(8, 37, n)
    src = rng.integers(0, offsets.shape[0] - 1, n)
    dim = vectors.shape[1]
    sigma = np.sqrt((1 / 0.95**2 - 1) / dim)  # E cos(x, x + noise) ~ 0.95 for unit x
    out = []
    for ln, d in zip(lens.tolist(), src.tolist(), strict=True):
        a, b = int(offsets[d]), int(offsets[d + 1])
        ln = min(ln, b - a)
        s = int(rng.integers(a, b - ln + 1))
        x = vectors[s : s + ln].astype(np.float32) + sigma * rng.standard_normal((ln, dim), dtype=np.float32)
        out.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    return out


def _copy(src: Path, dst: Path) -> Path:
    """A copy of an index (hard links: its files are never changed in place)."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    ix = Index.open(src)
    for f in ix.files:
        os.link(src.parent / f, dst / f)
    return dst / src.name


def _interleaved_p50(a: Index, b: Index, queries: list[np.ndarray], reps: int) -> tuple[float, float, list, list]:
    """Search p50 (ms) of ``a`` and of ``b``, each query timed on one then the other (a shared machine's
    load falls on both alike), and each one's first results."""
    ta, tb, ra, rb = [], [], [], []
    for q in queries:  # warm both (the first search after a change merges the segments' inverted lists)
        ra.append(a.search(q, 10))
        rb.append(b.search(q, 10))
    for _ in range(reps):
        for q in queries:
            t = time.perf_counter()
            a.search(q, 10)
            ta.append(time.perf_counter() - t)
            t = time.perf_counter()
            b.search(q, 10)
            tb.append(time.perf_counter() - t)
    return statistics.median(ta) * 1000, statistics.median(tb) * 1000, ra, rb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", required=True, type=Path)
    ap.add_argument("--n", type=int, default=0, help="synthetic passages (0: the file's documents)")
    ap.add_argument("--nbits", type=int, default=2)
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--search-reps", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    with np.load(args.vectors) as z:
        vectors, offsets, queries = z["vectors"], z["offsets"], list(z["queries"].astype(np.float32))
    if args.n:
        docs = synthetic(vectors, offsets, args.n, rng)
        n_base = args.n
        extra = synthetic(vectors, offsets, max(1, args.n // 100) * (args.updates + 2), rng)
        what = f"{args.n:,} synthetic passages"
    else:
        all_docs = [vectors[offsets[i] : offsets[i + 1]].astype(np.float32) for i in range(offsets.shape[0] - 1)]
        n_base = int(len(all_docs) * 0.9)
        docs, held = all_docs[:n_base], all_docs[n_base:]
        extra = [held[i % len(held)] for i in range(max(1, n_base // 100) * (args.updates + 2))]
        what = f"{n_base:,} documents of {args.vectors.name}"
    small, large = max(1, n_base // 1000), max(1, n_base // 100)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-updates-"))
    work.mkdir(parents=True, exist_ok=True)
    base = work / "base" / "i.lci"
    base.parent.mkdir(parents=True, exist_ok=True)
    n_vec = sum(d.shape[0] for d in docs)
    print(f"# {what}: {n_vec:,} vectors, dim {docs[0].shape[1]}, nbits {args.nbits}; {len(queries)} queries", flush=True)
    t_build = common.timed(lambda: Index.build(base, range(n_base), iter(docs), nbits=args.nbits, show_progress=False))
    del docs
    print(f"# full build: {t_build:.1f} s", flush=True)

    next_id = [n_base]
    cursor = [0]

    def new_docs(k: int) -> tuple[list[int], list[np.ndarray]]:
        ids = list(range(next_id[0], next_id[0] + k))
        next_id[0] += k
        out = [extra[(cursor[0] + i) % len(extra)] for i in range(k)]
        cursor[0] += k
        return ids, out

    rows = []
    for label, kind, k, target in (("add 0.1%", "add", small, 0.005), ("add 1%", "add", large, 0.05),
                                   ("delete 0.1%", "delete", small, 0.005), ("delete 1%", "delete", large, 0.01)):
        times = []
        for r in range(args.repeats):
            ix = Index.open(_copy(base, work / "copy"))
            if kind == "add":
                ids, vecs = new_docs(k)
                times.append(common.timed(lambda ix=ix, ids=ids, vecs=vecs: ix.add(ids, vecs)))
            else:
                drop = rng.choice(n_base, k, replace=False).tolist()
                times.append(common.timed(lambda ix=ix, drop=drop: ix.delete(drop)))
        t = statistics.median(times)
        rows.append((label, f"{k:,} docs", f"{t * 1000:.1f} ms", f"{t / t_build:.3%}", f"<= {target:.1%}",
                     "yes" if t / t_build <= target else "NO"))

    # search after updates vs after compact()
    ix = Index.open(_copy(base, work / "updated"))
    live = list(range(n_base))
    t_updates = []
    for u in range(args.updates):
        step = u % 4
        if step in (0, 2):
            ids, vecs = new_docs(large if step == 0 else small)
            t_updates.append(common.timed(lambda: ix.add(ids, vecs)))
            live.extend(ids)
        else:
            k = small if step == 1 else large
            pick = rng.choice(len(live), k, replace=False)
            drop = [live[i] for i in pick.tolist()]
            t_updates.append(common.timed(lambda: ix.delete(drop)))
            gone = set(drop)
            live = [d for d in live if d not in gone]
    compacted = Index.open(_copy(Path(ix.path), work / "compacted"))
    t_compact = common.timed(compacted.compact)
    pu, pc, res_u, res_c = _interleaved_p50(ix, compacted, queries, args.search_reps)
    same = sum(a == b for a, b in zip(res_u, res_c, strict=True))
    same_ids = sum([d for d, _ in a] == [d for d, _ in b] for a, b in zip(res_u, res_c, strict=True))
    diff = max((abs(x[1] - y[1]) for a, b in zip(res_u, res_c, strict=True) for x, y in zip(a, b)), default=0.0)

    print(f"# {common.machine()}")
    print()
    common.print_table(["change", "size", "time", "share of full build", "target", "met"], rows)
    print()
    print(f"after {args.updates} updates ({ix.n_segments} segments, {ix.n_deleted:,} tombstones, {len(ix):,} documents; "
          f"updates took {sum(t_updates):.2f} s in all, compact() {t_compact:.2f} s):")
    common.print_table(
        ["index", "search p50", "same top 10 as compacted (ids and scores / ids)"],
        [[f"after {args.updates} updates", f"{pu:.2f} ms ({pu / pc - 1:+.1%}; target <= +10%: "
          f"{'met' if pu <= 1.1 * pc else 'NOT met'})",
          f"{same}/{len(queries)} / {same_ids}/{len(queries)} (largest score difference {diff:.2g})"],
         ["after compact()", f"{pc:.2f} ms", "-"]])
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
