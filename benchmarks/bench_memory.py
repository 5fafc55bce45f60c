"""Memory and leaks: peak RSS while streaming 10k vs 100k short texts (flat means no growth), and file
handles / threads before vs after 1,000 model loads.

    python benchmarks/bench_memory.py                          # 10k and 100k texts, tiny test model, 1,000 loads
    python benchmarks/bench_memory.py --counts 1000 10000 --loads 100
    python benchmarks/bench_memory.py --model-path DIR --counts 10000

Each stream runs in a fresh subprocess so that its peak RSS (``ru_maxrss``) is its own. Memory is flat
when the peak at 100k is about the peak at 10k: ``embed`` consumes its input in windows of
``8 * batch_size`` texts and the caller drops each vector after use.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time

from common import TINY_MODEL, peak_rss_mib, print_table, rss_mib

WORDS = "late interaction retrieval token vector passage query document index search rank score model".split()


def _texts(n: int):
    for i in range(n):
        yield " ".join(WORDS[(i + k) % len(WORDS)] for k in range(8 + i % 24))  # 8-31 words


def _stream_child(model_path: str, n: int, batch_size: int) -> None:
    from lightcol import LateInteractionTextEmbedding

    model = LateInteractionTextEmbedding(specific_model_path=model_path, cuda=False)
    next(model.embed("warm up"))
    base = rss_mib()
    marks: dict[int, float] = {}
    rows = 0
    start = time.perf_counter()
    for i, v in enumerate(model.embed(_texts(n), batch_size=batch_size), 1):
        rows += v.shape[0]
        if i in (n // 10, n // 2):
            marks[i] = rss_mib()
    elapsed = time.perf_counter() - start
    peak = max(peak_rss_mib(), rss_mib())
    print(json.dumps({"n": n, "after_load": base, "marks": marks, "end": rss_mib(), "peak": peak, "rows": rows, "s": elapsed}))


def _loads(model_path: str, n: int) -> dict[str, float]:
    from lightcol import LateInteractionTextEmbedding

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def tasks() -> int:
        return len(os.listdir("/proc/self/task"))

    def load() -> None:
        m = LateInteractionTextEmbedding(specific_model_path=model_path, cuda=False, lazy_load=False)
        next(m.embed("x"))

    for _ in range(3):
        load()
    gc.collect()
    before = {"fds": fds(), "native_threads": tasks(), "py_threads": threading.active_count(), "rss_mib": rss_mib()}
    start = time.perf_counter()
    for _ in range(n):
        load()
    gc.collect()
    after = {"fds": fds(), "native_threads": tasks(), "py_threads": threading.active_count(), "rss_mib": rss_mib()}
    return {"loads": n, "seconds": time.perf_counter() - start, "before": before, "after": after}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-path", default=str(TINY_MODEL), help="model folder (default: the tiny test model)")
    ap.add_argument("--counts", type=int, nargs="*", default=[10_000, 100_000], help="stream lengths")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--loads", type=int, default=1000, help="model loads for the leak check (0: skip)")
    ap.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child is not None:
        _stream_child(args.model_path, args._child, args.batch_size)
        return 0

    print(f"model: {args.model_path}  batch_size: {args.batch_size}")
    results = []
    for n in args.counts:
        out = subprocess.run(
            [sys.executable, __file__, "--model-path", args.model_path, "--batch-size", str(args.batch_size), "--_child", str(n)],
            check=True, capture_output=True, text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = []
    for r in results:
        n = r["n"]
        m10, m50 = (r["marks"].get(str(k), float("nan")) for k in (n // 10, n // 2))
        rows.append((f"{n:,}", *(f"{x:.1f} MiB" for x in (r["after_load"], m10, m50, r["end"], r["peak"])), f"{n / r['s']:,.0f}"))
    print_table(("texts", "after load", "at 10%", "at 50%", "at end", "peak RSS", "texts/s"), rows)
    if len(results) >= 2:
        growth = results[-1]["peak"] - results[0]["peak"]
        print(f"peak RSS growth from {results[0]['n']:,} to {results[-1]['n']:,} texts: {growth:+.1f} MiB")

    if args.loads:
        r = _loads(args.model_path, args.loads)
        b, a = r["before"], r["after"]
        print(f"\n{r['loads']:,} model loads (lazy_load=False, one embed each) in {r['seconds']:.0f} s")
        print_table(("", "before", "after"),
                    [(key, f"{b[key]:.0f}", f"{a[key]:.0f}") for key in ("fds", "native_threads", "py_threads", "rss_mib")])
        leaked = a["fds"] > b["fds"] or a["native_threads"] > b["native_threads"] or a["py_threads"] > b["py_threads"]
        print("LEAK" if leaked else "no file handles or threads leaked")
        return 1 if leaked else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
