"""What the HTTP routes use, without the web framework: one model, its batcher, the index, the metrics.

:class:`Service` embeds through the :class:`~lightcol.serve.batching.Batcher` (one model in memory,
one ONNX Runtime call at a time), searches the :class:`~lightcol.Index` or
:class:`~lightcol.DocumentIndex` opened at start and changes a ``DocumentIndex`` one write at a time.
A ``DocumentIndex`` gets :class:`BatchedModel` as its model, so its searches and additions are
batched with everyone else's texts too.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightcol.errors import ArgumentError
from lightcol.serve.batching import DOCUMENT, QUERY, Batcher
from lightcol.serve.metrics import ServiceMetrics
from lightcol.serve.limits import MAX_QUEUE, Limits

#: Texts a DocumentIndex addition hands the batcher at a time (the next chunk is queued while
#: the vector store takes the previous one), so other requests keep their turn.
ADD_CHUNK = 64


class Unsupported(ArgumentError):
    """The request needs what this server does not have (an index, a DocumentIndex, filters)."""


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the service (``lightcol serve`` flags).

    Args:
        max_batch_tokens: padded tokens per ONNX Runtime call (``--max-batch-tokens``); ``None``: the
            model's own, as in-process ``embed`` uses (``model.batch_tokens``: 1,024 for encoders up to
            hidden size 384, fewer for wider ones).
        max_queue: texts that may wait for a batch; beyond it requests get 503 (``--max-queue``).
        batching: merge concurrent requests (``--no-batching``: one request at a time).
        limits: body size, texts per request, characters per text.
        api_keys: bearer tokens accepted (empty: no authentication).
        max_rows: texts per ONNX Runtime call at most.
        batch_workers: batches of each kind (queries, documents) that run at once on the one session,
            each with the model's ``threads`` (``--batch-workers``).
    """

    max_batch_tokens: int | None = None
    max_queue: int = MAX_QUEUE
    batching: bool = True
    limits: Limits = field(default_factory=Limits)
    api_keys: tuple[str, ...] = ()
    max_rows: int = 256
    batch_workers: int = 1

    def check(self) -> None:
        for name in ("max_batch_tokens", "max_queue", "max_rows", "batch_workers"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ArgumentError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("max_body_bytes", "max_texts", "max_chars"):
            if int(getattr(self.limits, name)) < 1:
                raise ArgumentError(f"{name} must be >= 1, got {getattr(self.limits, name)}.")
        if self.limits.max_texts > self.max_queue:
            raise ArgumentError(f"max_texts ({self.limits.max_texts}) must be at most max_queue ({self.max_queue}): a "
                                "request with more texts than may wait could never be served.")


class BatchedModel:
    """A model whose ``embed`` / ``query_embed`` go through the batcher; everything else is the model's.

    Given to a :class:`~lightcol.DocumentIndex` (its ``model`` attribute) so that its searches and
    additions share the server's batches. Calls with options the batcher does not take (``dtype``,
    pooling, ``parallel``) run on the model directly.
    """

    def __init__(self, model: Any, batcher: Batcher) -> None:
        self._model = model
        self._batcher = batcher

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def _submit(self, kind: str, texts: list[str], admit: bool) -> Future[list[np.ndarray]]:
        return self._batcher.submit(kind, self._model._tokenize(texts, kind == DOCUMENT), admit=admit)

    def query_embed(self, query: str | Iterable[str], batch_size: int = 256, **kwargs: Any) -> Iterator[np.ndarray]:
        if kwargs:
            return self._model.query_embed(query, batch_size, **kwargs)
        texts = [query] if isinstance(query, str) else list(query)
        return iter(self._submit(QUERY, texts, admit=True).result())

    def embed(self, documents: str | Iterable[str], batch_size: int = 256, parallel: int | None = None,
              **kwargs: Any) -> Iterator[np.ndarray]:
        if parallel is not None or kwargs:
            return self._model.embed(documents, batch_size, parallel, **kwargs)
        return self._chunked([documents] if isinstance(documents, str) else documents)

    def _chunked(self, documents: Iterable[str]) -> Iterator[np.ndarray]:
        it = iter(documents)
        chunk = list(itertools.islice(it, ADD_CHUNK))
        future = self._submit(DOCUMENT, chunk, admit=True) if chunk else None
        while future is not None:
            nxt = list(itertools.islice(it, ADD_CHUNK))
            following = self._submit(DOCUMENT, nxt, admit=False) if nxt else None
            yield from future.result()
            future = following


class Service:
    """The model, the batcher, the index and the metrics behind the routes."""

    def __init__(self, model: Any, index: Any = None, config: ServeConfig | None = None) -> None:
        self.config = config or ServeConfig()
        self.config.check()
        self.model = model
        self.metrics = ServiceMetrics()
        self.batcher = Batcher(  # tokens per call: the configured number, else the model's own
            model._encode, query_length=model.spec.rules.query_length,
            max_batch_tokens=self.config.max_batch_tokens or model.batch_tokens,
            max_queue=self.config.max_queue, max_rows=self.config.max_rows, batching=self.config.batching,
            workers=self.config.batch_workers,
            on_batch=self.metrics.on_batch,
        )
        self.metrics.queue_depth.set_function(lambda: self.batcher.queued)
        self.metrics.queue_tokens.set_function(lambda: self.batcher.queued_tokens)
        self.metrics.info.set(1, model.model_name, str(model.dim), str(model.model_variant or "float32"))
        self.index = index
        from lightcol.document_index import DocumentIndex

        self.is_document_index = isinstance(index, DocumentIndex)
        if self.is_document_index:
            index.model = BatchedModel(model, self.batcher)
        self.supports_where = index is not None and "where" in inspect.signature(index.search).parameters

    @property
    def model_name(self) -> str:
        return str(self.model.model_name)

    def tokenize(self, kind: str, texts: list[str]) -> list[list[int]]:
        return self.model._tokenize(texts, kind == DOCUMENT)

    def submit(self, kind: str, ids: list[list[int]], admit: bool = True) -> Future[list[np.ndarray]]:
        return self.batcher.submit(kind, ids, admit=admit)

    def index_info(self) -> dict[str, Any] | None:
        if self.index is None:
            return None
        kind = "DocumentIndex" if self.is_document_index else "Index"
        return {"type": kind, "path": str(Path(self.index.path)), "documents": len(self.index),
                "where": self.supports_where}

    def model_info(self) -> dict[str, Any]:
        from dataclasses import asdict

        rules = self.model.spec.rules
        limits = self.config.limits
        return {
            "model": self.model_name, "dim": int(self.model.dim), "query_length": int(rules.query_length),
            "document_length": int(rules.document_length), "model_variant": self.model.model_variant,
            "rules": asdict(rules), "batching": self.config.batching, "max_batch_tokens": self.batcher.max_batch_tokens,
            "batch_workers": self.batcher.workers,
            "max_queue": self.config.max_queue,
            "limits": {"max_body_bytes": limits.max_body_bytes, "max_texts": limits.max_texts,
                       "max_chars": limits.max_chars},
            "index": self.index_info(),
        }

    # -- index operations (blocking: run them in a worker thread) ---------------------------------
    def require_index(self, where: dict[str, Any] | None = None) -> Any:
        """The index; :class:`Unsupported` if there is none, or ``where`` is given and it cannot filter."""
        index = self.index
        if index is None:
            raise Unsupported("this server has no index: start it with 'lightcol serve --index PATH' (an Index file "
                              "or a DocumentIndex folder) to search.")
        if where is not None and not self.is_document_index:
            raise Unsupported(f"where filters need a DocumentIndex (documents with metadata); {index.path} is an Index "
                              "of vectors and ids: search without 'where'.")
        if where is not None and not self.supports_where:
            raise Unsupported(f"the DocumentIndex at {index.path} does not support where filters in this version "
                              "of lightcol; search without 'where'.")
        return index

    def search_document_index(self, query: str, k: int, where: dict[str, Any] | None,
                              by_document: bool, search_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        index = self.require_index(where)
        options: dict[str, Any] = {**(search_options or {}), "by_document": by_document}
        if where is not None:
            options["where"] = where
        results = index.search(query, k, **options)
        return [{"id": r.get("document_id"), **r} for r in results]

    def search_index(self, q: np.ndarray, k: int, where: dict[str, Any] | None) -> list[dict[str, Any]]:
        index = self.require_index(where)
        return [{"id": _plain(i), "score": float(s)} for i, s in index.search(q, k)]

    def document_index(self) -> Any:
        index = self.require_index()
        if not self.is_document_index:
            raise Unsupported(f"{index.path} is an Index file; adding and deleting documents needs a DocumentIndex "
                              "folder (lightcol index build --documents ...).")
        return index

    def add_documents(self, texts: list[str], ids: list[Any] | None, metadata: list[Any] | None) -> dict[str, Any]:
        index = self.document_index()
        added = index.add(texts, ids, metadata)
        return {"ids": added, "documents": len(index)}

    def delete_documents(self, ids: list[Any]) -> dict[str, Any]:
        index = self.document_index()
        missing = [d for d in ids if d not in index]
        if missing:
            raise DocumentsMissing(f"document id(s) {missing[:5]!r} not in the index; nothing was deleted.")
        index.delete(ids)
        return {"deleted": ids, "documents": len(index)}

    def close(self, timeout: float | None = None) -> None:
        self.batcher.close(timeout)


class DocumentsMissing(ArgumentError):
    """Ids given to delete are not in the DocumentIndex (answered 404)."""


def _plain(x: Any) -> Any:
    """A NumPy scalar as the Python value (JSON)."""
    return x.item() if isinstance(x, np.generic) else x
