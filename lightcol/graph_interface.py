"""The ONNX graph's interface, checked against a model's rules: which inputs it takes, which output
holds the token vectors, and whether its rows come out L2-normalised.

:func:`check` runs once when a session opens; :func:`feeds` and :func:`vectors` once per batch.
Nothing here depends on the model family: the rules (:class:`lightcol.registry.EncodingRules`)
say ``token_type_ids``, ``output_name`` and ``graph_normalizes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightcol.errors import ModelLoadError
from lightcol.registry import EncodingRules

_KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class GraphInterface:
    """What :func:`check` learned about a session: input dtypes by name, the output to fetch, its dim."""

    input_types: dict[str, type]
    output_name: str
    normalized: bool


def check(sess: Any, rules: EncodingRules, dim: int, model: str, model_path: Path) -> GraphInterface:
    """Check ``sess`` (an ONNX Runtime session on ``model_path``) against ``rules`` and ``dim``.

    Raises :class:`ModelLoadError` saying what is wrong and what to do: inputs other than integer
    ``input_ids`` / ``attention_mask`` (/ ``token_type_ids``), an input the rules say the graph takes
    and it does not, an ``output_name`` it lacks, an output that is not ``(batch, tokens, dim)``.
    """
    inputs = {i.name: i for i in sess.get_inputs()}
    if (
        not {"input_ids", "attention_mask"} <= set(inputs)
        or not set(inputs) <= set(_KNOWN_INPUTS)
        or any(i.type not in ("tensor(int64)", "tensor(int32)") for i in inputs.values())
    ):
        found = ", ".join(f"{n}: {i.type}" for n, i in inputs.items())
        raise ModelLoadError(
            f"ONNX file {model_path} has inputs ({found}), expected integer input_ids and attention_mask "
            "(and optionally token_type_ids): the folder holds another kind of model; export it with tools/export_onnx.py."
        )
    if rules.token_type_ids and "token_type_ids" not in inputs:
        raise ModelLoadError(
            f"model {model!r}: its rules say the graph takes token_type_ids, but ONNX file {model_path} has no such "
            "input: the folder holds another export of the model. Set \"token_type_ids\": null in its rules to follow the graph."
        )
    outputs = {o.name: o for o in sess.get_outputs()}
    if rules.output_name is not None and rules.output_name not in outputs:
        raise ModelLoadError(
            f"model {model!r}: its rules name the output {rules.output_name!r}, but ONNX file {model_path} has "
            f"outputs {sorted(outputs)}; fix output_name in lightcol_config.json / the registry entry."
        )
    out = outputs[rules.output_name] if rules.output_name is not None else sess.get_outputs()[0]
    shape = out.shape
    if not isinstance(shape, (list, tuple)) or len(shape) != 3 or not isinstance(shape[-1], int):
        # Rank or last dimension unknown in the graph (symbolic): run a tiny probe to learn it now, not at first embed.
        probe = {n: np.ones((1, 4), dtype=np.int32 if "int32" in i.type else np.int64) for n, i in inputs.items()}
        if "token_type_ids" in probe:
            probe["token_type_ids"][:] = 0
        try:
            shape = list(sess.run([out.name], probe)[0].shape)
        except Exception as e:  # onnxruntime's own error types
            raise ModelLoadError(
                f"ONNX file {model_path} failed on a probe input ({type(e).__name__}: {str(e).strip()[:300]}): "
                "it is not a working ColBERT encoder; re-export it with tools/export_onnx.py."
            ) from e
        if len(shape) != 3 or shape[:2] != [1, 4]:
            raise ModelLoadError(
                f"ONNX file {model_path} returned shape {shape} for a (1, 4) probe input, expected (1, 4, {dim}): "
                "it is not a ColBERT encoder exported with tools/export_onnx.py."
            )
    if len(shape) != 3 or shape[-1] != dim:
        raise ModelLoadError(
            f"ONNX file {model_path} outputs shape {out.shape} (dim {shape[-1] if shape else '?'}), but model "
            f"{model!r} has dim {dim}: the folder holds another model, or its "
            "lightcol_config.json / the registry entry is wrong."
        )
    types = {name: (np.int32 if "int32" in i.type else np.int64) for name, i in inputs.items()}
    return GraphInterface(types, out.name, rules.graph_normalizes)


def feeds(graph: GraphInterface, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
    """The session's inputs for one batch (``token_type_ids``, where the graph takes them, as zeros)."""
    out: dict[str, np.ndarray] = {}
    for name, dtype in graph.input_types.items():
        if name == "input_ids":
            out[name] = input_ids.astype(dtype, copy=False)
        elif name == "attention_mask":
            out[name] = attention_mask.astype(dtype, copy=False)
        else:  # token_type_ids
            out[name] = np.zeros_like(input_ids, dtype=dtype)
    return out


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (as ``torch.nn.functional.normalize``, eps 1e-12), in place."""
    norms = np.sqrt(np.einsum("...d,...d->...", x, x))[..., None]
    np.maximum(norms, 1e-12, out=norms)
    x /= norms
    return x


def vectors(graph: GraphInterface, out: Any) -> np.ndarray:
    """The graph's output as float32 rows of unit length (normalised here unless the graph did)."""
    x = np.asarray(out)
    if graph.normalized and x.dtype == np.float32:
        return x
    return normalize(x.astype(np.float32, copy=False))
