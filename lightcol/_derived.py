"""Files lightcol derives from a model's ONNX file (int8 copy, ONNX Runtime's optimised graph).

Each derived file ``X`` is written atomically (temp file + ``os.replace``) and then described by a
record ``X.lightcol.json`` holding the *key* it was made for (source fingerprint, settings, library
versions) and its own size and mtime. It is reused only when the record names the expected key and
the file still has the recorded size and mtime; anything else (missing, partial, replaced, stale)
is rebuilt, never loaded. :func:`ensure` is the make-once-and-reuse mechanism the int8 and optimised
variants share (where to put the file, locking, rebuilding).
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

from lightcol._cache_dir import resolve_cache_dir
from lightcol.errors import ModelLoadError

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


def valid_record(path: Path, key: str) -> dict[str, Any] | None:
    """``path``'s record if it says ``path`` was made for ``key`` and has not changed since, else ``None``."""
    try:
        record = json.loads(record_path(path).read_text(encoding="utf-8"))
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(record, dict)
        and record.get("key") == key
        and record.get("size") == st.st_size
        and record.get("mtime") == int(st.st_mtime)
    )
    return record if ok else None


def is_valid(path: Path, key: str) -> bool:
    """``path`` exists and its record says it was made for ``key`` and it has not changed since."""
    return valid_record(path, key) is not None


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


def _candidates(source: Path, key: str, name: str, cache_dir: str | os.PathLike[str] | None, beside: bool) -> list[Path]:
    out = []
    if beside:
        out.append(source.parent / name)
    out.append(resolve_cache_dir(cache_dir) / "derived" / key / name)
    return out


def _usable_target(path: Path) -> bool:
    """A place we may write: a writable folder, and no file there that lightcol did not make."""
    if path.exists() and not record_path(path).exists():
        return False  # someone else's file of that name: leave it alone
    return writable_dir(path.parent)


def ensure(
    source: str | os.PathLike[str],
    kind: str,
    name_of: Callable[[Path], str],
    settings: dict[str, Any],
    make: Callable[[Path, Path], None],
    require: Callable[[], Any],
    *,
    command: str,
    cache_dir: str | os.PathLike[str] | None,
    beside: bool,
    lock: Path | None,
    force: bool,
) -> Path:
    """A file derived from ``source`` by ``make(source, tmp)``, reused while ``source`` and ``settings`` are unchanged.

    Candidates: ``name_of(source)`` beside ``source`` (when ``beside``), then ``<cache>/derived/<key>/``; a valid
    one is returned as it is, else the first writable one is built under ``lock`` (default: one per key under
    ``<cache>/.locks/derived``). ``require()`` runs before any lock is taken (a missing extra fails at once);
    ``command`` is the CLI command named when nowhere is writable.
    """
    source = Path(source).absolute()
    if not source.is_file():
        raise ModelLoadError(f"ONNX file {source} is missing; cannot make its {kind} variant.")
    key = key_of({"kind": kind, "source": fingerprint(source), "settings": settings})
    candidates = _candidates(source, key, name_of(source), cache_dir, beside)
    if not force:
        for c in candidates:
            if is_valid(c, key):
                return c
    require()  # before taking any lock: a missing extra fails at once
    targets = [c for c in candidates if _usable_target(c)]
    if not targets:
        raise ModelLoadError(
            f"cannot write the {kind} variant of {source}: neither {' nor '.join(str(c.parent) for c in candidates)} "
            "is writable; set LIGHTCOL_CACHE_PATH or pass cache_dir= to a writable folder, or run "
            f"'{command}' where it can write."
        )
    if lock is None:
        locks = resolve_cache_dir(cache_dir) / ".locks" / "derived"
        lock = (locks if writable_dir(locks) else targets[0].parent) / f"{key}.lock"
    with file_lock(lock):
        for c in candidates:  # another process may have made it while we waited
            if not force and is_valid(c, key):
                return c
        for i, target in enumerate(targets):
            try:
                return build(target, key, lambda tmp: make(source, tmp), {"source": str(source), **settings})
            except ImportError:
                raise
            except OSError:
                if i + 1 < len(targets):
                    continue  # e.g. a read-only file system os.access did not see: next place
                raise
            except Exception as e:  # noqa: BLE001 - the tools' own errors (onnx / onnxruntime)
                raise ModelLoadError(
                    f"making the {kind} variant of {source} failed ({type(e).__name__}: {str(e).strip()[:300]}); "
                    "is it a float32 ONNX model? Export one with tools/export_onnx.py."
                ) from e
    raise AssertionError("unreachable")
