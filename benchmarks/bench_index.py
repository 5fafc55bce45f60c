#!/usr/bin/env python
"""lightcol.Index (nbits 1/2/4) vs exhaustive MultiVectorCollection on dict-gcide passages; on CISI also
vs colbert-ai's PLAID (``--plaid``).

    python benchmarks/embed_gcide.py --n 100000            # embed once (cached in .bench/gcide)
    env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \\
        python benchmarks/bench_index.py --n 100000 --queries 100 [--cisi]

Prints one table: recall@10 against exact exhaustive MaxSim (``maxsim.rank`` over float32 vectors),
single-query latency p50/p99 with 1 and 2 BLAS threads (query already embedded), bytes per stored
vector (whole index file on disk / stored vectors), build time and peak RSS (each build in a fresh
subprocess fed chunk by chunk from the cache, so RSS is the build's own), open time (fresh process,
file in the page cache). Queries are held out (entries not among the passages; see common.gcide_queries):
reverse-dictionary descriptions ("describe", the latency queries) and ``"meaning of <headword>"``
("meaning": 27 of 32 query tokens are [MASK], nearly tied exact scores); recall is reported for each.
``--exact`` adds an nbits=2 index built with ``keep_full=True`` searched with ``exact=True`` (final
candidates scored on the float16 side file: what candidate generation alone loses).
``--cisi`` adds nDCG@10 on CISI through the index vs exhaustive.
``--fastplaid`` prints only lightcol vs fast-plaid (``benchmarks/bench_fastplaid.py`` in ``.venv-fastplaid``,
made by ``tools/setup_bench.sh``) on the same vectors, CISI and (``--n`` > 0) gcide passages:

    python benchmarks/bench_index.py --fastplaid 2,4 --n 20000 --queries 100

or, with ``--parquet DIR``, on a corpus of ``lightcol embed`` Parquet shards with its query vectors in
``DIR/queries.npy`` (``benchmarks/bench_scale.py generate`` writes both), recall against exact MaxSim
computed while the shards are read:

    python benchmarks/bench_index.py --fastplaid 2,4 --no-cisi --parquet DIR --queries 32 --no-updates
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import (BENCH_MODEL, CISI_CACHE, GCIDE_CACHE, ROOT, embedded_cisi, gcide_query_vectors, gcide_stream,
                    gcide_vectors, latencies_ms, load_cisi, machine, ndcg_at, p50_p99, peak_rss_mib, table_lines)

from lightcol import Index, MultiVectorCollection, maxsim


WIDE = {"n_interact": 4096, "n_rerank": 2048}  # recall-oriented knobs, reported as a second row


def _child_build_npz(args: argparse.Namespace) -> None:
    """Fresh process: build from the vectors file handed to fast-plaid too (per-document float16 slices)."""
    with np.load(args.vectors_file) as z:
        vectors, offsets = z["vectors"], z["offsets"]
    if args.docs_limit:  # the first documents only (the base of an updated index)
        offsets = offsets[: args.docs_limit + 1]
    docs = (vectors[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True))
    from threadpoolctl import threadpool_limits

    t = time.perf_counter()
    # one BLAS thread (fast-plaid builds with 2 torch threads): on a busy shared machine 2 spin and stall
    with threadpool_limits(limits=1):
        ix = Index.build(args.path, None, docs, nbits=args.nbits, n_centroids=args.n_centroids or None,
                         show_progress=False)
    secs = time.perf_counter() - t
    print(json.dumps({"seconds": secs, "rss_mb": peak_rss_mib("hwm"), "n_tokens": ix.n_tokens,
                      "n_centroids": int(ix.meta["n_centroids"])}))


def _child_build(args: argparse.Namespace) -> None:
    t = time.perf_counter()
    ix = Index.build(args.path, None, gcide_stream(args.n), nbits=args.nbits, keep_full=args.keep_full, show_progress=False)
    secs = time.perf_counter() - t
    rss = peak_rss_mib("hwm")  # ru_maxrss would include the forking parent's pages on Linux
    print(json.dumps({"seconds": secs, "rss_mb": rss, "n_tokens": ix.n_tokens, "n_centroids": int(ix.meta["n_centroids"])}))


def _child_open(args: argparse.Namespace) -> None:
    t = time.perf_counter()
    ix = Index.open(args.path)
    secs = time.perf_counter() - t
    print(json.dumps({"seconds": secs, "n": len(ix)}))


def _run_child(*argv: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _latency(fn, queries, threads: int) -> tuple[float, float]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        ms = latencies_ms(fn, queries)
    return p50_p99(ms)


def _recall(got: list[list], ref: list[list]) -> float:
    return float(np.mean([len(set(g[:10]) & set(r[:10])) / 10 for g, r in zip(got, ref, strict=True)]))


def _diagnose(ix: Index, queries: list[np.ndarray], ref: list[list[int]]) -> None:
    """Where the exact top 10 is lost: share kept by each candidate stage, and by decoded vectors alone."""
    from lightcol.index import candidates as cand

    a, n = ix._a, len(ix)  # noqa: SLF001
    cent = ix._codec.centroids  # noqa: SLF001
    share = lambda got, r: len(set(np.asarray(got).tolist()) & set(r)) / 10  # noqa: E731
    rows: dict[str, list[float]] = {"probed lists": [], "default stages -> 512": [], "interaction on all probed -> 512": [],
                                    "interaction on all probed -> 2048": []}
    queries = [ix._codec.rotate(q) for q in queries]  # noqa: SLF001 - the codec's space (decoded vectors too)
    for q, r in zip(queries, ref, strict=True):
        s = cand.centroid_scores(q, cent)
        c, _ = cand.probe(s, a["ivf_docs"], a["ivf_offsets"], n, 8)
        rows["probed lists"].append(share(c, r))
        rows["default stages -> 512"].append(share(ix._candidates(q, None, 8, 1024, 512), r))  # noqa: SLF001
        inter = cand.interact(s, a["codes"], a["offsets"], c)
        for m in (512, 2048):
            rows[f"interaction on all probed -> {m}"].append(share(c[maxsim.top_k(inter, m)[0]], r))
    for name, v in rows.items():
        print(f"diagnose: share of the exact top 10 in {name}: {np.mean(v):.3f}", flush=True)
    decoded = ix._vectors(np.arange(n), False)  # noqa: SLF001
    got = maxsim.rank_many(queries, decoded, 10)[0]
    print(f"diagnose: recall@10 scoring every document on decoded vectors: "
          f"{np.mean([share(g, r) for g, r in zip(got, ref, strict=True)]):.3f}", flush=True)


def _embed_rate() -> str:
    log = GCIDE_CACHE.parent / "gcide-embed.log"
    if not log.exists():
        return "n/a"
    docs = secs = 0
    for m in re.finditer(r"(\d+) docs, \d+ tokens, (\d+) s", log.read_text()):
        docs += int(m.group(1))
        secs += int(m.group(2))
    return f"{docs / secs:.0f} docs/s ({docs} passages in {secs} s)" if secs else "n/a"


def _child_open_cisi(args: argparse.Namespace) -> None:
    """Fresh process: load the model (2 threads), then open the index file or the saved collection."""
    from lightcol import LateInteractionTextEmbedding

    t = time.perf_counter()
    LateInteractionTextEmbedding(specific_model_path=BENCH_MODEL, threads=2, cuda=False)
    model_s = time.perf_counter() - t
    t = time.perf_counter()
    if args.path.endswith(".npz"):
        n = len(MultiVectorCollection.load(args.path))
    else:
        n = len(Index.open(args.path))
    print(json.dumps({"model_s": model_s, "seconds": time.perf_counter() - t, "n": n}))


def _text_latency(models: dict, search, texts: list[str]) -> dict[int, tuple[float, float]]:
    """p50/p99 ms of embedding one query text and searching with it, one query at a time, 1 and 2 threads."""
    return {threads: _latency(lambda text, m=model: search(next(m.query_embed([text]))), texts, threads)
            for threads, model in models.items()}


def _plaid(workdir: str, nbits: str, corpus: str = "cisi") -> dict:
    """colbert-ai's PLAID rows: ``benchmarks/bench_plaid.py`` run in the colbert-ai environment."""
    py = os.environ.get("LIGHTCOL_COLBERT_PYTHON", str(ROOT / ".venv-colbert" / "bin" / "python"))
    if not os.path.isfile(py):
        raise SystemExit(f"--plaid needs colbert-ai's environment: {py} not found (tools/setup_dev.sh builds "
                         ".venv-colbert; or set LIGHTCOL_COLBERT_PYTHON)")
    out = os.path.join(workdir, f"plaid-{corpus.replace(':', '-')}.json")
    subprocess.run([py, str(ROOT / "benchmarks" / "bench_plaid.py"), "run", "--corpus", corpus, "--nbits", nbits,
                    "--checkpoint", str(ROOT / ".bench" / "minilm-colbert"), "--workdir", os.path.join(workdir, "plaid"),
                    "--out", out], check=True, stdout=subprocess.DEVNULL)
    return json.loads(Path(out).read_text())


