"""``DocumentIndex``: documents in, passages with their text and metadata out (RAGatouille's workflow).

A folder holds ``documents.sqlite`` (texts, ids, metadata, passage spans, settings; standard-library
SQLite) and one vector file: a :class:`~lightcol.MultiVectorCollection` (``backend="collection"``,
exact MaxSim, small corpora) or a compressed :class:`~lightcol.Index` (``backend="index"``, large
corpora). A change never rewrites the stored vectors: it writes the new documents' vectors as one
more segment file, or tombstones for deleted ones, and a small manifest naming the files of the new
state (:mod:`lightcol.index.segments`, :mod:`lightcol.collection_segments`); then one SQLite
transaction switches to that manifest: a crash at any point leaves the previous state readable.
One writer at a time (a lock file, ``documents.lock``: :class:`~lightcol.errors.IndexLockedError`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lightcol import _validate
from lightcol.errors import ArgumentError, DuplicateIdError, IncompatibleModelError, IndexFormatError

__all__ = ["DocumentIndex"]

DB_NAME = "documents.sqlite"
_FORMAT = "lightcol-document-index"
#: 2: metadata ``fields`` (filters) and the FTS5 ``passages_fts`` (keyword search); a version 1 index
#: gains them, atomically, the first time it is opened
_FORMAT_VERSION = 2
_BACKENDS = {"collection": ".npz", "index": ".index"}
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id TEXT NOT NULL UNIQUE,   -- JSON: "abc" or 7 (str and int ids stay distinct)
    text TEXT NOT NULL,
    metadata TEXT                       -- JSON object, or NULL
);
CREATE TABLE passages (
    passage_id INTEGER PRIMARY KEY,     -- the id of its vectors in the vector file
    doc_key INTEGER NOT NULL REFERENCES documents(key) ON DELETE CASCADE,
    start INTEGER NOT NULL,             -- character span in the document's text
    end INTEGER NOT NULL
);
CREATE INDEX passages_doc ON passages(doc_key);
"""
_IN_CHUNK = 500  # ids per "IN (...)" query (below SQLite's variable limit everywhere)
_MODES = ("maxsim", "keyword", "hybrid")
_FUSIONS = ("relative", "rrf")
#: search mode, MaxSim weight and fusion by default: chosen on CISI (nDCG@10 by document, MiniLM benchmark
#: model): keyword 0.327, MaxSim 0.364, hybrid relative alpha 0.5 / 0.6 / 0.7: 0.399 / 0.405 / 0.404,
#: rrf alpha 0.5: 0.405 (recall@100 0.482 relative 0.6, 0.473 rrf); docs/documents.md
DEFAULT_MODE = "hybrid"
DEFAULT_ALPHA = 0.6
DEFAULT_FUSION = "relative"
#: passages each ranking contributes to a hybrid fusion (at least ``k``)
HYBRID_DEPTH = 100
#: how ``by_document`` scores a document from its passages' MaxSim scores: ``("max", 0)`` its best
#: passage; ``("lead", w)`` ``(1 - w) * best + w * first passage``; ``("mean", w)`` ``(1 - w) * best +
#: w * mean of all``. ``("lead", 0.3)`` is the one measured never worse than truncation (64-token model,
#: nDCG@10): CISI 0.380 (truncation 0.360, best passage 0.376), gcide-3000 headword look-ups 0.260
#: (0.254, 0.214), gcide-3000 definition words 0.820 (0.742, 0.848); benchmarks/bench_document_scores.py
DOCUMENT_AGGREGATION: tuple[str, float] = ("lead", 0.3)


def document_id_for(text: str) -> str:
    """The id given to a document added without one: the first 32 hex digits of its text's SHA-256 (UTF-8)."""
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _as_model(model: Any, variant: str | None = None, **options: Any) -> Any:
    """A :class:`~lightcol.LateInteractionTextEmbedding`, given one, a registry name or a model folder."""
    from lightcol.embedding import LateInteractionTextEmbedding

    if isinstance(model, LateInteractionTextEmbedding):
        return model
    if isinstance(model, (str, os.PathLike)):
        if os.path.isdir(model):
            return LateInteractionTextEmbedding(specific_model_path=model, model_variant=variant, **options)
        return LateInteractionTextEmbedding(os.fspath(model), model_variant=variant, **options)
    raise ArgumentError(
        f"model must be a LateInteractionTextEmbedding, a model name or a model folder; got {type(model).__name__}."
    )


def _check_id(doc_id: Any, i: int) -> str | int:
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise ArgumentError(f"document_ids[{i}] is {doc_id!r} ({type(doc_id).__name__}); ids must be str or int.")
    return doc_id


