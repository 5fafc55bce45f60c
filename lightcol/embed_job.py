"""The resumable ``lightcol embed`` job: input files -> Parquet shards in a folder.

Shard ``k`` holds input rows ``[k * shard_size, (k + 1) * shard_size)`` (rows numbered across all
inputs; a skipped bad row still takes its number). Each shard is written to a hidden temporary file
and renamed to ``part-KKKKK.parquet`` once complete, so a visible shard is always whole. The folder's
``_lightcol_job.json`` manifest records the model, the options that shape the vectors and the inputs
(path, size); a rerun with the same ones skips the finished shards (their texts are not read again
for embedding), a rerun with other ones raises :class:`ResumeError` instead of mixing vectors.

Reading and parsing run in a thread ahead of the embedder, and Arrow conversion, MUVERA and Parquet
writing in another behind it, so the job runs at about the speed of ``embed`` itself.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightcol import inputs as _inputs
from lightcol.errors import ArgumentError, InputFileError, ResumeError
from lightcol.muvera import NAMED_SETTINGS

MANIFEST = "_lightcol_job.json"
SKIPPED = "_skipped.jsonl"  # "_" first: Parquet readers of the folder (pyarrow, Polars, DuckDB) skip it
_SKIP_DIR = "_skipped"
FORMAT = "lightcol-embed-job"
#: Default rows per shard (a multiple of every embed window, so shards never split one).
SHARD_SIZE = 65536
#: Rows per Parquet row group (and per hand-off to the writer thread).
ROW_GROUP = 1024
_MUVERA = tuple(NAMED_SETTINGS)


@dataclass
class JobOptions:
    """What ``lightcol embed`` was asked to do (see ``lightcol embed --help``)."""

    inputs: list[str]
    output: str
    model_name: str | None = None
    model_path: str | None = None
    text_field: str = "text"
    id_field: str | None = "id"
    id_required: bool = False
    batch_size: int = 256
    parallel: int | None = None
    threads: int | None = None
    dtype: str = "float32"
    quantized: bool = False
    pool_factor: int = 1
    protected_tokens: int = 1
    muvera: str | None = None
    queries: bool = False
    shard_size: int = SHARD_SIZE
    on_error: str = "raise"
    quiet: bool = False
    ray_address: str | None = None
    ray_actors: int | None = None


@dataclass
class Summary:
    """What a job did: rows written and skipped now, shards kept from an earlier run, seconds."""

    output: str
    embedded: int = 0
    skipped: int = 0
    shards_written: int = 0
    shards_kept: int = 0
    rows_kept: int = 0
    seconds: float = 0.0
    tokens: int = 0
    skipped_file: str | None = None

    def line(self) -> str:
        rate = self.embedded / self.seconds if self.seconds > 0 else 0.0
        parts = [f"embedded {self.embedded} texts ({self.tokens} vectors) in {self.seconds:.1f} s ({rate:.1f} texts/s)",
                 f"{self.shards_written} shard(s) written"]
        if self.shards_kept:
            parts.append(f"{self.shards_kept} kept from an earlier run ({self.rows_kept} rows)")
        if self.skipped:
            parts.append(f"{self.skipped} bad row(s) skipped, listed in {self.skipped_file}")
        return "; ".join(parts) + f" -> {self.output}"


def shard_name(k: int) -> str:
    return f"part-{k:05d}.parquet"


def _check(opts: JobOptions) -> None:
    if not opts.inputs:
        raise ArgumentError("give at least one input file")
    for name in ("batch_size", "shard_size", "pool_factor", "protected_tokens"):
        v = getattr(opts, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "protected_tokens" else 1):
            raise ArgumentError(f"--{name.replace('_', '-')} must be an int >= {0 if name == 'protected_tokens' else 1}, "
                                f"got {v!r}")
    if opts.dtype not in ("float16", "float32"):
        raise ArgumentError(f"--dtype must be 'float16' or 'float32', got {opts.dtype!r}")
    if opts.muvera is not None and opts.muvera not in _MUVERA and not Path(opts.muvera).is_file():
        raise ArgumentError(
            f"--muvera must be one of {', '.join(_MUVERA)} or a file written by Muvera.save (e.g. a fitted encoder), "
            f"got {opts.muvera!r}"
        )
    if opts.on_error not in ("raise", "skip"):
        raise ArgumentError(f"--on-error must be 'raise' or 'skip', got {opts.on_error!r}")
    if opts.queries and opts.pool_factor > 1:
        raise ArgumentError("--pool-factor applies to documents, not to --queries")
    if opts.queries and opts.parallel is not None:
        raise ArgumentError("--parallel applies to documents; --queries are embedded in-process")
    if opts.model_name is None and opts.model_path is None:
        raise ArgumentError("give --model NAME or --model-path DIR")
    if opts.ray_address is not None and opts.parallel is not None:
        raise ArgumentError("--ray and --parallel exclude each other (Ray runs the workers)")


def load_model(opts: JobOptions) -> Any:
    from lightcol import LateInteractionTextEmbedding

    return LateInteractionTextEmbedding(opts.model_name, specific_model_path=opts.model_path,
                                        threads=opts.threads, quantized=opts.quantized)


def make_muvera(kind: str | None, dim: int) -> Any:
    if kind is None:
        return None
    from lightcol.muvera import Muvera

    if kind not in _MUVERA:  # a saved encoder (e.g. Muvera.fit(...).save(path))
        muvera = Muvera.load(kind)
        if muvera.dim != dim:
            raise ArgumentError(f"the Muvera in {kind!r} encodes {muvera.dim}-dim vectors; the model's are {dim}-dim")
        return muvera
    return Muvera(dim, **NAMED_SETTINGS[kind])


def fingerprint(opts: JobOptions, model: Any) -> dict[str, Any]:
    """Everything that shapes the vectors (and the shard layout): a rerun must match it to resume."""
    model_file = Path(model.model_dir) / model._model_file
    rules = model.spec.rules
    return {
        "model": model.model_name,
        "variant": model.model_variant,
        "dim": model.dim,
        "rules": asdict(rules) if hasattr(rules, "__dataclass_fields__") else repr(rules),
        "model_file_bytes": model_file.stat().st_size if model_file.exists() else None,
        "dtype": opts.dtype,
        "pool_factor": opts.pool_factor,
        "protected_tokens": opts.protected_tokens if opts.pool_factor > 1 else None,
        "muvera": opts.muvera,
        "muvera_sha256": (hashlib.sha256(Path(opts.muvera).read_bytes()).hexdigest()
                          if opts.muvera is not None and opts.muvera not in _MUVERA else None),
        "queries": opts.queries,
        "text_field": opts.text_field,
        "id_field": opts.id_field,
        "shard_size": opts.shard_size,
    }


def _input_list(paths: list[str]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        _inputs.input_format(p)
        try:
            size = os.stat(p).st_size
        except FileNotFoundError:
            raise InputFileError(f"{p}: no such file", p) from None
        except OSError as e:
            raise InputFileError(f"{p}: cannot read it ({e.strerror or e})", p) from None
        out.append({"path": os.path.abspath(p), "bytes": size})
    return out


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _prepare_output(out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create or check the output folder; returns the manifest in force (the old one on resume)."""
    path = out / MANIFEST
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"output {out} is a file; --output takes a folder")
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        diffs = [f"{k}: {old['options'].get(k)!r} -> {v!r}" for k, v in manifest["options"].items()
                 if old.get("options", {}).get(k) != v]
        if old.get("inputs") != manifest["inputs"]:
            diffs.append("inputs: " + ", ".join(f"{i['path']} ({i['bytes']} bytes)" for i in old.get("inputs", [])) +
                         " -> " + ", ".join(f"{i['path']} ({i['bytes']} bytes)" for i in manifest["inputs"]))
        if diffs:
            raise ResumeError(
                f"{out} holds a job with other settings ({'; '.join(diffs)}); resuming would mix vectors. "
                f"Rerun with the original settings, or write to a new --output folder (or delete {out})."
            )
        return old
    if out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise ResumeError(f"{out} is not empty and holds no {MANIFEST}: give an empty or new --output folder")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(path, manifest)
    return manifest


