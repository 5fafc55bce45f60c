"""`import lightcol` stays light: no torch/transformers, and close to its dependencies' own import time."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout


def test_import_pulls_in_nothing_heavy() -> None:
    loaded = _run(
        "import sys, lightcol; print(' '.join(m for m in ('torch', 'transformers', 'huggingface_hub', 'tqdm') if m in sys.modules))"
    )
    assert loaded.strip() == ""


def _best_of(code: str, n: int = 5) -> float:
    timer = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    return min(float(_run(timer)) for _ in range(n))


def test_import_time_within_100ms_of_dependencies() -> None:
    base = _best_of("import onnxruntime, tokenizers, numpy")
    ours = _best_of("import lightcol")
    assert ours - base < 0.1, f"import lightcol {ours:.3f}s vs onnxruntime+tokenizers+numpy {base:.3f}s"
