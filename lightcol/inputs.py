"""Texts (and ids) from input files for ``lightcol embed``: ``.txt``, ``.jsonl``, ``.csv``, ``.parquet``.

Rows are numbered across all inputs in order (0-based); that number is a record's id unless the
record has an id field. ``.txt``: one text per line (every line is a row, an empty one too).
``.jsonl``: one JSON object per line (blank lines are no rows). ``.csv``: a header row, then one row
per record (ids read from CSV are strings). ``.parquet``: a string text column (and an int or string id
column); needs ``pyarrow``.

Every problem names the file and the 1-based line (``.parquet``: row): a whole-file problem (missing
or unreadable file, no such column) raises :class:`lightcol.errors.InputFileError` at once; a bad
record (invalid UTF-8 or JSON, missing field, non-string text, bad id) is yielded as a :class:`Row`
with ``error`` set, for the caller to raise or skip.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightcol.errors import InputFileError

FORMATS = (".txt", ".jsonl", ".csv", ".parquet")
_ALIASES = {".ndjson": ".jsonl", ".tsv": ".csv", ".text": ".txt", ".pq": ".parquet"}


@dataclass
class Row:
    """One input record: global ``row`` number, ``id``, ``text`` (``None`` if ``error``), where it came from."""

    row: int
    id: Any
    text: str | None
    path: str
    line: int
    error: str | None = None

    def exception(self) -> InputFileError:
        where = f"{self.path}:{self.line}" if not self.path.endswith(".parquet") else f"{self.path}: row {self.line}"
        return InputFileError(f"{where}: {self.error}", self.path, self.line)


def input_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` by its extension (one of :data:`FORMATS`)."""
    suffix = Path(path).suffix.lower()
    fmt = _ALIASES.get(suffix, suffix)
    if fmt not in FORMATS:
        raise InputFileError(
            f"{path}: unknown input format {suffix or '(no extension)'!r}; use .txt (one text per line), .jsonl, .csv or .parquet",
            os.fspath(path),
        )
    return fmt


def _open(path: str) -> io.BufferedReader:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file", path) from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a folder, not a file", path) from None
    except OSError as e:
        raise InputFileError(f"{path}: cannot read it ({e.strerror or e})", path) from None


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"invalid UTF-8 at byte {e.start} of the line"


def _check_text(text: Any, field: str | None) -> str | None:
    """Why ``text`` cannot be embedded, or ``None``."""
    what = "the text" if field is None else f"field {field!r}"
    if not isinstance(text, str):
        return f"{what} is {'missing' if text is _MISSING else 'null' if text is None else type(text).__name__}, not a string"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"{what} holds a lone surrogate (\\u{ord(text[e.start]):04x}) at character {e.start}: not valid Unicode"
    return None


_MISSING = object()
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark at the start of a file is not part of the first text


def _check_id(value: Any, field: str) -> str | None:
    if value is _MISSING:
        return f"id field {field!r} is missing"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return f"id field {field!r} is {type(value).__name__}, expected an int or a string"
    return None


def count_rows(paths: Sequence[str]) -> int:
    """Rows of all inputs (blank JSONL lines and CSV headers excluded), reading each file once."""
    total = 0
    for path in paths:
        fmt = input_format(path)
        if fmt == ".parquet":
            total += _parquet_file(path).metadata.num_rows
            continue
        with _open(path) as f:
            if fmt == ".txt":
                n = last = 0
                for block in iter(lambda: f.read(1 << 20), b""):
                    n += block.count(b"\n")
                    last = block[-1]
                total += n + (1 if last not in (0, 10) else 0)
            elif fmt == ".jsonl":
                total += sum(1 for line in f if line.strip())
            else:
                text = io.TextIOWrapper(f, encoding="utf-8", errors="surrogateescape", newline="")
                try:
                    total += max(0, sum(1 for _ in csv.reader(text)) - 1)
                except csv.Error:
                    pass  # reported with its line when read
    return total


def _parquet_file(path: str) -> Any:
    from lightcol._optional import require

    pq = require("pyarrow.parquet", "parquet", "reading .parquet inputs")
    if not os.path.exists(path):
        raise InputFileError(f"{path}: no such file", path)
    try:
        return pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow's error types
        raise InputFileError(f"{path}: not a readable Parquet file ({e})", path) from None


