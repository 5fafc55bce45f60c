#!/usr/bin/env python
"""colbert-ai's own PLAID index on CPU, the anchor lightcol.Index is compared with (``bench_index.py --plaid``).

Runs in the colbert-ai environment (``.venv-colbert``: colbert-ai, faiss-cpu, torch CPU, transformers<4.50),
not lightcol's; ``benchmarks/bench_index.py --cisi-only --plaid`` (CISI) and ``benchmarks/bench_index.py --n 20000
--plaid`` (gcide passages) call it as a subprocess and read its JSON:

    .venv-colbert/bin/python benchmarks/bench_plaid.py run --corpus cisi --nbits 2,4 --workdir plaid-work --out plaid.json
    .venv-colbert/bin/python benchmarks/bench_plaid.py run --corpus gcide:20000:100 ...   # passages:queries

For each nbits: build the index from the texts (colbert-ai embeds them itself; build seconds in total
and with the encoder's own time taken out), then in a fresh process open it (``Searcher``: model +
index; and the index alone again, ``IndexScorer``), rank every query (top 10 ids) and time one query
at a time with 1 and 2 torch threads: ``Searcher.search(text, k=10)`` (query encoding included) and
``Searcher.dense_search(Q, k=10)`` (query already encoded). Also writes colbert-ai's vectors of the first
documents and queries, to check they equal lightcol's. Search knobs are colbert-ai's defaults for
k <= 10 (ncells 1, centroid_score_threshold 0.5, ndocs 256). Build and embedding use ``--threads`` (2).
The C++ extensions colbert-ai compiles at first use are compiled once per machine (~95 s on 2 cores,
``~/.cache/torch_extensions``); run once before timing so that open times exclude it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("COLBERT_LOAD_TORCH_EXTENSION_VERBOSE", "False")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only: colbert-ai reads torch.cuda.device_count()

from common import BENCH_CHECKPOINT, gcide_passages, gcide_queries, latencies_ms, load_cisi, p50_p99, run_child

EXPERIMENT = "plaid"


def _corpus(name: str) -> tuple[list[str], list, dict]:
    """(passage texts, their ids, {query id: text}) of ``cisi`` or ``gcide:N_PASSAGES:N_QUERIES``."""
    if name == "cisi":
        docs, queries, _ = load_cisi()
        return list(docs.values()), list(docs), queries
    kind, n, nq = name.split(":")
    if kind != "gcide":
        raise SystemExit(f"unknown corpus {name!r}: cisi or gcide:N:Q")
    return gcide_passages(int(n)), list(range(int(n))), dict(enumerate(gcide_queries(int(n), int(nq))))


def _name(args: argparse.Namespace, nbits: int) -> str:
    return f"{args.corpus.replace(':', '-')}.nbits{nbits}"


def _config(args: argparse.Namespace, nbits: int):
    from colbert.infra import ColBERTConfig

    meta = json.loads((Path(args.checkpoint) / "artifact.metadata").read_text())
    # the same token rules as lightcol's export of this checkpoint (lightcol_config.json: query_length 32,
    # document_length 180): both systems see the same tokens
    return ColBERTConfig(nbits=nbits, doc_maxlen=meta["doc_maxlen"], query_maxlen=meta["query_maxlen"],
                         avoid_fork_if_possible=True)


def _run_config(args: argparse.Namespace):
    from colbert.infra import RunConfig

    return RunConfig(nranks=1, experiment=EXPERIMENT, root=args.workdir, avoid_fork_if_possible=True)


def _index_dir(args: argparse.Namespace, nbits: int) -> Path:
    return Path(args.workdir) / EXPERIMENT / "indexes" / _name(args, nbits)


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build(args: argparse.Namespace) -> dict:
    """Build one index in this process; seconds in total and inside the encoder (``encode_passages``)."""
    import torch
    from colbert import Indexer
    from colbert.indexing.collection_encoder import CollectionEncoder
    from colbert.infra import Run

    torch.set_num_threads(args.threads)
    texts = _corpus(args.corpus)[0]
    spent = [0.0]
    encode = CollectionEncoder.encode_passages

    def timed(self, passages):  # the encoder's time, to report the index build without embedding
        t = time.perf_counter()
        try:
            return encode(self, passages)
        finally:
            spent[0] += time.perf_counter() - t

    CollectionEncoder.encode_passages = timed
    t = time.perf_counter()
    with Run().context(_run_config(args)):
        indexer = Indexer(checkpoint=args.checkpoint, config=_config(args, args.nbits), verbose=0)
        indexer.index(name=_name(args, args.nbits), collection=texts, overwrite="force_silent_overwrite")
    total = time.perf_counter() - t
    folder = _index_dir(args, args.nbits)
    meta = json.loads((folder / "metadata.json").read_text())
    return {"nbits": args.nbits, "build_s": total, "encode_s": spent[0], "index_only_s": total - spent[0],
            "n_vectors": int(meta["num_embeddings"]), "n_centroids": int(meta["num_partitions"]),
            "bytes": _folder_bytes(folder), "folder": str(folder)}


def search(args: argparse.Namespace) -> dict:
    """In a fresh process: open, rank every query, time single queries with 1 and 2 threads."""
    import torch
    from colbert import Searcher
    from colbert.infra import Run
    from colbert.search.index_storage import IndexScorer

    _, doc_ids, queries = _corpus(args.corpus)
    torch.set_num_threads(2)
    with Run().context(_run_config(args)):
        t = time.perf_counter()
        searcher = Searcher(index=_name(args, args.nbits), config=_config(args, args.nbits), verbose=0)
        open_s = time.perf_counter() - t
        t = time.perf_counter()
        IndexScorer(searcher.index, False, searcher.config.load_index_with_mmap)  # the index alone, again
        index_open_s = time.perf_counter() - t
        ranked = {}
        for qid, text in queries.items():
            pids, _, _ = searcher.search(text, k=10)
            ranked[qid] = [doc_ids[p] for p in pids]
        texts = list(queries.values())
        encoded = [searcher.encode(text) for text in texts]
        latency, search_only = {}, {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            latency[threads] = list(p50_p99(latencies_ms(lambda text: searcher.search(text, k=10), texts)))
            search_only[threads] = list(p50_p99(latencies_ms(lambda q: searcher.dense_search(q, k=10), encoded)))
    return {"nbits": args.nbits, "open_s": open_s, "index_open_s": index_open_s, "ranked": ranked,
            "latency_ms": latency, "search_only_ms": search_only, "knobs": {k: getattr(searcher.config, k) for k in ("ncells", "centroid_score_threshold", "ndocs")}}


def vectors(args: argparse.Namespace) -> dict:
    """colbert-ai's vectors (``docFromText``/``queryFromText``) of the first ``--n`` documents and queries."""
    import numpy as np
    import torch
    from colbert.infra import ColBERTConfig
    from colbert.modeling.checkpoint import Checkpoint

    torch.set_num_threads(args.threads)
    texts, _, queries = _corpus(args.corpus)
    config = ColBERTConfig.from_existing(ColBERTConfig.load_from_checkpoint(args.checkpoint), _config(args, 2))
    ckpt = Checkpoint(args.checkpoint, colbert_config=config, verbose=0)
    flat, lens = ckpt.docFromText(texts[: args.n], bsize=8, keep_dims="flatten", to_cpu=True)[:2]
    q = ckpt.queryFromText(list(queries.values())[: args.n], bsize=8, to_cpu=True)
    out = {f"doc_{i}": v.float().numpy() for i, v in enumerate(torch.split(flat, list(lens)))}
    out.update({f"query_{i}": v.float().numpy() for i, v in enumerate(q)})
    np.savez(args.vectors_out, **out)
    return {"n": args.n, "file": args.vectors_out}


