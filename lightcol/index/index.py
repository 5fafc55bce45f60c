"""``Index``: a compressed, memory-mapped ColBERT index, searched without reading all of it, updated without rewriting it.

Build streams documents to disk (the codec is trained on the first ``sample_tokens`` vectors), open
memory-maps the file, search generates candidates from centroids (:mod:`.candidates`) and scores
the best of them exactly by MaxSim on decoded vectors (or on full-precision float16 vectors kept in
a side file ``<path>.full`` when built with ``keep_full=True`` and searched with ``exact=True``).
Changes add segment files and tombstones committed by a manifest (:mod:`.segments`); ``compact``
makes it one file again.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import itertools
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lightcol import _durable, maxsim
from lightcol.collection import Id, _check_id
from lightcol.errors import ArgumentError, DuplicateIdError, DriftWarning, IndexFormatError, ShapeError
from lightcol.index import candidates as _cand
from lightcol.index import codec as _codec
from lightcol.index import drift as _drift
from lightcol.index import external as _external
from lightcol.index import segments as _seg
from lightcol.index import storage as _storage
from lightcol.maxsim import PackedDocuments

__all__ = ["Index", "MergePolicy"]

_FORMAT = "lightcol-index"
_MISSING = object()
_ENCODE_CHUNK = 1 << 16  # vectors encoded per step while building
_SCORE_TOKENS = 4096  # candidate tokens decoded and scored per step (2 MB of float32 at dim 128)
#: search defaults (override per call): probed centroids per query token, documents kept after stage 1
#: and 2 (see :mod:`lightcol.index.candidates`). ``n_interact`` and ``n_rerank`` are caps: a smaller
#: index keeps fewer (:func:`default_budget`), so its queries do not decode a third of it.
DEFAULTS = {"nprobe": 8, "n_interact": 2048, "n_rerank": 512}
#: the fewest documents the default budget reranks
_MIN_RERANK = 64
#: at nbits >= 4 the caps of ``n_interact`` and ``n_rerank`` are this many times ``DEFAULTS``': decoded
#: vectors are close enough to the originals that reranking more documents keeps paying off
_WIDE_NBITS = 4
_WIDE = 2


def default_budget(n_docs: int, nbits: int = 2) -> tuple[int, int]:
    """Default ``(n_interact, n_rerank)`` for an index of ``n_docs`` documents at ``nbits``.

    ``n_rerank`` is a tenth of the documents, at least 64 and at most ``DEFAULTS["n_rerank"]`` (512,
    reached at 5,120 documents); ``n_interact`` four times that, at most ``DEFAULTS["n_interact"]``.
    At nbits >= 4 both caps are doubled (1,024 reranked of 4,096 interacted, reached at 10,240
    documents; fast-plaid's default reranks 4,096): on 10,000 gcide passages at nbits=4, recall@10 vs
    exhaustive 0.899 -> 0.914 at 1.58x the p50 (2,048 of 8,192: 0.923 at 2.32x; docs/index.md).
    On CISI (1,460 abstracts) 146 decoded documents keep recall@10 vs exhaustive at 0.928, 96 at
    0.924 and 64 at 0.909. On 100,000 gcide passages (in-process sweep, nbits=2, one thread) 2,048
    interacted and 512 reranked documents found 0.796 of the exact top 10 at a p50 of 34 ms, 1,024 /
    256 0.768 at 23 ms, 4,096 / 768 0.810 at 52 ms; exhaustive MaxSim takes ~1,090 ms.
    """
    wide = _WIDE if nbits >= _WIDE_NBITS else 1
    rerank = min(wide * DEFAULTS["n_rerank"], max(_MIN_RERANK, n_docs // 10))
    return min(wide * DEFAULTS["n_interact"], 4 * rerank), rerank


#: centroids per probed centroid above which :func:`default_nprobe` probes more than ``DEFAULTS["nprobe"]``
_CENTROIDS_PER_PROBE = 2048


def default_nprobe(n_centroids: int) -> int:
    """Default centroids probed per query token for a codec of ``n_centroids``.

    ``DEFAULTS["nprobe"]`` (8) up to 16,384 centroids, then one per 2,048 centroids (16 at the 32,768 of
    the default training sample): finer centroids split a token's neighbourhood into more cells. On
    2.5M vectors (51,973 documents, 32,768 centroids, 32 queries; docs/index.md) probing 16 instead of 8
    raised recall@10 vs exhaustive from 0.778 to 0.841 at nbits=2 and from 0.884 to 0.944 at nbits=4 for
    about 10% more p50; on 10,000 gcide passages (8,192 centroids) 8, 12 and 16 found the same 0.914.
    """
    return max(DEFAULTS["nprobe"], int(n_centroids) // _CENTROIDS_PER_PROBE)


def _write_spilled(writer: Any, code_col: Any, len_col: Any, ivf: Any, budget: int, codec: Any, ids: Any) -> None:
    """Codes, offsets, inverted file, codec tables and ids from their spill files: the same arrays, in
    the same order, as :func:`_finish` writes from memory (a bounded build and a compact share it)."""
    _external.copy_column(writer, "codes", code_col)
    writer.begin("offsets", np.int64)
    writer.extend(np.zeros(1, dtype=np.int64))
    done = 0
    for part in len_col.chunks():
        o = np.cumsum(part) + done
        writer.extend(o)
        done = int(o[-1])
    writer.end()
    ivf.write(writer, budget)
    _finish_tables(writer, codec)
    ids.write(writer, "ids")


def _model_facts(model: Any) -> tuple[str | None, int | None, dict[str, Any] | None]:
    """Name, dim and encoding rules (JSON-able) of ``model``: a name (only the name is known) or an
    embedding model with ``model_name``, ``dim`` and ``spec.rules`` (duck-typed: no import of it here)."""
    if model is None or isinstance(model, str):
        return model, None, None
    name, dim = getattr(model, "model_name", None), getattr(model, "dim", None)
    rules = getattr(getattr(model, "spec", None), "rules", None)
    if not isinstance(name, str) or not isinstance(dim, int) or not dataclasses.is_dataclass(rules):
        raise ArgumentError(f"model must be a model name or the embedding model (LateInteractionTextEmbedding); "
                            f"got {type(model).__name__}.")
    return name, dim, dataclasses.asdict(rules)  # type: ignore[arg-type]


def _progress(show: bool, desc: str, unit: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(desc=desc, unit=unit, disable=not show, leave=False)


def _check_doc(emb: Any, k: int, dim: int | None) -> np.ndarray:
    a = np.asarray(emb)
    if a.ndim != 2:
        raise ShapeError(f"embedding {k} must be a 2-D array (n_vectors, {dim or 'dim'}); got shape {a.shape}.")
    if a.dtype.kind != "f":
        raise ShapeError(f"embedding {k} has dtype {a.dtype}; expected a float array (e.g. float32).")
    if dim is not None and a.shape[1] != dim:
        raise ShapeError(f"embedding {k} has dim {a.shape[1]}; this index holds dim {dim}.")
    if a.shape[1] == 0:
        raise ShapeError(f"embedding {k} has dim 0; vectors need at least one component.")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ShapeError(f"embedding {k} contains NaN or infinite values.")
    return a


def _documents(
    ids: Iterable[Id] | None, embeddings: Iterable[npt.ArrayLike], dim: int | None, existing: set[Id], start: int,
    *, dedupe: bool = True,
) -> Iterator[tuple[Id, np.ndarray]]:
    """Validated (id, float32 vectors) pairs; ids unique against ``existing`` and (``dedupe``) each other
    (without ``dedupe`` the caller checks, as :meth:`Index.build` does on disk)."""
    if isinstance(ids, (str, bytes, int, np.integer)):
        raise ArgumentError(f"ids must be an iterable of ids (one per document); got {ids!r}. Use [id].")
    if isinstance(embeddings, np.ndarray) and embeddings.ndim == 2:
        raise ShapeError(
            f"embeddings must be an iterable of 2-D arrays (one per document); got one 2-D array of shape "
            f"{embeddings.shape}. Wrap a single document in a list: [doc]."
        )
    id_iter: Iterator[Any] = itertools.count(start) if ids is None else iter(ids)
    seen: set[Id] = set()
    k = -1
    for k, emb in enumerate(embeddings):
        doc_id = next(id_iter, _MISSING)
        if doc_id is _MISSING:
            raise ShapeError(f"got more embeddings than ids ({k} ids).")
        doc_id = _check_id(doc_id, k)
        if doc_id in existing or doc_id in seen:
            where = "is already in the index" if doc_id in existing else "is given twice"
            raise DuplicateIdError(f"id {doc_id!r} (document {k}) {where}; ids must be unique.")
        if dedupe:
            seen.add(doc_id)
        a = _check_doc(emb, k, dim)
        dim = a.shape[1]
        yield doc_id, a
    if ids is not None and next(id_iter, _MISSING) is not _MISSING:
        raise ShapeError(f"got more ids than embeddings ({k + 1} embeddings).")


class Index:
    """A compressed multi-vector index, memory-mapped. Create with :meth:`build`, reopen with :meth:`open`.

    Changes (:meth:`add`, :meth:`delete`, :meth:`compact`) never rewrite what is stored: new documents
    go to a new segment file coded with the index's codec, deletions are tombstones, and a small
    manifest renamed over :attr:`path` commits each change (:mod:`lightcol.index.segments`); search
    reads every segment. One writer at a time (:class:`~lightcol.errors.IndexLockedError`); readers
    keep the state they opened until they :meth:`refresh`.
    """

    #: when a change is followed by a merge (None: never; call :meth:`compact` yourself)
    merge_policy: MergePolicy | None

    def __init__(self, path: str, state: _seg.State) -> None:
        self.merge_policy = MergePolicy()
        self._set_state(path, state)

    def _set_state(self, path: str, state: _seg.State) -> None:
        self.path = path
        self._state = state
        parts = state.parts
        self._parts = parts
        base = parts[0]
        arrays = base.arrays
        self._a = arrays
        rot = arrays.get("rotation")  # absent in format 3 and earlier: no rotation
        codec = _codec.Codec(np.asarray(arrays["centroids"], dtype=np.float32), np.asarray(arrays["books"], dtype=np.float32),
                             int(state.meta["nbits"]), None if rot is None else np.asarray(rot, dtype=np.float32))
        codec = _codec.with_groups(codec, arrays, os.path.join(os.path.dirname(path), base.file))
        prev = getattr(self, "_codec", None)
        if ("groups" not in codec.__dict__ and prev is not None and "groups" in prev.__dict__
                and np.array_equal(prev.centroids, codec.centroids)):  # a file without stored groups: grouped once
            codec.__dict__["groups"] = prev.groups
        self._codec = codec
        self._lut = self._codec.lut()
        self._bases = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([p.n_docs for p in parts], out=self._bases[1:])
        self._ids: Sequence[Id] = base.ids if len(parts) == 1 else _ConcatIds([p.ids for p in parts], self._bases)
        if any(p.deleted.size for p in parts):
            self._live: np.ndarray | None = np.ones(int(self._bases[-1]), dtype=bool)
            for b, p in zip(self._bases.tolist(), parts, strict=False):
                self._live[b + p.deleted] = False
        else:
            self._live = None
        self._n_live = sum(p.n_live for p in parts)
        self._full = base.full if all(p.full is not None for p in parts) else None
        self._gather_cache: Any = None  # the probe's lists over several parts (made on first search)
        extra = {k: v for k, v in (state.manifest or {}).items() if k not in ("format", "format_version", "parts")}
        self.meta = {**state.meta, **extra, "n_docs": self._n_live, "n_tokens": sum(p.live_tokens for p in parts),
                     "generation": state.generation, "n_segments": len(parts) - 1,
                     "n_deleted": int(sum(p.deleted.size for p in parts))}
        self._pos: dict[Id, int] | None = None
        try:
            self._identity = _seg.identity(path)
        except FileNotFoundError:
            self._identity = None

    # -- properties ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def nbits(self) -> int:
        return int(self.meta["nbits"])

    @property
    def model(self) -> str | None:
        """Name of the model the vectors came from, as given to :meth:`build`."""
        return self.meta.get("model")

    @property
    def rules(self) -> dict[str, Any] | None:
        """Encoding rules of the model the vectors came from (recorded when :meth:`build` got the model
        itself, or the Parquet files of ``lightcol embed``); ``None`` if not recorded."""
        return self.meta.get("rules")

    @property
    def ids(self) -> list[Id]:
        """Ids of the documents in the index, in the order they were added."""
        if self._live is None:
            return list(self._ids)
        return [d for d, live in zip(self._ids, self._live.tolist(), strict=True) if live]

    @property
    def n_tokens(self) -> int:
        """Vectors stored for the documents in the index."""
        return int(self.meta["n_tokens"])

    @property
    def n_segments(self) -> int:
        """Segments written by :meth:`add` since the index was built or compacted (0: one file)."""
        return len(self._parts) - 1

    @property
    def n_deleted(self) -> int:
        """Deleted documents whose vectors are still stored (until :meth:`compact`)."""
        return int(self.meta["n_deleted"])

    @property
    def files(self) -> list[str]:
        """Every file this index reads, in its folder (the path itself first): copy them all to copy it."""
        out = [os.path.basename(self.path)]
        return out + [f for f in self._state.files() if f not in out]

    @property
    def drift(self) -> dict[str, Any] | None:
        """How far the documents added since the codec was trained lie from its training data.

        ``residual_ratio``: the added vectors' mean squared distance to their centroid over the
        training sample's (1.0: same distribution); ``far_share``: share of added vectors farther
        from their centroid than 99% of the training sample (0.01: same); ``drifted``: either
        exceeds :data:`lightcol.index.drift.LIMITS`; ``vectors``: how many were measured. ``None``
        before the first :meth:`add`. A drifted index keeps working, with more error per vector:
        retrain with ``compact(retrain=True)`` (needs ``keep_full=True``) or rebuild.
        """
        stats = self.meta.get("drift")
        return None if stats is None else _drift.summary(stats, self.meta["drift_reference"])

    def __len__(self) -> int:
        return self._n_live

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._positions()

    def __repr__(self) -> str:
        return (f"Index({self.path!r}, n_docs={len(self)}, n_tokens={self.n_tokens}, dim={self.dim}, "
                f"nbits={self.nbits}, n_centroids={self._a['centroids'].shape[0]}, n_segments={self.n_segments})")

    def _positions(self) -> dict[Id, int]:
        """Id -> position (over all parts) of each document in the index."""
        if self._pos is None:
            if self._live is None:
                self._pos = {d: i for i, d in enumerate(self._ids)}
            else:
                live = self._live.tolist()
                self._pos = {d: i for i, d in enumerate(self._ids) if live[i]}
        return self._pos


    # -- build / open ----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        path: str | os.PathLike[str],
        ids: Iterable[Id] | None,
        embeddings: Iterable[npt.ArrayLike],
        *,
        nbits: int = 2,
        n_centroids: int | None = None,
        model: str | Any | None = None,
        seed: int = 0,
        sample_tokens: int = 1 << 20,
        kmeans_iters: int = 4,
        keep_full: bool = False,
        show_progress: bool = True,
        extra_meta: dict[str, Any] | None = None,
    ) -> Index:
        """Build an index at ``path`` (a file; replaced atomically) and return it opened.

        :param ids: one ``str``/``int`` id per document (unique), or ``None`` for 0, 1, 2...
        :param embeddings: iterable of (n_i, dim) unit-length float arrays, e.g. ``model.embed(texts)``;
            consumed lazily in one pass: the first ``sample_tokens`` vectors train the codec, then
            everything is encoded in chunks straight to disk.
        :param nbits: residual bits per dimension (1, 2, 4 or 8).
        :param n_centroids: k-means centroids; default a power of two near ``training vectors / 32``
            (32,768 from the default sample; 4,096 for 177k vectors).
        :param sample_tokens: vectors the codec is trained on (float32 in memory: 512 MB at dim 128). It
            also sets the build's working memory: codes, lengths, ids and the inverted file's entries go to
            temporary files beside ``path`` (~10 bytes per vector, deleted at the end) and are placed in
            pieces of at most the sample's bytes, so peak memory is about twice the sample plus a constant
            (~0.3 GB), whatever the corpus size (see :mod:`lightcol.index.external`).
        :param model: the model the vectors came from, recorded in the index: its name, or the
            embedding model itself (e.g. a ``LateInteractionTextEmbedding``: its name, dim and
            encoding rules are recorded, see :attr:`rules`; vectors of another dim raise ``ShapeError``).
        :param keep_full: also write float16 vectors to ``<path>.full`` for ``search(exact=True)``.
        :param extra_meta: more JSON-able metadata to record (read back from ``index.meta``).
        :raises IndexLockedError: another writer is changing the index at ``path``, or building one there
            (a build takes the write lock, like :meth:`add`; readers keep the index they opened).
        """
        path = os.path.abspath(os.fspath(path))
        with _durable.write_lock(path, "index"):
            return cls._build_at(path, ids, embeddings, nbits=nbits, n_centroids=n_centroids, model=model, seed=seed,
                                 sample_tokens=sample_tokens, kmeans_iters=kmeans_iters, keep_full=keep_full,
                                 show_progress=show_progress, extra_meta=extra_meta)

    @classmethod
    def _build_at(cls, path: str, ids: Iterable[Id] | None, embeddings: Iterable[npt.ArrayLike],
                  **options: Any) -> Index:
        """:meth:`build` without taking the lock (the caller holds it, or a :class:`~lightcol.DocumentIndex`
        its own): write the index at ``path``, open it, then delete what it replaced and what a killed
        build left (the opened state names the files to keep: the ids are read once). ``options`` not
        given take :meth:`build`'s defaults."""
        defaults = {k: p.default for k, p in inspect.signature(cls.build).parameters.items() if p.kind is p.KEYWORD_ONLY}
        cls._write(path, ids, embeddings, **{**defaults, **options})
        index = cls.open(path)
        _seg.collect(path, index._state)
        return index

    @classmethod
    def _write(cls, path: str, ids: Iterable[Id] | None, embeddings: Iterable[npt.ArrayLike], *, nbits: int,
               n_centroids: int | None, model: str | Any | None, seed: int, sample_tokens: int, kmeans_iters: int,
               keep_full: bool, show_progress: bool, extra_meta: dict[str, Any] | None) -> None:
        """:meth:`build`'s work: write the index file at ``path`` (the caller holds the lock it needs)."""
        model_name, model_dim, rules = _model_facts(model)
        docs = _documents(ids, embeddings, model_dim, set(), 0, dedupe=False)
        bar = _progress(show_progress, "index", "doc")
        # the training sample: the first sample_tokens vectors, copied once into one buffer (its pages are
        # touched only as far as it fills); the buffered documents are views of it, freed once encoded
        buffered: collections.deque[tuple[Id, np.ndarray]] = collections.deque()
        buf: np.ndarray | None = None
        n_buf = 0
        for doc_id, a in docs:
            bar.update(1)
            if buf is None:
                buf = np.empty((max(1, int(sample_tokens)), a.shape[1]), dtype=np.float32)
            take = min(a.shape[0], buf.shape[0] - n_buf)
            buf[n_buf : n_buf + take] = a[:take]
            buffered.append((doc_id, buf[n_buf : n_buf + take] if take == a.shape[0] else a))
            n_buf += take
            if n_buf >= buf.shape[0]:
                break
        if buf is None or n_buf == 0:
            bar.close()
            raise ShapeError("cannot build an index without vectors; give at least one non-empty document.")
        # working memory beyond the sample: everything per vector or per document goes to temporary files
        # beside the index; the inverted file is placed in ranges of this many bytes (see external.py)
        budget = max(1 << 20, buf.shape[0] * buf.shape[1] * 4)
        codec = _codec.train(buf[:n_buf], nbits, n_centroids, seed=seed, iters=kmeans_iters)
        drift_reference = _drift.reference(codec, buf[:n_buf])  # what later additions are compared with
        del buf
        folder = os.path.dirname(path)
        # temporary names of generation 0, which the next writer of this path deletes if this one is killed
        own = f".{os.path.basename(path)}.g0."
        writer = _storage.Writer(path, tmp_prefix=own + "build.")
        full = _storage.Writer(path + ".full", tmp_prefix=own + "build-full.") if keep_full else None
        spilled = _external.IdSpill(folder, own)
        code_col = _external.Column(folder, codec.code_dtype, "codes", own)
        len_col = _external.Column(folder, np.int64, "lengths", own)
        ivf = _external.IvfSpill(folder, codec.centroids.shape[0], own)
        try:
            writer.begin("residuals", np.uint8, (codec.code_bytes,))
            if full is not None:
                full.begin("vectors", np.float16, (codec.dim,))
            pending: list[np.ndarray] = []
            n_pending = 0

            def flush() -> None:
                nonlocal n_pending
                if not pending:
                    return
                x = np.concatenate(pending)
                lens = np.fromiter((v.shape[0] for v in pending), dtype=np.int64, count=len(pending))
                c, r = codec.encode(x)
                ivf.add(c, lens, len_col.n)
                code_col.append(c)
                len_col.append(lens)
                writer.extend(r)
                if full is not None:
                    full.extend(x.astype(np.float16))
                pending.clear()
                n_pending = 0

            for doc_id, a in itertools.chain(_drained(buffered), _counted(docs, bar)):
                spilled.add(doc_id)
                pending.append(a)
                n_pending += a.shape[0]
                if n_pending >= _ENCODE_CHUNK:
                    flush()
            buffered.clear()
            flush()
            writer.end()
            dup = spilled.duplicate(budget)
            if dup is not None:
                raise DuplicateIdError(f"id {spilled.get(dup)!r} (document {dup}) is given twice; ids must be unique.")
            if full is not None:
                full.end()
                full.commit({"format": _FORMAT + "-full", "dim": codec.dim})
            meta = {**(extra_meta or {}), "model": model_name, "seed": seed, "sample_tokens": sample_tokens,
                    "kmeans_iters": kmeans_iters, "drift_reference": drift_reference}
            if rules is not None:
                meta["rules"] = rules
            _write_spilled(writer, code_col, len_col, ivf, budget, codec, spilled)
            if full is None:  # a side file of an index built before at this path would pass for this one's
                _durable.unlink(path + ".full")
            writer.commit(_full_meta(meta, codec, len_col.n, code_col.n))
        except BaseException:
            writer.abort()
            if full is not None:
                full.abort()
            raise
        finally:
            bar.close()
            for spill in (spilled, code_col, len_col, ivf):
                spill.close()

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, verify: bool = False) -> Index:
        """Memory-map an index (nothing but the small arrays is read until a search needs it).

        Opens what the last committed change left: one file, or a manifest and the segments it
        names. Files of older lightcol versions open unchanged (their first change upgrades them).

        :param verify: check every array's checksum (reads the whole index).
        :raises IndexFormatError: not an index, truncated or corrupted; :class:`IndexVersionError`:
            a newer format version.
        """
        path = os.path.abspath(os.fspath(path))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no index file at {path}; build one with lightcol.Index.build.")
        identity = _seg.identity(path)
        state = _seg.read(path, _read_ids)
        if verify:
            folder = os.path.dirname(path)
            _storage.open_arrays(path, verify=True)
            for f in state.files():
                _storage.open_arrays(os.path.join(folder, f), verify=True)
        self = cls(path, state)
        self._identity = identity
        return self

    def refresh(self) -> bool:
        """Follow changes another writer committed since this object opened the index (readers keep
        the state they opened until then). Returns whether there were any."""
        try:
            if _seg.identity(self.path) == self._identity:
                return False
        except FileNotFoundError:
            return False
        identity = _seg.identity(self.path)
        state = _seg.read(self.path, _read_ids, {p.file: p for p in self._parts[1:]})
        policy = self.merge_policy
        self._set_state(self.path, state)
        self.merge_policy = policy
        self._identity = identity
        return True

    # -- search ----------------------------------------------------------------------------------
    def _allowed(self, subset: Iterable[Id] | None) -> np.ndarray | None:
        if subset is None:
            return None if self._live is None else self._live
        pos = self._positions()
        mask = np.zeros(int(self._bases[-1]), dtype=bool)
        rows = [pos[d] for d in subset if d in pos]
        mask[rows] = True
        return mask

    def _by_part(self, docs: np.ndarray) -> Iterator[tuple[_seg.Part, np.ndarray, int, int]]:
        """``(part, local positions, a, b)`` for each part holding some of ``docs`` (sorted global
        positions), ``docs[a:b]`` being that part's."""
        if len(self._parts) == 1:
            yield self._parts[0], docs, 0, docs.shape[0]
            return
        cuts = np.searchsorted(docs, self._bases).tolist()
        for i, p in enumerate(self._parts):
            a, b = cuts[i], cuts[i + 1]
            if b > a:
                yield p, docs[a:b] - self._bases[i], a, b

    def _vectors(self, part: _seg.Part, docs: np.ndarray, exact: bool) -> PackedDocuments:
        """Vectors of ``docs`` of ``part``: full precision (``exact``), else decoded (rotated)."""
        idx, local = _cand.token_ranges(part.arrays["offsets"], docs)
        if exact:
            if self._full is None:
                raise ArgumentError(f"exact=True needs full-precision vectors: rebuild {self.path} with keep_full=True.")
            v = np.asarray(part.full[idx], dtype=np.float32)  # type: ignore[index]
        else:
            v = self._codec.decode(part.arrays["codes"][idx], part.arrays["residuals"][idx], self._lut)
        return PackedDocuments._trusted(v, local)

    def _score(self, q: np.ndarray, docs: np.ndarray, exact: bool) -> np.ndarray:
        """MaxSim of ``q`` against ``docs``, decoded (or read) and scored ``_SCORE_TOKENS`` tokens at a time.

        Decoding all candidates at once allocates ~25 MB of temporaries per query (146 CISI abstracts);
        memory that large is handed back to the OS when freed and page-faulted again by the next query,
        which cost 6 of 22 ms per CISI search. Steps of 4,096 tokens reuse the same few MB.
        """
        out = np.empty(docs.shape[0], dtype=np.float32)
        part, local = (self._parts[0], docs) if len(self._parts) == 1 else self._gathered(docs, exact)
        off = part.arrays["offsets"]
        for a, b in _cand.token_steps(off[local + 1] - off[local], _SCORE_TOKENS):
            out[a:b] = maxsim.score(q, self._vectors(part, local[a:b], exact))
        return out

    def _gathered(self, docs: np.ndarray, full: bool = False, names: tuple[str, ...] = ("codes", "residuals")
                  ) -> tuple[_seg.Part, np.ndarray]:
        """The tokens of ``docs`` (sorted global positions over several parts) copied into one part of
        their own (a few hundred KB for a query's candidates), and positions ``0..n-1`` in it: each
        stage then runs once, in the same steps as on the compacted index, not once per part."""
        pieces: dict[str, list[np.ndarray]] = {n: [] for n in names}
        fulls: list[np.ndarray] = []
        lens: list[np.ndarray] = []
        for part, local, _, _ in self._by_part(docs):
            off = part.arrays["offsets"]
            idx, _ = _cand.token_ranges(off, local)
            lens.append(off[local + 1] - off[local])
            for n in names:
                pieces[n].append(np.take(part.arrays[n], idx, axis=0))
            if full:
                fulls.append(np.asarray(part.full[idx]))  # type: ignore[index]
        offsets = np.zeros(docs.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.concatenate(lens), out=offsets[1:])
        arrays = {n: np.concatenate(v) for n, v in pieces.items()}
        arrays["offsets"] = offsets
        part = _seg.Part("", arrays, [], np.concatenate(fulls) if full else None, None, np.empty(0, np.int64))
        return part, np.arange(docs.shape[0], dtype=np.int64)

    def _gather(self) -> Any:
        """The probe's ``gather`` over several parts: the base's inverted lists and one merged from
        every segment's (made once per state, on the first search: segments are the small part)."""
        if len(self._parts) == 1:
            return None
        if self._gather_cache is None:
            cents, docs = [], []
            for p, b in zip(self._parts[1:], self._bases[1:-1].tolist(), strict=True):
                off = p.arrays["ivf_offsets"]
                cents.append(np.repeat(np.arange(off.shape[0] - 1, dtype=np.int64), np.diff(off)))
                docs.append(np.asarray(p.arrays["ivf_docs"], dtype=np.int64) + b)
            c = np.concatenate(cents)
            order = np.argsort(c, kind="stable")  # by centroid, then part and document: sorted lists
            k = self._a["ivf_offsets"].shape[0] - 1
            merged_off = np.zeros(k + 1, dtype=np.int64)
            np.cumsum(np.bincount(c, minlength=k), out=merged_off[1:])
            merged = np.concatenate(docs)[order]
            self._gather_cache = _seg.gather([(self._a["ivf_docs"], self._a["ivf_offsets"]), (merged, merged_off)],
                                             np.zeros(3, dtype=np.int64))
        return self._gather_cache

    def search(
        self,
        query_vectors: npt.ArrayLike,
        k: int = 10,
        subset: Iterable[Id] | None = None,
        *,
        exact: bool = False,
        nprobe: int | None = None,
        n_interact: int | None = None,
        n_rerank: int | None = None,
    ) -> list[tuple[Id, float]]:
        """Top ``k`` documents for one (n_query_tokens, dim) query: ``[(id, score), ...]``, best first.

        :param subset: only documents with these ids can be returned (unknown ids are ignored).
        :param exact: score the final candidates with the full-precision side file (``keep_full=True``).
        :param nprobe, n_interact, n_rerank: candidate generation knobs (see :data:`DEFAULTS`,
            :func:`default_nprobe` and :func:`default_budget`); ``n_interact`` defaults to at least four times ``n_rerank``.
        """
        q = maxsim._check_query(query_vectors, self.dim, "query_vectors")
        if k < 1 or int(k) != k:
            raise ArgumentError(f"k must be a positive integer; got {k!r}.")
        n = len(self)
        allowed = self._allowed(subset)
        n_allowed = n if allowed is None or (subset is None) else int(allowed.sum())
        if n_allowed == 0:
            return []
        nprobe = default_nprobe(self._a["centroids"].shape[0]) if nprobe is None else nprobe
        auto_interact, auto_rerank = default_budget(n, self.nbits)
        if n_interact is None:  # four times the documents reranked (a given n_rerank raises it)
            n_interact = auto_interact if n_rerank is None else max(auto_interact, 4 * n_rerank)
        n_rerank = max(int(k), auto_rerank if n_rerank is None else n_rerank)
        qr = self._codec.rotate(q)  # the codec's space; the full-precision side file is not rotated
        if n_allowed <= n_rerank:
            docs = np.arange(n) if allowed is None else np.flatnonzero(allowed)
        else:
            docs = self._candidates(qr, allowed, nprobe, n_interact, n_rerank)
        scores = self._score(q if exact else qr, docs, exact)
        ids = self._ids
        maxsim._warn_nonfinite(scores, lambda i: ids[int(docs[i])],
                               hint=" Delete them (Index.delete) and add them again, or rebuild the index.")
        top, vals = maxsim.top_k(scores, k)
        return [(ids[int(docs[i])], float(v)) for i, v in zip(top.tolist(), vals.tolist(), strict=True)]

    def _candidates(self, q: np.ndarray, allowed: np.ndarray | None, nprobe: int, n_interact: int,
                    n_rerank: int) -> np.ndarray:
        """Sorted positions of the documents to rerank: stage 1 (probe) then 2 (centroid interaction).

        Over several parts the stages rank all their documents together (each part's inverted lists
        are concatenated per centroid): the same candidates as the compacted index.

        :param q: query vectors in the codec's space (``self._codec.rotate``).
        """
        st = _cand.centroid_scores(q, self._codec.centroids)
        cand, approx = _cand.probe(st, self._a["ivf_docs"], self._a["ivf_offsets"], int(self._bases[-1]), nprobe,
                                   allowed, self._gather())
        if cand.shape[0] > n_interact:
            keep, _ = maxsim.top_k(approx, n_interact)
            cand = np.sort(cand[keep])
        if cand.shape[0] > n_rerank:
            part, local = (self._parts[0], cand) if len(self._parts) == 1 else self._gathered(cand, names=("codes",))
            keep, _ = maxsim.top_k(_cand.interact(st, part.arrays["codes"], part.arrays["offsets"], local), n_rerank)
            cand = np.sort(cand[keep])
        return cand

    def search_many(
        self, queries: Iterable[npt.ArrayLike], k: int = 10, subset: Iterable[Id] | None = None, **options: Any
    ) -> list[list[tuple[Id, float]]]:
        """:meth:`search` for each query (same options)."""
        sub = None if subset is None else list(subset)
        return [self.search(q, k, sub, **options) for q in queries]

    # -- changes ---------------------------------------------------------------------------------
    def add(self, ids: Iterable[Id] | None, embeddings: Iterable[npt.ArrayLike], *, show_progress: bool = False) -> None:
        """Add documents, encoded with the index's codec, as a new segment; all or nothing.

        Time and disk follow the new documents, not the index: one segment file and a small manifest
        are written, then committed by one rename (a crash leaves the index as it was before or after
        the call). Their drift from the codec's training data is measured (:attr:`drift`). The
        :attr:`merge_policy` may merge segments afterwards.

        :param ids: one unique ``str``/``int`` id per document, or ``None`` for ``len(index), ...``.
        :raises IndexLockedError: another writer is changing the index.
        :raises DuplicateIdError: an id is already in the index or given twice (nothing is added).
        """
        self._change(lambda target: self._add(target, ids, embeddings))

    def delete(self, ids: Iterable[Id] | Id) -> None:
        """Remove documents by id: tombstones in the manifest (their vectors go at the next merge or
        :meth:`compact`). An unknown id raises :class:`ArgumentError` and nothing is deleted.

        :raises IndexLockedError: another writer is changing the index.
        """
        self._change(lambda target: self._delete(target, ids))

    def compact(self, *, retrain: bool = False, show_progress: bool = False) -> None:
        """Write the documents of every segment, less the deleted ones, as one file again (renamed over
        :attr:`path`: the index is then one file, as built). Search results do not change.

        :param retrain: also train the codec again on the documents' full-precision vectors (an index
            built with ``keep_full=True``) and encode every document with it, e.g. once :attr:`drift`
            says the data has moved away from the codec's training sample.
        :raises IndexLockedError: another writer is changing the index.
        """
        if retrain and self._full is None:
            raise ArgumentError(f"compact(retrain=True) needs full-precision vectors, which {self.path} does not keep: "
                                "build it with keep_full=True, or rebuild it with Index.build from the embeddings.")
        self._change(lambda target: self._compact_if_needed(target, retrain), policy=False)

    def _compact_if_needed(self, target: str, retrain: bool) -> bool:
        """:meth:`_compact`, unless the index is one file with nothing deleted and no retraining asked."""
        if not retrain and self._state.manifest is None and len(self._parts) == 1 and not self._parts[0].deleted.size:
            return False
        return self._compact(target, retrain)

    def _add_at(self, target: str, ids: Iterable[Id] | None, embeddings: Iterable[npt.ArrayLike]) -> None:
        """:meth:`add`, the new state written at ``target`` (a :class:`~lightcol.DocumentIndex` commits it)."""
        self._change(lambda t: self._add(t, ids, embeddings), target)

    def _delete_at(self, target: str, ids: Iterable[Id]) -> None:
        """:meth:`delete`, the new state written at ``target``."""
        self._change(lambda t: self._delete(t, ids), target)

    def _change(self, write: Any, target: str | None = None, policy: bool = True) -> None:
        """Run ``write(target)`` (which commits a new state at ``target``), then follow it.

        Without ``target``: at :attr:`path`, holding the write lock, after following any change another
        writer committed; the files no longer used are deleted afterwards. With ``target`` (a
        :class:`~lightcol.DocumentIndex`: its lock is held, its database commits, it deletes files).
        """
        if target is not None:
            if write(target) is not False:
                self._adopt(target)
                if policy:
                    self._apply_policy(target)
            return
        with _durable.write_lock(self.path, "index"):
            self.refresh()
            if write(self.path) is False:
                return
            self._adopt(self.path)
            _seg.collect(self.path, self._state)
            if policy:
                self._apply_policy(self.path, collect=True)

    def _adopt(self, target: str) -> None:
        identity = _seg.identity(target)
        state = _seg.read(target, _read_ids, {p.file: p for p in self._parts[1:]})
        policy = self.merge_policy
        self._set_state(target, state)
        self.merge_policy = policy
        self._identity = identity

    def _extra(self) -> dict[str, Any]:
        """Index-level facts a change carries over (drift statistics, an estimated drift reference)."""
        return {k: self.meta[k] for k in ("drift", "drift_reference") if k in self.meta}

    def _upgraded(self, target: str, generation: int) -> list[_seg.Part]:
        """The parts, the base hard-linked to a name of its own if the new manifest takes its place."""
        parts = list(self._parts)
        base = parts[0]
        folder = os.path.dirname(target)
        if self._state.manifest is None and os.path.join(folder, base.file) == target:
            name = _seg.data_name(target, generation, "base")
            _durable.link_or_copy(target, os.path.join(folder, name))
            full = None
            if base.full_file is not None:
                full = name + ".full"
                _durable.link_or_copy(os.path.join(folder, base.full_file), os.path.join(folder, full))
            parts[0] = dataclasses.replace(base, file=name, full_file=full)
        return parts

    def _add(self, target: str, ids: Iterable[Id] | None, embeddings: Iterable[npt.ArrayLike]) -> bool:
        new_ids: list[Id] = []
        vecs: list[np.ndarray] = []
        for doc_id, a in _documents(ids, embeddings, self.dim, self._positions(), len(self)):  # type: ignore[arg-type]
            new_ids.append(doc_id)
            vecs.append(a)
        if not new_ids:
            return False
        x = np.concatenate(vecs)
        codes, residuals = self._codec.encode(x)
        offsets = np.zeros(len(vecs) + 1, dtype=np.int64)
        np.cumsum([v.shape[0] for v in vecs], out=offsets[1:])
        extra = self._extra()
        if "drift_reference" not in self.meta:  # an index built before drift was measured: estimate it once
            extra["drift_reference"] = _drift.estimate_reference(self._codec, self._parts[0].arrays)
        extra["drift"] = _drift.accumulate(extra.get("drift"), extra["drift_reference"], self._codec, x, codes)
        drift = _drift.summary(extra["drift"], extra["drift_reference"])
        if drift["drifted"] and self._full is None:
            warnings.warn(f"documents added to {self.path} have drifted from the codec's training data "
                          f"(residual ratio {drift['residual_ratio']:.2f}, far share {drift['far_share']:.3f}): they "
                          "are stored with more error; rebuild the index (Index.build) from the embeddings, or build "
                          "with keep_full=True so compact(retrain=True) can retrain.", DriftWarning, stacklevel=4)
        generation = self._state.generation + 1
        parts = self._upgraded(target, generation)
        name = _seg.data_name(target, generation, "seg")
        full = None if self._full is None else x.astype(np.float16)
        _seg.write_segment(os.path.join(os.path.dirname(target), name), codes, residuals, offsets, _ids_array(new_ids),
                           self._codec.centroids.shape[0], full, {"dim": self.dim})
        _seg.write_manifest(target, generation, [*parts, _seg.stub(name)], extra)
        return True

    def _delete(self, target: str, ids: Iterable[Id] | Id) -> bool:
        pos = self._positions()
        drop = [ids] if isinstance(ids, (str, int)) else list(ids)
        missing = [d for d in drop if d not in pos]
        if missing:
            raise ArgumentError(f"id(s) {missing[:5]!r} not in the index; nothing was deleted.")
        if not drop:
            return False
        rows = np.unique(np.array([pos[d] for d in drop], dtype=np.int64))
        generation = self._state.generation + 1
        parts = self._upgraded(target, generation)
        cuts = np.searchsorted(rows, self._bases).tolist()
        for i, p in enumerate(parts):
            if cuts[i + 1] > cuts[i]:
                local = rows[cuts[i] : cuts[i + 1]] - self._bases[i]
                parts[i] = dataclasses.replace(p, deleted=np.union1d(p.deleted, local))
        _seg.write_manifest(target, generation, parts, self._extra())
        return True

    def _live_steps(self, parts: Sequence[_seg.Part], step: int | None = None) -> Iterator[tuple[_seg.Part, np.ndarray, np.ndarray]]:
        """``(part, documents, their token indices)`` for the live documents of ``parts``, in order,
        about ``step`` tokens (default ``16 * _ENCODE_CHUNK``) at a time, looking at as many documents
        at a time (per-document arrays stay that size, whatever the index's)."""
        step = _ENCODE_CHUNK * 16 if step is None else step
        for p in parts:
            off = p.arrays["offsets"]
            for w in range(0, p.n_docs, step):
                e = min(w + step, p.n_docs)
                dead = p.deleted[np.searchsorted(p.deleted, w) : np.searchsorted(p.deleted, e)]
                keep = np.setdiff1d(np.arange(w, e, dtype=np.int64), dead, assume_unique=True)
                for a, b in _cand.token_steps(off[keep + 1] - off[keep], step):
                    docs = keep[a:b]
                    yield p, docs, _cand.token_ranges(off, docs)[0]

    def _compact(self, target: str, retrain: bool) -> bool:
        codec = self._codec
        meta = {k: v for k, v in self.meta.items() if k not in (*_DERIVED, *_STATE)}
        if retrain:
            sample_tokens = int(self.meta.get("sample_tokens", 1 << 20))
            sample = []
            got = 0
            for p, _, idx in self._live_steps(self._parts):
                sample.append(np.asarray(p.full[idx[: sample_tokens - got]], dtype=np.float32))  # type: ignore[index]
                got += sample[-1].shape[0]
                if got >= sample_tokens:
                    break
            x = np.concatenate(sample)
            codec = _codec.train(x, self.nbits, int(self.meta["n_centroids"]), seed=int(self.meta.get("seed", 0)),
                                 iters=int(self.meta.get("kmeans_iters", 4)))
            meta["drift_reference"] = _drift.reference(codec, x)
            meta.pop("drift", None)
            del sample, x
        generation = self._state.generation + 1
        # as a build does (lightcol/index/external.py), per-vector and per-document state goes to temporary
        # files beside the index, so memory is set by ``sample_tokens``, not by the number of documents
        folder = os.path.dirname(target)
        budget = max(1 << 20, int(self.meta.get("sample_tokens", 1 << 20)) * self.dim * 4)
        # temporary names the next writer recognises (and deletes) should this one be killed
        own = f".{os.path.basename(target)}.g{generation}."
        code_col = _external.Column(folder, codec.code_dtype, "codes", own)
        len_col = _external.Column(folder, np.int64, "lengths", own)
        ivf = _external.IvfSpill(folder, codec.centroids.shape[0], own)
        id_spill = _external.IdSpill(folder, own)
        writer = _storage.Writer(target, tmp_prefix=own + "compact.")
        try:
            writer.begin("residuals", np.uint8, (codec.code_bytes,))
            for p, docs, idx in self._live_steps(self._parts):
                off = p.arrays["offsets"]
                lens = off[docs + 1] - off[docs]
                if retrain:
                    c, r = codec.encode(np.asarray(p.full[idx], dtype=np.float32))  # type: ignore[index]
                else:
                    c, r = p.arrays["codes"][idx], p.arrays["residuals"][idx]
                ivf.add(c, lens, len_col.n)
                code_col.append(c)
                len_col.append(lens)
                id_spill.extend(np.asarray(p.ids._a)[docs] if isinstance(p.ids, _IntIds)  # type: ignore[attr-defined]
                                else [p.ids[i] for i in docs.tolist()])
                writer.extend(r)
            writer.end()
            if self._full is not None:
                writer.begin("full", np.float16, (self.dim,))
                for p, _, idx in self._live_steps(self._parts):
                    writer.extend(p.full[idx])  # type: ignore[index]
                writer.end()
            meta["generation"] = generation
            _write_spilled(writer, code_col, len_col, ivf, budget, codec, id_spill)
            writer.commit(_full_meta(meta, codec, len_col.n, code_col.n))
        except BaseException:
            writer.abort()
            raise
        finally:
            for spill in (id_spill, code_col, len_col, ivf):
                spill.close()
        return True

    def _live_ids(self, parts: Sequence[_seg.Part]) -> np.ndarray | list[Id]:
        """Ids of the live documents of ``parts``, in order: an int64 array when all are stored so."""
        if all(isinstance(p.ids, _IntIds) for p in parts):
            arrays = [np.asarray(p.ids._a) for p in parts]  # type: ignore[attr-defined]
            return np.concatenate([np.delete(a, p.deleted) for a, p in zip(arrays, parts, strict=True)])
        out: list[Id] = []
        for p in parts:
            dead = set(p.deleted.tolist())
            out.extend(d for i, d in enumerate(p.ids) if i not in dead)
        return out

    def _merge(self, target: str, i: int, j: int) -> bool:
        """Merge segments ``i..j-1`` (not the base) into one segment, dropping deleted documents."""
        parts = self._parts[i:j]
        codes, residuals, full, lens = [], [], [], []
        for p, docs, idx in self._live_steps(parts):
            off = p.arrays["offsets"]
            lens.append(off[docs + 1] - off[docs])
            codes.append(p.arrays["codes"][idx])
            residuals.append(p.arrays["residuals"][idx])
            if self._full is not None:
                full.append(p.full[idx])  # type: ignore[index]
        generation = self._state.generation + 1
        new: list[_seg.Part] = []
        if lens:
            name = _seg.data_name(target, generation, "seg")
            ln = np.concatenate(lens)
            offsets = np.zeros(ln.shape[0] + 1, dtype=np.int64)
            np.cumsum(ln, out=offsets[1:])
            ids = self._live_ids(parts)
            _seg.write_segment(os.path.join(os.path.dirname(target), name), np.concatenate(codes), np.concatenate(residuals),
                               offsets, _ids_array(ids),
                               self._codec.centroids.shape[0], np.concatenate(full) if full else None, {"dim": self.dim})
            new.append(_seg.stub(name))
        rest = self._upgraded(target, generation)
        _seg.write_manifest(target, generation, [*rest[:i], *new, *rest[j:]], self._extra())
        return True

    def _apply_policy(self, target: str, collect: bool = False) -> None:
        """Merge as :attr:`merge_policy` says (each merge its own commit), retrain on drift if possible."""
        policy = self.merge_policy
        if policy is None:
            return
        while True:
            plan = policy.plan(self)
            if plan is None:
                return
            if plan == "retrain" and self._full is None:
                plan = "compact"
            if plan in ("compact", "retrain"):
                self._compact(target, plan == "retrain")
            else:
                self._merge(target, *plan)
            self._adopt(target)
            if collect:
                _seg.collect(target, self._state)


