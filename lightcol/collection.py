"""An in-memory, growable collection of multi-vector documents searched exhaustively with MaxSim.

Vectors live in one packed ``(total_tokens, dim)`` buffer (float32 or float16) that doubles its
capacity when full, plus int64 offsets and a Python list of ids (``str`` or ``int``). A collection
saves atomically to one ``.npz`` file that :meth:`MultiVectorCollection.load` can memory-map.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from lightcol import _durable, _validate, maxsim
from lightcol.errors import ArgumentError, DuplicateIdError, ShapeError
from lightcol.maxsim import PackedDocuments

__all__ = ["MultiVectorCollection", "Id"]

Id = Union[str, int]

_FORMAT = "lightcol-collection"
_FORMAT_VERSION = 1
_MISSING = object()


class MultiVectorCollection:
    """Packed multi-vector documents with ids, searchable with MaxSim.

    :param dim: vector dimension; fixed by the first :meth:`add` when ``None``.
    :param dtype: storage dtype, ``"float32"`` (default) or ``"float16"`` (half the memory;
        scores within float16 rounding of float32).
    """

    def __init__(self, dim: int | None = None, dtype: npt.DTypeLike = "float32") -> None:
        dt = np.dtype(dtype)
        if dt != np.float32 and dt != np.float16:
            raise ShapeError(f"dtype must be 'float32' or 'float16'; got {dt}.")
        if dim is not None:
            try:
                dim = _validate.integer("dim", dim, minimum=1)
            except ArgumentError as e:
                raise ShapeError(str(e)) from None
        self._dtype = dt
        self._dim = None if dim is None else int(dim)
        self._vectors = np.empty((0, self._dim or 0), dtype=dt)
        self._offsets = np.zeros(1, dtype=np.int64)
        self._n_docs = 0
        self._n_tokens = 0
        self._ids: list[Id] = []
        self._id_set: set[Id] | None = set()
        self._packed: PackedDocuments | None = None
        #: positions of the documents with non-finite stored values (None: not checked yet, after load)
        self._nonfinite: np.ndarray | None = np.empty(0, dtype=np.int64)

    # ------------------------------------------------------------------------------------------
    # properties

    @property
    def dim(self) -> int | None:
        """Vector dimension (``None`` until the first document is added)."""
        return self._dim

    @property
    def dtype(self) -> np.dtype:
        """Storage dtype (float32 or float16)."""
        return self._dtype

    @property
    def ids(self) -> list[Id]:
        """Document ids in insertion order (a copy)."""
        return list(self._ids)

    @property
    def n_tokens(self) -> int:
        """Total number of stored vectors."""
        return self._n_tokens

    @property
    def nbytes(self) -> int:
        """Bytes used by the stored vectors (excluding spare capacity)."""
        return self._n_tokens * (self._dim or 0) * self._dtype.itemsize

    @property
    def packed(self) -> PackedDocuments:
        """Read-only :class:`~lightcol.maxsim.PackedDocuments` view of the stored documents."""
        if self._dim is None:
            raise ShapeError("the collection is empty and has no dim yet; add documents first.")
        if self._packed is None:
            v = self._vectors[: self._n_tokens].view()
            o = self._offsets[: self._n_docs + 1].view()
            v.flags.writeable = False
            o.flags.writeable = False
            self._packed = PackedDocuments._trusted(v, o)
        return self._packed

    def __len__(self) -> int:
        return self._n_docs

    def __repr__(self) -> str:
        return (
            f"MultiVectorCollection(n_docs={self._n_docs}, n_tokens={self._n_tokens}, "
            f"dim={self._dim}, dtype={self._dtype.name})"
        )

    def get(self, i: int) -> np.ndarray:
        """Vectors of the ``i``-th document (insertion order; negative counts from the end), read-only."""
        n = self._n_docs
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"document index {i} out of range for a collection of {n} documents")
        i %= n
        v = self._vectors[self._offsets[i] : self._offsets[i + 1]].view()
        v.flags.writeable = False
        return v

    __getitem__ = get

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self._n_docs):
            yield self.get(i)

    # ------------------------------------------------------------------------------------------
    # adding

    def add(self, ids: Iterable[Id] | None, embeddings: Iterable[npt.ArrayLike]) -> None:
        """Append documents; all or nothing (on any error the collection is left unchanged).

        :param ids: one ``str``/``int`` id per document, or ``None`` for ``len(self), len(self)+1, ...``.
            Ids are unique: an id already in the collection (also a number ``ids=None`` would
            assign) or given twice raises :class:`DuplicateIdError` and nothing is added.
        :param embeddings: iterable of (n_i, dim) float arrays, e.g. ``model.embed(texts)`` (a
            generator is consumed lazily, one document at a time).
        :raises ShapeError: a bad array, or ids and embeddings of different lengths.
        :raises DuplicateIdError: an id is already in the collection or repeated.
        """
        if isinstance(ids, (str, bytes, int, np.integer)):
            raise ArgumentError(f"ids must be an iterable of ids (one per document); got {ids!r}. Use [id].")
        if isinstance(embeddings, np.ndarray) and embeddings.ndim == 2:
            raise ShapeError(
                f"embeddings must be an iterable of 2-D arrays (one per document); got one 2-D array "
                f"of shape {embeddings.shape}. Wrap a single document in a list: [doc]."
            )
        id_iter: Iterator[Any] = itertools.count(self._n_docs) if ids is None else iter(ids)
        state = (self._n_docs, self._n_tokens, self._dim)
        new_ids: list[Id] = []
        existing = self._ids_set()
        seen: set[Id] = set()
        try:
            for k, emb in enumerate(embeddings):
                doc_id = next(id_iter, _MISSING)
                if doc_id is _MISSING:
                    raise ShapeError(f"got more embeddings than ids ({k} ids).")
                doc_id = _check_id(doc_id, k)
                if doc_id in existing or doc_id in seen:
                    where = "is already in the collection" if doc_id in existing else "is given twice"
                    hint = " (ids=None numbers documents from len(collection); pass explicit ids)" if ids is None else ""
                    raise DuplicateIdError(f"id {doc_id!r} (document {k}) {where}; ids must be unique{hint}.")
                seen.add(doc_id)
                new_ids.append(doc_id)
                self._append(emb, k)
            if ids is not None and next(id_iter, _MISSING) is not _MISSING:
                raise ShapeError(f"got more ids than embeddings ({len(new_ids)} embeddings).")
        except BaseException:
            self._n_docs, self._n_tokens, self._dim = state
            raise
        finally:
            self._packed = None
        self._ids.extend(new_ids)
        existing.update(seen)

    def _ids_set(self) -> set[Id]:
        if self._id_set is None:
            self._id_set = set(self._ids)
        return self._id_set

    def _append(self, emb: npt.ArrayLike, k: int) -> None:
        a = np.asarray(emb)
        what = f"embedding {k}"
        if a.ndim != 2:
            hint = " (reshape a single vector with v[None, :])" if a.ndim == 1 else ""
            raise ShapeError(f"{what} must be a 2-D array (n_vectors, {self._dim or 'dim'}); got shape {a.shape}{hint}.")
        if a.dtype.kind != "f":
            raise ShapeError(f"{what} has dtype {a.dtype}; expected a float array (e.g. float32).")
        if self._dim is None:
            if a.shape[1] < 1:
                raise ShapeError(f"{what} has dim 0; vectors need at least one component.")
            self._dim = int(a.shape[1])
        if a.shape[1] != self._dim:
            raise ShapeError(f"{what} has dim {a.shape[1]}; expected shape (n_vectors, {self._dim}).")
        n = a.shape[0]
        self._reserve(self._n_docs + 1, self._n_tokens + n)
        dst = self._vectors[self._n_tokens : self._n_tokens + n]
        with np.errstate(over="ignore", invalid="ignore"):
            np.copyto(dst, a, casting="same_kind")
        if not np.isfinite(dst).all():
            hint = " (float16 overflow: |values| must be < 65504)" if np.isfinite(a).all() else ""
            raise ShapeError(f"{what} contains NaN or infinite values{hint}.")
        self._n_tokens += n
        self._n_docs += 1
        self._offsets[self._n_docs] = self._n_tokens

    def _reserve(self, n_docs: int, n_tokens: int) -> None:
        """Make room for ``n_docs`` documents and ``n_tokens`` vectors (capacity doubling)."""
        v, dim = self._vectors, self._dim
        assert dim is not None  # fixed by the first add
        if n_tokens > v.shape[0] or v.shape[1] != dim or not v.flags.writeable:
            cap = max(n_tokens, 2 * v.shape[0], 1024)
            new = np.empty((cap, dim), dtype=self._dtype)
            if v.shape[1] == dim:
                new[: self._n_tokens] = v[: self._n_tokens]
            self._vectors = new
        o = self._offsets
        if n_docs + 1 > o.shape[0] or not o.flags.writeable:
            new_o = np.empty(max(n_docs + 1, 2 * o.shape[0], 64), dtype=np.int64)
            new_o[: self._n_docs + 1] = o[: self._n_docs + 1]
            self._offsets = new_o

    # ------------------------------------------------------------------------------------------
    # search

    def search(
        self, query: npt.ArrayLike, k: int = 10, *, block_tokens: int | None = None
    ) -> list[tuple[Id, float]]:
        """Top ``k`` documents for one (n_query_tokens, dim) query: ``[(id, score), ...]``, best first.

        A document whose stored vectors hold NaN or infinite values (damage in a loaded file) scores
        NaN and ranks last, with a :class:`~lightcol.errors.NonFiniteWarning` naming it; find them
        all with :meth:`nonfinite_ids`.
        """
        k = _validate.k(k)
        if self._n_docs == 0:
            self._check_empty_query(query, block_tokens)
            return []
        idx, scores = maxsim.top_k(self._scores(maxsim.score(query, self.packed, block_tokens=block_tokens)), k)
        return [(self._ids[i], float(s)) for i, s in zip(idx.tolist(), scores.tolist(), strict=True)]

    def search_many(
        self, queries: Iterable[npt.ArrayLike], k: int = 10, *, block_tokens: int | None = None
    ) -> list[list[tuple[Id, float]]]:
        """Top ``k`` documents for each query, scored in one pass: one ``[(id, score), ...]`` per query."""
        k = _validate.k(k)
        if self._n_docs == 0:
            queries = list(queries)
            for q in queries:
                self._check_empty_query(q, block_tokens)
            return [[] for _ in queries]
        idx, scores = maxsim._top_k_many(
            self._scores(maxsim.score_many(queries, self.packed, block_tokens=block_tokens)), k
        )
        ids = self._ids
        return [
            [(ids[i], float(s)) for i, s in zip(row_i, row_s, strict=True)]
            for row_i, row_s in zip(idx.tolist(), scores.tolist(), strict=True)
        ]

    def score(self, query: npt.ArrayLike, *, block_tokens: int | None = None) -> np.ndarray:
        """MaxSim score of every document (insertion order) for one query, shape (len(self),).

        NaN for a document whose stored vectors hold NaN or infinite values (see :meth:`nonfinite_ids`).
        """
        if self._n_docs == 0:
            self._check_empty_query(query, block_tokens)
            return np.empty(0, dtype=np.float32)
        return self._scores(maxsim.score(query, self.packed, block_tokens=block_tokens))

    def nonfinite_ids(self) -> list[Id]:
        """Ids of the documents whose stored vectors hold NaN or infinite values (insertion order).

        :meth:`add` refuses such vectors, so only a loaded file can hold them (damaged on disk, or
        changed under a memory map). They score NaN and rank last; re-create the collection from
        the source documents, leaving out or re-embedding these. Checked once per loaded collection
        (one pass over the vectors, done by the first search otherwise).
        """
        return [self._ids[i] for i in self._nonfinite_positions().tolist()]

    def _nonfinite_positions(self) -> np.ndarray:
        if self._nonfinite is None:
            self._nonfinite = maxsim.nonfinite_documents(self.packed) if self._n_docs else np.empty(0, np.int64)
        return self._nonfinite

    def _scores(self, scores: np.ndarray) -> np.ndarray:
        """``scores`` (n_docs,) or (n_queries, n_docs) with NaN for the damaged documents, which are named
        in a warning: whatever their score (+inf, or finite when the max skipped a -inf), they rank last."""
        bad = self._nonfinite_positions()
        if bad.shape[0]:
            scores[..., bad] = np.nan
            maxsim._warn_nonfinite(scores, self._ids.__getitem__, stacklevel=4,
                                   hint=" List them all with MultiVectorCollection.nonfinite_ids().")
        return scores

    def _check_empty_query(self, query: npt.ArrayLike, block_tokens: int | None) -> None:
        """Validate a query against an empty collection as a non-empty one would (dim when known)."""
        q = maxsim._check_query(query, self._dim) if self._dim is not None else maxsim._as_float_matrix(query, "query", None)
        maxsim._check_block_tokens(block_tokens, q.shape[0])

    # ------------------------------------------------------------------------------------------
    # persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the collection to one ``.npz`` file, atomically (temp file, fsync, ``os.replace``).

        The previous file at ``path``, if any, stays intact when saving fails.
        """
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
        except OSError as e:
            raise type(e)(e.errno, f"cannot save the collection to {path}: {e.strerror} (writing needs a temporary "
                          f"file in {folder})", path) from e
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    format=np.array(_FORMAT),
                    format_version=np.array(_FORMAT_VERSION, dtype=np.int64),
                    dim=np.array(-1 if self._dim is None else self._dim, dtype=np.int64),
                    dtype=np.array(self._dtype.name),
                    vectors=self._vectors[: self._n_tokens],
                    offsets=self._offsets[: self._n_docs + 1],
                    ids=np.frombuffer(json.dumps(self._ids).encode("utf-8"), dtype=np.uint8),
                )
                f.flush()
                _durable.step("write")
                os.fsync(f.fileno())
                _durable.step("fsync")
            try:
                mode = os.stat(path).st_mode & 0o777
            except FileNotFoundError:
                mode = 0o644
            os.chmod(tmp, mode)
            os.replace(tmp, path)
            _durable.step("rename")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _durable.fsync_dir(folder)

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = False) -> MultiVectorCollection:
        """Read a collection written by :meth:`save`.

        :param mmap: memory-map the vectors (read-only, paged in on demand) instead of reading them;
            a later :meth:`add` copies them into memory.
        """
        path = os.fspath(path)
        try:
            return cls._load(path, mmap)
        except (OSError, ShapeError):  # FileNotFoundError, PermissionError... stay what they are
            raise
        except Exception as e:  # zipfile, EOF, JSON, numpy header errors: a corrupted or foreign file
            raise ShapeError(
                f"{path} is not a readable lightcol collection file ({type(e).__name__}: {e}); it is truncated, "
                "corrupted or another kind of file. Re-create it with MultiVectorCollection.save."
            ) from e

    @classmethod
    def _load(cls, path: str, mmap: bool) -> MultiVectorCollection:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ShapeError(f"{path} is a single .npy array, not a lightcol collection file (.npz written by save).")
        with z:
            names = set(z.files)
            need = {"format", "format_version", "dim", "dtype", "vectors", "offsets", "ids"}
            if not need <= names or str(z["format"]) != _FORMAT:
                raise ShapeError(f"{path} is not a lightcol collection file (missing {sorted(need - names)}).")
            version = int(z["format_version"])
            if version != _FORMAT_VERSION:
                raise ShapeError(f"{path} has collection format version {version}; this lightcol reads {_FORMAT_VERSION}.")
            dim = int(z["dim"])
            dtype = str(z["dtype"])
            offsets = np.ascontiguousarray(z["offsets"], dtype=np.int64)
            if offsets.ndim != 1 or offsets.shape[0] < 1:
                raise ShapeError(f"{path} is a corrupted lightcol collection file (offsets of shape {offsets.shape}).")
            ids = json.loads(z["ids"].tobytes().decode("utf-8"))
            vectors = _npz_memmap(path, "vectors") if mmap else None
            if vectors is None:
                vectors = z["vectors"]
        self = cls(None if dim < 0 else dim, dtype)
        n_docs = offsets.shape[0] - 1
        if (
            vectors.ndim != 2
            or vectors.dtype != self._dtype
            or (dim >= 0 and vectors.shape[1] != dim)
            or n_docs < 0
            or offsets[0] != 0
            or offsets[-1] != vectors.shape[0]
            or np.any(np.diff(offsets) < 0)
            or not isinstance(ids, list)
            or len(ids) != n_docs
            or any(isinstance(i, bool) or not isinstance(i, (str, int)) for i in ids)
            or len(set(ids)) != len(ids)
        ):
            raise ShapeError(f"{path} is a corrupted lightcol collection file (inconsistent arrays).")
        if dim >= 0:
            self._vectors = vectors
        self._offsets = offsets
        self._n_docs = n_docs
        self._n_tokens = int(offsets[-1])
        self._ids = ids
        self._id_set = None
        self._nonfinite = None  # checked on first use: a memory map is not read at load
        return self


def _check_id(doc_id: Any, k: int) -> Id:
    if isinstance(doc_id, (bool, np.bool_)) or not isinstance(doc_id, (str, int, np.integer)):
        raise ArgumentError(f"id {k} is {doc_id!r} ({type(doc_id).__name__}); ids must be str or int.")
    return int(doc_id) if isinstance(doc_id, np.integer) else doc_id


def _npz_memmap(path: str, name: str) -> np.ndarray | None:
    """Memory-map the uncompressed member ``name`` of an ``.npz`` file; ``None`` if not possible."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name + ".npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            return None
        offset = f.tell()
    if fortran or dtype.hasobject or len(shape) != 2:
        return None
    if shape[0] * shape[1] == 0:
        return np.empty(shape, dtype=dtype)
    return np.asarray(np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset))
