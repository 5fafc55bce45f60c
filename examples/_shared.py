"""What the integration examples share: the model (argv[1], else the bundled tiny test model) and texts."""

from __future__ import annotations

import sys
from pathlib import Path

from lightcol import LateInteractionTextEmbedding

ROOT = Path(__file__).resolve().parent.parent

DOCUMENTS = [
    "ColBERT is a late-interaction retrieval model: every token of a passage gets its own vector.",
    "MaxSim sums, over the query's token vectors, the best dot product with any document token.",
    "The Dewey Decimal Classification organises library collections by subject.",
    "ONNX Runtime executes exported neural networks efficiently on CPUs and GPUs.",
]
QUERY = "how does late interaction scoring work?"


def load_model(argv: list[str] | None = None) -> LateInteractionTextEmbedding:
    """``argv[1]``: a model name or folder; default the tiny test model (offline, random weights,
    so rankings are not meaningful; pass e.g. colbert-ir/colbertv2.0 for a real one)."""
    argv = sys.argv if argv is None else argv
    target = argv[1] if len(argv) > 1 else str(ROOT / "tests" / "fixtures" / "tiny-colbert-onnx")
    if Path(target).is_dir():
        return LateInteractionTextEmbedding(specific_model_path=target)
    return LateInteractionTextEmbedding(target)
