#!/usr/bin/env python
"""ModernBERT speed: lightcol (float32, int8) vs PyLate 1.6 (PyTorch, CPU) vs FastEmbed 0.9.1's ``LateOn``.

    python benchmarks/bench_modernbert.py --make            # once: the model (PyLate checkpoint + ONNX export)
    python benchmarks/bench_modernbert.py [--docs 120] [--repeat 2] [--threads 2]
    python benchmarks/bench_modernbert.py --quality         # int8 / optimize=True vs float32, per-token cosine

The model: a randomly initialised ModernBERT-base-sized PyLate ColBERT (hidden 768, 22 layers, 12
heads, FFN 1152, a global attention layer every third, the others with a 128-token local window;
128-dim Dense head; LateOn's rules: ``[Q] ``/``[D] `` prefixes, no query expansion, document length
300), with a byte-level BPE of 50k tokens trained on CISI. Real ModernBERT weights are not reachable
here; speed does not depend on the weights' values, only on the shapes and the token counts.
``--make`` builds it with ``tools/pylate_reference.py`` (in ``.venv-pylate``) and exports it with
``tools/export_onnx.py --quantize int8`` (verified against PyTorch).

Texts: the first ``--docs`` CISI abstracts and the 112 CISI queries. Every system runs in its own
subprocess (its own environment) and times itself on the same texts, ``--threads`` intra-op threads
each (ONNX Runtime's ``intra_op_num_threads``; ``torch.set_num_threads`` for PyLate):

* documents/s: best of ``--repeat`` passes over all documents (after a warm-up); batch size 32 for
  every system (PyLate's ``encode`` sorts the texts by character length and pads each batch to its
  longest; FastEmbed pads batches of the texts in input order; lightcol sorts by token length and runs
  batches of about 512 padded tokens);
* single-query latency: each query alone, p50 / p99 over all queries.

A second table gives the work behind the documents/s: the padded tokens each system's batching runs
(from the token counts, identical in the three), the float32 FLOPs of the encoder on them (the
projections and MLP: 2 x 5.0M weights per token and layer; attention: 4 x sequence x hidden per token
and layer, every layer over the whole padded row), the GFLOP/s that achieves, and, as the ceiling, the
GFLOP/s of one float32 MatMul of the model's own shapes, (1,024 x 768) @ (768 x 2,304) and
(1,024 x 1,152) @ (1,152 x 768), in ONNX Runtime and in PyTorch at the same threads.

FastEmbed runs its ``LateOn`` class on the same ``model.onnx``, with the class constants (marker
ids) set to this model's ids; it truncates documents at ``model_max_length`` of
``tokenizer_config.json``, which the export writes as 299 (PyLate's convention), so all three
see the same tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import BENCH, ROOT, best_of, cisi_texts, embed_speed, load_cisi, machine, print_table

FASTEMBED_PY = ROOT / ".venv-fastembed" / "bin" / "python"
PYLATE_PY = ROOT / ".venv-pylate" / "bin" / "python"
LIGHTCOL_PY = ROOT / ".venv" / "bin" / "python"
MODEL_SPEC = {
    "arch": "modernbert", "hidden": 768, "layers": 22, "heads": 12, "intermediate": 1152, "dim": 128,
    "vocab_size": 50368, "local_attention": 128, "global_every": 3, "query_length": 32, "document_length": 300,
    "do_query_expansion": False, "skiplist_words": [], "seed": 0,
}
BATCH = 32


def make(folder: Path) -> None:
    """The PyLate checkpoint (``folder/checkpoint``) and its export (``folder/onnx``, float32 + int8)."""
    folder.mkdir(parents=True, exist_ok=True)
    docs, queries, _ = load_cisi("TW")
    (folder / "cisi.txt").write_text("\n".join(t.replace("\n", " ") for t in [*docs.values(), *queries.values()]),
                                     encoding="utf-8")
    job = {"make": [{**MODEL_SPEC, "out": str(folder / "checkpoint"), "tokenizer_texts": str(folder / "cisi.txt")}]}
    (folder / "job.json").write_text(json.dumps(job))
    subprocess.run([str(PYLATE_PY), str(ROOT / "tools" / "pylate_reference.py"), str(folder / "job.json")], check=True)
    subprocess.run([str(LIGHTCOL_PY), str(ROOT / "tools" / "export_onnx.py"), str(folder / "checkpoint"),
                    str(folder / "onnx"), "--name", "bench/modernbert-base-random", "--quantize", "int8"], check=True)


def worker(system: str, folder: Path, n_docs: int, repeat: int, threads: int) -> dict[str, float]:
    """Runs inside the system's own environment; returns its measurements."""
    docs, queries = cisi_texts(n_docs)
    onnx = folder / "onnx"
    rules = json.loads((onnx / "lightcol_config.json").read_text())["rules"]
    if system.startswith("lightcol"):
        from lightcol import LateInteractionTextEmbedding

        variant = system.split(":")[1]
        model = LateInteractionTextEmbedding(specific_model_path=onnx, cuda=False, threads=threads,
                                             quantized=variant.startswith("int8"), optimize=variant.endswith("opt"))

        def embed_docs(d):
            return sum(1 for _ in model.embed(d, batch_size=BATCH))

        def embed_query(q):
            return next(model.query_embed(q))

    elif system == "fastembed":
        from fastembed.common.model_description import DenseModelDescription, ModelSource
        from fastembed.late_interaction.lateon import LateOn

        LateOn.QUERY_MARKER_TOKEN_ID = rules["query_marker"]["id"]
        LateOn.DOCUMENT_MARKER_TOKEN_ID = rules["document_marker"]["id"]
        desc = DenseModelDescription(model="bench/modernbert", dim=128, description="", license="", size_in_GB=0.0,
                                     sources=ModelSource(hf="bench/modernbert"), model_file="model.onnx")
        LateOn._list_supported_models = classmethod(lambda c: [desc])
        model = LateOn("bench/modernbert", specific_model_path=str(onnx), threads=threads, cuda=False)

        def embed_docs(d):
            return sum(1 for _ in model.embed(d, batch_size=BATCH))

        def embed_query(q):
            return list(model.query_embed(q))

    elif system == "pylate":
        import torch
        from pylate import models

        torch.set_num_threads(threads)
        model = models.ColBERT(model_name_or_path=str(folder / "checkpoint"), device="cpu")

        def embed_docs(d):
            with torch.inference_mode():
                return len(model.encode(d, is_query=False, batch_size=BATCH, show_progress_bar=False))

        def embed_query(q):
            with torch.inference_mode():
                return model.encode([q], is_query=True, batch_size=1, show_progress_bar=False)

    else:
        raise SystemExit(f"unknown system {system}")
    r = embed_speed(embed_docs, embed_query, docs, queries, repeat)
    return {"doc_seconds": r["doc_seconds"], "docs_s": r["docs_s"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]}


