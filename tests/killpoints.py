"""Kill a writer at each of its durable steps in turn (the crash tests' helper processes import this).

:func:`run` forks one writer per step number N with ``LIGHTCOL_TEST_CRASH_AT=N`` (it SIGKILLs
itself after its N-th write, fsync, rename, link, unlink or commit; see ``lightcol._durable``), then
checks that what it left opens as the state before or after the change and that the next writer
recovers; it stops at the first N the writer survives (the number of steps).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from lightcol import _durable


def run(fresh: Callable[[], str], change: Callable[[str], None], state: Callable[[str], str],
        recover: Callable[[str], None]) -> dict[str, int]:
    """``fresh()``: a new copy of the index (its path); ``change(path)``: the writer's call;
    ``state(path)``: what must be before or after; ``recover(path)``: the next writer, which checks
    what it leaves. Returns how many kills left the state before and after, and the steps."""
    p = fresh()
    before = state(p)
    change(p)
    after = state(p)
    out = {"before": 0, "after": 0, "steps": 0, "changed": int(before != after)}
    for n in range(1, 500):
        p = fresh()
        pid = os.fork()
        if pid == 0:
            os.environ["LIGHTCOL_TEST_CRASH_AT"] = str(n)
            _durable._steps = 0
            try:
                change(p)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status):
            out["steps"] = n - 1
            return out
        assert os.WTERMSIG(status) == 9, status
        s = state(p)
        assert s in (before, after), (n, s, before, after)
        out["before" if s == before else "after"] += 1
        recover(p)
    raise AssertionError("the writer did not finish within 500 steps")