class _ConcatIds(Sequence[Id]):
    """The ids of several parts as one sequence (global positions)."""

    __slots__ = ("_parts", "_bases")

    def __init__(self, parts: list[Sequence[Id]], bases: np.ndarray) -> None:
        self._parts = parts
        self._bases = bases

    def __len__(self) -> int:
        return int(self._bases[-1])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        p = int(np.searchsorted(self._bases, i, side="right")) - 1
        return self._parts[p][i - int(self._bases[p])]

    def __iter__(self) -> Iterator[Id]:
        for p in self._parts:
            yield from p


@dataclasses.dataclass
class MergePolicy:
    """When a change is followed by merges (each its own commit, inside the same call).

    :param max_segments: more segments than this: the two adjacent ones with the fewest documents are
        merged into one (cost: their size), until there are this many.
    :param max_deleted: deleted documents over this share of those stored: :meth:`Index.compact`.
    :param max_added: documents in segments over this multiple of the base's: :meth:`Index.compact`
        (the cost of all merges stays proportional to what was added).
    :param retrain_on_drift: retrain the codec (``compact(retrain=True)``) once :attr:`Index.drift`
        says ``drifted`` - only an index with full-precision vectors (``keep_full=True``); others
        warn (:class:`~lightcol.errors.DriftWarning`).
    """

    max_segments: int = 10
    max_deleted: float = 0.25
    max_added: float = 1.0
    retrain_on_drift: bool = True

    def plan(self, index: Index) -> str | tuple[int, int] | None:
        """The next merge for ``index``: ``"retrain"``, ``"compact"``, ``(i, j)`` (merge parts
        ``i..j-1``) or ``None``."""
        parts = index._parts
        if len(parts) == 1 and not parts[0].deleted.size:
            return None
        drift = index.drift
        if self.retrain_on_drift and drift is not None and drift["drifted"] and index._full is not None:
            return "retrain"
        stored = int(index._bases[-1])
        if index.n_deleted > self.max_deleted * stored:
            return "compact"
        if stored - parts[0].n_docs > self.max_added * max(parts[0].n_docs, 1):
            return "compact"
        for i, p in enumerate(parts[1:], 1):
            if p.n_live == 0:  # a segment whose documents are all deleted: drop it
                return i, i + 1
        if len(parts) - 1 > self.max_segments:
            sizes = [p.n_live for p in parts]
            i = min(range(1, len(parts) - 1), key=lambda i: sizes[i] + sizes[i + 1])
            return i, i + 2
        return None


