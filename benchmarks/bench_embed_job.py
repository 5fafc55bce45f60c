#!/usr/bin/env python
"""``lightcol embed`` (files -> Parquet) and ``lightcol.ray`` vs in-process ``embed``: throughput and peak RSS.

    flock /tmp/lightcol-bench.lock env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/bench_embed_job.py [--repeat 3] [--docs 730] [--rss 20000 200000] [--no-ray]

Texts: CISI abstracts (title + abstract; ``common.load_cisi``), repeated with varied ids up to
``--docs``, in a JSONL file. Model: ``.bench/minilm-colbert-onnx`` (``--model-path``), batch 256,
float32. On a shared machine the load drifts, so every comparison is made of ``--repeat`` pairs of runs
back to back, and the ratio shown is the median of the pairs' ratios:

* ``in-process embed`` (own subprocess, model preloaded): read the JSONL, ``for v in model.embed(texts)``;
* ``lightcol embed (job)`` (own subprocess, model and pyarrow preloaded): ``embed_job.run_job`` on the
  same file: counting the rows, reading, embedding, Arrow conversion and Parquet writing (float32);
* ``ray 2 actors x 1 thread``: one subprocess with a local Ray cluster of 2 CPUs alternates in-process
  ``embed`` (ONNX Runtime's default threads) with ``embed_dataset`` (2 actors x 1 thread, actor start and
  model load included) over the same texts (``ray.data.from_items``), consumed with ``iter_batches``.
  Ray's overhead per batch: an identity ``map_batches`` on the same actor pool and batch size over 1x and
  9x the rows; the time difference over the batch-count difference;
* peak RSS (``ru_maxrss``) of a ``lightcol embed`` process for ``--rss`` counts of texts (the tiny
  test model, float16 output: what is measured is the pipeline's memory, not the model's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import BENCH_MODEL, ROOT, TINY_MODEL, load_cisi, print_table

_INPROC = """
import json, sys, time
from lightcol import LateInteractionTextEmbedding
model = LateInteractionTextEmbedding(specific_model_path=sys.argv[1], cuda=False)
next(model.embed(["warm up"]))
t = time.perf_counter()
with open(sys.argv[2], encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f]
n = 0
for v in model.embed(texts, batch_size=int(sys.argv[3])):
    n += 1
print(json.dumps({"seconds": time.perf_counter() - t, "n": n}))
"""

_JOB = """
import json, shutil, sys, time
import pyarrow, pyarrow.parquet  # imported at start-up by the CLI: not part of the throughput
from lightcol import LateInteractionTextEmbedding, embed_job
model = LateInteractionTextEmbedding(specific_model_path=sys.argv[1], cuda=False)
next(model.embed(["warm up"]))
out = sys.argv[4]
shutil.rmtree(out, ignore_errors=True)
opts = embed_job.JobOptions(inputs=[sys.argv[2]], output=out, model_path=sys.argv[1], batch_size=int(sys.argv[3]),
                            quiet=True)
