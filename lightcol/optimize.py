"""Foreign exports as fast as lightcol's own: graph rewrites of a float32 encoder, made once and reused.

ONNX files exported by others (``torch.onnx.export`` defaults: SDPA attention) carry work that
lightcol's ``tools/export_onnx.py`` export does not, and neither form is fused by ONNX Runtime's
session optimiser into its ``Attention`` kernel. :func:`optimize_file` rewrites the graph into the
form ONNX Runtime's transformer fusions recognise, then applies them:

* :func:`remove_softmax_nan_guards`: ``Where(IsNaN(softmax), 0, softmax)`` after every attention
  softmax goes (it only matters for a row whose keys are all masked, which ColBERT inputs never have:
  ``[CLS]`` is always attended);
* :func:`fold_qk_scales`: SDPA's two ``Mul(sqrt(scale))`` on Q and K become one on the scores;
* :func:`canonical_attention_mask`: the additive key-padding mask (built per layer as a
  (batch, 1, query, key) ``Where`` by the SDPA export, from a 4-D boolean ``Expand`` by both) is
  replaced by one (batch, 1, 1, key) mask in the classic form, after checking on probe masks that
  the old subgraph computes exactly that;
* :func:`remove_noop_reshapes`: Reshapes to the shape their input already has (SDPA's output) go;
* ONNX Runtime's transformer fusions (``onnxruntime.transformers.optimizer``, model type ``bert``,
  raw 2-D attention mask, head count read from the graph by :func:`heads_and_hidden`): BiasGelu,
  with :data:`ATTENTION` also Attention and EmbedLayerNormalization (not SkipLayerNormalization: slower on the CPU, see :func:`_fuse`).

The result is checked against the source on a probe batch (per-token cosine >= :data:`MIN_COSINE`);
if a rewrite changed the vectors the file is written without it. The Attention fusion works on both
MiniLM exports (one 81-node graph) but is off by default (:data:`ATTENTION`: not faster on the CPU).

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

#: Fuse attention into ONNX Runtime's Attention kernel by default? Measured on the MiniLM benchmark model
#: (2 cores, ONNX Runtime 1.32, benchmarks/profile_ops.py + bench_serverless.py --tables exports): the fused graph
#: is not faster end to end (0.91-0.93x the own export's docs/s): Attention costs about what it replaces,
#: and with it ONNX Runtime's session optimiser fuses SkipLayerNormalization, which is ~3x slower than the
#: Add + LayerNormalization it replaces. Without it the rewritten graph is the fastest (1.02x the own export).
ATTENTION = False

SETTINGS: dict[str, Any] = {
    "version": 3,
    "attention_fusion": ATTENTION,
    "nan_guards": "removed",
    "rewrites": "qk scales folded, key-padding mask canonical (probed up to 1025 tokens), no-op reshapes removed",
    "fusions": "onnxruntime.transformers bert, opt_level 0, raw attention mask, heads from the graph, no SkipLayerNormalization",
    "verified": "per-token cos >= 0.9999 vs the source on a probe batch, else without attention fusion",
}
FEATURE = "graph optimisation (optimize=True or 'lightcol optimize')"

#: Additive value of a masked key in the canonical mask (BERT's; exp() of it underflows to 0 in float32).
MASK_VALUE = -10000.0
#: Tokens of the longest probe mask. A sliding-window (local attention) mask equals a key-padding mask on
#: every row no longer than its half window, so only long probes tell them apart: 1025 tokens tell every
#: window up to 2048 wide (ModernBERT's local layers: 128). Replacing a local layer's mask with the
#: key-padding mask would make it attend globally.
PROBE_LENGTH = 1025
#: Smallest per-token cosine between the rewritten and the source model's vectors on the probe batch.
MIN_COSINE = 0.9999
_MASK_INPUT = "attention_mask"
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def require_onnx() -> Any:
    _optional.require("sympy", "quantize", feature=FEATURE)  # ONNX Runtime's optimizer's shape inference
    return _optional.require("onnx", "quantize", feature=FEATURE)


# --------------------------------------------------------------------------------------------- graph helpers
def _producers(graph: Any) -> dict[str, Any]:
    return {o: n for n in graph.node for o in n.output}


def _constants(graph: Any) -> dict[str, Any]:
    """Values of the initializers and ``Constant`` node outputs, by name."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def _rename_inputs(graph: Any, rename: dict[str, str]) -> None:
    for node in graph.node:
        for k, name in enumerate(node.input):
            while name in rename:
                name = rename[name]
            node.input[k] = name


