#!/usr/bin/env python
"""Export a ColBERT checkpoint (colbert-ai or PyLate format) to the ONNX folder lightcol loads.

    pip install torch==2.13.0 && pip install -e ".[export]"
    python tools/export_onnx.py CHECKPOINT_DIR OUT_DIR [--name NAME] [--no-verify] [--quantize int8] [--fp16]

The folder written holds ``model.onnx`` (inputs ``input_ids``/``attention_mask`` with dynamic batch
and sequence axes; output the projected, unnormalised token vectors, as the hub's colbertv2.0
``model.onnx``), the tokenizer files, and ``lightcol_config.json`` with the encoding rules, so
``LateInteractionTextEmbedding(specific_model_path=OUT_DIR)`` works without a model name.

With ``--verify`` (default) PyTorch and ONNX Runtime run on sample texts, encoded by lightcol's
own rules, and the export fails if the largest absolute difference exceeds ``--tolerance`` (1e-4).

``--quantize int8`` also writes ``model_int8.onnx``: ONNX Runtime dynamic quantisation (int8
weights, per output channel, 7-bit range; uint8 activations quantised per batch at run time).
``reduce_range`` is on by default: measured with onnxruntime 1.32 on an AVX-512 VNNI CPU, full-range
per-channel weights saturate in its u8s8 kernels (tiny test model: mean cosine vs float32 0.898
full range, 0.999 reduced; MiniLM on 200 CISI abstracts: min cosine 0.896 vs 0.910, same mean
0.985, same speed). ``--fp16`` writes ``model_fp16.onnx`` (float16
weights and compute, float32 inputs/outputs) for GPUs. Both are recorded in ``lightcol_config.json``
under ``variants`` (``{"int8": "model_int8.onnx"}``), loaded with
``LateInteractionTextEmbedding(..., quantized=True)`` or ``model_variant="fp16"``; with ``--verify``
each variant's vectors are compared with float32 by cosine similarity (``--min-cosine``).

Supported inputs:
* colbert-ai: ``config.json`` + weights (``model.safetensors`` or ``pytorch_model.bin``) with the
  encoder under its base-model prefix (``bert.``...) and ``linear.weight``, plus ``artifact.metadata``.
* PyLate: ``modules.json`` with a Transformer module and one or more Dense modules, plus
  ``config_sentence_transformers.json`` with the prefixes and lengths.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import string
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SAMPLE_TEXTS = [
    "",
    "ColBERT encodes every token of a passage into its own vector.",
    "!!! ... ??? ;;; ---",
    "Ünïcödé tëxt, 日本語のテキスト, and emoji 🙂 mixed with ASCII.",
    " ".join(["late interaction retrieval with maximum similarity over token embeddings"] * 60),
    "short",
]


class ExportError(RuntimeError):
    """The checkpoint cannot be exported, or the export does not match PyTorch."""


def _load_state_dict(folder: Path, stem: str = "model") -> dict[str, Any]:
    import torch

    st = folder / f"{stem}.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        return load_file(str(st))
    for name in ("pytorch_model.bin", f"{stem}.bin", "pytorch_model.pt"):
        if (folder / name).is_file():
            return torch.load(folder / name, map_location="cpu", weights_only=True)
    raise ExportError(f"no weights (model.safetensors / pytorch_model.bin) in {folder}")


def _tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), use_fast=True)
    if not getattr(tok, "is_fast", False):
        raise ExportError(f"{folder}: no fast tokenizer could be built; lightcol needs tokenizer.json")
    return tok


def _marker(tok: Any, token: str, what: str) -> dict[str, Any]:
    tid = tok.convert_tokens_to_ids(token)
    if tid is None or tid == tok.unk_token_id:
        raise ExportError(f"{what} {token!r} is not in the tokenizer's vocabulary")
    return {"token": token, "id": int(tid)}


def _base_rules(tok: Any, query_token: str, doc_token: str) -> dict[str, Any]:
    from lightcol.rules import _normalizer_lowercases

    if tok.mask_token is None or tok.pad_token is None:
        raise ExportError("the tokenizer needs a mask token and a pad token")
    return {
        "query_marker": _marker(tok, query_token, "query marker"),
        "document_marker": _marker(tok, doc_token, "document marker"),
        "mask_token": {"token": tok.mask_token, "id": int(tok.mask_token_id)},
        "pad_token": {"token": tok.pad_token, "id": int(tok.pad_token_id)},
        "lowercase": bool(_normalizer_lowercases(tok.backend_tokenizer)),
    }


def load_colbert_ai(folder: Path) -> tuple[Any, Any, list[Any], dict[str, Any]]:
    """Encoder, tokenizer, projection heads and rules from a colbert-ai checkpoint folder."""
    import torch
    from transformers import AutoConfig, AutoModel

    meta = json.loads((folder / "artifact.metadata").read_text())
    meta = meta.get("config", meta)
    config = AutoConfig.from_pretrained(str(folder))
    # eager attention exports as plain MatMul/Softmax, which ONNX Runtime runs about 8% faster than the
    # SDPA export (no Where/IsNaN guards for fully masked rows); measured with benchmarks/bench_embed.py
    encoder = AutoModel.from_config(config, attn_implementation="eager")
    state = _load_state_dict(folder)
    prefix = encoder.base_model_prefix + "."
    enc_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = encoder.load_state_dict(enc_state, strict=False)
    missing = [m for m in missing if "position_ids" not in m and not m.startswith("pooler.")]
    if missing:
        raise ExportError(f"{folder}: encoder weights missing for {missing[:5]}...")
    if "linear.weight" not in state:
        raise ExportError(f"{folder}: no 'linear.weight' (the ColBERT projection) in the weights")
    weight = state["linear.weight"]
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    linear.weight.data.copy_(weight)
    tok = _tokenizer(folder)
    rules = _base_rules(tok, meta.get("query_token_id", "[unused0]"), meta.get("doc_token_id", "[unused1]"))
    rules.update(
        query_length=int(meta.get("query_maxlen", 32)),
        document_length=int(meta.get("doc_maxlen", 220)),
        attend_to_expansion_tokens=bool(meta.get("attend_to_mask_tokens", False)),
        skiplist=bool(meta.get("mask_punctuation", True)),
    )
    return encoder, tok, [linear], rules


def _activation(name: str | None) -> Any:
    import torch

    if not name or name.endswith("Identity"):
        return torch.nn.Identity()
    module, _, cls = name.rpartition(".")
    return getattr(importlib.import_module(module), cls)()


def load_pylate(folder: Path) -> tuple[Any, Any, list[Any], dict[str, Any]]:
    """Encoder, tokenizer, Dense heads and rules from a PyLate (sentence-transformers) folder."""
    import torch
    from transformers import AutoModel

    modules = json.loads((folder / "modules.json").read_text())
    st_config = json.loads((folder / "config_sentence_transformers.json").read_text())
    transformer = [m for m in modules if m["type"].endswith("Transformer")]
    dense = [m for m in modules if m["type"].endswith("Dense")]
    if len(transformer) != 1 or not dense:
        raise ExportError(f"{folder}: expected one Transformer module and Dense module(s), got {[m['type'] for m in modules]}")
    enc_dir = folder / transformer[0]["path"]
    encoder = AutoModel.from_pretrained(str(enc_dir), attn_implementation="eager")
    heads = []
    for m in sorted(dense, key=lambda m: m["idx"]):
        d_dir = folder / m["path"]
        cfg = json.loads((d_dir / "config.json").read_text())
        state = _load_state_dict(d_dir)
        bias = bool(cfg.get("bias", "linear.bias" in state))
        layer = torch.nn.Linear(int(cfg["in_features"]), int(cfg["out_features"]), bias=bias)
        layer.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
        heads.append(torch.nn.Sequential(layer, _activation(cfg.get("activation_function"))))
    tok = _tokenizer(enc_dir)
    q_prefix = st_config.get("query_prefix", "[unused0]").strip()
    d_prefix = st_config.get("document_prefix", "[unused1]").strip()
    if not st_config.get("do_query_expansion", True):
        raise ExportError("checkpoints without query expansion (do_query_expansion=false) are not supported yet")
    skip_words = st_config.get("skiplist_words", list(string.punctuation))
    rules = _base_rules(tok, q_prefix, d_prefix)
    rules.update(
        query_length=int(st_config.get("query_length", 32)),
        document_length=int(st_config.get("document_length", 180)),
        attend_to_expansion_tokens=bool(st_config.get("attend_to_expansion_tokens", False)),
        skiplist=bool(skip_words),
    )
    return encoder, tok, heads, rules


def load_checkpoint(folder: Path) -> tuple[Any, Any, list[Any], dict[str, Any], str]:
    """Detect the checkpoint format and load it: (encoder, tokenizer, heads, rules, format)."""
    if (folder / "modules.json").is_file():
        return (*load_pylate(folder), "pylate")
    if (folder / "artifact.metadata").is_file():
        return (*load_colbert_ai(folder), "colbert-ai")
    raise ExportError(f"{folder}: neither a PyLate folder (modules.json) nor a colbert-ai checkpoint (artifact.metadata)")


def build_module(encoder: Any, heads: list[Any]) -> Any:
    """``(input_ids, attention_mask) -> projected token vectors`` as one torch module."""
    import torch

    class ColBERTHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.heads = torch.nn.Sequential(*heads)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return self.heads(hidden)

    return ColBERTHead().eval()


def _sample_batches(tokenizer_json: Path, spec: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    from lightcol import rules as R

    base = R.load_tokenizer(tokenizer_json, spec.rules)
    skip = R.skiplist_ids(base, spec.rules)
    docs = R.build_documents(R.tokenize(R.truncating(base, spec.rules.document_length), SAMPLE_TEXTS), spec.rules, skip)
    queries = R.build_queries(R.tokenize(R.truncating(base, spec.rules.query_length), SAMPLE_TEXTS), spec.rules)
    return [(docs.input_ids, docs.attention_mask), (queries.input_ids, queries.attention_mask)]


def verify(module: Any, onnx_path: Path, tokenizer_json: Path, spec: Any) -> float:
    """Largest |torch - onnxruntime| over sample document and query batches."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for ids, mask in _sample_batches(tokenizer_json, spec):
        with torch.no_grad():
            ref = module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        got = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        if got.shape != ref.shape:
            raise ExportError(f"ONNX output shape {got.shape} != PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def quantize_int8(src: Path, dst: Path, *, per_channel: bool = True, reduce_range: bool = True) -> None:
    """Dynamic int8 quantisation of ``src`` into ``dst``: lightcol's own recipe (:func:`lightcol.quantize.quantize_file`),
    so ``quantized=True`` on a float32-only folder gives the same file as ``--quantize int8``."""
    from lightcol.quantize import quantize_file

    quantize_file(src, dst, per_channel=per_channel, reduce_range=reduce_range)


def convert_fp16(src: Path, dst: Path) -> None:
    """float16 weights and compute, float32 inputs and outputs (for GPU execution providers)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def variant_cosine(onnx_path: Path, variant_path: Path, tokenizer_json: Path, spec: Any) -> float:
    """Smallest cosine similarity between float32 and variant token vectors over the sample batches."""
    import onnxruntime as ort

    ref = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    var = ort.InferenceSession(str(variant_path), providers=["CPUExecutionProvider"])
    worst = 1.0
    for ids, mask in _sample_batches(tokenizer_json, spec):
        feeds = {"input_ids": ids, "attention_mask": mask}
        a, b = ref.run(None, feeds)[0], var.run(None, feeds)[0].astype(np.float32)
        cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
        worst = min(worst, float(cos[mask.astype(bool)].min()))
    return worst


def export(
    checkpoint: Path,
    out: Path,
    *,
    name: str | None = None,
    description: str | None = None,
    license: str = "unknown",
    do_verify: bool = True,
    tolerance: float = 1e-4,
    opset: int = 17,
    quantize: str | None = None,
    fp16: bool = False,
    per_channel: bool = True,
    reduce_range: bool = True,
    min_cosine: float = 0.9,
) -> dict[str, Any]:
    """Export ``checkpoint`` into ``out``; return the written ``lightcol_config.json`` as a dict.

    ``quantize="int8"`` adds ``model_int8.onnx`` and ``fp16=True`` adds ``model_fp16.onnx``, both
    recorded under ``variants`` in the config.
    """
    if quantize not in (None, "int8"):
        raise ExportError(f"--quantize supports 'int8' only, got {quantize!r}")
    import warnings

    import torch

    from lightcol.registry import FOLDER_CONFIG, parse_entry

    # the tracer warns about shape-dependent Python branches in transformers' mask code; --verify
    # checks the traced graph on other batch sizes and sequence lengths instead
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
    warnings.filterwarnings("ignore", message="Exporting aten::index")
    checkpoint, out = Path(checkpoint), Path(out)
    encoder, tok, heads, rules, fmt = load_checkpoint(checkpoint)
    module = build_module(encoder, heads)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        tmpdir = Path(tmp)
        tok.save_pretrained(str(tmpdir))
        tokenizer_files = [f for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json") if (tmpdir / f).is_file()]
        encoder.config.to_json_file(str(tmpdir / "config.json"))
        tokenizer_files.append("config.json")
        ids = torch.tensor([[tok.cls_token_id or 0, 1, 2, 3, tok.sep_token_id or 0]] * 2, dtype=torch.long)
        mask = torch.ones_like(ids)
        onnx_tmp = tmpdir / "model.onnx"
        with torch.no_grad():
            dim = int(module(ids, mask).shape[-1])
            torch.onnx.export(
                module,
                (ids, mask),
                str(onnx_tmp),
                input_names=["input_ids", "attention_mask"],
                output_names=["contextual"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    "contextual": {0: "batch", 1: "sequence"},
                },
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        size_gb = onnx_tmp.stat().st_size / 1e9
        entry = {
            "model": name or checkpoint.name,
            "dim": dim,
            "description": description or f"Exported by tools/export_onnx.py from a {fmt} checkpoint ({checkpoint.name}).",
            "license": license,
            "size_in_GB": round(size_gb, 4),
            "sources": {},
            "model_file": "model.onnx",
            "additional_files": [],
            "tokenizer_files": tokenizer_files,
            "rules": rules,
            "provenance": {"exported_from": f"{fmt} checkpoint {checkpoint.name}", "tool": "tools/export_onnx.py"},
        }
        spec = parse_entry(entry, "export")
        if do_verify:
            diff = verify(module, onnx_tmp, tmpdir / "tokenizer.json", spec)
            entry["provenance"]["verify_max_abs_diff"] = f"{diff:.3g}"
            if not diff <= tolerance:
                raise ExportError(f"ONNX output differs from PyTorch by {diff:.3g} > tolerance {tolerance}")
        variant_files: dict[str, str] = {}
        if quantize == "int8":
            variant_files["int8"] = "model_int8.onnx"
            quantize_int8(onnx_tmp, tmpdir / "model_int8.onnx", per_channel=per_channel, reduce_range=reduce_range)
            entry["provenance"]["int8"] = (
                f"onnxruntime.quantization.quantize_dynamic (QInt8 weights, per_channel={per_channel}, "
                f"reduce_range={reduce_range})"
            )
        if fp16:
            variant_files["fp16"] = "model_fp16.onnx"
            convert_fp16(onnx_tmp, tmpdir / "model_fp16.onnx")
        if variant_files:
            entry["variants"] = variant_files
            spec = parse_entry(entry, "export")
        if do_verify:
            for vname, vfile in variant_files.items():
                cos = variant_cosine(onnx_tmp, tmpdir / vfile, tmpdir / "tokenizer.json", spec)
                entry["provenance"][f"verify_{vname}_min_cosine"] = f"{cos:.4f}"
                if not cos >= min_cosine:
                    raise ExportError(f"{vname} variant: token-vector cosine vs float32 {cos:.4f} < {min_cosine}")
        (tmpdir / FOLDER_CONFIG).write_text(json.dumps(entry, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        for f in ["model.onnx", *variant_files.values(), *tokenizer_files, FOLDER_CONFIG]:
            shutil.move(str(tmpdir / f), str(out / f))
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="colbert-ai or PyLate checkpoint folder")
    p.add_argument("out", type=Path, help="output folder (created)")
    p.add_argument("--name", help="model name recorded in lightcol_config.json (default: the folder name)")
    p.add_argument("--description")
    p.add_argument("--license", default="unknown")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True, help="compare with PyTorch (default on)")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--quantize", choices=["int8"], help="also write a dynamically quantised model_int8.onnx")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                   help="int8: one weight scale per output channel (default on: better quality, same speed)")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=True,
                   help="int8: 7-bit weights (default on: full-range per-channel weights saturate in "
                        "onnxruntime's u8s8 kernels)")
    p.add_argument("--fp16", action="store_true", help="also write a float16 model_fp16.onnx (for GPUs)")
    p.add_argument("--min-cosine", type=float, default=0.9, help="variants: smallest cosine vs float32 accepted")
    args = p.parse_args(argv)
    try:
        entry = export(
            args.checkpoint, args.out, name=args.name, description=args.description, license=args.license,
            do_verify=args.verify, tolerance=args.tolerance, opset=args.opset, quantize=args.quantize,
            fp16=args.fp16, per_channel=args.per_channel, reduce_range=args.reduce_range, min_cosine=args.min_cosine,
        )
    except ExportError as e:
        print(f"export_onnx: error: {e}", file=sys.stderr)
        return 1
    diff = entry["provenance"].get("verify_max_abs_diff", "not verified")
    print(f"wrote {args.out} (dim {entry['dim']}, max |torch - onnx| = {diff})")
    for vname, vfile in entry.get("variants", {}).items():
        cos = entry["provenance"].get(f"verify_{vname}_min_cosine", "not verified")
        print(f"  variant {vname}: {vfile} (min cosine vs float32 = {cos})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
