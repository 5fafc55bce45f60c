"""tools/export_onnx.py: colbert-ai and PyLate checkpoints -> a folder lightcol loads, checked against PyTorch."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CKPT_DIR, ONNX_DIR, random_texts

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("export_onnx", ROOT / "tools" / "export_onnx.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["export_onnx"] = mod
    spec.loader.exec_module(mod)
    return mod


export_onnx = _tool()


def test_colbert_ai_export_reproduces_the_committed_fixture(tmp_path: Path) -> None:
    from lightcol import LateInteractionTextEmbedding

    entry = export_onnx.export(CKPT_DIR, tmp_path / "out", name="lightcol/tiny-colbert")
    assert float(entry["provenance"]["verify_max_abs_diff"]) <= 1e-4
    assert entry["rules"] == json.loads((ONNX_DIR / "lightcol_config.json").read_text())["rules"]
    texts = random_texts(10, seed=5)
    new = LateInteractionTextEmbedding(specific_model_path=tmp_path / "out")
    old = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR)
    for a, b in zip(new.embed(texts), old.embed(texts), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_verify_fails_when_outputs_differ(tmp_path: Path) -> None:
    with pytest.raises(export_onnx.ExportError, match="differs from PyTorch"):
        export_onnx.export(CKPT_DIR, tmp_path / "out", tolerance=0.0)
    assert not (tmp_path / "out" / "model.onnx").exists()  # nothing half-written is left to load


def _pylate_folder(folder: Path) -> None:
    """A PyLate-format checkpoint: the fixture's BERT as a Transformer module plus two Dense modules."""
    from safetensors.torch import load_file, save_file

    folder.mkdir()
    state = load_file(str(CKPT_DIR / "model.safetensors"))
    save_file({k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")}, str(folder / "model.safetensors"))
    for f in ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(CKPT_DIR / f, folder / f)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["BertModel"]
    (folder / "config.json").write_text(json.dumps(cfg))
    torch.manual_seed(1)
    for i, (fin, fout, bias) in enumerate([(12, 24, True), (24, 8, False)], start=1):
        d = folder / f"{i}_Dense"
        d.mkdir()
        layer = torch.nn.Linear(fin, fout, bias=bias)
        save_file({f"linear.{k}": v.contiguous() for k, v in layer.state_dict().items()}, str(d / "model.safetensors"))
        (d / "config.json").write_text(json.dumps({
            "in_features": fin, "out_features": fout, "bias": bias,
            "activation_function": "torch.nn.modules.linear.Identity",
        }))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    modules += [{"idx": i, "name": str(i), "path": f"{i}_Dense", "type": "pylate.models.Dense.Dense"} for i in (1, 2)]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "query_prefix": "[unused0]", "document_prefix": "[unused1]", "query_length": 24, "document_length": 40,
        "attend_to_expansion_tokens": True, "skiplist_words": ["!", ",", "."], "do_query_expansion": True,
    }))


def test_pylate_export(tmp_path: Path) -> None:
    from lightcol import LateInteractionTextEmbedding

    _pylate_folder(tmp_path / "pylate")
    entry = export_onnx.export(tmp_path / "pylate", tmp_path / "out")
    assert entry["dim"] == 8
    rules = entry["rules"]
    assert (rules["query_length"], rules["document_length"], rules["attend_to_expansion_tokens"]) == (24, 40, True)
    assert rules["query_marker"] == {"token": "[unused0]", "id": 1}
    # PyLate's skiplist: its words as vocabulary tokens, not colbert-ai's punctuation rule; pads with [MASK]
    assert rules["skiplist"] is False and rules["skiplist_words"] == ["!", ",", "."] and rules["skip_pad_token"] is False
    assert rules["pad_token"] == rules["mask_token"] == {"token": "[MASK]", "id": 103}
    m = LateInteractionTextEmbedding(specific_model_path=tmp_path / "out")
    assert next(m.query_embed("hello")).shape == (24, 8)
    # the exported model matches the PyTorch stack (encoder -> Dense -> Dense), normalised
    encoder, _, heads, _, _ = export_onnx.load_checkpoint(tmp_path / "pylate")
    module = export_onnx.build_module(encoder, heads)
    ids = torch.tensor([[101, 2, 7592, 102]])
    with torch.no_grad():
        ref = torch.nn.functional.normalize(module(ids, torch.ones_like(ids)), dim=-1)[0].numpy()
    np.testing.assert_allclose(next(m.embed("hello")), ref, atol=1e-5)


def test_cli_and_unknown_format(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert export_onnx.main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    assert "neither a PyLate folder" in capsys.readouterr().err
    assert export_onnx.main([str(CKPT_DIR), str(tmp_path / "out2"), "--name", "x/y"]) == 0
    assert json.loads((tmp_path / "out2" / "lightcol_config.json").read_text())["model"] == "x/y"
