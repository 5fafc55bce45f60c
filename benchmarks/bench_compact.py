#!/usr/bin/env python
"""Compact multi-vectors on CISI: token pooling and MUVERA, quality and speed, vs SciPy and FastEmbed.

    python tools/make_bench_model.py            # once: .bench/minilm-colbert-onnx
    python benchmarks/bench_compact.py [--cache .bench/cisi-minilm.npz] [--search]

Prints two tables (all 1,460 CISI abstracts, 112 queries, the MiniLM benchmark model):

* pooling: vectors kept, nDCG@10 and recall@100 (CISI judgments), overlap@10 with unpooled MaxSim,
  and the pooling time as a share of the embedding time (lightcol's batched NumPy Ward vs SciPy's
  ``linkage``/``fcluster`` per document, PyLate's recipe);
* MUVERA: for FastEmbed's, Weaviate's and candidate settings, nDCG@10 of the encodings alone and the
  recall@10 against exhaustive MaxSim of the top-N candidates reranked by MaxSim (N = 50...500), plus
  document-encoding speed vs FastEmbed's ``Muvera.process_document`` (run in ``.venv-fastembed``).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (BENCH_MODEL, FASTEMBED_PY, embedded_cisi, load_cisi, ndcg_at, overlap_at, print_table,
                    recall_at, timed)

from lightcol import Muvera, maxsim, pool_tokens_batch
from lightcol.muvera import FASTEMBED_DEFAULTS, RECOMMENDED, RECOMMENDED_FIT, WEAVIATE_DEFAULTS

_FASTEMBED_TIMER = """
import sys, time, numpy as np
from fastembed.postprocess import Muvera
z = np.load(sys.argv[1]); cfg = [int(x) for x in sys.argv[2].split(",")]
docs = [z[f"d{i}"] for i in range(int(z["n"]))]
m = Muvera(docs[0].shape[1], k_sim=cfg[0], dim_proj=cfg[1], r_reps=cfg[2], random_seed=42)
t = time.perf_counter(); out = [m.process_document(d) for d in docs]; dt = time.perf_counter() - t
print(len(docs) / dt)
"""


def scipy_pool(docs: list[np.ndarray], factor: int) -> list[np.ndarray]:
    """PyLate's recipe with SciPy: Ward linkage on 1 - cos of the non-[CLS] rows, maxclust cut, means."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    out = []
    for v in docs:
        rest = v[1:]
        if len(rest) <= 1:
            out.append(v)
            continue
        d = 1.0 - rest.astype(np.float64) @ rest.astype(np.float64).T
        np.fill_diagonal(d, 0.0)
        d = np.maximum((d + d.T) / 2, 0.0)
        labels = fcluster(linkage(squareform(d, checks=False), method="ward"), t=max(len(rest) // factor, 1), criterion="maxclust")
        means = [rest[labels == c].mean(axis=0) for c in np.unique(labels)]
        out.append(np.concatenate([v[:1], np.stack(means)]))
    return out


def ranked_ids(idx: np.ndarray, doc_ids: list[int]) -> list[list[int]]:
    return [[doc_ids[i] for i in row] for row in idx.tolist()]


def embed_and_pool_seconds(model_dir: Path, n: int) -> tuple[float, float, float, int]:
    """Embedding, lightcol pooling and SciPy pooling (factor 2) of the first ``n`` CISI abstracts, timed in this run."""
    from lightcol import LateInteractionTextEmbedding

    texts = list(load_cisi()[0].values())[:n]
    model = LateInteractionTextEmbedding(specific_model_path=model_dir, cuda=False)
    list(model.embed(texts[:32]))  # warm-up
    t = time.perf_counter()
    vecs = list(model.embed(texts, batch_size=32))
    embed_s = time.perf_counter() - t
    return embed_s, timed(lambda: pool_tokens_batch(vecs, 2)), timed(lambda: scipy_pool(vecs, 2)), len(texts)


def pooling_table(doc_ids, dv, qv, rel, speed: tuple[float, float, float, int]) -> None:
    base_idx, _ = maxsim.rank_many(qv, dv, 100)
    base = ranked_ids(base_idx, doc_ids)
    e, ours_s, scipy_s, n_docs = speed
    print(f"\n## Token pooling (CISI, {len(dv)} abstracts)\n")
    print(f"Overhead at pool factor 2, timed in this run on {n_docs} abstracts: embedding {e:.2f} s, lightcol pooling "
          f"{ours_s:.3f} s = {100 * ours_s / e:.1f}% of embedding ({1000 * ours_s / n_docs:.2f} ms/doc), SciPy pooling "
          f"{scipy_s:.3f} s = {100 * scipy_s / e:.1f}% ({1000 * scipy_s / n_docs:.2f} ms/doc).\n")
    rows = []
    for factor in (1, 2, 3, 4):
        t = time.perf_counter()
        pooled = pool_tokens_batch(dv, factor)
        ours = time.perf_counter() - t
        theirs = timed(lambda: scipy_pool(dv, factor)) if factor > 1 else 0.0  # noqa: B023
        idx, _ = maxsim.rank_many(qv, pooled, 100)
        ranked = ranked_ids(idx, doc_ids)
        n = sum(len(v) for v in pooled)
        share = f"{1000 * ours / len(dv):.2f}" if factor > 1 else "-"
        sshare = f"{1000 * theirs / len(dv):.2f}" if factor > 1 else "-"
        rows.append((factor, f"{n:,}", f"{n / len(dv):.1f}", f"{ndcg_at(ranked, rel):.4f}", f"{recall_at(ranked, rel, 100):.4f}",
                     f"{overlap_at(ranked, [r[:10] for r in base], 10):.3f}", share, sshare))
    print_table(("pool factor", "vectors", "per doc", "nDCG@10", "recall@100", "overlap@10 vs unpooled",
                 "lightcol pooling ms/doc", "SciPy pooling ms/doc"), rows)


def fastembed_docs_per_s(docs: list[np.ndarray], cfg: dict[str, int]) -> float | None:
    if not FASTEMBED_PY.is_file():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(f"{tmp}/d.npz", n=len(docs), **{f"d{i}": d for i, d in enumerate(docs)})
        out = subprocess.run(
            [str(FASTEMBED_PY), "-c", _FASTEMBED_TIMER, f"{tmp}/d.npz", f"{cfg['k_sim']},{cfg['dim_proj']},{cfg['r_reps']}"],
            capture_output=True, text=True, check=True,
        )
    return float(out.stdout.strip().splitlines()[-1])


def muvera_table(doc_ids, dv, qv, rel, configs: dict[str, dict[str, int]], speed_docs: int) -> None:
    exact_idx, _ = maxsim.rank_many(qv, dv, 10)
    exact = ranked_ids(exact_idx, doc_ids)
    ns = (50, 100, 200, 500)
    print("\n## MUVERA (CISI; recall@10 = share of exhaustive MaxSim's top 10 among the top N MUVERA candidates)\n")
    rows = []
    for name, cfg in configs.items():
        fitted = name.startswith("fit")
        cfg = dict(cfg)
        seed = cfg.pop("random_seed", 42)
        t = time.perf_counter()
        mv = Muvera.fit(dv, random_seed=seed, **cfg) if fitted else Muvera(dv[0].shape[1], random_seed=seed, **cfg)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        fd = mv.process_documents(dv)
        ours = len(dv) / (time.perf_counter() - t)
        fq = mv.process_queries(qv)
        sims = fq @ fd.T
        order = np.argsort(-sims, axis=1, kind="stable")
        alone = ranked_ids(order[:, :10], doc_ids)
        recalls = []
        reranked100 = None
        for n in ns:
            cand = order[:, :n]
            top = []
            for qi, c in enumerate(cand):
                sub = [dv[i] for i in c]
                ridx, _ = maxsim.rank(qv[qi], sub, 10)
                top.append([doc_ids[c[i]] for i in ridx])
            recalls.append(overlap_at(top, exact, 10))
            if n == 100:
                reranked100 = top
        theirs = fastembed_docs_per_s(dv[:speed_docs], FASTEMBED_DEFAULTS if fitted else cfg)
        speed = (f"{theirs:.0f}", f"{ours / theirs:.1f}x") if theirs else ("n/a", "n/a")
        if fitted:
            name = f"{name} (fit {fit_s:.1f} s)"
        rows.append((name, cfg["k_sim"], cfg["dim_proj"], cfg["r_reps"], f"{mv.embedding_size:,}", f"{ndcg_at(alone, rel):.4f}",
                     *(f"{r:.3f}" for r in recalls), f"{ndcg_at(reranked100, rel):.4f}", f"{ours:.0f}", *speed))
    print_table(("setting", "k_sim", "dim_proj", "r_reps", "dims", "nDCG@10 alone", *(f"recall@10 N={n}" for n in ns),
                 "nDCG@10 N=100 reranked", "encode docs/s", "FastEmbed docs/s", "speed-up"), rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=BENCH_MODEL)
    p.add_argument("--cache", type=Path, default=None, help="cache the CISI vectors in this .npz (reruns skip embedding)")
    p.add_argument("--speed-docs", type=int, default=300, help="documents embedding, pooling and FastEmbed's Muvera are timed on")
    p.add_argument("--search", action="store_true", help="also try more MUVERA settings (<= 10,240 dims)")
    args = p.parse_args()
    doc_ids, dv, query_ids, qv, qrels, seconds = embedded_cisi(args.model, args.cache)
    rel = [qrels.get(q, set()) for q in query_ids]
    print(f"model {args.model.name}: {len(dv)} documents ({sum(len(v) for v in dv):,} vectors), {len(qv)} queries; "
          f"embedding took {seconds:.1f} s")
    pooling_table(doc_ids, dv, qv, rel, embed_and_pool_seconds(args.model, args.speed_docs))
    configs = {"FastEmbed default": FASTEMBED_DEFAULTS, "Weaviate default": WEAVIATE_DEFAULTS, "lightcol recommended": RECOMMENDED,
               "fitted, lightcol RECOMMENDED_FIT": RECOMMENDED_FIT}
    if args.search:
        for k, dp, r in ((3, 16, 80), (4, 32, 20), (3, 32, 40), (2, 32, 80), (4, 8, 80), (5, 8, 40)):
            configs[f"k{k} p{dp} r{r}"] = {"k_sim": k, "dim_proj": dp, "r_reps": r}
        for k, dp, r in ((5, 32, 10), (7, 16, 5), (4, 32, 20)):
            configs[f"fitted k{k} p{dp} r{r}"] = {"k_sim": k, "dim_proj": dp, "r_reps": r}
        for seed in (1, 2):
            configs[f"fitted RECOMMENDED_FIT, seed {seed}"] = {**RECOMMENDED_FIT, "random_seed": seed}
    muvera_table(doc_ids, dv, qv, rel, configs, args.speed_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