def prune(graph: Any) -> int:
    """Drop nodes whose outputs nothing uses (repeatedly) and unused initializers; return the nodes dropped."""
    dropped = 0
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
        dropped += len(dead)
    used = {i for n in graph.node for i in n.input}
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)
    return dropped


# ------------------------------------------------------------------------------------------------- rewrites
def remove_softmax_nan_guards(model: Any) -> int:
    """Replace ``Where(IsNaN(s), c, s)`` with ``s`` where ``s`` is a Softmax output; return how many."""
    graph = model.graph
    producer = _producers(graph)
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
    _rename_inputs(graph, rename)
    used = {i for n in graph.node for i in n.input} | outputs
    for node in [n for n in graph.node if n.op_type == "IsNaN" and n.output[0] not in used]:
        graph.node.remove(node)
    return len(rename)


def _feeds_softmax(graph: Any, name: str) -> bool:
    """``name`` reaches a Softmax directly or through one Add / Mul / Div (attention scores)."""
    users: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    for n in users.get(name, []):
        if n.op_type == "Softmax":
            return True
        if n.op_type in ("Add", "Mul", "Div") and any(m.op_type == "Softmax" for m in users.get(n.output[0], [])):
            return True
    return False


def fold_qk_scales(model: Any) -> int:
    """``MatMul(Mul(q, a), Mul(k, b))`` -> ``Mul(MatMul(q, k), a*b)`` for attention scores (scalar ``a``, ``b``).

    transformers' SDPA export scales Q and K by sqrt(scale) each; eager attention (and ONNX Runtime's
    attention fusion) scales the scores once. Either Mul alone is folded too. Returns how many MatMuls.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    producer = _producers(graph)
    values = _constants(graph)
    uses: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    outputs = {o.name for o in graph.output}
    folded = 0
    for mm in [n for n in graph.node if n.op_type == "MatMul"]:
        if not _feeds_softmax(graph, mm.output[0]):
            continue
        scale, operands, muls = 1.0, list(mm.input), []
        for k, name in enumerate(mm.input):
            mul = producer.get(name)
            if mul is None or mul.op_type != "Mul" or uses.get(name) != 1 or name in outputs:
                continue
            const = [j for j, i in enumerate(mul.input) if i in values and values[i].size == 1]
            if len(const) != 1 or values[mul.input[const[0]]].dtype != np.float32:
                continue
            scale *= float(values[mul.input[const[0]]].reshape(()))
            operands[k] = mul.input[1 - const[0]]
            muls.append(mul)
        if not muls:
            continue
        out = mm.output[0]
        scale_name = f"{out}/lightcol_scale"
        graph.initializer.append(numpy_helper.from_array(np.array(scale, dtype=np.float32), scale_name))
        mm.input[0], mm.input[1] = operands
        mm.output[0] = f"{out}/lightcol_unscaled"
        nodes = list(graph.node)
        graph.node.insert(nodes.index(mm) + 1, helper.make_node(
            "Mul", [mm.output[0], scale_name], [out], name=f"{mm.name or out}/lightcol_scale"))
        for mul in muls:
            graph.node.remove(mul)
        folded += 1
    return folded


def _ancestors(graph: Any, name: str, producer: dict[str, Any]) -> tuple[list[Any], set[str]]:
    """Nodes computing ``name`` (graph order) and the graph inputs they read."""
    graph_inputs = {i.name for i in graph.input}
    seen: set[str] = set()
    nodes: dict[int, Any] = {}
    inputs: set[str] = set()
    stack = [name]
    while stack:
        t = stack.pop()
        if not t or t in seen:
            continue
        seen.add(t)
        if t in graph_inputs:
            inputs.add(t)
            continue
        n = producer.get(t)
        if n is not None and id(n) not in nodes:
            nodes[id(n)] = n
            stack.extend(n.input)
    order = {id(n): k for k, n in enumerate(graph.node)}
    return sorted(nodes.values(), key=lambda n: order[id(n)]), inputs


def _probe_mask(rng: Any, b: int, s: int) -> Any:
    """A (b, s) attention mask: random padding, the first token and the first row attended."""
    import numpy as np

    m = (rng.random((b, s)) < 0.6).astype(np.int64)
    m[:, 0] = 1
    m[0] = 1
    return m


def _key_padding_masks(model: Any, names: list[str], nodes: list[Any], inputs: set[str]) -> set[str]:
    """Which of ``names`` (computed by ``nodes`` from graph ``inputs``) are, on probe masks, 0 for attended
    keys and <= :data:`MASK_VALUE` for padded ones, broadcastable to (batch, 1, query, key).

    Probed on short masks and on one as long as the subgraph accepts, up to :data:`PROBE_LENGTH` tokens
    (a graph that reads position embeddings refuses rows longer than its table: the longest accepted
    length is found by bisection), so a sliding-window mask is not taken for a key-padding mask."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = model.graph
    needed = {i for n in nodes for i in n.input}
    sub = helper.make_graph(
        nodes, "masks", [i for i in graph.input if i.name in inputs],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names],
        [t for t in graph.initializer if t.name in needed],
    )
    sub_model = helper.make_model(sub, opset_imports=model.opset_import, ir_version=model.ir_version)
    types = {i.name: helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in graph.input if i.name in inputs}
    rng = np.random.default_rng(0)
    good = set(names)

    def run(mask: Any) -> list[Any]:
        feeds = {i: (mask if i == _MASK_INPUT else rng.integers(0, 100, mask.shape)).astype(types[i]) for i in inputs}
        return sess.run(names, feeds)

    def check(mask: Any, outs: list[Any]) -> None:
        b, s = mask.shape
        for name, out in zip(names, outs):
            if out.ndim != 4 or out.shape[0] not in (1, b) or out.shape[1] != 1 or out.shape[2] not in (1, s) or out.shape[3] != s:
                good.discard(name)
                continue
            full = np.broadcast_to(out, (b, 1, s, s))
            keep = np.broadcast_to(mask[:, None, None, :] != 0, full.shape)
            if not (np.all(full[keep] == 0) and np.all(full[~keep] <= MASK_VALUE)):
                good.discard(name)

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        sess = ort.InferenceSession(sub_model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for b, s in ((3, 9), (2, 5), (1, 1)):
            mask = _probe_mask(rng, b, s)
            check(mask, run(mask))
    except Exception:  # noqa: BLE001 - anything ONNX Runtime cannot run alone is simply not rewritten
        return set()
    lo, hi, s = 9, PROBE_LENGTH, PROBE_LENGTH  # lo runs; find the longest length that runs, up to PROBE_LENGTH
    while True:
        mask = _probe_mask(rng, 2, s)
        try:
            outs = run(mask)
        except Exception:  # noqa: BLE001 - longer than the graph accepts (its position table)
            hi = s - 1
        else:
            check(mask, outs)
            if s == hi:
                break
            lo = s
        if lo >= hi:
            break
        s = (lo + hi + 1) // 2
    return good


def canonical_attention_mask(model: Any) -> int:
    """Replace every additive attention mask that is a key-padding mask of ``attention_mask`` by one
    shared ``Where(Cast(Sub(1, Expand(Unsqueeze(Unsqueeze(mask)))), bool), -10000, 0)`` of shape
    (batch, 1, 1, key); return how many score Adds now use it.

    A candidate is an input of an ``Add`` feeding a ``Softmax`` that is computed from the graph inputs
    alone (no MatMul) and reads ``attention_mask``; it is rewritten only if evaluating it on probe masks
    gives exactly that mask (0 where attended, <= -10000 where padded), whatever its form (transformers'
    eager and SDPA exports build it per layer or once, from a 4-D boolean ``Expand``). The canonical form
    is cheap (one (batch, 1, 1, key) tensor instead of a (batch, 1, query, key) one per layer) and is the
    one ONNX Runtime's attention fusion recognises.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    input_names = {i.name for i in graph.input}
    if _MASK_INPUT not in input_names or not input_names <= set(_MODEL_INPUTS):
        return 0
    producer = _producers(graph)
    candidates: dict[str, tuple[list[Any], set[str]]] = {}
    adds = []
    for softmax in graph.node:
        add = producer.get(softmax.input[0]) if softmax.op_type == "Softmax" else None
        if add is None or add.op_type != "Add":
            continue
        adds.append(add)
        for name in add.input:
            if name not in candidates:
                nodes, inputs = _ancestors(graph, name, producer)
                if _MASK_INPUT in inputs and nodes and not any(
                        n.op_type in ("MatMul", "Gemm", "Softmax") or n.domain not in ("", "ai.onnx") for n in nodes):
                    candidates[name] = (nodes, inputs)
    if not candidates:
        return 0
    order = {id(n): k for k, n in enumerate(graph.node)}
    union = {id(n): n for nodes, _ in candidates.values() for n in nodes}
    masks = _key_padding_masks(model, list(candidates), sorted(union.values(), key=lambda n: order[id(n)]),
                               set().union(*(i for _, i in candidates.values())))
    targets = {}
    for add in adds:
        k = next((k for k, name in enumerate(add.input) if name in masks), None)
        if k is not None:
            targets[id(add)] = (add, k)
    if not targets:
        return 0
    p = "lightcol_attention_mask"
    if p in producer:  # rewritten before
        return 0
    mask_type = next(i.type.tensor_type.elem_type for i in graph.input if i.name == _MASK_INPUT)
    graph.initializer.extend([
        numpy_helper.from_array(np.array([1], np.int64), f"{p}/axis1"),
        numpy_helper.from_array(np.array([2], np.int64), f"{p}/axis2"),
        numpy_helper.from_array(np.array([1], np.int64), f"{p}/ones"),
        numpy_helper.from_array(np.array(1, np.int64), f"{p}/one"),
        numpy_helper.from_array(np.array(MASK_VALUE, np.float32), f"{p}/masked"),
        numpy_helper.from_array(np.array(0.0, np.float32), f"{p}/zero"),
    ])
    mask = _MASK_INPUT
    new = []
    if mask_type != TensorProto.INT64:
        new.append(helper.make_node("Cast", [mask], [f"{p}/int64"], to=TensorProto.INT64, name=f"{p}/CastInt64"))
        mask = f"{p}/int64"
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset >= 13:  # axes are an input from opset 13 on, an attribute before
        new += [helper.make_node("Unsqueeze", [mask, f"{p}/axis1"], [f"{p}/u1"], name=f"{p}/Unsqueeze1"),
                helper.make_node("Unsqueeze", [f"{p}/u1", f"{p}/axis2"], [f"{p}/u2"], name=f"{p}/Unsqueeze2")]
    else:
        new += [helper.make_node("Unsqueeze", [mask], [f"{p}/u1"], axes=[1], name=f"{p}/Unsqueeze1"),
                helper.make_node("Unsqueeze", [f"{p}/u1"], [f"{p}/u2"], axes=[2], name=f"{p}/Unsqueeze2")]
    new += [
        helper.make_node("Expand", [f"{p}/u2", f"{p}/ones"], [f"{p}/expanded"], name=f"{p}/Expand"),
        helper.make_node("Sub", [f"{p}/one", f"{p}/expanded"], [f"{p}/inverted"], name=f"{p}/Sub"),
        helper.make_node("Cast", [f"{p}/inverted"], [f"{p}/padded"], to=TensorProto.BOOL, name=f"{p}/Cast"),
        helper.make_node("Where", [f"{p}/padded", f"{p}/masked", f"{p}/zero"], [p], name=f"{p}/Where"),
    ]
    first = min(list(graph.node).index(add) for add, _ in targets.values())
    for k, node in enumerate(new):
        graph.node.insert(first + k, node)
    for add, k in targets.values():
        add.input[k] = p
    prune(graph)
    return len(targets)


def remove_noop_reshapes(model: Any) -> int:
    """Drop Reshapes whose output has the same (symbolic) shape as their input; return how many.

    transformers' SDPA export reshapes the attention output to the shape it already has, which hides
    the attention pattern from ONNX Runtime's fusion. Shapes from ONNX Runtime's symbolic shape
    inference; nothing is removed if it cannot infer the graph.
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    graph = model.graph
    if not any(n.op_type == "Reshape" for n in graph.node):
        return 0
    try:  # SymbolicShapeInference.infer_shapes without its failure path, which saves the model into the cwd
        sym = SymbolicShapeInference(2**31 - 1, True, False, 0)  # int_max, auto_merge, guess_output_rank, verbose
        sym._preprocess(model)
        complete = False
        while sym.run_:
            complete = sym._infer_impl()
        if not complete:
            return 0
        sym._update_output_from_vi()
        inferred = sym.out_mp_
    except Exception:  # noqa: BLE001 - an unknown op or shape (or another onnxruntime version): leave the Reshapes
        return 0
    infos = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)}

    def dims(name: str) -> list[Any] | None:
        info = infos.get(name)
        if info is None or not info.type.tensor_type.HasField("shape"):
            return None
        out: list[Any] = []
        for d in info.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                out.append(d.dim_value)
            elif d.HasField("dim_param") and d.dim_param:
                out.append(d.dim_param)
            else:
                return None
        return out

    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    for node in list(graph.node):
        if node.op_type != "Reshape" or node.output[0] in outputs:
            continue
        before = dims(node.input[0])
        if before is not None and before == dims(node.output[0]):
            rename[node.output[0]] = node.input[0]
            graph.node.remove(node)
    if rename:
        _rename_inputs(graph, rename)
        prune(graph)
    return len(rename)


