"""Foreign exports as fast as lightcol's own: graph rewrites of a float32 encoder, made once and reused.

ONNX files exported by others (``torch.onnx.export`` defaults: SDPA attention) carry work that
lightcol's ``tools/export_onnx.py`` export does not: a ``Where(IsNaN(softmax), 0, softmax)`` guard
after every attention softmax (it only matters for a row whose keys are all masked, which ColBERT
inputs never have: ``[CLS]`` is always attended), and layer norms / GELUs that ONNX Runtime's
session optimiser does not fuse in that form. :func:`optimize_file` removes the guards and applies
ONNX Runtime's transformer fusions (``onnxruntime.transformers.optimizer``, model type ``bert``:
SkipLayerNormalization, BiasGelu, ...); the vectors stay the same up to float rounding.

``LateInteractionTextEmbedding(..., optimize=True)`` and ``lightcol optimize MODEL|FOLDER`` make
``<stem>_optimized.onnx`` once (beside a writable folder, else in the cache, as :mod:`lightcol.quantize`).
Needs the optional package ``onnx``: ``pip install 'lightcol[quantize]'``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lightcol import _derived, _optional

SETTINGS: dict[str, Any] = {"version": 1, "nan_guards": "removed", "fusions": "onnxruntime.transformers bert, opt_level 0"}
FEATURE = "graph optimisation (optimize=True or 'lightcol optimize')"


def require_onnx() -> Any:
    _optional.require("sympy", "quantize", feature=FEATURE)  # ONNX Runtime's optimizer's shape inference
    return _optional.require("onnx", "quantize", feature=FEATURE)


def remove_softmax_nan_guards(model: Any) -> int:
    """Replace ``Where(IsNaN(s), c, s)`` with ``s`` where ``s`` is a Softmax output; return how many."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    rename: dict[str, str] = {}
    drop = []
    for node in graph.node:
        if node.op_type != "Where" or len(node.input) != 3:
            continue
        cond, _, value = node.input
        isnan = producer.get(cond)
        soft = producer.get(value)
        if isnan is None or isnan.op_type != "IsNaN" or isnan.input[0] != value or soft is None or soft.op_type != "Softmax":
            continue
        rename[node.output[0]] = value
        drop.append(node)
    if not drop:
        return 0
    outputs = {o.name for o in graph.output}
    for node in drop:
        if node.output[0] in outputs:
            rename.pop(node.output[0])
            continue
        graph.node.remove(node)
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
    used = {i for n in graph.node for i in n.input} | outputs
    for node in [n for n in graph.node if n.op_type == "IsNaN" and n.output[0] not in used]:
        graph.node.remove(node)
    return len(rename)


def optimize_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rewrite ONNX file ``src`` into ``dst`` (see the module docstring)."""
    onnx = require_onnx()
    from onnxruntime.transformers.optimizer import optimize_model

    model = onnx.load(os.fspath(src))
    remove_softmax_nan_guards(model)
    quiet = [logging.getLogger(n) for n in ("onnxruntime.transformers", "fusion", "onnx_model", "")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        fused = optimize_model(model, model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    fused.save_model_to_file(os.fspath(dst))


def optimized_name(source: Path) -> str:
    return f"{source.stem}_optimized.onnx"


def ensure_optimized(
    source: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    beside: bool = True,
    lock: Path | None = None,
    force: bool = False,
) -> Path:
    """The optimised file made from ``source``, rewriting it now if none is up to date (as :func:`lightcol.quantize.ensure_int8`)."""
    return _derived.ensure(
        source, "optimized", optimized_name, SETTINGS, optimize_file, require_onnx, command="lightcol optimize",
        cache_dir=cache_dir, beside=beside, lock=lock, force=force,
    )