class _ShardWriter(threading.Thread):
    """Background thread: Arrow conversion, MUVERA, Parquet writing and the atomic renames."""

    def __init__(self, out: Path, schema_for: Callable[[str], Any], muvera: Any, queries: bool) -> None:
        super().__init__(daemon=True, name="lightcol-shard-writer")
        self.out, self.schema_for, self.muvera, self.queries = out, schema_for, muvera, queries
        self.inbox: queue.Queue[Any] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.written = 0
        self._writer: Any = None
        self._tmp: Path | None = None
        self._shard = -1
        self._skipped: list[dict[str, Any]] = []

    def put(self, item: Any) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.inbox.put(item, timeout=0.1)
                return
            except queue.Full:
                if not self.is_alive():
                    raise RuntimeError("the Parquet writer thread stopped") from self.error

    def run(self) -> None:
        try:
            while True:
                item = self.inbox.get()
                if item is None:
                    return
                if item[0] == "abort":
                    self._abort()
                    return
                self._handle(item)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.error = e
            self._abort()
            while True:  # drain so the producer never blocks
                try:
                    if self.inbox.get(timeout=1.0) is None:
                        return
                except queue.Empty:
                    return

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "rows":
            _, shard, id_type, ids, vectors, skipped = item
            if shard != self._shard:
                self._open(shard, id_type)
            if ids:
                fde = None
                if self.muvera is not None:
                    fde = self.muvera.process_queries(vectors) if self.queries else self.muvera.process_documents(vectors)
                self._writer.write(ids, vectors, fde)
            self._skipped.extend(skipped)
        elif kind == "close":
            _, shard, id_type = item
            if shard != self._shard:
                self._open(shard, id_type)
            self._close()

    def _open(self, shard: int, id_type: str) -> None:
        from lightcol import parquet

        self._abort()
        self._shard = shard
        self._tmp = self.out / f".{shard_name(shard)}.tmp"
        self._writer = parquet.Writer(self._tmp, self.schema_for(id_type))
        self._skipped = []

    def _close(self) -> None:
        self._writer.close()
        if self._skipped:
            folder = self.out / _SKIP_DIR
            folder.mkdir(exist_ok=True)
            _write_lines(folder / f"part-{self._shard:05d}.jsonl", self._skipped)
        with open(self._tmp, "rb+") as f:  # type: ignore[arg-type]
            os.fsync(f.fileno())  # on disk before it is renamed: a crash never leaves a visible empty shard
        os.replace(self._tmp, self.out / shard_name(self._shard))  # type: ignore[arg-type]
        self.written += 1
        self._writer, self._tmp, self._shard, self._skipped = None, None, -1, []

    def _abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001
                pass
            self._writer = None
        if self._tmp is not None:
            try:
                self._tmp.unlink()
            except OSError:
                pass
            self._tmp = None
        self._shard = -1


