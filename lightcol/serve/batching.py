"""Dynamic batching: the texts of concurrent requests merged into ONNX Runtime calls, and split back.

One :class:`Batcher` owns the model's ONNX Runtime session through an ``encode(ids, is_doc)``
function (``LateInteractionTextEmbedding._encode``: one call, each text's vectors). Requests hand it
token ids (:meth:`Batcher.submit`) and get a :class:`concurrent.futures.Future` of their vectors.
One model serves every caller.

Two lanes, one session: a query worker thread runs query batches and a document worker thread runs
document batches, each one batch at a time, on the same ONNX Runtime session (its ``run`` may be
called from several threads at once; the weights are in memory once). A query that arrives while a
document batch runs is therefore not queued behind it: its batch starts at once and shares the
cores with the document batch, so queries go ahead of long documents. Each worker forms its next
batch as soon as its previous one is done, from whatever waits then: no timer, no idle model while
texts wait. With ``workers=N`` each lane has N worker threads, so N batches of a kind run at once
(with one-thread runs, the cores are used better than by one many-thread run; see docs/serve.md).

How a batch is formed:

* a batch holds queries or documents, never both (their padding differs);
* every batch serves the request next in a round-robin over the waiting requests of its kind (its
  oldest waiting text is the batch's *anchor*), so a small request never waits behind all the texts
  of a huge one: it is served within one batch per request ahead of it;
* the rest of the batch is filled with waiting texts of any request: queries one per request in
  turn; documents by length nearest the anchor's (little padding), while the padded size (rows x
  longest) stays within ``max_batch_tokens`` and the rows within ``max_rows``;
* with ``batching=False`` (the baseline: one request at a time) there is one worker; a batch holds
  texts of one request only, requests run in arrival order, queries before documents except that
  documents get every ``(doc_every)``-th batch while queries wait.

Admission is bounded: more than ``max_queue`` texts waiting raises :class:`QueueFull` (the service
answers 503 with ``Retry-After``) instead of queueing without limit. A batch that fails is retried
request by request, so an error fails only the request that caused it.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

QUERY = "query"
DOCUMENT = "document"
KINDS = (QUERY, DOCUMENT)

#: Padding a document batch may add, as a fraction of its texts' own tokens. A padded token costs as
#: much as a real one, and on a CPU batching saves less than that: CISI abstracts (MiniLM, 2 threads)
#: in length-sorted batches run 1.2-1.45x faster than one at a time, in arrival-order batches no
#: faster. With 16 callers, a cap of 0.25 served more abstracts per second than none (18 % padding)
#: and than 0.1 (batches too small).
MAX_PADDING = 0.25
#: Texts of one request considered when filling a document batch, and of all requests together.
_SCAN_PER_REQUEST = 256
_SCAN_TOTAL = 1024

Encode = Callable[[list[list[int]], bool], list[np.ndarray]]
#: ``on_batch(kind, rows, padded_tokens, requests, seconds)``, called after each ONNX Runtime call.
BatchHook = Callable[[str, int, int, int, float], None]


class QueueFull(Exception):
    """More texts are waiting than the server's ``--max-queue`` allows; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The batcher is closed: the server is shutting down."""


@dataclass(eq=False)
class _Job:
    """One submitted request: its texts' token ids, their padded costs and results."""

    kind: str
    ids: list[list[int]]
    costs: list[int]
    future: Future[list[np.ndarray]]
    pending: dict[int, None]  # positions not yet in a batch, in order (a dict: ordered, O(1) removal)
    results: list[Any] = field(default_factory=list)
    remaining: int = 0
    failed: bool = False


