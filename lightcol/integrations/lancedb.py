"""LanceDB: a table with a multivector column (a list of fixed-size float32 lists, cosine).

    import lancedb
    from lightcol.integrations import lancedb as lc

    db = lancedb.connect("./lance")
    table = lc.create_table(db, "docs", model, documents=texts, ids=range(len(texts)))
    rows = lc.search(table, "what is late interaction?", model=model, limit=10)  # best first

LanceDB's multivector search supports cosine only and returns ``_distance`` = sum over query
tokens of (1 - best cosine) = ``n_query_tokens - MaxSim``; lightcol's rows are unit-norm, so
:func:`search` adds ``score`` = ``n_query_tokens - _distance``, lightcol's MaxSim, and the order is
lightcol's. Without a vector index LanceDB scans every row (exact).

No LanceDB embedding-registry entry: LanceDB (0.40) replaces every source embedding whose length
is not ``ndims()`` by null, i.e. every multivector, so the table is filled here instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np

from lightcol import _validate
from lightcol._optional import require
from lightcol.integrations._common import Id, embedded_batches, query_vectors, store_behind

__all__ = ["create_table", "search", "schema", "VECTOR_COLUMN"]

_FEATURE = "lightcol.integrations.lancedb"
#: Default name of the multivector column.
VECTOR_COLUMN = "vector"

require("lancedb", "lancedb", _FEATURE)
_pa = require("pyarrow", "lancedb", _FEATURE)


def schema(dim: int, id_type: Any = None, *, vector_column: str = VECTOR_COLUMN, text_column: str = "text") -> Any:
    """Arrow schema ``id, text, vector: list<fixed_size_list<float32, dim>>`` (``id_type`` default int64)."""
    return _pa.schema(
        [
            _pa.field("id", id_type or _pa.int64(), nullable=False),
            _pa.field(text_column, _pa.string()),
            _pa.field(vector_column, _pa.list_(_pa.list_(_pa.float32(), int(dim)))),
        ]
    )


def _record_batch(batch: list[tuple[Id, str, np.ndarray, Any]], sch: Any, dim: int) -> Any:
    """One Arrow record batch from embedded documents, the vectors copied once (no Python lists)."""
    lengths = np.fromiter((v.shape[0] for _, _, v, _ in batch), dtype=np.int32, count=len(batch))
    offsets = np.zeros(len(batch) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate([v for _, _, v, _ in batch], axis=0).astype(np.float32, copy=False).reshape(-1)
    rows = _pa.FixedSizeListArray.from_arrays(_pa.array(flat, _pa.float32()), dim)
    vectors = _pa.ListArray.from_arrays(_pa.array(offsets, _pa.int32()), rows, type=sch.field(2).type)
    columns = [_pa.array([b[0] for b in batch], sch.field(0).type), _pa.array([b[1] for b in batch], _pa.string()), vectors]
    return _pa.RecordBatch.from_arrays(columns, schema=sch)


def create_table(
    db: Any,
    name: str,
    model: Any,
    documents: Iterable[str],
    ids: Iterable[Id] | None = None,
    *,
    batch_size: int = 256,
    mode: str = "create",
    vector_column: str = VECTOR_COLUMN,
    text_column: str = "text",
    show_progress: bool = True,
) -> Any:
    """Create table ``name`` (``id``, text, multivector column) holding ``documents`` embedded by ``model``.

    Documents are embedded and added in batches of ``batch_size`` (each added in a background
    thread while the next is embedded). ``ids`` default to 0, 1, ...
    (int64); string ids make the ``id`` column a string. ``mode="overwrite"`` replaces a table.
    """
    dim = int(model.embedding_size)
    batches = embedded_batches(model, documents, ids, None, batch_size=batch_size, show_progress=show_progress)
    first = next(batches, [])
    id_type = _pa.string() if first and isinstance(first[0][0], str) else _pa.int64()
    sch = schema(dim, id_type, vector_column=vector_column, text_column=text_column)
    table = db.create_table(name, schema=sch, mode=mode)

    def store(batch: list[Any]) -> int:
        table.add(_pa.Table.from_batches([_record_batch(batch, sch, dim)]))
        return len(batch)

    store_behind(itertools.chain([first] if first else [], batches), store)
    return table


def search(
    table: Any,
    query_text: str,
    *,
    model: Any,
    limit: int = 10,
    vector_column: str = VECTOR_COLUMN,
    where: str | None = None,
    with_vectors: bool = False,
) -> list[dict[str, Any]]:
    """The ``limit`` best rows for ``query_text``, best first: dicts with the table's columns (the
    vectors only with ``with_vectors``), ``_distance`` and ``score`` (lightcol's MaxSim)."""
    _validate.integer("limit", limit, minimum=1)
    q = query_vectors(model, query_text)
    builder = table.search(q, vector_column_name=vector_column).distance_type("cosine").limit(limit)
    if where is not None:
        builder = builder.where(where)
    if not with_vectors:
        builder = builder.select([f for f in table.schema.names if f != vector_column] + ["_distance"])
    rows = builder.to_list()
    for row in rows:
        row["score"] = float(q.shape[0] - row["_distance"])
    return rows

