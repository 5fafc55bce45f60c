"""The batcher of ``lightcol serve`` on a fake encoder: budgets, fairness, isolation, admission, shutdown."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lightcol.serve.batching import DOCUMENT, QUERY, Batcher, QueueFull, ShuttingDown

QLEN = 8


class FakeEncoder:
    """Records every batch as it starts; a text whose first id is ``fail`` raises; ``gate`` holds each
    call until set, ``gates[is_doc]`` the calls of one kind; ``done`` records each finished call."""

    def __init__(self, fail: int = -1, gate: threading.Event | None = None,
                 gates: dict[bool, threading.Event] | None = None) -> None:
        self.batches: list[tuple[bool, list[list[int]]]] = []
        self.done: list[tuple[bool, list[list[int]]]] = []
        self.fail = fail
        self.gate = gate
        self.gates = gates or {}
        self.started = threading.Event()
        self.started_kind = {False: threading.Event(), True: threading.Event()}

    def __call__(self, ids: list[list[int]], is_doc: bool) -> list[np.ndarray]:
        self.batches.append((is_doc, [list(s) for s in ids]))
        self.started.set()
        self.started_kind[is_doc].set()
        for gate in (self.gate, self.gates.get(is_doc)):
            if gate is not None:
                assert gate.wait(10)
        self.done.append((is_doc, [list(s) for s in ids]))
        if any(s and s[0] == self.fail for s in ids):
            raise RuntimeError("boom")
        # each text's "vectors": one row per id, the ids themselves (so results can be checked)
        return [np.asarray(s, dtype=np.float32).reshape(-1, 1) for s in ids]


def doc(tag: int, length: int) -> list[int]:
    return [tag] * length


def wait_all(futures, timeout=10):
    return [f.result(timeout) for f in futures]


def held(batcher_kwargs=None, kind=QUERY, **enc):
    """A batcher whose encoder blocks until ``gate.set()``, and a first call (of ``kind``) already started:
    its lane is busy, so what is submitted next waits and is batched together."""
    gate = threading.Event()
    encoder = FakeEncoder(gate=gate, **enc)
    b = Batcher(encoder, query_length=QLEN, **(batcher_kwargs or {}))
    first = b.submit(kind, [[999]])
    assert encoder.started.wait(5)
    return b, encoder, gate, first


def of_kind(batches, is_doc):
    return [ids for d, ids in batches if d is is_doc]


def test_results_split_back_in_order():
    enc = FakeEncoder()
    b = Batcher(enc, query_length=QLEN, max_batch_tokens=64)
    try:
        f1 = b.submit(DOCUMENT, [doc(1, 3), doc(2, 10), doc(3, 1)])
        f2 = b.submit(QUERY, [[7, 7], [8]])
        r1, r2 = wait_all([f1, f2])
        assert [r.ravel().tolist() for r in r1] == [doc(1, 3), doc(2, 10), doc(3, 1)]
        assert [r.ravel().tolist() for r in r2] == [[7, 7], [8]]
        assert b.submit(DOCUMENT, []).result(1) == []
    finally:
        b.close()


def test_concurrent_requests_share_batches_within_the_token_budget():
    b, enc, gate, first = held({"max_batch_tokens": 40})
    try:
        futures = [b.submit(DOCUMENT, [doc(i, 3 + i % 4)]) for i in range(12)]
        futures += [b.submit(QUERY, [[100 + i]]) for i in range(6)]
        gate.set()
        results = wait_all([first, *futures])
        for i, r in enumerate(results[1:13]):
            assert r[0].ravel().tolist() == doc(i, 3 + i % 4)
        assert [r[0].ravel().tolist() for r in results[13:]] == [[100 + i] for i in range(6)]
        for is_doc, ids in enc.batches[1:]:
            cost = len(ids) * (max(len(s) + 1 for s in ids) if is_doc else QLEN)
            assert cost <= 40 or len(ids) == 1
        sizes = [len(ids) for _, ids in enc.batches[1:]]
        assert max(sizes) > 1  # merged: 18 single-text requests in fewer calls
        assert len(enc.batches) - 1 < 18
        # the six queries waited behind the held query: batches of 5 (budget 40 / 8) and 1
        assert [len(ids) for ids in of_kind(enc.batches, False)] == [1, 5, 1]
    finally:
        gate.set()
        b.close()


def test_a_small_request_is_not_starved_by_a_huge_one():
    b, enc, gate, first = held({"max_batch_tokens": 64, "max_queue": 1000}, kind=DOCUMENT)
    try:
        huge = b.submit(DOCUMENT, [doc(1, 10) for _ in range(300)])
        small = b.submit(DOCUMENT, [doc(2, 10)])
        gate.set()
        small.result(10)
        # the small request's text is in the second document batch after the held one, not after the huge one's 300
        position = next(i for i, ids in enumerate(of_kind(enc.batches, True)[1:]) if [2] * 10 in ids)
        assert position == 1
        huge.result(10)
    finally:
        gate.set()
        b.close()


def test_a_query_is_answered_while_a_long_document_batch_runs():
    doc_gate = threading.Event()
    enc = FakeEncoder(gates={True: doc_gate})
    b = Batcher(enc, query_length=QLEN, max_batch_tokens=1000)
    try:
        long_job = b.submit(DOCUMENT, [doc(1, 50) for _ in range(8)])
        assert enc.started_kind[True].wait(5)  # the document batch holds the session ...
        query = b.submit(QUERY, [[7, 7]])
        # ... and the query is answered meanwhile, on the same model: it does not wait for the documents
        assert query.result(10)[0].ravel().tolist() == [7, 7]
        assert not long_job.done()
        assert [(is_doc, len(ids)) for is_doc, ids in enc.done] == [(False, 1)]
        doc_gate.set()
        assert [r.ravel().tolist() for r in long_job.result(10)] == [doc(1, 50)] * 8
        assert [(is_doc, len(ids)) for is_doc, ids in enc.done] == [(False, 1), (True, 8)]
    finally:
        doc_gate.set()
        b.close()


def test_documents_are_not_starved_by_a_stream_of_queries():
    query_gate = threading.Event()
    enc = FakeEncoder(gates={False: query_gate})
    b = Batcher(enc, query_length=QLEN, max_batch_tokens=QLEN)  # one query per batch
    try:
        queries = [b.submit(QUERY, [[i]]) for i in range(20)]
        assert enc.started_kind[False].wait(5)
        docs = b.submit(DOCUMENT, [doc(5, 3)])
        # the queries' lane is busy (held), the document runs in its own
        assert docs.result(10)[0].ravel().tolist() == doc(5, 3)
        assert not any(f.done() for f in queries)
        query_gate.set()
        assert [f.result(10)[0].ravel().tolist() for f in queries] == [[i] for i in range(20)]
    finally:
        query_gate.set()
        b.close()


def test_without_batching_documents_still_get_every_third_batch():
    b, enc, gate, first = held({"batching": False})
    try:
        docs = b.submit(DOCUMENT, [doc(5, 3)])
        queries = [b.submit(QUERY, [[i]]) for i in range(20)]
        gate.set()
        docs.result(10)
        wait_all(queries)
        kinds = [is_doc for is_doc, _ in enc.batches[1:]]
        assert kinds.index(True) == 2  # one worker: queries go first, but documents get every third batch
    finally:
        gate.set()
        b.close()


def test_document_batches_group_similar_lengths():
    b, enc, gate, first = held({"max_batch_tokens": 4 * 21}, kind=DOCUMENT)
    try:
        lengths = [20, 3, 20, 3, 20, 3, 20, 3]
        futures = [b.submit(DOCUMENT, [doc(i, n)]) for i, n in enumerate(lengths)]
        gate.set()
        wait_all(futures)
        for _, ids in enc.batches[1:]:
            assert len({len(s) for s in ids}) == 1, [len(s) for s in ids]  # no short text padded to 20
    finally:
        gate.set()
        b.close()


def test_document_batches_keep_padding_within_a_quarter_of_their_tokens():
    b, enc, gate, first = held({"max_batch_tokens": 1000}, kind=DOCUMENT)
    try:
        # costs (length + marker): 41 and 11 would pad 30 of 52 tokens; 41 and 37: 4 of 78
        futures = [b.submit(DOCUMENT, [doc(1, 40)]), b.submit(DOCUMENT, [doc(2, 10)]), b.submit(DOCUMENT, [doc(3, 36)])]
        gate.set()
        wait_all(futures)
        batches = sorted(sorted(s[0] for s in ids) for ids in of_kind(enc.batches, True)[1:])
        assert batches == [[1, 3], [2]]
        assert b.max_padding == 0.25
    finally:
        gate.set()
        b.close()


def test_without_batching_requests_never_share_a_call_and_go_in_order():
    b, enc, gate, first = held({"batching": False, "max_batch_tokens": 1000})
    try:
        futures = [b.submit(DOCUMENT, [doc(i, 2), doc(i, 3)]) for i in range(1, 6)]
        gate.set()
        wait_all(futures)
        tags = [{s[0] for s in ids} for _, ids in enc.batches[1:]]
        assert all(len(t) == 1 for t in tags)
        assert [t.pop() for t in tags] == [1, 2, 3, 4, 5]
    finally:
        gate.set()
        b.close()


def test_queue_is_bounded_with_a_retry_after():
    b, enc, gate, first = held({"max_queue": 4}, kind=DOCUMENT)
    try:
        ok = b.submit(DOCUMENT, [doc(1, 2)] * 3)
        with pytest.raises(QueueFull) as e:
            b.submit(DOCUMENT, [doc(2, 2)] * 2)
        assert 1 <= e.value.retry_after <= 60
        assert "at most 4 may wait" in str(e.value)
        assert b.queued == 3
        admitted = b.submit(DOCUMENT, [doc(3, 2)] * 2, admit=False)  # already-admitted work is never refused
        gate.set()
        wait_all([ok, admitted])
        assert b.queued == 0
    finally:
        gate.set()
        b.close()


def test_an_error_fails_only_its_own_request():
    b, enc, gate, first = held({"max_batch_tokens": 1000}, kind=DOCUMENT, fail=66)
    try:
        good = [b.submit(DOCUMENT, [doc(i, 4)]) for i in (1, 2)]
        bad = b.submit(DOCUMENT, [doc(66, 4), doc(3, 4)])
        more = b.submit(DOCUMENT, [doc(4, 4)])
        gate.set()
        with pytest.raises(RuntimeError, match="boom"):
            bad.result(10)
        assert [r[0].ravel().tolist() for r in wait_all([*good, more])] == [doc(1, 4), doc(2, 4), doc(4, 4)]
        assert b.queued == 0
        assert b.submit(QUERY, [[1]]).result(10)[0].ravel().tolist() == [1]  # the worker goes on
    finally:
        gate.set()
        b.close()


def test_cancelled_requests_are_dropped():
    b, enc, gate, first = held(kind=DOCUMENT)
    try:
        gone = b.submit(DOCUMENT, [doc(1, 2)] * 5)
        assert gone.cancel()
        kept = b.submit(DOCUMENT, [doc(2, 2)])
        gate.set()
        kept.result(10)
        first.result(10)
        assert all(s[0] != 1 for _, ids in enc.batches for s in ids)
        assert b.queued == 0
    finally:
        gate.set()
        b.close()


def test_close_finishes_queued_work_then_refuses():
    b, enc, gate, first = held()
    queued = b.submit(DOCUMENT, [doc(1, 2)] * 3)
    closer = threading.Thread(target=b.close)
    closer.start()
    time.sleep(0.05)
    with pytest.raises(ShuttingDown):
        b.submit(QUERY, [[1]])
    gate.set()
    closer.join(10)
    assert not closer.is_alive()
    assert len(queued.result(1)) == 3 and len(first.result(1)) == 1


def test_workers_run_batches_of_one_kind_at_once_and_split_a_request_back():
    gate = threading.Event()
    enc = FakeEncoder(gate=gate)
    b = Batcher(enc, query_length=QLEN, max_batch_tokens=2 * QLEN, workers=2)  # 2 queries per batch
    try:
        f = b.submit(QUERY, [[1], [2], [3], [4], [5]])
        deadline = time.monotonic() + 5
        while len(enc.batches) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # a third worker would start a third batch meanwhile
        # two batches of two held at once; the fifth query waits for a worker
        assert sorted(ids for _, ids in enc.batches) == [[[1], [2]], [[3], [4]]]
        assert b.running == 4 and b.queued == 1
        gate.set()
        assert [r.ravel().tolist() for r in f.result(5)] == [[1], [2], [3], [4], [5]]
        assert b.running == 0 and b.queued == 0
    finally:
        b.close()
    assert Batcher(FakeEncoder(), query_length=QLEN, batching=False, workers=3).workers == 1  # one request at a time
    with pytest.raises(ValueError, match="workers"):
        Batcher(FakeEncoder(), query_length=QLEN, workers=0)