class Reader:
    """Rows of ``paths`` in order, starting at global row ``start_row`` (earlier rows are counted, not parsed).

    ``id_field``: a field holding ids; ``id_required=False`` uses it only in files whose first record
    (JSONL) or header (CSV, Parquet) has it, else row numbers. ``.txt`` rows always use row numbers.
    """

    def __init__(self, paths: Sequence[str], text_field: str = "text", id_field: str | None = "id",
                 id_required: bool = False, start_row: int = 0) -> None:
        self.paths = [os.fspath(p) for p in paths]
        for p in self.paths:
            input_format(p)
        self.text_field, self.id_field, self.id_required = text_field, id_field, id_required
        self.start_row = start_row
        self.row = 0

    def __iter__(self) -> Iterator[Row]:
        for path in self.paths:
            fmt = input_format(path)
            if fmt == ".txt":
                yield from self._txt(path)
            elif fmt == ".jsonl":
                yield from self._jsonl(path)
            elif fmt == ".csv":
                yield from self._csv(path)
            else:
                yield from self._parquet(path)

    def _next(self) -> int:
        row = self.row
        self.row += 1
        return row

    def _txt(self, path: str) -> Iterator[Row]:
        with _open(path) as f:
            for n, raw in enumerate(f, 1):
                row = self._next()
                if row < self.start_row:
                    continue
                if n == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                text, err = _decode(raw[:-1] if raw.endswith(b"\n") else raw)
                if text is not None and text.endswith("\r"):
                    text = text[:-1]
                yield Row(row, row, text, path, n, err)

    def _jsonl(self, path: str) -> Iterator[Row]:
        use_id: bool | None = True if self.id_required else (None if self.id_field else False)
        with _open(path) as f:
            for n, raw in enumerate(f, 1):
                if n == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                if not raw.strip():
                    continue
                row = self._next()
                if row < self.start_row and use_id is not None:
                    continue
                line, err = _decode(raw)
                rec: Any = None
                if err is None:
                    try:
                        rec = json.loads(line)  # type: ignore[arg-type]
                    except ValueError as e:
                        err = f"not valid JSON ({getattr(e, 'msg', e)})"
                if err is None and not isinstance(rec, dict):
                    err = f"expected a JSON object, got {type(rec).__name__}"
                if use_id is None:  # decided by the file's first record
                    use_id = isinstance(rec, dict) and self.id_field in rec
                if row < self.start_row:
                    continue
                if err is not None:
                    yield Row(row, row, None, path, n, err)
                    continue
                yield self._record(row, path, n, rec.get(self.text_field, _MISSING),
                                   rec.get(self.id_field, _MISSING) if use_id else row, use_id)

    def _record(self, row: int, path: str, n: int, text: Any, rid: Any, use_id: bool) -> Row:
        err = _check_text(text, self.text_field)
        if use_id:
            id_err = _check_id(rid, self.id_field)  # type: ignore[arg-type]
            if id_err is not None:
                return Row(row, row, None, path, n, id_err)
        return Row(row, rid, text if err is None else None, path, n, err)

    def _csv(self, path: str) -> Iterator[Row]:
        with _open(path) as f:
            text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
            reader = csv.reader(text)
            try:
                header = next(reader, None)
            except csv.Error as e:
                raise InputFileError(f"{path}:1: not valid CSV ({e})", path, 1) from None
            if header is None:
                return
            if self.text_field not in header:
                raise InputFileError(
                    f"{path}:1: no column {self.text_field!r} in the header (columns: {', '.join(header)}); "
                    "choose one with --text-field", path, 1)
            ti = header.index(self.text_field)
            use_id = self.id_field is not None and self.id_field in header
            if self.id_required and not use_id:
                raise InputFileError(f"{path}:1: no id column {self.id_field!r} in the header", path, 1)
            ii = header.index(self.id_field) if use_id else -1  # type: ignore[arg-type]
            while True:
                start = reader.line_num + 1
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    row = self._next()
                    if row >= self.start_row:
                        yield Row(row, row, None, path, start, f"not valid CSV ({e})")
                    continue
                row = self._next()
                if row < self.start_row:
                    continue
                if len(fields) != len(header):
                    yield Row(row, row, None, path, start, f"{len(fields)} fields, the header has {len(header)}")
                    continue
                bad = next((x for x in fields if _has_escape(x)), None)
                if bad is not None:
                    yield Row(row, row, None, path, start, "invalid UTF-8")
                    continue
                yield self._record(row, path, start, fields[ti], fields[ii] if use_id else row, use_id)

    def _parquet(self, path: str) -> Iterator[Row]:
        pf = _parquet_file(path)
        names = pf.schema_arrow.names
        if self.text_field not in names:
            raise InputFileError(f"{path}: no column {self.text_field!r} (columns: {', '.join(names)}); "
                                 "choose one with --text-field", path)
        use_id = self.id_field is not None and self.id_field in names
        if self.id_required and not use_id:
            raise InputFileError(f"{path}: no id column {self.id_field!r}", path)
        columns = [self.text_field] + ([self.id_field] if use_id else [])
        n = 0
        try:
            for batch in pf.iter_batches(batch_size=4096, columns=columns):
                size = batch.num_rows
                if self.row + size <= self.start_row:
                    self.row += size
                    n += size
                    continue
                texts = batch.column(0).to_pylist()
                ids = batch.column(1).to_pylist() if use_id else None
                for i, text in enumerate(texts):
                    row = self._next()
                    n += 1
                    if row < self.start_row:
                        continue
                    yield self._record(row, path, n, text, ids[i] if ids is not None else row, use_id)
        except InputFileError:
            raise
        except OSError as e:
            raise InputFileError(f"{path}: row {n + 1}: cannot read it ({e})", path, n + 1) from None


def _has_escape(s: str) -> bool:
    """Whether ``s`` holds a byte that was not valid UTF-8 (decoded with ``surrogateescape``)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
