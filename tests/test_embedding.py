"""LateInteractionTextEmbedding on the tiny fixture: shapes, norms, order, streaming, errors."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import EDGE_TEXTS, ONNX_DIR, random_texts
from lightcol import LateInteractionTextEmbedding
from lightcol.errors import ModelLoadError, ProviderError, UnknownModelError
from lightcol.session import choose_providers

DOCS = EDGE_TEXTS + random_texts(30, seed=3)


def test_document_shapes_norms_and_dtype(model) -> None:
    out = list(model.embed(DOCS, batch_size=4))
    assert len(out) == len(DOCS)
    ids = [model._doc_tokenizer.encode(t).ids for t in DOCS]
    for v, i in zip(out, ids, strict=True):
        kept = 1 + sum(1 for t in i if t not in set(model._skip.tolist()))  # + marker
        assert v.dtype == np.float32 and v.shape == (kept, 16)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert out[0].shape == (3, 16)  # "" -> [CLS] [D] [SEP]
    assert max(v.shape[0] for v in out) <= 64


def test_query_shapes_and_norms(model) -> None:
    out = list(model.query_embed(["hello", "", "x " * 100]))
    assert [v.shape for v in out] == [(32, 16)] * 3
    for v in out:
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    single = next(model.query_embed("hello"))
    np.testing.assert_allclose(single, out[0], atol=1e-6)


def test_batch_size_and_order_do_not_change_vectors(model) -> None:
    a = list(model.embed(DOCS, batch_size=1))
    b = list(model.embed(DOCS, batch_size=7))
    c = list(model.embed(reversed(DOCS), batch_size=64))[::-1]
    for x, y, z in zip(a, b, c, strict=True):
        np.testing.assert_allclose(x, y, atol=2e-6)
        np.testing.assert_allclose(x, z, atol=2e-6)
    q1 = list(model.query_embed(DOCS, batch_size=1))
    q2 = list(model.query_embed(DOCS, batch_size=9))
    for x, y in zip(q1, q2, strict=True):
        np.testing.assert_allclose(x, y, atol=2e-6)


def test_generators_are_consumed_lazily(model) -> None:
    pulled = 0

    def source():
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield f"document number {i}"

    stream = model.embed(source(), batch_size=4)
    first = list(itertools.islice(stream, 3))
    assert len(first) == 3 and pulled <= 4 * 8 + 1  # one window, not the infinite stream


def test_source_errors_surface_after_the_vectors_before_them(model) -> None:
    def source():
        yield "one"
        yield "two"
        raise RuntimeError("source broke")

    got = []
    with pytest.raises(RuntimeError, match="source broke"):
        for v in model.embed(source()):
            got.append(v)
    assert len(got) == 2


@pytest.mark.parametrize("bad, position", [(["ok", None], 1), (["a", "b", 3], 2), ([b"bytes"], 0), ([["nested"]], 0)])
def test_non_strings_raise_type_error_with_position(model, bad, position) -> None:
    with pytest.raises(TypeError, match=f"item {position} is"):
        list(model.embed(bad))


def test_bad_arguments(model) -> None:
    with pytest.raises(TypeError):
        list(model.embed(None))
    with pytest.raises(ValueError, match="batch_size"):
        list(model.embed(["x"], batch_size=0))
    with pytest.raises(TypeError, match="unexpected keyword"):
        LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, colour="blue")


def test_token_count(model) -> None:
    assert model.token_count("hello world") == 4  # [CLS] hello world [SEP] (FastEmbed: no marker)
    assert model.token_count("hello world", include_extension=True) == 5  # + [D]
    assert model.token_count(["hello world", "hello"]) == 7
    assert model.token_count("word " * 500, include_extension=True) == 64  # truncated at the document length
    assert model.token_count("hello world", is_doc=False) == 4
    assert model.token_count(["a", "b"], is_doc=False, include_extension=True) == 64


def test_dim_and_spec(model) -> None:
    assert model.dim == 16 and model.model_name == "lightcol/tiny-colbert"


def test_lazy_load_opens_session_on_first_use() -> None:
    m = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, lazy_load=True, threads=1)
    assert m._model is None
    assert next(m.embed("hello")).shape == (4, 16)
    assert m._model is not None


def test_folder_without_rules_needs_a_name(tmp_path: Path) -> None:
    shutil.copytree(ONNX_DIR, tmp_path / "m")
    (tmp_path / "m" / "lightcol_config.json").unlink()
    with pytest.raises(ModelLoadError, match="no lightcol_config.json"):
        LateInteractionTextEmbedding(specific_model_path=tmp_path / "m")
    # the registry's colbertv2.0 rules match the vocabulary, but its dim (128) does not match the ONNX (16)
    with pytest.raises(ModelLoadError, match="dim 128"):
        LateInteractionTextEmbedding("colbert-ir/colbertv2.0", specific_model_path=tmp_path / "m")
    with pytest.raises(UnknownModelError):
        LateInteractionTextEmbedding("nobody/nothing", specific_model_path=tmp_path / "m")
    with pytest.raises(ModelLoadError, match="not a folder"):
        LateInteractionTextEmbedding(specific_model_path=tmp_path / "missing")


def test_registry_rules_applied_to_a_folder(tmp_path: Path) -> None:
    """A folder whose config names different rules: the folder's rules are what the encoder uses."""
    folder = tmp_path / "m"
    shutil.copytree(ONNX_DIR, folder)
    cfg = json.loads((folder / "lightcol_config.json").read_text())
    cfg["rules"]["query_length"] = 8
    (folder / "lightcol_config.json").write_text(json.dumps(cfg))
    m = LateInteractionTextEmbedding(specific_model_path=folder)
    assert next(m.query_embed("hello")).shape == (8, 16)


