"""An updated index on disk: immutable data files plus one manifest naming them; one rename commits.

An index is *one file* at its path until its first change. A change never rewrites a data file:

* ``add`` writes the new documents, coded with the index's codec, as a *segment* file
  ``<name>.g<G>.seg`` (codes, residuals, offsets, inverted lists, ids; format version 5);
* ``delete`` records *tombstones*: the deleted documents' positions in their part, arrays of the
  manifest;
* the *manifest* (format version 5: a small file of the same container) names the parts in order -
  the base data file (which holds the codec) and the segments - with their tombstones and a
  generation number. It is written to a temporary file, fsynced and renamed over the index's path:
  that rename is the one commit point of every change. On the first change the original file is
  hard-linked to ``<name>.g<G>.base`` (no copy), so the manifest can take its name;
* ``compact`` writes all live documents as one data file again, renamed over the path (the
  manifest's place): afterwards the index is one file, as if built.

Files a committed state no longer names are deleted by the writer after its commit; a reader that
opened them keeps its memory maps (Linux and macOS keep an unlinked file's pages), and a reader
that finds a part gone while opening starts again from the newer manifest.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from lightcol import _durable
from lightcol.errors import IndexFormatError
from lightcol.index import candidates as _cand
from lightcol.index import storage as _storage

__all__ = ["Part", "read", "write_manifest", "write_segment", "gather", "garbage"]

DATA = "lightcol-index"
SEGMENT = "lightcol-index-segment"
MANIFEST = "lightcol-index-manifest"
_OPEN_TRIES = 5


@dataclasses.dataclass
class Part:
    """One data file of an index: the base (it holds the codec) or a segment, with its tombstones."""

    file: str  # name in the index's folder
    arrays: dict[str, np.ndarray]
    ids: Sequence[Any]
    full: np.ndarray | None  # float16 full-precision vectors (keep_full), or None
    full_file: str | None  # the side file they come from (None: in the part's own file, or none)
    deleted: np.ndarray  # sorted int64 positions of deleted documents in this part

    @property
    def n_docs(self) -> int:
        return int(self.arrays["offsets"].shape[0] - 1)

    @property
    def n_live(self) -> int:
        return self.n_docs - int(self.deleted.shape[0])

    @property
    def live_tokens(self) -> int:
        off = self.arrays["offsets"]
        d = self.deleted
        return int(off[-1]) - int((off[d + 1] - off[d]).sum()) if d.size else int(off[-1])


@dataclasses.dataclass
class State:
    """What the file at an index's path says: the parts, the base's metadata, the manifest's."""

    parts: list[Part]
    meta: dict[str, Any]  # the base's metadata (format, dim, nbits, model...)
    manifest: dict[str, Any] | None  # None: a plain data file (built or compacted, never changed since)

    @property
    def generation(self) -> int:
        src = self.manifest if self.manifest is not None else self.meta
        return int(src.get("generation", 0))

    def files(self) -> list[str]:
        out = []
        for p in self.parts:
            out.append(p.file)
            if p.full_file is not None:
                out.append(p.full_file)
        return out