def _write_lines(path: Path, records: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


def _read_ahead(reader: Iterable[_inputs.Row], stop: threading.Event, chunk: int = 256) -> Iterator[list[_inputs.Row]]:
    """Chunks of ``reader``'s rows, parsed in a background thread (at most a few chunks ahead)."""
    q: queue.Queue[Any] = queue.Queue(maxsize=16)

    def produce() -> None:
        try:
            buf: list[_inputs.Row] = []
            for row in reader:
                buf.append(row)
                if len(buf) == chunk:
                    if not _put(q, ("rows", buf), stop):
                        return
                    buf = []
            if buf and not _put(q, ("rows", buf), stop):
                return
            _put(q, ("end", None), stop)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            _put(q, ("error", e), stop)

    t = threading.Thread(target=produce, daemon=True, name="lightcol-input-reader")
    t.start()
    while True:
        kind, payload = q.get()
        if kind == "rows":
            yield payload
        elif kind == "error":
            raise payload
        else:
            return


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _readable(path: Path, quiet: bool) -> bool:
    """Whether a finished shard exists and its Parquet footer reads; a damaged one is deleted (redone)."""
    if not path.exists():
        return False
    from lightcol import parquet

    try:
        parquet._pq().read_metadata(path)
        return True
    except Exception as e:  # noqa: BLE001 - pyarrow's error types
        if not quiet:
            print(f"lightcol embed: {path} is damaged ({e}); embedding its rows again", file=sys.stderr)
        path.unlink()
        return False


def _id_type(value: Any) -> str:
    return "string" if isinstance(value, str) else "int64"


def run_job(opts: JobOptions, model: Any = None, log: Any = None) -> Summary:
    """Run (or resume) the job; returns what it did. ``log``: where the summary line goes (``None``: stderr)."""
    _check(opts)
    t0 = time.perf_counter()
    if model is None:
        model = load_model(opts)
    from lightcol import parquet

    parquet.pa()  # a missing extra fails before any work
    out = Path(opts.output)
    fp = fingerprint(opts, model)
    manifest = {"format": FORMAT, "version": 1, "options": fp, "inputs": _input_list(opts.inputs)}
    manifest = _prepare_output(out, manifest)
    for stale in out.glob(".part-*.tmp"):
        stale.unlink()
    total = _inputs.count_rows(opts.inputs)
    shard_size = opts.shard_size
    n_shards = -(-total // shard_size)
    done = {k for k in range(n_shards) if _readable(out / shard_name(k), opts.quiet)}
    first_todo = next((k for k in range(n_shards) if k not in done), n_shards)
    summary = Summary(output=str(out), shards_kept=len(done))
    summary.rows_kept = sum(min(shard_size, total - k * shard_size) for k in done)
    muvera = make_muvera(opts.muvera, model.dim)
    meta = {"model": model.model_name, "model_variant": model.model_variant, "rules": fp["rules"],
            "fingerprint": fp, "pool_factor": opts.pool_factor, "queries": opts.queries,
            "muvera": None if muvera is None else {"kind": opts.muvera, "k_sim": muvera.k_sim,
                                                    "dim_proj": muvera.dim_proj, "r_reps": muvera.r_reps,
                                                    "random_seed": muvera.random_seed}}

    def schema_for(id_type: str) -> Any:
        return parquet.schema(model.dim, opts.dtype, id_type,
                              None if muvera is None else muvera.embedding_size, meta)

    id_type: str | None = manifest.get("id_type")
    bar = None
    if not opts.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=summary.rows_kept, unit="texts", desc="embed", dynamic_ncols=True,
                   file=sys.stderr, smoothing=0.1)
    stop = threading.Event()
    writer = _ShardWriter(out, schema_for, muvera, opts.queries)
    writer.start()
    reader = _inputs.Reader(opts.inputs, opts.text_field, opts.id_field, opts.id_required,
                            start_row=first_todo * shard_size)
    # (row, id) of each text handed to the embedder, and bad rows in between (id None, error record)
    pending: collections.deque[tuple[int, Any, dict[str, Any] | None]] = collections.deque()
    skip = opts.on_error == "skip"

    def texts() -> Iterator[str]:
        nonlocal id_type
        for chunk in _read_ahead(reader, stop):
            for row in chunk:
                if row.row // shard_size in done:
                    continue
                if row.error is None and id_type is not None and _id_type(row.id) != id_type:
                    row.error = (f"id {row.id!r} is {'a string' if isinstance(row.id, str) else 'an int'}, but earlier "
                                 f"ids are {'strings' if id_type == 'string' else 'ints (row numbers or int ids)'}; "
                                 "give every input the same kind of id")
                if row.error is not None:
                    if not skip:
                        raise row.exception()
                    pending.append((row.row, None, {"row": row.row, "id": row.id, "file": row.path,
                                                    "line": row.line, "error": row.error}))
                    continue
                if id_type is None:
                    id_type = _id_type(row.id)
                    manifest["id_type"] = id_type
                    _write_json(out / MANIFEST, manifest)
                pending.append((row.row, row.id, None))
                yield row.text  # type: ignore[misc]

    vectors_of = _embedder(opts, model)
    t0 = time.perf_counter()  # the rate counts embedding, not the model load
    shard = -1
    ids: list[Any] = []
    vecs: list[np.ndarray] = []
    skipped: list[dict[str, Any]] = []

    def flush(close: bool) -> None:
        nonlocal ids, vecs, skipped
        if shard < 0:
            return
        if ids or skipped or close:
            writer.put(("rows", shard, id_type or "int64", ids, vecs, skipped))
            summary.embedded += len(ids)
            summary.skipped += len(skipped)
            summary.tokens += sum(len(v) for v in vecs)
            if bar is not None:
                bar.update(len(ids) + len(skipped))
            ids, vecs, skipped = [], [], []
        if close:
            writer.put(("close", shard, id_type or "int64"))

    def advance(row: int) -> None:
        nonlocal shard
        k = row // shard_size
        if k != shard:
            flush(close=True)
            shard = k

    def drain_skipped() -> None:
        while pending and pending[0][2] is not None:
            row, _, rec = pending.popleft()
            advance(row)
            skipped.append(rec)  # type: ignore[arg-type]

    try:
        for v in vectors_of(texts()):
            drain_skipped()
            row, rid, _ = pending.popleft()
            advance(row)
            ids.append(rid)
            vecs.append(v)
            if len(ids) >= ROW_GROUP:
                flush(close=False)
        drain_skipped()
        flush(close=True)
        if total == 0 and not done and writer.written == 0 and shard < 0:
            writer.put(("close", 0, id_type or "int64"))  # empty input: one empty shard, so readers see the schema
        writer.put(None)
        writer.join()
        if writer.error is not None:
            raise writer.error
    except BaseException:
        stop.set()
        # finished shards still queued are closed and renamed first; the partial one is deleted
        while writer.is_alive():
            try:
                writer.inbox.put(("abort",), timeout=0.1)
                break
            except queue.Full:
                continue
        writer.join()
        if bar is not None:
            bar.close()
        raise
    if bar is not None:
        bar.close()
    summary.shards_written = writer.written
    summary.seconds = time.perf_counter() - t0
    if (out / _SKIP_DIR).is_dir():
        records = []
        for f in sorted((out / _SKIP_DIR).glob("part-*.jsonl")):
            records.extend(json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line)
        _write_lines(out / SKIPPED, records)
        summary.skipped_file = str(out / SKIPPED)
        summary.skipped = len(records)
    manifest["complete"] = {"rows": total, "shards": n_shards}
    _write_json(out / MANIFEST, manifest)
    if not opts.quiet:
        print(f"lightcol embed: {summary.line()}", file=log or sys.stderr)
    return summary


def _embedder(opts: JobOptions, model: Any) -> Callable[[Iterator[str]], Iterable[np.ndarray]]:
    """A function texts -> vectors in order, as the options ask (in-process, processes, or Ray)."""
    if opts.ray_address is not None:
        from lightcol import ray as _lray

        return lambda texts: _lray.embed_texts(
            texts, address=opts.ray_address, actors=opts.ray_actors, model_name=opts.model_name,
            specific_model_path=opts.model_path, batch_size=opts.batch_size, dtype=opts.dtype,
            quantized=opts.quantized, pool_factor=opts.pool_factor, protected_tokens=opts.protected_tokens,
            queries=opts.queries, threads_per_actor=opts.threads or 1)
    if opts.queries:
        return lambda texts: model.query_embed(texts, batch_size=opts.batch_size, dtype=opts.dtype)
    return lambda texts: model.embed(texts, batch_size=opts.batch_size, parallel=opts.parallel, dtype=opts.dtype,
                                     pool_factor=opts.pool_factor, protected_tokens=opts.protected_tokens)
