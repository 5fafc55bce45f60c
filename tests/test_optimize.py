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
    assert "SkipLayerNormalization" in ops  # ONNX Runtime's fusions applied


def test_optimize_with_quantized_refused(folder: Path) -> None:
    from lightcol import ArgumentError

    with pytest.raises(ArgumentError, match="not supported yet"):
        LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, optimize=True, quantized=True)


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
    assert main(["optimize", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == str(folder / "model_optimized.onnx")
    mtime = (folder / "model_optimized.onnx").stat().st_mtime_ns
    assert main(["optimize", str(folder)]) == 0
    assert (folder / "model_optimized.onnx").stat().st_mtime_ns == mtime
