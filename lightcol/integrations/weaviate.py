"""Weaviate: a collection with self-provided multi-vectors (named vector), filled with lightcol vectors.

    import weaviate
    from lightcol.integrations import weaviate as lw

    client = weaviate.connect_to_local()               # Weaviate >= 1.29 (multi-vectors)
    docs = lw.create_collection(client, "Docs")        # muvera=True: MUVERA-encoded HNSW
    lw.insert(docs, documents=texts, ids=range(len(texts)), model=model)
    result = lw.query(docs, "what is late interaction?", model=model, limit=10)

Weaviate scores a multi-vector named vector by MaxSim (late interaction) over the token vectors;
lightcol's rows are unit-norm, so the default cosine equals the dot product. Objects get a UUID
derived from the id (:func:`object_uuid`), and the id itself in the ``doc_id`` property.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from lightcol import _validate
from lightcol._optional import require
from lightcol.integrations._common import Id, embedded_batches, query_vectors, store_behind

__all__ = ["vector_config", "create_collection", "data_objects", "insert", "query", "object_uuid", "VECTOR_NAME"]

_FEATURE = "lightcol.integrations.weaviate"
#: Default name of the multi-vector named vector.
VECTOR_NAME = "colbert"

_config = require("weaviate.classes.config", "weaviate", _FEATURE)
_data = require("weaviate.classes.data", "weaviate", _FEATURE)
_util = require("weaviate.util", "weaviate", _FEATURE)


def object_uuid(doc_id: Id) -> str:
    """The object UUID that stands for a document id (``weaviate.util.generate_uuid5``)."""
    return str(_util.generate_uuid5(doc_id))


def vector_config(name: str = VECTOR_NAME, muvera: bool | Mapping[str, int] = False) -> Any:
    """``Configure.MultiVectors.self_provided`` for lightcol vectors; ``muvera=True`` (or a mapping of
    ``ksim``, ``dprojections``, ``repetitions``) turns on Weaviate's MUVERA encoding for the HNSW index."""
    encoding = None
    if muvera:
        params = dict(muvera) if isinstance(muvera, Mapping) else {}
        encoding = _config.Configure.VectorIndex.MultiVector.Encoding.muvera(**params)
    return _config.Configure.MultiVectors.self_provided(name=name, encoding=encoding)


def collection_config(
    name: str, *, vector_name: str = VECTOR_NAME, muvera: bool | Mapping[str, int] = False, text_property: str = "text"
) -> dict[str, Any]:
    """Keyword arguments of ``client.collections.create``: the named multi-vector and ``text`` /
    ``doc_id`` properties."""
    return {
        "name": name,
        "vector_config": [vector_config(vector_name, muvera)],
        "properties": [
            _config.Property(name=text_property, data_type=_config.DataType.TEXT),
            _config.Property(name="doc_id", data_type=_config.DataType.TEXT, skip_vectorization=True),
        ],
    }


def create_collection(client: Any, name: str, **kwargs: Any) -> Any:
    """Create the collection :func:`collection_config` describes (``kwargs`` go to it); returns it."""
    return client.collections.create(**collection_config(name, **kwargs))


def data_objects(
    documents: Iterable[str],
    ids: Iterable[Id] | None = None,
    properties: Iterable[Mapping[str, Any] | None] | None = None,
    *,
    model: Any,
    vector_name: str = VECTOR_NAME,
    text_property: str = "text",
    batch_size: int = 64,
    show_progress: bool = True,
) -> Iterator[list[Any]]:
    """Batches of ``weaviate.classes.data.DataObject``: the text and id as properties, the token
    vectors as the named multi-vector, the UUID from :func:`object_uuid`."""
    for batch in embedded_batches(model, documents, ids, properties, batch_size=batch_size,
                                  show_progress=show_progress, extras_name="properties"):
        out = []
        for doc_id, text, vectors, props in batch:
            body = {text_property: text, "doc_id": str(doc_id), **(props or {})}
            out.append(_data.DataObject(properties=body, uuid=object_uuid(doc_id), vector={vector_name: vectors.tolist()}))
        yield out


def insert(collection: Any, documents: Iterable[str], ids: Iterable[Id] | None = None,
           properties: Iterable[Mapping[str, Any] | None] | None = None, *, model: Any, **kwargs: Any) -> int:
    """Embed and insert ``documents`` in batches (``collection.data.insert_many``); returns the count.

    Each batch is sent in a background thread while the next is embedded. ``kwargs`` go to
    :func:`data_objects`. Raises ``RuntimeError`` naming the first failed object.
    """
    done = 0

    def store(objects: list[Any]) -> int:
        nonlocal done
        result = collection.data.insert_many(objects)
        errors = getattr(result, "errors", None)
        if errors:
            index, error = next(iter(errors.items()))
            raise RuntimeError(f"Weaviate rejected {len(errors)} object(s); object {done + index}: {error}")
        done += len(objects)
        return len(objects)

    return store_behind(data_objects(documents, ids, properties, model=model, **kwargs), store)


def query(collection: Any, query_text: str, *, model: Any, limit: int = 10, vector_name: str = VECTOR_NAME,
          **kwargs: Any) -> Any:
    """``collection.query.near_vector`` with the query's token vectors on the named multi-vector
    (``kwargs`` go to it, e.g. ``filters``); the result's objects come best first."""
    _validate.integer("limit", limit, minimum=1)
    q = query_vectors(model, query_text)
    metadata = require("weaviate.classes.query", "weaviate", _FEATURE).MetadataQuery(distance=True)
    kwargs.setdefault("return_metadata", metadata)
    return collection.query.near_vector(near_vector=q.tolist(), target_vector=vector_name, limit=limit, **kwargs)
