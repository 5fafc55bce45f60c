"""The registry: models.json parses, lists FastEmbed's keys, rejects malformed entries clearly."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import lightcol
from lightcol.errors import RegistryError, UnknownModelError
from lightcol.registry import get_spec, parse_entry, parse_registry, read_folder_config

ROOT = Path(__file__).resolve().parent.parent
FASTEMBED_KEYS = {"model", "dim", "description", "license", "size_in_GB", "sources", "model_file", "additional_files"}


def test_required_models_and_their_rules() -> None:
    models = {m["model"]: m for m in lightcol.list_supported_models()}
    assert models == {m["model"]: m for m in lightcol.LateInteractionTextEmbedding.list_supported_models()}
    v2 = models["colbert-ir/colbertv2.0"]
    assert (v2["dim"], v2["model_file"], v2["sources"]["hf"]) == (128, "model.onnx", "colbert-ir/colbertv2.0")
    assert (v2["rules"]["query_length"], v2["rules"]["document_length"]) == (32, 180)
    assert v2["rules"]["query_marker"] == {"token": "[unused0]", "id": 1}
    assert v2["rules"]["document_marker"] == {"token": "[unused1]", "id": 2}
    small = models["answerdotai/answerai-colbert-small-v1"]
    assert (small["dim"], small["model_file"]) == (96, "vespa_colbert.onnx")
    jina = models["jinaai/jina-colbert-v2"]
    assert (jina["dim"], jina["model_file"], jina["additional_files"]) == (128, "onnx/model.onnx", ["onnx/model.onnx_data"])
    assert jina["rules"]["attend_to_expansion_tokens"] is True
    assert jina["rules"]["query_marker"]["token"] == "[QueryMarker]"
    for m in models.values():
        assert FASTEMBED_KEYS <= set(m)
        assert m["provenance"], f"{m['model']} has no provenance"
        assert "tokenizer.json" in m["tokenizer_files"]


def test_list_is_a_copy() -> None:
    first = lightcol.list_supported_models()
    first[0]["rules"]["query_length"] = 1
    assert lightcol.list_supported_models()[0]["rules"]["query_length"] != 1


def test_lookup_is_case_insensitive_and_unknown_names_fail_clearly() -> None:
    assert get_spec("COLBERT-IR/ColBERTv2.0").model == "colbert-ir/colbertv2.0"
    with pytest.raises(UnknownModelError, match="not supported.*colbert-ir/colbertv2.0.*specific_model_path"):
        get_spec("nobody/nothing")


def _entry() -> dict:
    return copy.deepcopy(json.loads((ROOT / "models.json").read_text())["models"][0])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: e.pop("dim"), "missing required key 'dim'"),
        (lambda e: e.update(dim="128"), "'dim' must be"),
        (lambda e: e.update(dim=True), "got a bool"),
        (lambda e: e.update(dim=0), "dim must be positive"),
        (lambda e: e["rules"].pop("mask_token"), "missing required key 'mask_token'"),
        (lambda e: e["rules"]["query_marker"].update(id=-1), "id must be >= 0"),
        (lambda e: e["rules"].update(query_length=2), "query_length must be >= 3"),
        (lambda e: e["rules"].update(skiplist="yes"), "'skiplist' must be"),
        (lambda e: e["rules"].update(colour="blue"), "unknown rule"),
        (lambda e: e.update(model_file="../../etc/passwd"), "relative paths inside the repo"),
        (lambda e: e.update(tokenizer_files=["vocab.txt"]), "must include 'tokenizer.json'"),
    ],
)
def test_malformed_entries_fail_with_the_reason(mutate, message) -> None:
    entry = _entry()
    mutate(entry)
    with pytest.raises(RegistryError, match=message):
        parse_entry(entry)


def test_malformed_registry_documents() -> None:
    with pytest.raises(RegistryError, match="'models' list"):
        parse_registry({"schema_version": 1})
    with pytest.raises(RegistryError, match="schema_version"):
        parse_registry({"schema_version": 2, "models": []})
    with pytest.raises(RegistryError, match="duplicate"):
        parse_registry({"schema_version": 1, "models": [_entry(), _entry()]})


def test_folder_config(tmp_path: Path) -> None:
    assert read_folder_config(tmp_path) is None
    (tmp_path / "lightcol_config.json").write_text("{not json")
    with pytest.raises(RegistryError, match="not valid JSON"):
        read_folder_config(tmp_path)
