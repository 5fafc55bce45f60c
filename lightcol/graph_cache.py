"""Cold start: cache ONNX Runtime's optimised graph of a model and open that on later loads.

On the first load ONNX Runtime optimises the graph (fusions, constant folding) and saves the result
(``SessionOptions.optimized_model_filepath``) into ``<cache>/derived/ort/<key>/``; later loads open
the saved graph with graph optimisations off, which skips that work. The saved graph keeps its
weights in a side file (``<stem>.<id>.data``) that ONNX Runtime memory-maps instead of parsing them
out of the protobuf: opening a 90 MB model takes about a third of the time. The key covers the model
file's fingerprint (size, mtime, sampled sha256), the ONNX Runtime version, the execution providers,
the session options that shape the graph and the CPU; an entry whose record does not match (stale,
partial, replaced, or whose weights file changed size or mtime) is rebuilt, never loaded, and one
that ONNX Runtime refuses is deleted and rebuilt.
Where the cache folder is not writable the model is opened as usual, silently.

Only used on the CPU execution provider, with options lightcol builds (not a caller's own
``onnxruntime.SessionOptions``), for single-file models (no external data: the fingerprint would
not see the weights). ``LIGHTCOL_GRAPH_CACHE=0`` turns it off. The :data:`KEEP_ENTRIES` most recently
used entries are kept; older ones are deleted when a new one is written.
"""

from __future__ import annotations

import os
import platform
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import onnxruntime as ort

from lightcol import _derived
from lightcol._cache_dir import resolve_cache_dir

ENV = "LIGHTCOL_GRAPH_CACHE"
_OFF = {"0", "off", "false", "no"}
#: Entries kept (the most recently used); older ones are deleted when a new one is written.
KEEP_ENTRIES = 8
#: Initializers at least this large go to the entry's weights file (memory-mapped on load).
_EXTERNAL_MIN_BYTES = 1024


def _touch(folder: Path) -> None:
    try:
        os.utime(folder)
    except OSError:
        pass


def _prune(root: Path, keep: int = KEEP_ENTRIES) -> None:
    """Delete all but the ``keep`` most recently used entries under ``root`` (each entry is about a model's size)."""
    try:
        entries = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


