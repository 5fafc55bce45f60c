#!/usr/bin/env python
"""Embedding benchmark: lightcol (float32, int8) vs FastEmbed vs colbert-ai on one real-weights model.

    python tools/make_bench_model.py          # once: .bench/minilm-colbert{,-onnx}
    python tools/bench_embed.py [--docs 300] [--repeat 2]
    python tools/bench_embed.py --quality     # CISI nDCG@10 float32 vs int8, overlap@10
    python tools/bench_embed.py --serverless  # cold start, single query (idle, under load), foreign export,
                                              # int8 from float32 vs FastEmbed: tools/bench_serverless.py's tables

Texts: the first ``--docs`` CISI abstracts (``$CISI_DIR``, default ``/work/shared/data/cisi``) and
the 112 CISI queries. Every system runs in its own subprocess (its own environment: FastEmbed from
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
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
MODEL_DIR = BENCH / "minilm-colbert-onnx"
CKPT_DIR = BENCH / "minilm-colbert"
CISI_DIR = Path(os.environ.get("CISI_DIR", "/work/shared/data/cisi"))
FASTEMBED_PY = ROOT / ".venv-fastembed" / "bin" / "python"
COLBERT_PY = ROOT / ".venv-colbert" / "bin" / "python"


def read_cisi(path: Path) -> list[dict[str, str]]:
    """Records of a CISI file (``.I`` id, then ``.T/.A/.W/.X/.B`` fields)."""
    records: list[dict[str, str]] = []
    field = None
    for line in path.read_text(encoding="latin-1").splitlines():
        m = re.match(r"^\.I\s+(\d+)", line)
        if m:
            records.append({"id": m.group(1)})
            field = None
            continue
        m = re.match(r"^\.([A-Z])\s*$", line)
        if m and records:
            field = m.group(1)
            records[-1].setdefault(field, "")
            continue
        if field and records:
            records[-1][field] += line + "\n"
    return records


def texts(n_docs: int) -> tuple[list[str], list[str]]:
    docs = [" ".join(r.get("W", "").split()) for r in read_cisi(CISI_DIR / "CISI.ALL")][:n_docs]
    queries = [" ".join(r.get("W", "").split()) for r in read_cisi(CISI_DIR / "CISI.QRY")]
    return docs, queries


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time_system(embed_docs, embed_query, docs: list[str], queries: list[str], repeat: int) -> dict[str, float]:
    embed_docs(docs[:16])
    for q in queries[:5]:
        embed_query(q)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        n = embed_docs(docs)
        best = min(best, time.perf_counter() - t)
    assert n == len(docs), (n, len(docs))
    lat = []
    for q in queries:
        t = time.perf_counter()
        embed_query(q)
        lat.append(time.perf_counter() - t)
    lat.sort()
    return {
        "doc_seconds": best,
        "query_p50_ms": 1000 * lat[len(lat) // 2],
        "query_p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "peak_rss_mb": _peak_rss_mb(),
    }


def worker(system: str, n_docs: int, repeat: int) -> dict[str, float]:
    """Runs inside the system's own environment; prints its measurements as JSON."""
    docs, queries = texts(n_docs)
    if system.startswith("lightcol"):
        sys.path.insert(0, str(ROOT))
        from lightcol import LateInteractionTextEmbedding

        _, variant, *par = system.split(":")
        parallel = int(par[0]) if par else None
        model = LateInteractionTextEmbedding(specific_model_path=MODEL_DIR, cuda=False,
                                             quantized=variant == "int8")

        def embed_docs(d):
            return sum(1 for _ in model.embed(d, parallel=parallel if len(d) > 16 else None))

        def embed_query(q):
            return next(model.query_embed(q))

    elif system in ("fastembed", "fastembed-512"):
        from fastembed import LateInteractionTextEmbedding

        # a view of the same files: "fastembed" truncates at our document length (180) like the
        # others; "fastembed-512" is FastEmbed as configured out of the box (512 tokens)
        view = BENCH / ("fastembed-view" if system == "fastembed" else "fastembed-view-512")
        view.mkdir(exist_ok=True)
        for f in ("model.onnx", "tokenizer.json", "config.json"):
            if not (view / f).exists():
                (view / f).symlink_to(MODEL_DIR / f)
        tok_config = json.loads((MODEL_DIR / "tokenizer_config.json").read_text())
        if system == "fastembed":
            rules = json.loads((MODEL_DIR / "lightcol_config.json").read_text())["rules"]
            tok_config["model_max_length"] = rules["document_length"]
        (view / "tokenizer_config.json").unlink(missing_ok=True)
        (view / "tokenizer_config.json").write_text(json.dumps(tok_config))
        (view / "special_tokens_map.json").write_text(json.dumps(
            {k: tok_config[k] for k in ("cls_token", "sep_token", "pad_token", "mask_token", "unk_token") if k in tok_config}))
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

        config = ColBERTConfig.load_from_checkpoint(str(CKPT_DIR))
        ckpt = Checkpoint(str(CKPT_DIR), colbert_config=config, verbose=0)

        def embed_docs(d):
            with torch.inference_mode():
                _, lens = ckpt.docFromText(d, bsize=32, keep_dims="flatten", to_cpu=True)[:2]
            return len(lens)

        def embed_query(q):
            with torch.inference_mode():
                return ckpt.queryFromText([q], to_cpu=True)

    else:
        raise SystemExit(f"unknown system {system}")
    return _time_system(embed_docs, embed_query, docs, queries, repeat)


