"""optimize=True / ``lightcol optimize``: foreign exports rewritten once for speed, vectors unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import ONNX_DIR, random_texts
from lightcol import LateInteractionTextEmbedding, _derived
from lightcol.cli import main
from lightcol.optimize import remove_softmax_nan_guards

TEXTS = random_texts(10, seed=7) + ["ColBERT encodes every token.", ""]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LIGHTCOL_CACHE_PATH", str(tmp_path / "cache"))
    d = tmp_path / "model"
    shutil.copytree(ONNX_DIR, d)
    return d


def _cos(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    assert [x.shape for x in a] == [x.shape for x in b]
    return np.concatenate([(x * y).sum(1) for x, y in zip(a, b)])


def test_optimized_once_same_vectors(folder: Path) -> None:
    opt = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, optimize=True)
    made = folder / "model_optimized.onnx"
    assert made.is_file() and _derived.record_path(made).is_file()
    mtime = made.stat().st_mtime_ns
    LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, optimize=True)
    assert made.stat().st_mtime_ns == mtime
    ref = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False)
    docs = _cos(list(opt.embed(TEXTS)), list(ref.embed(TEXTS)))
    queries = _cos(list(opt.query_embed(TEXTS[:3])), list(ref.query_embed(TEXTS[:3])))
    assert docs.min() >= 0.9999 and queries.min() >= 0.9999, (docs.min(), queries.min())
    import onnx

    ops = {n.op_type for n in onnx.load(str(made)).graph.node}
    assert "BiasGelu" in ops and "Erf" not in ops  # ONNX Runtime's fusions applied


def test_optimize_with_quantized_int8_of_the_fused_graph(folder: Path) -> None:
    opt8 = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, optimize=True, quantized=True)
    made = folder / "model_optimized_int8.onnx"
    assert made.is_file() and _derived.record_path(made).is_file()
    ops = _ops(made)
    assert "MatMulInteger" in ops and "BiasGelu" in ops and "Erf" not in ops  # fused, then quantised
    mtime = made.stat().st_mtime_ns
    LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, optimize=True, quantized=True)
    assert made.stat().st_mtime_ns == mtime  # made once
    ref = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False)
    docs = _cos(list(opt8.embed(TEXTS)), list(ref.embed(TEXTS)))
    assert docs.min() > 0.99 and docs.mean() > 0.998, (docs.min(), docs.mean())  # test_quantize's int8 tolerance
    # as close to float32 as the plain int8 file (same recipe, on the unfused graph)
    plain = _cos(list(LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True).embed(TEXTS)),
                 list(ref.embed(TEXTS)))
    assert abs(docs.mean() - plain.mean()) < 0.002, (docs.mean(), plain.mean())


def test_nan_guards_removed_same_output() -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["x"], ["s"], axis=-1),
            helper.make_node("IsNaN", ["s"], ["nan"]),
            helper.make_node("Where", ["nan", "zero", "s"], ["w"]),
            helper.make_node("Mul", ["w", "w"], ["y"]),
        ],
        "g", [x], [y], [zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    before = model.SerializeToString()
    assert remove_softmax_nan_guards(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Softmax", "Mul"]
    onnx.checker.check_model(model)
    feed = {"x": np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)}
    a = ort.InferenceSession(before, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    b = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_array_equal(a, b)


def test_cli_optimize(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optimize", str(folder), "--int8"]) == 0
    assert capsys.readouterr().out.strip() == str(folder / "model_optimized_int8.onnx")
    assert main(["optimize", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == str(folder / "model_optimized.onnx")
    mtime = (folder / "model_optimized.onnx").stat().st_mtime_ns
    assert main(["optimize", str(folder)]) == 0
    assert (folder / "model_optimized.onnx").stat().st_mtime_ns == mtime


# ------------------------------------------------------------------ attention fusion (foreign exports)
ROOT = Path(__file__).resolve().parent.parent


def _ops(path: Path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint exported as third parties do (SDPA, legacy torch.onnx.export defaults)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("make_foreign_export", ROOT / "tools" / "make_foreign_export.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_foreign_export"] = mod
    spec.loader.exec_module(mod)
    from conftest import CKPT_DIR

    return mod.make(CKPT_DIR, ONNX_DIR, tmp_path_factory.mktemp("foreign") / "tiny-foreign")


def _same_vectors(a: LateInteractionTextEmbedding, b: LateInteractionTextEmbedding) -> None:
    docs = _cos(list(a.embed(TEXTS)), list(b.embed(TEXTS)))
    queries = _cos(list(a.query_embed(TEXTS[:3])), list(b.query_embed(TEXTS[:3])))
    assert docs.min() >= 0.9999 and queries.min() >= 0.9999, (docs.min(), queries.min())


@pytest.fixture
def fuse_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightcol import optimize

    monkeypatch.setattr(optimize, "ATTENTION", True)  # off by default (not faster on the CPU, see optimize.ATTENTION)


def test_own_export_attention_fused(folder: Path, fuse_attention: None) -> None:
    opt = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, optimize=True)
    ops = _ops(folder / "model_optimized.onnx")
    assert ops.count("Attention") == 2 and "Softmax" not in ops  # both layers of the tiny model
    _same_vectors(opt, LateInteractionTextEmbedding(specific_model_path=folder, cuda=False))


def test_foreign_export_default_rewrite(foreign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTCOL_CACHE_PATH", str(tmp_path / "cache"))
    d = tmp_path / "model"
    shutil.copytree(foreign, d)
    opt = LateInteractionTextEmbedding(specific_model_path=d, cuda=False, optimize=True)
    ops = _ops(d / "model_optimized.onnx")
    raw = _ops(foreign / "model.onnx")
    assert "IsNaN" not in ops and "Attention" not in ops and ops.count("Softmax") == 2
    assert ops.count("Where") <= raw.count("Where") - 4  # 2 guards and 2 per-layer masks gone, 1 shared mask
    assert ops.count("Reshape") < raw.count("Reshape") and "BiasGelu" in ops
    _same_vectors(opt, LateInteractionTextEmbedding(specific_model_path=d, cuda=False))
    _same_vectors(opt, LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=False))


def test_foreign_export_rewritten_and_fused(foreign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            fuse_attention: None) -> None:
    import onnx

    from lightcol import optimize

    raw = _ops(foreign / "model.onnx")
    assert raw.count("IsNaN") == 2 and "Attention" not in raw  # it is the SDPA form
    model = onnx.load(str(foreign / "model.onnx"))
    assert optimize.remove_softmax_nan_guards(model) == 2
    assert optimize.fold_qk_scales(model) == 2  # Q and K each scaled by sqrt(scale): one Mul on the scores
    assert optimize.canonical_attention_mask(model) == 2  # per-layer masks -> one shared
    assert optimize.remove_noop_reshapes(model) >= 2  # SDPA's reshape of the attention output to its own shape
    assert optimize.heads_and_hidden(model) == (3, 12)
    assert optimize.canonical_attention_mask(model) == 0  # idempotent

    monkeypatch.setenv("LIGHTCOL_CACHE_PATH", str(tmp_path / "cache"))
    d = tmp_path / "model"
    shutil.copytree(foreign, d)
    opt = LateInteractionTextEmbedding(specific_model_path=d, cuda=False, optimize=True)
    ops = _ops(d / "model_optimized.onnx")
    assert ops.count("Attention") == 2 and not {"IsNaN", "Softmax"} & set(ops)
    ref = LateInteractionTextEmbedding(specific_model_path=d, cuda=False)
    _same_vectors(opt, ref)
    # and the same vectors as lightcol's own export of the same weights
    _same_vectors(opt, LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=False))


def test_attention_fusion_that_changes_vectors_is_dropped(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                          fuse_attention: None) -> None:
    from lightcol import optimize

    monkeypatch.setattr(optimize, "heads_and_hidden", lambda model: (1, 12))  # wrong head count: wrong vectors
    opt = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, optimize=True)
    ops = _ops(folder / "model_optimized.onnx")
    assert "Attention" not in ops and "BiasGelu" in ops  # written without the attention fusion
    _same_vectors(opt, LateInteractionTextEmbedding(specific_model_path=folder, cuda=False))


def test_every_rewrite_that_changes_vectors_is_dropped(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                       fuse_attention: None) -> None:
    from lightcol import optimize

    def broken(model) -> int:  # a structural rewrite gone wrong: every score doubled
        from onnx import helper, numpy_helper

        sm = next(n for n in model.graph.node if n.op_type == "Softmax")
        model.graph.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), "two"))
        model.graph.node.insert(list(model.graph.node).index(sm), helper.make_node("Mul", [sm.input[0], "two"], ["doubled"]))
        sm.input[0] = "doubled"
        return 1

    monkeypatch.setattr(optimize, "fold_qk_scales", broken)
    opt = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, optimize=True)
    ops = _ops(folder / "model_optimized.onnx")
    assert "Attention" not in ops and "BiasGelu" in ops  # the guards-and-fusions recipe only
    _same_vectors(opt, LateInteractionTextEmbedding(specific_model_path=folder, cuda=False))


def _run(model, feeds: dict) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _mask_graph(causal: bool, window: int | None = None):
    """Softmax(scores + mask) with transformers' eager-style 4-D boolean mask (and a causal part, or
    ModernBERT's sliding-window part ``|query - key| <= window``, if asked)."""
    from onnx import TensorProto, helper

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 1, "s", "s"])
    inits = [
        helper.make_tensor("axes12", TensorProto.INT64, [2], [1, 2]),
        helper.make_tensor("axes13", TensorProto.INT64, [2], [1, 3]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("neg", TensorProto.FLOAT, [], [float("-inf")]),
        helper.make_tensor("scale", TensorProto.FLOAT, [], [0.01]),
    ]
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["x", "axes12"], ["xk"]),  # (b, 1, 1, s)
        helper.make_node("Unsqueeze", ["x", "axes13"], ["xq"]),  # (b, 1, s, 1)
        helper.make_node("Mul", ["xq", "xk"], ["xx"]),
        helper.make_node("Mul", ["xx", "scale"], ["scores"]),  # (b, 1, s, s)
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.BOOL),
        helper.make_node("Unsqueeze", ["m", "axes12"], ["pad"]),
    ]
    keep = "pad"
    if causal:
        nodes += [
            helper.make_node("Mul", ["xq", "xk"], ["sq"]),
            helper.make_node("Shape", ["sq"], ["shape"]),
            helper.make_node("ConstantOfShape", ["shape"], ["ones"], value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])),
            helper.make_node("Trilu", ["ones"], ["tril"], upper=0),
            helper.make_node("Cast", ["tril"], ["lower"], to=TensorProto.BOOL),
            helper.make_node("And", ["pad", "lower"], ["both"]),
        ]
        keep = "both"
    if window is not None:
        inits += [helper.make_tensor("start", TensorProto.INT64, [], [0]),
                  helper.make_tensor("step", TensorProto.INT64, [], [1]),
                  helper.make_tensor("last", TensorProto.INT64, [1], [-1]),
                  helper.make_tensor("half", TensorProto.INT64, [], [window])]
        nodes += [
            helper.make_node("Shape", ["attention_mask"], ["mshape"]),
            helper.make_node("Gather", ["mshape", "step"], ["len"]),
            helper.make_node("Range", ["start", "len", "step"], ["pos"]),
            helper.make_node("Unsqueeze", ["pos", "last"], ["posq"]),
            helper.make_node("Sub", ["posq", "pos"], ["dist"]),
            helper.make_node("Abs", ["dist"], ["adist"]),
            helper.make_node("LessOrEqual", ["adist", "half"], ["near"]),
            helper.make_node("And", ["pad", "near"], ["local"]),
        ]
        keep = "local"
    nodes += [
        helper.make_node("Where", [keep, "zero", "neg"], ["add_mask"]),
        helper.make_node("Add", ["scores", "add_mask"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(nodes, "g", [ids, mask], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _mask_feeds() -> dict:
    rng = np.random.default_rng(3)
    mask = (rng.random((3, 6)) < 0.5).astype(np.int64)
    mask[:, 0] = 1
    return {"input_ids": rng.integers(0, 50, (3, 6)), "attention_mask": mask}


def test_canonical_mask_replaces_a_key_padding_mask_only() -> None:
    import onnx

    from lightcol.optimize import canonical_attention_mask

    model = _mask_graph(causal=False)
    before = _run(model, _mask_feeds())
    assert canonical_attention_mask(model) == 1
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Where") == 1 and "lightcol_attention_mask" in {o for n in model.graph.node for o in n.output}
    np.testing.assert_allclose(_run(model, _mask_feeds()), before, atol=1e-7)

    causal = _mask_graph(causal=True)
    before = causal.SerializeToString()
    assert canonical_attention_mask(causal) == 0  # a causal mask is not a key-padding mask: left alone
    assert causal.SerializeToString() == before

    # a sliding-window mask (ModernBERT's local layers: 64 tokens either side) equals a key-padding mask on
    # short rows; the long probe tells them apart, so the local layers do not become global ones
    local = _mask_graph(causal=False, window=64)
    before = local.SerializeToString()
    assert canonical_attention_mask(local) == 0
    assert local.SerializeToString() == before


def test_fold_qk_scales_same_scores() -> None:
    from onnx import TensorProto, helper

    from lightcol.optimize import fold_qk_scales

    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 3, 5, 4])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, [2, 3, 4, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    s = helper.make_tensor("s", TensorProto.FLOAT, [], [0.5 ** 0.5])
    graph = helper.make_graph([
        helper.make_node("Mul", ["q", "s"], ["qs"]),
        helper.make_node("Mul", ["k", "s"], ["ks"]),
        helper.make_node("MatMul", ["qs", "ks"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["y"], axis=-1),
    ], "g", [q, k], [y], [s])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(0)
    feeds = {"q": rng.standard_normal((2, 3, 5, 4)).astype(np.float32), "k": rng.standard_normal((2, 3, 4, 5)).astype(np.float32)}
    before = _run(model, feeds)
    assert fold_qk_scales(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Mul", "Softmax"]
    np.testing.assert_allclose(_run(model, feeds), before, rtol=1e-5, atol=1e-7)


def test_noop_reshape_removed_real_one_kept() -> None:
    from onnx import TensorProto, helper

    from lightcol.optimize import remove_noop_reshapes

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [helper.make_tensor("i0", TensorProto.INT64, [], [0]), helper.make_tensor("i1", TensorProto.INT64, [], [1]),
             helper.make_tensor("axes", TensorProto.INT64, [1], [0]), helper.make_tensor("four", TensorProto.INT64, [1], [4]),
             helper.make_tensor("split", TensorProto.INT64, [4], [0, 0, 2, 2])]
    graph = helper.make_graph([
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "i0"], ["b"]),
        helper.make_node("Gather", ["shape", "i1"], ["s"]),
        helper.make_node("Unsqueeze", ["b", "axes"], ["b1"]),
        helper.make_node("Unsqueeze", ["s", "axes"], ["s1"]),
        helper.make_node("Concat", ["b1", "s1", "four"], ["same"], axis=0),
        helper.make_node("Reshape", ["x", "same"], ["x2"]),  # (b, s, 4) -> (b, s, 4)
        helper.make_node("Reshape", ["x2", "split"], ["y"]),  # (b, s, 4) -> (b, s, 2, 2)
    ], "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4)}
    before = _run(model, feeds)
    assert remove_noop_reshapes(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Reshape"]
    np.testing.assert_array_equal(_run(model, feeds), before)