def padded_tokens(folder: Path, n_docs: int) -> dict[str, list[tuple[int, int]]]:
    """(rows, padded length) of every call each system makes on the documents: lightcol's own batching
    (recorded from ``embed`` with the ONNX run replaced), PyLate's and FastEmbed's from the token counts."""
    import numpy as np

    from lightcol import LateInteractionTextEmbedding

    docs, _ = cisi_texts(n_docs)
    model = LateInteractionTextEmbedding(specific_model_path=folder / "onnx", cuda=False, lazy_load=True)
    calls: list[tuple[int, int]] = []

    def record(batch):
        calls.append(batch.input_ids.shape)
        return np.zeros((*batch.input_ids.shape, model.dim), dtype=np.float32)

    model._run = record
    list(model.embed(docs, batch_size=BATCH))
    lengths = np.array([len(t) + 1 for t in model._tokenize(docs, is_doc=True)])  # + the marker
    pylate_order = np.argsort([-len(t) for t in docs])  # sentence-transformers: by character length
    return {
        "lightcol": calls,
        "pylate": [(len(b), int(lengths[b].max())) for b in np.array_split(pylate_order, range(BATCH, len(docs), BATCH))],
        "fastembed": [(len(lengths[i:i + BATCH]), int(lengths[i:i + BATCH].max())) for i in range(0, len(docs), BATCH)],
    }


def encoder_flops(calls: list[tuple[int, int]]) -> float:
    """float32 FLOPs of the encoder (and projection) over ``calls`` of (rows, padded length)."""
    h, layers, ffn = MODEL_SPEC["hidden"], MODEL_SPEC["layers"], MODEL_SPEC["intermediate"]
    per_token = layers * 2 * (h * 3 * h + h * h + h * 2 * ffn + ffn * h) + 2 * h * MODEL_SPEC["dim"]
    return sum(rows * n * (per_token + layers * 4 * n * h) for rows, n in calls)