class Batcher:
    """Merge the texts of concurrent requests into ONNX Runtime batches (see the module docstring).

    Args:
        encode: ``encode(ids, is_doc)`` -> one array of vectors per text, in order (one ONNX call).
        query_length: the model's query length (every query costs that many padded tokens).
        max_batch_tokens: padded tokens (rows x longest) per call; a longer text still runs (alone).
        max_queue: texts that may wait; :meth:`submit` beyond it raises :class:`QueueFull`.
        max_rows: texts per call at most.
        batching: ``False``: never merge requests (one request at a time, in arrival order).
        workers: batches of each kind run at once (with batching), each by its own worker thread on the
            same session; without batching there is one worker.
        max_padding: padding a document batch may add, as a fraction of its texts' tokens (with batching).
        doc_every: without batching (one worker), documents still get every ``doc_every``-th batch while
            queries wait.
        on_batch: called after every call (metrics).
    """

    def __init__(
        self,
        encode: Encode,
        *,
        query_length: int,
        max_batch_tokens: int = 1024,
        max_queue: int = 1024,
        max_rows: int = 256,
        batching: bool = True,
        doc_every: int = 3,
        max_padding: float = MAX_PADDING,
        workers: int = 1,
        on_batch: BatchHook | None = None,
    ) -> None:
        if max_batch_tokens < 1 or max_queue < 1 or max_rows < 1 or doc_every < 1 or workers < 1:
            raise ValueError("max_batch_tokens, max_queue, max_rows, doc_every and workers must be >= 1")
        self._encode = encode
        self.query_length = int(query_length)
        self.max_batch_tokens = int(max_batch_tokens)
        self.max_queue = int(max_queue)
        self.max_rows = int(max_rows)
        self.batching = bool(batching)
        self.workers = int(workers) if self.batching else 1
        self._doc_every = int(doc_every)
        if not max_padding >= 0:
            raise ValueError(f"max_padding must be >= 0, got {max_padding}")
        self.max_padding = float(max_padding)
        self._on_batch = on_batch
        self._lock = threading.Lock()
        self._jobs: dict[str, deque[_Job]] = {QUERY: deque(), DOCUMENT: deque()}
        self._waiting = 0  # texts not yet in a batch
        self._waiting_of = {QUERY: 0, DOCUMENT: 0}
        self._waiting_tokens = 0
        self._running = {QUERY: 0, DOCUMENT: 0}  # texts in the batches being run
        self._queries_in_a_row = 0
        self._tokens_per_s = {QUERY: 0.0, DOCUMENT: 0.0}  # moving averages of padded tokens per second
        self._closing = False
        # ``workers`` worker threads per lane: each kind its own lane with batching, one lane for both without
        lanes: tuple[tuple[str, ...], ...] = ((QUERY,), (DOCUMENT,)) if self.batching else ((QUERY, DOCUMENT),)
        self._wake: dict[str, threading.Condition] = {}
        self._threads: list[threading.Thread] = []
        for lane in lanes:
            cond = threading.Condition(self._lock)
            for kind in lane:
                self._wake[kind] = cond
            for w in range(self.workers):
                name = f"lightcol-batcher-{'-'.join(lane)}-{w}" if self.batching else "lightcol-batcher"
                self._threads.append(threading.Thread(target=self._loop, args=(lane, cond), name=name, daemon=True))
        for thread in self._threads:
            thread.start()

    # -- submitting ------------------------------------------------------------------------------
    def cost(self, kind: str, ids: Sequence[int]) -> int:
        """Padded tokens one text takes in a batch (queries: always the query length; documents: + marker)."""
        return self.query_length if kind == QUERY else len(ids) + 1

    def submit(self, kind: str, ids: list[list[int]], *, admit: bool = True) -> Future[list[np.ndarray]]:
        """Queue the texts (token ids from ``model._tokenize``) of one request; the future gives their vectors.

        ``admit=False`` skips the ``max_queue`` check (work already admitted, fed in chunks).

        :raises QueueFull: ``admit`` and more than ``max_queue`` texts would wait.
        :raises ShuttingDown: :meth:`close` was called.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be 'query' or 'document', got {kind!r}")
        future: Future[list[np.ndarray]] = Future()
        if not ids:
            future.set_result([])
            return future
        costs = [self.cost(kind, s) for s in ids]
        job = _Job(kind, ids, costs, future, dict.fromkeys(range(len(ids))), [None] * len(ids), len(ids))
        with self._lock:
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            if admit and self._waiting + len(ids) > self.max_queue:
                raise QueueFull(
                    f"the server is at capacity: {self._waiting} texts are waiting and this request adds {len(ids)} "
                    f"(at most {self.max_queue} may wait); retry later",
                    self._retry_after_locked(len(ids)),
                )
            self._jobs[kind].append(job)
            self._waiting += len(ids)
            self._waiting_of[kind] += len(ids)
            self._waiting_tokens += sum(costs)
            self._wake[kind].notify()
        return future

    @property
    def queued(self) -> int:
        """Texts waiting for a batch (not counting the one being run)."""
        return self._waiting

    @property
    def queued_tokens(self) -> int:
        """Padded tokens of the texts waiting."""
        return self._waiting_tokens

    @property
    def running(self) -> int:
        """Texts in the batches being run now."""
        return sum(self._running.values())

    def retry_after(self) -> int:
        """Seconds a rejected caller should wait: the queue's tokens over the measured throughput (1 to 60)."""
        with self._lock:
            return self._retry_after_locked(0)

    def _retry_after_locked(self, extra_texts: int) -> int:
        rate = max(self._tokens_per_s.values())
        if rate <= 0:
            return 1
        return int(min(60, max(1, math.ceil(self._waiting_tokens / rate))))

    def close(self, timeout: float | None = None) -> None:
        """Stop taking requests, finish every text already queued, stop the worker threads."""
        with self._lock:
            self._closing = True
            for cond in set(self._wake.values()):
                cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @property
    def closed(self) -> bool:
        return self._closing

    # -- the worker ------------------------------------------------------------------------------
    def _loop(self, lane: tuple[str, ...], cond: threading.Condition) -> None:
        """One worker: the next batch of the lane's kinds as soon as the previous one is done."""
        while True:
            with self._lock:
                while not any(self._waiting_of[k] for k in lane) and not self._closing:
                    cond.wait()
                if not any(self._waiting_of[k] for k in lane):
                    return  # closing, nothing left
                kind, picks = self._select(lane)
                self._running[kind] += len(picks)
                if any(self._waiting_of[k] for k in lane):
                    cond.notify()  # another worker of the lane takes what is left
            try:
                if picks:
                    self._run(kind, picks)
            finally:
                with self._lock:
                    self._running[kind] -= len(picks)

    def _take(self, job: _Job, pos: int) -> None:
        del job.pending[pos]
        self._waiting -= 1
        self._waiting_of[job.kind] -= 1
        self._waiting_tokens -= job.costs[pos]

    def _drop(self, job: _Job) -> None:
        """Forget a job's waiting texts (its caller went away, or one of its batches failed)."""
        for pos in list(job.pending):
            self._take(job, pos)
        jobs = self._jobs[job.kind]
        if job in jobs:
            jobs.remove(job)

    def _live(self, kind: str) -> deque[_Job]:
        """The waiting jobs of ``kind``, less those whose caller cancelled."""
        jobs = self._jobs[kind]
        for job in [j for j in jobs if j.future.cancelled() or j.failed]:
            self._drop(job)
        return jobs

    def _select(self, lane: tuple[str, ...]) -> tuple[str, list[tuple[_Job, int]]]:
        """Choose the lane's next batch (holding the lock): its kind and ``(job, position)`` pairs."""
        if len(lane) == 1:
            (kind,) = lane
            jobs = self._live(kind)
            if not jobs:
                return kind, []
            return kind, self._select_queries(jobs) if kind == QUERY else self._select_documents(jobs)
        queries, docs = self._live(QUERY), self._live(DOCUMENT)
        if queries and (not docs or self._queries_in_a_row + 1 < self._doc_every):
            self._queries_in_a_row = self._queries_in_a_row + 1 if docs else 0
            return QUERY, self._select_queries(queries)
        self._queries_in_a_row = 0
        if not docs:
            return QUERY, []
        return DOCUMENT, self._select_documents(docs)

    def _select_queries(self, jobs: deque[_Job]) -> list[tuple[_Job, int]]:
        rows = max(1, min(self.max_rows, self.max_batch_tokens // self.query_length))
        picks: list[tuple[_Job, int]] = []
        first = jobs[0]
        while len(picks) < rows and jobs:
            job = jobs[0]
            if not self.batching and job is not first:
                break
            pos = next(iter(job.pending))
            self._take(job, pos)
            picks.append((job, pos))
            if not job.pending:
                jobs.popleft()
            elif self.batching:
                jobs.rotate(-1)  # one text per request in turn
        return picks

    def _select_documents(self, jobs: deque[_Job]) -> list[tuple[_Job, int]]:
        anchor_job = jobs[0]
        anchor = next(iter(anchor_job.pending))
        budget, max_rows = self.max_batch_tokens, self.max_rows
        # candidates: (cost, order, job, position), sorted by cost
        sources = jobs if self.batching else [anchor_job]
        cands: list[tuple[int, int, _Job, int]] = []
        order = itertools.count()
        for job in sources:
            for pos in itertools.islice(job.pending, _SCAN_PER_REQUEST):
                if job is anchor_job and pos == anchor:
                    continue
                cands.append((job.costs[pos], next(order), job, pos))
            if len(cands) >= _SCAN_TOTAL:
                break
        cands.sort(key=lambda c: (c[0], c[1]))
        longest = anchor_job.costs[anchor]
        real = longest  # tokens of the picked texts, without padding
        picks = [(anchor_job, anchor)]
        costs = [c[0] for c in cands]
        hi = bisect.bisect_left(costs, longest)
        lo = hi - 1
        slack = 1.0 + self.max_padding if self.batching else math.inf
        while len(picks) < max_rows:
            n = len(picks)
            left = right = None
            if lo >= 0 and (n + 1) * longest <= min(budget, slack * (real + costs[lo])):
                left = longest - costs[lo]  # padding added by a shorter text
            if hi < len(cands):
                grown = max(longest, costs[hi])
                if (n + 1) * grown <= min(budget, slack * (real + costs[hi])):
                    right = (grown - longest) * n + grown - costs[hi]
            if left is None and right is None:
                break
            if right is None or (left is not None and left <= right):
                picks.append((cands[lo][2], cands[lo][3]))
                real += costs[lo]
                lo -= 1
            else:
                longest = max(longest, costs[hi])
                picks.append((cands[hi][2], cands[hi][3]))
                real += costs[hi]
                hi += 1
        for job, pos in picks:
            self._take(job, pos)
        for job in {id(j): j for j, _ in picks}.values():
            if not job.pending:
                jobs.remove(job)
        if self.batching and jobs and jobs[0] is anchor_job:
            jobs.rotate(-1)  # the next batch is anchored on the next request
        return picks

    def _run(self, kind: str, picks: list[tuple[_Job, int]]) -> None:
        is_doc = kind == DOCUMENT
        jobs = list({id(j): j for j, _ in picks}.values())
        t0 = time.perf_counter()
        try:
            vectors = self._encode([job.ids[pos] for job, pos in picks], is_doc)
        except Exception as e:  # noqa: BLE001 - isolated below: only the request that fails gets the error
            if len(jobs) == 1:
                self._fail(jobs[0], e)
                return
            for job in jobs:  # rerun request by request
                own = [(j, p) for j, p in picks if j is job]
                try:
                    self._deliver(own, self._encode([job.ids[p] for _, p in own], is_doc))
                except Exception as e2:  # noqa: BLE001
                    self._fail(job, e2)
            return
        seconds = time.perf_counter() - t0
        tokens = len(picks) * max(job.costs[pos] for job, pos in picks)
        with self._lock:
            rate, mean = tokens / max(seconds, 1e-6), self._tokens_per_s[kind]
            self._tokens_per_s[kind] = rate if mean <= 0 else 0.8 * mean + 0.2 * rate
        self._deliver(picks, vectors)
        if self._on_batch is not None:
            try:
                self._on_batch(kind, len(picks), tokens, len(jobs), seconds)
            except Exception:  # noqa: BLE001 - metrics never fail a batch
                pass

    def _deliver(self, picks: list[tuple[_Job, int]], vectors: list[np.ndarray]) -> None:
        done = []
        with self._lock:  # several workers may hold texts of one request
            for (job, pos), v in zip(picks, vectors, strict=True):
                if job.failed:
                    continue
                job.results[pos] = v
                job.remaining -= 1
                if job.remaining == 0:
                    done.append(job)
        for job in done:
            if not job.future.done():
                try:
                    job.future.set_result(job.results)
                except Exception:  # noqa: BLE001 - cancelled meanwhile
                    pass

    def _fail(self, job: _Job, error: BaseException) -> None:
        with self._lock:
            job.failed = True
            self._drop(job)
        if not job.future.done():
            try:
                job.future.set_exception(error)
            except Exception:  # noqa: BLE001 - cancelled meanwhile
                pass
