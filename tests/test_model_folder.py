"""``specific_model_path=FOLDER`` with no other argument: folders made by LightOn's exporter
(``onnx_config.json`` / its ``config_sentence_transformers.json``, external data included), PyLate
model folders with an ONNX file, FastEmbed's cache layout, and lightcol's own.

The folders are built around the tiny ONNX fixture. LightOn's exporter's graph normalises its rows
and names its output ``output``: the fixture's graph is wrapped the same way. Config files are
written with exactly the keys the exporter (pylate-onnx-export 0.1.0 and next-plaid's current
source) and PyLate 1.6's ``ColBERT.save`` write.
"""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import numpy as np
import pytest

import lightcol
from conftest import ONNX_DIR
from lightcol import registry
from lightcol.errors import ModelLoadError, UnknownModelError
from lightcol.registry import Token, parse_entry

onnx = pytest.importorskip("onnx")

TEXTS = [
    "ColBERT encodes every token of a passage into its own vector.",
    "Late interaction: maximum similarity, summed over query tokens!",
    "short",
    "information retrieval, evaluation; relevance (precision & recall)",
]
QUERIES = ["what is late interaction?", "token vectors"]


@pytest.fixture(scope="module")
def tiny():
    return lightcol.LateInteractionTextEmbedding(specific_model_path=ONNX_DIR)


def _exporter_graph(path: Path, external: bool = False) -> None:
    """The fixture's graph with the exporter's ending: rows L2-normalised (eps 1e-12), output named ``output``."""
    from onnx import TensorProto, helper

    model = onnx.load(str(ONNX_DIR / "model.onnx"))
    g = model.graph
    raw = g.output[0].name
    g.initializer.append(helper.make_tensor("norm_eps", TensorProto.FLOAT, [], [1e-12]))
    g.node.extend([
        helper.make_node("ReduceL2", [raw], ["norm"], keepdims=1, axes=[-1])
        if model.opset_import[0].version < 18
        else helper.make_node("ReduceL2", [raw, "norm_axes"], ["norm"], keepdims=1),
        helper.make_node("Max", ["norm", "norm_eps"], ["norm_clamped"]),
        helper.make_node("Div", [raw, "norm_clamped"], ["output"]),
    ])
    if model.opset_import[0].version >= 18:
        g.initializer.append(helper.make_tensor("norm_axes", TensorProto.INT64, [1], [-1]))
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch_size", "sequence_length", 16])
    g.output.pop()
    g.output.append(out)
    onnx.checker.check_model(model)
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))


def _exporter_config(**changes) -> dict:
    """Exactly the keys LightOn's exporter writes (colbert_export/export.py), for the tiny model as PyLate loads it."""
    config = {
        "model_type": "ColBERT",
        "model_name": "lightcol/tiny-colbert-pylate",
        "model_class": "BertModel",
        "uses_token_type_ids": False,  # the fixture's graph takes none
        "query_prefix": "[unused0]",
        "document_prefix": "[unused1]",
        "query_length": 32,
        "document_length": 64,
        "do_query_expansion": False,  # the exporter loads every model with do_query_expansion=False
        "attend_to_expansion_tokens": False,
        "skiplist_words": list(string.punctuation),
        "embedding_dim": 16,
        "mask_token_id": 103,
        "pad_token_id": 103,  # PyLate sets the pad id to the mask token's
        "query_prefix_id": 1,
        "document_prefix_id": 2,
    }
    config.update(changes)
    return config


def _exporter_folder(folder: Path, name: str = "onnx_config.json", external: bool = False, **changes) -> Path:
    folder.mkdir(parents=True)
    _exporter_graph(folder / "model.onnx", external=external)
    shutil.copy(ONNX_DIR / "tokenizer.json", folder / "tokenizer.json")
    config = _exporter_config(**changes)
    if name == "onnx_config.json":
        config["do_lower_case"] = False  # next-plaid's exporter also records sentence-transformers' lower-casing
    (folder / name).write_text(json.dumps(config, indent=2))
    return folder


def _pylate_folder(folder: Path, **settings) -> Path:
    """What PyLate 1.6's ColBERT.save writes (config_sentence_transformers.json, modules.json, 1_Dense,
    sentence_bert_config.json, the tokenizer's files), plus an ONNX file of the model."""
    folder.mkdir(parents=True)
    shutil.copy(ONNX_DIR / "model.onnx", folder / "model.onnx")
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy(ONNX_DIR / name, folder / name)
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[MASK]", "sep_token": "[SEP]", "unk_token": "[UNK]",
    }))
    config = {
        "__version__": {"sentence_transformers": "5.1.0", "transformers": "4.56.0", "pytorch": "2.8.0", "pylate": "1.6.0"},
        "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "MaxSim",
        "query_prefix": "[unused0]", "document_prefix": "[unused1]", "query_length": 32, "document_length": 64,
        "attend_to_expansion_tokens": False, "skiplist_words": list(string.punctuation), "do_query_expansion": True,
    }
    config.update(settings)
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config, indent=2))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]))
    (folder / "1_Dense").mkdir()
    (folder / "1_Dense" / "config.json").write_text(json.dumps(
        {"in_features": 32, "out_features": 16, "bias": False, "activation_function": "torch.nn.modules.linear.Identity"}
    ))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 63, "do_lower_case": False}))
    return folder


