#!/usr/bin/env python
"""Serverless: lightcol vs FastEmbed on cold start, single-query latency (idle and under load), foreign
exports, and int8 made at load vs float32.

    python tools/make_bench_model.py && python tools/make_foreign_export.py   # once
    python benchmarks/bench_serverless.py [--cold 5] [--docs 200] [--tables cold,query,load,export,exports,int8,quality]

Models: ``.bench/minilm-colbert-onnx`` (exported by ``tools/export_onnx.py``: "lightcol export") and
``.bench/minilm-colbert-foreign`` (the same weights through ``torch.onnx.export`` defaults: "foreign
export"). FastEmbed runs in ``.venv-fastembed`` on a view of the same files (document length 180).

* cold: a fresh process imports the library, loads the model from the local folder and embeds one
  query; min and median wall time over ``--cold`` processes. lightcol with its optimised-graph
  cache warm (the steady state of a serverless image whose cache folder persists) and off
  (``LIGHTCOL_GRAPH_CACHE=0``: every start optimises again).
* query: single-query p50/p99 (each CISI query alone) on an idle machine.
* load: docs/s and query p50 while one busy process per core competes for the CPU.
* export: docs/s of the foreign export vs the lightcol export (and FastEmbed on each), from the query table.
* exports (not in the default list): lightcol's docs/s on both exports, each with and without
  ``optimize=True``, float32 and int8, best of ``--rounds`` interleaved rounds (the optimised files are made in a
  temporary folder of links, not in ``.bench``).
* int8: docs/s of int8 made by ``quantized=True`` from a float32-only folder vs float32.
* quality: CISI nDCG@10 and overlap@10 of that int8 vs float32 (all 1,460 abstracts).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from common import (BENCH, BENCH_MODEL, FASTEMBED_PY, FOREIGN_MODEL, ROOT, cisi_texts, document_length, embed_speed,
                    fastembed_view, load_cisi, machine, ndcg_at, overlap_at, print_table)

OWN, FOREIGN = BENCH_MODEL, FOREIGN_MODEL


def fe_view(model_dir: Path) -> Path:
    """A folder FastEmbed loads as colbertv2.0: the model's files, document length 180 in tokenizer_config."""
    return fastembed_view(model_dir, BENCH / f"fastembed-view-{model_dir.name}", document_length(model_dir))


# ----------------------------------------------------------------------------------------- in the subprocess
COLD = r"""
import sys, time
t0 = time.perf_counter()
system, folder, query = sys.argv[1], sys.argv[2], sys.argv[3]
if system == "fastembed":
    from fastembed import LateInteractionTextEmbedding
    m = LateInteractionTextEmbedding("colbert-ir/colbertv2.0", specific_model_path=folder, cuda=False)
    t1 = time.perf_counter()
    v = list(m.query_embed(query))
else:
    sys.path.insert(0, sys.argv[4])
    from lightcol import LateInteractionTextEmbedding
    m = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False)
    t1 = time.perf_counter()
    v = next(m.query_embed(query))
t2 = time.perf_counter()
print(t1 - t0, t2 - t0)
"""


SPIN = {"default": None, "nospin": {"session.intra_op.allow_spinning": "0"},
        "fullspin": {"session.intra_op.allow_spinning": "1"}}


def _load(system: str, folder: Path, spin: str = "default"):
    """(embed_docs(list) -> n, embed_query(str)) for ``system`` on ``folder`` (in this process)."""
    if system == "fastembed":
        from fastembed import LateInteractionTextEmbedding

        m = LateInteractionTextEmbedding("colbert-ir/colbertv2.0", specific_model_path=str(fe_view(folder)), cuda=False)
        return (lambda d: sum(1 for _ in m.embed(d))), (lambda q: list(m.query_embed(q)))
    from lightcol import LateInteractionTextEmbedding

    m = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, session_options=SPIN[spin],
                                     quantized=system.endswith("int8"), optimize=system.startswith("lightcol-optimize"))
    return (lambda d: sum(1 for _ in m.embed(d))), (lambda q: next(m.query_embed(q)))


