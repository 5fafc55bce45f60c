"""Qdrant: a multivector field compared with MaxSim, filled and queried with lightcol vectors.

    from qdrant_client import QdrantClient
    from lightcol.integrations import qdrant

    client = QdrantClient(":memory:")          # or QdrantClient(url="http://localhost:6333")
    qdrant.create_collection(client, "docs", model)
    qdrant.upsert(client, "docs", documents=texts, ids=range(len(texts)), model=model)
    points = qdrant.query(client, "docs", "what is late interaction?", model=model, limit=10)

The multivector field uses cosine distance with ``MultiVectorComparator.MAX_SIM``: lightcol's rows
are unit-norm, so each token cosine is the dot product and a point's score is lightcol's MaxSim.
HNSW is off for it (``m=0``): MaxSim over every point, exact. With ``muvera=`` (a
``lightcol.Muvera``, FastEmbed-compatible) a second dense field holds each document's MUVERA
encoding, indexed with HNSW; :func:`query` then prefetches candidates from it and reranks them by
MaxSim.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lightcol import _validate
from lightcol._optional import require
from lightcol.integrations._common import Id, embedded_batches, query_vectors, store_behind

__all__ = ["create_collection", "upsert", "query", "point_id", "VECTOR_NAME", "MUVERA_NAME"]

#: Default name of the multivector (MaxSim) field.
VECTOR_NAME = "colbert"
#: Default name of the MUVERA (dense, HNSW) field.
MUVERA_NAME = "muvera"
#: Namespace of the UUIDs that stand for string ids Qdrant does not accept (see :func:`point_id`).
ID_NAMESPACE = uuid.UUID("6c1f0b7e-3a52-4c1e-9d55-6c6967687463")


def _models() -> Any:
    return require("qdrant_client.models", "qdrant", "lightcol.integrations.qdrant")


def point_id(doc_id: Id) -> int | str:
    """The Qdrant point id for a document id: ints (>= 0) and UUID strings as they are, any other
    string as a UUID derived from it (``uuid5``), the original then kept in the payload as ``"id"``."""
    if isinstance(doc_id, bool):
        raise TypeError(f"document ids are ints >= 0 or strings, got {doc_id!r}")
    if isinstance(doc_id, int) or hasattr(doc_id, "__index__"):
        i = int(doc_id)
        if i < 0:
            raise ValueError(f"Qdrant point ids are unsigned; got {i}. Use ints >= 0 or strings.")
        return i
    if not isinstance(doc_id, str):
        raise TypeError(f"document ids are ints >= 0 or strings, got {type(doc_id).__name__}")
    try:
        return str(uuid.UUID(doc_id))
    except ValueError:
        return str(uuid.uuid5(ID_NAMESPACE, doc_id))


def create_collection(
    client: Any,
    name: str,
    model: Any,
    muvera: Any | None = None,
    *,
    vector_name: str = VECTOR_NAME,
    muvera_name: str = MUVERA_NAME,
    on_disk: bool | None = None,
    **kwargs: Any,
) -> bool:
    """Create collection ``name`` for ``model``'s vectors: a ``MAX_SIM`` multivector field (HNSW off)
    and, with ``muvera``, a dot-product dense field of ``muvera.embedding_size`` (HNSW on).

    ``kwargs`` go to ``client.create_collection`` (e.g. ``optimizers_config``, ``shard_number``).
    """
    m = _models()
    vectors = {
        vector_name: m.VectorParams(
            size=model.embedding_size,
            distance=m.Distance.COSINE,
            multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
            hnsw_config=m.HnswConfigDiff(m=0),
            on_disk=on_disk,
        )
    }
    if muvera is not None:
        vectors[muvera_name] = m.VectorParams(size=int(muvera.embedding_size), distance=m.Distance.DOT, on_disk=on_disk)
    return client.create_collection(name, vectors_config=vectors, **kwargs)


def upsert(
    client: Any,
    name: str,
    documents: Iterable[str],
    ids: Iterable[Id] | None = None,
    payloads: Iterable[Mapping[str, Any] | None] | None = None,
    *,
    model: Any,
    muvera: Any | None = None,
    batch_size: int = 64,
    text_key: str | None = "text",
    vector_name: str = VECTOR_NAME,
    muvera_name: str = MUVERA_NAME,
    show_progress: bool = True,
    wait: bool = True,
) -> int:
    """Embed ``documents`` in batches (streamed from ``model.embed``) and upsert them; returns the count.

    Each batch is upserted in a background thread while the next one is embedded.

    :param ids: one id per document (ints >= 0 or strings, see :func:`point_id`); default 0, 1, ...
    :param payloads: one mapping (or ``None``) per document; the text goes in under ``text_key``
        unless that is ``None``.
    :param muvera: the ``Muvera`` given to :func:`create_collection`, to fill the MUVERA field.
    """
    m = _models()

    def store(batch: list[Any]) -> int:
        points = []
        for doc_id, text, vectors, payload in batch:
            pid = point_id(doc_id)
            body = dict(payload or {})
            if text_key is not None:
                body.setdefault(text_key, text)
            if isinstance(pid, str) and pid != doc_id:
                body.setdefault("id", doc_id)
            vector: dict[str, Any] = {vector_name: vectors.tolist()}
            if muvera is not None:
                vector[muvera_name] = np.asarray(muvera.process_document(vectors), dtype=np.float32).tolist()
            # well-formed by construction: skip pydantic's validation (a quarter of the store's time)
            points.append(m.PointStruct.model_construct(id=pid, vector=vector, payload=body))
        client.upsert(name, points=points, wait=wait)
        return len(points)

    batches = embedded_batches(model, documents, ids, payloads, batch_size=batch_size, show_progress=show_progress)
    return store_behind(batches, store)


def query(
    client: Any,
    name: str,
    query_text: str,
    *,
    model: Any,
    limit: int = 10,
    muvera: Any | None = None,
    prefetch_limit: int = 100,
    vector_name: str = VECTOR_NAME,
    muvera_name: str = MUVERA_NAME,
    with_payload: bool | list[str] = True,
    query_filter: Any | None = None,
    **kwargs: Any,
) -> list[Any]:
    """The ``limit`` best points for ``query_text`` (qdrant-client ``ScoredPoint``s, best first).

    Plain: MaxSim over every point (``score`` equals lightcol's MaxSim). With ``muvera``: the
    ``prefetch_limit`` nearest points by MUVERA encoding (HNSW), reranked by MaxSim.
    ``kwargs`` go to ``client.query_points``.
    """
    _validate.integer("limit", limit, minimum=1)
    m = _models()
    q = query_vectors(model, query_text)
    prefetch = None
    if muvera is not None:
        _validate.integer("prefetch_limit", prefetch_limit, minimum=1)
        prefetch = m.Prefetch(
            query=muvera.process_query(q).tolist(), using=muvera_name, limit=max(prefetch_limit, limit), filter=query_filter
        )
    result = client.query_points(
        name,
        query=q.tolist(),
        using=vector_name,
        prefetch=prefetch,
        limit=limit,
        with_payload=with_payload,
        query_filter=query_filter,
        **kwargs,
    )
    return result.points
