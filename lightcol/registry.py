"""The model registry: ``models.json`` entries parsed into typed, validated specs.

Everything that differs between checkpoints (files, dimension, marker tokens, lengths, skiplist,
expansion-token attention) lives in the registry as data; the encoder reads it and has no
per-model code.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from lightcol.errors import ArgumentError, RegistryError, UnknownModelError

#: Name of the rules file that ``tools/export_onnx.py`` and ``lightcol download --to`` write into a model folder.
FOLDER_CONFIG = "lightcol_config.json"

_FASTEMBED_KEYS = ("model", "dim", "description", "license", "size_in_GB", "sources", "model_file", "additional_files")


@dataclass(frozen=True)
class Token:
    """A special token: its string form and its id in the tokenizer's vocabulary."""

    token: str
    id: int


@dataclass(frozen=True)
class EncodingRules:
    """How texts become token ids for one checkpoint (colbert-ai's ColBERTConfig, as data)."""

    query_marker: Token
    document_marker: Token
    mask_token: Token
    pad_token: Token
    query_length: int
    document_length: int
    attend_to_expansion_tokens: bool
    skiplist: bool
    lowercase: bool

    def differences(self, recorded: dict[str, Any], ignore: tuple[str, ...] = ("document_length",)) -> list[str]:
        """Names of the rules that differ from ``recorded`` (rules stored as JSON with an index), sorted;
        ``ignore`` is skipped (by default the document length, which only truncates documents)."""
        mine = asdict(self)
        return sorted(k for k in set(mine) | set(recorded) if k not in ignore and mine.get(k) != recorded.get(k))


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry."""

    model: str
    dim: int
    description: str
    license: str
    size_in_GB: float
    sources: dict[str, str]
    model_file: str
    additional_files: tuple[str, ...]
    tokenizer_files: tuple[str, ...]
    rules: EncodingRules
    provenance: dict[str, str] = field(default_factory=dict)
    #: Optional alternative ONNX files of the same model, by variant name, e.g.
    #: ``{"int8": "model_int8.onnx", "fp16": "model_fp16.onnx"}`` (written by
    #: ``tools/export_onnx.py --quantize int8 / --fp16``). Same inputs, outputs and rules as
    #: ``model_file``; loaded with ``LateInteractionTextEmbedding(..., quantized=True)`` (``"int8"``)
    #: or ``model_variant="NAME"``. Not part of :attr:`files` (not downloaded unless asked for).
    variants: dict[str, str] = field(default_factory=dict)

    @property
    def hf_repo(self) -> str | None:
        """The Hugging Face repository id, or ``None`` for a local-only model."""
        return self.sources.get("hf")

    def variant_file(self, variant: str | None) -> str:
        """The ONNX file of ``variant`` (``None`` or ``"float32"``: :attr:`model_file`)."""
        if variant is None or variant == "float32":
            return self.model_file
        if variant not in self.variants:
            known = ", ".join(["float32", *sorted(self.variants)])
            raise RegistryError(
                f"model {self.model!r} has no {variant!r} variant (known: {known}); export one with "
                f"tools/export_onnx.py --quantize int8 (or --fp16)."
            )
        return self.variants[variant]

    @property
    def files(self) -> tuple[str, ...]:
        """Every file the model needs, ONNX first."""
        return (self.model_file, *self.additional_files, *self.tokenizer_files)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict with FastEmbed's keys first, then lightcol's."""
        d = asdict(self)
        d["additional_files"] = list(self.additional_files)
        d["tokenizer_files"] = list(self.tokenizer_files)
        return {**{k: d[k] for k in _FASTEMBED_KEYS}, **{k: v for k, v in d.items() if k not in _FASTEMBED_KEYS}}