class _IntIds(Sequence[int]):
    """Integer ids read from the file's int64 array: opening 10M ids costs a memory map, not a list."""

    __slots__ = ("_a",)

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __len__(self) -> int:
        return int(self._a.shape[0])

    def __getitem__(self, i: Any) -> Any:
        return self._a[i].tolist() if isinstance(i, slice) else int(self._a[i])

    def __iter__(self) -> Iterator[int]:
        return iter(self._a.tolist())


def _ids_array(ids: Sequence[Id]) -> np.ndarray:
    """Ids as stored: int64 when every id is an int that fits (format 3), else UTF-8 JSON bytes."""
    if isinstance(ids, np.ndarray) and ids.dtype == np.int64:  # already stored so
        return ids.reshape(-1)
    if all(type(d) is int for d in ids):
        try:
            return np.asarray(ids, dtype=np.int64).reshape(-1)
        except OverflowError:
            pass
    return np.frombuffer(json.dumps(list(ids)).encode("utf-8"), dtype=np.uint8)


def _read_ids(a: np.ndarray, path: str) -> Sequence[Id]:
    if a.dtype == np.int64 and a.ndim == 1:
        return _IntIds(a)
    try:
        if a.dtype != np.uint8:
            raise ValueError(f"ids stored as {a.dtype}")
        ids = json.loads(a.tobytes().decode("utf-8")) if a.size else []
        if not isinstance(ids, list):
            raise ValueError("ids are not a list")
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise IndexFormatError(f"{path} is a corrupted lightcol index (ids unreadable: {e}); rebuild it.") from None
    return ids