def identity(path: str) -> tuple[int, int, int, int]:
    """What changes when a writer commits at ``path`` (a rename puts a new inode there)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def read(path: str, read_ids: Any, cache: dict[str, Part] | None = None) -> State:
    """The state at ``path``: a plain index file, or a manifest and its parts (opened again from the
    newer manifest if a writer removed a part meanwhile). ``cache``: parts already open, by file."""
    for attempt in range(_OPEN_TRIES):
        try:
            return _read(path, read_ids, cache or {})
        except FileNotFoundError as e:
            if not os.path.isfile(path):
                raise
            if attempt == _OPEN_TRIES - 1:
                raise IndexFormatError(
                    f"{path} names a file that is missing: {e.filename}. An updated index is its file and the files "
                    "it names (Index.files; compact() makes it one file): copy all of them.") from e
    raise AssertionError("unreachable")


def _read(path: str, read_ids: Any, cache: dict[str, Part]) -> State:
    folder, name = os.path.split(path)
    meta, arrays = _storage.open_arrays(path)
    if meta.get("format") == MANIFEST:
        base = _data_part(os.path.join(folder, meta["parts"][0]["file"]), read_ids, meta["parts"][0].get("full"))
        parts = [base.part]
        for i, spec in enumerate(meta["parts"]):
            if i:
                parts.append(_segment_part(folder, spec["file"], read_ids, cache))
        for i, p in enumerate(parts):
            d = arrays.get(f"deleted-{i}")
            parts[i] = dataclasses.replace(p, deleted=np.empty(0, np.int64) if d is None else np.asarray(d, np.int64))
        for p in parts[1:]:
            if p.arrays["codes"].dtype != base.part.arrays["codes"].dtype:
                raise IndexFormatError(f"{path}: segment {p.file} does not match the base's codec; rebuild the index.")
        return State(parts, base.meta, meta)
    if meta.get("format") != DATA:
        raise IndexFormatError(f"{path} is not a lightcol index (its format is {meta.get('format')!r}).")
    base = _data_part(path, read_ids, None, meta=meta, arrays=arrays)
    return State([base.part], meta, None)


@dataclasses.dataclass
class _Base:
    part: Part
    meta: dict[str, Any]


def _data_part(path: str, read_ids: Any, full_file: str | None,
               meta: dict[str, Any] | None = None, arrays: dict[str, np.ndarray] | None = None) -> _Base:
    name = os.path.basename(path)
    if meta is None or arrays is None:
        meta, arrays = _storage.open_arrays(path)
    need = {"residuals", "codes", "offsets", "ivf_docs", "ivf_offsets", "centroids", "books", "ids"}
    if meta.get("format") != DATA or not need <= set(arrays):
        raise IndexFormatError(f"{path} is not a lightcol index (missing {sorted(need - set(arrays))}).")
    _check(path, arrays)
    if arrays["centroids"].shape[1] != meta["dim"]:
        raise IndexFormatError(f"{path} is a corrupted lightcol index (inconsistent arrays); rebuild it.")
    full = arrays.get("full")
    if full is None:
        side = os.path.join(os.path.dirname(path), full_file) if full_file else path + ".full"
        if os.path.isfile(side):
            fmeta, farr = _storage.open_arrays(side)
            if fmeta.get("dim") == meta["dim"] and farr["vectors"].shape[0] == arrays["codes"].shape[0]:
                full, full_file = farr["vectors"], os.path.basename(side)
        if full is None:
            full_file = None
    else:
        full_file = None
    part = Part(name, arrays, read_ids(arrays["ids"], path), full, full_file, np.empty(0, np.int64))
    _check_ids(path, part)
    return _Base(part, meta)


def _segment_part(folder: str, name: str, read_ids: Any, cache: dict[str, Part]) -> Part:
    if name in cache:
        return cache[name]
    path = os.path.join(folder, name)
    meta, arrays = _storage.open_arrays(path)
    need = {"residuals", "codes", "offsets", "ivf_docs", "ivf_offsets", "ids"}
    if meta.get("format") != SEGMENT or not need <= set(arrays):
        raise IndexFormatError(f"{path} is not a segment of a lightcol index; rebuild the index.")
    _check(path, arrays)
    part = Part(name, arrays, read_ids(arrays["ids"], path), arrays.get("full"), None, np.empty(0, np.int64))
    _check_ids(path, part)
    return part


def _check(path: str, arrays: dict[str, np.ndarray]) -> None:
    off, codes = arrays["offsets"], arrays["codes"]
    if off.ndim != 1 or off[0] != 0 or off[-1] != codes.shape[0] or arrays["residuals"].shape[0] != codes.shape[0]:
        raise IndexFormatError(f"{path} is a corrupted lightcol index (inconsistent arrays); rebuild it.")


def _check_ids(path: str, part: Part) -> None:
    if len(part.ids) != part.n_docs:
        raise IndexFormatError(f"{path} is a corrupted lightcol index (ids do not match documents); rebuild it.")


def stub(file: str) -> Part:
    """A part known only by its file (what :func:`write_manifest` needs of a segment just written)."""
    return Part(file, {}, [], None, None, np.empty(0, np.int64))


def write_segment(path: str, codes: np.ndarray, residuals: np.ndarray, offsets: np.ndarray, ids_array: np.ndarray,
                  n_centroids: int, full: np.ndarray | None, meta: dict[str, Any]) -> None:
    """One segment file (atomically): the arrays of a data file but the codec's."""
    w = _storage.Writer(path, version=_storage.UPDATE_VERSION)
    try:
        w.array("residuals", residuals)
        w.array("codes", codes)
        w.array("offsets", offsets)
        ivf_docs, ivf_offsets = _cand.build_ivf(codes, offsets, n_centroids)
        w.array("ivf_docs", ivf_docs)
        w.array("ivf_offsets", ivf_offsets)
        w.array("ids", ids_array)
        if full is not None:
            w.array("full", full)
        w.commit({**meta, "format": SEGMENT, "format_version": _storage.UPDATE_VERSION,
                  "n_docs": int(offsets.shape[0] - 1), "n_tokens": int(codes.shape[0])})
    except BaseException:
        w.abort()
        raise