@lru_cache(maxsize=1)
def _cpu() -> str:
    """The CPU model and its flags (an optimised graph may use kernels chosen for this CPU)."""
    info = {"machine": platform.machine()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name in ("model name", "flags", "Features", "CPU part") and name not in info:
                    info[name] = value.strip()
                if line.strip() == "":
                    break  # the first processor says it all
    except OSError:
        info["processor"] = platform.processor()
    return _derived.key_of(info)


def _has_external_data(model_path: Path) -> bool:
    folder = model_path.parent
    return any(folder.glob("*.onnx_data")) or any(folder.glob("*.onnx.data")) or any(folder.glob("*.data"))


def enabled(providers: Sequence[Any], options: Any) -> bool:
    """Whether the cache applies: CPU only, options given as ``None`` or a mapping, not turned off."""
    if os.environ.get(ENV, "").strip().lower() in _OFF:
        return False
    names = [p[0] if isinstance(p, tuple) else p for p in providers]
    if names != ["CPUExecutionProvider"]:
        return False
    if options is not None and not isinstance(options, Mapping):
        return False  # a caller's own SessionOptions: used exactly as given
    return not (isinstance(options, Mapping) and options.get("optimized_model_filepath"))


def entry_for(model_path: Path, providers: Sequence[Any], options: Any, cache_dir: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """The cache file for ``model_path`` opened with these providers and options, and its key."""
    graph_options = {
        k: v for k, v in (options or {}).items()
        if k not in ("intra_op_num_threads", "inter_op_num_threads", "log_severity_level", "execution_mode")
    }
    key = _derived.key_of({
        "kind": "ort-optimized-graph",
        "layout": "external-weights",
        "source": _derived.fingerprint(model_path),
        "onnxruntime": ort.__version__,
        "providers": [list(p) if isinstance(p, tuple) else p for p in providers],
        "options": graph_options,
        "cpu": _cpu(),
    })
    return resolve_cache_dir(cache_dir) / "derived" / "ort" / key / f"{model_path.stem}.optimized.onnx", key


def open_session(
    model_path: Path,
    providers: Sequence[Any],
    make_options: Callable[[], ort.SessionOptions],
    options: Any,
    cache_dir: str | os.PathLike[str] | None,
    open_plain: Callable[[Path, ort.SessionOptions], ort.InferenceSession],
) -> ort.InferenceSession:
    """Open ``model_path`` through the graph cache (see the module docstring).

    ``make_options()`` builds fresh options each time; ``open_plain(path, options)`` opens a session
    (raising lightcol's :class:`~lightcol.errors.ModelLoadError` for a bad file).
    """
    if _has_external_data(model_path):
        return open_plain(model_path, make_options())
    try:
        entry, key = entry_for(model_path, providers, options, cache_dir)
    except OSError:
        return open_plain(model_path, make_options())
    record = _derived.valid_record(entry, key)
    if record is not None and _weights_valid(entry, record):
        opts = make_options()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # done already
        try:
            session = open_plain(entry, opts)
            _touch(entry.parent)  # recently used: kept by _prune
            return session
        except Exception:  # noqa: BLE001 - a damaged entry: drop it and build it again below
            _derived.discard(entry)
    if not _derived.writable_dir(entry.parent):
        return open_plain(model_path, make_options())
    tmp = entry.with_name(f".{entry.name}.{uuid.uuid4().hex[:8]}.tmp")
    # a weights file of its own per build: a concurrent build never overwrites the file another graph names
    data = entry.with_name(f"{entry.stem}.{uuid.uuid4().hex[:8]}.data")
    opts = make_options()
    opts.optimized_model_filepath = os.fspath(tmp)
    opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", data.name)
    opts.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", str(_EXTERNAL_MIN_BYTES)
    )
    opts.log_severity_level = max(opts.log_severity_level, 3)  # not the warning that the graph suits this CPU only
    try:
        try:
            session = open_plain(model_path, opts)
        except Exception:  # noqa: BLE001 - e.g. the graph cannot be saved: open it as usual (a bad file raises again)
            return open_plain(model_path, make_options())
        try:
            _derived.build(entry, key, lambda out: os.replace(tmp, out), {"source": str(model_path), **_weights_info(data)})
            _drop_other_weights(entry, keep=data)
            _prune(entry.parent.parent)
        except OSError:
            pass  # a cache we cannot write is skipped
        return session
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass
        record = _derived.valid_record(entry, key)
        if record is None or record.get("weights") != data.name:
            try:
                data.unlink()  # this build's weights, not recorded (the build failed or another won)
            except OSError:
                pass


def _weights_info(data: Path) -> dict[str, Any]:
    """The record's description of the weights file (absent when ONNX Runtime wrote none: a tiny model)."""
    try:
        st = os.stat(data)
    except OSError:
        return {"weights": None}
    return {"weights": data.name, "weights_size": st.st_size, "weights_mtime": int(st.st_mtime)}


def _weights_valid(entry: Path, record: dict[str, Any]) -> bool:
    """The weights file ``entry``'s record names is there, with the recorded size and mtime."""
    if "weights" not in record:
        return False
    name = record["weights"]
    if name is None:
        return True
    if not isinstance(name, str) or "/" in name or os.sep in name:
        return False
    try:
        st = os.stat(entry.with_name(name))
    except OSError:
        return False
    return record.get("weights_size") == st.st_size and record.get("weights_mtime") == int(st.st_mtime)


def _drop_other_weights(entry: Path, keep: Path) -> None:
    """Delete weights files of earlier builds of this entry (an open session keeps its mapping)."""
    for old in entry.parent.glob(f"{entry.stem}.*.data"):
        if old != keep:
            try:
                old.unlink()
            except OSError:
                pass
