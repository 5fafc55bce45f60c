#!/usr/bin/env python
"""Embedding speed: lightcol (float32, int8, parallel=2) vs FastEmbed vs colbert-ai on one real-weights model.

    python tools/make_bench_model.py              # once: .bench/minilm-colbert{,-onnx}
    python benchmarks/bench_embed.py [--docs 300] [--repeat 2]
    python benchmarks/bench_embed.py --quality    # CISI nDCG@10 float32 vs int8, overlap@10
    python benchmarks/bench_embed.py --serverless # benchmarks/bench_serverless.py's tables

Texts: the first ``--docs`` CISI abstracts and the 112 CISI queries (text field only; see
``common.load_cisi``). Every system runs in its own subprocess (its own environment: FastEmbed from
``.venv-fastembed``, colbert-ai from ``.venv-colbert``) that times itself on the same texts:

* documents/s and tokens/s: best of ``--repeat`` passes over all documents (after a warm-up);
  tokens are the document tokens the model sees (truncated at the model's document length);
* single-query latency: each query alone, p50 / p99 over all queries;
* peak RSS of the subprocess.

FastEmbed truncates documents at ``model_max_length`` of ``tokenizer_config.json`` (512 for BERT):
it loads a view of the model folder whose ``tokenizer_config.json`` says 180, so that it sees the
same tokens as lightcol and colbert-ai (``doc_maxlen`` 180); the ratios use that row. The row
``fastembed-512`` is FastEmbed as shipped (512 tokens: more tokens per long document, so its
docs/s is not comparable). Its default batch size (256) is used;
colbert-ai's ``docFromText`` gets ``bsize=32`` (it sorts by length).

The floor: model FLOPs per token (2 x weights on the token path + attention over the mean document
length) divided by the measured float32 GEMM rate of numpy: the throughput a float32 engine that
only did matrix products at that rate would reach.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import (BENCH, BENCH_CHECKPOINT, BENCH_MODEL, COLBERT_PY, FASTEMBED_PY, best_of, cisi_texts,
                    document_length, embed_speed, fastembed_view, gemm_flops, load_cisi, ndcg_at,
                    peak_rss_mib, print_table)

ROOT = Path(__file__).resolve().parent.parent


def worker(system: str, n_docs: int, repeat: int) -> dict[str, float]:
    """Runs inside the system's own environment; prints its measurements as JSON."""
    docs, queries = cisi_texts(n_docs)
    if system.startswith("lightcol"):
        from lightcol import LateInteractionTextEmbedding

        _, variant, *par = system.split(":")
        parallel = int(par[0]) if par else None
        model = LateInteractionTextEmbedding(specific_model_path=BENCH_MODEL, cuda=False,
                                             quantized=variant == "int8")

        def embed_docs(d):
            return sum(1 for _ in model.embed(d, parallel=parallel if len(d) > 16 else None))

        def embed_query(q):
            return next(model.query_embed(q))

    elif system in ("fastembed", "fastembed-512"):
        from fastembed import LateInteractionTextEmbedding

        # a view of the same files: "fastembed" truncates at our document length (180) like the
        # others; "fastembed-512" is FastEmbed as configured out of the box (512 tokens)
        view = fastembed_view(BENCH_MODEL, BENCH / ("fastembed-view" if system == "fastembed" else "fastembed-view-512"),
                              document_length(BENCH_MODEL) if system == "fastembed" else None)
        model = LateInteractionTextEmbedding("colbert-ir/colbertv2.0", specific_model_path=str(view), cuda=False)

        def embed_docs(d):
            return sum(1 for _ in model.embed(d))

        def embed_query(q):
            return list(model.query_embed(q))

    elif system == "colbert-ai":
        os.environ.setdefault("COLBERT_LOAD_TORCH_EXTENSION_VERBOSE", "False")
        import torch
        from colbert.infra import ColBERTConfig
        from colbert.modeling.checkpoint import Checkpoint

        config = ColBERTConfig.load_from_checkpoint(str(BENCH_CHECKPOINT))
        ckpt = Checkpoint(str(BENCH_CHECKPOINT), colbert_config=config, verbose=0)

        def embed_docs(d):
            with torch.inference_mode():
                _, lens = ckpt.docFromText(d, bsize=32, keep_dims="flatten", to_cpu=True)[:2]
            return len(lens)

        def embed_query(q):
            with torch.inference_mode():
                return ckpt.queryFromText([q], to_cpu=True)

    else:
        raise SystemExit(f"unknown system {system}")
    r = embed_speed(embed_docs, embed_query, docs, queries, repeat)
    return {"doc_seconds": r["doc_seconds"], "query_p50_ms": r["p50_ms"], "query_p99_ms": r["p99_ms"],
            "peak_rss_mb": peak_rss_mib()}