def _require(entry: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in entry:
        raise RegistryError(f"{where}: missing required key {key!r}")
    value = entry[key]
    if isinstance(value, bool) and kind is not bool and not (isinstance(kind, tuple) and bool in kind):
        raise RegistryError(f"{where}: {key!r} must be {kind}, got a bool")
    if not isinstance(value, kind):
        raise RegistryError(f"{where}: {key!r} must be {kind}, got {type(value).__name__} {value!r}")
    return value


def _token(rules: dict[str, Any], key: str, where: str) -> Token:
    t = _require(rules, key, dict, where)
    token = _require(t, "token", str, f"{where}.{key}")
    tid = _require(t, "id", int, f"{where}.{key}")
    if tid < 0:
        raise RegistryError(f"{where}.{key}: id must be >= 0, got {tid}")
    return Token(token, tid)


def parse_rules(rules: dict[str, Any], where: str) -> EncodingRules:
    """Validate a ``rules`` mapping and return :class:`EncodingRules`."""
    if not isinstance(rules, dict):
        raise RegistryError(f"{where}: 'rules' must be an object")
    parsed = EncodingRules(
        query_marker=_token(rules, "query_marker", where),
        document_marker=_token(rules, "document_marker", where),
        mask_token=_token(rules, "mask_token", where),
        pad_token=_token(rules, "pad_token", where),
        query_length=_require(rules, "query_length", int, where),
        document_length=_require(rules, "document_length", int, where),
        attend_to_expansion_tokens=_require(rules, "attend_to_expansion_tokens", bool, where),
        skiplist=_require(rules, "skiplist", bool, where),
        lowercase=_require(rules, "lowercase", bool, where),
    )
    # [CLS] marker <at least one slot> [SEP]
    for name in ("query_length", "document_length"):
        if getattr(parsed, name) < 3:
            raise RegistryError(f"{where}: {name} must be >= 3 (CLS, marker, SEP), got {getattr(parsed, name)}")
    unknown = set(rules) - {f for f in EncodingRules.__dataclass_fields__}
    if unknown:
        raise RegistryError(f"{where}: unknown rule(s) {sorted(unknown)}; known: {sorted(EncodingRules.__dataclass_fields__)}")
    return parsed


def parse_entry(entry: dict[str, Any], where: str = "models.json") -> ModelSpec:
    """Validate one registry entry (as found in ``models.json`` or a folder config)."""
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: each entry must be an object, got {type(entry).__name__}")
    name = entry.get("model", "<unnamed>")
    where = f"{where} entry {name!r}"
    model = _require(entry, "model", str, where)
    dim = _require(entry, "dim", int, where)
    if dim <= 0:
        raise RegistryError(f"{where}: dim must be positive, got {dim}")
    size = _require(entry, "size_in_GB", (int, float), where)
    sources = _require(entry, "sources", dict, where)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in sources.items()):
        raise RegistryError(f"{where}: 'sources' must map strings to strings")
    model_file = _require(entry, "model_file", str, where)
    additional = _require(entry, "additional_files", list, where)
    tok_files = _require(entry, "tokenizer_files", list, where)
    for f in (model_file, *additional, *tok_files):
        if not isinstance(f, str) or not f or f.startswith("/") or ".." in Path(f).parts:
            raise RegistryError(f"{where}: file names must be relative paths inside the repo, got {f!r}")
    if "tokenizer.json" not in tok_files:
        raise RegistryError(f"{where}: 'tokenizer_files' must include 'tokenizer.json'")
    provenance = entry.get("provenance", {})
    if not isinstance(provenance, dict):
        raise RegistryError(f"{where}: 'provenance' must be an object")
    variants = entry.get("variants", {})
    if not isinstance(variants, dict) or not all(isinstance(k, str) and k for k in variants):
        raise RegistryError(f"{where}: 'variants' must map variant names to ONNX file names")
    for f in variants.values():
        if not isinstance(f, str) or not f or f.startswith("/") or ".." in Path(f).parts:
            raise RegistryError(f"{where}: variant file names must be relative paths inside the repo, got {f!r}")
    return ModelSpec(
        model=model,
        dim=dim,
        description=_require(entry, "description", str, where),
        license=_require(entry, "license", str, where),
        size_in_GB=float(size),
        sources=dict(sources),
        model_file=model_file,
        additional_files=tuple(additional),
        tokenizer_files=tuple(tok_files),
        rules=parse_rules(_require(entry, "rules", dict, where), where),
        provenance=dict(provenance),
        variants=dict(variants),
    )


def parse_registry(data: Any, where: str = "models.json") -> dict[str, ModelSpec]:
    """Validate a whole registry document; return specs keyed by lower-cased model name."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise RegistryError(f"{where}: expected an object with a 'models' list")
    if data.get("schema_version") != 1:
        raise RegistryError(f"{where}: unsupported schema_version {data.get('schema_version')!r} (expected 1)")
    specs: dict[str, ModelSpec] = {}
    for entry in data["models"]:
        spec = parse_entry(entry, where)
        key = spec.model.lower()
        if key in specs:
            raise RegistryError(f"{where}: duplicate entry {spec.model!r}")
        specs[key] = spec
    return specs


def _registry_text() -> str:
    # Installed wheel: models.json is package data (lightcol/models.json via force-include);
    # source checkout: the top-level models.json next to the package.
    packaged = resources.files("lightcol").joinpath("models.json")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "models.json").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _registry() -> dict[str, ModelSpec]:
    try:
        data = json.loads(_registry_text())
    except json.JSONDecodeError as e:
        raise RegistryError(f"models.json is not valid JSON: {e}") from e
    return parse_registry(data)


def get_spec(model_name: str) -> ModelSpec:
    """The registry entry for ``model_name`` (case-insensitive), or :class:`UnknownModelError`."""
    if not isinstance(model_name, str):
        raise ArgumentError(f"model_name must be a str, got {type(model_name).__name__}")
    spec = _registry().get(model_name.lower())
    if spec is None:
        names = ", ".join(s.model for s in _registry().values())
        raise UnknownModelError(
            f"Model {model_name!r} is not supported. Supported models: {names}. "
            "For a model folder exported with tools/export_onnx.py, pass specific_model_path=FOLDER."
        )
    return spec


def list_specs() -> list[ModelSpec]:
    """Every registry entry."""
    return list(_registry().values())


def list_supported_models() -> list[dict[str, Any]]:
    """Every registry entry as a dict with every key FastEmbed's has (``tasks``, ``sources.url``...)
    plus lightcol's (``rules``, ``tokenizer_files``...)."""
    out = []
    for spec in list_specs():
        d = copy.deepcopy(spec.to_dict())
        d.setdefault("tasks", {})
        for key, value in _FASTEMBED_SOURCES.items():
            d["sources"].setdefault(key, value)
        out.append(d)
    return out


#: Keys of FastEmbed's ``sources`` that lightcol's entries may leave out, with FastEmbed's defaults.
_FASTEMBED_SOURCES = {"hf": None, "url": None, "_deprecated_tar_struct": False}


def read_folder_config(folder: Path) -> ModelSpec | None:
    """The spec stored in ``folder/lightcol_config.json``, or ``None`` if the folder has none."""
    path = Path(folder) / FOLDER_CONFIG
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RegistryError(f"{path} is not valid JSON ({e}); re-export the folder with tools/export_onnx.py") from e
    return parse_entry(data, str(path))


def write_folder_config(folder: Path, spec: ModelSpec) -> Path:
    """Write ``spec`` as ``folder/lightcol_config.json`` (the folder's own rules)."""
    path = Path(folder) / FOLDER_CONFIG
    path.write_text(json.dumps(spec.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