def gemm_ceiling(threads: int, rows: int = 1024, seconds: float = 1.5) -> dict[str, tuple[float, float]]:
    """GFLOP/s of float32 MatMuls of the model's shapes (rows x 768 @ 768 x 2304, rows x 1152 @ 1152 x 768):
    ONNX Runtime (one MatMul node) and PyTorch, ``threads`` threads: (best single call of 10, best of 3
    back-to-back runs of about ``seconds``). On a shared machine the single call catches a quiet moment;
    the sustained rate sees the load a pass over the documents sees."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    h, ffn = MODEL_SPEC["hidden"], MODEL_SPEC["intermediate"]
    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    torch.set_num_threads(threads)
    for k, n in ((h, 3 * h), (ffn, h)):
        w = rng.standard_normal((k, n), dtype=np.float32)
        x = rng.standard_normal((rows, k), dtype=np.float32)
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])], [numpy_helper.from_array(w, "w")])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                                    opts, providers=["CPUExecutionProvider"])
        tx, tw = torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(w.T))
        flops = 2 * rows * k * n
        with torch.inference_mode():
            for name, fn in (("ort", lambda: sess.run(None, {"x": x})), ("torch", lambda: torch.nn.functional.linear(tx, tw))):  # noqa: B023
                fn()
                calls = max(1, int(seconds / best_of(fn, 3)))
                out[f"{name} {k}x{n}"] = (flops / best_of(fn, 10) / 1e9,
                                          calls * flops / best_of(lambda: [fn() for _ in range(calls)], 3) / 1e9)  # noqa: B023
    return out


def quality(folder: Path, n_docs: int) -> None:
    """Per-token cosine of int8 and optimize=True vs float32 on CISI documents and queries."""
    import numpy as np

    from lightcol import LateInteractionTextEmbedding

    docs, queries = cisi_texts(n_docs)
    onnx = folder / "onnx"
    base = LateInteractionTextEmbedding(specific_model_path=onnx, cuda=False)
    ref = list(base.embed(docs)) + list(base.query_embed(queries))
    rows = []
    for label, kw in (("optimize=True", {"optimize": True}), ("int8", {"quantized": True}),
                      ("int8 + optimize=True", {"quantized": True, "optimize": True})):
        m = LateInteractionTextEmbedding(specific_model_path=onnx, cuda=False, **kw)
        got = list(m.embed(docs)) + list(m.query_embed(queries))
        assert [g.shape for g in got] == [r.shape for r in ref]
        cos = np.concatenate([(g * r).sum(-1) for g, r in zip(got, ref, strict=True)])
        rows.append((label, f"{cos.mean():.5f}", f"{np.percentile(cos, 1):.4f}", f"{cos.min():.4f}"))
    print(f"per-token cosine vs float32, {len(docs)} CISI documents + {len(queries)} queries "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()})")
    print_table(["variant", "mean", "1st percentile", "min"], rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, default=BENCH / "modernbert-base-random", help="where the model lives")
    p.add_argument("--make", action="store_true", help="build the model and its export, then exit")
    p.add_argument("--docs", type=int, default=120)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--systems", default="lightcol:fp32,lightcol:int8,fastembed,pylate")
    p.add_argument("--quality", action="store_true", help="int8 / optimize=True vs float32 cosines")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.make:
        make(args.dir)
        return 0
    if not (args.dir / "onnx" / "model.onnx").is_file():
        raise SystemExit(f"{args.dir} holds no model: run python benchmarks/bench_modernbert.py --make first")
    if args.worker == "gemm":
        print(json.dumps(gemm_ceiling(args.threads)))
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.dir, args.docs, args.repeat, args.threads)))
        return 0
    if args.quality:
        quality(args.dir, args.docs)
        return 0
    pythons = {"fastembed": FASTEMBED_PY, "pylate": PYLATE_PY}
    results: dict[str, dict[str, float] | str] = {}
    for system in [*args.systems.split(","), "gemm"]:
        cmd = [str(pythons.get(system, LIGHTCOL_PY)), str(Path(__file__).resolve()), "--worker", system,
               "--dir", str(args.dir), "--docs", str(args.docs), "--repeat", str(args.repeat), "--threads", str(args.threads)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "FASTEMBED_CACHE_PATH": str(args.dir / "fastembed-cache")}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=ROOT, env=env)
        if proc.returncode != 0:
            results[system] = f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
        else:
            results[system] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(system, results[system], file=sys.stderr, flush=True)
    print(f"ModernBERT-base-sized random PyLate ColBERT, {args.docs} CISI documents (300-token cut), 112 queries, "
          f"{args.threads} threads, batch {BATCH}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}")
    ceiling = results.pop("gemm")
    ok = {k: v for k, v in results.items() if isinstance(v, dict)}
    rows = []
    for system, r in results.items():
        if not isinstance(r, dict):
            rows.append((system, r, "", "", "", "", ""))
            continue
        ratio = lambda other: f"{r['docs_s'] / ok[other]['docs_s']:.2f}x" if other in ok else "-"  # noqa: E731
        rows.append((system, f"{r['docs_s']:.2f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                     ratio("pylate"), ratio("fastembed"), ratio("lightcol:fp32")))
    print_table(["system", "docs/s", "query p50 ms", "query p99 ms", "docs/s vs PyLate", "vs FastEmbed", "vs lightcol fp32"],
                rows)
    calls = padded_tokens(args.dir, args.docs)
    rows = []
    for system, r in ok.items():
        batches = calls[system.split(":")[0]]
        flops = encoder_flops(batches)
        label = "int8 (float32-equivalent FLOPs)" if "int8" in system else "float32"
        rows.append((system, sum(b * n for b, n in batches), len(batches), f"{flops / 1e12:.3f}",
                     f"{flops / r['doc_seconds'] / 1e9:.0f}", label))
    print("\nwork per pass over the documents; "
          "GFLOP/s = encoder FLOPs / best pass time")
    print_table(["system", "padded tokens", "ONNX/torch calls", "TFLOP", "GFLOP/s", "arithmetic"], rows)
    if isinstance(ceiling, dict):
        print(f"float32 MatMul ceiling, 1,024 rows, {args.threads} threads, GFLOP/s (best single call / sustained 1.5 s): "
              + ", ".join(f"{k} {a:.0f} / {b:.0f}" for k, (a, b) in ceiling.items()))
    else:
        print(f"float32 MatMul ceiling: {ceiling}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
