"""Parquet files of multi-vector embeddings (schema v1), as ``lightcol embed`` and ``lightcol.ray`` write them.

Columns: ``id`` (int64 or string), ``vectors`` (``list<fixed_size_list<float16|float32, dim>>``: one
row of token vectors per text: a list of vectors for pyarrow, a multivector column for LanceDB),
``n_tokens`` (int32, the number of vectors) and, optionally, ``muvera`` (``fixed_size_list<float32, D>``).
The schema's metadata key ``lightcol`` holds a JSON object: format version, model name, dim, dtype,
rules and the options fingerprint of the job.

Needs ``pyarrow`` (``pip install 'lightcol[parquet]'``); ``import lightcol`` does not import it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightcol._optional import require
from lightcol.errors import ArgumentError, IndexFormatError

#: Version of the column layout and metadata written here.
SCHEMA_VERSION = 1
#: Key of the schema metadata entry holding lightcol's JSON.
META_KEY = b"lightcol"
_DTYPES = ("float16", "float32")


def pa() -> Any:
    """``pyarrow``, or an ImportError naming the ``parquet`` extra."""
    return require("pyarrow", "parquet", "writing and reading Parquet embeddings")


def _pq() -> Any:
    pa()
    return require("pyarrow.parquet", "parquet", "writing and reading Parquet embeddings")


def vectors_type(dim: int, dtype: str) -> Any:
    """Arrow type of the ``vectors`` column: ``list<fixed_size_list<dtype, dim>>``."""
    if dtype not in _DTYPES:
        raise ArgumentError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    arrow = pa()
    value = arrow.float16() if dtype == "float16" else arrow.float32()
    return arrow.list_(arrow.list_(value, dim))


def schema(dim: int, dtype: str, id_type: str = "int64", muvera_dim: int | None = None,
           meta: dict[str, Any] | None = None) -> Any:
    """The Arrow schema of an embeddings file (``id_type``: ``"int64"`` or ``"string"``)."""
    arrow = pa()
    if id_type not in ("int64", "string"):
        raise ArgumentError(f"id_type must be 'int64' or 'string', got {id_type!r}")
    fields = [
        arrow.field("id", arrow.int64() if id_type == "int64" else arrow.string(), nullable=False),
        arrow.field("vectors", vectors_type(dim, dtype), nullable=False),
        arrow.field("n_tokens", arrow.int32(), nullable=False),
    ]
    if muvera_dim is not None:
        fields.append(arrow.field("muvera", arrow.list_(arrow.float32(), muvera_dim), nullable=False))
    full = {"schema_version": SCHEMA_VERSION, "dim": dim, "dtype": dtype, **(meta or {})}
    return arrow.schema(fields, metadata={META_KEY: json.dumps(full, sort_keys=True).encode()})


def vectors_array(vectors: Sequence[np.ndarray], dim: int, dtype: str) -> tuple[Any, np.ndarray]:
    """``(Arrow list array, n_tokens)`` of per-text ``(n_i, dim)`` arrays, cast to ``dtype``."""
    arrow = pa()
    np_dtype = np.dtype(dtype)
    counts = np.fromiter((len(v) for v in vectors), dtype=np.int32, count=len(vectors))
    offsets = np.zeros(len(vectors) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    if len(vectors) and offsets[-1]:
        flat = np.concatenate([np.asarray(v, dtype=np_dtype).reshape(-1, dim) for v in vectors]).reshape(-1)
    else:
        flat = np.zeros(0, dtype=np_dtype)
    inner = arrow.FixedSizeListArray.from_arrays(arrow.array(flat), dim)
    return arrow.ListArray.from_arrays(arrow.array(offsets), inner), counts


def fixed_array(rows: np.ndarray) -> Any:
    """Arrow ``fixed_size_list<float32, D>`` of a ``(n, D)`` array (the ``muvera`` column)."""
    arrow = pa()
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    return arrow.FixedSizeListArray.from_arrays(arrow.array(rows.reshape(-1)), rows.shape[1])


def record_batch(ids: Sequence[Any], vectors: Sequence[np.ndarray], file_schema: Any,
                 muvera: np.ndarray | None = None) -> Any:
    """A record batch of ``file_schema`` from ids and per-text vector arrays."""
    arrow = pa()
    meta = json.loads(file_schema.metadata[META_KEY])
    vec, counts = vectors_array(vectors, meta["dim"], meta["dtype"])
    columns = [arrow.array(ids, type=file_schema.field("id").type), vec, arrow.array(counts)]
    if "muvera" in file_schema.names:
        if muvera is None:
            raise ArgumentError("this schema has a 'muvera' column: pass muvera=")
        columns.append(fixed_array(muvera))
    return arrow.RecordBatch.from_arrays(columns, schema=file_schema)


class Writer:
    """Streams record batches into one Parquet file (each :meth:`write` is a row group)."""

    def __init__(self, path: str | os.PathLike[str], file_schema: Any) -> None:
        self.schema = file_schema
        self.rows = 0
        self._writer = _pq().ParquetWriter(os.fspath(path), file_schema, use_dictionary=["id"],
                                           compression="snappy", write_statistics=["id", "n_tokens"])

    def write(self, ids: Sequence[Any], vectors: Sequence[np.ndarray], muvera: np.ndarray | None = None) -> None:
        if len(ids) != len(vectors):
            raise ArgumentError(f"{len(ids)} ids for {len(vectors)} vector arrays")
        self._writer.write_batch(record_batch(ids, vectors, self.schema, muvera))
        self.rows += len(ids)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- reading -----------------------------------------------------------------------------------------
def files(path: str | os.PathLike[str]) -> list[Path]:
    """The Parquet files at ``path``: the file itself, or a folder's ``*.parquet`` in name order."""
    p = Path(path)
    if p.is_dir():
        found = sorted(f for f in p.glob("*.parquet") if not f.name.startswith((".", "_")))
        if not found:
            raise FileNotFoundError(f"no .parquet files in {p}")
        return found
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    return [p]


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """lightcol's metadata of an embeddings file (or of the first file of a folder)."""
    first = files(path)[0]
    meta = (_pq().read_schema(first).metadata or {}).get(META_KEY)
    if meta is None:
        raise IndexFormatError(f"{first} has no lightcol metadata: it was not written by lightcol")
    out = json.loads(meta)
    if out.get("schema_version", 0) > SCHEMA_VERSION:
        raise IndexFormatError(f"{first} uses embeddings schema v{out['schema_version']}; upgrade lightcol to read it")
    return out


