"""Model folders in the formats people have: which rules a folder of model files carries.

``LateInteractionTextEmbedding(specific_model_path=FOLDER)`` needs nothing else for a folder made by

* lightcol (``tools/export_onnx.py``, ``lightcol download --to``): ``lightcol_config.json``;
* LightOn's exporter (PyPI ``pylate-onnx-export`` / ``colbert-export``, the ``next-plaid`` repository):
  ``model.onnx`` (with ``model.onnx.data`` when the weights are external), ``tokenizer.json`` and
  ``onnx_config.json`` (newer) or ``config_sentence_transformers.json`` (0.1.0) holding the PyLate
  settings it exported with, ids included;
* PyLate itself (a ``ColBERT.save`` folder or a PyLate Hub repository) with an ONNX file of the
  model beside it: ``config_sentence_transformers.json`` with PyLate's settings, the Dense modules'
  ``config.json`` for the dimension, ``sentence_bert_config.json`` for lower-casing, and the
  tokenizer's own configuration for the mask token;
* FastEmbed's cache (``models--ORG--NAME/snapshots/REV``, what FastEmbed downloads) of a model
  in the registry: the registry row of that repository.

Every rule of a foreign format is translated into :class:`~lightcol.registry.EncodingRules` as
PyLate 1.6 applies it (``ColBERT.__init__``/``tokenize``/``encode``), so the vectors are PyLate's.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from lightcol.errors import ModelLoadError, RegistryError, UnknownModelError
from lightcol.registry import FOLDER_CONFIG, ModelSpec, get_spec, list_specs, parse_entry, read_folder_config

#: LightOn's exporter writes this (``pylate-onnx-export`` from next-plaid 1.x; read by next-plaid's Rust engine).
ONNX_CONFIG = "onnx_config.json"
#: PyLate's (and sentence-transformers') model configuration; LightOn's exporter 0.1.0 wrote its own under this name.
PYLATE_CONFIG = "config_sentence_transformers.json"
#: PyLate's defaults when its configuration leaves a setting out (``pylate.models.ColBERT.__init__``).
PYLATE_DEFAULTS: dict[str, Any] = {
    "query_prefix": "[Q] ",
    "document_prefix": "[D] ",
    "query_length": 32,
    "document_length": 180,
    "do_query_expansion": True,
    "attend_to_expansion_tokens": False,
    "skiplist_words": list(string.punctuation),
}
#: Keys only LightOn's exporter writes (its config is flat, with the ids it resolved).
_EXPORTER_KEYS = ("embedding_dim", "query_prefix_id", "document_prefix_id")
#: ONNX files looked for in a folder with no lightcol configuration, in this order.
_ONNX_CANDIDATES = ("model.onnx", "onnx/model.onnx")
#: Alternative ONNX files LightOn's exporter (and FastEmbed repos) ship beside ``model.onnx``.
_VARIANT_FILES = {"int8": ("model_int8.onnx", "onnx/model_int8.onnx", "onnx/model_quantized.onnx")}
_FORMATS = (
    f"{FOLDER_CONFIG} (tools/export_onnx.py), {ONNX_CONFIG} or {PYLATE_CONFIG} (LightOn's pylate-onnx-export), "
    f"a PyLate model folder ({PYLATE_CONFIG} + modules.json) with an ONNX file, or FastEmbed's cache folder "
    "(models--ORG--NAME/snapshots/REV) of a registry model"
)


def describe(folder: str | Path, model_name: str | None = None) -> ModelSpec:
    """The spec (files, dimension, rules) of the model in ``folder``.

    ``model_name``: a registry name whose rules win over the folder's own; ``None``: the folder's.
    Raises :class:`ModelLoadError` naming the file that is missing or odd and what to do, and
    :class:`UnknownModelError` when ``model_name`` is neither the folder's model nor in the registry.
    """
    folder = snapshot_folder(Path(folder))
    spec, source = _own_spec(folder)
    if spec is None:
        if model_name is not None:
            return get_spec(model_name)
        spec = _fastembed_cache_spec(folder)
        if spec is None:
            raise ModelLoadError(
                f"{folder} has no lightcol_config.json; pass model_name= to take the rules from the registry, or export "
                f"the folder with tools/export_onnx.py. Folders lightcol reads by themselves hold: {_FORMATS}."
            )
        return spec
    if model_name is not None and model_name.lower() != spec.model.lower():
        try:
            return get_spec(model_name)  # an explicit registry name wins over the folder's own rules
        except UnknownModelError:
            raise UnknownModelError(
                f"model_name={model_name!r} conflicts with {folder / source}, which describes "
                f"{spec.model!r}, and {model_name!r} is not in the registry either. Omit model_name to use the "
                f"folder's own rules, or pass model_name={spec.model!r}."
            ) from None
    return spec


def snapshot_folder(folder: Path) -> Path:
    """``folder``, or for a Hugging Face cache repository folder (``models--ORG--NAME``, FastEmbed's
    cache) the snapshot its ``refs/main`` points at (the only snapshot if there is no ref)."""
    if not folder.name.startswith("models--") or not (folder / "snapshots").is_dir():
        return folder
    try:
        ref = (folder / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        ref = ""
    if ref and (folder / "snapshots" / ref).is_dir():
        return folder / "snapshots" / ref
    snapshots = sorted(p for p in (folder / "snapshots").iterdir() if p.is_dir())
    if len(snapshots) == 1:
        return snapshots[0]
    raise ModelLoadError(
        f"{folder} is a Hugging Face cache folder with {len(snapshots)} snapshots and no refs/main; pass "
        f"specific_model_path={folder / 'snapshots'}/<revision>."
    )


def _own_spec(folder: Path) -> tuple[ModelSpec | None, str]:
    """The spec the folder's own configuration gives, and the file it came from."""
    spec = read_folder_config(folder)
    if spec is not None:
        return spec, FOLDER_CONFIG
    pylate = _read_json(folder / PYLATE_CONFIG) if (folder / PYLATE_CONFIG).is_file() else None
    if (folder / ONNX_CONFIG).is_file():
        exported = _read_json(folder / ONNX_CONFIG)
        own = pylate if pylate is not None and not _is_exporter_config(pylate) else None
        return _exporter_spec(folder, exported, ONNX_CONFIG, own), ONNX_CONFIG
    if pylate is not None:
        if _is_exporter_config(pylate):
            return _exporter_spec(folder, pylate, PYLATE_CONFIG, None), PYLATE_CONFIG
        return _pylate_spec(folder, pylate), PYLATE_CONFIG
    return None, ""


