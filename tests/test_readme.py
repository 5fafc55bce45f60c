"""The README's Python snippets run as written, offline, on the tiny test model.

Each ```python block of README.md runs in a fresh interpreter, in an empty working folder, with
``HF_HUB_OFFLINE=1``. A hub model name given to ``LateInteractionTextEmbedding("...")`` is replaced by
the offline form every snippet's comment shows, ``specific_model_path=<tests/fixtures/tiny-colbert-onnx>``.
A block preceded by ``<!-- readme-test: skip (reason) -->`` is not run (it needs a server).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "tiny-colbert-onnx"
README = (ROOT / "README.md").read_text(encoding="utf-8")
OFFLINE_COMMENT = '# offline: LateInteractionTextEmbedding(specific_model_path="tests/fixtures/tiny-colbert-onnx")'
_BLOCK = re.compile(r"(<!-- readme-test: skip \(([^)]*)\) -->\n)?```python\n(.*?)```", re.S)
_HUB_MODEL = re.compile(r'LateInteractionTextEmbedding\("[^"]+"\)')


def _snippets() -> list:
    out = []
    for m in _BLOCK.finditer(README):
        line = README.count("\n", 0, m.start(3))
        marks = [pytest.mark.skip(reason=m.group(2))] if m.group(1) else []
        out.append(pytest.param(m.group(3), id=f"line{line}", marks=marks))
    return out


SNIPPETS = _snippets()


def offline(code: str) -> str:
    """The snippet with every hub model replaced by the tiny test model (an absolute path)."""
    return _HUB_MODEL.sub(f"LateInteractionTextEmbedding(specific_model_path={str(TINY)!r})", code)


def test_readme_has_snippets_and_each_says_how_to_run_offline() -> None:
    assert len(SNIPPETS) >= 8
    for p in SNIPPETS:
        code = p.values[0]
        if "LateInteractionTextEmbedding(" in code and "readme-test: skip" not in code:
            loads = _HUB_MODEL.findall(code)
            assert loads, f"a snippet loads a model other than by a hub name:\n{code}"
            if not p.marks:
                assert OFFLINE_COMMENT in code, f"a snippet does not say how to run it offline:\n{code}"


def _prepare(code: str, cwd: Path) -> None:
    """What a snippet reads that an earlier step in the README makes (the command shown above it)."""
    if 'read_embeddings("embeddings/")' in code:
        (cwd / "passages.jsonl").write_text(
            "".join(json.dumps({"id": i, "text": f"passage {i}"}) + "\n" for i in range(3)), encoding="utf-8")
        from lightcol.cli import main

        assert main(["embed", str(cwd / "passages.jsonl"), "-o", str(cwd / "embeddings"), "--model-path", str(TINY),
                     "--dtype", "float16", "-q"]) == 0


@pytest.mark.parametrize("code", SNIPPETS)
def test_snippet_runs_offline(code: str, tmp_path: Path) -> None:
    _prepare(code, tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LIGHTCOL_CACHE_PATH": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", offline(code)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"


def test_quickstart_offline_falls_back_to_the_tiny_model_and_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LIGHTCOL_CACHE_PATH": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "using the tiny test model instead" in proc.stdout
    assert "rankings are meaningless" in proc.stdout
    assert "with lightcol/tiny-colbert" in proc.stdout and "query shape: (32, 16)" in proc.stdout