def heads_and_hidden(model: Any) -> tuple[int, int]:
    """(attention heads, hidden size) read from the Q/K/V head reshapes, or (0, 0) when not one clear pair.

    transformers 5 reshapes to (batch, seq, -1, head_dim); ONNX Runtime's fusion needs the head count
    then, which the projection's weight gives: heads = weight columns / head_dim.
    """
    graph = model.graph
    producer = _producers(graph)
    values = _constants(graph)
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    found = set()
    for reshape in graph.node:
        if reshape.op_type != "Reshape":
            continue
        add, concat = producer.get(reshape.input[0]), producer.get(reshape.input[1])
        if add is None or add.op_type != "Add" or concat is None or concat.op_type != "Concat" or len(concat.input) != 4:
            continue
        mm = next((producer[i] for i in add.input if i in producer and producer[i].op_type == "MatMul"), None)
        if mm is None or len(shapes.get(mm.input[1], ())) != 2:
            continue
        width = shapes[mm.input[1]][1]
        heads, head_dim = values.get(concat.input[2]), values.get(concat.input[3])
        if heads is None or head_dim is None or heads.size != 1 or head_dim.size != 1:
            continue
        heads, head_dim = int(heads.reshape(())), int(head_dim.reshape(()))
        if heads == -1 and head_dim > 0 and width % head_dim == 0:
            heads = width // head_dim
        if heads > 0 and heads * head_dim == width:
            found.add((heads, width))
    return found.pop() if len(found) == 1 else (0, 0)