def _is_exporter_config(config: dict[str, Any]) -> bool:
    return all(k in config for k in _EXPORTER_KEYS)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path} is not valid JSON ({e}); re-export the folder or re-download the model.") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} holds a {type(data).__name__}, expected a JSON object; re-export the folder.")
    return data


def _get(config: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path, default: Any = ...) -> Any:
    """``config[key]`` checked against ``kind`` (``default`` when absent or null; required without one)."""
    value = config.get(key)
    if value is None:
        if default is ...:
            raise ModelLoadError(f"{path} lacks {key!r}; re-export the folder with a current exporter.")
        return default
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise ModelLoadError(f"{path}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}; re-export the folder.")
    return value


def _model_file(folder: Path) -> str:
    for name in _ONNX_CANDIDATES:
        if (folder / name).is_file():
            return name
    found = sorted(p.name for p in folder.glob("*.onnx") if not any(p.name in v for v in _VARIANT_FILES.values()))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelLoadError(
            f"{folder} has a model configuration but no ONNX file (looked for {', '.join(_ONNX_CANDIDATES)} and *.onnx); "
            "export the model to ONNX into this folder (tools/export_onnx.py or pylate-onnx-export)."
        )
    raise ModelLoadError(
        f"{folder} holds several ONNX files ({', '.join(found)}) and no lightcol_config.json saying which is the model; "
        "keep one, or name it in a lightcol_config.json (tools/export_onnx.py writes one)."
    )


def external_data_files(folder: Path, model_file: str) -> list[str]:
    """The external-weights files beside ``model_file`` by the two usual names (``model.onnx.data`` as
    torch.onnx writes it, ``model.onnx_data`` as optimum does) that exist in ``folder``."""
    return [name for name in (f"{model_file}.data", f"{model_file}_data") if (folder / name).is_file()]


def _files(folder: Path, model_file: str) -> dict[str, Any]:
    """The file keys of a spec for ``folder``: the model, its external data, its tokenizer files, its variants."""
    if not (folder / "tokenizer.json").is_file():
        raise ModelLoadError(
            f"{folder} has no tokenizer.json; copy the tokenizer.json the model was exported with into the folder "
            "(LightOn's exporter and PyLate both write one)."
        )
    tokenizer_files = ["tokenizer.json"] + [
        n for n in ("config.json", "tokenizer_config.json", "special_tokens_map.json") if (folder / n).is_file()
    ]
    variants = {}
    for variant, names in _VARIANT_FILES.items():
        present = [n for n in names if (folder / n).is_file()]
        if present:
            variants[variant] = present[0]
    size = sum((folder / n).stat().st_size for n in [model_file, *external_data_files(folder, model_file)])
    return {
        "model_file": model_file,
        "additional_files": external_data_files(folder, model_file),
        "tokenizer_files": tokenizer_files,
        "variants": variants,
        "size_in_GB": round(size / 1e9, 4),
        "sources": {},
        "license": "unknown",
    }


