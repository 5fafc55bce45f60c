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
from pathlib import Path
from typing import Any

from lightcol import _derived, _optional

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
                  reduce_range: bool = True, fused: bool = False) -> None:
    """Dynamic int8 quantisation of ONNX file ``src`` into ``dst`` (written directly; see :func:`ensure_int8`).

    ``fused``: ``src`` holds ONNX Runtime's fused contrib ops (:mod:`lightcol.optimize`), whose outputs
    the quantizer's shape inference cannot type; they are taken as float32.
    """
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
            extra_options={**SETTINGS["extra_options"], **({"DefaultTensorType": 1} if fused else {})},  # 1: FLOAT
        )
    finally:
        root.setLevel(level)


def int8_name(source: Path) -> str:
    return f"{source.stem}_int8.onnx"


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
    return _derived.ensure(source, "int8", int8_name, SETTINGS, quantize_file, require_onnx, command="lightcol quantize",
                           cache_dir=cache_dir, beside=beside, lock=lock, force=force)