# ------------------------------------------------------------------------------------------------- the file
def _probe_feeds(model: Any) -> list[dict[str, Any]] | None:
    """Token ids and masks (one padded row, one of a single token) for the model's inputs, or None."""
    import numpy as np
    from onnx import helper

    graph = model.graph
    inputs = {i.name: helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in graph.input}
    if "input_ids" not in inputs or _MASK_INPUT not in inputs or not set(inputs) <= set(_MODEL_INPUTS):
        return None
    vocab = 100
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Gather" and len(n.input) == 2 and n.input[1] == "input_ids" and len(shapes.get(n.input[0], ())) == 2:
            vocab = shapes[n.input[0]][0]
    rng = np.random.default_rng(0)
    out = []
    for b, s, lengths in ((3, 17, (17, 9, 1)), (1, 5, (5,))):
        ids = rng.integers(1, vocab, (b, s))
        mask = (np.arange(s)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
        feed = {"input_ids": ids, _MASK_INPUT: mask, "token_type_ids": np.zeros((b, s), np.int64)}
        out.append({k: feed[k].astype(t) for k, t in inputs.items()})
    return out


def _outputs(path: str, feeds: list[dict[str, Any]]) -> list[Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return [sess.run(None, f)[0] for f in feeds]


def min_token_cosine(a: list[Any], b: list[Any], feeds: list[dict[str, Any]]) -> float:
    """Smallest cosine between corresponding attended token vectors of two models' outputs."""
    import numpy as np

    worst = 1.0
    for x, y, f in zip(a, b, feeds):
        if x.shape != y.shape:
            return -1.0
        keep = f[_MASK_INPUT] != 0
        x, y = x[keep].astype(np.float64), y[keep].astype(np.float64)
        cos = (x * y).sum(-1) / np.maximum(np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1), 1e-30)
        worst = min(worst, float(cos.min()))
    return worst


def _fuse(model: Any, attention: bool) -> Any:
    """ONNX Runtime's transformer fusions on ``model`` (changed in place); Attention only if ``attention``."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.use_raw_attention_mask(True)  # any padding pattern, not just trailing
    options.enable_attention = attention
    # ONNX Runtime 1.32's CPU SkipLayerNormalization (residual Add + bias + LayerNorm in one) measured
    # about twice as slow as the separate Add and LayerNormalization kernels (benchmarks/profile_ops.py)
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    heads, hidden = heads_and_hidden(model) if attention else (0, 0)
    quiet = [logging.getLogger(n) for n in ("onnxruntime.transformers", "fusion", "onnx_model", "")]
    quiet += [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.startswith(("fusion_", "onnx_model"))]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        return optimize_model(model, model_type="bert", num_heads=heads, hidden_size=hidden,
                              opt_level=0, optimization_options=options)
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


def rewrite(src: str | os.PathLike[str], structural: bool = True) -> Any:
    """The ONNX model in ``src`` with the rewrites above applied (before ONNX Runtime's fusions);
    ``structural=False``: only the NaN guards removed."""
    onnx = require_onnx()
    model = onnx.load(os.fspath(src))
    remove_softmax_nan_guards(model)
    if structural:
        fold_qk_scales(model)
        canonical_attention_mask(model)
        remove_noop_reshapes(model)
    return model


def optimize_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, attention: bool | None = None) -> None:
    """Rewrite ONNX file ``src`` into ``dst`` (see the module docstring).

    ``attention``: also fuse attention into ONNX Runtime's ``Attention`` kernel (default :data:`ATTENTION`).
    The rewritten model's vectors are compared with ``src``'s on a probe batch; if they differ
    (cosine < :data:`MIN_COSINE` for some token) the file is written again without the attention
    fusion, then with the NaN guards removed and the other fusions only; if even that differs a
    :class:`ValueError` is raised (nothing usable to write).
    """
    require_onnx()
    attention = ATTENTION if attention is None else attention
    feeds = reference = worst = None
    for structural, fuse in ((True, True), (True, False), (False, False))[0 if attention else 1:]:
        model = rewrite(src, structural)
        if feeds is None:
            feeds = _probe_feeds(model)
            reference = _outputs(os.fspath(src), feeds) if feeds is not None else None
        _fuse(model, fuse).save_model_to_file(os.fspath(dst))
        if feeds is None:
            return
        worst = min_token_cosine(reference, _outputs(os.fspath(dst), feeds), feeds)
        if worst >= MIN_COSINE:
            return
    raise ValueError(f"the rewritten graph's vectors differ from the source's (min per-token cosine {worst:.6f})")


def optimize_int8_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """:func:`optimize_file`, then lightcol's int8 recipe (:func:`lightcol.quantize.quantize_file`) on the
    fused graph: MatMuls become MatMulInteger (Attention nodes, with :data:`ATTENTION`, QAttention)."""
    import tempfile

    from lightcol import quantize

    with tempfile.TemporaryDirectory(prefix=".lightcol-optimize-", dir=Path(dst).parent) as tmp:
        fused = Path(tmp) / "optimized.onnx"
        optimize_file(src, fused)
        quantize.quantize_file(fused, dst, fused=True)


def optimized_name(source: Path) -> str:
    return f"{source.stem}_optimized.onnx"


def optimized_int8_name(source: Path) -> str:
    return f"{source.stem}_optimized_int8.onnx"


def ensure_optimized(
    source: str | os.PathLike[str],
    *,
    int8: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    beside: bool = True,
    lock: Path | None = None,
    force: bool = False,
) -> Path:
    """The optimised file made from float32 ``source``, rewriting it now if none is up to date (as
    :func:`lightcol.quantize.ensure_int8`); ``int8``: the int8 file made from that optimised graph
    (``optimize=True, quantized=True``)."""
    if not int8:
        return _derived.ensure(
            source, "optimized", optimized_name, SETTINGS, optimize_file, require_onnx, command="lightcol optimize",
            cache_dir=cache_dir, beside=beside, lock=lock, force=force,
        )
    from lightcol import quantize

    return _derived.ensure(
        source, "optimized-int8", optimized_int8_name, {**SETTINGS, "int8": quantize.SETTINGS}, optimize_int8_file,
        require_onnx, command="lightcol optimize --int8", cache_dir=cache_dir, beside=beside, lock=lock, force=force,
    )
