"""Files lightcol derives from a model's ONNX file (int8 copy, ONNX Runtime's optimised graph).

Each derived file ``X`` is written atomically (temp file + ``os.replace``) and then described by a
record ``X.lightcol.json`` holding the *key* it was made for (source fingerprint, settings, library
versions) and its own size and mtime. It is reused only when the record names the expected key and
the file still has the recorded size and mtime; anything else (missing, partial, replaced, stale)
is rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Bytes hashed at each of three places (start, middle, end) of a source file for its fingerprint.
_SAMPLE = 1 << 20
RECORD_SUFFIX = ".lightcol.json"


def fingerprint(path: Path) -> dict[str, Any]:
    """Cheap identity of a file's content: size, mtime and sha256 of 1 MiB at its start, middle and end.

    ``path`` is followed through symlinks (a cache snapshot's file is a link to its blob). mtimes are
    compared in whole seconds: container image layers may not keep finer ones.
    """
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for offset in sorted({0, max(0, st.st_size // 2 - _SAMPLE // 2), max(0, st.st_size - _SAMPLE)}):
            f.seek(offset)
            h.update(f.read(_SAMPLE))
    return {"size": st.st_size, "mtime": int(st.st_mtime), "sample_sha256": h.hexdigest()}


def key_of(parts: dict[str, Any]) -> str:
    """A short stable hex key of a JSON-serialisable description."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def is_valid(path: Path, key: str) -> bool:
    """``path`` exists and its record says it was made for ``key`` and it has not changed since."""
    try:
        record = json.loads(record_path(path).read_text(encoding="utf-8"))
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("key") == key
        and record.get("size") == st.st_size
        and record.get("mtime") == int(st.st_mtime)
    )


def discard(path: Path) -> None:
    """Remove ``path`` and its record (missing is fine)."""
    for p in (record_path(path), path):
        try:
            p.unlink()
        except OSError:
            pass


def build(path: Path, key: str, make: Callable[[Path], None], info: dict[str, Any] | None = None) -> Path:
    """Write ``path`` with ``make(tmp)`` into a temp file beside it, move it into place, then record it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    rec_tmp = record_path(tmp)
    try:
        discard(path)  # an old record must never describe the new file while it is being replaced
        make(tmp)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise OSError(f"writing {path} produced no file")
        os.replace(tmp, path)
        st = os.stat(path)
        rec_tmp.write_text(
            json.dumps({"key": key, "size": st.st_size, "mtime": int(st.st_mtime), **(info or {})}, sort_keys=True),
            encoding="utf-8",
        )
        os.replace(rec_tmp, record_path(path))
    finally:
        for p in (tmp, rec_tmp):
            try:
                p.unlink()
            except OSError:
                pass
    return path


def writable_dir(folder: Path) -> bool:
    """``folder`` exists (or can be made) and this process may create files in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An inter-process lock on ``path`` (huggingface-hub's, as the downloads use)."""
    from huggingface_hub.utils import WeakFileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(path):
        yield
