#!/usr/bin/env python
"""lightcol in one screen: list models, embed documents and queries, rank with MaxSim.

    python examples/quickstart.py                   # answerai-colbert-small-v1 from the hub (0.13 GB, once)
    python examples/quickstart.py MODEL_OR_FOLDER   # another registry model, or a folder (lightcol download --to)
    HF_HUB_OFFLINE=1 python examples/quickstart.py  # no network: the tiny test model in tests/fixtures

When the default model cannot be downloaded (no network, or offline with an empty cache), it falls back
to the tiny test model. That model has random weights: it shows the API and the shapes, but its
rankings are meaningless, and the output says so.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import lightcol
from lightcol import DownloadError, LateInteractionTextEmbedding, maxsim

DEFAULT = "answerdotai/answerai-colbert-small-v1"
TINY = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tiny-colbert-onnx"


def load(target: str) -> tuple[LateInteractionTextEmbedding, bool]:
    """The model, and whether its rankings mean anything (False for the tiny random test model)."""
    if Path(target).is_dir():
        return LateInteractionTextEmbedding(specific_model_path=target), Path(target).resolve() != TINY
    try:
        return LateInteractionTextEmbedding(target), True
    except DownloadError as e:
        if target != DEFAULT:
            raise
        print(f"\n{DEFAULT} is not available here ({type(e).__name__}); using the tiny test model instead.")
        return LateInteractionTextEmbedding(specific_model_path=TINY), False


print("supported models:")
for m in lightcol.list_supported_models():
    print(f"  {m['model']:<40} dim {m['dim']:>4}  {m['size_in_GB']:>5.2f} GB  {m['license']}")

model, meaningful = load(sys.argv[1] if len(sys.argv) > 1 else DEFAULT)

documents = [
    "ColBERT is a late-interaction retrieval model: every token of a passage gets its own vector.",
    "MaxSim sums, over the query's token vectors, the best dot product with any document token.",
    "The Dewey Decimal Classification organises library collections by subject.",
    "ONNX Runtime executes exported neural networks efficiently on CPUs and GPUs.",
]
queries = ["how does late interaction scoring work?", "library classification systems"]

t = time.perf_counter()
doc_vectors = list(model.embed(documents))  # generator: one (tokens, dim) array per document
query_vectors = list(model.query_embed(queries))  # one (query_length, dim) array per query
print(f"\nembedded {len(documents)} documents and {len(queries)} queries in {time.perf_counter() - t:.3f}s "
      f"with {model.model_name}")
print("document shapes:", [v.shape for v in doc_vectors], " query shape:", query_vectors[0].shape)

for query, q in zip(queries, query_vectors):
    indices, scores = maxsim.rank(q, doc_vectors, k=2)
    print(f"\n{query!r}")
    for i, s in zip(indices, scores):
        print(f"  {s:7.3f}  {documents[i]}")

if not meaningful:
    print("\nNOTE: the tiny test model has random weights, so these rankings are meaningless. With network "
          f"access this script uses {DEFAULT}; or pass a model name or a downloaded folder.")
