#!/usr/bin/env python
"""fast-plaid (LightOn's Rust PLAID, PyLate's default index) on vectors handed over as a file.

Runs in fast-plaid's own environment (``.venv-fastplaid``: fast-plaid 1.7.0.2110 and the torch it pins,
built by ``tools/setup_bench.sh``), not lightcol's. ``benchmarks/bench_index.py --fastplaid`` writes the vectors once and
calls this script as a subprocess, so both indexes see the very same vectors:

    .venv-fastplaid/bin/python benchmarks/bench_fastplaid.py run --vectors v.npz --nbits 2,4 --workdir fp-work --out fp.json

``v.npz`` holds ``vectors`` (n_vectors, dim) float16 or float32, ``offsets`` (n_docs + 1,) int64 and
``queries`` (n_queries, query_tokens, dim) float32. For each nbits, in a fresh process each: build with
``FastPlaid.create`` at its defaults (seconds, peak RSS, bytes of the index folder), then open it (fresh
process, seconds), rank every query (top 10 document positions) and time one query at a time with 1 and
2 torch threads, at fast-plaid's default search settings (``n_ivf_probe`` 8, ``n_full_scores`` 4096).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from common import peak_rss_mib, run_child  # (imports no lightcol: this runs in fast-plaid's environment)

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only, as lightcol's index runs


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "plaid.lock")


def _index_dir(args: argparse.Namespace) -> Path:
    return Path(args.workdir) / f"fastplaid-nbits{args.nbits}"


def build(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from fast_plaid import search as fp_search

    torch.set_num_threads(args.threads)
    with np.load(args.vectors) as z:
        vectors, offsets = z["vectors"], z["offsets"]
    docs = [torch.from_numpy(np.asarray(vectors[a:b], dtype=np.float32)) for a, b in zip(offsets[:-1], offsets[1:])]
    del vectors
    folder = _index_dir(args)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    t = time.perf_counter()
    index = fp_search.FastPlaid(index=str(folder), device="cpu")
    index.create(documents_embeddings=docs, nbits=args.nbits)
    secs = time.perf_counter() - t
    meta = json.loads((folder / "metadata.json").read_text()) if (folder / "metadata.json").exists() else {}
    return {"nbits": args.nbits, "build_s": secs, "rss_mb": peak_rss_mib("hwm"), "bytes": _folder_bytes(folder),
            "n_vectors": int(offsets[-1]), "n_centroids": meta.get("num_partitions"), "folder": str(folder)}


def search(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from fast_plaid import search as fp_search

    with np.load(args.vectors) as z:
        queries = torch.from_numpy(np.asarray(z["queries"], dtype=np.float32))
    torch.set_num_threads(2)
    t = time.perf_counter()
    index = fp_search.FastPlaid(index=str(_index_dir(args)), device="cpu")
    open_s = time.perf_counter() - t

    def one(q: torch.Tensor) -> list[int]:
        return [int(d) for d, _ in index.search(q[None], top_k=10, show_progress=False, n_processes=1)[0]]

    ranked = [one(q) for q in queries]
    latency = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        one(queries[0])
        ms = []
        for q in queries:
            t = time.perf_counter()
            one(q)
            ms.append((time.perf_counter() - t) * 1000)
        latency[threads] = [float(np.percentile(ms, 50)), float(np.percentile(ms, 99))]
    return {"nbits": args.nbits, "open_s": open_s, "ranked": ranked, "latency_ms": latency,
            "knobs": {"n_ivf_probe": 8, "n_full_scores": 4096, "top_k": 10}}


def _child(mode: str, args: argparse.Namespace, nbits: int) -> dict:
    argv = [sys.executable, __file__, mode, "--vectors", args.vectors, "--workdir", args.workdir,
            "--threads", str(args.threads), "--nbits", str(nbits)]
    return run_child(argv, f"bench_fastplaid {mode}")


def run(args: argparse.Namespace) -> dict:
    from importlib.metadata import version

    out: dict = {"versions": {"fast_plaid": version("fast-plaid"), "torch": version("torch")}}
    for nbits in [int(b) for b in str(args.nbits).split(",")]:
        b = _child("build", args, nbits)
        print(f"fast-plaid nbits={nbits}: built in {b['build_s']:.1f} s, {b['bytes'] / b['n_vectors']:.1f} B/vector",
              file=sys.stderr, flush=True)
        s = _child("search", args, nbits)
        out[str(nbits)] = {**b, **s}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["run", "build", "search"])
    ap.add_argument("--vectors", required=True, help=".npz with vectors, offsets, queries")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--nbits", default="2,4")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the build")
    ap.add_argument("--out", help="write the JSON here too (run)")
    args = ap.parse_args()
    args.vectors = str(Path(args.vectors).resolve())
    args.workdir = str(Path(args.workdir).resolve())
    os.makedirs(args.workdir, exist_ok=True)
    if args.mode in ("build", "search"):
        args.nbits = int(args.nbits)
    result = {"run": run, "build": build, "search": search}[args.mode](args)
    if args.out:
        Path(args.out).write_text(json.dumps(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
