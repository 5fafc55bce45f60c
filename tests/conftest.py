"""Shared fixtures: the tiny checkpoints in tests/fixtures (regenerate with tools/make_fixtures.py)."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

# colbert-ai lives in its own environment (tools/setup_dev.sh builds .venv-colbert)
_COLBERT = Path(__file__).resolve().parent.parent / ".venv-colbert" / "bin" / "python"
if "LIGHTCOL_COLBERT_PYTHON" not in os.environ and _COLBERT.is_file():
    os.environ["LIGHTCOL_COLBERT_PYTHON"] = str(_COLBERT)

# FastEmbed pins huggingface-hub<2, so it lives in its own environment too (MUVERA parity)
_FASTEMBED = Path(__file__).resolve().parent.parent / ".venv-fastembed" / "bin" / "python"
if "LIGHTCOL_FASTEMBED_PYTHON" not in os.environ and _FASTEMBED.is_file():
    os.environ["LIGHTCOL_FASTEMBED_PYTHON"] = str(_FASTEMBED)

# derived files (optimised-graph cache, int8 variants) go to a cache of this test run, not the user's
if "LIGHTCOL_CACHE_PATH" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="lightcol-test-cache-")
    os.environ["LIGHTCOL_CACHE_PATH"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

FIXTURES = Path(__file__).parent / "fixtures"
ONNX_DIR = FIXTURES / "tiny-colbert-onnx"
CKPT_DIR = FIXTURES / "tiny-colbert"

WORDS = (
    "late interaction retrieval token vector passage query document index search rank score model "
    "colbert bert encoder matrix similarity maximum information science library catalog abstract "
    "user system evaluation relevance precision recall citation journal author subject analysis"
).split()

EDGE_TEXTS = [
    "",
    " ",
    "\t\n",
    "!!! ... ??? ;;; --- ((( )))",
    ".",
    "ColBERT encodes every token of a passage into its own vector.",
    "Ünïcödé tëxt with àccents, naïve café résumé.",
    "日本語のテキストと中文文本",
    "مرحبا بالعالم — نص من اليمين إلى اليسار",
    "emoji 🙂🚀 and symbols © ™ ∑ ∞",
    "zero\u200bwidth and control\x07chars",
    "literal special tokens [PAD] [MASK] [CLS] [SEP] [unused0]",
    "UPPER lower MiXeD CaSe",
    " ".join(["supercalifragilisticexpialidocious antidisestablishmentarianism"] * 40),
]


def model_with_rules(folder: Path, **changes) -> Path:
    """``folder``: a copy of the tiny ONNX model (made on first call) whose ``lightcol_config.json`` has
    ``changes`` applied (``model=`` sets the name, anything else a rule); returns ``folder``."""
    import json

    if not folder.exists():
        shutil.copytree(ONNX_DIR, folder)
    config = folder / "lightcol_config.json"
    cfg = json.loads(config.read_text())
    for key, value in changes.items():
        if key == "model":
            cfg["model"] = value
        else:
            cfg["rules"][key] = value
    config.write_text(json.dumps(cfg))
    return folder


def unit_rows(rng, n: int, dim: int):
    """``n`` random unit-norm float32 rows of ``dim`` (vectors shaped like ``embed``'s output)."""
    import numpy as np

    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_texts(n: int, seed: int = 0, max_words: int = 120) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, max_words))]
        if rng.random() < 0.5:
            words = [w + rng.choice(",.;:!?") if rng.random() < 0.1 else w for w in words]
        out.append(" ".join(words))
    return out


@pytest.fixture(scope="session")
def model():
    from lightcol import LateInteractionTextEmbedding

    return LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=False)


@pytest.fixture(scope="session")
def tiny_pylate(tmp_path_factory):
    """Tiny PyLate ColBERTs (ModernBERT, BERT, XLM-R; with and without query expansion), their lightcol
    exports and PyLate's own vectors, built once per session (see tests/pylate_models.py)."""
    import pylate_models

    if pylate_models.PYLATE_PYTHON is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must run the PyLate parity tests: run tools/setup_dev.sh (it builds .venv-pylate)")
        pytest.skip("no PyLate environment: run tools/setup_dev.sh or set LIGHTCOL_PYLATE_PYTHON")
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return pylate_models.build(tmp_path_factory.mktemp("tiny-pylate"))
