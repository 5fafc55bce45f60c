"""Keyword search of a :class:`~lightcol.DocumentIndex`'s passages: SQLite FTS5 with BM25.

The passages' text lives in an FTS5 table ``passages_fts`` (rowid = passage id) of the index's own
SQLite file, kept in step with the ``passages`` table by triggers: every insert or delete of a passage
updates it inside the same transaction, whoever runs it. Text is tokenized by FTS5's ``unicode61``
tokenizer (case and diacritics folded) with the Porter stemmer on top.

A query text becomes an OR of its words, each a quoted FTS5 string (so no query text is ever read as
FTS5 syntax), scored by ``bm25()`` (k1 = 1.2, b = 0.75). Words in more than half of the passages are
dropped from the query: FTS5 clamps their IDF to a negligible constant, so they cannot change the
ranking, while matching them would cost a scan of most of the index.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

__all__ = ["SCHEMA", "Stats", "ensure", "match_expression", "search", "scores"]

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

    def refresh(self, key: Any, n_passages: int) -> None:
        if key != self.key:
            self.key, self.n, self.df = key, n_passages, {}


def match_expression(conn: Any, query: str, stats: Stats | None = None) -> str | None:
    """The FTS5 MATCH expression for a query text (``None``: no searchable word).

    Words in more than half of the passages are left out (unless all are: then the query keeps them);
    ``stats`` caches the counts (``None``: counted now).
    """
    terms = _terms(query)
    if not terms:
        return None
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
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


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


def search(conn: Any, query: str, k: int, allowed_docs: tuple[str, list[Any]] | None = None,
           stats: Stats | None = None) -> list[tuple[int, float]]:
    """``(passage_id, bm25 score)`` of the ``k`` best passages (higher is better), best first; with
    ``allowed_docs`` (SQL selecting document keys, and its parameters) only passages of those documents."""
    expr = match_expression(conn, query, stats)
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

    The match runs once, in a subquery SQLite cannot flatten: a ``rowid IN (...)`` constraint on the
    FTS5 table itself would re-run the full-text query for every listed passage.
    """
    expr = match_expression(conn, query, stats)
    if expr is None or not passage_ids:
        return {}
    sql = ("SELECT pid, s FROM (SELECT rowid AS pid, -bm25(passages_fts) AS s FROM passages_fts "
           "WHERE passages_fts MATCH ? LIMIT -1 OFFSET 0) WHERE pid IN (SELECT value FROM json_each(?))")
    return {int(r[0]): float(r[1]) for r in conn.execute(sql, (expr, json.dumps([int(p) for p in passage_ids])))}
