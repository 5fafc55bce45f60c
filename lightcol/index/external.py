"""Bounded-memory building blocks of :meth:`lightcol.Index.build`: per-vector and per-document state goes
to temporary files beside the index, not to memory, so a build's peak memory is set by its settings
(the codec's training sample, ``sample_tokens``), not by the corpus.

* :class:`Column`: an append-only temporary file of one dtype, read back in pieces (``pread``, not a
  memory map: pages read through a map would count in the process's resident memory);
* :class:`IdSpill`: document ids, as int64 while every id is an int, else as JSON pieces plus a 64-bit
  hash per id; :meth:`IdSpill.duplicate` finds a repeated id in passes of bounded size;
* :class:`IvfSpill`: the distinct (centroid, document) pairs of each encoded chunk, sorted by centroid
  within the chunk; :meth:`IvfSpill.write` places them into the inverted lists a range of centroids at a
  time (each range's pairs fit the budget), reading every pair once. Same arrays as
  :func:`lightcol.index.candidates.build_ivf`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["Column", "IdSpill", "IvfSpill", "copy_column"]

_READ_ROWS = 1 << 20  # rows per read-back step of a column (copying into the index file)


class Column:
    """An append-only temporary file of ``dtype`` rows (1-D), deleted by :meth:`close`; named
    ``<prefix><name>.<random>.tmp`` (a prefix of the index's own lets its next writer delete what a
    killed one left)."""

    def __init__(self, folder: str, dtype: Any, name: str, prefix: str = ".lightcol-") -> None:
        fd, self.path = tempfile.mkstemp(prefix=f"{prefix}{name}.", suffix=".tmp", dir=folder)
        self._f = os.fdopen(fd, "w+b")
        self.dtype = np.dtype(dtype)
        self.n = 0

    def append(self, a: np.ndarray) -> None:
        a = np.ascontiguousarray(a, dtype=self.dtype).reshape(-1)
        self._f.write(a.tobytes())
        self.n += a.shape[0]

    def read(self, a: int, b: int) -> np.ndarray:
        """Rows ``[a, b)`` (a fresh array)."""
        b = min(b, self.n)
        if b <= a:
            return np.empty(0, dtype=self.dtype)
        self._f.flush()
        buf = os.pread(self._f.fileno(), (b - a) * self.dtype.itemsize, a * self.dtype.itemsize)
        return np.frombuffer(buf, dtype=self.dtype).copy()

    def chunks(self, rows: int | None = None) -> Iterator[np.ndarray]:
        """The rows in pieces of ``rows`` (default ``_READ_ROWS``)."""
        rows = _READ_ROWS if rows is None else rows
        for a in range(0, self.n, rows):
            yield self.read(a, a + rows)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._f.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def copy_column(writer: Any, name: str, col: Column, dtype: Any | None = None) -> None:
    """Stream a column into an index :class:`~lightcol.index.storage.Writer` as the array ``name``."""
    writer.begin(name, np.dtype(dtype or col.dtype))
    for part in col.chunks():
        writer.extend(part)
    writer.end()


def _hash64(doc_id: Any) -> int:
    return int.from_bytes(hashlib.blake2b(json.dumps(doc_id).encode("utf-8"), digest_size=8).digest(), "little", signed=True)


class IdSpill:
    """Document ids in order: int64 while all are ints that fit, else JSON (with a 64-bit hash each)."""

    def __init__(self, folder: str, prefix: str = ".lightcol-") -> None:
        self._folder = folder
        self._prefix = prefix
        self.ints: Column | None = Column(folder, np.int64, "ids", prefix)
        self._json: Column | None = None  # uint8 bytes: ", ".join(json.dumps(id)) pieces
        self._hashes: Column | None = None
        self._pending: list[Any] = []
        self.n = 0

    def add(self, doc_id: Any) -> None:
        self._pending.append(doc_id)
        self.n += 1
        if len(self._pending) >= 1 << 14:
            self._flush()

    def extend(self, ids: np.ndarray | Sequence[Any]) -> None:
        """Many ids at once: an int64 array is appended as it is while every id so far is an int."""
        if isinstance(ids, np.ndarray) and ids.dtype == np.int64 and self.ints is not None:
            self._flush()
            self.ints.append(ids)
            self.n += int(ids.shape[0])
            return
        for d in ids.tolist() if isinstance(ids, np.ndarray) else ids:
            self.add(d)

    def _flush(self) -> None:
        ids, self._pending = self._pending, []
        if not ids:
            return
        if self.ints is not None:
            if all(type(d) is int and -(1 << 63) <= d < 1 << 63 for d in ids):
                self.ints.append(np.asarray(ids, dtype=np.int64))
                return
            self._to_json()
        assert self._json is not None and self._hashes is not None
        head = b"" if self._json.n == 0 else b", "  # json.dumps's separator: the bytes _ids_array writes
        self._json.append(np.frombuffer(head + ", ".join(json.dumps(d) for d in ids).encode("utf-8"), dtype=np.uint8))
        self._hashes.append(np.fromiter((_hash64(d) for d in ids), dtype=np.int64, count=len(ids)))

    def _to_json(self) -> None:
        """The first id that is not an int64: the ints so far move to the JSON form."""
        ints, self.ints = self.ints, None
        self._json = Column(self._folder, np.uint8, "ids-json", self._prefix)
        self._hashes = Column(self._folder, np.int64, "ids-hash", self._prefix)
        assert ints is not None
        try:
            for part in ints.chunks():
                vals = part.tolist()
                head = b"" if self._json.n == 0 else b", "
                self._json.append(np.frombuffer(head + ", ".join(map(str, vals)).encode("utf-8"), dtype=np.uint8))
                self._hashes.append(np.fromiter((_hash64(d) for d in vals), dtype=np.int64, count=len(vals)))
        finally:
            ints.close()

    def duplicate(self, budget_bytes: int) -> int | None:
        """Position of the second occurrence of some repeated id (the earliest such position found), or None.

        Keys (the int64 ids, or the ids' hashes) are checked in passes over the key values' residues
        modulo ``p``, each pass holding at most ~``budget_bytes`` of keys. A hash match is confirmed on
        the ids themselves."""
        self._flush()
        keys = self.ints if self.ints is not None else self._hashes
        assert keys is not None
        if keys.n < 2:
            return None
        p = max(1, -(-keys.n * 24 // max(1, budget_bytes)))
        for r in range(p):
            sel_k, sel_i = [], []
            for a in range(0, keys.n, _READ_ROWS):
                part = keys.read(a, a + _READ_ROWS)
                m = (part % p) == r if p > 1 else np.ones(part.shape[0], dtype=bool)
                sel_k.append(part[m])
                sel_i.append(np.flatnonzero(m) + a)
            k, i = np.concatenate(sel_k), np.concatenate(sel_i)
            order = np.argsort(k, kind="stable")
            k, i = k[order], i[order]
            same = np.flatnonzero(k[1:] == k[:-1])
            for j in same.tolist():  # positions in order within each key: i[j] < i[j + 1]
                if self.ints is not None:
                    return int(i[j + 1])
                first, second = self.get(int(i[j])), self.get(int(i[j + 1]))
                if first == second:
                    return int(i[j + 1])
        return None

    def get(self, pos: int) -> Any:
        """The id at ``pos`` (reads the spill; for error messages)."""
        self._flush()
        if self.ints is not None:
            return int(self.ints.read(pos, pos + 1)[0])
        assert self._json is not None
        found = None
        for k, d in enumerate(self._iter_json()):
            if k == pos:
                found = d
                break
        return found

    def _iter_json(self) -> Iterator[Any]:
        assert self._json is not None
        text = b"[" + b"".join(p.tobytes() for p in self._json.chunks()) + b"]"
        yield from json.loads(text.decode("utf-8"))

    def write(self, writer: Any, name: str) -> None:
        """The ids array as :func:`lightcol.index.index._ids_array` stores it: int64, or UTF-8 JSON bytes."""
        self._flush()
        if self.ints is not None:
            copy_column(writer, name, self.ints)
            return
        assert self._json is not None
        writer.begin(name, np.uint8)
        writer.extend(np.frombuffer(b"[", dtype=np.uint8))
        for part in self._json.chunks():
            writer.extend(part)
        writer.extend(np.frombuffer(b"]", dtype=np.uint8))
        writer.end()

    def close(self) -> None:
        for c in (self.ints, self._json, self._hashes):
            if c is not None:
                c.close()


class IvfSpill:
    """The inverted file, gathered chunk by chunk of whole documents and placed in bounded ranges."""

    def __init__(self, folder: str, n_centroids: int, prefix: str = ".lightcol-") -> None:
        self.k = n_centroids
        self.cent = Column(folder, np.uint32, "ivf-cent", prefix)
        self.doc = Column(folder, np.int32, "ivf-doc", prefix)
        self.counts = np.zeros(n_centroids, dtype=np.int64)
        self.bounds = [0]  # pair index where each chunk starts

    def add(self, codes: np.ndarray, lengths: np.ndarray, first_doc: int) -> None:
        """A chunk of whole documents: their codes (concatenated), lengths, and the first one's position."""
        n = lengths.shape[0]
        if n == 0:
            return
        local = np.repeat(np.arange(n, dtype=np.int64), lengths)
        key = np.unique(np.asarray(codes, dtype=np.int64) * n + local)
        cent = key // n
        self.cent.append(cent)
        self.doc.append(key - cent * n + first_doc)
        self.counts += np.bincount(cent, minlength=self.k)
        self.bounds.append(self.cent.n)

    def write(self, writer: Any, budget_bytes: int) -> None:
        """Write ``ivf_docs`` and ``ivf_offsets`` (as :func:`~lightcol.index.candidates.build_ivf` makes them)."""
        offsets = np.zeros(self.k + 1, dtype=np.int64)
        np.cumsum(self.counts, out=offsets[1:])
        per_range = max(1, budget_bytes // 24)  # cent + doc read (8 B), int64 sort keys and placement (16 B)
        cuts = [0]  # centroid ranges [cuts[r], cuts[r + 1]) of at most per_range pairs (or one centroid)
        while cuts[-1] < self.k:
            c0 = cuts[-1]
            c1 = int(np.searchsorted(offsets, offsets[c0] + per_range, side="right")) - 1
            cuts.append(min(self.k, max(c0 + 1, c1)))
        # where each range starts within each chunk (chunks are sorted by centroid): one read of the centroids
        starts = np.empty((len(self.bounds) - 1, len(cuts)), dtype=np.int64)
        for j in range(len(self.bounds) - 1):
            a, b = self.bounds[j], self.bounds[j + 1]
            starts[j] = a + np.searchsorted(self.cent.read(a, b), np.asarray(cuts, dtype=np.uint32), side="left")
        writer.begin("ivf_docs", np.int32)
        for r in range(len(cuts) - 1):
            c0, c1 = cuts[r], cuts[r + 1]
            cs, ds = [], []
            for j in range(starts.shape[0]):
                a, b = int(starts[j, r]), int(starts[j, r + 1])
                if b > a:
                    cs.append(self.cent.read(a, b))
                    ds.append(self.doc.read(a, b))
            if not cs:
                continue
            cent = np.concatenate(cs).astype(np.int64) - c0
            doc = np.concatenate(ds)
            del cs, ds
            order = np.argsort(cent, kind="stable")  # chunks are in document order: each list stays sorted
            writer.extend(doc[order])
            assert doc.shape[0] == offsets[c1] - offsets[c0]
        writer.end()
        writer.array("ivf_offsets", offsets)

    def close(self) -> None:
        self.cent.close()
        self.doc.close()
