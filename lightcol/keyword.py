"""Keyword search of a :class:`~lightcol.DocumentIndex`'s passages: SQLite FTS5 with BM25.

The passages' text lives in an FTS5 table ``passages_fts`` (rowid = passage id) of the index's own
SQLite file, kept in step with the ``passages`` table by triggers: every insert or delete of a passage
updates it inside the same transaction, whoever runs it. Text is tokenized by FTS5's ``unicode61``
tokenizer (case and diacritics folded) with the Porter stemmer on top.

A query text becomes an OR of its words, each a quoted FTS5 string (so no query text is ever read as
FTS5 syntax), scored by ``bm25()`` (k1 = 1.2, b = 0.75). Words in more than half of the passages are
dropped from the query: FTS5 clamps their IDF to a negligible constant, so they cannot change the
ranking, while matching them would cost a scan of most of the index.

FTS5 stores the postings; queries are scored from a copy of them in NumPy arrays (:class:`Postings`),
read once per index state, with the same values and ranking as ``bm25()`` and a fraction of its time.
"""

from __future__ import annotations

import json
import math
import re
import threading
from typing import Any

import numpy as np


__all__ = ["SCHEMA", "Postings", "Stats", "ensure", "match_expression", "search", "scores"]

SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5(text, tokenize = 'porter unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE IF NOT EXISTS passages_vocab USING fts5vocab(passages_fts, 'row');
CREATE TRIGGER IF NOT EXISTS passages_fts_insert AFTER INSERT ON passages BEGIN
    INSERT INTO passages_fts(rowid, text)
        SELECT new.passage_id, substr(d.text, new.start + 1, new."end" - new.start) FROM documents d
        WHERE d.key = new.doc_key;
END;
CREATE TRIGGER IF NOT EXISTS passages_fts_delete AFTER DELETE ON passages BEGIN
    DELETE FROM passages_fts WHERE rowid = old.passage_id;
END;
"""
_WORD = re.compile(r"\w+", re.UNICODE)
_MAX_TERMS = 64


def ensure(conn: Any) -> None:
    """Create the FTS table and its triggers if missing and index every passage (inside the caller's
    transaction: an index gains keyword search atomically)."""
    have = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'passages_fts'").fetchone()
    for stmt in _statements(SCHEMA):
        conn.execute(stmt)
    if have is None:
        conn.execute("INSERT INTO passages_fts(rowid, text) SELECT p.passage_id, substr(d.text, p.start + 1, "
                     "p.\"end\" - p.start) FROM passages p JOIN documents d ON d.key = p.doc_key")


def _statements(script: str) -> list[str]:
    """Split a script of statements, keeping each trigger (whose body holds semicolons) whole."""
    out, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        if text.endswith(";") and (not text.upper().startswith("CREATE TRIGGER") or text.upper().endswith("END;")):
            out.append(text)
            current = []
    return out


def _terms(query: str) -> list[str]:
    seen: dict[str, None] = {}
    for w in _WORD.findall(query.lower()):
        seen.setdefault(w, None)
    return list(seen)[:_MAX_TERMS]


class Stats:
    """What a query's terms cost to look up once per index state: the passage count and each stem's
    document frequency (reading it walks the term's postings, so it is cached until ``key`` changes)."""

    def __init__(self) -> None:
        self.key: Any = None
        self.n = 0
        self.df: dict[str, int] = {}
        self.postings: Postings | None = None
        self._read = False
        self._lock = threading.Lock()

    def refresh(self, key: Any, n_passages: int) -> None:
        if key != self.key:
            self.key, self.n, self.df, self.postings, self._read = key, n_passages, {}, None, False

    def postings_for(self, conn: Any) -> Postings | None:
        """The index's postings, read on first use after each change of ``key`` (``None``: unreadable,
        FTS5 scores the queries)."""
        with self._lock:
            if not self._read:
                self.postings, self._read = Postings.read(conn), True
            return self.postings


def match_expression(conn: Any, query: str, stats: Stats | None = None) -> str | None:
    """The FTS5 MATCH expression for a query text (``None``: no searchable word).

    Words in more than half of the passages are left out (unless all are: then the query keeps them);
    ``stats`` caches the counts (``None``: counted now).
    """
    terms = _query_words(conn, query, stats)
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def _query_words(conn: Any, query: str, stats: Stats | None) -> list[str]:
    """The query's words that the MATCH expression ORs (frequent ones left out, see :func:`match_expression`)."""
    terms = _terms(query)
    if not terms:
        return []
    if stats is None:
        stats = Stats()
        stats.n = conn.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
    if stats.n:
        frequent = set()
        for t in terms:
            stems = _stems(conn, t)
            if stems and all(_doc_freq(conn, s, stats) * 2 > stats.n for s in stems):
                frequent.add(t)
        if len(frequent) < len(terms):
            terms = [t for t in terms if t not in frequent]
    return terms


def _stems(conn: Any, word: str) -> list[str]:
    """The tokens FTS5's tokenizer makes of ``word`` (its Porter stems), from an in-memory FTS5 table."""
    cache = _STEMS.get(word)
    if cache is not None:
        return cache
    with _LOCK:
        tokens = _tokenizer(conn).tokenize(word)
    if len(_STEMS) > 100_000:
        _STEMS.clear()
    _STEMS[word] = tokens
    return tokens


_STEMS: dict[str, list[str]] = {}
_LOCK = threading.Lock()


class _Tokenizer:
    """FTS5's own tokenizer, run on a word through an in-memory table and its fts5vocab."""

    def __init__(self) -> None:
        import sqlite3

        self.conn = sqlite3.connect(":memory:", check_same_thread=False)
        self.conn.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize = 'porter unicode61 remove_diacritics 2')")
        self.conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row')")

    def tokenize(self, word: str) -> list[str]:
        c = self.conn
        c.execute("INSERT INTO t(rowid, text) VALUES (1, ?)", (word,))
        out = [r[0] for r in c.execute("SELECT term FROM v")]
        c.execute("DELETE FROM t")
        return out


_TOKENIZER: _Tokenizer | None = None


def _tokenizer(conn: Any) -> _Tokenizer:
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = _Tokenizer()
    return _TOKENIZER


def _doc_freq(conn: Any, term: str, stats: Stats) -> int:
    df = stats.df.get(term)
    if df is None:
        row = conn.execute("SELECT doc FROM passages_vocab WHERE term = ?", (term,)).fetchone()
        df = stats.df[term] = 0 if row is None else int(row[0])
    return df


K1, B = 1.2, 0.75  # FTS5's bm25() defaults


class Postings:
    """The FTS5 index's postings as arrays, for scoring a query in NumPy with FTS5's own BM25.

    ``bm25()`` scores every passage that matches any query word one at a time through SQLite's virtual
    table interface; here the same formula (FTS5's ``fts5Bm25Function``: IDF ``log((N - n + 0.5) /
    (n + 0.5))`` clamped to 1e-6, k1 = 1.2, b = 0.75, passage length over the average length) runs over
    CSR arrays, term by term in the query's order, so the sums are the same floating-point operations in
    the same order. The arrays are read once per index state (``Stats.key``) from an ``fts5vocab``
    ``instance`` table of the temporary schema: FTS5 stays the one copy on disk.
    """

    def __init__(self, terms: dict[str, int], offsets: np.ndarray, rows: np.ndarray, tf: np.ndarray,
                 rowids: np.ndarray, n_rows: int, n_tokens: int) -> None:
        self.terms = terms  # stem -> term id (row of ``offsets``)
        self.offsets = offsets  # int64, len(terms) + 1: term t's postings are offsets[t]:offsets[t+1]
        self.rows = rows  # int32 positions in ``rowids``, ascending within each term
        self.tf = tf  # the term's occurrences in the passage
        self.rowids = rowids  # int64 passage ids, ascending
        self.n_rows, self.n_tokens = n_rows, n_tokens  # FTS5's totals (its bm25() reads the same record)
        lengths = np.bincount(rows, weights=tf, minlength=len(rowids))  # tokens of each passage
        avgdl = float(n_tokens) / float(n_rows) if n_rows else 1.0
        self.norm = K1 * (1 - B + B * lengths / avgdl)  # the length part of each passage's denominator

    @property
    def nbytes(self) -> int:
        return int(self.offsets.nbytes + self.rows.nbytes + self.tf.nbytes + self.rowids.nbytes + self.norm.nbytes)

    @classmethod
    def read(cls, conn: Any) -> Postings | None:
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.passages_fts_instance "
                     "USING fts5vocab(main, passages_fts, 'instance')")
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")  # the reads below see one state of the index
        try:
            vocab = conn.execute("SELECT term, cnt FROM passages_vocab").fetchall()
            # one token occurrence per instance, in the index's order: term, then passage, then offset
            text = conn.execute("SELECT group_concat(doc) FROM temp.passages_fts_instance").fetchone()[0]
            totals = conn.execute("SELECT block FROM passages_fts_data WHERE id = 1").fetchone()
        finally:
            if own:
                conn.execute("COMMIT")
        docs = np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0, np.int64)
        counts = np.fromiter((c for _, c in vocab), dtype=np.int64, count=len(vocab))
        if int(counts.sum()) != len(docs):
            return None  # not the layout assumed: FTS5 scores the queries
        term_of = np.repeat(np.arange(len(vocab), dtype=np.int64), counts)
        same_term = term_of[1:] == term_of[:-1]
        if np.any(same_term & (docs[1:] < docs[:-1])):
            return None
        # a posting starts where the term or the passage changes (instances of one term are ordered by passage)
        start = np.ones(len(docs), dtype=bool)
        start[1:] = ~same_term | (docs[1:] != docs[:-1])
        first = np.flatnonzero(start)
        tf = np.diff(np.append(first, len(docs)))
        post_docs, post_terms = docs[first], term_of[first]
        rowids = np.unique(post_docs)
        rows = np.searchsorted(rowids, post_docs).astype(np.int32)
        offsets = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(post_terms, minlength=len(vocab)), out=offsets[1:])
        n_rows, n_tokens = _totals(totals[0] if totals else b"")
        tf = tf.astype(np.uint16 if tf.size == 0 or tf.max() < 2**16 else np.int32)
        return cls({t: i for i, (t, _) in enumerate(vocab)}, offsets, rows, tf, rowids, n_rows, n_tokens)

    def idf(self, term: int) -> float:
        n = int(self.offsets[term + 1] - self.offsets[term])
        idf = math.log((self.n_rows - n + 0.5) / (n + 0.5))
        return idf if idf > 0.0 else 1e-6

    def score(self, stems: list[str]) -> np.ndarray:
        """Each passage's BM25 for an OR of single-token phrases (0: matches none), by position in ``rowids``."""
        out = np.zeros(len(self.rowids))
        k1p1 = K1 + 1.0
        for stem in stems:
            t = self.terms.get(stem)
            if t is None:
                continue  # in no passage: adds 0 everywhere
            idf = self.idf(t)
            lo, hi = int(self.offsets[t]), int(self.offsets[t + 1])
            rows = self.rows[lo:hi]
            tf = self.tf[lo:hi].astype(np.float64)
            out[rows] += idf * ((tf * k1p1) / (tf + self.norm[rows]))
        return out