t = time.perf_counter()
s = embed_job.run_job(opts, model=model)
print(json.dumps({"seconds": time.perf_counter() - t, "n": s.embedded}))
shutil.rmtree(out, ignore_errors=True)
"""

_RAY = """
import json, sys, time, os
import ray, ray.data
from lightcol.ray import embed_dataset
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
ctx = ray.data.DataContext.get_current()
ctx.enable_progress_bars = False
with open(sys.argv[2], encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
rows_per_batch = int(sys.argv[4])
ds = ray.data.from_items(rows, override_num_blocks=max(2, len(rows) // rows_per_batch)).materialize()

# Ray's own cost per batch: an identity UDF on the same kind of actor pool and batches, on 1x and 9x the
# rows; the difference of the times over the difference of the batch counts (actor start cancels out)
class Identity:
    def __call__(self, batch):
        return batch
def identity_seconds(times):
    big = ray.data.from_items(rows * times, override_num_blocks=max(2, times * len(rows) // rows_per_batch)).materialize()
    t = time.perf_counter()
    for b in big.map_batches(Identity, batch_size=rows_per_batch, batch_format="pyarrow", concurrency=2,
                             num_cpus=1).iter_batches(batch_format="pyarrow", batch_size=None):
        pass
    return time.perf_counter() - t, -(-big.count() // rows_per_batch)
identity_seconds(1)  # warm-up
(t1, n1), (t9, n9) = identity_seconds(1), identity_seconds(9)
best_id, n_batches = max(t9 - t1, 0.0), n9 - n1

# actor start + model load: embed one tiny dataset
t = time.perf_counter()
small = ray.data.from_items(rows[:2], override_num_blocks=2)
list(embed_dataset(small, specific_model_path=sys.argv[1], actors=2, batch_size=int(sys.argv[3])).iter_batches(batch_size=None))
startup = time.perf_counter() - t

from lightcol import LateInteractionTextEmbedding
model = LateInteractionTextEmbedding(specific_model_path=sys.argv[1], cuda=False)
texts = [r["text"] for r in rows]
pairs = []
for _ in range(int(sys.argv[5])):
    t = time.perf_counter()
    for v in model.embed(texts, batch_size=int(sys.argv[3])):
        pass
    inproc = time.perf_counter() - t
    t = time.perf_counter()
    n = 0
    for b in embed_dataset(ds, specific_model_path=sys.argv[1], actors=2, threads_per_actor=1,
                           batch_size=int(sys.argv[3]), rows_per_batch=rows_per_batch).iter_batches(
                               batch_format="pyarrow", batch_size=None):
        n += b.num_rows
    pairs.append({"inproc": inproc, "ray": time.perf_counter() - t, "n": n})
print(json.dumps({"pairs": pairs, "startup": startup, "identity_seconds": best_id, "identity_batches": n_batches}))
ray.shutdown()
"""

_RSS = """
import json, resource, sys, time
from lightcol.cli import main
t = time.perf_counter()
code = main(["embed", sys.argv[1], "-o", sys.argv[2], "--model-path", sys.argv[3], "--dtype", "float16", "-q"])
print(json.dumps({"code": code, "seconds": time.perf_counter() - t,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_py(code: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark subprocess failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cisi_texts() -> list[str]:
    docs, _, _ = load_cisi()
    return [docs[k] for k in sorted(docs)]


def write_jsonl(path: Path, texts: list[str], n: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"cisi-{i % len(texts)}-{i // len(texts)}", "text": texts[i % len(texts)]}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-path", default=str(BENCH_MODEL))
    ap.add_argument("--docs", type=int, default=730, help="texts for the throughput rows (default: half of CISI)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3, help="pairs of runs")
    ap.add_argument("--rows-per-batch", type=int, default=256, help="Ray rows per map_batches call")
    ap.add_argument("--rss", type=int, nargs="*", default=[20000, 200000], help="text counts for the peak-RSS rows")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    texts = cisi_texts()
    with tempfile.TemporaryDirectory(prefix="lightcol-bench-") as tmp:
        src = Path(tmp) / "cisi.jsonl"
        write_jsonl(src, texts, args.docs)
        bs = str(args.batch_size)
        pairs = []  # (in-process, CLI job) run back to back: both see about the same load on a shared machine
        for _ in range(args.repeat):
            a = run_py(_INPROC, args.model_path, str(src), bs)
            b = run_py(_JOB, args.model_path, str(src), bs, str(Path(tmp) / "out"))
            pairs.append((a, b))
        ray_row = None
        if not args.no_ray:
            ray_row = run_py(_RAY, args.model_path, str(src), bs, str(args.rows_per_batch), str(args.repeat))
        rss = []
        for n in args.rss:
            path = Path(tmp) / f"rss-{n}.jsonl"
            write_jsonl(path, texts, n)
            r = run_py(_RSS, str(path), str(Path(tmp) / f"rss-out-{n}"), str(TINY_MODEL))
            rss.append((n, r))
            path.unlink()

    print(f"model {Path(args.model_path).name}, {args.docs} CISI texts (JSONL), batch {args.batch_size}, float32, "
          f"{os.cpu_count()} cores; {args.repeat} pairs of runs back to back, ratio = median of the pairs' ratios")
    table = []

    def row(name: str, n: int, rates: list[float], ratios: list[float] | None) -> None:
        r = "" if ratios is None else f"{statistics.median(ratios):.3f}"
        table.append((name, n, " ".join(f"{x:.1f}" for x in rates), r))

    n = pairs[0][0]["n"]
    row("in-process embed", n, [a["n"] / a["seconds"] for a, _ in pairs], None)
    row("lightcol embed (job)", n, [b["n"] / b["seconds"] for _, b in pairs],
        [a["seconds"] / b["seconds"] for a, b in pairs])
    if ray_row is not None:
        rp = ray_row["pairs"]
        row("in-process (Ray driver)", n, [p["n"] / p["inproc"] for p in rp], None)
        row("ray 2 actors x 1 thread", n, [p["n"] / p["ray"] for p in rp], [p["inproc"] / p["ray"] for p in rp])
    print_table(("run", "docs", "docs/s per pair", "ratio (median)"), table)
    if ray_row is not None:
        per_batch = ray_row["identity_seconds"] / ray_row["identity_batches"] * 1000
        print(f"ray: actor start + model load {ray_row['startup']:.2f} s (included in the ray rows); overhead per "
              f"batch of {args.rows_per_batch} rows (identity UDF, 2 actors): {per_batch:.2f} ms "
              f"({ray_row['identity_batches']} more batches took {ray_row['identity_seconds']:.2f} s more)")
    if rss:
        print("\npeak RSS of 'lightcol embed' (tiny test model, float16 output):")
        first = rss[0][1]["peak_rss_mib"]
        print_table(("texts", "seconds", "peak RSS MiB", "vs first"),
                    [(n, f"{r['seconds']:.1f}", f"{r['peak_rss_mib']:.1f}", f"{r['peak_rss_mib'] / first:.3f}") for n, r in rss])


if __name__ == "__main__":
    main()