def _cisi(nbits_list: list[int], workdir: str, plaid_nbits: str | None = None) -> list[str]:
    """The CISI table: exhaustive MaxSim, lightcol.Index at ``nbits_list`` and (``plaid_nbits``) colbert-ai's PLAID."""
    from lightcol import LateInteractionTextEmbedding

    docs, queries, _ = load_cisi()
    ids, dv, qids, qv, qrels, _ = embedded_cisi(BENCH_MODEL, cache=CISI_CACHE)
    texts = [queries[q] for q in qids]
    n_vec = sum(map(len, dv))
    rel = [qrels.get(q, set()) for q in qids]
    ref = [[ids[i] for i in maxsim.rank(q, maxsim.pack(dv, dtype="float32"), 10)[0]] for q in qv]
    lines = [(f"CISI: {len(ids)} abstracts, {n_vec} vectors (dim {dv[0].shape[1]}), {len(qids)} queries "
              f"({sum(map(bool, rel))} judged); model {BENCH_MODEL.name}")]
    models = {t: LateInteractionTextEmbedding(specific_model_path=BENCH_MODEL, threads=t, cuda=False) for t in (1, 2)}
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2):  # lightcol's embedding time in this run (2 threads), checked against the cache
        t = time.perf_counter()
        fresh = list(models[2].embed(list(docs.values()), batch_size=32))
        embed_s = time.perf_counter() - t
    diff = max(float(np.abs(a - b).max()) for a, b in zip(fresh, dv, strict=True))
    lines.append(f"lightcol embeds the abstracts in {embed_s:.1f} s (2 threads); max |diff| vs the cached vectors {diff:.1e}")
    del fresh
    rows = []  # name, ndcg, recall, bytes/vector, latency, build s (embed+index), index build s, open s, model load s

    def opened(path: str) -> dict:
        return min((_run_child("--child", "open-cisi", "--path", path) for _ in range(3)), key=lambda r: r["seconds"])

    for dt in ("float32", "float16"):
        t = time.perf_counter()
        col = MultiVectorCollection(dtype=dt)
        col.add(ids, dv)
        build_s = time.perf_counter() - t
        path = os.path.join(workdir, f"cisi-{dt}.npz")
        col.save(path)
        got = [[d for d, _ in col.search(q, 10)] for q in qv]
        o = opened(path)
        rows.append((f"exhaustive MaxSim (MultiVectorCollection {dt})", ndcg_at(got, rel), _recall(got, ref),
                     os.path.getsize(path) / n_vec, _text_latency(models, lambda q: col.search(q, 10), texts),  # noqa: B023
                     embed_s + build_s, build_s, o["seconds"], o["model_s"]))
        print(rows[-1], flush=True)
    for nbits in nbits_list:
        path = os.path.join(workdir, f"cisi{nbits}.lci")
        t = time.perf_counter()
        ix = Index.build(path, ids, dv, nbits=nbits, show_progress=False)
        build_s = time.perf_counter() - t
        got = [[d for d, _ in ix.search(q, 10)] for q in qv]
        o = opened(path)
        rows.append((f"lightcol Index nbits={nbits}", ndcg_at(got, rel), _recall(got, ref), os.path.getsize(path) / ix.n_tokens,
                     _text_latency(models, lambda q: ix.search(q, 10), texts),  # noqa: B023
                     embed_s + build_s, build_s, o["seconds"], o["model_s"]))
        print(rows[-1], flush=True)
    if plaid_nbits:
        res = _plaid(workdir, plaid_nbits)
        z = np.load(res["vectors"]["file"])
        n = res["vectors"]["n"]
        dcos = [_cos(z[f"doc_{i}"], dv[i]) for i in range(n)]
        qcos = [_cos(z[f"query_{i}"], qv[i]) for i in range(n)]
        lines.append(f"colbert-ai's encoder vs lightcol's on the first {n} abstracts / queries: min cosine per token "
                     f"{min(dcos):.6f} / {min(qcos):.6f}")
        for nbits in plaid_nbits.split(","):
            r = res[nbits]
            got = [r["ranked"][str(q)] for q in qids]
            knobs = ", ".join(f"{k} {v}" for k, v in r["knobs"].items())
            so = r["search_only_ms"]
            lines.append(f"PLAID nbits={nbits}: {r['n_vectors']} vectors, {r['n_centroids']} centroids; search knobs {knobs}; "
                         f"encoder time inside the build {r['encode_s']:.1f} s; search alone (query already encoded) "
                         f"p50 / p99 {so['1'][0]:.1f} / {so['1'][1]:.1f} ms (1 thread), {so['2'][0]:.1f} / {so['2'][1]:.1f} ms (2 threads)")
            rows.append((f"colbert-ai PLAID nbits={nbits}", ndcg_at(got, rel), _recall(got, ref), r["bytes"] / r["n_vectors"],
                         {int(k): v for k, v in r["latency_ms"].items()}, r["build_s"], r["index_only_s"],
                         r["index_open_s"], r["open_s"] - r["index_open_s"]))
            print(rows[-1], flush=True)
    lines += ["", *table_lines(
        ("CISI", "nDCG@10", "recall@10 vs exhaustive", "bytes/vector", "p50 / p99 ms, 1 thread", "p50 / p99 ms, 2 threads",
         "build s (embed + index)", "index build alone s", "open s (index)", "model load s"),
        [(name, f"{nd:.4f}", f"{rec:.3f}", f"{bpv:.1f}", f"{lat[1][0]:.1f} / {lat[1][1]:.1f}", f"{lat[2][0]:.1f} / {lat[2][1]:.1f}",
          f"{b:.1f}", f"{bi:.2f}", f"{o:.3f}", f"{m:.2f}") for name, nd, rec, bpv, lat, b, bi, o, m in rows])]
    return lines


