"""FastEmbed drop-in: the behaviours FastEmbed's late-interaction tests assert, on lightcol's models."""

from __future__ import annotations

import numpy as np
import pytest

from lightcol import LateInteractionTextEmbedding
from lightcol.errors import ArgumentError, ProviderError, UnknownModelError

from conftest import ONNX_DIR, random_texts

DOCS = ["hello world", "flag embedding"] + random_texts(30, seed=31)


def test_passage_embed_equals_embed(model) -> None:
    for a, b in zip(model.embed(DOCS), model.passage_embed(DOCS), strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(list(model.passage_embed(DOCS, batch_size=4, dtype="float16"))) == len(DOCS)


@pytest.mark.parametrize("batch_size", [1, 3, 8, 64])
def test_batch_size_invariance(model, batch_size: int) -> None:
    ref = list(model.embed(DOCS, batch_size=256))
    for a, b in zip(ref, model.embed(DOCS, batch_size=batch_size), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    qref = list(model.query_embed(DOCS))
    for a, b in zip(qref, model.query_embed(DOCS, batch_size=batch_size), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_parallel_equals_sequential(model) -> None:
    docs = DOCS * 10
    seq = list(model.embed(docs, batch_size=8))
    par = list(model.embed(docs, batch_size=8, parallel=2))
    assert len(seq) == len(par)
    for a, b in zip(seq, par, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("method", ["embed", "query_embed", "passage_embed"])
def test_lazy_load(method: str) -> None:
    m = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, lazy_load=True, cuda=False)
    assert m._model is None
    stream = getattr(m, method)(["hello world"])
    assert m._model is None  # nothing runs until the generator is read
    assert len(list(stream)) == 1 and m._model is not None


def test_embedding_size_lookups(model) -> None:
    assert model.embedding_size == 16
    assert LateInteractionTextEmbedding.get_embedding_size("colbert-ir/colbertv2.0") == 128
    assert LateInteractionTextEmbedding.get_embedding_size("COLBERT-IR/ColBERTv2.0") == 128  # case-insensitive
    assert LateInteractionTextEmbedding.get_embedding_size("answerdotai/answerai-colbert-small-v1") == 96
    with pytest.raises(ValueError):
        LateInteractionTextEmbedding.get_embedding_size("no/such-model")


def test_list_supported_models_has_fastembed_keys() -> None:
    fastembed_keys = {"model", "dim", "description", "license", "size_in_GB", "sources", "model_file", "additional_files"}
    models = LateInteractionTextEmbedding.list_supported_models()
    assert models and all(fastembed_keys <= set(m) for m in models)
    described = LateInteractionTextEmbedding._list_supported_models()
    assert [(d.model, d.dim) for d in described] == [(m["model"], m["dim"]) for m in models]


def test_constructor_keywords_become_session_options() -> None:
    m = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=False, enable_cpu_mem_arena=False)
    assert m._options.enable_cpu_mem_arena is False
    assert m._worker_state["session_options"] == {"enable_cpu_mem_arena": False}  # workers get it too
    m2 = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=False, enable_mem_pattern=False,
                                      session_options={"intra_op_num_threads": 1})
    assert m2._options.enable_mem_pattern is False and m2._options.intra_op_num_threads == 1
    with pytest.raises(TypeError, match="bogus_option"):  # not a session option: still a TypeError naming it
        LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, bogus_option=1)
    with pytest.raises(ArgumentError, match="twice"):
        LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, enable_mem_pattern=False,
                                     session_options={"enable_mem_pattern": True})


def test_token_count_identities(model) -> None:
    texts = DOCS
    per_text = sum(model.token_count(t) for t in texts)
    assert model.token_count(texts) == per_text  # additive
    assert model.token_count(texts, batch_size=3) == per_text  # batch-size invariant
    assert model.token_count(texts, include_extension=True) == per_text + len(texts)  # + one marker each
    # documents: the count is what embed keeps before the skiplist (marker included with the extension)
    for t, v in zip(texts, model.embed(texts), strict=True):
        assert v.shape[0] <= model.token_count(t, include_extension=True)
    q = model.token_count(texts, is_doc=False)
    assert q <= model.token_count(texts)  # queries are truncated at query_length (colbert-ai), documents later
    qlen = model.spec.rules.query_length
    assert model.token_count(texts, is_doc=False, include_extension=True) == qlen * len(texts)
    assert model.token_count("a", is_doc=False) == 3  # [CLS] a [SEP]


def test_device_enum_values_and_device_ids() -> None:
    m = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda="cpu", device_ids=[0])
    assert m._providers == ["CPUExecutionProvider"]
    m = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda="auto", lazy_load=True)
    assert m._providers[-1] == "CPUExecutionProvider"
    with pytest.raises(ProviderError):  # Device.CUDA without onnxruntime-gpu
        LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda="cuda")
    with pytest.raises(ProviderError, match="either"):
        LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=True, providers=["CPUExecutionProvider"])


def test_unknown_model_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        LateInteractionTextEmbedding("no/such-model")
    with pytest.raises(UnknownModelError):
        LateInteractionTextEmbedding("no/such-model")
