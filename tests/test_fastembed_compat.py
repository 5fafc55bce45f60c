"""FastEmbed drop-in: the behaviours FastEmbed's late-interaction tests assert
(tests/test_late_interaction_embeddings.py of qdrant/fastembed), on lightcol's models, and one
user script run unchanged by the real FastEmbed and by lightcol on the same ONNX model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from lightcol import ArgumentError, LateInteractionTextEmbedding, ProviderError, UnknownModelError
from tests.conftest import ONNX_DIR

DOCS = ["short doc", "it is a long document to check attention mask for paddings"]
VERY_LONG_QUERY = (
    "It's a very long query which definitely contains more than 32 tokens and we're using it to check whether "
    "the method can handle large query properly without cutting it to 32 tokens"
)


def _tiny(**kwargs) -> LateInteractionTextEmbedding:
    return LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=False, **kwargs)


def test_batch_size_invariance(model) -> None:
    texts = DOCS * 5 + ["Hello World"] * 3
    one = list(model.embed(texts, batch_size=1))
    for bs in (2, 6, 256):
        other = list(model.embed(texts, batch_size=bs))
        assert [v.shape for v in other] == [v.shape for v in one]
        for a, b in zip(one, other, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
    assert len(one[0]) == len(next(model.embed(DOCS, batch_size=2)))


def test_parallel_equals_sequential(model) -> None:
    texts = ["hello world", "flag embedding"] * 30
    sequential = list(model.embed(texts, batch_size=10, parallel=None))
    parallel = list(model.embed(texts, batch_size=10, parallel=2))
    assert len(parallel) == len(texts) and parallel[0].shape[-1] == model.embedding_size == 16
    for a, b in zip(parallel, sequential, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("method", ["embed", "query_embed", "passage_embed"])
def test_lazy_load(method) -> None:
    m = _tiny(lazy_load=True)
    assert not hasattr(m.model, "model")  # FastEmbed: no session before first use
    out = list(getattr(m, method)(["hello world", "flag embedding"]))
    assert hasattr(m.model, "model") and isinstance(m.model.model, ort.InferenceSession)
    assert len(out) == 2 and all(v.shape[1] == 16 for v in out)


def test_passage_embed_is_embed(model) -> None:
    got = list(model.passage_embed(DOCS, batch_size=1))
    for a, b in zip(got, model.embed(DOCS), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="bogus"):
        model.passage_embed(DOCS, bogus=1)


def test_get_embedding_size_case_insensitive() -> None:
    assert LateInteractionTextEmbedding.get_embedding_size("answerdotai/answerai-colbert-small-v1") == 96
    assert LateInteractionTextEmbedding.get_embedding_size("answerdotai/answerai-ColBERT-small-v1") == 96
    assert LateInteractionTextEmbedding.get_embedding_size("COLBERT-IR/colbertv2.0") == 128
    with pytest.raises(ValueError) as e:
        LateInteractionTextEmbedding.get_embedding_size("no/such-model")
    assert isinstance(e.value, UnknownModelError)
    assert _tiny(lazy_load=True).embedding_size == 16


def test_supported_model_descriptions() -> None:
    descriptions = LateInteractionTextEmbedding._list_supported_models()
    dims = {d.model: d.dim for d in descriptions}
    assert dims["colbert-ir/colbertv2.0"] == 128 and dims["answerdotai/answerai-colbert-small-v1"] == 96
    fastembed_keys = {"model", "sources", "model_file", "description", "license", "size_in_GB", "additional_files", "dim", "tasks"}
    for entry in LateInteractionTextEmbedding.list_supported_models():
        assert fastembed_keys <= set(entry)
        assert {"hf", "url", "_deprecated_tar_struct"} <= set(entry["sources"])


def test_session_option_keywords(model) -> None:
    assert model.model.model.get_session_options().enable_cpu_mem_arena is True
    m = _tiny(enable_cpu_mem_arena=False)
    assert m.model.model.get_session_options().enable_cpu_mem_arena is False
    # keywords merge with a session_options mapping, and reach parallel workers' sessions too
    m = _tiny(enable_mem_pattern=False, session_options={"enable_cpu_mem_arena": False})
    opts = m.model.model.get_session_options()
    assert opts.enable_mem_pattern is False and opts.enable_cpu_mem_arena is False
    assert m._worker_state["session_options"] == {"enable_cpu_mem_arena": False, "enable_mem_pattern": False}


def test_unknown_keywords_raise_type_error() -> None:
    with pytest.raises(TypeError, match="enable_cpu_mem_arna"):
        _tiny(enable_cpu_mem_arna=False)
    with pytest.raises(TypeError, match="bogus"):
        _tiny(lazy_load=True, bogus=1)
    with pytest.raises(ArgumentError, match="twice"):
        _tiny(enable_cpu_mem_arena=False, session_options={"enable_cpu_mem_arena": True})
    with pytest.raises(ArgumentError, match="set them on that object"):
        _tiny(enable_cpu_mem_arena=False, session_options=ort.SessionOptions())


def test_token_count_identities(model) -> None:
    short, long = model.token_count(DOCS[0]), model.token_count(DOCS[1])
    assert (short, long) == (4, 15)  # [CLS] text [SEP], no marker (as FastEmbed)
    assert model.token_count(DOCS) == short + long == model.token_count(DOCS, batch_size=1)
    assert model.token_count(DOCS, include_extension=True) == short + long + 2  # one [D] marker each
    assert model.token_count(DOCS, is_doc=False) == short + long
    assert model.token_count(DOCS, is_doc=False, include_extension=True) == 64  # query length 32
    # documented difference: lightcol truncates queries at the query length, as colbert-ai (FastEmbed: 512)
    assert model.token_count(VERY_LONG_QUERY, is_doc=False, include_extension=True) == 32
    assert model.token_count(VERY_LONG_QUERY, is_doc=False) == 31
    assert model.token_count(VERY_LONG_QUERY) == 40  # documents: truncated at 64 only


def test_fastembed_device_values() -> None:
    assert _tiny(lazy_load=True)._providers == ["CPUExecutionProvider"]
    m = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda="cpu", lazy_load=True)
    assert m._providers == ["CPUExecutionProvider"]
    m = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda="auto", device_ids=[0], lazy_load=True)
    assert m._providers[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ProviderError, match="CUDAExecutionProvider"):
            LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda="cuda", lazy_load=True)
    with pytest.raises(ProviderError, match="'gpu'"):
        LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda="gpu", lazy_load=True)


def test_model_handle(model) -> None:
    assert model.model._model_dir == ONNX_DIR.absolute()
    assert model.model.tokenizer.encode("hello world").ids[0] == 101
    assert [i.name for i in model.model.get_inputs()][:2] == ["input_ids", "attention_mask"]  # session attributes


# A FastEmbed user's script: only the import line differs (argv[1]), and the model name (argv[2]).
USER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    if sys.argv[1] == "fastembed":
        from fastembed import LateInteractionTextEmbedding
    else:
        from lightcol import LateInteractionTextEmbedding
    name, folder, out = sys.argv[2], sys.argv[3], sys.argv[4]
    docs = ["short doc", "it is a long document to check attention mask for paddings", "Hello, World!"]
    model = LateInteractionTextEmbedding(name, specific_model_path=folder, cuda=False, lazy_load=True,
                                         enable_cpu_mem_arena=False)
    result = {"loaded_before": hasattr(model.model, "model")}
    d = list(model.embed(docs, batch_size=2))
    p = list(model.passage_embed(docs))
    q = list(model.query_embed(docs))
    q1 = list(model.query_embed("Hello, World!"))
    result["loaded_after"] = hasattr(model.model, "model")
    result["arena"] = model.model.model.get_session_options().enable_cpu_mem_arena
    result["model_dir"] = str(model.model._model_dir)
    result["embedding_size"] = model.embedding_size
    result["size_of"] = LateInteractionTextEmbedding.get_embedding_size("answerdotai/answerai-ColBERT-small-v1")
    result["dims"] = {m.model: m.dim for m in LateInteractionTextEmbedding._list_supported_models()}
    result["keys"] = sorted(LateInteractionTextEmbedding.list_supported_models()[0])
    result["source_keys"] = sorted(LateInteractionTextEmbedding.list_supported_models()[0]["sources"])
    result["counts"] = [model.token_count(docs), model.token_count(docs, include_extension=True),
                        model.token_count(docs, batch_size=1), model.token_count(docs[0]),
                        model.token_count(docs, is_doc=False),
                        model.token_count(docs, is_doc=False, include_extension=True)]
    json.dump(result, open(out + ".json", "w"))
    np.savez(out + ".npz", *d, *p, *q, *q1)
    """
)