def ort_gemm_gflops() -> float:
    """float32 MatMul rate of ONNX Runtime (MLAS) on the benchmark's FFN shape, default threads."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(1).random((384, 1536), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 384])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1536])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2048, 384), dtype=np.float32)
    sess.run(None, {"x": x})
    return 2 * 2048 * 384 * 1536 / best_of(lambda: sess.run(None, {"x": x}), 10) / 1e9


def flops_per_token(mean_len: float) -> float:
    cfg = json.loads((BENCH_MODEL / "config.json").read_text())
    h, ffn, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    dim = json.loads((BENCH_MODEL / "lightcol_config.json").read_text())["dim"]
    weights = layers * (4 * h * h + 2 * h * ffn) + h * dim
    attention = layers * 2 * mean_len * h  # QK^T and AV, per token
    return 2 * (weights + attention)


def run_worker(python: Path, system: str, args: argparse.Namespace) -> dict[str, float] | str:
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", system, "--docs", str(args.docs), "--repeat", str(args.repeat)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=ROOT)
    if proc.returncode != 0:
        return f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def quality(batch_size: int = 256) -> None:
    """nDCG@10 (CISI.REL judgments) of float32 and int8, and overlap@10 of their rankings, on all of CISI
    (documents: title and text; queries: text)."""
    import time

    from lightcol import LateInteractionTextEmbedding, maxsim

    docs, _, rel = load_cisi()
    _, queries, _ = load_cisi("W")
    doc_ids = list(docs)
    relevant = [rel.get(q, set()) for q in queries]
    tops = {}
    for variant in ("float32", "int8"):
        model = LateInteractionTextEmbedding(specific_model_path=BENCH_MODEL, cuda=False, quantized=variant == "int8")
        t = time.perf_counter()
        packed = maxsim.pack(model.embed(list(docs.values()), batch_size=batch_size))
        q = list(model.query_embed(list(queries.values())))
        seconds = time.perf_counter() - t
        idx, _ = maxsim.rank_many(q, packed, 10)
        tops[variant] = [[doc_ids[d] for d in row] for row in idx.tolist()]
        print(f"{variant:<8} nDCG@10 {ndcg_at(tops[variant], relevant):.4f} over {sum(map(bool, relevant))} judged "
              f"queries ({len(docs)} documents embedded + {len(queries)} queries in {seconds:.1f} s)")
    overlap = [len(set(a) & set(b)) / 10 for a, b in zip(tops["float32"], tops["int8"], strict=True)]
    print(f"overlap@10 int8 vs float32: mean {sum(overlap) / len(overlap):.3f}, min {min(overlap):.1f} "
          f"over {len(overlap)} queries")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=300)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--worker")
    p.add_argument("--quality", action="store_true", help="CISI nDCG@10 float32 vs int8 and overlap@10 instead")
    p.add_argument("--serverless", nargs="?", const="cold,query,load,export,exports,int8,quality", metavar="TABLES",
                   help="run benchmarks/bench_serverless.py with these tables (default: all) instead")
    p.add_argument("--systems", default="lightcol:float32,lightcol:int8,lightcol:float32:2,lightcol:int8:2,fastembed,fastembed-512,colbert-ai")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.docs, args.repeat)))
        return 0
    if args.serverless:
        script = Path(__file__).with_name("bench_serverless.py")
        return subprocess.run([sys.executable, str(script), "--tables", args.serverless, "--docs", str(args.docs)]).returncode
    if not (BENCH_MODEL / "model_int8.onnx").is_file():
        sys.exit("no benchmark model: run python tools/make_bench_model.py first")
    if args.quality:
        quality()
        return 0
    from lightcol import LateInteractionTextEmbedding

    docs, queries = cisi_texts(args.docs)
    counter = LateInteractionTextEmbedding(specific_model_path=BENCH_MODEL, cuda=False, lazy_load=True)
    n_tokens = counter.token_count(docs)
    mean_len = n_tokens / len(docs)
    gflops = gemm_flops(2048, 384, 1536) / 1e9
    ort_gflops = ort_gemm_gflops()
    fpt = flops_per_token(mean_len)
    floor_tok_s = gflops * 1e9 / fpt
    pythons = {"fastembed": FASTEMBED_PY, "fastembed-512": FASTEMBED_PY, "colbert-ai": COLBERT_PY}
    results: dict[str, dict[str, float] | str] = {}
    for system in args.systems.split(","):
        python = pythons.get(system, Path(sys.executable))
        results[system] = run_worker(python, system, args) if python.is_file() else f"not installed ({python})"
    load = os.getloadavg()[0]
    print(f"{len(docs)} CISI abstracts ({n_tokens} tokens, mean {mean_len:.1f}, doc length 180), {len(queries)} CISI queries; "
          f"model {BENCH_MODEL.name} (MiniLM-L6 H384 -> 128); {os.cpu_count()} cores; load avg {load:.1f}")
    print(f"floor: {fpt / 1e6:.1f} MFLOP/token, numpy float32 GEMM {gflops:.0f} GFLOP/s -> "
          f"{floor_tok_s:.0f} tokens/s = {floor_tok_s / mean_len:.1f} docs/s; "
          f"32-token query {32 * fpt / gflops / 1e6:.2f} ms")
    print(f"       ONNX Runtime float32 MatMul {ort_gflops:.0f} GFLOP/s -> {ort_gflops * 1e9 / fpt:.0f} tokens/s = "
          f"{ort_gflops * 1e9 / fpt / mean_len:.1f} docs/s; 32-token query {32 * fpt / ort_gflops / 1e6:.2f} ms")
    ref_fe = results.get("fastembed") if isinstance(results.get("fastembed"), dict) else None
    ref_cb = results.get("colbert-ai") if isinstance(results.get("colbert-ai"), dict) else None
    rows = []
    for system, r in results.items():
        if isinstance(r, str):
            rows.append((system, r, *[""] * 7))
            continue
        dps = len(docs) / r["doc_seconds"]
        vs_fe = f"{dps / (len(docs) / ref_fe['doc_seconds']):.2f}x" if ref_fe else "-"
        vs_cb = f"{dps / (len(docs) / ref_cb['doc_seconds']):.2f}x" if ref_cb else "-"
        q_fe = f"{r['query_p50_ms'] / ref_fe['query_p50_ms']:.2f}x" if ref_fe else "-"
        rows.append((system, f"{dps:.1f}", f"{n_tokens / r['doc_seconds']:.0f}", f"{r['query_p50_ms']:.2f}",
                     f"{r['query_p99_ms']:.2f}", f"{r['peak_rss_mb']:.0f}", vs_fe, vs_cb, q_fe))
    print_table(("system", "docs/s", "tokens/s", "q p50 ms", "q p99 ms", "RSS MB", "vs FE", "vs colbert", "q vs FE"), rows)
    print("(vs FE / vs colbert: docs/s ratio; q vs FE: single-query p50 latency ratio, lower is faster; "
          "lightcol:X:2 = embed(parallel=2); ratios vs FastEmbed truncating at 180 like the others)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