def split_vectors(column: Any) -> list[np.ndarray]:
    """Per-row ``(n_i, dim)`` numpy views of a ``list<fixed_size_list<...>>`` Arrow array or chunked array."""
    arrow = pa()
    chunks = column.chunks if isinstance(column, arrow.ChunkedArray) else [column]
    out: list[np.ndarray] = []
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        dim = chunk.type.value_type.list_size
        offsets = chunk.offsets.to_numpy()
        inner = chunk.values  # already sliced by offsets' base below
        values = inner.values.to_numpy(zero_copy_only=False)
        base = inner.offset * dim
        flat = values[base : base + len(inner) * dim].reshape(-1, dim)
        out.extend(flat[offsets[i] : offsets[i + 1]] for i in range(len(chunk)))
    return out


def iter_batches(path: str | os.PathLike[str], batch_size: int = 1024,
                 columns: Sequence[str] = ("id", "vectors")) -> Iterator[dict[str, Any]]:
    """Batches of an embeddings file or folder: dicts ``{"id": list, "vectors": list of (n_i, dim) arrays, ...}``
    (``muvera``: a ``(rows, D)`` array; ``n_tokens``: an int array)."""
    for f in files(path):
        pf = _pq().ParquetFile(f)
        for batch in pf.iter_batches(batch_size=batch_size, columns=list(columns)):
            out: dict[str, Any] = {}
            for name in columns:
                col = batch.column(name)
                if name == "vectors":
                    out[name] = split_vectors(col)
                elif name == "muvera":
                    out[name] = col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1) if len(col) else \
                        np.zeros((0, col.type.list_size), np.float32)
                elif name == "n_tokens":
                    out[name] = col.to_numpy()
                else:
                    out[name] = col.to_pylist()
            yield out


def iter_documents(path: str | os.PathLike[str], batch_size: int = 1024) -> Iterator[tuple[Any, np.ndarray]]:
    """``(id, (n_i, dim) vectors)`` of an embeddings file or folder, in file then row order, one batch of
    ``batch_size`` rows in memory at a time (for streaming into :meth:`lightcol.Index.build`)."""
    for batch in iter_batches(path, batch_size):
        yield from zip(batch["id"], batch["vectors"], strict=True)


def build_index(path: str | os.PathLike[str], source: str | os.PathLike[str], **options: Any) -> Any:
    """Build a :class:`lightcol.Index` at ``path`` from the embeddings at ``source`` (a file or a folder of
    shards, as ``lightcol embed`` writes them), streamed: one pass over the shards, a batch of rows at a
    time, so memory is set by ``sample_tokens`` (see :meth:`lightcol.Index.build`), not by the corpus.
    The model name and encoding rules recorded in the files go into the index; ``options`` are
    :meth:`~lightcol.Index.build`'s (``nbits``, ``sample_tokens``...)."""
    from collections import deque

    from lightcol.index import Index

    meta = read_metadata(source)
    if meta.get("queries"):
        raise ArgumentError(f"{source} holds query vectors (lightcol embed --queries); index document vectors")
    ids: deque[Any] = deque()

    def vectors() -> Iterator[np.ndarray]:  # each id is queued as its vectors are handed over
        for doc_id, v in iter_documents(source):
            ids.append(doc_id)
            yield v

    def id_stream() -> Iterator[Any]:
        while ids:
            yield ids.popleft()

    options.setdefault("model", meta.get("model"))
    if isinstance(meta.get("rules"), dict):
        options["extra_meta"] = {"rules": meta["rules"], **(options.get("extra_meta") or {})}
    return Index.build(path, id_stream(), vectors(), **options)


def read_embeddings(path: str | os.PathLike[str]) -> tuple[list[Any], list[np.ndarray]]:
    """``(ids, vectors)`` of an embeddings file or folder, in file then row order."""
    ids: list[Any] = []
    vectors: list[np.ndarray] = []
    for batch in iter_batches(path, 8192):
        ids.extend(batch["id"])
        vectors.extend(batch["vectors"])
    return ids, vectors