def _totals(block: bytes) -> tuple[int, int]:
    """FTS5's averages record: the row count, then each column's token count (SQLite varints)."""
    values, i = [], 0
    while i < len(block) and len(values) < 2:
        v = 0
        for j in range(9):
            byte = block[i]
            i += 1
            if j == 8:
                v = (v << 8) | byte
                break
            v = (v << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        values.append(v)
    values += [0] * (2 - len(values))
    return values[0], values[1]


def _single_tokens(conn: Any, words: list[str]) -> list[str] | None:
    """The stem of each word, or ``None`` if a word is not exactly one token (a phrase: FTS5 scores it)."""
    stems = []
    for w in words:
        s = _stems(conn, w)
        if len(s) != 1:
            return None
        stems.append(s[0])
    return stems


def _top(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best of ``candidates`` (positions, ascending) by score, ties by position: as ``ORDER BY s
    DESC, rowid``."""
    if len(candidates) > k:
        s = scores[candidates]
        kth = np.partition(s, len(s) - k)[len(s) - k]
        candidates = candidates[s >= kth]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:k]]


def search(conn: Any, query: str, k: int, allowed_docs: tuple[str, list[Any]] | None = None,
           stats: Stats | None = None) -> list[tuple[int, float]]:
    """``(passage_id, bm25 score)`` of the ``k`` best passages (higher is better), best first; with
    ``allowed_docs`` (SQL selecting document keys, and its parameters) only passages of those documents.

    With ``stats`` the query is scored in NumPy from the cached :class:`Postings` (the same values as
    ``bm25()``); without, or for a word FTS5 reads as a phrase of several tokens, by FTS5 itself.
    """
    words = _query_words(conn, query, stats)
    if not words or k <= 0:
        return []
    stems = _single_tokens(conn, words) if stats is not None else None
    post = stats.postings_for(conn) if stems is not None else None
    if post is None:
        return _fts5_search(conn, match_expression(conn, query, stats), k, allowed_docs)
    scores = post.score(stems)
    candidates = np.flatnonzero(scores > 0.0)
    if allowed_docs is not None:
        pids = np.fromiter((r[0] for r in conn.execute(
            f"SELECT passage_id FROM passages WHERE doc_key IN ({allowed_docs[0]})", allowed_docs[1])), dtype=np.int64)
        pos = np.searchsorted(post.rowids, pids)
        pos = pos[(pos < len(post.rowids)) & (post.rowids[np.minimum(pos, len(post.rowids) - 1)] == pids)]
        allowed = np.zeros(len(post.rowids), dtype=bool)
        allowed[pos] = True
        candidates = candidates[allowed[candidates]]
    best = _top(scores, candidates, k)
    return [(int(p), float(s)) for p, s in zip(post.rowids[best].tolist(), scores[best].tolist())]


def _fts5_search(conn: Any, expr: str | None, k: int,
                 allowed_docs: tuple[str, list[Any]] | None) -> list[tuple[int, float]]:
    if expr is None:
        return []
    if allowed_docs is None:
        sql = "SELECT rowid, -bm25(passages_fts) AS s FROM passages_fts WHERE passages_fts MATCH ? ORDER BY s DESC, rowid LIMIT ?"
        params: list[Any] = [expr, k]
    else:
        sql = ("SELECT f.rowid, -bm25(passages_fts) AS s FROM passages_fts f JOIN passages p ON p.passage_id = f.rowid "
               f"WHERE passages_fts MATCH ? AND p.doc_key IN ({allowed_docs[0]}) ORDER BY s DESC, f.rowid LIMIT ?")
        params = [expr, *allowed_docs[1], k]
    return [(int(r[0]), float(r[1])) for r in conn.execute(sql, params)]


def scores(conn: Any, query: str, passage_ids: list[int], stats: Stats | None = None) -> dict[int, float]:
    """BM25 scores of the given passages (those matching no query word are absent).

    From the cached :class:`Postings` with ``stats``; otherwise FTS5 matches once, in a subquery SQLite
    cannot flatten: a ``rowid IN (...)`` constraint on the FTS5 table itself would re-run the full-text
    query for every listed passage.
    """
    words = _query_words(conn, query, stats)
    if not words or not passage_ids:
        return {}
    stems = _single_tokens(conn, words) if stats is not None else None
    post = stats.postings_for(conn) if stems is not None else None
    if post is not None:
        all_scores = post.score(stems)
        pids = np.asarray([int(p) for p in passage_ids], dtype=np.int64)
        pos = np.minimum(np.searchsorted(post.rowids, pids), max(len(post.rowids) - 1, 0))
        out = {}
        if len(post.rowids):
            for p, i in zip(pids.tolist(), pos.tolist()):
                if post.rowids[i] == p and all_scores[i] > 0.0:
                    out[p] = float(all_scores[i])
        return out
    expr = match_expression(conn, query, stats)
    sql = ("SELECT pid, s FROM (SELECT rowid AS pid, -bm25(passages_fts) AS s FROM passages_fts "
           "WHERE passages_fts MATCH ? LIMIT -1 OFFSET 0) WHERE pid IN (SELECT value FROM json_each(?))")
    return {int(r[0]): float(r[1]) for r in conn.execute(sql, (expr, json.dumps([int(p) for p in passage_ids])))}
