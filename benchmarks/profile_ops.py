#!/usr/bin/env python
"""Per-operator time of two or more ONNX files on the same CISI batches (ONNX Runtime's profiler), side by side.

    python benchmarks/profile_ops.py A.onnx B.onnx ... [--folder .bench/minilm-colbert-onnx] [--docs 32] [--rounds 3]

The documents are tokenised once by lightcol (``--folder``'s rules, lightcol's length-sorted batches) and
every file runs the same feeds with lightcol's default session options plus profiling. Prints, per
operator type of the graph ONNX Runtime actually runs (after its own fusions), the node count and the
median over rounds of the summed node time in ms, and the best round's run time. Rounds
are interleaved across the files, so every file sees the same machine load. Benchmark tool, not a test.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
from pathlib import Path

from common import BENCH_MODEL, cisi_texts, machine, print_table


def feeds_for(folder: Path, docs: list[str]) -> list[dict]:
    from lightcol import LateInteractionTextEmbedding

    m = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False)
    seen: list[dict] = []
    run = m._run

    def spy(batch):
        seen.append({"input_ids": batch.input_ids.astype("int64"), "attention_mask": batch.attention_mask.astype("int64")})
        return run(batch)

    m._run = spy
    list(m.embed(docs))
    return seen


def open_session(path: Path, threads: int | None) -> tuple[object, collections.Counter]:
    """A profiling session on ``path`` and the node counts of the graph ONNX Runtime runs."""
    import onnx
    import onnxruntime as ort

    from lightcol import session

    tmp = Path(tempfile.mkdtemp(prefix="lightcol-prof-"))
    opts = session.session_options(threads, None)
    opts.optimized_model_filepath = str(tmp / "ort.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    nodes = collections.Counter(n.op_type for n in onnx.load(str(tmp / "ort.onnx"), load_external_data=False).graph.node)
    opts = session.session_options(threads, None)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp / "prof")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"]), nodes


def per_round(sess, n_feeds: int, rounds: int) -> list[tuple[float, dict[str, float]]]:
    """(wall ms, {op: ms}) of each timed round, from the session's profile."""
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e["ts"])
    runs = runs[len(runs) - rounds * n_feeds:]
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    out = []
    for r in range(rounds):
        group = runs[r * n_feeds:(r + 1) * n_feeds]
        per_op: dict[str, float] = collections.defaultdict(float)
        for run in group:
            lo, hi = run["ts"], run["ts"] + run["dur"]
            for e in nodes:
                if lo <= e["ts"] <= hi:
                    per_op[e["args"]["op_name"]] += e["dur"] / 1000
        out.append((sum(run["dur"] for run in group) / 1000, dict(per_op)))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--folder", type=Path, default=BENCH_MODEL)
    p.add_argument("--docs", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: lightcol's)")
    args = p.parse_args()
    feeds = feeds_for(args.folder, cisi_texts(args.docs)[0])
    opened = [open_session(f, args.threads) for f in args.files]
    for sess, _ in opened:
        for f in feeds[:2]:
            sess.run(None, f)
    for _ in range(args.rounds):  # interleaved: every file sees the same machine load
        for sess, _ in opened:
            for f in feeds:
                sess.run(None, f)
    results = []
    for sess, nodes in opened:
        rounds = per_round(sess, len(feeds), args.rounds)
        ops = {o for _, r in rounds for o in r}
        med = {o: statistics.median(r.get(o, 0.0) for _, r in rounds) for o in ops}
        results.append((nodes, med, min(w for w, _ in rounds)))
    ops = sorted({o for r in results for o in (*r[0], *r[1])}, key=lambda o: -max(r[1].get(o, 0) for r in results))
    print(f"{len(feeds)} batches ({sum(f['input_ids'].shape[0] for f in feeds)} docs), {args.rounds} interleaved rounds, "
          f"{machine()}; per file: nodes after ONNX Runtime's optimisation / median ms per round")
    for k, f in enumerate(args.files):
        print(f"  [{k}] {f}")
    cols = [f"[{k}] {c}" for k in range(len(args.files)) for c in ("n", "ms")]
    rows = [(o, *(x for r in results for x in (r[0].get(o, 0), f"{r[1].get(o, 0):.2f}"))) for o in ops]
    rows.append(("sum of nodes", *(x for r in results for x in (sum(r[0].values()), f"{sum(r[1].values()):.2f}"))))
    rows.append(("min run time per round", *(x for r in results for x in ("", f"{r[2]:.2f}"))))
    print_table(("op", *cols), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
