"""benchmarks/: every script imports (its imports of the shared module resolve), and the shared helpers
compute what the tables report (percentiles, nDCG, CISI parsing, Markdown)."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def common():
    spec = importlib.util.spec_from_file_location("common", BENCH_DIR / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_benchmark_imports() -> None:
    scripts = sorted(p.stem for p in BENCH_DIR.glob("*.py"))
    assert {"common", "bench_maxsim", "bench_index", "bench_embed"} <= set(scripts)
    code = f"import sys; sys.path.insert(0, {str(BENCH_DIR)!r})\n" + "".join(f"import {s}\n" for s in scripts)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_percentiles(common) -> None:
    for n in (1, 2, 7, 112, 113, 1000):
        values = list(np.random.default_rng(n).random(n))
        ordered = sorted(values)
        assert common.p50_p99(values, method="higher") == (ordered[n // 2], ordered[min(n - 1, int(0.99 * n))])
    assert common.p50_p99([1.0, 2.0, 3.0, 4.0]) == (2.5, pytest.approx(3.97))


def test_ranking_metrics(common) -> None:
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert common.ndcg_at_k([7, 1, 9], {7, 9}) == pytest.approx(dcg / ideal)
    assert common.ndcg_at([[7, 1, 9], [1]], [{7, 9}, set()]) == pytest.approx(dcg / ideal)  # unjudged skipped
    assert common.recall_at([[1, 2, 3]], [{3, 4}], 2) == 0.0
    assert common.recall_at([[1, 2, 3]], [{3, 4}], 3) == 0.5
    assert common.overlap_at([[1, 2]], [[2, 5, 6]], 2) == 0.5


def test_cisi_parsing(common, tmp_path, monkeypatch) -> None:
    (tmp_path / "CISI.ALL").write_text(
        ".I 1\n.T\nA Title\n.A\nSmith, J.\n.W\nFirst  abstract\nsecond line.\n.X\n1 5 1\n"
        ".I 2\n.T\nOnly a title\n", encoding="utf-8")
    (tmp_path / "CISI.QRY").write_text(".I 1\n.W\nWhat is\nretrieval?\n.I 2\n.T\nT2\n.W\nq2\n.B\nsrc\n", encoding="utf-8")
    (tmp_path / "CISI.REL").write_text("1 1 0 0.0\n1 2 0 0.0\n 2 2 0 0.0\n", encoding="utf-8")
    monkeypatch.setenv("LIGHTCOL_CISI_DIR", str(tmp_path))
    docs, queries, qrels = common.load_cisi()
    assert docs == {1: "A Title First abstract second line.", 2: "Only a title"}
    assert queries == {1: "What is retrieval?", 2: "T2 q2"}
    assert qrels == {1: {1, 2}, 2: {2}}
    assert common.load_cisi("W")[0] == {1: "First abstract second line.", 2: ""}
    assert common.cisi_texts(1) == (["First abstract second line."], ["What is retrieval?", "q2"])
    monkeypatch.setenv("LIGHTCOL_CISI_DIR", str(tmp_path / "missing"))
    with pytest.raises(SystemExit, match="LIGHTCOL_CISI_DIR"):
        common.load_cisi()


def test_markdown_table(common) -> None:
    assert common.table_lines(("a", "b"), [(1, "x"), (2.5, "")]) == ["| a | b |", "|---|---|", "| 1 | x |", "| 2.5 |  |"]
