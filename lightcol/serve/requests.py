"""Request bodies of the service: limits and validation, with the library's error types and messages.

Pure functions from a parsed JSON body to checked values. A malformed body raises
:class:`~lightcol.errors.ArgumentError` (answered 422, or 400 for JSON that does not parse); a body
past a limit raises :class:`LimitExceeded` (413). No web framework is imported here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightcol import _validate
from lightcol.errors import ArgumentError
from lightcol.rules import check_text
from lightcol.serve.limits import Limits

KINDS = ("document", "query")
ENCODINGS = ("float", "base64")


class LimitExceeded(ArgumentError):
    """A request is larger than the server accepts (body size, texts per request, characters per text)."""


class MalformedJSON(ArgumentError):
    """The request body is not a JSON object."""


def parse_object(body: bytes, route: str) -> dict[str, Any]:
    """The JSON object in ``body``.

    :raises MalformedJSON: not UTF-8 JSON, or not an object.
    """
    try:
        value = json.loads(body)
    except UnicodeDecodeError as e:
        raise MalformedJSON(f"the body of {route} is not UTF-8 ({e.reason} at byte {e.start}); send UTF-8 JSON.") from None
    except json.JSONDecodeError as e:
        raise MalformedJSON(f"the body of {route} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno} "
                            f"(char {e.pos}).") from None
    if not isinstance(value, dict):
        raise MalformedJSON(f"the body of {route} must be a JSON object, got {_json_type(value)}.")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def check_fields(body: Mapping[str, Any], route: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    """Raise :class:`ArgumentError` for an unknown field or a missing required one (naming the fields)."""
    allowed = required + optional
    unknown = [k for k in body if k not in allowed]
    if unknown:
        raise ArgumentError(f"unknown field(s) {', '.join(repr(k) for k in unknown)} in the body of {route}; "
                            f"expected {', '.join(repr(k) for k in allowed)}.")
    missing = [k for k in required if k not in body]
    if missing:
        raise ArgumentError(f"the body of {route} needs the field(s) {', '.join(repr(k) for k in missing)}.")


def texts(name: str, value: Any, limits: Limits, *, allow_empty: bool = True) -> list[str]:
    """A list of texts within the limits; items checked as the library checks them (``item i is ...``)."""
    if isinstance(value, str) or not isinstance(value, list):
        raise ArgumentError(f"{name} must be a list of str, got {_json_type(value)}; wrap one text in a list.")
    if len(value) > limits.max_texts:
        raise LimitExceeded(f"{name} holds {len(value)} texts; this server takes at most {limits.max_texts} per "
                            "request (lightcol serve --max-texts): split the request.")
    if not value and not allow_empty:
        raise ArgumentError(f"{name} must hold at least one text.")
    for i, t in enumerate(value):
        check_text(i, t)
        if len(t) > limits.max_chars:
            raise LimitExceeded(f"{name}[{i}] has {len(t)} characters; this server takes at most {limits.max_chars} "
                                "per text (lightcol serve --max-chars): split or shorten it.")
    return value


def text(name: str, value: Any, limits: Limits) -> str:
    """One text within the limits."""
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be a str, got {_json_type(value)}.")
    check_text(0, value)
    if len(value) > limits.max_chars:
        raise LimitExceeded(f"{name} has {len(value)} characters; this server takes at most {limits.max_chars} "
                            "(lightcol serve --max-chars).")
    return value


def choice(name: str, value: Any, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ArgumentError(f"{name} must be one of {', '.join(repr(o) for o in options)}, got {value!r}.")
    return value


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ArgumentError(f"{name} must be true or false, got {value!r}.")
    return value


def ids(name: str, value: Any, limits: Limits) -> list[str | int]:
    """Document ids: a list of str or int (``true``/``false`` are not ids)."""
    if not isinstance(value, list):
        raise ArgumentError(f"{name} must be a list of str or int ids, got {_json_type(value)}; wrap one id in a list.")
    if len(value) > limits.max_texts:
        raise LimitExceeded(f"{name} holds {len(value)} ids; this server takes at most {limits.max_texts} per "
                            "request (lightcol serve --max-texts): split the request.")
    for i, d in enumerate(value):
        if isinstance(d, bool) or not isinstance(d, (str, int)):
            raise ArgumentError(f"{name}[{i}] is {d!r} ({_json_type(d)}); ids must be str or int.")
    return value


# -- one function per endpoint: the body's checked values ------------------------------------------

@dataclass(frozen=True)
class EmbedRequest:
    texts: list[str]
    kind: str
    encoding: str


def embed(body: dict[str, Any], limits: Limits) -> EmbedRequest:
    route = "POST /v1/embed"
    check_fields(body, route, ("texts",), ("kind", "encoding"))
    return EmbedRequest(
        texts("texts", body["texts"], limits),
        choice("kind", body.get("kind", "document"), KINDS),
        choice("encoding", body.get("encoding", "float"), ENCODINGS),
    )


@dataclass(frozen=True)
class TokenCountRequest:
    texts: list[str]
    kind: str
    include_extension: bool


def token_count(body: dict[str, Any], limits: Limits) -> TokenCountRequest:
    route = "POST /v1/token_count"
    check_fields(body, route, ("texts",), ("kind", "include_extension"))
    return TokenCountRequest(
        texts("texts", body["texts"], limits),
        choice("kind", body.get("kind", "document"), KINDS),
        boolean("include_extension", body.get("include_extension", False)),
    )


@dataclass(frozen=True)
class RerankRequest:
    query: str
    documents: list[str]
    top_n: int | None


def rerank(body: dict[str, Any], limits: Limits) -> RerankRequest:
    route = "POST /v1/rerank"
    check_fields(body, route, ("query", "documents"), ("top_n",))
    top_n = _validate.integer("top_n", body.get("top_n"), minimum=0, allow_none=True)
    return RerankRequest(text("query", body["query"], limits), texts("documents", body["documents"], limits), top_n)


@dataclass(frozen=True)
class SearchRequest:
    query: str
    k: int
    where: dict[str, Any] | None
    by_document: bool
    #: DocumentIndex search options given in the request (mode, alpha, fusion, highlights), passed through as they are
    options: dict[str, Any]


#: DocumentIndex.search keywords a search request may set
SEARCH_OPTIONS = ("mode", "alpha", "fusion", "highlights")


def search(body: dict[str, Any], limits: Limits) -> SearchRequest:
    route = "POST /v1/search"
    check_fields(body, route, ("query",), ("k", "where", "by_document", *SEARCH_OPTIONS))
    k = _validate.integer("k", body.get("k", 10), minimum=1)
    where = body.get("where")
    if where is not None and not isinstance(where, dict):
        raise ArgumentError(f"where must be a JSON object of metadata filters, got {_json_type(where)}.")
    return SearchRequest(text("query", body["query"], limits), int(k or 10), where,
                         boolean("by_document", body.get("by_document", False)),
                         {name: body[name] for name in SEARCH_OPTIONS if body.get(name) is not None})


@dataclass(frozen=True)
class AddRequest:
    texts: list[str]
    ids: list[str | int] | None
    metadata: list[dict[str, Any] | None] | None


def add_documents(body: dict[str, Any], limits: Limits) -> AddRequest:
    route = "POST /v1/documents"
    check_fields(body, route, ("texts",), ("ids", "metadata"))
    docs = texts("texts", body["texts"], limits)
    doc_ids = None if body.get("ids") is None else ids("ids", body["ids"], limits)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, list):
            raise ArgumentError(f"metadata must be a list with one object (or null) per text, got {_json_type(metadata)}.")
        for i, m in enumerate(metadata):
            if m is not None and not isinstance(m, dict):
                raise ArgumentError(f"metadata[{i}] is {_json_type(m)}; each document's metadata must be an object "
                                    "(or null).")
    for name, other in (("ids", doc_ids), ("metadata", metadata)):
        if other is not None and len(other) != len(docs):
            raise ArgumentError(f"got {len(docs)} texts but {len(other)} {name}; give one per text.")
    return AddRequest(docs, doc_ids, metadata)


def delete_documents(body: dict[str, Any], limits: Limits) -> list[str | int]:
    route = "DELETE /v1/documents"
    check_fields(body, route, ("ids",), ())
    return ids("ids", body["ids"], limits)
