"""Segmented collections: :class:`~lightcol.MultiVectorCollection` files plus tombstones, changed without rewrites.

What a ``DocumentIndex`` with the exact (``"collection"``) backend stores: a *manifest* (the index
file container, :mod:`lightcol.index.storage`) naming ``.npz`` collection files in order, each with
the positions of its deleted documents. An addition saves the new documents as one more file, a
deletion writes tombstones; both commit by writing a new manifest (its name is what the document
index's database switches to). :class:`SegmentedCollection` reads a state as one collection: ids,
``len``, ``get``, ``score``, ``search`` and ``search_many`` see the live documents only, in order. A
state may also be a single ``.npz`` file (written before segments existed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lightcol import maxsim
from lightcol.collection import Id, MultiVectorCollection
from lightcol.errors import IndexFormatError

__all__ = ["SegmentedCollection"]

_FORMAT = "lightcol-collection-manifest"
#: more segments than this: the two adjacent ones with the fewest documents are merged
MAX_SEGMENTS = 10
#: deleted documents over this share of those stored: everything is written as one file again
MAX_DELETED = 0.25


@dataclass
class _Part:
    file: str
    coll: MultiVectorCollection
    deleted: np.ndarray  # sorted int64 positions

    @property
    def live(self) -> np.ndarray:
        return np.setdiff1d(np.arange(len(self.coll), dtype=np.int64), self.deleted, assume_unique=True)


class SegmentedCollection:
    """The live documents of a manifest's collection files (read-only; changes write a new state)."""

    def __init__(self, path: str, parts: list[_Part], generation: int) -> None:
        self.path = path
        self._parts = parts
        self.generation = generation
        self._live = [p.live for p in parts]
        self._bases = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(x) for x in self._live], out=self._bases[1:])
        self._ids: list[Id] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SegmentedCollection:
        """A state: a manifest, or a single ``.npz`` collection file."""
        from lightcol.index import storage as _storage

        path = os.fspath(path)
        folder = os.path.dirname(path)
        with open(path, "rb") as f:
            magic = f.read(len(_storage.MAGIC))
        if magic != _storage.MAGIC:
            coll = MultiVectorCollection.load(path, mmap=True)
            return cls(path, [_Part(os.path.basename(path), coll, np.empty(0, np.int64))], 0)
        meta, arrays = _storage.open_arrays(path)
        if meta.get("format") != _FORMAT:
            raise IndexFormatError(f"{path} is not a lightcol collection manifest.")
        parts = []
        for i, name in enumerate(meta["parts"]):
            d = arrays.get(f"deleted-{i}")
            parts.append(_Part(name, MultiVectorCollection.load(os.path.join(folder, name), mmap=True),
                               np.empty(0, np.int64) if d is None else np.asarray(d, dtype=np.int64)))
        return cls(path, parts, int(meta["generation"]))

    # -- reading ---------------------------------------------------------------------------------
    @property
    def files(self) -> list[str]:
        """The files of this state (the manifest first)."""
        name = os.path.basename(self.path)
        return [name, *(p.file for p in self._parts if p.file != name)]

    @property
    def ids(self) -> list[Id]:
        if self._ids is None:
            out: list[Id] = []
            for p, live in zip(self._parts, self._live, strict=True):
                ids = p.coll._ids
                out.extend(ids if live.shape[0] == len(ids) else [ids[i] for i in live.tolist()])
            self._ids = out
        return list(self._ids)

    @property
    def dim(self) -> int | None:
        return next((p.coll.dim for p in self._parts if p.coll.dim is not None), None)

    def __len__(self) -> int:
        return int(self._bases[-1])

    def _locate(self, i: int) -> tuple[_Part, int]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"document index {i} out of range for a collection of {n} documents")
        i %= n
        j = int(np.searchsorted(self._bases, i, side="right")) - 1
        return self._parts[j], int(self._live[j][i - int(self._bases[j])])

    def get(self, i: int) -> np.ndarray:
        """Vectors of the ``i``-th live document, read-only."""
        part, local = self._locate(int(i))
        return part.coll.get(local)

    __getitem__ = get

    def __iter__(self) -> Iterator[np.ndarray]:
        for p, live in zip(self._parts, self._live, strict=True):
            for i in live.tolist():
                yield p.coll.get(i)

    def score(self, query: npt.ArrayLike, **options: Any) -> np.ndarray:
        """MaxSim of every live document (in order) for one query."""
        out = [p.coll.score(query, **options)[live] for p, live in zip(self._parts, self._live, strict=True)
               if len(p.coll)]
        return np.concatenate(out) if out else np.empty(0, dtype=np.float32)

    def search(self, query: npt.ArrayLike, k: int = 10, **options: Any) -> list[tuple[Id, float]]:
        return self.search_many([query], k, **options)[0]

    def search_many(self, queries: Iterable[npt.ArrayLike], k: int = 10, **options: Any) -> list[list[tuple[Id, float]]]:
        """Top ``k`` live documents per query: each segment's best (more where it has deleted ones),
        merged by score, ties to the earlier document (as one collection would rank them)."""
        queries = list(queries)
        merged: list[list[tuple[float, int, Id]]] = [[] for _ in queries]
        for j, p in enumerate(self._parts):
            if len(self._live[j]) == 0:
                continue
            dead = np.zeros(len(p.coll), dtype=bool)
            dead[p.deleted] = True
            want = min(len(p.coll), k + int(p.deleted.shape[0]))
            idx, vals = maxsim.rank_many(queries, p.coll.packed, want, **options)
            ids = p.coll._ids
            for row_i, row_s, out in zip(idx.tolist(), vals.tolist(), merged, strict=True):
                out.extend((-s, j, ids[i]) for i, s in zip(row_i, row_s, strict=True) if not dead[i])
        # a segment ranks ties by position already; across segments the earlier wins (a stable sort)
        return [[(d, -s) for s, _, d in sorted(m, key=lambda t: (t[0], t[1]))[:k]] for m in merged]

    # -- changes (each writes files, then a manifest at ``target``: the caller commits by naming it) ----
    def added(self, target: str, ids: list[Id], vectors: Iterable[npt.ArrayLike], dim: int, dtype: str) -> None:
        """Write this state plus the documents ``vectors`` (ids ``ids``) as a manifest at ``target``."""
        name = f"{os.path.basename(target)}.g{self.generation + 1}.npz"
        coll = MultiVectorCollection(dim, dtype)
        coll.add(ids, vectors)
        coll.save(os.path.join(os.path.dirname(target), name))
        parts = [*self._parts, _Part(name, coll, np.empty(0, np.int64))]
        _write(target, self._merged(target, parts), self.generation + 1)

    def deleted(self, target: str, drop: set[Id]) -> bool:
        """Write this state less the documents ``drop`` as a manifest at ``target``; ``False`` (no
        file) when no document is left."""
        parts = []
        for p in self._parts:
            hit = [i for i, d in enumerate(p.coll._ids) if d in drop]
            parts.append(_Part(p.file, p.coll, np.union1d(p.deleted, np.asarray(hit, dtype=np.int64))) if hit else p)
        if sum(len(p.coll) - p.deleted.shape[0] for p in parts) == 0:
            return False
        _write(target, self._merged(target, parts), self.generation + 1)
        return True

    def _merged(self, target: str, parts: list[_Part]) -> list[_Part]:
        """``parts`` after the merges the policy asks for (:data:`MAX_SEGMENTS`, :data:`MAX_DELETED`)."""
        stored = sum(len(p.coll) for p in parts)
        dead = sum(p.deleted.shape[0] for p in parts)
        if dead > MAX_DELETED * stored:
            return [_merge(target, parts, 0)]
        parts = [p for p in parts if len(p.coll) > p.deleted.shape[0]]
        n = 0
        while len(parts) > MAX_SEGMENTS + 1:
            sizes = [len(p.coll) - p.deleted.shape[0] for p in parts]
            i = min(range(1, len(parts) - 1), key=lambda i: sizes[i] + sizes[i + 1])
            n += 1
            parts[i : i + 2] = [_merge(target, parts[i : i + 2], n)]
        return parts


def _merge(target: str, parts: list[_Part], tag: int) -> _Part:
    first = next(p.coll for p in parts)
    coll = MultiVectorCollection(first.dim, first.dtype)
    for p in parts:
        live = p.live.tolist()
        coll.add([p.coll._ids[i] for i in live], (p.coll.get(i) for i in live))
    name = f"{os.path.basename(target)}.m{tag}.npz"
    coll.save(os.path.join(os.path.dirname(target), name))
    return _Part(name, coll, np.empty(0, np.int64))


def _write(target: str, parts: list[_Part], generation: int) -> None:
    from lightcol.index import storage as _storage

    w = _storage.Writer(target, version=_storage.UPDATE_VERSION)
    try:
        for i, p in enumerate(parts):
            if p.deleted.size:
                w.array(f"deleted-{i}", p.deleted)
        w.commit({"format": _FORMAT, "format_version": _storage.UPDATE_VERSION, "generation": generation,
                  "parts": [p.file for p in parts]})
    except BaseException:
        w.abort()
        raise