def test_providers() -> None:
    assert choose_providers(False) == ["CPUExecutionProvider"]
    assert choose_providers("auto") in (["CPUExecutionProvider"], [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"])
    assert choose_providers(providers=["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ProviderError, match="not both"):
        choose_providers(True, providers=["CPUExecutionProvider"])
    with pytest.raises(ProviderError, match="'BogusExecutionProvider' is not available.*CPUExecutionProvider"):
        choose_providers(providers=["BogusExecutionProvider"])
    with pytest.raises(ProviderError, match="cuda must be"):
        choose_providers("yes")  # type: ignore[arg-type]


def test_cuda_true_without_cuda_lists_what_is_available() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ProviderError, match="no CUDAExecutionProvider.*available: .*'CPUExecutionProvider'"):
        LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=True)


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads"):
        LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, threads=0)


def test_rerank_matches_a_plain_maxsim_loop(model) -> None:
    query = "library catalog retrieval"
    best = "library catalog retrieval system"
    candidates = random_texts(25, seed=7) + [best, best]
    q = next(model.query_embed(query))
    reference = np.array([(q @ d.T).max(axis=1).sum() for d in model.embed(candidates)])
    order = sorted(range(len(candidates)), key=lambda i: (-reference[i], i))
    indices, scores = model.rerank(query, candidates)
    assert list(indices) == order and len(indices) == len(candidates)
    np.testing.assert_allclose(scores, reference[order], rtol=1e-5)
    top, _ = model.rerank(query, candidates, k=3)
    assert list(top) == order[:3]
    pos = list(indices)
    assert scores[pos.index(25)] == scores[pos.index(26)] and pos.index(25) == pos.index(26) - 1  # tie: lower index first
    empty_i, empty_s = model.rerank(query, [])
    assert empty_i.shape == (0,) and empty_s.shape == (0,)
    with pytest.raises(TypeError):
        model.rerank(query, "not a list")


def test_token_count_propagates_source_errors(model) -> None:
    def source():
        yield "one"
        raise RuntimeError("source broke")

    for kwargs in ({}, {"is_doc": False}, {"is_doc": False, "include_extension": True}):
        with pytest.raises(RuntimeError, match="source broke"):
            model.token_count(source(), **kwargs)


def test_unknown_variant_fails_before_any_download(tmp_path: Path, monkeypatch) -> None:
    from lightcol import download
    from lightcol.errors import RegistryError

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded a model whose variant does not exist")

    monkeypatch.setattr(download, "resolve_model_dir", no_download)
    with pytest.raises(RegistryError, match="no 'fp16' variant"):
        LateInteractionTextEmbedding("colbert-ir/colbertv2.0", cache_dir=tmp_path, model_variant="fp16")


def test_tokens_per_call_follow_the_encoder_width(tmp_path: Path) -> None:
    """1,024 padded tokens per ONNX Runtime call up to hidden size 384, proportionally fewer for wider
    encoders (512 at 768), from the folder's config.json; the default when it names no hidden size."""
    from lightcol.embedding import batch_tokens_for

    assert [batch_tokens_for(h) for h in (None, 128, 384, 768, 1024, 10**6, True)] == [1024, 1024, 1024, 512, 384, 128, 1024]
    folder = tmp_path / "model"
    shutil.copytree(ONNX_DIR, folder)
    config = json.loads((folder / "config.json").read_text())
    assert LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, lazy_load=True).batch_tokens == \
        batch_tokens_for(config.get("hidden_size"))
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 768}))
    assert LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, lazy_load=True).batch_tokens == 512
    (folder / "config.json").unlink()
    assert LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, lazy_load=True).batch_tokens == 1024
