#!/usr/bin/env python
"""lightcol's vectors vs colbert-ai's on real text (CISI): token counts, per-token cosine, max difference.

    python benchmarks/parity_report.py [--checkpoint DIR --onnx DIR] [--docs 1460] [--colbert-python PY]

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

from common import COLBERT_PY, ROOT, TINY_MODEL, load_cisi, print_table

from lightcol import LateInteractionTextEmbedding


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=ROOT / "tests" / "fixtures" / "tiny-colbert")
    p.add_argument("--onnx", type=Path, default=TINY_MODEL)
    p.add_argument("--docs", type=int, default=1460)
    p.add_argument("--colbert-python", default=str(COLBERT_PY))
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
    rows = []
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
        rows.append((kind, len(items), tokens, mism, f"{c.min():.7f}", f"{c.mean():.7f}", f"{diff:.2e}"))
    print_table(("kind", "texts", "tokens", "count mismatches", "min cosine", "mean cosine", "max abs diff"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
