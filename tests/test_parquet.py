"""lightcol.parquet: schema v1, streaming writer, readers (exact round trip, slices, empty rows, metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from lightcol import parquet  # noqa: E402
from lightcol.errors import ArgumentError, IndexFormatError  # noqa: E402


def _docs(n: int, dim: int, dtype: str, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(k), dim)).astype(dtype) for k in rng.integers(0, 9, size=n)]


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip_is_exact(dtype: str, tmp_path: Path) -> None:
    docs = _docs(50, 8, dtype)
    assert any(len(d) == 0 for d in docs)  # rows without vectors survive too
    schema = parquet.schema(8, dtype, "string", muvera_dim=4, meta={"model": "m"})
    fde = np.arange(200, dtype=np.float32).reshape(50, 4)
    with parquet.Writer(tmp_path / "a.parquet", schema) as w:
        w.write([f"x{i}" for i in range(20)], docs[:20], fde[:20])
        w.write([f"x{i}" for i in range(20, 50)], docs[20:], fde[20:])
    assert w.rows == 50 and pq.ParquetFile(tmp_path / "a.parquet").num_row_groups == 2
    ids, vectors = parquet.read_embeddings(tmp_path / "a.parquet")
    assert ids == [f"x{i}" for i in range(50)]
    for got, want in zip(vectors, docs, strict=True):
        assert got.dtype == np.dtype(dtype) and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    batches = list(parquet.iter_batches(tmp_path, batch_size=7, columns=("n_tokens", "muvera")))
    assert np.concatenate([b["n_tokens"] for b in batches]).tolist() == [len(d) for d in docs]
    np.testing.assert_array_equal(np.concatenate([b["muvera"] for b in batches]), fde)
    meta = parquet.read_metadata(tmp_path)
    assert meta == {"schema_version": 1, "dim": 8, "dtype": dtype, "model": "m"}


def test_schema_types() -> None:
    s = parquet.schema(128, "float16")
    assert s.field("id").type == pa.int64()
    assert s.field("vectors").type == pa.list_(pa.list_(pa.float16(), 128))
    assert s.field("n_tokens").type == pa.int32()
    assert s.names == ["id", "vectors", "n_tokens"]
    assert json.loads(s.metadata[b"lightcol"])["dim"] == 128
    with pytest.raises(ArgumentError, match="float16"):
        parquet.schema(128, "int8")
    with pytest.raises(ArgumentError, match="id_type"):
        parquet.schema(128, "float32", "uuid")


def test_split_vectors_of_sliced_and_chunked_arrays() -> None:
    docs = _docs(30, 4, "float32", seed=1)
    arr, counts = parquet.vectors_array(docs, 4, "float32")
    assert counts.tolist() == [len(d) for d in docs]
    sliced = arr.slice(5, 11)
    for got, want in zip(parquet.split_vectors(sliced), docs[5:16], strict=True):
        np.testing.assert_array_equal(got, want)
    chunked = pa.chunked_array([arr.slice(0, 10), arr.slice(10)])
    for got, want in zip(parquet.split_vectors(chunked), docs, strict=True):
        np.testing.assert_array_equal(got, want)


def test_errors(tmp_path: Path) -> None:
    schema = parquet.schema(4, "float32")
    with parquet.Writer(tmp_path / "a.parquet", schema) as w, pytest.raises(ArgumentError, match="2 ids for 1"):
        w.write([1, 2], [np.zeros((1, 4), np.float32)])
    with pytest.raises(FileNotFoundError):
        parquet.read_metadata(tmp_path / "nope.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .parquet"):
        parquet.read_embeddings(tmp_path / "empty")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "plain.parquet")
    with pytest.raises(IndexFormatError, match="not written by lightcol"):
        parquet.read_metadata(tmp_path / "plain.parquet")
    newer = parquet.schema(4, "float32", meta={"schema_version": 99})
    pq.write_table(newer.empty_table(), tmp_path / "newer.parquet")
    with pytest.raises(IndexFormatError, match="upgrade"):
        parquet.read_metadata(tmp_path / "newer.parquet")


def test_other_readers_see_a_list_of_vectors(tmp_path: Path) -> None:
    docs = _docs(5, 3, "float32", seed=2)
    with parquet.Writer(tmp_path / "a.parquet", parquet.schema(3, "float32")) as w:
        w.write(list(range(5)), docs)
    rows = pq.read_table(tmp_path / "a.parquet").to_pylist()
    assert [r["id"] for r in rows] == list(range(5))
    for r, d in zip(rows, docs, strict=True):
        assert r["n_tokens"] == len(d)
        np.testing.assert_array_equal(np.array(r["vectors"], dtype=np.float32).reshape(-1, 3), d)
