"""Data-parallel document embedding in worker processes: ``embed(documents, parallel=N)``.

Each worker process opens its own ONNX Runtime session on the same model folder (``spawn`` start
method: no state is inherited from the caller, so it is safe whatever threads the caller runs;
scripts that start workers need the usual ``if __name__ == "__main__":`` guard). The caller reads
the input lazily in chunks of texts, keeps at most two chunks per worker in flight, and yields the
vectors in input order: memory stays bounded however long the stream.

A worker that dies (killed, out of memory, a crash in native code) or raises makes the caller's
generator raise :class:`WorkerError` within a fraction of a second, instead of hanging; every
worker is stopped when the generator finishes, fails or is closed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from lightcol.errors import ArgumentError, WorkerError

#: Texts per chunk sent to a worker (sorted by length and batched there): small enough to spread
#: a few hundred texts over the workers, large enough for length-sorting to remove most padding.
CHUNK_TEXTS = 64
#: How often (seconds) the caller checks that its workers are alive while it waits for results.
_POLL_S = 0.05


def worker_count(parallel: int) -> int:
    """Workers for ``parallel``: ``0`` means one per CPU core."""
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 0:
        raise ArgumentError(f"parallel must be None or an int >= 0 (0: one worker per core), got {parallel!r}")
    return parallel or (os.cpu_count() or 1)


#: How often (seconds) a worker checks that its parent process is still alive.
_PARENT_POLL_S = 1.0


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker as soon as its parent is gone (killed, crashed): no orphans holding memory."""
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != parent_pid:
            os._exit(0)


def _worker(make_model: Callable[..., Any], init: dict[str, Any], inbox: Any, outbox: Any,
            parent_pid: int | None = None) -> None:
    outbox.put((-2, "started", os.getpid()))
    if parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="lightcol-parent-watch").start()
    try:
        model = make_model(**init)
    except BaseException as e:  # noqa: BLE001 - reported to the caller
        outbox.put((-1, "error", f"worker could not load the model: {type(e).__name__}: {e}"))
        return
    while True:
        item = inbox.get()
        if item is None:
            return
        chunk_id, texts, batch_size, dtype, pool = item
        try:
            vectors = model._embed_documents(texts, batch_size, dtype, pool)
            lengths = np.array([len(v) for v in vectors], dtype=np.int64)
            flat = np.concatenate(vectors) if vectors else np.empty((0, model.dim), dtype=dtype)
            outbox.put((chunk_id, "ok", (flat, lengths)))
        except BaseException:  # noqa: BLE001 - reported to the caller
            outbox.put((chunk_id, "error", traceback.format_exc()))


#: The message of a worker that died before running any lightcol code.
_NO_MAIN_GUARD = (
    "embedding worker process(es) exited during start-up (exit code {codes}) before running any lightcol code. "
    "The usual cause: the script calls embed(..., parallel=N) at module level. Worker processes are started "
    "with the 'spawn' method, which re-imports the main script, so put the calling code under "
    "`if __name__ == \"__main__\":` (see the worker's traceback above in stderr)."
)
#: The message raised inside a spawned worker that is re-importing a main script without the guard.
_IN_WORKER_IMPORT = (
    "embed(..., parallel=N) was called while an embedding worker process was importing the main script "
    "(worker processes are started with the 'spawn' method, which re-imports it): the script calls "
    "embed(..., parallel=N) at module level. Put the calling code under `if __name__ == \"__main__\":`."
)


def _check_alive(procs: list[Any], started: set[int] | None = None) -> None:
    dead = [p for p in procs if p.exitcode is not None]
    # A start-up failure (e.g. no main guard) exits with a positive code before any worker reports in;
    # a signal (negative code) or a death after some worker started is a crash of a running worker.
    if dead and started is not None and not started and all(p.exitcode > 0 for p in dead):
        raise WorkerError(_NO_MAIN_GUARD.format(codes=", ".join(str(p.exitcode) for p in dead)))
    if dead:
        codes = ", ".join(f"pid {p.pid} exit code {p.exitcode}" for p in dead)
        raise WorkerError(
            f"{len(dead)} of {len(procs)} embedding worker process(es) died ({codes}); a negative code is "
            "the signal that killed it (-9: killed, often out of memory). Use fewer workers "
            "(parallel=N), a smaller batch_size=N, or parallel=None to embed in-process."
        )