def _marker(prefix: str, prefix_id: int | None) -> dict[str, Any] | None:
    """A marker rule from PyLate's prefix (``""``: none) and, where known, its id."""
    if prefix == "":
        return None
    return {"token": prefix, "id": prefix_id} if prefix_id is not None else {"token": prefix}


def _exporter_spec(folder: Path, config: dict[str, Any], name: str, pylate: dict[str, Any] | None) -> ModelSpec:
    """A folder made by LightOn's exporter: its flat config holds PyLate's settings and the resolved ids.

    The exporter loads the checkpoint with ``do_query_expansion=False`` (which also turns
    ``attend_to_expansion_tokens`` off) and writes those values whatever the model's own are; when
    PyLate's own ``config_sentence_transformers.json`` sits beside it (a PyLate Hub repository holding
    the export), its ``do_query_expansion`` / ``attend_to_expansion_tokens`` are the model's and win.
    """
    path = folder / name
    expansion = _get(config, "do_query_expansion", bool, path, False)
    attend = _get(config, "attend_to_expansion_tokens", bool, path, False)
    provenance = {"rules": f"{name} written by LightOn's exporter (pylate-onnx-export / colbert-export)"}
    if pylate is not None and ("do_query_expansion" in pylate or "attend_to_expansion_tokens" in pylate):
        expansion = _get(pylate, "do_query_expansion", bool, folder / PYLATE_CONFIG, PYLATE_DEFAULTS["do_query_expansion"])
        attend = _get(pylate, "attend_to_expansion_tokens", bool, folder / PYLATE_CONFIG, False)
        provenance["rules.do_query_expansion"] = (
            f"{PYLATE_CONFIG} (PyLate's own) over {name}: the exporter always writes do_query_expansion=false"
        )
    mask_id = _get(config, "mask_token_id", int, path, None)
    entry = {
        "model": _get(config, "model_name", str, path, _folder_model_name(folder)),
        "dim": _get(config, "embedding_dim", int, path),
        "description": f"ColBERT model exported by LightOn's exporter ({name}).",
        **_files(folder, "model.onnx" if (folder / "model.onnx").is_file() else _model_file(folder)),
        "rules": {
            "query_marker": _marker(_get(config, "query_prefix", str, path, "[Q] "), _get(config, "query_prefix_id", int, path, None)),
            "document_marker": _marker(
                _get(config, "document_prefix", str, path, "[D] "), _get(config, "document_prefix_id", int, path, None)
            ),
            "mask_token": None if mask_id is None else {"id": mask_id},
            "pad_token": {"id": _get(config, "pad_token_id", int, path)},
            "query_length": _get(config, "query_length", int, path),
            "document_length": _get(config, "document_length", int, path),
            "do_query_expansion": expansion,
            "attend_to_expansion_tokens": attend and expansion,
            "skiplist": False,
            "skiplist_words": _get(config, "skiplist_words", list, path, PYLATE_DEFAULTS["skiplist_words"]),
            "skip_pad_token": False,
            "lowercase": _get(config, "do_lower_case", bool, path, False),
            "token_type_ids": _get(config, "uses_token_type_ids", bool, path, None),
            "graph_normalizes": True,
            "output_name": "output",
            "strip_whitespace": True,  # PyLate tokenizes through sentence-transformers, which strips every text
        },
        "provenance": provenance,
    }
    return _parse(entry, path)


def _pylate_spec(folder: Path, config: dict[str, Any]) -> ModelSpec:
    """A PyLate model folder (``ColBERT.save``) with an ONNX file of the model: PyLate's settings, its
    defaults where the config leaves one out, the expansion token PyLate picks (mask, else EOS, else pad)."""
    path = folder / PYLATE_CONFIG
    settings = {k: config.get(k) if config.get(k) is not None else v for k, v in PYLATE_DEFAULTS.items()}
    expansion = _get(settings, "do_query_expansion", bool, path)
    special = _special_tokens(folder)
    pad = special.get("mask_token") or special.get("eos_token") or special.get("pad_token")
    if pad is None:
        raise ModelLoadError(
            f"{folder}: the tokenizer names no mask, EOS or pad token (tokenizer_config.json / special_tokens_map.json), "
            "so PyLate could not pad or expand queries with one either; add the model's tokenizer_config.json."
        )
    entry = {
        "model": config.get("model_name") if isinstance(config.get("model_name"), str) else _folder_model_name(folder),
        "dim": _pylate_dim(folder),
        "description": f"PyLate ColBERT model ({PYLATE_CONFIG}) with an ONNX export.",
        **_files(folder, _model_file(folder)),
        "rules": {
            "query_marker": _marker(_get(settings, "query_prefix", str, path), None),
            "document_marker": _marker(_get(settings, "document_prefix", str, path), None),
            "mask_token": {"token": pad},
            "pad_token": {"token": pad},
            "query_length": _get(settings, "query_length", int, path),
            "document_length": _get(settings, "document_length", int, path),
            "do_query_expansion": expansion,
            "attend_to_expansion_tokens": _get(settings, "attend_to_expansion_tokens", bool, path) and expansion,
            "skiplist": False,
            "skiplist_words": _get(settings, "skiplist_words", list, path),
            "skip_pad_token": False,
            "lowercase": _get(_sbert_config(folder), "do_lower_case", bool, folder / "sentence_bert_config.json", False),
            "strip_whitespace": True,  # sentence-transformers' Transformer.tokenize strips every text
        },
        "provenance": {"rules": f"{PYLATE_CONFIG} (PyLate), PyLate 1.6 defaults for settings it leaves out"},
    }
    return _parse(entry, path)