def _fastplaid(workdir: str, name: str, vectors: np.ndarray, offsets: np.ndarray, queries: list[np.ndarray],
               ref: list[list[int]], nbits_list: list[int], labels: list | None = None,
               rel: list[set] | None = None, updates: bool = True) -> list[str]:
    """lightcol's Index vs fast-plaid on the same vectors (one file handed to both), one table.

    Both build in a fresh process from the file; latency is search alone (query vectors given), one
    query at a time, 1 and 2 threads; recall@10 against exhaustive float32 MaxSim; nDCG@10 where
    judgments are given (``rel``, over ``labels``: the documents' ids); ``updates``: add the rows of
    an index changed in place 20 times (see ``_updated``)."""
    py = os.environ.get("LIGHTCOL_FASTPLAID_PYTHON", str(ROOT / ".venv-fastplaid" / "bin" / "python"))
    if not os.path.isfile(py):
        raise SystemExit(f"--fastplaid needs fast-plaid's environment: {py} not found (tools/setup_bench.sh builds "
                         ".venv-fastplaid; or set LIGHTCOL_FASTPLAID_PYTHON)")
    vfile = os.path.join(workdir, f"{name.replace(' ', '-')}-vectors.npz")
    np.savez(vfile, vectors=vectors.astype(np.float16), offsets=offsets, queries=np.stack(queries).astype(np.float32))
    n_vec = int(offsets[-1])
    label = (lambda r: [labels[i] for i in r]) if labels is not None else (lambda r: r)  # noqa: E731
    nd = (lambda got: f"{ndcg_at([label(g) for g in got], rel):.4f}") if rel is not None else (lambda got: "-")  # noqa: E731
    rows = [("exhaustive MaxSim (float32)", nd(ref), 1.0, None, None, 4.0 * vectors.shape[1], None, None, None)]
    for nbits in nbits_list:
        path = os.path.join(workdir, f"{name.replace(' ', '-')}-lightcol{nbits}.lci")
        b = _run_child("--child", "build-npz", "--path", path, "--vectors-file", vfile, "--nbits-one", str(nbits))
        o = min(_run_child("--child", "open", "--path", path)["seconds"] for _ in range(3))
        ix = Index.open(path)
        got = [[d for d, _ in ix.search(q, 10)] for q in queries]
        l1 = _latency(lambda q: ix.search(q, 10), queries, 1)  # noqa: B023
        l2 = _latency(lambda q: ix.search(q, 10), queries, 2)  # noqa: B023
        rows.append((f"lightcol Index nbits={nbits}", nd(got), _recall(got, ref), l1, l2, os.path.getsize(path) / n_vec,
                     b["seconds"], b["rss_mb"], o))
        print(rows[-1], f"K={b['n_centroids']}", flush=True)
        if nbits >= 4 and len(ix) > 5120:  # the budget nbits=4 had before its caps were doubled
            kw = {"n_interact": 2048, "n_rerank": 512}
            got = [[d for d, _ in ix.search(q, 10, **kw)] for q in queries]
            rows.append((f"lightcol Index nbits={nbits}, former budget (512 of 2,048)", nd(got), _recall(got, ref),
                         _latency(lambda q: ix.search(q, 10, **kw), queries, 1),  # noqa: B023
                         _latency(lambda q: ix.search(q, 10, **kw), queries, 2),  # noqa: B023
                         os.path.getsize(path) / n_vec, None, None, None))
            print(rows[-1], flush=True)
        if not updates:
            continue
        path_u = os.path.join(workdir, f"{name.replace(' ', '-')}-lightcol{nbits}-updated", "index.lci")
        ix_u, secs_u = _updated(path_u, vfile, vectors, offsets, nbits, int(b["n_centroids"]))
        got = [[d for d, _ in ix_u.search(q, 10)] for q in queries]
        rows.append((f"lightcol Index nbits={nbits}, after 20 updates", nd(got), _recall(got, ref),
                     _latency(lambda q: ix_u.search(q, 10), queries, 1),  # noqa: B023
                     _latency(lambda q: ix_u.search(q, 10), queries, 2),  # noqa: B023
                     sum(os.path.getsize(os.path.join(os.path.dirname(path_u), f)) for f in ix_u.files) / n_vec,
                     None, None, None))
        print(rows[-1], f"segments={ix_u.n_segments} deleted={ix_u.n_deleted} updates {secs_u:.1f} s", flush=True)
    out = os.path.join(workdir, f"{name.replace(' ', '-')}-fastplaid.json")
    subprocess.run([py, str(ROOT / "benchmarks" / "bench_fastplaid.py"), "run", "--vectors", vfile, "--nbits",
                    ",".join(map(str, nbits_list)), "--workdir", os.path.join(workdir, f"{name.replace(' ', '-')}-fastplaid"),
                    "--out", out], check=True, stdout=subprocess.DEVNULL)
    res = json.loads(Path(out).read_text())
    for nbits in nbits_list:
        r = res[str(nbits)]
        got = r["ranked"]
        lat = {int(k): v for k, v in r["latency_ms"].items()}
        rows.append((f"fast-plaid {res['versions']['fast_plaid']} nbits={nbits}", nd(got), _recall(got, ref), lat[1], lat[2],
                     r["bytes"] / r["n_vectors"], r["build_s"], r["rss_mb"], r["open_s"]))
        print(rows[-1], f"K={r['n_centroids']}", flush=True)
    f = lambda x, fmt: "-" if x is None else fmt.format(*x) if isinstance(x, (list, tuple)) else fmt.format(x)  # noqa: E731
    lines = [f"{name}: {len(offsets) - 1:,} documents, {n_vec:,} vectors (dim {vectors.shape[1]}), {len(queries)} queries; "
             f"fast-plaid {res['versions']['fast_plaid']} (torch {res['versions']['torch']}) at its default search settings "
             "(n_ivf_probe 8, n_full_scores 4096), lightcol at its defaults", ""]
    ndcg_col = rel is not None  # no judgments: no nDCG column
    lines += table_lines([name, *(["nDCG@10"] if ndcg_col else []), "recall@10 vs exhaustive", "p50 / p99 ms, 1 thread",
                          "p50 / p99 ms, 2 threads", "bytes/vector", "build s", "build peak RSS MB", "open s"],
                         [(row_name, *([ndcg] if ndcg_col else []), f"{rec:.3f}", f(l1, "{:.1f} / {:.1f}"),
                           f(l2, "{:.1f} / {:.1f}"), f"{bpv:.1f}", f(bs, "{:.1f}"), f(rss, "{:.0f}"), f(o, "{:.3f}"))
                          for row_name, ndcg, rec, l1, l2, bpv, bs, rss, o in rows])
    return lines