def _run_user_script(python: str, backend: str, name: str, out: Path, env: dict[str, str]) -> tuple[dict, list]:
    subprocess.run([python, "-c", USER_SCRIPT, backend, name, str(ONNX_DIR), str(out)],
                   check=True, cwd=out.parent, env=env, timeout=300)
    with np.load(str(out) + ".npz") as z:
        arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    return json.loads(Path(str(out) + ".json").read_text()), arrays


FASTEMBED_PYTHON = os.environ.get("LIGHTCOL_FASTEMBED_PYTHON")


@pytest.mark.skipif(not FASTEMBED_PYTHON, reason="no FastEmbed environment: run tools/setup_dev.sh")
def test_user_script_runs_unchanged_on_both(tmp_path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    # FastEmbed needs one of its own names to take the folder; lightcol takes the folder's own (tiny) rules
    fe, fe_vectors = _run_user_script(FASTEMBED_PYTHON, "fastembed", "colbert-ir/colbertv2.0", tmp_path / "fe", env)
    lc, lc_vectors = _run_user_script(sys.executable, "lightcol", "lightcol/tiny-colbert", tmp_path / "lc", env)
    assert (fe["embedding_size"], lc["embedding_size"]) == (128, 16)  # FastEmbed: from the name given
    assert fe == {**lc, "dims": fe["dims"], "keys": fe["keys"], "embedding_size": 128}
    assert fe["loaded_before"] is False and fe["loaded_after"] is True and fe["arena"] is False
    assert set(fe["keys"]) <= set(lc["keys"])
    assert {k: v for k, v in lc["dims"].items() if k in fe["dims"]} == {k: fe["dims"][k] for k in lc["dims"] if k in fe["dims"]}
    assert len(fe_vectors) == len(lc_vectors) == 10
    for i, (a, b) in enumerate(zip(fe_vectors, lc_vectors, strict=True)):
        assert a.shape == b.shape
        if i >= 6:  # documented difference: FastEmbed returns query rows as the graph does, lightcol unit-norm
            a = a / np.linalg.norm(a, axis=1, keepdims=True)
        np.testing.assert_allclose(a, b, atol=1e-5)
