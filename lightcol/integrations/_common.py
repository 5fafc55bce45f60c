"""Helpers the integrations share: query vectors, streaming documents in batches, id look-ups."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from typing import Any, Protocol

import numpy as np

from lightcol import _validate
from lightcol.errors import ArgumentError, ShapeError

Id = Any
#: One embedded document: ``(id, text, vectors (n, dim) float32, extra such as a payload)``.
Embedded = tuple[Id, str, np.ndarray, Any]


class Searchable(Protocol):
    """What the retrievers need: a :class:`~lightcol.MultiVectorCollection` or a ``lightcol.Index``."""

    def search(self, query_vectors: np.ndarray, k: int = 10) -> list[tuple[Id, float]]: ...


def query_vectors(model: Any, query: str) -> np.ndarray:
    """The ``(query_length, dim)`` float32 vectors of one query text."""
    if not isinstance(query, str):
        raise ArgumentError(f"the query must be a str, got {type(query).__name__}")
    return next(iter(model.query_embed([query])))


def embedded_batches(
    model: Any,
    documents: Iterable[str],
    ids: Iterable[Id] | None = None,
    extras: Iterable[Any] | None = None,
    *,
    batch_size: int = 64,
    show_progress: bool = True,
    extras_name: str = "payloads",
) -> Iterator[list[Embedded]]:
    """Embed ``documents`` lazily (``model.embed``) and yield lists of up to ``batch_size`` :data:`Embedded`.

    ``ids=None`` numbers the documents 0, 1, ...; ``extras`` default to ``None`` each. A tqdm bar
    counts the documents stored (``show_progress=False`` hides it).
    :raises ShapeError: ids or extras run out before the documents, or ids outnumber them.
    """
    _validate.integer("batch_size", batch_size, minimum=1)
    if isinstance(documents, (str, bytes)):
        raise ArgumentError("documents must be an iterable of str, not a single str; wrap it in a list")
    from tqdm.auto import tqdm

    total = len(documents) if isinstance(documents, Sized) else None
    pending: collections.deque[str] = collections.deque()

    def remember(source: Iterable[str]) -> Iterator[str]:
        for text in source:
            pending.append(text)
            yield text

    id_iter = itertools.count() if ids is None else iter(ids)
    extra_iter = itertools.repeat(None) if extras is None else iter(extras)
    missing = object()
    with tqdm(total=total, desc="embedding documents", unit="doc", disable=not show_progress) as bar:
        batch: list[Embedded] = []
        for k, vectors in enumerate(model.embed(remember(documents), batch_size=batch_size)):
            doc_id, extra = next(id_iter, missing), next(extra_iter, missing)
            if doc_id is missing:
                raise ShapeError(f"got more documents than ids ({k} ids).")
            if extra is missing:
                raise ShapeError(f"got more documents than {extras_name} ({k} {extras_name}).")
            batch.append((doc_id, pending.popleft(), vectors, extra))
            if len(batch) == batch_size:
                yield batch
                bar.update(len(batch))
                batch = []
        if batch:
            yield batch
            bar.update(len(batch))
    if ids is not None and next(id_iter, missing) is not missing:
        raise ShapeError("got more ids than documents.")


def store_behind(batches: Iterable[list[Embedded]], store: Callable[[list[Embedded]], int]) -> int:
    """Run ``store`` on each batch in a background thread while the next batch is embedded; the
    total ``store`` returned. ONNX Runtime releases the GIL, so the store's Python work (building
    points, serialising) overlaps the model instead of following it. An error in either side stops
    both and is raised here.
    """
    from concurrent.futures import ThreadPoolExecutor

    total = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lightcol-store") as pool:
        pending = None
        try:
            for batch in batches:
                if pending is not None:
                    total += pending.result()
                pending = pool.submit(store, batch)
            if pending is not None:
                total += pending.result()
                pending = None
        finally:
            if pending is not None:
                pending.cancel()
    return total


def lookup(documents: Mapping[Id, Any] | Sequence[Any] | Callable[[Id], Any], doc_id: Id) -> Any:
    """What ``documents`` holds for ``doc_id``: a mapping's value, a sequence's item, or a function's result."""
    if callable(documents) and not isinstance(documents, (Mapping, Sequence)):
        return documents(doc_id)
    try:
        return documents[doc_id]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        raise ArgumentError(
            f"no document for id {doc_id!r} in the documents given to the retriever; pass a mapping "
            "(or sequence, or function) that covers every id of the collection or index."
        ) from None


def check_top_n(top_n: Any) -> int:
    """``top_n`` as an int >= 1."""
    return _validate.integer("top_n", top_n, minimum=1)  # type: ignore[return-value]
