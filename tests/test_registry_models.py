"""The registry's rows: every late-interaction model of FastEmbed 0.9.1 and the ModernBERT-era models,
each parsed, sourced from a Hub repository holding an ONNX file, with its files and per-rule provenance."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest

import lightcol
from lightcol.registry import RULE_DEFAULTS, get_spec, list_specs, parse_registry

ROOT = Path(__file__).resolve().parent.parent
ROWS = json.loads((ROOT / "models.json").read_text())["models"]

#: FastEmbed 0.9.1's LateInteractionTextEmbedding.list_supported_models(): (model, dim, hf source, model file)
FASTEMBED_091 = {
    ("colbert-ir/colbertv2.0", 128, "colbert-ir/colbertv2.0", "model.onnx"),
    ("answerdotai/answerai-colbert-small-v1", 96, "answerdotai/answerai-colbert-small-v1", "vespa_colbert.onnx"),
    ("jinaai/jina-colbert-v2", 128, "jinaai/jina-colbert-v2", "onnx/model.onnx"),
    ("lightonai/LateOn", 128, "lightonai/LateOn", "model.onnx"),
    ("lightonai/mLateOn", 128, "lightonai/mLateOn", "model.onnx"),
    ("jinaai/jina-embeddings-v2-small-en-tokens", 512, "Xenova/jina-embeddings-v2-small-en", "onnx/model.onnx"),
}
#: provenance keys that cover several rules
GROUPS = {"query_marker": "markers", "document_marker": "markers", "query_length": "lengths", "document_length": "lengths",
          "skip_pad_token": "skiplist", "mask_token": "tokens", "pad_token": "tokens"}
MODERNBERT_ERA = {"lightonai/GTE-ModernColBERT-v1", "lightonai/Reason-ModernColBERT", "lightonai/LateOn-Code",
                  "lightonai/LateOn-Code-edge"}


def test_fastembed_091_late_interaction_models_are_all_here_with_its_files() -> None:
    ours = {(s.model, s.dim, s.hf_repo, s.model_file) for s in list_specs()}
    assert FASTEMBED_091 <= ours
    assert MODERNBERT_ERA <= {s.model for s in list_specs()}


def test_every_row_parses_and_round_trips() -> None:
    specs = parse_registry(json.loads((ROOT / "models.json").read_text()))
    assert len(specs) == len(ROWS) == len({r["model"].lower() for r in ROWS})
    for spec in specs.values():
        again = parse_registry({"schema_version": 1, "models": [json.loads(json.dumps(spec.to_dict()))]})
        assert again[spec.model.lower()] == spec


@pytest.mark.parametrize("row", ROWS, ids=[r["model"] for r in ROWS])
def test_row_is_sourced_and_complete(row) -> None:
    spec = get_spec(row["model"])
    assert spec.hf_repo, "every row names the Hub repository holding its ONNX file"
    assert spec.model_file.endswith(".onnx") and spec.files[0] == spec.model_file
    assert "tokenizer.json" in spec.tokenizer_files and len(set(spec.files)) == len(spec.files)
    assert all(f.endswith(".onnx") for f in spec.variants.values())
    assert "For:" in spec.description or row["model"] in {"colbert-ir/colbertv2.0", "answerdotai/answerai-colbert-small-v1",
                                                            "jinaai/jina-colbert-v2"}
    prov = spec.provenance
    for key in ("model_file", "dim", "license", "size_in_GB"):
        assert key in prov, f"{spec.model}: no provenance for {key}"
    # every rule a row states has a provenance entry: its own, its group's, or one for the rules as a whole
    for rule in row["rules"]:
        keys = {f"rules.{rule}", f"rules.{GROUPS.get(rule, rule)}", "rules"}
        assert keys & set(prov), f"{spec.model}: no provenance for rule {rule!r} (any of {sorted(keys)})"


def test_rules_are_consistent_with_the_family() -> None:
    for spec in list_specs():
        r = spec.rules
        for name in ("query_marker", "document_marker", "mask_token", "pad_token"):
            tok = getattr(r, name)
            assert tok is None or tok.token or tok.id is not None
        if not r.do_query_expansion:
            assert not r.attend_to_expansion_tokens
        if r.skiplist_words is not None:  # PyLate's semantics: no colbert-ai skiplist on top, pads kept by attention
            assert not r.skiplist and not r.skip_pad_token
            assert r.skiplist_words in ((), tuple(string.punctuation))
        if spec.model.startswith("lightonai/"):  # PyLate models: the expansion token pads too; texts stripped
            assert r.pad_token == r.mask_token and r.strip_whitespace


def test_modernbert_era_rows_state_pylate_settings() -> None:
    code = get_spec("lightonai/LateOn-Code-edge").rules
    assert (code.query_length, code.document_length, code.lowercase, code.do_query_expansion) == (256, 2048, True, False)
    assert get_spec("lightonai/LateOn-Code-edge").dim == 48
    assert get_spec("lightonai/LateOn-Code").rules.lowercase is False
    late = get_spec("lightonai/LateOn").rules
    assert (late.query_marker.id, late.document_marker.id, late.do_query_expansion) == (50368, 50369, False)
    m = get_spec("lightonai/mLateOn").rules
    assert (m.query_marker.id, m.mask_token.token, m.skiplist_words) == (256000, "<mask>", ())
    tokens = get_spec("jinaai/jina-embeddings-v2-small-en-tokens").rules
    assert tokens.query_marker is None and tokens.document_marker is None and not tokens.do_query_expansion
    gte = get_spec("lightonai/GTE-ModernColBERT-v1")
    assert gte.rules.do_query_expansion and gte.variants == {"int8": "model_int8.onnx"}


def test_rows_written_before_the_new_rules_read_as_before() -> None:
    for name in ("colbert-ir/colbertv2.0", "answerdotai/answerai-colbert-small-v1", "jinaai/jina-colbert-v2"):
        rules = get_spec(name).rules
        assert {k: getattr(rules, k) for k in RULE_DEFAULTS} == RULE_DEFAULTS


def test_list_supported_models_lists_every_row() -> None:
    listed = lightcol.LateInteractionTextEmbedding.list_supported_models()
    assert [m["model"] for m in listed] == [r["model"] for r in ROWS]
    late = next(m for m in listed if m["model"] == "lightonai/LateOn")
    assert late["rules"]["skiplist_words"] == list(string.punctuation)  # JSON-native
