#!/usr/bin/env python
"""lightcol in one screen: list models, embed documents, embed queries, rank with MaxSim.

    python examples/quickstart.py [MODEL_NAME_OR_FOLDER]

With no argument it runs fully offline on the tiny test model shipped in tests/fixtures (random
weights, so the ranking is not meaningful); pass e.g. ``colbert-ir/colbertv2.0`` for a real model
(downloaded from the Hugging Face hub on first use) or a folder from ``lightcol download --to``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import lightcol
from lightcol import LateInteractionTextEmbedding, maxsim

ROOT = Path(__file__).resolve().parent.parent
target = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "tests" / "fixtures" / "tiny-colbert-onnx")

print("supported models:")
for m in lightcol.list_supported_models():
    print(f"  {m['model']:<40} dim {m['dim']:>4}  {m['size_in_GB']:>5.2f} GB  {m['license']}")

if Path(target).is_dir():
    model = LateInteractionTextEmbedding(specific_model_path=target)
else:
    model = LateInteractionTextEmbedding(target)

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