def _busy(stop: float) -> None:
    x = 0
    while time.time() < stop:
        x += 1


@contextmanager
def busy_cores(load: bool):
    """With ``load``: one busy process per core while the block runs."""
    hogs = []
    if load:
        stop = time.time() + 600
        hogs = [mp.get_context("fork").Process(target=_busy, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 1)]
        for h in hogs:
            h.start()
    try:
        yield
    finally:
        for h in hogs:
            h.terminate()
            h.join()


def measure(system: str, folder: Path, n_docs: int, repeat: int, spin: str, load: bool) -> dict[str, float]:
    docs, queries = cisi_texts(n_docs)
    embed_docs, embed_query = _load(system, folder, spin)
    r = embed_speed(embed_docs, embed_query, docs, queries, repeat, during=busy_cores(load))
    return {"docs_s": r["docs_s"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]}


# ----------------------------------------------------------------------------------------------- in the parent
def python_for(system: str) -> Path:
    return FASTEMBED_PY if system == "fastembed" else Path(sys.executable)


def run_measure(system: str, folder: Path, args: argparse.Namespace, spin: str = "default", load: bool = False) -> dict[str, float]:
    cmd = [str(python_for(system)), str(Path(__file__).resolve()), "--worker", system, "--folder", str(folder),
           "--docs", str(args.docs), "--repeat", str(args.repeat), "--spin", spin] + (["--load"] if load else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{system} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cold_start(system: str, folder: Path, n: int, env: dict[str, str]) -> tuple[float, float]:
    """(min, median) seconds from process start to the first query's vectors."""
    target = fe_view(folder) if system == "fastembed" else folder
    totals = []
    for _ in range(n):
        t = time.perf_counter()
        proc = subprocess.run([str(python_for(system)), "-c", COLD, system, str(target), "what is information retrieval",
                               str(ROOT)], capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"cold start of {system} failed: {proc.stderr.strip()[-2000:]}")
        totals.append(wall)
    return min(totals), statistics.median(totals)


def table_cold(args: argparse.Namespace) -> None:
    cache = Path(tempfile.mkdtemp(prefix="lightcol-cold-"))
    base = {**os.environ, "LIGHTCOL_CACHE_PATH": str(cache)}
    print(f"\ncold start: fresh process, import + load from a local folder + first query; {args.cold} runs, min / median s")
    rows = []
    for label, folder in (("lightcol", OWN), ("foreign", FOREIGN)):
        if not folder.is_dir():
            rows.append((label, f"missing {folder}", "", "", "", ""))
            continue
        fe = cold_start("fastembed", folder, args.cold, base)
        cold_start("lightcol", folder, 1, base)  # fills the cache
        warm = cold_start("lightcol", folder, args.cold, base)
        off = cold_start("lightcol", folder, args.cold, {**base, "LIGHTCOL_GRAPH_CACHE": "0"})
        rows.append((label, f"{fe[0]:.3f} / {fe[1]:.3f}", f"{warm[0]:.3f} / {warm[1]:.3f}", f"{warm[1] / fe[1]:.2f}x",
                     f"{off[0]:.3f} / {off[1]:.3f}", f"{off[1] / fe[1]:.2f}x"))
    shutil.rmtree(cache, ignore_errors=True)
    print_table(("export", "FastEmbed", "lightcol cache warm", "ratio", "lightcol cache off", "ratio"), rows)
    print("(ratio: median lightcol / median FastEmbed; lower is faster)")


EXPORT_DOCS: dict[tuple[str, str], float] = {}


def table_query(args: argparse.Namespace, load: bool) -> None:
    what = "under load (one busy process per core)" if load else "no extra load"
    print(f"\nsingle-query latency and docs/s, {what}; {args.docs} CISI abstracts, 112 queries one at a time")
    table = []
    for label, folder in (("lightcol", OWN), ("foreign", FOREIGN)):
        if not folder.is_dir():
            continue
        fe = run_measure("fastembed", folder, args, load=load)
        rows = [("fastembed", fe),
                ("lightcol (default)", run_measure("lightcol", folder, args, load=load)),
                ("lightcol no spin (old)", run_measure("lightcol", folder, args, spin="nospin", load=load)),
                ("lightcol full spin", run_measure("lightcol", folder, args, spin="fullspin", load=load))]
        if label == "foreign":
            rows.append(("lightcol optimize=True", run_measure("lightcol-optimize", folder, args, load=load)))
        for name, r in rows:
            if not load:
                EXPORT_DOCS[name, label] = r["docs_s"]
            table.append((label, name, f"{r['docs_s']:.1f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                          f"{r['p50_ms'] / fe['p50_ms']:.2f}x", f"{r['docs_s'] / fe['docs_s']:.2f}x"))
    print_table(("export", "system", "docs/s", "q p50 ms", "q p99 ms", "p50 vs FE", "docs/s vs FE"), table)


def table_int8(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lightcol-int8-"))
    folder = tmp / "float32-only"
    folder.mkdir()
    for f in OWN.iterdir():
        if f.is_file() and f.name != "model_int8.onnx" and not f.name.endswith(".lightcol.json"):
            shutil.copyfile(f, folder / f.name)
    entry = json.loads((folder / "lightcol_config.json").read_text())
    entry.pop("variants", None)
    (folder / "lightcol_config.json").write_text(json.dumps(entry))
    from lightcol import LateInteractionTextEmbedding

    t = time.perf_counter()
    LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)
    made = time.perf_counter() - t
    f32 = run_measure("lightcol", folder, args)
    i8 = run_measure("lightcol-int8", folder, args)
    print(f"\nint8 made by quantized=True from a float32-only folder ({made:.1f} s once), {args.docs} CISI abstracts")
    print_table(("variant", "docs/s", "q p50 ms", "vs float32"),
                [(name, f"{r['docs_s']:.1f}", f"{r['p50_ms']:.2f}", f"{r['docs_s'] / f32['docs_s']:.2f}x")
                 for name, r in (("float32", f32), ("int8", i8))])
    if "quality" in args.tables:
        quality(folder)
    shutil.rmtree(tmp, ignore_errors=True)


def quality(folder: Path) -> None:
    from lightcol import LateInteractionTextEmbedding, maxsim

    docs, queries, rel = load_cisi()
    doc_ids, qids = list(docs), [q for q in queries if rel.get(q)]
    relevant = [rel[q] for q in qids]
    ranked = {}
    for variant in ("float32", "int8"):
        m = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=variant == "int8")
        packed = maxsim.pack(m.embed([docs[d] for d in doc_ids], batch_size=32))
        q = list(m.query_embed([queries[i] for i in qids]))
        idx, _ = maxsim.rank_many(q, packed, 10)
        ranked[variant] = [[doc_ids[j] for j in row] for row in idx]
    n32, n8 = ndcg_at(ranked["float32"], relevant, 10), ndcg_at(ranked["int8"], relevant, 10)
    ov = overlap_at(ranked["int8"], ranked["float32"], 10)
    print(f"CISI ({len(doc_ids)} abstracts, {len(qids)} judged queries): nDCG@10 float32 {n32:.4f}, "
          f"int8-from-float32 {n8:.4f} (delta {n8 - n32:+.4f}); overlap@10 int8 vs float32 {ov:.3f}")


def table_export(args: argparse.Namespace) -> None:
    """From the no-extra-load query table's docs/s (same run)."""
    if not EXPORT_DOCS:
        return
    own = EXPORT_DOCS.get(("lightcol (default)", "lightcol"))
    print("\nforeign export (torch.onnx.export defaults) vs lightcol export, same weights, docs/s (from the table above)")
    print_table(("system / export", "docs/s", "vs lightcol on its own export"),
                [(f"{name} / {label}", f"{dps:.1f}", f"{dps / own:.2f}x") for (name, label), dps in EXPORT_DOCS.items()
                 if name in ("fastembed", "lightcol (default)", "lightcol optimize=True")])


def _linked_copy(folder: Path, dest: Path) -> Path:
    """``dest`` holding symlinks to ``folder``'s files (no derived ones): optimize=True writes its file there, not into .bench."""
    dest.mkdir(parents=True)
    for f in folder.iterdir():
        if f.is_file() and not f.name.endswith(".lightcol.json") and "_optimized" not in f.name and f.name != "model_int8.onnx":
            (dest / f.name).symlink_to(f.resolve())
    return dest


def table_exports(args: argparse.Namespace) -> None:
    """docs/s of lightcol on both exports, each with and without optimize=True (float32 and int8),
    best of interleaved rounds."""
    tmp = Path(tempfile.mkdtemp(prefix="lightcol-exports-"))
    from lightcol import LateInteractionTextEmbedding

    rows = []
    for label, folder in (("lightcol", OWN), ("foreign", FOREIGN)):
        if not folder.is_dir():
            print(f"missing {folder}")
            continue
        view = _linked_copy(folder, tmp / label)
        made = {}
        for system in ("lightcol-optimize", "lightcol-int8", "lightcol-optimize-int8"):
            t = time.perf_counter()  # derived files made once, outside the timing
            LateInteractionTextEmbedding(specific_model_path=view, cuda=False, optimize="optimize" in system,
                                         quantized=system.endswith("int8"))
            made[system] = time.perf_counter() - t
        rows += [(label, s, view, made.get(s)) for s in
                 ("lightcol", "lightcol-optimize", "lightcol-int8", "lightcol-optimize-int8")]
    best: dict[tuple[str, str], dict[str, float]] = {}
    for _ in range(args.rounds):
        for label, system, view, _ in rows:
            r = run_measure(system, view, args)
            if (label, system) not in best or r["docs_s"] > best[label, system]["docs_s"]:
                best[label, system] = r
    own = best[("lightcol", "lightcol")]["docs_s"]
    own8 = best[("lightcol", "lightcol-int8")]["docs_s"]
    print(f"\nforeign export (torch.onnx.export defaults) vs lightcol export, same weights: lightcol docs/s, "
          f"{args.docs} CISI abstracts, best of {args.rounds} interleaved rounds (each best of {args.repeat}); "
          f"int8 = quantized=True made from the float32 file (optimize: from the optimised graph)")
    table = []
    for label, system, _, made in rows:
        r = best[label, system]
        opt = f"True ({made:.1f} s)" if "optimize" in system else "False"
        int8 = system.endswith("int8")
        table.append((label, "int8" if int8 else "float32", opt, f"{r['docs_s']:.1f}", f"{r['p50_ms']:.2f}",
                      f"{r['docs_s'] / own:.2f}x", f"{r['docs_s'] / own8:.2f}x" if int8 else ""))
    print_table(("export", "weights", "optimize", "docs/s", "q p50 ms", "vs lightcol export float32",
                 "vs lightcol export int8"), table)
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=200)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--cold", type=int, default=5)
    p.add_argument("--tables", default="cold,query,load,export,exports,int8,quality")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the exports table")
    p.add_argument("--worker")
    p.add_argument("--folder", type=Path)
    p.add_argument("--spin", default="default", choices=sorted(SPIN))
    p.add_argument("--load", action="store_true")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.folder, args.docs, args.repeat, args.spin, args.load)))
        return 0
    tables = args.tables.split(",")
    print(machine())
    if "cold" in tables:
        table_cold(args)
    if "query" in tables:
        table_query(args, load=False)
    if "load" in tables:
        table_query(args, load=True)
    if "export" in tables:
        table_export(args)
    if "exports" in tables:
        table_exports(args)
    if "int8" in tables:
        table_int8(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