def _updated(path: str, vfile: str, vectors: np.ndarray, offsets: np.ndarray, nbits: int,
             n_centroids: int) -> tuple[Index, float]:
    """The same documents as an index changed in place 20 times: built from the first 90% with the
    full build's ``n_centroids`` (the default for 90% of a corpus can be half the full one's), then 10 deletes of 0.1% (random documents) each followed by an
    add of 1% of the documents (the held-out 10%, in order) plus the documents just deleted; default
    merge policy. Ids are document positions. Returns the index and the seconds the 20 changes took."""
    n = len(offsets) - 1
    n0 = n - max(10, n // 10)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for f in os.listdir(os.path.dirname(path)):
        os.unlink(os.path.join(os.path.dirname(path), f))
    _run_child("--child", "build-npz", "--path", path, "--vectors-file", vfile, "--nbits-one", str(nbits),
               "--docs-limit", str(n0), "--n-centroids", str(n_centroids))
    ix = Index.open(path)
    rng = np.random.default_rng(0)
    doc = lambda i: np.asarray(vectors[offsets[i] : offsets[i + 1]], dtype=np.float32)  # noqa: E731
    chunks = np.array_split(np.arange(n0, n), 10)
    secs = 0.0
    for chunk in chunks:
        back = rng.choice(np.fromiter(ix.ids, dtype=np.int64), size=max(1, n // 1000), replace=False).tolist()
        add = [*chunk.tolist(), *back]
        vecs = [doc(i) for i in add]
        t = time.perf_counter()
        ix.delete(back)
        ix.add(add, vecs)
        secs += time.perf_counter() - t
    assert sorted(ix.ids) == list(range(n))
    return ix, secs


def _cisi_vectors() -> tuple[list, np.ndarray, np.ndarray, list[np.ndarray], list[set]]:
    """CISI embedded with the benchmark model (cached): doc ids, flat vectors, offsets, queries, judgments."""
    ids, dv, qids, qv, qrels, _ = embedded_cisi(BENCH_MODEL, cache=CISI_CACHE)
    offsets = np.zeros(len(dv) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in dv], out=offsets[1:])
    return ids, np.concatenate(dv), offsets, list(qv), [qrels.get(q, set()) for q in qids]


def _parquet_vectors(folder: str, queries: list[np.ndarray], docs_limit: int = 0,
                     ) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """A ``lightcol embed`` corpus (Parquet shards) read in one pass: flat float16 vectors, offsets, and the
    exact top 10 document positions of each query (float32 MaxSim, scored batch by batch as it is read)."""
    from lightcol import parquet

    parts: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    n_docs = 0
    for batch in parquet.iter_batches(folder, batch_size=2048, columns=("vectors",)):
        docs = batch["vectors"][: docs_limit - n_docs] if docs_limit else batch["vectors"]
        if not docs:
            break
        parts += [np.asarray(d, dtype=np.float16) for d in docs]
        scores.append(maxsim.score_many(queries, maxsim.pack(docs, dtype="float32")))
        n_docs += len(docs)
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in parts], out=offsets[1:])
    all_scores = np.concatenate(scores, axis=1)
    ref = [list(map(int, maxsim.top_k(s, 10)[0])) for s in all_scores]
    return np.concatenate(parts), offsets, ref


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest per-token cosine between two (tokens, dim) arrays of the same shape (-1 if shapes differ)."""
    if a.shape != b.shape:
        return -1.0
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--nbits", default="1,2,4")
    ap.add_argument("--latency-queries", type=int, default=30, help="queries timed for the exhaustive rows")
    ap.add_argument("--cisi", action="store_true")
    ap.add_argument("--diagnose", action="store_true", help="print where the nbits=2 index loses the exact top 10")
    ap.add_argument("--exact", action="store_true", help="add an nbits=2 keep_full index searched with exact=True")
    ap.add_argument("--cisi-only", action="store_true", help="only the CISI table")
    ap.add_argument("--plaid", nargs="?", const="2,4", default=None, metavar="NBITS",
                    help="add colbert-ai's PLAID (default nbits 2,4) to the CISI table; needs .venv-colbert")
    ap.add_argument("--fastplaid", nargs="?", const="2,4", default=None, metavar="NBITS",
                    help="only the lightcol vs fast-plaid tables (default nbits 2,4) on CISI and (--n > 0) gcide; "
                         "needs .venv-fastplaid (tools/setup_bench.sh)")
    ap.add_argument("--no-cisi", dest="no_cisi", action="store_true", help="--fastplaid: gcide passages only")
    ap.add_argument("--parquet", help="--fastplaid: a folder of lightcol embed Parquet shards with queries.npy, "
                                      "instead of gcide passages (the first --queries queries)")
    ap.add_argument("--no-updates", dest="no_updates", action="store_true",
                    help="--fastplaid: leave out the rows of an index changed in place 20 times")
    ap.add_argument("--workdir", default=None, help="where index files go (default: a temp folder)")
    ap.add_argument("--vectors-file", dest="vectors_file", help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=["build", "build-npz", "open", "open-cisi"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--nbits-one", dest="nbits_one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--keep-full", dest="keep_full", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--docs-limit", dest="docs_limit", type=int, default=0,
                    help="--parquet: the first N documents only (0: all)")
    ap.add_argument("--n-centroids", dest="n_centroids", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "build":
        args.nbits = args.nbits_one
        return _child_build(args)
    if args.child == "build-npz":
        args.nbits = args.nbits_one
        return _child_build_npz(args)
    if args.child == "open":
        return _child_open(args)
    if args.child == "open-cisi":
        return _child_open_cisi(args)

    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_index_")
    os.makedirs(workdir, exist_ok=True)
    if args.fastplaid:
        nbits_list = [int(b) for b in args.fastplaid.split(",")]
        print(f"start {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {machine()}", flush=True)
        tables = []
        if not args.no_cisi:
            ids, vectors, offsets, qv, rel = _cisi_vectors()
            ref = [list(map(int, r)) for r in maxsim.rank_many(qv, maxsim.PackedDocuments(vectors.astype(np.float32), offsets), 10)[0]]
            tables.append(_fastplaid(workdir, "CISI", vectors, offsets, qv, ref, nbits_list, ids, rel,
                                     updates=not args.no_updates))
        if args.parquet:
            queries = list(np.load(Path(args.parquet) / "queries.npy")[: args.queries].astype(np.float32))
            t = time.perf_counter()
            vectors, offsets, ref = _parquet_vectors(args.parquet, queries, args.docs_limit)
            print(f"{args.parquet}: {len(offsets) - 1:,} documents, {int(offsets[-1]):,} vectors read and "
                  f"{len(queries)} queries scored exactly in {time.perf_counter() - t:.0f} s", flush=True)
            tables.append(_fastplaid(workdir, f"Parquet {Path(args.parquet).name}", vectors, offsets, queries, ref,
                                     nbits_list, updates=not args.no_updates))
        elif args.n > 0:
            queries = gcide_query_vectors(args.n, args.queries, "describe")
            vectors, offsets = gcide_vectors(args.n)
            p32 = maxsim.PackedDocuments(vectors.astype(np.float32), offsets)
            ref = [list(map(int, r)) for r in maxsim.rank_many(queries, p32, 10)[0]]
            del p32
            tables.append(_fastplaid(workdir, f"gcide {args.n // 1000}k", vectors, offsets, queries, ref, nbits_list,
                                     updates=not args.no_updates))
        print(f"end {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {machine()}", flush=True)
        for t in tables:
            print()
            print("\n".join(t))
        return
    if args.cisi_only:
        print("\n".join(_cisi([int(b) for b in args.nbits.split(",")], workdir, args.plaid)))
        return
    queries = gcide_query_vectors(args.n, args.queries, "describe")
    meaning = gcide_query_vectors(args.n, args.queries, "meaning")
    vectors, offsets = gcide_vectors(args.n)
    n_tok = int(offsets[-1])
    print(f"gcide: {args.n} passages, {n_tok} vectors (dim {vectors.shape[1]}), {len(queries)} + {len(meaning)} "
          f"held-out queries; embedding rate here: {_embed_rate()}", flush=True)
    rows = []
    p32 = maxsim.PackedDocuments(vectors.astype(np.float32), offsets)
    t = time.perf_counter()
    ref = [list(map(int, r)) for r in maxsim.rank_many(queries, p32, 10)[0]]
    ref_m = [list(map(int, r)) for r in maxsim.rank_many(meaning, p32, 10)[0]]
    print(f"exact reference: {time.perf_counter() - t:.0f} s for {len(queries) + len(meaning)} queries", flush=True)
    for name, qs, r in (("describe", queries, ref), ("meaning", meaning, ref_m)):
        s = maxsim.score_many(qs, p32)
        top = -np.sort(-s, axis=1)
        print(f"{name} queries: median exact score of rank 1 {np.median(top[:, 0]):.2f}, "
              f"gap rank 10 - rank 11 {np.median(top[:, 9] - top[:, 10]):.3f}, "
              f"rank 10 - rank 50 {np.median(top[:, 9] - top[:, 49]):.3f}", flush=True)
    lat_q = queries[: args.latency_queries]
    for dt, p in (("float32", p32), ("float16", maxsim.PackedDocuments(vectors, offsets))):
        col = MultiVectorCollection(dtype=dt)
        col._vectors, col._offsets = p.vectors, offsets  # noqa: SLF001 - same arrays, no copy
        col._n_docs, col._n_tokens = args.n, n_tok  # noqa: SLF001
        col._ids, col._dim = list(range(args.n)), vectors.shape[1]  # noqa: SLF001
        col._packed = None  # noqa: SLF001
        got = [[d for d, _ in col.search(q, 10)] for q in lat_q]
        l1 = _latency(lambda q: col.search(q, 10), lat_q, 1)
        l2 = _latency(lambda q: col.search(q, 10), lat_q, 2)
        rows.append((f"MultiVectorCollection {dt}", _recall(got, ref[: len(lat_q)]), 1.0, l1, l2,
                     (vectors.shape[1] * np.dtype(dt).itemsize * n_tok + 8 * (args.n + 1)) / n_tok, None, None, None))
        print(rows[-1], flush=True)
    exact_p50 = rows[0][3][0]
    del p32
    builds = [(nbits, False) for nbits in (int(b) for b in args.nbits.split(","))] + ([(2, True)] if args.exact else [])
    for nbits, full in builds:
        path = os.path.join(workdir, f"gcide{nbits}{'-full' if full else ''}.lci")
        b = _run_child("--child", "build", "--path", path, "--n", str(args.n), "--nbits-one", str(nbits),
                       *(["--keep-full"] if full else []))
        o = min(_run_child("--child", "open", "--path", path)["seconds"] for _ in range(3))
        ix = Index.open(path)
        on_disk = sum(os.path.getsize(f) for f in Path(path).parent.glob(Path(path).name + "*"))
        if args.diagnose and nbits == 2 and not full:
            _diagnose(ix, queries, ref)
        variants = [(", exact=True (float16 side file)", {"exact": True})] if full else [("", {}), (", n_rerank=2048", WIDE)]
        for label, kw in variants:
            got = [[d for d, _ in ix.search(q, 10, **kw)] for q in queries]
            got_m = [[d for d, _ in ix.search(q, 10, **kw)] for q in meaning]
            l1 = _latency(lambda q: ix.search(q, 10, **kw), queries, 1)  # noqa: B023
            l2 = _latency(lambda q: ix.search(q, 10, **kw), queries, 2)  # noqa: B023
            rows.append((f"Index nbits={nbits}{label}", _recall(got, ref), _recall(got_m, ref_m), l1, l2,
                         on_disk / ix.n_tokens, b["seconds"], b["rss_mb"], o))
            print(rows[-1], f"K={b['n_centroids']}", flush=True)
    if args.plaid:
        res = _plaid(workdir, args.plaid, f"gcide:{args.n}:{args.queries}")
        z = np.load(res["vectors"]["file"])
        dcos = [_cos(z[f"doc_{i}"], vectors[offsets[i] : offsets[i + 1]]) for i in range(res["vectors"]["n"])]
        qcos = [_cos(z[f"query_{i}"], queries[i]) for i in range(res["vectors"]["n"])]
        print(f"colbert-ai's encoder vs lightcol's cached float16 vectors, first {len(dcos)} passages / queries: "
              f"min cosine per token {min(dcos):.6f} / {min(qcos):.6f}")
        for nbits in args.plaid.split(","):
            r = res[nbits]
            got = [r["ranked"][str(i)] for i in range(len(queries))]
            lat = {int(k): v for k, v in r["latency_ms"].items()}
            print(f"PLAID nbits={nbits}: {r['n_vectors']} vectors, {r['n_centroids']} centroids; build {r['build_s']:.0f} s "
                  f"of which encoding {r['encode_s']:.0f} s; with the query's encoding p50 / p99 {lat[1][0]:.1f} / {lat[1][1]:.1f} ms "
                  f"(1 thread), {lat[2][0]:.1f} / {lat[2][1]:.1f} ms (2 threads); open with the model {r['open_s']:.2f} s", flush=True)
            so = {int(k): tuple(v) for k, v in r["search_only_ms"].items()}
            rows.append((f"colbert-ai PLAID nbits={nbits}", _recall(got, ref), None, so[1], so[2], r["bytes"] / r["n_vectors"],
                         r["index_only_s"], None, r["index_open_s"]))
            print(rows[-1], flush=True)
    print()
    f = lambda x, fmt: "-" if x is None else fmt.format(x)  # noqa: E731
    print("\n".join(table_lines(
        (f"{args.n:,} gcide passages, {n_tok:,} vectors", "recall@10 vs exact (describe)", "recall@10 (meaning)",
         "p50 / p99 ms (1 thread)", "p50 / p99 ms (2 threads)", "speed-up vs exact (p50, 1 thr)", "bytes/vector", "build s",
         "build peak RSS MB", "open s"),
        [(name, f"{rec:.3f}", f(rec_m, "{:.3f}"), f"{l1[0]:.1f} / {l1[1]:.1f}", f"{l2[0]:.1f} / {l2[1]:.1f}",
          f"{exact_p50 / l1[0]:.1f}x", f"{bpv:.1f}", f(bs, "{:.0f}"), f(rss, "{:.0f}"), f(o, "{:.3f}"))
         for name, rec, rec_m, l1, l2, bpv, bs, rss, o in rows])))
    if args.cisi:
        print()
        print("\n".join(_cisi([int(b) for b in args.nbits.split(",")], workdir, args.plaid)))


if __name__ == "__main__":
    main()
