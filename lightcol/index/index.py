"""``Index``: a compressed, memory-mapped ColBERT index in one file, searched without reading all of it.

Build streams documents to disk (the codec is trained on the first ``sample_tokens`` vectors), open
memory-maps the file, search generates candidates from centroids (:mod:`.candidates`) and scores
the best of them exactly by MaxSim on decoded vectors (or on full-precision float16 vectors kept in
a side file ``<path>.full`` when built with ``keep_full=True`` and searched with ``exact=True``).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lightcol import maxsim
from lightcol.collection import Id, _check_id
from lightcol.errors import ArgumentError, DuplicateIdError, IndexFormatError, ShapeError
from lightcol.index import candidates as _cand
from lightcol.index import codec as _codec
from lightcol.index import external as _external
from lightcol.index import storage as _storage
from lightcol.maxsim import PackedDocuments

__all__ = ["Index"]

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
    """A compressed multi-vector index in one memory-mapped file. Create with :meth:`build`, reopen with :meth:`open`."""

    def __init__(self, path: str, meta: dict[str, Any], arrays: dict[str, np.ndarray], full: np.ndarray | None) -> None:
        self.path = path
        self.meta = meta
        self._a = arrays
        self._full = full
        rot = arrays.get("rotation")  # absent in format 3 and earlier: no rotation
        self._codec = _codec.Codec(np.asarray(arrays["centroids"], dtype=np.float32), np.asarray(arrays["books"], dtype=np.float32),
                                   int(meta["nbits"]), None if rot is None else np.asarray(rot, dtype=np.float32))
        self._lut = self._codec.lut()
        self._ids: Sequence[Id] = _read_ids(arrays["ids"], path)
        self._pos: dict[Id, int] | None = None

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
        return list(self._ids)

    @property
    def n_tokens(self) -> int:
        return int(self._a["codes"].shape[0])

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._positions()

    def __repr__(self) -> str:
        return (f"Index({self.path!r}, n_docs={len(self)}, n_tokens={self.n_tokens}, dim={self.dim}, "
                f"nbits={self.nbits}, n_centroids={self._a['centroids'].shape[0]})")

    def _positions(self) -> dict[Id, int]:
        if self._pos is None:
            self._pos = {d: i for i, d in enumerate(self._ids)}
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
        """
        path = os.path.abspath(os.fspath(path))
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
        del buf
        folder = os.path.dirname(path)
        writer = _storage.Writer(path)
        full = _storage.Writer(path + ".full") if keep_full else None
        spilled = _external.IdSpill(folder)
        code_col = _external.Column(folder, codec.code_dtype, "codes")
        len_col = _external.Column(folder, np.int64, "lengths")
        ivf = _external.IvfSpill(folder, codec.centroids.shape[0])
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
                    "kmeans_iters": kmeans_iters}
            if rules is not None:
                meta["rules"] = rules
            # the same arrays, in the same order, as _finish writes from memory
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
            spilled.write(writer, "ids")
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
        return cls.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, verify: bool = False) -> Index:
        """Memory-map an index file (nothing but the small arrays is read until a search needs it).

        :param verify: check every array's checksum (reads the whole file).
        :raises IndexFormatError: not an index, truncated or corrupted; :class:`IndexVersionError`:
            a newer format version.
        """
        path = os.path.abspath(os.fspath(path))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no index file at {path}; build one with lightcol.Index.build.")
        meta, arrays = _storage.open_arrays(path, verify=verify)
        need = {"residuals", "codes", "offsets", "ivf_docs", "ivf_offsets", "centroids", "books", "ids"}
        if meta.get("format") != _FORMAT or not need <= set(arrays):
            raise IndexFormatError(f"{path} is not a lightcol index (missing {sorted(need - set(arrays))}).")
        off, codes = arrays["offsets"], arrays["codes"]
        if (off.ndim != 1 or off[0] != 0 or off[-1] != codes.shape[0] or arrays["residuals"].shape[0] != codes.shape[0]
                or arrays["centroids"].shape[1] != meta["dim"]):
            raise IndexFormatError(f"{path} is a corrupted lightcol index (inconsistent arrays); rebuild it.")
        full = None
        if os.path.isfile(path + ".full"):
            fmeta, farr = _storage.open_arrays(path + ".full")
            if fmeta.get("dim") == meta["dim"] and farr["vectors"].shape[0] == codes.shape[0]:
                full = farr["vectors"]
        self = cls(path, meta, arrays, full)
        if len(self._ids) != off.shape[0] - 1:
            raise IndexFormatError(f"{path} is a corrupted lightcol index (ids do not match documents); rebuild it.")
        return self

    # -- search ----------------------------------------------------------------------------------
    def _allowed(self, subset: Iterable[Id] | None) -> np.ndarray | None:
        if subset is None:
            return None
        pos = self._positions()
        mask = np.zeros(len(self), dtype=bool)
        rows = [pos[d] for d in subset if d in pos]
        mask[rows] = True
        return mask

    def _vectors(self, docs: np.ndarray, exact: bool) -> PackedDocuments:
        """Vectors of ``docs``: full precision from the side file (``exact``), else decoded (rotated)."""
        idx, local = _cand.token_ranges(self._a["offsets"], docs)
        if exact:
            if self._full is None:
                raise ArgumentError(f"exact=True needs full-precision vectors: rebuild {self.path} with keep_full=True.")
            v = np.asarray(self._full[idx], dtype=np.float32)
        else:
            v = self._codec.decode(self._a["codes"][idx], self._a["residuals"][idx], self._lut)
        return PackedDocuments._trusted(v, local)

    def _score(self, q: np.ndarray, docs: np.ndarray, exact: bool) -> np.ndarray:
        """MaxSim of ``q`` against ``docs``, decoded (or read) and scored ``_SCORE_TOKENS`` tokens at a time.

        Decoding all candidates at once allocates ~25 MB of temporaries per query (146 CISI abstracts);
        memory that large is handed back to the OS when freed and page-faulted again by the next query,
        which cost 6 of 22 ms per CISI search. Steps of 4,096 tokens reuse the same few MB.
        """
        off = self._a["offsets"]
        out = np.empty(docs.shape[0], dtype=np.float32)
        for a, b in _cand.token_steps(off[docs + 1] - off[docs], _SCORE_TOKENS):
            out[a:b] = maxsim.score(q, self._vectors(docs[a:b], exact))
        return out

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
        :param nprobe, n_interact, n_rerank: candidate generation knobs (see :data:`DEFAULTS` and
            :func:`default_budget`); ``n_interact`` defaults to at least four times ``n_rerank``.
        """
        q = maxsim._check_query(query_vectors, self.dim, "query_vectors")
        if k < 1 or int(k) != k:
            raise ArgumentError(f"k must be a positive integer; got {k!r}.")
        n = len(self)
        allowed = self._allowed(subset)
        n_allowed = n if allowed is None else int(allowed.sum())
        if n_allowed == 0:
            return []
        nprobe = DEFAULTS["nprobe"] if nprobe is None else nprobe
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
        top, vals = maxsim.top_k(scores, k)
        ids = self._ids
        return [(ids[int(docs[i])], float(v)) for i, v in zip(top.tolist(), vals.tolist(), strict=True)]

    def _candidates(self, q: np.ndarray, allowed: np.ndarray | None, nprobe: int, n_interact: int,
                    n_rerank: int) -> np.ndarray:
        """Sorted positions of the documents to rerank: stage 1 (probe) then 2 (centroid interaction).

        :param q: query vectors in the codec's space (``self._codec.rotate``).
        """
        st = _cand.centroid_scores(q, self._codec.centroids)
        cand, approx = _cand.probe(st, self._a["ivf_docs"], self._a["ivf_offsets"], len(self), nprobe, allowed)
        if cand.shape[0] > n_interact:
            keep, _ = maxsim.top_k(approx, n_interact)
            cand = np.sort(cand[keep])
        if cand.shape[0] > n_rerank:
            keep, _ = maxsim.top_k(_cand.interact(st, self._a["codes"], self._a["offsets"], cand), n_rerank)
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
        """Append documents (encoded with the existing codec) and rewrite the file atomically.

        All or nothing: on any error the file and this object are unchanged. Rewrites the whole file
        (cost ~ index size); batch additions. Retrain (rebuild) when the data drifts far from the sample.
        """
        new_ids: list[Id] = []
        vecs: list[np.ndarray] = []
        for doc_id, a in _documents(ids, embeddings, self.dim, set(self._positions()), len(self)):
            new_ids.append(doc_id)
            vecs.append(a)
        if not new_ids:
            return
        x = np.concatenate(vecs) if vecs else np.empty((0, self.dim), np.float32)
        c, r = self._codec.encode(x)
        lengths = np.array([len(v) for v in vecs], dtype=np.int64)
        off = self._a["offsets"]
        offsets = np.concatenate([off, off[-1] + np.cumsum(lengths)])
        full = None
        if self._full is not None:
            full = np.concatenate([np.asarray(self._full), x.astype(np.float16)])
        self._rewrite(np.concatenate([np.asarray(self._a["codes"]), c]),
                      np.concatenate([np.asarray(self._a["residuals"]), r]), offsets, [*self._ids, *new_ids], full)

    def delete(self, ids: Iterable[Id]) -> None:
        """Remove documents by id and rewrite the file atomically; an unknown id raises :class:`ArgumentError`."""
        pos = self._positions()
        drop = list(ids) if not isinstance(ids, (str, int)) else [ids]
        missing = [d for d in drop if d not in pos]
        if missing:
            raise ArgumentError(f"id(s) {missing[:5]!r} not in the index; nothing was deleted.")
        keep_doc = np.ones(len(self), dtype=bool)
        keep_doc[[pos[d] for d in drop]] = False
        off = self._a["offsets"]
        lengths = np.diff(off)
        keep_tok = np.repeat(keep_doc, lengths)
        offsets = np.zeros(int(keep_doc.sum()) + 1, dtype=np.int64)
        np.cumsum(lengths[keep_doc], out=offsets[1:])
        full = None if self._full is None else np.asarray(self._full)[keep_tok]
        self._rewrite(np.asarray(self._a["codes"])[keep_tok], np.asarray(self._a["residuals"])[keep_tok], offsets,
                      [d for d, k in zip(self._ids, keep_doc.tolist(), strict=True) if k], full)

    def _rewrite(self, codes: np.ndarray, residuals: np.ndarray, offsets: np.ndarray, ids: Sequence[Id],
                 full: np.ndarray | None) -> None:
        meta = {k: v for k, v in self.meta.items() if k not in _DERIVED}
        writer = _storage.Writer(self.path)
        fw = _storage.Writer(self.path + ".full") if full is not None else None
        try:
            writer.array("residuals", residuals)
            if fw is not None:
                fw.array("vectors", full)
                fw.commit({"format": _FORMAT + "-full", "dim": self.dim})
            _finish(writer, self._codec, codes, offsets, ids, meta)
        except BaseException:
            writer.abort()
            if fw is not None:
                fw.abort()
            raise
        fresh = Index.open(self.path)
        self.__dict__.update(fresh.__dict__)


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
    """The codec's tables: centroids (float16), residual codebooks and the rotation."""
    writer.array("centroids", codec.centroids.astype(np.float16))
    writer.array("books", codec.books)
    if codec.rotation is not None:
        writer.array("rotation", codec.rotation)


def _full_meta(meta: dict[str, Any], codec: _codec.Codec, n_docs: int, n_tokens: int) -> dict[str, Any]:
    return {**meta, "format": _FORMAT, "format_version": _storage.FORMAT_VERSION, "dim": codec.dim,
            "nbits": codec.nbits, "n_centroids": int(codec.centroids.shape[0]), "n_docs": n_docs, "n_tokens": n_tokens}