def _special_tokens(folder: Path) -> dict[str, str]:
    """The tokenizer's named special tokens (``mask_token``...) from special_tokens_map.json, then tokenizer_config.json."""
    out: dict[str, str] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if not (folder / name).is_file():
            continue
        for key, value in _read_json(folder / name).items():
            if isinstance(value, dict):
                value = value.get("content")
            if key.endswith("_token") and isinstance(value, str) and value:
                out[key] = value
    return out


def _sbert_config(folder: Path) -> dict[str, Any]:
    path = folder / "sentence_bert_config.json"
    return _read_json(path) if path.is_file() else {}


def _pylate_dim(folder: Path) -> int:
    """The output dimension: the last Dense module's ``out_features`` (modules.json order)."""
    modules_path = folder / "modules.json"
    if modules_path.is_file():
        try:
            modules = json.loads(modules_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"{modules_path} is not valid JSON ({e}); re-download the model.") from e
        dim = None
        for module in modules if isinstance(modules, list) else []:
            config = folder / str(module.get("path", "")) / "config.json"
            if "Dense" in str(module.get("type", "")) and config.is_file():
                dim = _read_json(config).get("out_features", dim)
        if isinstance(dim, int) and dim > 0:
            return dim
    raise ModelLoadError(
        f"{folder}: cannot tell the output dimension (no Dense module with out_features in modules.json); "
        "add the model's modules.json and 1_Dense/config.json, or export it with tools/export_onnx.py."
    )


def _parse(entry: dict[str, Any], path: Path) -> ModelSpec:
    try:
        return parse_entry(entry, str(path))
    except RegistryError as e:
        raise ModelLoadError(f"{path} describes rules lightcol cannot use: {e}") from e


def _cache_repo(folder: Path) -> str | None:
    """``ORG/NAME`` when ``folder`` is inside a Hugging Face cache folder ``models--ORG--NAME``."""
    for part in (folder, *folder.parents):
        if part.name.startswith("models--"):
            return part.name[len("models--") :].replace("--", "/", 1)
    return None


def _folder_model_name(folder: Path) -> str:
    return _cache_repo(folder) or folder.name


def missing_external_data(model_path: Path) -> list[str]:
    """External-data files ``model_path`` refers to (its initializers' ``location``) that are not beside it.

    Reads the protobuf's ``StringStringEntryProto`` entries with key ``location`` directly (no ``onnx``
    import); used to explain an ONNX file that does not load.
    """
    import mmap

    names: set[str] = set()
    needle = b"\x0a\x08location\x12"
    try:
        with open(model_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            at = m.find(needle)
            while at != -1 and len(names) < 64:
                i, length, shift = at + len(needle), 0, 0
                while i < len(m) and shift < 35:  # varint length of the file name
                    byte = m[i]
                    length |= (byte & 0x7F) << shift
                    i, shift = i + 1, shift + 7
                    if not byte & 0x80:
                        break
                name = bytes(m[i : i + length]).decode("utf-8", "replace")
                if name:
                    names.add(name)
                at = m.find(needle, i + length)
    except (OSError, ValueError):
        return []
    return sorted(n for n in names if not (model_path.parent / n).is_file())


def _fastembed_cache_spec(folder: Path) -> ModelSpec | None:
    """The registry row of the Hugging Face repository whose cache folder (``models--ORG--NAME``) holds ``folder``."""
    repo = _cache_repo(folder)
    if repo is None:
        return None
    for spec in list_specs():
        if repo.lower() in {spec.model.lower(), (spec.hf_repo or "").lower()}:
            missing = [f for f in (spec.model_file, *spec.additional_files, "tokenizer.json") if not (folder / f).is_file()]
            if missing:
                raise ModelLoadError(
                    f"{folder} is the cache folder of {spec.model} but lacks {', '.join(missing)}; "
                    f"download it again (FastEmbed, or lightcol download {spec.model})."
                )
            return spec
    return None
