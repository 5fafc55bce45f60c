#!/usr/bin/env python
"""Parity of lightcol with colbert-ai on real text (CISI), printed as a table.

    python tools/parity_report.py [--checkpoint DIR --onnx DIR] [--docs 1460] [--colbert-python PY]

Defaults: the tiny fixture checkpoint and its export; colbert-ai runs in ``.venv-colbert``
(``tools/setup_dev.sh``). Reports, for documents and queries: texts, token-count mismatches,
min / mean per-token cosine, max |difference|.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from cisi import load_cisi  # noqa: E402

from lightcol import LateInteractionTextEmbedding  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=ROOT / "tests" / "fixtures" / "tiny-colbert")
    p.add_argument("--onnx", type=Path, default=ROOT / "tests" / "fixtures" / "tiny-colbert-onnx")
    p.add_argument("--docs", type=int, default=1460)
    p.add_argument("--colbert-python", default=str(ROOT / ".venv-colbert" / "bin" / "python"))
    args = p.parse_args()

    docs, queries, _ = load_cisi()
    documents = list(docs.values())[: args.docs]
    qs = list(queries.values())
    with tempfile.TemporaryDirectory() as tmp:
        texts = Path(tmp) / "texts.json"
        texts.write_text(json.dumps({"documents": documents, "queries": qs}))
        out = Path(tmp) / "ref.npz"
        subprocess.run([args.colbert_python, str(ROOT / "tools" / "colbert_reference.py"), str(args.checkpoint),
                        str(texts), str(out), "--bsize", "32"], check=True, capture_output=True)
        ref = dict(np.load(out))
    model = LateInteractionTextEmbedding(specific_model_path=args.onnx, cuda=False)
    print(f"checkpoint {args.checkpoint.name} vs {args.onnx.name}, CISI text")
    print(f"{'kind':<10}{'texts':>7}{'tokens':>9}{'count mismatches':>18}{'min cosine':>13}{'mean cosine':>13}{'max |diff|':>12}")
    for kind, items, vecs in (("document", documents, model.embed(documents)), ("query", qs, model.query_embed(qs))):
        cos, diff, mism, tokens = [], 0.0, 0, 0
        for i, v in enumerate(vecs):
            r = ref[f"{'doc' if kind == 'document' else 'query'}_{i}"]
            tokens += len(v)
            if v.shape != r.shape:
                mism += 1
                continue
            cos.append((v * r).sum(1))
            diff = max(diff, float(np.abs(v - r).max()))
        c = np.concatenate(cos)
        print(f"{kind:<10}{len(items):>7}{tokens:>9}{mism:>18}{c.min():>13.7f}{c.mean():>13.7f}{diff:>12.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
