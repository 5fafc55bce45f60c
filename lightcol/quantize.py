"""int8 for every model: dynamic quantisation of a float32 ONNX file, made once and reused.

``quantize_file`` is the one quantisation recipe (``tools/export_onnx.py --quantize int8`` uses it
too, so an int8 file made here from a float32 export gives the same vectors as an exported one):
ONNX Runtime's ``quantize_dynamic``, int8 weights with one scale per output channel in a 7-bit range
(``reduce_range``), uint8 activations quantised per batch at run time, MatMul with constant weights
(and contrib Attention) only.

``ensure_int8`` makes ``<stem>_int8.onnx`` from a model's float32 file when the model has no int8
file of its own: beside the float32 file when that folder is writable (and not a download cache),
else in the cache (``<cache>/derived/<key>/``), atomically and under a file lock (the download
lock for registry models), and reuses it while the float32 file is unchanged.
Needs the optional package ``onnx``: ``pip install 'lightcol[quantize]'``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightcol import _derived, _optional
from lightcol.errors import ModelLoadError

#: The quantisation recipe; part of every derived file's key (change it and old files are rebuilt).
SETTINGS: dict[str, Any] = {
    "method": "onnxruntime.quantization.quantize_dynamic",
    "weight_type": "QInt8",
    "per_channel": True,
    "reduce_range": True,
    "op_types_to_quantize": ["MatMul", "Attention"],
    "extra_options": {"MatMulConstBOnly": True},
}
FEATURE = "int8 quantisation (quantized=True without an int8 file, or 'lightcol quantize')"


def require_onnx() -> Any:
    """The ``onnx`` package, or an ``ImportError`` naming ``lightcol[quantize]``."""
    return _optional.require("onnx", "quantize", feature=FEATURE)


def quantize_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, per_channel: bool = True,
                  reduce_range: bool = True) -> None:
    """Dynamic int8 quantisation of ONNX file ``src`` into ``dst`` (written directly; see :func:`ensure_int8`)."""
    require_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a pre-processing hint per model
    try:
        quantize_dynamic(
            os.fspath(src),
            os.fspath(dst),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
            op_types_to_quantize=list(SETTINGS["op_types_to_quantize"]),
            extra_options=dict(SETTINGS["extra_options"]),
        )
    finally:
        root.setLevel(level)


def int8_name(source: Path) -> str:
    return f"{source.stem}_int8.onnx"


def _candidates(source: Path, key: str, name: str, cache_dir: str | os.PathLike[str] | None, beside: bool) -> list[Path]:
    from lightcol.download import resolve_cache_dir

    out = []
    if beside:
        out.append(source.parent / name)
    out.append(resolve_cache_dir(cache_dir) / "derived" / key / name)
    return out


def _usable_target(path: Path) -> bool:
    """A place we may write: a writable folder, and no file there that lightcol did not make."""
    if path.exists() and not _derived.record_path(path).exists():
        return False  # someone else's file of that name: leave it alone
    return _derived.writable_dir(path.parent)


def ensure_int8(
    source: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    beside: bool = True,
    lock: Path | None = None,
    force: bool = False,
) -> Path:
    """The int8 file made from float32 ONNX file ``source``, quantising it now if none is up to date.

    ``beside``: prefer ``source``'s own folder (when writable); ``lock``: the lock file to hold while
    quantising (default: one per key under ``<cache>/.locks/derived``); ``force``: quantise again.
    """
    return _make_derived(source, "int8", lambda p: int8_name(p), SETTINGS, quantize_file, require_onnx,
                         cache_dir=cache_dir, beside=beside, lock=lock, force=force)


def _make_derived(
    source: str | os.PathLike[str],
    kind: str,
    name_of: Callable[[Path], str],
    settings: dict[str, Any],
    make: Callable[[Path, Path], None],
    require: Callable[[], Any],
    *,
    cache_dir: str | os.PathLike[str] | None,
    beside: bool,
    lock: Path | None,
    force: bool,
) -> Path:
    """A file derived from ``source`` by ``make(source, tmp)``, reused while ``source`` and ``settings`` are unchanged."""
    source = Path(source).absolute()
    if not source.is_file():
        raise ModelLoadError(f"ONNX file {source} is missing; cannot make its {kind} variant.")
    key = _derived.key_of({"kind": kind, "source": _derived.fingerprint(source), "settings": settings})
    candidates = _candidates(source, key, name_of(source), cache_dir, beside)
    if not force:
        for c in candidates:
            if _derived.is_valid(c, key):
                return c
    require()  # before taking any lock: a missing extra fails at once
    targets = [c for c in candidates if _usable_target(c)]
    if not targets:
        raise ModelLoadError(
            f"cannot write the {kind} variant of {source}: neither {' nor '.join(str(c.parent) for c in candidates)} "
            "is writable; pass cache_dir= (or set LIGHTCOL_CACHE_PATH) to a writable folder, or run "
            f"'lightcol {'quantize' if kind == 'int8' else 'optimize'}' where it can write."
        )
    if lock is None:
        from lightcol.download import resolve_cache_dir

        locks = resolve_cache_dir(cache_dir) / ".locks" / "derived"
        lock = (locks if _derived.writable_dir(locks) else targets[0].parent) / f"{key}.lock"
    with _derived.file_lock(lock):
        for c in candidates:  # another process may have made it while we waited
            if not force and _derived.is_valid(c, key):
                return c
        for i, target in enumerate(targets):
            try:
                return _derived.build(target, key, lambda tmp: make(source, tmp), {"source": str(source), **settings})
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
