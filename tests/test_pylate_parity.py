"""Parity with PyLate: lightcol's vectors vs PyLate 1.6's own ``ColBERT.encode`` on tiny random ColBERTs.

Each model of ``tests/pylate_models.TINY_PYLATE`` (ModernBERT with a 16-token local attention window
and a byte-level case-sensitive BPE, BERT, XLM-RoBERTa; each with and without query expansion) is
built and encoded by PyLate in its own environment, exported by ``tools/export_onnx.py``, and
encoded by lightcol from the exported folder with no other argument. Every document and query must
keep exactly PyLate's tokens, each vector within cosine 0.9999 of PyLate's.
"""

from __future__ import annotations

import numpy as np
import pytest

from pylate_models import DOCUMENTS, QUERIES, TINY_PYLATE, min_cosine

NAMES = list(TINY_PYLATE)


def _model(tiny, **kwargs):
    from lightcol import LateInteractionTextEmbedding

    return LateInteractionTextEmbedding(specific_model_path=tiny.onnx, cuda=False, **kwargs)


def _compare(got: list[np.ndarray], ref: list[np.ndarray], texts: list[str]) -> float:
    assert len(got) == len(ref) == len(texts)
    worst = 1.0
    for i, (g, r) in enumerate(zip(got, ref, strict=True)):
        assert g.dtype == np.float32
        assert g.shape == r.shape, f"text {i} {texts[i][:60]!r}: lightcol kept {g.shape[0]} tokens, PyLate {r.shape[0]}"
        worst = min(worst, min_cosine(g, r))
    return worst


@pytest.mark.parametrize("name", NAMES)
def test_documents_equal_pylate(tiny_pylate, name: str) -> None:
    tiny = tiny_pylate[name]
    got = list(_model(tiny).embed(DOCUMENTS, batch_size=5))
    worst = _compare(got, tiny.ref("doc"), DOCUMENTS)
    assert worst >= 0.9999, f"{name}: smallest per-token cosine vs PyLate {worst:.6f}"


@pytest.mark.parametrize("name", NAMES)
def test_queries_equal_pylate(tiny_pylate, name: str) -> None:
    tiny = tiny_pylate[name]
    got = list(_model(tiny).query_embed(QUERIES, batch_size=3))
    worst = _compare(got, tiny.ref("query"), QUERIES)
    assert worst >= 0.9999, f"{name}: smallest per-token cosine vs PyLate {worst:.6f}"
    spec = TINY_PYLATE[name]
    lengths = {len(v) for v in got}
    if spec.get("do_query_expansion", True):  # every query expanded to query_length
        assert lengths == {spec.get("query_length", 32)}
    else:  # no expansion: as many vectors as attended tokens, which differ between queries
        assert len(lengths) > 1


def test_documents_are_far_longer_than_the_local_window(tiny_pylate) -> None:
    """The ModernBERT parity above means something for sliding-window attention only if documents
    span many windows: check the references hold such documents, and that the window matters (the
    vectors of a long document change when only its far end changes)."""
    tiny = tiny_pylate["modernbert"]
    window = TINY_PYLATE["modernbert"]["local_attention"]
    lengths = [len(v) for v in tiny.ref("doc")]
    assert max(lengths) >= 6 * window
    assert sum(n >= 4 * window for n in lengths) >= 10
    import json

    config = json.loads((tiny.onnx / "config.json").read_text())
    assert config["local_attention"] == window and "sliding_attention" in config["layer_types"]
    assert "full_attention" in config["layer_types"]


@pytest.mark.parametrize("name", NAMES)
def test_export_matches_pytorch_and_records_the_rules(tiny_pylate, name: str) -> None:
    tiny, spec = tiny_pylate[name], TINY_PYLATE[name]
    entry = tiny.entry
    assert float(entry["provenance"]["verify_max_abs_diff"]) <= 1e-4
    assert float(entry["provenance"]["verify_int8_min_cosine"]) >= 0.9
    rules = entry["rules"]
    expansion = spec.get("do_query_expansion", True)
    assert rules["do_query_expansion"] is expansion
    assert rules["attend_to_expansion_tokens"] is (expansion and spec.get("attend_to_expansion_tokens", False))
    assert rules["query_marker"]["token"] == "[Q] " and rules["document_marker"]["token"] == "[D] "
    mask = "<mask>" if spec["arch"] == "xlmr" else "[MASK]"
    assert rules["mask_token"]["token"] == rules["pad_token"]["token"] == mask  # PyLate pads with its expansion token
    assert rules["lowercase"] is (spec["arch"] == "bert")
    assert rules["skiplist"] is False and rules["skip_pad_token"] is False
    assert rules["skiplist_words"] == spec.get("skiplist_words", list(__import__("string").punctuation))
    assert rules["token_type_ids"] is False and rules["output_name"] == "contextual"
    assert rules["strip_whitespace"] is True


@pytest.mark.parametrize("name", ["modernbert", "bert-noexp", "xlmr"])
def test_int8_and_optimized_graphs_keep_the_vectors(tiny_pylate, name: str) -> None:
    """``quantized=True`` (the export's model_int8.onnx) and ``optimize=True`` (lightcol.optimize's rewrite)
    on the new architectures: the same tokens, vectors close to float32 (measured on these models:
    optimize min cosine 1.00000, int8 min 0.9996). The optimize bound is tight on purpose: a rewrite that
    gives ModernBERT's sliding-window layers the key-padding mask (global attention) measured 0.99994 here."""
    tiny = tiny_pylate[name]
    base = _model(tiny)
    ref = list(base.embed(DOCUMENTS)) + list(base.query_embed(QUERIES))
    for kwargs, least in (({"optimize": True}, 0.99999), ({"quantized": True}, 0.99)):
        got = list(_model(tiny, **kwargs).embed(DOCUMENTS)) + list(_model(tiny, **kwargs).query_embed(QUERIES))
        assert [g.shape for g in got] == [r.shape for r in ref]
        worst = min(min_cosine(g, r) for g, r in zip(got, ref, strict=True))
        assert worst >= least, f"{name} {kwargs}: min per-token cosine vs float32 {worst:.5f}"


@pytest.mark.parametrize("name", ["modernbert", "bert"])
def test_folder_made_by_lighton_exporter_loads_and_equals_pylate(tiny_pylate, name: str) -> None:
    """A real folder written by LightOn's exporter (colbert-export 0.1.0: model.onnx + external
    model.onnx.data, tokenizer.json, config_sentence_transformers.json) loads with no other argument,
    and its document vectors are PyLate's. (The exporter records do_query_expansion=false whatever the
    model says, so its queries are not the expanded ones PyLate returns; documents do not depend on it.)"""
    import json

    tiny = tiny_pylate[name]
    folder = tiny.lighton
    assert (folder / "model.onnx.data").is_file() and not (folder / "lightcol_config.json").exists()
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["do_query_expansion"] is False
    got = list(_model(type(tiny)(name, tiny.checkpoint, folder, tiny.reference)).embed(DOCUMENTS, batch_size=5))
    worst = _compare(got, tiny.ref("doc"), DOCUMENTS)
    assert worst >= 0.9999, f"{name} (LightOn export): smallest per-token cosine vs PyLate {worst:.6f}"