def _release_semaphore_names(*queues: Any) -> None:
    """Unlink the named semaphores of ``queues`` once every worker has opened them.

    Each process keeps its own handle, so the semaphores keep working; with no name left, nothing
    outlives the processes however they end: a killed caller no longer leaves them to the resource
    tracker, which cleans them up with a "leaked semaphore objects" warning at shutdown. Done by
    running multiprocessing's own finalizer of each semaphore (unlink, unregister) early; where its
    internals differ, the names are left to multiprocessing as before.
    """
    from multiprocessing import util

    try:
        locks = [lock for q in queues for lock in (q._rlock, q._wlock, q._sem) if lock is not None]
        finalizers = list(util._finalizer_registry.values())
    except AttributeError:
        return
    for f in finalizers:
        ref = getattr(f, "_weakref", None)
        target = ref() if ref is not None else None
        if target is not None and any(target is lock for lock in locks):
            f()


def _await_started(outbox: Any, procs: list[Any], started: set[int]) -> None:
    """Wait until every worker has reported in (it has opened both queues), before any work is sent:
    then the queues' semaphore names can go at once, not whenever the caller next reads a result (a
    caller killed between its first result and the last worker's report left them to the tracker)."""
    while len(started) < len(procs):
        try:
            item = outbox.get(timeout=_POLL_S)
        except queue.Empty:
            _check_alive(procs, started)
            continue
        if item[1] == "started":
            started.add(item[2])
        else:  # no work was sent: only a worker that could not load the model says anything else
            raise WorkerError(f"an embedding worker process failed:\n{item[2]}")


def _receive(outbox: Any, procs: list[Any], started: set[int]) -> tuple[int, str, Any]:
    # Workers only exit when told to, so any exit during the run is a failure, even one that
    # lost no chunk: checked before every result, not only while the results stall. Every worker's
    # "started" report was taken by _await_started, before any work was sent.
    while True:
        try:
            item = outbox.get(timeout=_POLL_S)
        except queue.Empty:
            _check_alive(procs, started)
            continue
        _check_alive(procs, started)
        return item


def _shutdown(procs: list[Any], inbox: Any, outbox: Any) -> None:
    for p in procs:
        if p.exitcode is None:
            try:
                inbox.put(None)
            except (OSError, ValueError):
                pass
    for p in procs:
        p.join(timeout=1.0)
    for p in procs:
        if p.exitcode is None:
            p.terminate()
            p.join(timeout=1.0)
        if p.exitcode is None:
            p.kill()
            p.join(timeout=1.0)
    for q in (inbox, outbox):
        q.cancel_join_thread()
        q.close()


def embed_documents(
    make_model: Callable[..., Any],
    init: dict[str, Any],
    windows: Iterator[tuple[list[str], BaseException | None]],
    workers: int,
    batch_size: int,
    dtype: type,
    pool: tuple[int, int] = (1, 1),
) -> Iterator[np.ndarray]:
    """Vectors of every text of ``windows`` (see ``embedding._windows``), in order, from ``workers`` processes.

    Each worker opens its model as ``make_model(**init)`` (the embedding class, sent by reference:
    picklable) and embeds with its ``_embed_documents``.
    """
    if getattr(mp.process.current_process(), "_inheriting", False):
        # We are a spawned worker re-importing the caller's main script, which has no main guard.
        raise WorkerError(_IN_WORKER_IMPORT)
    ctx = mp.get_context("spawn")
    inbox, outbox = ctx.Queue(), ctx.Queue()
    parent = os.getpid()
    procs = [ctx.Process(target=_worker, args=(make_model, init, inbox, outbox, parent), daemon=True,
                         name=f"lightcol-worker-{i}") for i in range(workers)]
    started: set[int] = set()
    for p in procs:
        p.start()
    try:
        _await_started(outbox, procs, started)
        _release_semaphore_names(inbox, outbox)
        sent = done = 0
        pending: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        source_error: BaseException | None = None
        exhausted = False
        while True:
            while not exhausted and sent - done < 2 * workers:
                try:
                    chunk, error = next(windows)
                except StopIteration:
                    exhausted = True
                    break
                if chunk:
                    inbox.put((sent, chunk, batch_size, dtype, pool))
                    sent += 1
                if error is not None:
                    source_error, exhausted = error, True
            if done == sent:
                break
            chunk_id, status, payload = _receive(outbox, procs, started)
            if status != "ok":
                raise WorkerError(f"an embedding worker process failed:\n{payload}")
            pending[chunk_id] = payload
            while done in pending:
                flat, lengths = pending.pop(done)
                done += 1
                start = 0
                for n in lengths.tolist():
                    yield flat[start : start + n]
                    start += n
        if source_error is not None:
            raise source_error
    finally:
        _shutdown(procs, inbox, outbox)