def gemm_gflops() -> float:
    import numpy as np

    a = np.random.default_rng(0).random((2048, 384), dtype=np.float32)
    b = np.random.default_rng(1).random((384, 1536), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(10):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 2048 * 384 * 1536 / best / 1e9


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
    best = float("inf")
    for _ in range(10):
        t = time.perf_counter()
        sess.run(None, {"x": x})
        best = min(best, time.perf_counter() - t)
    return 2 * 2048 * 384 * 1536 / best / 1e9


def flops_per_token(mean_len: float) -> float:
    cfg = json.loads((MODEL_DIR / "config.json").read_text())
    h, ffn, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    dim = json.loads((MODEL_DIR / "lightcol_config.json").read_text())["dim"]
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
    """nDCG@10 (CISI.REL judgments) of float32 and int8, and overlap@10 of their rankings, on all of CISI."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from lightcol import LateInteractionTextEmbedding, maxsim

    records = read_cisi(CISI_DIR / "CISI.ALL")
    doc_ids = [r["id"] for r in records]
    docs = [" ".join((r.get("T", "") + " " + r.get("W", "")).split()) for r in records]
    qrecs = read_cisi(CISI_DIR / "CISI.QRY")
    queries = [" ".join(r.get("W", "").split()) for r in qrecs]
    rel: dict[str, set[str]] = {}
    for line in (CISI_DIR / "CISI.REL").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            rel.setdefault(parts[0], set()).add(parts[1])
    tops = {}
    for variant in ("float32", "int8"):
        model = LateInteractionTextEmbedding(specific_model_path=MODEL_DIR, cuda=False, quantized=variant == "int8")
        t = time.perf_counter()
        packed = maxsim.pack(model.embed(docs, batch_size=batch_size))
        q = list(model.query_embed(queries))
        seconds = time.perf_counter() - t
        idx, _ = maxsim.rank_many(q, packed, 10)
        tops[variant] = idx
        ndcg = []
        for qi, r in enumerate(qrecs):
            judged = rel.get(r["id"])
            if not judged:
                continue
            gains = [1.0 if doc_ids[d] in judged else 0.0 for d in idx[qi]]
            dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
            ideal = sum(1 / np.log2(i + 2) for i in range(min(10, len(judged))))
            ndcg.append(dcg / ideal)
        print(f"{variant:<8} nDCG@10 {np.mean(ndcg):.4f} over {len(ndcg)} judged queries "
              f"({len(docs)} documents embedded + {len(queries)} queries in {seconds:.1f} s)")
    overlap = [len(set(a) & set(b)) / 10 for a, b in zip(tops["float32"], tops["int8"], strict=True)]
    print(f"overlap@10 int8 vs float32: mean {np.mean(overlap):.3f}, min {min(overlap):.1f} over {len(overlap)} queries")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=300)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--worker")
    p.add_argument("--quality", action="store_true", help="CISI nDCG@10 float32 vs int8 and overlap@10 instead")
    p.add_argument("--serverless", nargs="?", const="cold,query,load,export,exports,int8,quality", metavar="TABLES",
                   help="run tools/bench_serverless.py with these tables (default: all) instead")
    p.add_argument("--systems", default="lightcol:float32,lightcol:int8,lightcol:float32:2,lightcol:int8:2,fastembed,fastembed-512,colbert-ai")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.docs, args.repeat)))
        return 0
    if args.serverless:
        script = Path(__file__).with_name("bench_serverless.py")
        return subprocess.run([sys.executable, str(script), "--tables", args.serverless, "--docs", str(args.docs)]).returncode
    if not (MODEL_DIR / "model_int8.onnx").is_file():
        sys.exit("no benchmark model: run python tools/make_bench_model.py first")
    if args.quality:
        quality()
        return 0
    sys.path.insert(0, str(ROOT))
    from lightcol import LateInteractionTextEmbedding

    docs, queries = texts(args.docs)
    counter = LateInteractionTextEmbedding(specific_model_path=MODEL_DIR, cuda=False, lazy_load=True)
    n_tokens = counter.token_count(docs)
    mean_len = n_tokens / len(docs)
    gflops = gemm_gflops()
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
          f"model {MODEL_DIR.name} (MiniLM-L6 H384 -> 128); {os.cpu_count()} cores; load avg {load:.1f}")
    print(f"floor: {fpt / 1e6:.1f} MFLOP/token, numpy float32 GEMM {gflops:.0f} GFLOP/s -> "
          f"{floor_tok_s:.0f} tokens/s = {floor_tok_s / mean_len:.1f} docs/s; "
          f"32-token query {32 * fpt / gflops / 1e6:.2f} ms")
    print(f"       ONNX Runtime float32 MatMul {ort_gflops:.0f} GFLOP/s -> {ort_gflops * 1e9 / fpt:.0f} tokens/s = "
          f"{ort_gflops * 1e9 / fpt / mean_len:.1f} docs/s; 32-token query {32 * fpt / ort_gflops / 1e6:.2f} ms")
    header = f"{'system':<22}{'docs/s':>9}{'tokens/s':>10}{'q p50 ms':>10}{'q p99 ms':>10}{'RSS MB':>9}{'vs FE':>8}{'vs colbert':>11}{'q vs FE':>9}"
    print(header)
    print("-" * len(header))
    ref_fe = results.get("fastembed") if isinstance(results.get("fastembed"), dict) else None
    ref_cb = results.get("colbert-ai") if isinstance(results.get("colbert-ai"), dict) else None
    for system, r in results.items():
        if isinstance(r, str):
            print(f"{system:<22}{r}")
            continue
        dps = len(docs) / r["doc_seconds"]
        vs_fe = f"{dps / (len(docs) / ref_fe['doc_seconds']):.2f}x" if ref_fe else "-"
        vs_cb = f"{dps / (len(docs) / ref_cb['doc_seconds']):.2f}x" if ref_cb else "-"
        q_fe = f"{r['query_p50_ms'] / ref_fe['query_p50_ms']:.2f}x" if ref_fe else "-"
        print(f"{system:<22}{dps:>9.1f}{n_tokens / r['doc_seconds']:>10.0f}{r['query_p50_ms']:>10.2f}{r['query_p99_ms']:>10.2f}"
              f"{r['peak_rss_mb']:>9.0f}{vs_fe:>8}{vs_cb:>11}{q_fe:>9}")
    print("(vs FE / vs colbert: docs/s ratio; q vs FE: single-query p50 latency ratio, lower is faster; "
          "lightcol:X:2 = embed(parallel=2); ratios vs FastEmbed truncating at 180 like the others)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