def _same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, atol=2e-6)


@pytest.mark.parametrize("name", ["onnx_config.json", "config_sentence_transformers.json"])
def test_lighton_exporter_folder_loads_with_no_other_argument(tmp_path, tiny, name) -> None:
    folder = _exporter_folder(tmp_path / "export", name=name)
    model = lightcol.LateInteractionTextEmbedding(specific_model_path=folder)
    rules = model.spec.rules
    assert model.model_name == "lightcol/tiny-colbert-pylate" and model.dim == 16
    assert (rules.query_marker, rules.document_marker) == (Token("[unused0]", 1), Token("[unused1]", 2))
    assert rules.mask_token == rules.pad_token == Token("[MASK]", 103)
    assert not rules.do_query_expansion and rules.graph_normalizes and rules.output_name == "output"
    assert rules.skiplist_words == tuple(string.punctuation) and not rules.skip_pad_token
    assert model.spec.provenance["rules"].startswith(name)
    # documents: the tiny model's own vectors (BERT punctuation is one vocabulary token per character)
    _same(list(model.embed(TEXTS)), list(tiny.embed(TEXTS)))
    # queries without expansion: the attended rows of the same ids, padded like documents in a batch
    q = list(model.query_embed(QUERIES))
    assert [len(v) for v in q] == [len(tiny._query_tokenizer.encode(t).ids) + 1 for t in QUERIES]
    # the expansion tokens are not attended (attend_to_expansion_tokens false): the text's rows are the same
    for v, e in zip(q, tiny.query_embed(QUERIES)):
        np.testing.assert_allclose(v, e[: len(v)], atol=2e-6)


def test_exporter_folder_with_external_data(tmp_path, tiny) -> None:
    folder = _exporter_folder(tmp_path / "export", external=True)
    assert (folder / "model.onnx.data").is_file()
    model = lightcol.LateInteractionTextEmbedding(specific_model_path=folder)
    assert model.spec.additional_files == ("model.onnx.data",)
    _same(list(model.embed(TEXTS)), list(tiny.embed(TEXTS)))
    (folder / "model.onnx.data").rename(folder / "elsewhere.data")
    with pytest.raises(ModelLoadError, match=r"keeps its weights in model\.onnx\.data, which is not in .*copy it next"):
        lightcol.LateInteractionTextEmbedding(specific_model_path=folder)


def test_pylate_config_beside_the_export_gives_the_models_own_expansion(tmp_path, tiny) -> None:
    folder = _exporter_folder(tmp_path / "export")
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"query_prefix": "[unused0]", "document_prefix": "[unused1]", "do_query_expansion": True,
         "attend_to_expansion_tokens": False, "query_length": 32, "document_length": 64}
    ))
    model = lightcol.LateInteractionTextEmbedding(specific_model_path=folder)
    assert model.spec.rules.do_query_expansion and "rules.do_query_expansion" in model.spec.provenance
    _same(list(model.query_embed(QUERIES)), list(tiny.query_embed(QUERIES)))  # expansion: the tiny model's queries


def test_pylate_model_folder_with_an_onnx_file(tmp_path, tiny) -> None:
    model = lightcol.LateInteractionTextEmbedding(specific_model_path=_pylate_folder(tmp_path / "pylate"))
    rules = model.spec.rules
    assert model.dim == 16 and model.model_name == "pylate"
    assert rules.mask_token == rules.pad_token == Token("[MASK]", 103)  # PyLate pads and expands with the mask token
    assert rules.do_query_expansion and not rules.graph_normalizes and rules.output_name is None
    _same(list(model.embed(TEXTS)), list(tiny.embed(TEXTS)))
    _same(list(model.query_embed(QUERIES)), list(tiny.query_embed(QUERIES)))
    # PyLate's defaults where its config leaves a setting out; an empty prefix means no marker
    bare = _pylate_folder(tmp_path / "bare", query_prefix="", document_prefix="")
    cfg = json.loads((bare / "config_sentence_transformers.json").read_text())
    for key in ("query_length", "document_length", "skiplist_words", "do_query_expansion"):
        cfg.pop(key)
    (bare / "config_sentence_transformers.json").write_text(json.dumps(cfg))
    spec = lightcol.LateInteractionTextEmbedding(specific_model_path=bare).spec
    r = spec.rules
    assert (r.query_length, r.document_length, r.do_query_expansion) == (32, 180, True)
    assert r.query_marker is None and r.document_marker is None and r.skiplist_words == tuple(string.punctuation)


