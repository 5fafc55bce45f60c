"""The HTTP routes (FastAPI on Starlette): JSON in and out, errors as ``{"error": {"type", "message"}}``.

Every route reads and checks its body itself (:mod:`lightcol.serve.requests`), so a bad request gets
the library's error type and message; the pydantic models of :mod:`lightcol.serve.schema` only
document the bodies in ``/openapi.json``.

Status codes: 400 body not a JSON object / unsupported here (no index, no filters), 401 missing or
wrong API key, 404 unknown document ids / no such route, 409 duplicate document id, 413 a limit
(body size, texts per request, characters per text), 422 a field with a wrong type or value, or an
unknown field, 503 the queue is full (``Retry-After``) or the server is shutting down, 500 anything
else (logged; the process and the other requests go on).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from lightcol import _optional
from lightcol.errors import ArgumentError, DuplicateIdError, InvalidTextError, ShapeError
from lightcol.serve import requests as rq
from lightcol.serve.batching import DOCUMENT, QUERY, QueueFull, ShuttingDown
from lightcol.serve.service import DocumentsMissing, ServeConfig, Service, Unsupported

_optional.require("fastapi", "serve", "lightcol serve")
_optional.require("uvicorn", "serve", "lightcol serve")

from fastapi import FastAPI  # noqa: E402
from fastapi.openapi.utils import get_openapi  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402

from lightcol.serve import schema  # noqa: E402

log = logging.getLogger("lightcol.serve")

#: Above this many characters a request is tokenized in a worker thread (the event loop keeps serving).
_THREAD_CHARS = 16_384
#: Above this many floats a float-encoded response is written in a worker thread ...
_THREAD_FLOATS = 65_536
#: ... and above this many bytes a request body is parsed in one.
_THREAD_BYTES = 1 << 20
#: Worker threads (tokenizing, index searches, DocumentIndex changes).
_WORKER_THREADS = 64


class Unauthorized(Exception):
    """No or a wrong bearer token."""


def _status(e: BaseException) -> tuple[int, str]:
    """HTTP status and reported type of an error."""
    if isinstance(e, Unauthorized):
        return 401, "Unauthorized"
    if isinstance(e, rq.LimitExceeded):
        return 413, "LimitExceeded"
    if isinstance(e, rq.MalformedJSON):
        return 400, "ArgumentError"
    if isinstance(e, Unsupported):
        return 400, "Unsupported"
    if isinstance(e, QueueFull):
        return 503, "QueueFull"
    if isinstance(e, ShuttingDown):
        return 503, "ShuttingDown"
    if isinstance(e, DocumentsMissing):
        return 404, "ArgumentError"
    if isinstance(e, DuplicateIdError):
        return 409, type(e).__name__
    if isinstance(e, (ArgumentError, InvalidTextError, ShapeError)):  # the caller's input; not e.g. a broken index
        return 422, type(e).__name__
    return 500, type(e).__name__


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(payload), status_code=status, headers=headers, media_type="application/json")


def _dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities raise ``ValueError`` (they are not JSON)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                      default=_default).encode("utf-8")


def _dumps_floats(payload: Any, vectors: list[np.ndarray]) -> bytes:
    """:func:`_dumps` of a payload whose bulk is ``vectors`` as nested lists of floats.

    With ``orjson`` installed (optional) this is 15-20x faster (a 100 x 128 abstract: under 1 ms
    instead of 15 ms of the event loop): both write the shortest decimal that reads back as the same
    float64, so a client parses the same numbers. Only finite vectors take that path: ``orjson``
    would write NaN as ``null`` where :func:`_dumps` refuses it.
    """
    if _orjson is not None and all(np.isfinite(v).all() for v in vectors):
        return _orjson.dumps(payload, default=_default)
    return _dumps(payload)


try:  # optional: a faster writer of float lists
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


def _default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def error_response(e: BaseException) -> Response:
    status, kind = _status(e)
    headers: dict[str, str] = {}
    if isinstance(e, QueueFull):
        headers["Retry-After"] = str(e.retry_after)
    elif isinstance(e, ShuttingDown):
        headers["Retry-After"] = "1"
    elif isinstance(e, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    message = " ".join(str(e).split()) or kind
    if status == 500:
        log.error("request failed: %s: %s", kind, message, exc_info=e)
    return _json({"error": {"type": kind, "message": message}}, status, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing one larger than ``limit`` bytes (413) before reading all of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise rq.LimitExceeded(f"the request body has {int(declared)} bytes; this server takes at most {limit} "
                               "(lightcol serve --max-body-bytes): send fewer or shorter texts.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise rq.LimitExceeded(f"the request body has more than {limit} bytes; this server takes at most {limit} "
                                   "(lightcol serve --max-body-bytes): send fewer or shorter texts.")
        chunks.append(chunk)
    return b"".join(chunks)


def _encode(vectors: list[np.ndarray], encoding: str) -> list[Any]:
    if encoding == "float":
        return [v.tolist() for v in vectors]
    out = []
    for v in vectors:
        a = np.ascontiguousarray(v, dtype="<f4")
        out.append({"shape": list(a.shape), "dtype": "float32", "data": base64.b64encode(a.tobytes()).decode("ascii")})
    return out


Endpoint = Callable[[Request], Awaitable[Response]]


class ServeApp(FastAPI):
    """The FastAPI application, with its busiest routes (``POST /v1/embed``) answered before routing.

    Such a request goes straight to the route's endpoint function (the same one FastAPI routes to:
    authentication, metrics and error answers included), skipping the router, the middleware stack
    and dependency resolution (a quarter of the event loop's samples in a profile under 16 query
    callers). Every other request, and the OpenAPI schema, is FastAPI's.
    """

    hot_routes: dict[tuple[str, str], Endpoint]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.hot_routes.get((scope["method"], scope["path"]))
            if endpoint is not None and not scope.get("root_path"):
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


#: Routes :class:`ServeApp` answers without FastAPI's routing.
_HOT = (("POST", "/v1/embed"),)


def _body_doc(model: type) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "Body not a JSON object, or unsupported by this server", 401: "Missing or wrong API key",
            404: "Not found", 409: "Duplicate document id", 413: "Body, texts per request or characters per text "
            "over the server's limits", 422: "A field with a wrong type or value, or an unknown field",
            503: "Queue full (see Retry-After) or shutting down", 500: "Internal error"}
    return {c: {"model": schema.ErrorResponse, "description": text[c]} for c in codes}


def create_app(model: Any, index: Any = None, config: ServeConfig | None = None) -> ServeApp:
    """The ASGI application serving ``model`` (a :class:`~lightcol.LateInteractionTextEmbedding`) and,
    optionally, ``index`` (an :class:`~lightcol.Index` or :class:`~lightcol.DocumentIndex` opened with it).

    Run it with uvicorn (``lightcol serve`` does). The batcher's thread stops when the application's
    lifespan ends, after the texts already queued are done.
    """
    service = Service(model, index, config)
    limits = service.config.limits
    keys = tuple(k.encode("utf-8") for k in service.config.api_keys)
    metrics = service.metrics

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # worker threads wait on the batcher (DocumentIndex searches) or tokenize: more than asyncio's
        # default of cores + 4, so that such requests still reach the batcher together
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=_WORKER_THREADS, thread_name_prefix="lightcol-serve")
        loop.set_default_executor(executor)
        try:
            yield
        finally:
            await loop.run_in_executor(None, service.close)

    app = ServeApp(
        title="lightcol serve", version=_version(), lifespan=lifespan,
        description="Late-interaction (ColBERT) embeddings, reranking and search over HTTP, with dynamic batching. "
                    "Errors: {\"error\": {\"type\", \"message\"}}." + (
                        " Send 'Authorization: Bearer KEY' to every /v1 route and /metrics." if keys else ""),
    )
    app.state.service = service
    app.hot_routes = {}

    def authorize(request: Request) -> None:
        if not keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        given = token.strip().encode("utf-8")
        ok = False
        for key in keys:  # constant time per key
            ok |= hmac.compare_digest(given, key)
        if scheme.lower() != "bearer" or not ok:
            raise Unauthorized("missing or wrong API key: send the header 'Authorization: Bearer KEY' with a key "
                               "from the server's --api-key-file.")

    def route(path: str, method: str, name: str, handler: Callable[[Request], Awaitable[Response]], *,
              auth: bool = True, body: type | None = None, response: Any = None, errors: tuple[int, ...] = (),
              summary: str = "", description: str = "") -> None:
        async def endpoint(request: Request) -> Response:
            t0 = time.perf_counter()
            metrics.in_flight.inc()
            try:
                if auth:
                    authorize(request)
                result = await handler(request)
            except Exception as e:  # noqa: BLE001 - every error is answered; the server goes on
                result = error_response(e)
            finally:
                metrics.in_flight.dec()
            metrics.requests.inc(name, str(result.status_code))
            metrics.latency.observe(time.perf_counter() - t0, name)
            return result

        responses: dict[int | str, dict[str, Any]] = {}
        if response is not None:
            responses[200] = response if isinstance(response, dict) else {"model": response, "description": "OK"}
        codes = set(errors) | ({401} if auth and keys else set())
        responses.update(_errors(*sorted(codes)))
        extra = _body_doc(body) if body is not None else None
        if auth and keys:
            extra = {**(extra or {}), "security": [{"bearer": []}]}
        app.add_api_route(path, endpoint, methods=[method], name=name, summary=summary, description=description,
                          responses=responses, openapi_extra=extra, response_model=None, include_in_schema=True)
        if (method, path) in _HOT:
            app.hot_routes[(method, path)] = endpoint

    async def parse(request: Request, route_name: str) -> dict[str, Any]:
        body = await read_body(request, limits.max_body_bytes)
        if len(body) > _THREAD_BYTES:
            return await asyncio.to_thread(rq.parse_object, body, route_name)
        return rq.parse_object(body, route_name)

    async def tokenized(kind: str, texts: list[str]) -> list[list[int]]:
        if sum(len(t) for t in texts) > _THREAD_CHARS:
            return await asyncio.to_thread(service.tokenize, kind, texts)
        return service.tokenize(kind, texts)

    async def vectors(kind: str, texts: list[str]) -> list[np.ndarray]:
        return await asyncio.wrap_future(service.submit(kind, await tokenized(kind, texts)))

    # -- routes ------------------------------------------------------------------------------------
    async def embed(request: Request) -> Response:
        req = rq.embed(await parse(request, "POST /v1/embed"), limits)
        vecs = await vectors(req.kind, req.texts)
        payload = {"model": service.model_name, "dim": int(model.dim), "embeddings": None,
                   "n_tokens": [int(v.shape[0]) for v in vecs]}
        if req.encoding == "float" and sum(v.size for v in vecs) > _THREAD_FLOATS:
            return await asyncio.to_thread(_embed_payload, payload, vecs, req.encoding)
        return _embed_payload(payload, vecs, req.encoding)

    def _embed_payload(payload: dict[str, Any], vecs: list[np.ndarray], encoding: str) -> Response:
        payload["embeddings"] = _encode(vecs, encoding)
        body = _dumps_floats(payload, vecs) if encoding == "float" else _dumps(payload)
        return Response(body, media_type="application/json")

    async def token_count(request: Request) -> Response:
        req = rq.token_count(await parse(request, "POST /v1/token_count"), limits)
        is_doc = req.kind == "document"
        if not is_doc and req.include_extension:
            counts = [int(model.spec.rules.query_length)] * len(req.texts)
        else:
            ids = await asyncio.to_thread(service.tokenize, req.kind, req.texts)
            counts = [len(s) + (1 if req.include_extension else 0) for s in ids]
        return _json({"model": service.model_name, "n_tokens": counts, "total": sum(counts)})

    async def rerank(request: Request) -> Response:
        from lightcol import maxsim

        req = rq.rerank(await parse(request, "POST /v1/rerank"), limits)
        if not req.documents:
            return _json({"model": service.model_name, "results": []})
        # the documents are admitted (or refused: 503) first; the query then rides along
        doc_ids = await tokenized(DOCUMENT, req.documents)
        docs_future = service.submit(DOCUMENT, doc_ids)
        q_future = service.submit(QUERY, service.tokenize(QUERY, [req.query]), admit=False)
        (q,), docs = await asyncio.gather(asyncio.wrap_future(q_future), asyncio.wrap_future(docs_future))
        k = len(docs) if req.top_n is None else req.top_n
        idx, scores = await asyncio.to_thread(maxsim.rank, q, docs, k)
        results = [{"index": int(i), "score": float(s)} for i, s in zip(idx.tolist(), scores.tolist(), strict=True)]
        return _json({"model": service.model_name, "results": results})

    async def search(request: Request) -> Response:
        req = rq.search(await parse(request, "POST /v1/search"), limits)
        service.require_index(req.where)  # 400 before any work
        if service.is_document_index:
            results = await asyncio.to_thread(service.search_document_index, req.query, req.k, req.where,
                                              req.by_document, req.options)
        elif req.options:
            raise Unsupported(f"{', '.join(sorted(req.options))} need a DocumentIndex (a folder built with --documents); "
                              "the opened index is an Index of vectors and ids.")
        else:
            (q,) = await vectors(QUERY, [req.query])
            results = await asyncio.to_thread(service.search_index, q, req.k, None)
        return _json({"model": service.model_name, "results": results})

    write_lock = asyncio.Lock()  # single writer: additions and deletions one at a time

    async def add_documents(request: Request) -> Response:
        req = rq.add_documents(await parse(request, "POST /v1/documents"), limits)
        service.document_index()  # 400 before waiting for the lock
        async with write_lock:
            out = await asyncio.to_thread(service.add_documents, req.texts, req.ids, req.metadata)
        return _json(out)

    async def delete_documents(request: Request) -> Response:
        doc_ids = rq.delete_documents(await parse(request, "DELETE /v1/documents"), limits)
        service.document_index()
        async with write_lock:
            out = await asyncio.to_thread(service.delete_documents, doc_ids)
        return _json(out)

    async def model_info(request: Request) -> Response:
        return _json(await asyncio.to_thread(service.model_info))

    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    async def ready(request: Request) -> Response:
        if service.batcher.closed:
            return _json({"status": "shutting down"}, 503, {"Retry-After": "1"})
        return _json({"status": "ready"})

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

    route("/v1/embed", "POST", "embed", embed, body=schema.EmbedRequest, response=schema.EmbedResponse,
          errors=(400, 413, 422, 503, 500), summary="Embed texts (documents or queries)",
          description="One (tokens x dim) matrix of L2-normalised vectors per text, as LateInteractionTextEmbedding."
                      "embed / query_embed give them; requests arriving together share ONNX Runtime batches.")
    route("/v1/rerank", "POST", "rerank", rerank, body=schema.RerankRequest, response=schema.RerankResponse,
          errors=(400, 413, 422, 503, 500), summary="Rerank documents for a query by MaxSim",
          description="Scores as LateInteractionTextEmbedding.rerank: best first, ties broken by lower index.")
    route("/v1/search", "POST", "search", search, body=schema.SearchRequest, response=schema.SearchResponse,
          errors=(400, 413, 422, 503, 500), summary="Search the index opened at start",
          description="An Index returns {id, score}; a DocumentIndex its passages with content and metadata.")
    route("/v1/documents", "POST", "add_documents", add_documents, body=schema.AddDocumentsRequest,
          response=schema.AddDocumentsResponse, errors=(400, 409, 413, 422, 503, 500),
          summary="Add documents to the DocumentIndex",
          description="DocumentIndex.add: split, embed, store; all or nothing. Writes run one at a time.")
    route("/v1/documents", "DELETE", "delete_documents", delete_documents, body=schema.DeleteDocumentsRequest,
          response=schema.DeleteDocumentsResponse, errors=(400, 404, 413, 422, 500),
          summary="Delete documents from the DocumentIndex", description="DocumentIndex.delete: all or nothing.")
    route("/v1/token_count", "POST", "token_count", token_count, body=schema.TokenCountRequest,
          response=schema.TokenCountResponse, errors=(400, 413, 422, 500), summary="Count tokens",
          description="Tokens per text after truncation, as LateInteractionTextEmbedding.token_count counts them.")
    route("/v1/model", "GET", "model", model_info, response=schema.ModelInfo, summary="The model and settings")
    route("/health", "GET", "health", health, auth=False, response=schema.Status, summary="Liveness")
    route("/ready", "GET", "ready", ready, auth=False, response=schema.Status, summary="Readiness (model loaded)",
          errors=(503,))
    route("/metrics", "GET", "metrics", metrics_route, summary="Prometheus metrics",
          response={"description": "Prometheus text format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}}})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return _json({"error": {"type": kind, "message": f"{request.method} {request.url.path}: {exc.detail}"}},
                     exc.status_code, dict(exc.headers or {}))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            for m in schema.REQUEST_MODELS:
                s = m.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(s.pop("$defs", {}))
                components[m.__name__] = s
            if keys:
                doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _version() -> str:
    from lightcol import __version__

    return str(__version__)
