"""The one-file index format: named arrays, 64-byte aligned, then a JSON footer; written atomically.

Layout::

    b"LCOLIDX\\0" | u32 format version | u32 0 | array bytes (each 64-byte aligned) ...
    | footer JSON (utf-8) | u64 footer length | u32 crc32(footer) | b"LCOLIDX\\0"

The footer names every array (dtype, shape, byte offset, crc32) and holds the metadata. The file is
written to a temporary sibling, fsynced and renamed over ``path``, so a crash never leaves a file
that opens as a whole index. :func:`open_arrays` memory-maps every array (read-only). The same
container holds an updated index's manifest and segments (format version 5, see
:mod:`lightcol.index.segments`); files without them keep version 4.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable
from typing import Any, BinaryIO

import numpy as np

from lightcol import _durable
from lightcol.errors import IndexFormatError, IndexVersionError

__all__ = ["FORMAT_VERSION", "UPDATE_VERSION", "READ_VERSION", "Writer", "open_arrays"]

MAGIC = b"LCOLIDX\0"
FORMAT_VERSION = 4  # 2: product-quantised residuals (``books``), float16 centroids; 3: integer ids as int64;
# 4: a rotation before the product quantiser (``rotation``; read as none when absent): what a build writes
UPDATE_VERSION = 5  # manifests and segments of an updated index (lightcol.index.segments)
READ_VERSION = UPDATE_VERSION  # the newest version this lightcol reads
MIN_VERSION = 2
_HEAD = struct.Struct("<8sII")
_TAIL = struct.Struct("<QI8s")
_ALIGN = 64


class Writer:
    """Write arrays (whole, or streamed in pieces) to a temp file; :meth:`commit` renames it into place."""

    def __init__(self, path: str | os.PathLike[str], *, version: int = FORMAT_VERSION, tmp_prefix: str | None = None) -> None:
        self.path = os.path.abspath(os.fspath(path))
        folder = os.path.dirname(self.path)
        prefix = tmp_prefix or f".{os.path.basename(self.path)}."
        fd, self._tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
        self._f: BinaryIO = os.fdopen(fd, "w+b")
        self._f.write(_HEAD.pack(MAGIC, version, 0))
        self._arrays: dict[str, dict[str, Any]] = {}
        self._open: tuple[str, dict[str, Any]] | None = None

    def _align(self) -> None:
        pad = -self._f.tell() % _ALIGN
        self._f.write(b"\0" * pad)

    def begin(self, name: str, dtype: np.dtype, row_shape: tuple[int, ...] = ()) -> None:
        """Start a streamed array; rows are added with :meth:`extend`, closed by :meth:`end`."""
        self._align()
        self._open = (name, {"dtype": np.dtype(dtype).str, "shape": [0, *row_shape],
                             "offset": self._f.tell(), "crc32": 0})

    def extend(self, rows: np.ndarray) -> None:
        assert self._open is not None
        _, info = self._open
        a = np.ascontiguousarray(rows, dtype=np.dtype(info["dtype"]))
        assert list(a.shape[1:]) == info["shape"][1:]
        b = a.tobytes()
        self._f.write(b)
        info["crc32"] = zlib.crc32(b, info["crc32"])
        info["shape"][0] += a.shape[0]

    def end(self) -> None:
        assert self._open is not None
        name, info = self._open
        self._arrays[name] = info
        self._open = None

    def array(self, name: str, a: np.ndarray) -> None:
        """Write a whole array."""
        a = np.asarray(a)
        self.begin(name, a.dtype, tuple(a.shape[1:]))
        if a.ndim == 0:
            self._open[1]["shape"] = []  # type: ignore[index]
            b = a.tobytes()
            self._f.write(b)
            self._open[1]["crc32"] = zlib.crc32(b)  # type: ignore[index]
        else:
            self.extend(a)
        self.end()

    def read_back(self, name: str) -> np.ndarray:
        """A finished array of this (unfinished) file, read into memory."""
        info = self._arrays[name]
        self._f.flush()
        dt = np.dtype(info["dtype"])
        n = int(np.prod(info["shape"])) if info["shape"] else 1
        return np.fromfile(self._tmp, dtype=dt, count=n, offset=info["offset"]).reshape(info["shape"])

    def commit(self, meta: dict[str, Any]) -> None:
        """Write the footer, fsync and atomically rename over ``path``."""
        try:
            footer = json.dumps({"meta": meta, "arrays": self._arrays}, sort_keys=True).encode("utf-8")
            self._f.write(footer)
            self._f.write(_TAIL.pack(len(footer), zlib.crc32(footer), MAGIC))
            self._f.flush()
            _durable.step("write")
            os.fsync(self._f.fileno())
            _durable.step("fsync")
            self._f.close()
            try:
                mode = os.stat(self.path).st_mode & 0o777
            except FileNotFoundError:
                mode = 0o644
            os.chmod(self._tmp, mode)
            os.replace(self._tmp, self.path)
            _durable.step("rename")
        except BaseException:
            self.abort()
            raise
        _durable.fsync_dir(os.path.dirname(self.path))

    def abort(self) -> None:
        """Drop the temp file (nothing at ``path`` changes)."""
        with contextlib.suppress(OSError):
            self._f.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


def open_arrays(path: str | os.PathLike[str], *, verify: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metadata and memory-mapped arrays of an index file.

    :param verify: also check every array's crc32 (reads the whole file).
    :raises IndexFormatError: not an index file, truncated or corrupted.
    :raises IndexVersionError: written by a newer lightcol (format version too high), or by an older one
        whose format this one no longer reads.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(_HEAD.size)
        if len(head) < _HEAD.size or head[:8] != MAGIC:
            raise IndexFormatError(f"{path} is not a lightcol index file (bad magic); build one with lightcol.Index.build.")
        version = _HEAD.unpack(head)[1]
        if version > READ_VERSION:
            raise IndexVersionError(
                f"{path} has index format version {version}; this lightcol reads up to {READ_VERSION}. "
                "Upgrade lightcol (pip install -U lightcol) to open it."
            )
        if version < MIN_VERSION:
            raise IndexVersionError(
                f"{path} has index format version {version}, from an earlier lightcol whose codec this one no "
                "longer reads; rebuild the index (lightcol.Index.build) from the embeddings."
            )
        if size < _HEAD.size + _TAIL.size:
            raise IndexFormatError(f"{path} is truncated ({size} bytes); rebuild the index.")
        f.seek(size - _TAIL.size)
        n, crc, magic = _TAIL.unpack(f.read(_TAIL.size))
        if magic != MAGIC or n > size - _HEAD.size - _TAIL.size:
            raise IndexFormatError(f"{path} is truncated or corrupted (no footer); rebuild the index.")
        f.seek(size - _TAIL.size - n)
        footer = f.read(n)
    if zlib.crc32(footer) != crc:
        raise IndexFormatError(f"{path} is corrupted (footer checksum mismatch); rebuild the index.")
    doc = json.loads(footer.decode("utf-8"))
    end = size - _TAIL.size - n
    arrays: dict[str, np.ndarray] = {}
    for name, info in doc["arrays"].items():
        dt = np.dtype(info["dtype"])
        shape = tuple(info["shape"])
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize if shape else dt.itemsize
        if info["offset"] + nbytes > end:
            raise IndexFormatError(f"{path} is corrupted (array {name!r} runs past the data); rebuild the index.")
        if nbytes == 0:
            a = np.empty(shape, dtype=dt)
        else:
            # a plain ndarray view of the map: slicing a np.memmap makes a memmap object per slice
            # (~1 us each; a search slices thousands of inverted lists)
            a = np.memmap(path, dtype=dt, mode="r", offset=info["offset"], shape=shape or (1,))
            a = a.reshape(shape).view(np.ndarray)
        if verify and zlib.crc32(np.ascontiguousarray(a).tobytes()) != info["crc32"]:
            raise IndexFormatError(f"{path} is corrupted (array {name!r} checksum mismatch); rebuild the index.")
        arrays[name] = a
    return doc["meta"], arrays


def iter_chunks(a: np.ndarray, rows: int) -> Iterable[np.ndarray]:
    for s in range(0, a.shape[0], rows):
        yield a[s : s + rows]
