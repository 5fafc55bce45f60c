#!/usr/bin/env python
"""A "foreign" export of the benchmark weights: ``torch.onnx.export`` defaults, as third parties make them.

    python tools/make_foreign_export.py [--ckpt .bench/minilm-colbert] [--out .bench/minilm-colbert-foreign]

Same checkpoint as ``.bench/minilm-colbert-onnx`` (``tools/make_bench_model.py``), but the encoder is
built with transformers' default attention (SDPA) and exported by the legacy TorchScript exporter with
its defaults (its default opset, constant folding on), not by ``tools/export_onnx.py`` (eager attention).
The tokenizer files and ``lightcol_config.json`` are copied from the lightcol export so both folders
load the same way; only ``model.onnx`` differs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))


def make(ckpt: Path, ref: Path, out: Path) -> Path:
    """Write the foreign export of checkpoint ``ckpt`` into ``out`` (tokenizer and config from lightcol's export ``ref``)."""
    import json

    import torch
    from transformers import AutoConfig, AutoModel

    import export_onnx

    encoder, tok, heads, rules, _ = export_onnx.load_checkpoint(ckpt)
    config = AutoConfig.from_pretrained(str(ckpt))
    sdpa = AutoModel.from_config(config)  # transformers' default attention implementation
    sdpa.load_state_dict(encoder.state_dict())
    module = export_onnx.build_module(sdpa, heads)
    out.mkdir(parents=True, exist_ok=True)
    for f in ref.iterdir():
        if f.name not in ("model.onnx", "model_int8.onnx") and f.is_file() and not f.name.endswith(".lightcol.json") \
                and "_optimized" not in f.name:
            shutil.copyfile(f, out / f.name)
    cfg = out / "lightcol_config.json"
    entry = json.loads(cfg.read_text())
    entry.pop("variants", None)
    entry["provenance"] = {"exported_from": str(ckpt.name), "tool": "torch.onnx.export defaults (dynamo=False, SDPA)"}
    cfg.write_text(json.dumps(entry, indent=2))
    ids = torch.tensor([[101, 1, 2000, 2001, 102]] * 2, dtype=torch.long)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (ids, torch.ones_like(ids)), str(out / "model.onnx"),
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                          "last_hidden_state": {0: "batch", 1: "sequence"}},
            dynamo=False,
        )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, default=ROOT / ".bench" / "minilm-colbert")
    p.add_argument("--ref", type=Path, default=ROOT / ".bench" / "minilm-colbert-onnx")
    p.add_argument("--out", type=Path, default=ROOT / ".bench" / "minilm-colbert-foreign")
    args = p.parse_args()
    print(make(args.ckpt, args.ref, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