_DERIVED = ("format", "dim", "nbits", "n_centroids", "n_docs", "n_tokens", "format_version")
#: what an open index adds to ``meta`` about its state (segments, tombstones), never written by a build
_STATE = ("n_segments", "n_deleted", "generation")


def _drained(items: collections.deque[Any]) -> Iterator[Any]:
    """Items of ``items``, each dropped from it as it is given (so it can be freed once used)."""
    while items:
        yield items.popleft()


def _counted(items: Iterable[Any], bar: Any) -> Iterator[Any]:
    for item in items:
        bar.update(1)
        yield item


def _finish(writer: _storage.Writer, codec: _codec.Codec, codes: np.ndarray, offsets: np.ndarray, ids: Sequence[Id],
            meta: dict[str, Any]) -> None:
    """Write everything but the residuals (already written) and commit the file."""
    writer.array("codes", codes.astype(codec.code_dtype, copy=False))
    writer.array("offsets", offsets)
    ivf_docs, ivf_offsets = _cand.build_ivf(codes, offsets, codec.centroids.shape[0])
    writer.array("ivf_docs", ivf_docs)
    writer.array("ivf_offsets", ivf_offsets)
    _finish_tables(writer, codec)
    writer.array("ids", _ids_array(ids))
    writer.commit(_full_meta(meta, codec, len(ids), int(codes.shape[0])))


def _finish_tables(writer: _storage.Writer, codec: _codec.Codec) -> None:
    """The codec's tables: centroids (float16), residual codebooks, the rotation and the centroid groups."""
    writer.array("centroids", codec.centroids.astype(np.float16))
    writer.array("books", codec.books)
    if codec.rotation is not None:
        writer.array("rotation", codec.rotation)
    for name, a in _codec.group_arrays(codec).items():
        writer.array(name, a)


def _full_meta(meta: dict[str, Any], codec: _codec.Codec, n_docs: int, n_tokens: int) -> dict[str, Any]:
    return {**meta, "format": _FORMAT, "format_version": _storage.FORMAT_VERSION, "dim": codec.dim,
            "nbits": codec.nbits, "n_centroids": int(codec.centroids.shape[0]), "n_docs": n_docs, "n_tokens": n_tokens}