def test_pylate_folder_falls_back_to_eos_then_pad(tmp_path) -> None:
    folder = _pylate_folder(tmp_path / "p")
    (folder / "special_tokens_map.json").write_text(json.dumps({"eos_token": "[SEP]", "pad_token": "[PAD]"}))
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("mask_token", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    rules = lightcol.LateInteractionTextEmbedding(specific_model_path=folder).spec.rules
    assert rules.mask_token == rules.pad_token == Token("[SEP]", 102)


@pytest.mark.parametrize(
    "breaks, message",
    [
        (lambda f: (f / "tokenizer.json").unlink(), "has no tokenizer.json; copy the tokenizer.json"),
        (lambda f: (f / "model.onnx").unlink(), "no ONNX file"),
        (lambda f: (f / "onnx_config.json").write_text("{not json"), r"onnx_config\.json is not valid JSON"),
        (lambda f: _rewrite(f, embedding_dim=None), "lacks 'embedding_dim'; re-export"),
        (lambda f: _rewrite(f, query_length="32"), "'query_length' must be int"),
        (lambda f: _rewrite(f, embedding_dim=24), "has dim 24"),
        (lambda f: _rewrite(f, query_prefix_id=5), "maps query_marker '\\[unused0\\]' to id 1, but the model's rules say 5"),
        (lambda f: _rewrite(f, uses_token_type_ids=True), "takes token_type_ids"),
        (lambda f: _rewrite(f, do_query_expansion=True, mask_token_id=None), "needs a mask_token"),
    ],
)
def test_odd_exporter_folders_fail_naming_the_file(tmp_path, breaks, message) -> None:
    folder = _exporter_folder(tmp_path / "export")
    breaks(folder)
    with pytest.raises(ModelLoadError, match=message):
        lightcol.LateInteractionTextEmbedding(specific_model_path=folder)


def _rewrite(folder: Path, **changes) -> None:
    path = folder / "onnx_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_output_name_must_exist(tmp_path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(ONNX_DIR, folder)
    cfg = json.loads((folder / "lightcol_config.json").read_text())
    cfg["rules"]["output_name"] = "output"
    (folder / "lightcol_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"name the output 'output'.*outputs \['contextual'\]"):
        lightcol.LateInteractionTextEmbedding(specific_model_path=folder)
    cfg["rules"]["output_name"] = "contextual"
    (folder / "lightcol_config.json").write_text(json.dumps(cfg))
    assert lightcol.LateInteractionTextEmbedding(specific_model_path=folder).dim == 16


def test_fastembed_cache_layout_of_a_registry_model(tmp_path, tiny, monkeypatch) -> None:
    entry = json.loads((ONNX_DIR / "lightcol_config.json").read_text())
    entry["sources"] = {"hf": "lightcol/Tiny-Colbert-ONNX"}
    spec = parse_entry(entry)
    monkeypatch.setattr(registry, "_registry", lambda: {spec.model.lower(): spec})
    repo = tmp_path / "fastembed_cache" / "models--lightcol--Tiny-Colbert-ONNX"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for name in ("model.onnx", "tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy(ONNX_DIR / name, snapshot / name)
    (repo / "files_metadata.json").write_text("{}")
    model = lightcol.LateInteractionTextEmbedding(specific_model_path=snapshot)
    assert model.model_name == "lightcol/tiny-colbert" and model.model_dir == snapshot
    _same(list(model.embed(TEXTS)), list(tiny.embed(TEXTS)))
    # the repository folder itself: its refs/main snapshot
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    assert lightcol.LateInteractionTextEmbedding(specific_model_path=repo).model_dir == snapshot
    (snapshot / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match="cache folder of lightcol/tiny-colbert but lacks model.onnx"):
        lightcol.LateInteractionTextEmbedding(specific_model_path=snapshot)
    other = tmp_path / "fastembed_cache" / "models--someone--else" / "snapshots" / "1"
    shutil.copytree(ONNX_DIR, other)
    (other / "lightcol_config.json").unlink()
    with pytest.raises(ModelLoadError, match="no lightcol_config.json; pass model_name="):
        lightcol.LateInteractionTextEmbedding(specific_model_path=other)


def test_model_name_with_a_foreign_folder(tmp_path) -> None:
    folder = _exporter_folder(tmp_path / "export")
    with pytest.raises(UnknownModelError, match="conflicts with .*onnx_config.json.*tiny-colbert-pylate"):
        lightcol.LateInteractionTextEmbedding("nobody/nothing", specific_model_path=folder)
    same = lightcol.LateInteractionTextEmbedding("lightcol/TINY-colbert-pylate", specific_model_path=folder)
    assert same.spec.rules.output_name == "output"