def write_manifest(path: str, generation: int, parts: list[Part], extra: dict[str, Any]) -> None:
    """Commit a state: the manifest renamed over ``path`` (the one commit point)."""
    name = os.path.basename(path)
    w = _storage.Writer(path, version=_storage.UPDATE_VERSION, tmp_prefix=f".{name}.g{generation}.manifest.")
    try:
        specs = []
        for i, p in enumerate(parts):
            specs.append({"file": p.file, "full": p.full_file} if i == 0 else {"file": p.file})
            if p.deleted.size:
                w.array(f"deleted-{i}", p.deleted.astype(np.int64))
        w.commit({**extra, "format": MANIFEST, "format_version": _storage.UPDATE_VERSION,
                  "generation": generation, "parts": specs})
    except BaseException:
        w.abort()
        raise


def data_name(target: str, generation: int, kind: str) -> str:
    """File name of a data file a change at ``target`` writes: ``<name>.g<G>.<kind>``."""
    return f"{os.path.basename(target)}.g{generation}.{kind}"


def garbage(target: str, state: State) -> list[str]:
    """Paths of files of the index at ``target`` that its committed ``state`` no longer names: data
    files of earlier states, temporary files of crashed writers, a side file no longer used."""
    folder, name = os.path.split(target)
    keep = set(state.files()) | {name}
    own = re.compile(rf"^\.?{re.escape(name)}\.g\d+\.")
    out = []
    for f in os.listdir(folder):
        if f in keep:
            continue
        if own.match(f) or (f == name + ".full" and state.manifest is not None):
            out.append(os.path.join(folder, f))
        elif f == name + ".full" and "full" in state.parts[0].arrays:
            out.append(os.path.join(folder, f))
    return out


def collect(target: str, state: State) -> None:
    """Delete :func:`garbage` (the caller holds the write lock)."""
    for path in garbage(target, state):
        _durable.unlink(path)


def gather(parts_ivf: list[tuple[np.ndarray, np.ndarray]], bases: np.ndarray) -> Any:
    """A ``gather`` for :func:`lightcol.index.candidates.probe` over several parts: each centroid's
    documents in every part (``bases``: each part's first global position), concatenated in order."""

    def lists(u: np.ndarray) -> list[np.ndarray]:
        labels, docs = [], []
        for (d, off), b in zip(parts_ivf, bases.tolist()[: len(parts_ivf)], strict=True):
            s = off[u]
            lens = off[u + 1] - s
            total = int(lens.sum())
            if total == 0:
                continue
            before = np.cumsum(lens) - lens
            idx = np.arange(total, dtype=np.int64) - np.repeat(before - s, lens)
            docs.append(d[idx].astype(np.int64) + b)
            labels.append(np.repeat(np.arange(u.shape[0]), lens))
        if not docs:
            return [np.empty(0, np.int64)] * u.shape[0]
        lab = np.concatenate(labels)
        order = np.argsort(lab, kind="stable")
        out = np.concatenate(docs)[order]
        return np.split(out, np.cumsum(np.bincount(lab, minlength=u.shape[0]))[:-1])

    return lists
