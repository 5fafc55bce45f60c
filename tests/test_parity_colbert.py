"""Parity with the official encoder: lightcol's vectors vs colbert-ai's ``Checkpoint`` on the same checkpoint.

colbert-ai pins an old transformers, so it lives in its own environment; ``LIGHTCOL_COLBERT_PYTHON``
names that environment's python (``.ci/run`` builds it). Each rule variant (default, expansion
tokens attended, no punctuation skiplist) is exported with ``tools/export_onnx.py`` when torch is
available, and encoded by both sides.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CKPT_DIR, EDGE_TEXTS, ONNX_DIR, random_texts

ROOT = Path(__file__).resolve().parent.parent
COLBERT_PYTHON = os.environ.get("LIGHTCOL_COLBERT_PYTHON")

if not COLBERT_PYTHON and os.environ.get("CI"):
    raise RuntimeError("CI must run the colbert-ai parity tests: run tools/setup_dev.sh (it builds .venv-colbert)")
pytestmark = pytest.mark.skipif(
    not COLBERT_PYTHON, reason="no colbert-ai environment: run tools/setup_dev.sh or set LIGHTCOL_COLBERT_PYTHON"
)

DOCUMENTS = EDGE_TEXTS + random_texts(40, seed=1)
QUERIES = EDGE_TEXTS + random_texts(20, seed=2, max_words=40)


def colbert_reference(checkpoint: Path, tmp: Path) -> dict[str, np.ndarray]:
    texts = tmp / "texts.json"
    texts.write_text(json.dumps({"documents": DOCUMENTS, "queries": QUERIES}), encoding="utf-8")
    out = tmp / "ref.npz"
    # colbert-ai compiles a C++ extension under TORCH_EXTENSIONS_DIR, guarded by a plain lock file that a
    # killed run leaves behind (and every later run then waits on forever): one folder per test session
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp.parent / "torch_extensions")}
    subprocess.run(
        [COLBERT_PYTHON, str(ROOT / "tools" / "colbert_reference.py"), str(checkpoint), str(texts), str(out), "--bsize", "7"],
        check=True,
        capture_output=True,
        timeout=600,
        env=env,
    )
    return dict(np.load(out))


def variant(tmp: Path, **meta_changes: object) -> tuple[Path, Path]:
    """A copy of the checkpoint with changed artifact.metadata, and its ONNX folder with the same rules."""
    ckpt = tmp / "ckpt"
    shutil.copytree(CKPT_DIR, ckpt)
    meta = json.loads((ckpt / "artifact.metadata").read_text())
    meta.update(meta_changes)
    (ckpt / "artifact.metadata").write_text(json.dumps(meta))
    onnx = tmp / "onnx"
    shutil.copytree(ONNX_DIR, onnx)
    config = json.loads((onnx / "lightcol_config.json").read_text())
    config["rules"]["attend_to_expansion_tokens"] = bool(meta["attend_to_mask_tokens"])
    config["rules"]["skiplist"] = bool(meta["mask_punctuation"])
    (onnx / "lightcol_config.json").write_text(json.dumps(config))
    return ckpt, onnx


def compare(onnx: Path, ref: dict[str, np.ndarray]) -> tuple[float, int]:
    """(min per-token cosine, token-count mismatches) over all documents and queries."""
    from lightcol import LateInteractionTextEmbedding

    model = LateInteractionTextEmbedding(specific_model_path=onnx, cuda=False)
    worst, mismatches = 1.0, 0
    for kind, texts, vectors in (
        ("doc", DOCUMENTS, model.embed(DOCUMENTS, batch_size=5)),
        ("query", QUERIES, model.query_embed(QUERIES, batch_size=5)),
    ):
        got = list(vectors)
        assert len(got) == len(texts)
        for i, v in enumerate(got):
            r = ref[f"{kind}_{i}"]
            assert v.dtype == np.float32
            if v.shape != r.shape:
                mismatches += 1
                continue
            worst = min(worst, float((v * r).sum(axis=1).min()))
    return worst, mismatches


@pytest.mark.parametrize(
    "changes",
    [{}, {"attend_to_mask_tokens": True}, {"mask_punctuation": False}],
    ids=["default", "attend-expansion", "no-skiplist"],
)
def test_parity_with_colbert_ai(tmp_path: Path, changes: dict[str, object]) -> None:
    meta = json.loads((CKPT_DIR / "artifact.metadata").read_text())
    meta.update(changes)
    ckpt, onnx = variant(tmp_path, **changes)
    ref = colbert_reference(ckpt, tmp_path)
    worst, mismatches = compare(onnx, ref)
    print(f"\nparity[{changes}]: min per-token cosine {worst:.7f}, token-count mismatches {mismatches}", file=sys.stderr)
    assert mismatches == 0
    assert worst >= 0.9999


def test_token_ids_match_colbert_ai(tmp_path: Path) -> None:
    """The ids lightcol feeds the encoder are colbert-ai's, marker and truncation included."""
    from lightcol import rules as R
    from lightcol.registry import read_folder_config

    spec = read_folder_config(ONNX_DIR)
    ref = colbert_reference(CKPT_DIR, tmp_path)
    base = R.load_tokenizer(ONNX_DIR / "tokenizer.json", spec.rules)
    docs = R.tokenize(R.truncating(base, spec.rules.document_length), DOCUMENTS)
    batch = R.build_documents(docs, spec.rules, R.skiplist_ids(base, spec.rules))
    for i in range(len(DOCUMENTS)):
        ids = batch.input_ids[i][batch.attention_mask[i] == 1]
        np.testing.assert_array_equal(ids[ids != 0], ref[f"doc_ids_{i}"])
    q = R.build_queries(R.tokenize(R.truncating(base, spec.rules.query_length), QUERIES), spec.rules)
    for i in range(len(QUERIES)):
        np.testing.assert_array_equal(q.input_ids[i], ref[f"query_ids_{i}"])