def _metadata_json(value: Any, i: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ArgumentError(
            f"metadata[{i}] is {type(value).__name__}; each document's metadata must be a dict (or None)."
        )
    try:
        return json.dumps(dict(value), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ArgumentError(
            f"metadata[{i}] is not JSON-serialisable ({e}); use str, int, float, bool, None, lists and dicts of them."
        ) from None


class DocumentIndex:
    """Documents split into passages, embedded and searchable by text; results carry content and metadata.

    Create with :meth:`create`, reopen with :meth:`open`. ``len(index)`` counts documents.
    Single writer: one process at a time may change an index (any number may read a committed one).
    """

    def __init__(self, path: Path, model: Any, conn: Any, meta: dict[str, Any]) -> None:
        self.path = path
        self.model = model
        self._conn = conn
        self._meta = meta
        self._lock = threading.RLock()
        self._vectors: Any = None
        from lightcol.keyword import Stats

        self._keyword_stats = Stats()
        self._load_vectors()

    # -- create / open ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        model: Any,
        *,
        texts: Sequence[str] | None = None,
        document_ids: Sequence[str | int] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        split_documents: bool = True,
        max_document_length: int | None = None,
        overlap_tokens: int = 0,
        backend: str = "collection",
        nbits: int = 2,
        dtype: str = "float32",
        batch_size: int = 64,
        overwrite: bool = False,
    ) -> DocumentIndex:
        """Create an index in the folder ``path`` (and add ``texts``, with ``document_ids`` and
        ``metadata``, if given: see :meth:`add`).

        Args:
            model: a :class:`~lightcol.LateInteractionTextEmbedding`, a registry name or a model
                folder; recorded (name, and folder when not from the cache) for :meth:`open`.
            split_documents: cut documents into passages that fit (:func:`lightcol.split_documents`);
                ``False``: one passage per document, truncated by the model at its document length.
            max_document_length: tokens per passage (specials included); default and at most the
                model's document length.
            overlap_tokens: tokens (whole words) the end of a passage shares with the next.
            backend: ``"collection"`` (exact MaxSim, all vectors in memory) or ``"index"``
                (compressed :class:`~lightcol.Index`, ``nbits`` per dimension; its codec is trained on
                the first :meth:`add`, so give most documents at once).
            dtype: storage of the ``"collection"`` backend: ``"float32"`` or ``"float16"``.
            overwrite: replace an index already in ``path`` (else :class:`FileExistsError`).
        """
        import sqlite3

        from lightcol import splitting

        if backend not in _BACKENDS:
            raise ArgumentError(f"backend must be 'collection' or 'index', got {backend!r}.")
        if nbits not in (1, 2, 4, 8):
            raise ArgumentError(f"nbits must be 1, 2, 4 or 8, got {nbits!r}.")
        if dtype not in ("float32", "float16"):
            raise ArgumentError(f"dtype must be 'float32' or 'float16', got {dtype!r}.")
        _validate.integer("batch_size", batch_size, minimum=1)
        model = _as_model(model)
        if not split_documents and (max_document_length is not None or overlap_tokens):
            raise ArgumentError(
                "max_document_length and overlap_tokens apply to split documents; set split_documents=True."
            )
        limit = splitting.passage_budget(model, max_document_length, "max_document_length")
        overlap = _validate.integer("overlap_tokens", overlap_tokens, minimum=0)
        if overlap is not None and overlap >= limit - splitting.SPECIAL_TOKENS:
            raise ArgumentError(f"overlap_tokens={overlap} must be less than the {limit - splitting.SPECIAL_TOKENS} "
                                "text tokens of a passage.")
        folder = Path(path).absolute()
        db = folder / DB_NAME
        if db.exists():
            if not overwrite:
                raise FileExistsError(f"{folder} already holds a document index; open it with DocumentIndex.open, "
                                      "or pass overwrite=True to replace it.")
            for f in folder.iterdir():
                if f.name.startswith(DB_NAME) or f.name.startswith("vectors-"):
                    f.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "model": model.spec.model,
            "model_path": None if model._from_cache else str(model.model_dir),
            "model_variant": model.model_variant,
            "dim": model.dim,
            "rules": asdict(model.spec.rules),
            "split_documents": bool(split_documents),
            "max_tokens": limit,
            "overlap_tokens": overlap,
            "backend": backend,
            "nbits": nbits,
            "dtype": dtype,
            "batch_size": batch_size,
            "vectors": None,
            "generation": 0,
            "next_passage_id": 0,
        }
        tmp = folder / f".{DB_NAME}.creating"
        tmp.unlink(missing_ok=True)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("BEGIN")
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(stmt)
            _add_search_tables(conn)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.replace(tmp, db)  # the index exists once complete
        self = cls(folder, model, _connect(db), meta)
        if texts is not None:
            self.add(texts, document_ids, metadata)
        return self

    @classmethod
    def open(cls, path: str | os.PathLike[str], model: Any = None, **model_options: Any) -> DocumentIndex:
        """Open the index in the folder ``path``.

        ``model=None`` loads the model recorded at creation (its folder if it still exists, else its
        registry name), passing ``model_options`` (``threads=``, ``cuda=``...) to
        :class:`~lightcol.LateInteractionTextEmbedding`; a given model (object, name or folder) must be
        compatible: same model name, dimension and tokenization rules (a document length at least the
        passages' token limit).

        :raises FileNotFoundError: no index there. :raises IndexFormatError: not a document index.
        :raises IncompatibleModelError: the given model cannot search these vectors.
        """
        folder = Path(path).absolute()
        db = folder / DB_NAME
        if not db.is_file():
            raise FileNotFoundError(
                f"no document index in {folder} (no {DB_NAME}); create one with DocumentIndex.create."
            )
        conn = _connect(db)
        try:
            meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        except Exception as e:  # sqlite3.DatabaseError: not a database, or no meta table
            conn.close()
            raise IndexFormatError(f"{db} is not a lightcol document index ({e}).") from e
        if meta.get("format") != _FORMAT:
            conn.close()
            raise IndexFormatError(f"{db} is not a lightcol document index.")
        if meta.get("format_version", 0) > _FORMAT_VERSION:
            conn.close()
            from lightcol.errors import IndexVersionError

            raise IndexVersionError(f"{db} has format version {meta['format_version']}; this lightcol reads up to "
                                    f"{_FORMAT_VERSION}: upgrade lightcol.")
        if meta.get("format_version", 0) < 2:
            try:
                meta = _upgrade(conn, db)
            except BaseException:
                conn.close()
                raise
        try:
            if model is None:
                recorded = meta.get("model_path")
                source = recorded if recorded and os.path.isdir(recorded) else meta["model"]
                model = _as_model(source, meta.get("model_variant"), **model_options)
            else:
                model = _as_model(model, None, **model_options)
            _check_model(model, meta, folder)
            return cls(folder, model, conn, meta)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        """Close the SQLite connection (the object is unusable afterwards)."""
        self._conn.close()

    def __enter__(self) -> DocumentIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- state -----------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return str(self._meta["backend"])

    @property
    def max_tokens(self) -> int:
        """Tokens per passage, ``[CLS]``, document marker and ``[SEP]`` included."""
        return int(self._meta["max_tokens"])

    @property
    def document_ids(self) -> list[str | int]:
        """Document ids in the order they were added."""
        with self._lock:
            return [json.loads(r[0]) for r in self._conn.execute("SELECT document_id FROM documents ORDER BY key")]

    @property
    def n_passages(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM passages").fetchone()[0])

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])

    def __contains__(self, document_id: object) -> bool:
        if isinstance(document_id, bool) or not isinstance(document_id, (str, int)):
            return False
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM documents WHERE document_id = ?", (json.dumps(document_id),))
            return row.fetchone() is not None

    def get(self, document_id: str | int | None = None, *, where: Mapping[str, Any] | None = None,
            limit: int | None = None, offset: int = 0) -> Any:
        """One document by id: ``{"document_id", "content", "document_metadata"?}`` (its whole text);
        or, with ``where`` (a metadata filter, see :meth:`search`), a list of such dicts of the matching
        documents in the order they were added (``limit``/``offset`` page through them).

        :raises KeyError: no document with that id. :raises FilterError: a malformed ``where``.
        """
        if (document_id is None) == (where is None):
            raise ArgumentError("give a document_id or where (a metadata filter; where={} gets every document).")
        if where is None:
            with self._lock:
                row = self._conn.execute(
                    "SELECT text, metadata FROM documents WHERE document_id = ?", (json.dumps(document_id),)
                ).fetchone()
            if row is None:
                raise KeyError(f"no document with id {document_id!r} in {self.path}")
            return _document(document_id, row[0], row[1])
        limit = -1 if limit is None else _validate.integer("limit", limit, minimum=0)
        offset = _validate.integer("offset", offset, minimum=0)
        sql, params = _compile(where)
        with self._lock:
            rows = self._conn.execute(f"SELECT document_id, text, metadata FROM documents WHERE key IN ({sql}) "
                                      "ORDER BY key LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
        return [_document(json.loads(r[0]), r[1], r[2]) for r in rows]

    def count(self, where: Mapping[str, Any] | None = None) -> int:
        """How many documents match the metadata filter ``where`` (see :meth:`search`); all with ``None``."""
        if where is None:
            return len(self)
        sql, params = _compile(where)
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM ({sql})", params).fetchone()[0])

    def __repr__(self) -> str:
        return (f"DocumentIndex({str(self.path)!r}, documents={len(self)}, passages={self.n_passages}, "
                f"backend={self.backend!r}, model={self._meta['model']!r})")

    def _refresh(self) -> None:
        """Follow a change committed by another process (or another object on the same folder)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        if row is None or json.loads(row[0]) == self._meta["generation"]:
            return
        for attempt in range(3):
            self._meta = {k: json.loads(v) for k, v in self._conn.execute("SELECT key, value FROM meta")}
            try:
                self._load_vectors()
                return
            except FileNotFoundError:  # replaced again between reading meta and opening the file
                if attempt == 2:
                    raise

    def _load_vectors(self) -> None:
        name = self._meta.get("vectors")
        if name is None:
            self._vectors = None
        elif self.backend == "collection":
            from lightcol.collection_segments import SegmentedCollection

            self._vectors = SegmentedCollection.open(self.path / name)
        else:
            from lightcol.index import Index

            self._vectors = Index.open(self.path / name)

    # -- changes ---------------------------------------------------------------------------------
    def add(
        self,
        texts: Sequence[str],
        document_ids: Sequence[str | int] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str | int]:
        """Split, embed and store documents; all or nothing. Returns their ids.

        Args:
            texts: the documents.
            document_ids: one unique ``str``/``int`` id each; default :func:`document_id_for` (a
                hash of the text, so the same text always gets the same id, and adding an identical
                text twice is a duplicate).
            metadata: one JSON-able dict (or ``None``) per document, returned with each of its passages.

        :raises DuplicateIdError: an id is already in the index or given twice (named in the message).
        :raises ArgumentError: a text is not a str, metadata is not a JSON-able dict, lengths differ.
        """
        from lightcol.rules import check_text

        if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
            raise ArgumentError(f"texts must be a list of str, got {type(texts).__name__}; wrap one text in a list.")
        texts = list(texts)
        for i, t in enumerate(texts):
            check_text(i, t)
        generated = document_ids is None
        if generated:
            ids: list[str | int] = [document_id_for(t) for t in texts]
        else:
            if isinstance(document_ids, (str, bytes, int)):
                raise ArgumentError("document_ids must be a list (one id per text); wrap one id in a list.")
            ids = [_check_id(d, i) for i, d in enumerate(document_ids)]  # type: ignore[union-attr]
            if len(ids) != len(texts):
                raise ArgumentError(f"got {len(texts)} texts but {len(ids)} document_ids.")
        if metadata is None:
            metas: list[str | None] = [None] * len(texts)
        else:
            if isinstance(metadata, Mapping):
                raise ArgumentError("metadata must be a list with one dict per text (not one dict); wrap it in a list.")
            metas = [_metadata_json(m, i) for i, m in enumerate(metadata)]
            if len(metas) != len(texts):
                raise ArgumentError(f"got {len(texts)} texts but {len(metas)} metadata entries.")
        if not texts:
            return []
        with self._lock:
            self._refresh()
            self._check_new_ids(ids, generated)
            passages = self._passages(texts)
            # a generator: the vector store consumes it as it is embedded (no second copy in memory)
            vectors = self.model.embed([p.text for p in passages], batch_size=self._meta["batch_size"])
            first = int(self._meta["next_passage_id"])
            pids = list(range(first, first + len(passages)))
            new_file = self._write_vectors(lambda v: self._vectors_added(v, pids, vectors))

            def change(conn: Any) -> dict[str, Any]:
                keys = []
                for doc_id, text, meta in zip(ids, texts, metas, strict=True):
                    cur = conn.execute("INSERT INTO documents (document_id, text, metadata) VALUES (?, ?, ?)",
                                       (json.dumps(doc_id), text, meta))
                    keys.append(cur.lastrowid)
                conn.executemany("INSERT INTO passages VALUES (?, ?, ?, ?)",  # triggers fill passages_fts
                                 [(pid, keys[p.doc], p.start, p.end) for pid, p in zip(pids, passages, strict=True)])
                _insert_fields(conn, keys, [None if m is None else json.loads(m) for m in metas])
                return {"next_passage_id": first + len(passages)}

            self._commit(new_file, change)
        return ids

    def delete(self, document_ids: Iterable[str | int] | str | int | None = None, *,
               where: Mapping[str, Any] | None = None) -> int:
        """Remove documents (and their passages) by id, or every document matching the metadata filter
        ``where`` (see :meth:`search`); all or nothing. Returns how many were removed.

        :raises ArgumentError: an id is not in the index (nothing is deleted), or neither or both of
            ``document_ids`` and ``where`` are given. :raises FilterError: a malformed ``where``.
        """
        if (document_ids is None) == (where is None):
            raise ArgumentError("give document_ids or where (a metadata filter), not both" if document_ids is not None
                                else "give document_ids or where (a metadata filter); where={} deletes everything.")
        with self._lock:
            self._refresh()
            if where is not None:
                sql, params = _compile(where)
                keys = sorted(r[0] for r in self._conn.execute(sql, params))
            else:
                drop = [document_ids] if isinstance(document_ids, (str, int)) else list(document_ids)  # type: ignore[arg-type]
                keys = []
                missing = []
                for d in drop:
                    row = self._conn.execute("SELECT key FROM documents WHERE document_id = ?",
                                             (json.dumps(_check_id(d, len(keys))),)).fetchone()
                    if row is None:
                        missing.append(d)
                    else:
                        keys.append(row[0])
                if missing:
                    raise ArgumentError(f"document id(s) {missing[:5]!r} not in the index; nothing was deleted.")
                keys = sorted(set(keys))
            if not keys:
                return 0
            pids: list[int] = []
            for chunk in _chunks(keys):
                q = f"SELECT passage_id FROM passages WHERE doc_key IN ({','.join('?' * len(chunk))})"
                pids.extend(r[0] for r in self._conn.execute(q, chunk))
            new_file = self._write_vectors(lambda v: self._vectors_deleted(v, set(pids)))

            def change(conn: Any) -> None:
                for chunk in _chunks(keys):
                    marks = ",".join("?" * len(chunk))
                    conn.execute(f"DELETE FROM passages WHERE doc_key IN ({marks})", chunk)
                    conn.execute(f"DELETE FROM documents WHERE key IN ({marks})", chunk)

            self._commit(new_file, change)
            return len(keys)

    def _check_new_ids(self, ids: list[str | int], generated: bool) -> None:
        why = " (generated from the text: the same text was given twice or is already indexed)" if generated else ""
        seen: set[str] = set()
        for i, d in enumerate(ids):
            key = json.dumps(d)
            if key in seen:
                raise DuplicateIdError(f"document id {d!r} (document {i}) is given twice{why}; ids must be unique.")
            seen.add(key)
        for chunk in _chunks(sorted(seen)):
            q = f"SELECT document_id FROM documents WHERE document_id IN ({','.join('?' * len(chunk))})"
            row = self._conn.execute(q, chunk).fetchone()
            if row is not None:
                d = json.loads(row[0])
                raise DuplicateIdError(f"document id {d!r} is already in the index{why}; ids must be unique "
                                       "(delete it first to replace it).")

    def _passages(self, texts: list[str]) -> list[Any]:
        from lightcol.splitting import Passage, split_documents

        if self._meta["split_documents"]:
            return split_documents(texts, self.model, self._meta["max_tokens"], self._meta["overlap_tokens"])
        return [Passage(i, t, 0, len(t)) for i, t in enumerate(texts)]

    #: the name a new state's manifest (or first file) ends with, by backend
    _STATES = {"collection": ".collection", "index": ".index"}

    def _vectors_added(self, target: Path, pids: list[int], vectors: Iterable[Any]) -> None:
        """Write the current vectors plus ``vectors`` (ids ``pids``) as the state ``target``: one more
        segment and a manifest (nothing stored is rewritten), or the first file."""
        if self.backend == "collection":
            from lightcol.collection_segments import SegmentedCollection

            current = self._vectors or SegmentedCollection(str(target), [], 0)
            current.added(str(target), pids, vectors, self._meta["dim"], self._meta["dtype"])
        else:
            from lightcol.index import Index

            if self._vectors is None:
                Index._build_at(str(target), pids, vectors, nbits=self._meta["nbits"], model=self._meta["model"],
                                show_progress=False)
            else:  # a copy of the object: this one keeps the committed state until the database commits
                Index.open(self._vectors.path)._add_at(str(target), pids, vectors)

    def _vectors_deleted(self, target: Path, drop: set[int]) -> bool:
        """Write the current vectors less ``drop`` as the state ``target`` (tombstones and a manifest);
        ``False`` when none are left (no file)."""
        old = self._vectors
        if self.backend == "collection":
            return bool(old.deleted(str(target), drop))
        from lightcol.index import Index

        present = [pid for pid in drop if pid in old]
        if len(old) - len(present) == 0:
            return False
        Index.open(old.path)._delete_at(str(target), present)
        return True

    def _write_vectors(self, write: Any) -> str | None:
        """Take the write lock and run ``write(target)`` on a new state name; its name, or ``None`` if
        it wrote none. The lock is held until :meth:`_commit` (or released here on failure)."""
        from lightcol import _durable
        from lightcol.errors import IndexLockedError

        self._writer = _durable.acquire(str(self.path / "documents"), "document index")
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            if row is not None and json.loads(row[0]) != self._meta["generation"]:
                raise IndexLockedError(f"another writer changed the document index at {self.path} while this change "
                                       "was being prepared; retry it.")
            gen = int(self._meta["generation"]) + 1
            name = f"vectors-{gen}{self._STATES[self.backend]}"
            target = self.path / name
            try:
                if write(target) is False:
                    self._remove(name)
                    self._release()
                    return None
            except BaseException:
                self._remove(name)
                raise
        except BaseException:
            self._release()
            raise
        return name

    def _release(self) -> None:
        from lightcol import _durable

        _durable.release(getattr(self, "_writer", None))
        self._writer = None

    def _commit(self, new_file: str | None, change: Any) -> None:
        """Apply ``change(conn)`` and switch to ``new_file`` in one transaction (the commit point)."""
        from lightcol import _durable

        try:
            meta = {"vectors": new_file, "generation": int(self._meta["generation"]) + 1}
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    meta.update(change(conn) or {})
                    conn.executemany("UPDATE meta SET value = ? WHERE key = ?",
                                     [(json.dumps(v), k) for k, v in meta.items()])
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                _durable.step("commit")
            except BaseException:
                if new_file is not None:
                    self._remove(new_file)
                raise
            self._meta.update(meta)
            self._load_vectors()
            # files of earlier states no longer named, and any left by a write that crashed
            keep = set(self._vectors.files) if self._vectors is not None else set()
            for f in os.listdir(self.path):
                if f.lstrip(".").startswith("vectors-") and f not in keep:
                    self._remove(f)
        finally:
            self._release()

    def _remove(self, name: str) -> None:
        """Delete a vector file (best effort: a file still mapped elsewhere may not go on every platform)."""
        from lightcol import _durable

        for f in (self.path / name, self.path / (name + ".full")):
            try:
                _durable.unlink(str(f))
            except OSError:
                pass

    # -- search ----------------------------------------------------------------------------------
    def _allowed(self, where: Mapping[str, Any] | None) -> tuple[tuple[str, list[Any]] | None, list[int] | None]:
        """The filter's SQL (document keys) and the passage ids it allows (``None, None``: no filter)."""
        if where is None:
            return None, None
        sql, params = _compile(where)
        pids = [r[0] for r in self._conn.execute(f"SELECT passage_id FROM passages WHERE doc_key IN ({sql}) "
                                                 "ORDER BY passage_id", params)]
        return (sql, params), pids

    def _ranked(self, text: str, q: Any, n: int, mode: str, alpha: float, fusion: str,
                allowed_sql: tuple[str, list[Any]] | None, allowed: list[int] | None,
                ) -> tuple[list[tuple[int, float]], dict[int, dict[str, float]]]:
        """The ``n`` best passages by ``mode``, best first, and per passage the scores fused (hybrid)."""
        from lightcol import keyword, passage_search

        if mode == "maxsim":
            return passage_search.top(self._vectors, q, n, allowed), {}
        stats = self._keyword_stats
        stats.refresh(self._meta["generation"], len(self._vectors) if self._vectors is not None else 0)
        if mode == "keyword":
            return keyword.search(self._conn, text, n, allowed_sql, stats), {}
        from lightcol import fusion as _fusion

        depth = max(n, HYBRID_DEPTH)
        dense = dict(passage_search.top(self._vectors, q, depth, allowed))
        sparse = dict(keyword.search(self._conn, text, depth, allowed_sql, stats))
        dense.update(passage_search.scores(self._vectors, q, [p for p in sparse if p not in dense]))
        sparse.update(keyword.scores(self._conn, text, [p for p in dense if p not in sparse], stats))
        for p in dense:
            sparse.setdefault(p, 0.0)  # matches no query word
        both = {p: s for p, s in sparse.items() if p in dense}  # a passage gone from the vectors is dropped
        fused = _fusion.fuse(dense, both, alpha, fusion)
        ranked = sorted(fused.items(), key=lambda ps: (-ps[1], ps[0]))[:n]
        return ranked, {p: {"maxsim_score": dense[p], "keyword_score": both[p]} for p, _ in ranked}

    def _hits(self, text: str, q: Any, k: int, by_document: bool, mode: str = "maxsim", alpha: float = 0.5,
              fusion: str = "relative", allowed_sql: tuple[str, list[Any]] | None = None,
              allowed: list[int] | None = None) -> tuple[list[tuple[int, float]], dict[int, dict[str, float]]]:
        """``(passage_id, score)`` best first: the top ``k`` passages, or with ``by_document`` one
        passage for each of the top ``k`` documents (its best; scored by :func:`_aggregate` in
        ``"maxsim"`` mode). Passages are fetched until ``k`` distinct documents are among them, or all."""
        vectors = self._vectors
        if vectors is None:
            return [], {}
        total = len(vectors) if allowed is None else len(allowed)
        if not by_document:
            return self._ranked(text, q, k, mode, alpha, fusion, allowed_sql, allowed)
        want = min(total, 4 * k)
        while True:
            hits, extra = self._ranked(text, q, want, mode, alpha, fusion, allowed_sql, allowed)
            docs = self._doc_keys([pid for pid, _ in hits])
            best: dict[int, tuple[int, float]] = {}
            for pid, score in hits:
                if pid in docs:  # else deleted by another process since the vectors were loaded
                    best.setdefault(docs[pid], (pid, score))
            exhausted = want >= total or len(hits) < want
            if mode == "maxsim" and DOCUMENT_AGGREGATION[0] != "max" and len(best) >= k:
                best = self._aggregate(q, best)
                # a document's score is at most its best passage's: one not fetched scores at most the
                # last passage fetched, so the top k is final once the k-th document beats it
                kth = sorted((s for _, s in best.values()), reverse=True)[k - 1]
                if exhausted or kth >= hits[-1][1]:
                    break
            elif len(best) >= k or exhausted:
                if mode == "maxsim" and DOCUMENT_AGGREGATION[0] != "max":
                    best = self._aggregate(q, best)
                break
            want = min(total, want * 4)
        return sorted(best.values(), key=lambda ps: (-ps[1], ps[0]))[:k], extra

    def _aggregate(self, q: Any, best: dict[int, tuple[int, float]]) -> dict[int, tuple[int, float]]:
        """Document scores from all their passages (see :data:`DOCUMENT_AGGREGATION`)."""
        from lightcol import passage_search

        keys = list(best)
        rows: list[tuple[int, int]] = []
        for chunk in _chunks(keys):
            rows += self._conn.execute(f"SELECT doc_key, passage_id FROM passages WHERE doc_key IN "
                                       f"({','.join('?' * len(chunk))}) ORDER BY passage_id", chunk).fetchall()
        scores = passage_search.scores(self._vectors, q, [p for _, p in rows])
        per_doc: dict[int, list[float]] = {}
        for key, pid in rows:  # in passage order: the lead passage first
            if pid in scores:
                per_doc.setdefault(key, []).append(scores[pid])
        return {key: (pid, aggregate(per_doc.get(key) or [s], s)) for key, (pid, s) in best.items()}

    def _doc_keys(self, pids: list[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for chunk in _chunks(pids):
            q = f"SELECT passage_id, doc_key FROM passages WHERE passage_id IN ({','.join('?' * len(chunk))})"
            out.update(self._conn.execute(q, chunk))
        return out

    def _results(self, hits: list[tuple[int, float]], extra: dict[int, dict[str, float]] | None = None,
                 ) -> list[dict[str, Any]]:
        rows: dict[int, tuple[Any, ...]] = {}
        for chunk in _chunks([pid for pid, _ in hits]):
            q = ("SELECT p.passage_id, substr(d.text, p.start + 1, p.end - p.start), d.document_id, d.metadata "
                 "FROM passages p JOIN documents d ON d.key = p.doc_key "
                 f"WHERE p.passage_id IN ({','.join('?' * len(chunk))})")
            rows.update((r[0], r[1:]) for r in self._conn.execute(q, chunk))
        out = []
        for pid, score in hits:
            if pid not in rows:  # deleted by another process since the vectors were loaded
                continue
            content, doc_id, meta = rows[pid]
            result: dict[str, Any] = {"content": content, "score": float(score), "rank": len(out) + 1,
                                      "document_id": json.loads(doc_id), "passage_id": pid}
            if extra and pid in extra:
                result.update(extra[pid])
            if meta is not None:  # RAGatouille's key, and "metadata" (the same dict) for everyone else
                result["document_metadata"] = result["metadata"] = json.loads(meta)
            out.append(result)
        return out

    def search(self, query: str, k: int = 10, by_document: bool = False, *, where: Mapping[str, Any] | None = None,
               mode: str = DEFAULT_MODE, alpha: float = DEFAULT_ALPHA, fusion: str = DEFAULT_FUSION,
               highlights: bool = False) -> list[dict[str, Any]]:
        """The ``k`` best passages for a query text, best first, as RAGatouille's result dicts:
        ``{"content", "score", "rank" (1-based), "document_id", "passage_id"}``, plus
        ``"document_metadata"`` (RAGatouille's key) and ``"metadata"`` (the same dict) for a document added with
        metadata.

        Args:
            by_document: each document once (``k`` documents), represented by its best passage; in
                ``"maxsim"`` mode scored from all its passages (:data:`DOCUMENT_AGGREGATION`).
            where: a metadata filter (:mod:`lightcol.filters`: ``{"lang": "en"}``, ``{"year":
                {"$gte": 2020}}``, ``$in $nin $ne $exists $and $or $not``...), applied before the
                top ``k``: ``k`` results whenever ``k`` passages (documents) match.
            mode: ``"hybrid"`` (default: BM25 and MaxSim fused; results also carry ``"maxsim_score"``
                and ``"keyword_score"``), ``"maxsim"`` (late interaction alone) or ``"keyword"`` (BM25
                on SQLite FTS5 alone).
            alpha: hybrid weight of MaxSim (``1``: MaxSim only, ``0``: keywords only; default 0.6), as Weaviate's.
            fusion: hybrid fusion of the two rankings' top :data:`HYBRID_DEPTH` passages (each scored by
                both): ``"relative"`` (min-max normalised scores, weighted: Weaviate's relativeScoreFusion)
                or ``"rrf"`` (reciprocal rank fusion, ``1 / (60 + rank)``, weighted).
            highlights: add ``"highlights"``: the passage's tokens that the query's tokens match best
                by MaxSim, as ``{"start", "end", "text", "score"}`` character spans of ``"content"``
                (:mod:`lightcol.highlights`).

        :raises FilterError: a malformed ``where``. :raises ArgumentError: a bad ``k``, ``mode``, ``alpha``...
        """
        if not isinstance(query, str):
            raise ArgumentError(f"query must be a str, got {type(query).__name__}; use search_many for several.")
        return self.search_many([query], k, by_document, where=where, mode=mode, alpha=alpha, fusion=fusion,
                                highlights=highlights)[0]

    def search_many(self, queries: Sequence[str], k: int = 10, by_document: bool = False, *,
                    where: Mapping[str, Any] | None = None, mode: str = DEFAULT_MODE, alpha: float = DEFAULT_ALPHA,
                    fusion: str = DEFAULT_FUSION, highlights: bool = False) -> list[list[dict[str, Any]]]:
        """:meth:`search` for each query text (queries embedded in batches); one result list per query."""
        if isinstance(queries, str):
            raise ArgumentError("queries must be a list of str; use search for one query.")
        queries = list(queries)
        for i, t in enumerate(queries):
            if not isinstance(t, str):
                raise ArgumentError(f"queries[{i}] is {type(t).__name__}; queries must be str.")
        k = _validate.integer("k", k, minimum=1)  # type: ignore[assignment]
        _check_search_options(mode, alpha, fusion)
        if where is not None:
            _compile(where)  # a malformed filter raises before any work
        if not queries:
            return []
        qv: list[Any] = (list(self.model.query_embed(queries)) if mode != "keyword" or highlights
                         else [None] * len(queries))
        with self._lock:
            self._refresh()
            vectors = self._vectors
            if (vectors is not None and where is None and mode == "maxsim" and not by_document
                    and self.backend == "collection"):
                found = [(h, {}) for h in vectors.search_many(qv, min(k, len(vectors)))]
            else:
                allowed_sql, allowed = self._allowed(where)
                found = [self._hits(t, q, k, by_document, mode, alpha, fusion, allowed_sql, allowed)
                         for t, q in zip(queries, qv, strict=True)]
            out = [self._results(h, extra) for h, extra in found]
        if highlights:
            from lightcol.highlights import highlight

            for q, results in zip(qv, out, strict=True):
                for r, spans in zip(results, highlight(self.model, q, [r["content"] for r in results]), strict=True):
                    r["highlights"] = spans
        return out

    # -- integrations ----------------------------------------------------------------------------
    def as_langchain_retriever(self, k: int = 4, by_document: bool = False, **search_kwargs: Any) -> Any:
        """A LangChain retriever (``pip install 'lightcol[langchain]'``): ``retriever.invoke(query)``
        returns ``Document``s whose ``page_content`` is the passage and ``metadata`` the document's
        metadata plus ``document_id``, ``passage_id`` and ``relevance_score``.

        ``search_kwargs`` (``where=`` or LangChain's ``filter=``, ``mode=``, ``alpha=``...) go to
        :meth:`search`; ``retriever.invoke(query, filter={...})`` overrides them per call.
        """
        from lightcol.integrations.langchain import LightcolDocumentIndexRetriever

        return LightcolDocumentIndexRetriever(index=self, k=k, search_kwargs={"by_document": by_document,
                                                                              **search_kwargs})

    def as_llama_index_retriever(self, similarity_top_k: int = 10, filters: Any = None, **search_kwargs: Any) -> Any:
        """A LlamaIndex retriever (``pip install 'lightcol[llama-index]'``) returning ``NodeWithScore``s
        of passages (``TextNode`` with the document's metadata plus ``document_id``, ``passage_id``).

        ``filters``: LlamaIndex ``MetadataFilters`` or a ``where`` dict; ``search_kwargs`` go to :meth:`search`.
        """
        from lightcol.integrations.llama_index import LightcolDocumentIndexRetriever

        return LightcolDocumentIndexRetriever(self, similarity_top_k=similarity_top_k, filters=filters,
                                              search_kwargs=search_kwargs)


def aggregate(scores: list[float], best: float) -> float:
    """A document's score from its passages' MaxSim scores (in passage order) and the best of them:
    see :data:`DOCUMENT_AGGREGATION`. Never above ``best``."""
    how, w = DOCUMENT_AGGREGATION
    if how == "lead":
        return (1.0 - w) * best + w * scores[0]
    if how == "mean":
        return (1.0 - w) * best + w * sum(scores) / len(scores)
    return best


def _check_search_options(mode: Any, alpha: Any, fusion: Any) -> None:
    if mode not in _MODES:
        raise ArgumentError(f"mode must be one of {', '.join(map(repr, _MODES))}; got {mode!r}.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ArgumentError(f"alpha must be a number from 0 (keywords only) to 1 (MaxSim only); got {alpha!r}.")
    if fusion not in _FUSIONS:
        raise ArgumentError(f"fusion must be one of {', '.join(map(repr, _FUSIONS))}; got {fusion!r}.")


def _connect(db: Path) -> Any:
    import sqlite3

    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _check_model(model: Any, meta: dict[str, Any], folder: Path) -> None:
    """Raise :class:`IncompatibleModelError` unless ``model`` can embed queries for these vectors."""
    recorded = meta["model"]
    hint = f"open it with model=None to load {meta.get('model_path') or recorded!r}"
    if model.spec.model.lower() != str(recorded).lower():
        raise IncompatibleModelError(f"{folder} was built with model {recorded!r}, not {model.spec.model!r}: its "
                                     f"vectors cannot be searched with another model; {hint}.")
    if model.dim != meta["dim"]:
        raise IncompatibleModelError(f"{folder} holds vectors of dim {meta['dim']}, but the model gives dim "
                                     f"{model.dim}; {hint}.")
    rules = asdict(model.spec.rules)
    stored = meta["rules"]
    diff = model.spec.rules.differences(stored)
    if diff:
        details = ", ".join(f"{k}: {stored.get(k)!r} in the index, {rules.get(k)!r} in the model" for k in diff)
        raise IncompatibleModelError(f"{folder}: the model's tokenization rules differ ({details}); {hint}.")
    if rules["document_length"] < meta["max_tokens"]:
        raise IncompatibleModelError(
            f"{folder} holds passages of up to {meta['max_tokens']} tokens, but the model's document length is "
            f"{rules['document_length']} (new documents would be truncated); {hint}."
        )


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


def _compile(where: Mapping[str, Any]) -> tuple[str, list[Any]]:
    from lightcol.filters import compile_where

    return compile_where(where)


def _document(document_id: Any, text: str, metadata: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"document_id": document_id, "content": text}
    if metadata is not None:
        out["document_metadata"] = json.loads(metadata)
    return out


def _add_search_tables(conn: Any) -> None:
    """The metadata ``fields`` table (filters) and the FTS5 passage table (keyword search), filled from
    what the index holds (inside the caller's transaction)."""
    from lightcol import filters, keyword

    have = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'fields'").fetchone()
    for stmt in filter(str.strip, filters.FIELDS_SCHEMA.split(";")):
        conn.execute(stmt)
    if have is None:
        rows = conn.execute("SELECT key, metadata FROM documents WHERE metadata IS NOT NULL").fetchall()
        _insert_fields(conn, [r[0] for r in rows], [json.loads(r[1]) for r in rows])
    keyword.ensure(conn)


def _insert_fields(conn: Any, keys: list[int], metadata: Sequence[Mapping[str, Any] | None] | None) -> None:
    from lightcol.filters import flatten

    if metadata is None:
        return
    conn.executemany("INSERT INTO fields VALUES (?, ?, ?, ?)",
                     ((key, *row) for key, m in zip(keys, metadata, strict=True) for row in flatten(m)))


def _upgrade(conn: Any, db: Path) -> dict[str, Any]:
    """Bring an index of an older format version to this one in one transaction; its new meta."""
    import sqlite3

    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        raise IndexFormatError(f"{db} was written by an older lightcol and needs a one-time upgrade, which failed "
                               f"({e}); open it once where the file is writable.") from e
    try:
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        if meta.get("format_version", 0) < 2:  # else upgraded by another process meanwhile
            _add_search_tables(conn)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (json.dumps(_FORMAT_VERSION),))
            meta["format_version"] = _FORMAT_VERSION
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return meta
