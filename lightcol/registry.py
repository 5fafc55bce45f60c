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
    """A special token: its string form and its id in the tokenizer's vocabulary.

    In ``models.json`` and folder configs either may be left out (``{"token": "[MASK]"}`` or
    ``{"id": 103}``): the encoder fills the other in from the model's own tokenizer at load
    (:func:`lightcol.rules.resolve_rules`); given both, they are checked against each other.
    """

    token: str | None
    id: int | None


#: Defaults of the rules added after the first registry schema: a rule missing from a
#: ``models.json`` row, a ``lightcol_config.json`` or rules recorded with an index means this.
RULE_DEFAULTS: dict[str, Any] = {
    "do_query_expansion": True,
    "skiplist_words": None,
    "skip_pad_token": True,
    "token_type_ids": None,
    "graph_normalizes": False,
    "output_name": None,
    "strip_whitespace": False,
}


@dataclass(frozen=True)
class EncodingRules:
    """How texts become token ids and ONNX outputs become vectors for one checkpoint, as data.

    Covers colbert-ai's ColBERTConfig, PyLate's ``ColBERT`` settings and the ONNX graph's interface;
    one encoder (:mod:`lightcol.rules`, :class:`lightcol.LateInteractionTextEmbedding`) reads them.

    * ``query_marker`` / ``document_marker``: the prefix token inserted after the start token
      (colbert-ai's ``[unused0]``/``[unused1]``, PyLate's added tokens ``"[Q] "``/``"[D] "``);
      ``None``: no prefix (PyLate's ``query_prefix=""``). Texts are truncated one token shorter to
      make room for it.
    * ``mask_token``: the token queries are expanded with (padded to ``query_length``); PyLate
      uses the tokenizer's mask token, else its EOS token, else its pad token. ``None`` only
      without query expansion.
    * ``pad_token``: the token batches are padded with (attention 0). PyLate pads with the same
      token it expands with (its ``pad_token_id`` is set to the mask token's).
    * ``query_length`` / ``document_length``: most tokens per query / document, start, end and
      marker tokens included.
    * ``do_query_expansion``: queries padded with ``mask_token`` to ``query_length`` and every
      row returned; ``False`` (PyLate's ``do_query_expansion=False``): queries are padded like
      documents and only their attended tokens are returned.
    * ``attend_to_expansion_tokens``: the expansion tokens get attention 1 (only with expansion).
    * ``skiplist``: colbert-ai's and FastEmbed's punctuation skiplist: the first id each character
      of ``string.punctuation`` encodes to is dropped from documents.
    * ``skiplist_words``: PyLate's skiplist: each word is looked up as one token of the model's own
      vocabulary (a word that is not a token maps to the unknown token, as ``convert_tokens_to_ids``
      does) and those ids are dropped from documents. ``None``: none; ``[]``: an empty skiplist.
    * ``skip_pad_token``: documents also drop the pad token wherever its id occurs (colbert-ai,
      FastEmbed's ``Colbert``), not only the padding; ``False``: every attended token is kept (PyLate).
    * ``lowercase``: texts are lower-cased before tokenizing: with ``str.lower()`` as sentence-transformers'
      ``do_lower_case`` does, unless the tokenizer lower-cases by itself (BERT uncased, colbert-ai).
    * ``strip_whitespace``: leading and trailing whitespace is stripped from every text first
      (``str.strip()``: sentence-transformers' ``Transformer.tokenize``, through which PyLate tokenizes;
      it matters for byte-level BPE and SentencePiece tokenizers, where a leading space is a token).
    * ``token_type_ids``: whether the graph takes ``token_type_ids`` (fed as zeros); ``None``: as
      the graph declares. A graph that lacks an input the rules say it takes does not load.
    * ``graph_normalizes``: the graph already L2-normalises its output rows (LightOn's exporter);
      otherwise they are normalised in NumPy.
    * ``output_name``: the graph output holding the token vectors; ``None``: its first output.
    """

    query_marker: Token | None
    document_marker: Token | None
    mask_token: Token | None
    pad_token: Token
    query_length: int
    document_length: int
    attend_to_expansion_tokens: bool
    skiplist: bool
    lowercase: bool
    do_query_expansion: bool = True
    skiplist_words: tuple[str, ...] | None = None
    skip_pad_token: bool = True
    token_type_ids: bool | None = None
    graph_normalizes: bool = False
    output_name: str | None = None
    strip_whitespace: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The rules as JSON-native values (what ``models.json`` and indexes store)."""
        d = asdict(self)
        if d["skiplist_words"] is not None:
            d["skiplist_words"] = list(d["skiplist_words"])
        return d

    def differences(self, recorded: dict[str, Any], ignore: tuple[str, ...] = ("document_length", "graph_normalizes")) -> list[str]:
        """Names of the rules that differ from ``recorded`` (rules stored as JSON with an index), sorted;
        ``ignore`` is skipped (by default the document length, which only truncates documents, and
        whether the graph normalises, which does not change the vectors). A rule ``recorded`` lacks
        (rules recorded before it existed) counts as its default (:data:`RULE_DEFAULTS`)."""
        mine = json.loads(json.dumps(self.to_dict()))
        theirs = {**RULE_DEFAULTS, **json.loads(json.dumps(recorded))}
        return sorted(k for k in set(mine) | set(theirs) if k not in ignore and mine.get(k) != theirs.get(k))

    @property
    def query_truncation(self) -> int:
        """Tokens a query is truncated to before its marker is inserted."""
        return self.query_length - (self.query_marker is not None)

    @property
    def document_truncation(self) -> int:
        """Tokens a document is truncated to before its marker is inserted."""
        return self.document_length - (self.document_marker is not None)


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
        d["rules"] = self.rules.to_dict()
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


def _token(rules: dict[str, Any], key: str, where: str, *, optional: bool = False) -> Token | None:
    if optional and rules.get(key, 0) is None:
        return None
    t = _require(rules, key, dict, where)
    if not ({"token", "id"} & set(t)) or set(t) - {"token", "id"}:
        raise RegistryError(f"{where}.{key}: expected {{'token': str, 'id': int}} (either may be left out), got {t!r}")
    token = _require(t, "token", str, f"{where}.{key}") if t.get("token") is not None else None
    tid = _require(t, "id", int, f"{where}.{key}") if t.get("id") is not None else None
    if token is None and tid is None:
        raise RegistryError(f"{where}.{key}: give the token, its id, or both")
    if token == "":
        raise RegistryError(f"{where}.{key}: the token must not be empty (use null for no {key})")
    if tid is not None and tid < 0:
        raise RegistryError(f"{where}.{key}: id must be >= 0, got {tid}")
    return Token(token, tid)


def _optional(rules: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """``rules[key]`` checked against ``kind``, or its default when absent; ``None`` allowed where the default is."""
    if key not in rules:
        return RULE_DEFAULTS[key]
    if rules[key] is None and RULE_DEFAULTS[key] is None:
        return None
    return _require(rules, key, kind, where)


def parse_rules(rules: dict[str, Any], where: str) -> EncodingRules:
    """Validate a ``rules`` mapping and return :class:`EncodingRules` (rules it leaves out take
    :data:`RULE_DEFAULTS`, so rows and folders written before a rule existed keep their meaning)."""
    if not isinstance(rules, dict):
        raise RegistryError(f"{where}: 'rules' must be an object")
    unknown = set(rules) - {f for f in EncodingRules.__dataclass_fields__}
    if unknown:
        raise RegistryError(f"{where}: unknown rule(s) {sorted(unknown)}; known: {sorted(EncodingRules.__dataclass_fields__)}")
    words = _optional(rules, "skiplist_words", list, where)
    if words is not None and not all(isinstance(w, str) and w for w in words):
        raise RegistryError(f"{where}: 'skiplist_words' must be a list of non-empty strings")
    output_name = _optional(rules, "output_name", str, where)
    if output_name == "":
        raise RegistryError(f"{where}: 'output_name' must not be empty (null: the graph's first output)")
    parsed = EncodingRules(
        query_marker=_token(rules, "query_marker", where, optional=True),
        document_marker=_token(rules, "document_marker", where, optional=True),
        mask_token=_token(rules, "mask_token", where, optional=True),
        pad_token=_token(rules, "pad_token", where),  # type: ignore[arg-type]
        query_length=_require(rules, "query_length", int, where),
        document_length=_require(rules, "document_length", int, where),
        attend_to_expansion_tokens=_require(rules, "attend_to_expansion_tokens", bool, where),
        skiplist=_require(rules, "skiplist", bool, where),
        lowercase=_require(rules, "lowercase", bool, where),
        do_query_expansion=_optional(rules, "do_query_expansion", bool, where),
        skiplist_words=None if words is None else tuple(words),
        skip_pad_token=_optional(rules, "skip_pad_token", bool, where),
        token_type_ids=_optional(rules, "token_type_ids", bool, where),
        graph_normalizes=_optional(rules, "graph_normalizes", bool, where),
        output_name=output_name,
        strip_whitespace=_optional(rules, "strip_whitespace", bool, where),
    )
    # [start] marker <at least one slot> [end]
    for name in ("query_length", "document_length"):
        marker = parsed.query_marker if name == "query_length" else parsed.document_marker
        least = 3 if marker is not None else 2
        if getattr(parsed, name) < least:
            parts = "start, marker, end" if marker is not None else "start, end"
            raise RegistryError(f"{where}: {name} must be >= {least} ({parts} and one token), got {getattr(parsed, name)}")
    if parsed.do_query_expansion and parsed.mask_token is None:
        raise RegistryError(f"{where}: query expansion (do_query_expansion) needs a mask_token to expand queries with")
    if parsed.attend_to_expansion_tokens and not parsed.do_query_expansion:
        raise RegistryError(
            f"{where}: attend_to_expansion_tokens needs do_query_expansion (without expansion there are no "
            "expansion tokens; PyLate turns it off too)"
        )
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
