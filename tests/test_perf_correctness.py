"""The performance paths give the same vectors: token-budget batching, order, float16, parallel workers, int8."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import time

import numpy as np
import pytest

from conftest import CKPT_DIR, EDGE_TEXTS, ONNX_DIR, random_texts
from lightcol import LateInteractionTextEmbedding
from lightcol.errors import RegistryError
from lightcol import WorkerError

DOCS = EDGE_TEXTS + random_texts(60, seed=21)


def _reference(model, texts):
    """One text per ONNX call: no batching, no sorting, no padding."""
    return [next(model.embed([t], batch_size=1)) for t in texts]


def _same(a, b, atol=2e-6):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, atol=atol)


def test_token_budget_batching_keeps_vectors_and_order(model) -> None:
    ref = _reference(model, DOCS)
    default = model.batch_tokens
    for budget in (1, 64, 500, 100_000):
        model.batch_tokens = budget
        try:
            _same(list(model.embed(DOCS, batch_size=16)), ref)
            _same(list(model.embed(iter(DOCS[::-1]), batch_size=5)), ref[::-1])
        finally:
            model.batch_tokens = default


def test_batches_respect_budget_and_batch_size() -> None:
    from lightcol.embedding import _token_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 65, 500)
    order = np.argsort(lengths, kind="stable")
    for budget, bs in ((256, 8), (1000, 1000), (10, 4)):
        batches = list(_token_batches(lengths, order, bs, budget))
        assert np.array_equal(np.concatenate(batches), order)
        for b in batches:
            assert len(b) <= bs
            assert len(b) == 1 or len(b) * lengths[b].max() <= budget


def test_queries_batched_equal_single(model) -> None:
    texts = EDGE_TEXTS + random_texts(50, seed=22, max_words=30)
    single = [next(model.query_embed(t)) for t in texts]
    _same(list(model.query_embed(texts)), single)
    _same(list(model.query_embed(texts, batch_size=7)), single)


def test_float16_output(model) -> None:
    f32 = list(model.embed(DOCS[:20]))
    f16 = list(model.embed(DOCS[:20], dtype="float16"))
    assert all(v.dtype == np.float16 for v in f16)
    _same([v.astype(np.float32) for v in f16], f32, atol=2e-3)
    q16 = next(model.query_embed("hello world", dtype=np.float16))
    assert q16.dtype == np.float16 and q16.shape == (32, 16)
    with pytest.raises(ValueError, match="dtype"):
        list(model.embed(DOCS[:2], dtype="int8"))


def test_session_options_kwarg() -> None:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    m = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=False, session_options=opts)
    m2 = LateInteractionTextEmbedding(
        specific_model_path=ONNX_DIR, cuda=False,
        session_options={"graph_optimization_level": "ORT_ENABLE_BASIC", "session.intra_op.allow_spinning": "0"},
    )
    _same(list(m.embed(DOCS[:10])), list(m2.embed(DOCS[:10])), atol=1e-5)


def test_parallel_equals_serial(model) -> None:
    texts = DOCS * 3
    serial = list(model.embed(texts, batch_size=8))
    par = list(model.embed(iter(texts), batch_size=8, parallel=2))
    _same(par, serial, atol=1e-5)
    assert next(model.embed(texts[:3], parallel=0)).shape == serial[0].shape  # small input: in-process
    f16 = list(model.embed(texts, batch_size=8, parallel=2, dtype="float16"))
    assert f16[5].dtype == np.float16 and len(f16) == len(texts)


def test_parallel_source_error_after_vectors(model) -> None:
    def source():
        yield from DOCS[:70]
        raise RuntimeError("source broke")

    got = []
    with pytest.raises(RuntimeError, match="source broke"):
        for v in model.embed(source(), batch_size=4, parallel=2):
            got.append(v)
    assert len(got) == 70


def test_killed_worker_raises_promptly(model) -> None:
    texts = random_texts(3000, seed=23)
    stream = model.embed(iter(texts), batch_size=8, parallel=2)
    next(stream)
    workers = [p for p in mp.active_children() if p.name.startswith("lightcol-worker")]
    assert workers
    os.kill(workers[0].pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(WorkerError, match="died"):
        for _ in stream:
            pass
    assert time.monotonic() - start < 30
    time.sleep(0.2)
    assert not [p for p in mp.active_children() if p.name.startswith("lightcol-worker")]


def test_worker_that_cannot_load_raises(tmp_path) -> None:
    folder = tmp_path / "onnx"
    shutil.copytree(ONNX_DIR, folder)
    m = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False)
    (folder / "model.onnx").write_bytes(b"garbage")  # the workers open the file again
    with pytest.raises(WorkerError, match="could not load"):
        list(m.embed(random_texts(200, seed=24), batch_size=8, parallel=2))


def test_unknown_variant_and_bad_parallel(model) -> None:
    with pytest.raises(RegistryError, match="no 'fp16' variant"):  # int8 is made when missing (test_quantize.py)
        LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=False, model_variant="fp16")
    with pytest.raises(ValueError, match="parallel"):
        list(model.embed(DOCS, parallel=-1))


def test_int8_variant_close_to_float32(tmp_path) -> None:
    pytest.importorskip("torch")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import export_onnx

    out = tmp_path / "onnx"
    entry = export_onnx.export(CKPT_DIR, out, name="tiny", quantize="int8", min_cosine=0.0)
    assert entry["variants"] == {"int8": "model_int8.onnx"}
    assert json.loads((out / "lightcol_config.json").read_text())["variants"] == {"int8": "model_int8.onnx"}
    f32 = LateInteractionTextEmbedding(specific_model_path=out, cuda=False)
    q8 = LateInteractionTextEmbedding(specific_model_path=out, cuda=False, quantized=True)
    assert q8.model_variant == "int8" and f32.model_variant is None
    texts = random_texts(20, seed=25)
    for a, b in zip(f32.embed(texts), q8.embed(texts), strict=True):
        assert a.shape == b.shape
        cos = (a * b).sum(-1)  # rows are unit vectors
        assert cos.mean() > 0.9, cos.mean()
    qa, qb = next(f32.query_embed("late interaction")), next(q8.query_embed("late interaction"))
    assert (qa * qb).sum(-1).mean() > 0.9