def _child(mode: str, args: argparse.Namespace, **extra) -> dict:
    argv = [sys.executable, __file__, mode, "--corpus", args.corpus, "--checkpoint", args.checkpoint,
            "--workdir", args.workdir, "--threads", str(args.threads)]
    for k, v in extra.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return run_child(argv, f"bench_plaid {mode}")


def run(args: argparse.Namespace) -> dict:
    """Everything for the table, each step in its own process."""
    out: dict = {"vectors": _child("vectors", args, n=args.n, vectors_out=Path(args.workdir) / "colbert-vectors.npz")}
    for nbits in [int(b) for b in args.nbits.split(",")]:
        b = _child("build", args, nbits=nbits)
        print(f"plaid {args.corpus} nbits={nbits} built: {b['build_s']:.1f} s ({b['encode_s']:.1f} s encoding), "
              f"{b['bytes'] / b['n_vectors']:.1f} B/vector", file=sys.stderr, flush=True)
        s = _child("search", args, nbits=nbits)
        out[str(nbits)] = {**b, **s}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["run", "build", "search", "vectors"])
    ap.add_argument("--corpus", default="cisi", help="cisi, or gcide:N_PASSAGES:N_QUERIES")
    ap.add_argument("--checkpoint", default=str(BENCH_CHECKPOINT))
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--nbits", default="2,4")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for building and embedding")
    ap.add_argument("--n", type=int, default=5, help="documents/queries whose vectors are written (vectors)")
    ap.add_argument("--vectors-out", dest="vectors_out")
    ap.add_argument("--out", help="write the JSON here too (run)")
    args = ap.parse_args()
    args.checkpoint = str(Path(args.checkpoint).resolve())
    args.workdir = str(Path(args.workdir).resolve())
    os.makedirs(args.workdir, exist_ok=True)
    if args.mode in ("build", "search"):
        args.nbits = int(args.nbits)
    result = {"run": run, "build": build, "search": search, "vectors": vectors}[args.mode](args)
    if args.out:
        Path(args.out).write_text(json.dumps(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
