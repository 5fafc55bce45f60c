"""Durable changes on disk: one writer at a time (a lock file), directory fsyncs, and numbered steps.

Every change an index makes is a sequence of steps (write a file, fsync it, rename it into place,
fsync the folder, link, unlink). :func:`step` numbers them; with the environment variable
``LIGHTCOL_TEST_CRASH_AT=N`` the process kills itself (``SIGKILL``, no cleanup, like a power cut of
the process) at the N-th step, which the crash tests iterate over. ``LIGHTCOL_TEST_CRASH_TRACE=1``
prints each step to stderr.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from lightcol.errors import IndexLockedError

__all__ = ["step", "fsync_dir", "acquire", "release", "write_lock", "link_or_copy", "unlink"]

_steps = 0


def step(label: str) -> None:
    """Count one durable step (and die at ``LIGHTCOL_TEST_CRASH_AT``: crash tests only)."""
    global _steps
    at = os.environ.get("LIGHTCOL_TEST_CRASH_AT")
    if at is None and not os.environ.get("LIGHTCOL_TEST_CRASH_TRACE"):
        return
    _steps += 1
    if os.environ.get("LIGHTCOL_TEST_CRASH_TRACE"):
        print(f"lightcol-step {_steps} {label}", file=sys.stderr, flush=True)
    if at is not None and _steps == int(at):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(folder: str) -> None:
    """Persist renames and unlinks in ``folder`` (best effort: not possible on every platform)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    step("fsync-dir")


def acquire(target: str, what: str = "index") -> int | None:
    """Take ``<target>.lock`` exclusively (``flock``, not waiting): the descriptor to :func:`release`.

    The lock belongs to the open file: it goes when released or when the process dies (a killed
    writer never leaves a stale lock). Platforms without ``fcntl`` take no lock (``None``).
    :raises IndexLockedError: another writer holds it.
    """
    lock = target + ".lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise IndexLockedError(
            f"another writer is changing the {what} at {target} (it holds {lock}); one writer at a time: "
            "retry when it is done, or send all changes through one writer. Readers are not blocked."
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def release(fd: int | None) -> None:
    """Give back a lock :func:`acquire` took."""
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def write_lock(target: str, what: str = "index") -> Iterator[None]:
    """Hold ``<target>.lock`` for one change (:func:`acquire`); another holder raises at once."""
    fd = acquire(target, what)
    try:
        yield
    finally:
        release(fd)


def link_or_copy(src: str, dst: str) -> None:
    """Make ``dst`` the same file as ``src``: a hard link (no copy), else an atomic copy."""
    try:
        os.link(src, dst)
    except FileExistsError:
        os.unlink(dst)
        os.link(src, dst)
    except OSError:  # a file system without hard links
        import shutil
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dst)}.", suffix=".tmp", dir=os.path.dirname(dst))
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    step("link")


def unlink(path: str) -> None:
    """Remove a file if it is there (a mapped file stays readable to whoever mapped it)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        step("unlink")

