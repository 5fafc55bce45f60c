#!/usr/bin/env python
"""Reference vectors from the official encoder (colbert-ai), for parity tests and benchmarks.

Runs in an environment with colbert-ai (``transformers<4.50``), not lightcol's:

    python tools/colbert_reference.py CHECKPOINT_DIR TEXTS.json OUT.npz [--bsize 8]

``TEXTS.json`` holds ``{"documents": [...], "queries": [...]}``. ``OUT.npz`` gets ``doc_{i}``
(``Checkpoint.docFromText``, kept tokens only) and ``query_{i}`` (``Checkpoint.queryFromText``)
float32 arrays, plus the token ids colbert-ai fed its encoder (``doc_ids_{i}``, ``query_ids_{i}``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("COLBERT_LOAD_TORCH_EXTENSION_VERBOSE", "False")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("texts")
    p.add_argument("out")
    p.add_argument("--bsize", type=int, default=8)
    args = p.parse_args()

    import numpy as np
    import torch
    from colbert.infra import ColBERTConfig
    from colbert.modeling.checkpoint import Checkpoint

    torch.set_num_threads(1)
    data = json.load(open(args.texts, encoding="utf-8"))
    config = ColBERTConfig.load_from_checkpoint(args.checkpoint)
    ckpt = Checkpoint(args.checkpoint, colbert_config=config, verbose=0)
    if not config.mask_punctuation and not hasattr(ckpt, "skiplist"):
        # colbert-ai 0.2.x only sets `skiplist` when mask_punctuation is on, so docFromText raises
        # AttributeError without it; the intended behaviour is an empty skiplist (drop padding only).
        ckpt.skiplist = {}
    out: dict[str, np.ndarray] = {}
    docs = data.get("documents", [])
    if docs:
        # keep_dims="flatten": every kept token of every document, plus per-document counts
        flat, doclens = ckpt.docFromText(docs, bsize=args.bsize, keep_dims="flatten", to_cpu=True)[:2]
        for i, v in enumerate(torch.split(flat, list(doclens))):
            out[f"doc_{i}"] = v.float().numpy()
        ids, _ = ckpt.doc_tokenizer.tensorize(docs)
        for i, row in enumerate(ids.tolist()):
            out[f"doc_ids_{i}"] = np.array([t for t in row if t != ckpt.raw_tokenizer.pad_token_id])
    queries = data.get("queries", [])
    if queries:
        q = ckpt.queryFromText(queries, bsize=args.bsize, to_cpu=True)
        for i, v in enumerate(q):
            out[f"query_{i}"] = v.float().numpy()
        ids, _ = ckpt.query_tokenizer.tensorize(queries)
        for i, row in enumerate(ids.tolist()):
            out[f"query_ids_{i}"] = np.array(row)
    np.savez(args.out, **out)
    print(f"wrote {len(docs)} documents, {len(queries)} queries to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
