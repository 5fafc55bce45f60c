"""Tiny randomly initialised PyLate ColBERT checkpoints, built once per test session.

Each is made by ``tools/pylate_reference.py`` in the PyLate environment (``.venv-pylate``, PyLate
1.6.0 on torch 2.13 CPU), encoded there by PyLate's own ``ColBERT.encode`` on :data:`DOCUMENTS` and
:data:`QUERIES`, and exported to ONNX by ``tools/export_onnx.py`` (with ``--quantize int8``). All of it
happens in one PyLate process per session (importing PyLate costs seconds), into a temporary folder.

The models (``TINY_PYLATE``): ModernBERT (byte-level BPE, case-sensitive; a global attention layer
and two sliding-window layers with a 16-token local window, documents up to 160 tokens), BERT
(lower-casing WordPiece) and XLM-RoBERTa (Unigram, ``<s>``/``</s>``), each with query expansion
(BERT's with the expansion tokens attended) and without (XLM-R's with an empty skiplist, as mLateOn).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conftest import EDGE_TEXTS, random_texts

ROOT = Path(__file__).resolve().parent.parent
_PYLATE = ROOT / ".venv-pylate" / "bin" / "python"
PYLATE_PYTHON = os.environ.get("LIGHTCOL_PYLATE_PYTHON") or (str(_PYLATE) if _PYLATE.is_file() else None)

#: name -> tools/pylate_reference.py "make" options
TINY_PYLATE: dict[str, dict] = {
    "modernbert": {"arch": "modernbert", "local_attention": 16, "document_length": 160},
    "modernbert-noexp": {"arch": "modernbert", "local_attention": 16, "document_length": 160, "do_query_expansion": False},
    "bert": {"arch": "bert", "attend_to_expansion_tokens": True, "document_length": 128},
    "bert-noexp": {"arch": "bert", "do_query_expansion": False, "document_length": 128},
    "xlmr": {"arch": "xlmr", "document_length": 128, "query_length": 24},
    # as mLateOn: no query expansion, trained with an empty skiplist
    "xlmr-noexp": {"arch": "xlmr", "do_query_expansion": False, "document_length": 128, "skiplist_words": []},
}
#: models also exported by LightOn's exporter (colbert-export), for the folder-loading tests
LIGHTON_EXPORTED = ("modernbert", "bert")

_MIXED = [
    "The Library of Congress and the British Library index JOURNAL articles, Author names and Subjects.",
    "ColBERT, PLAID and MaxSim: late Interaction over Token vectors (2024).",
    "  leading and trailing spaces  ",
    "CamelCaseWords and snake_case_words, e-mail@example.com, URLs like https://example.org/a?b=c.",
]
#: documents far longer than the 16-token local window (up to 120 words), plus edge cases
DOCUMENTS = EDGE_TEXTS + _MIXED + random_texts(30, seed=11, max_words=120)
QUERIES = EDGE_TEXTS[:6] + _MIXED[:2] + random_texts(12, seed=12, max_words=30)


def export_tool():
    """``tools/export_onnx.py`` imported as a module."""
    if "export_onnx" in sys.modules:
        return sys.modules["export_onnx"]
    spec = importlib.util.spec_from_file_location("export_onnx", ROOT / "tools" / "export_onnx.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["export_onnx"] = mod
    spec.loader.exec_module(mod)
    return mod


@dataclass
class TinyPyLate:
    """One tiny model: its PyLate checkpoint, lightcol export, PyLate's vectors and (maybe) LightOn's export."""

    name: str
    checkpoint: Path
    onnx: Path
    reference: dict[str, np.ndarray]
    entry: dict = field(default_factory=dict)
    lighton: Path | None = None

    def ref(self, kind: str) -> list[np.ndarray]:
        """PyLate's vectors for every document (``"doc"``) or query (``"query"``), in order."""
        n = len(DOCUMENTS if kind == "doc" else QUERIES)
        return [self.reference[f"{kind}_{i}"] for i in range(n)]


def build(root: Path) -> dict[str, TinyPyLate]:
    """Make, encode and export every model of :data:`TINY_PYLATE` under ``root``.

    With ``LIGHTCOL_TINY_PYLATE_DIR`` set (a folder of one's own), the models built there by an earlier
    run with the same models and texts are reused (for quick iterations; CI builds them afresh)."""
    reuse = os.environ.get("LIGHTCOL_TINY_PYLATE_DIR")
    if reuse:
        root = Path(reuse)
        root.mkdir(parents=True, exist_ok=True)
        built = root / "built.json"
        if built.is_file() and json.loads(built.read_text())["texts"] == [DOCUMENTS, QUERIES] and (
            json.loads(built.read_text())["models"] == TINY_PYLATE
        ):
            return load(root)
    if PYLATE_PYTHON is None:
        raise RuntimeError("no PyLate environment: run tools/setup_dev.sh (it builds .venv-pylate)")
    texts = root / "texts.json"
    texts.write_text(json.dumps({"documents": DOCUMENTS, "queries": QUERIES}), encoding="utf-8")
    job = {
        "make": [{**spec, "out": str(root / name / "checkpoint")} for name, spec in TINY_PYLATE.items()],
        "encode": [
            {"checkpoint": str(root / name / "checkpoint"), "texts": str(texts), "out": str(root / name / "pylate.npz"), "batch_size": 7}
            for name in TINY_PYLATE
        ],
        "lighton_export": [{"checkpoint": str(root / n / "checkpoint"), "out": str(root / n / "lighton")} for n in LIGHTON_EXPORTED],
    }
    (root / "job.json").write_text(json.dumps(job))
    done = subprocess.run(
        [PYLATE_PYTHON, str(ROOT / "tools" / "pylate_reference.py"), str(root / "job.json")],
        capture_output=True, text=True, timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tools/pylate_reference.py failed:\n{done.stderr[-4000:]}")
    tool = export_tool()
    entries = {}
    for name in TINY_PYLATE:
        entries[name] = tool.export(root / name / "checkpoint", root / name / "onnx", name=f"tiny-pylate-{name}", quantize="int8")
    (root / "built.json").write_text(json.dumps({"texts": [DOCUMENTS, QUERIES], "models": TINY_PYLATE, "entries": entries}))
    return load(root)


def load(root: Path) -> dict[str, TinyPyLate]:
    """The models :func:`build` made under ``root``."""
    entries = json.loads((root / "built.json").read_text())["entries"]
    models = {}
    for name, entry in entries.items():
        models[name] = TinyPyLate(
            name=name,
            checkpoint=root / name / "checkpoint",
            onnx=root / name / "onnx",
            reference=dict(np.load(root / name / "pylate.npz")),
            entry=entry,
            lighton=root / name / "lighton" if name in LIGHTON_EXPORTED else None,
        )
    return models


def min_cosine(got: np.ndarray, ref: np.ndarray) -> float:
    """Smallest per-token cosine similarity of two equally shaped arrays of token vectors."""
    num = (got * ref).sum(-1)
    den = np.maximum(np.linalg.norm(got, axis=-1) * np.linalg.norm(ref, axis=-1), 1e-12)
    return float((num / den).min()) if len(num) else 1.0
