"""Everything downstream of the encoder works unchanged on the PyLate-family models: pooling,
``Index``, ``DocumentIndex``, ``lightcol embed``, the store integrations and the FastEmbed drop-in,
on two tiny PyLate exports (tests/pylate_models.py) whose rules differ most from colbert-ai's:
ModernBERT without query expansion (variable-length queries, byte-level BPE, sliding-window
attention) and XLM-RoBERTa with expansion (SentencePiece, ``<s>``/``</s>``).

The integration and drop-in tests are the suite's own (tests/test_integrations.py,
tests/test_fastembed_compat.py), collected here a second time with ``model`` bound to these models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import random_texts
from lightcol import DocumentIndex, Index, LateInteractionTextEmbedding, MultiVectorCollection, maxsim, pool_tokens_batch

# the suite's integration and FastEmbed drop-in tests, run again on the models below
from test_fastembed_compat import test_batch_size_invariance, test_parallel_equals_sequential  # noqa: F401
from test_integrations import (  # noqa: F401
    collection,
    test_lancedb_ranks_as_exhaustive_maxsim,
    test_langchain_reranker,
    test_llama_index_rerank,
    test_qdrant_ranks_as_exhaustive_maxsim,
    test_weaviate_objects_and_query_serialise,
    texts,
)

MODELS = ["modernbert-noexp", "xlmr"]


@pytest.fixture(scope="module", params=MODELS)
def model(request, tiny_pylate) -> LateInteractionTextEmbedding:
    return LateInteractionTextEmbedding(specific_model_path=tiny_pylate[request.param].onnx, cuda=False)


@pytest.fixture(scope="module")
def corpus(model) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    docs = random_texts(150, seed=21, max_words=80)
    return docs, list(model.embed(docs)), list(model.query_embed(random_texts(8, seed=22, max_words=8)))


def test_pooling(model, corpus) -> None:
    docs, vectors, _ = corpus
    pooled = list(model.embed(docs[:20], pool_factor=2))
    expected = pool_tokens_batch(vectors[:20], 2)
    assert [len(p) for p in pooled] == [len(e) for e in expected]
    assert all(len(p) < len(v) for p, v in zip(pooled, vectors[:20], strict=True) if len(v) > 3)
    for p, e in zip(pooled, expected, strict=True):
        np.testing.assert_allclose(p, e, atol=1e-6)


def test_index_exact_search_equals_exhaustive_maxsim(model, corpus, tmp_path: Path) -> None:
    _, vectors, queries = corpus
    ix = Index.build(tmp_path / "i.lci", None, vectors, nbits=2, keep_full=True, show_progress=False)
    col = MultiVectorCollection()
    col.add(None, vectors)
    for q in queries:
        # every document a candidate (subset no larger than n_rerank): exact scores from the side file
        got = ix.search(q, 5, exact=True, n_rerank=len(vectors), subset=ix.ids)
        want = col.search(q, 5)
        # the side file holds float16 vectors: the top 5 up to float16 near-ties (random tiny models
        # score many documents within 1e-4 of each other), each score its document's exact MaxSim
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=5e-4)
        exact = {d: float(maxsim.score(q, [vectors[d]])[0]) for d, _ in got}
        np.testing.assert_allclose([s for _, s in got], [exact[d] for d, _ in got], rtol=5e-4)
    approx = ix.search(queries[0], 10)  # the compressed path answers too
    assert len(approx) == 10 and approx == sorted(approx, key=lambda r: -r[1])


def test_document_index(model, tmp_path: Path) -> None:
    from lightcol.splitting import split_documents

    texts = random_texts(10, seed=23, max_words=150)
    ids = [f"doc-{i}" for i in range(len(texts))]
    index = DocumentIndex.create(tmp_path / "ix", model, texts=texts, document_ids=ids, max_document_length=40)
    query = "late interaction retrieval"
    res = index.search(query, k=5, mode="maxsim")  # MaxSim alone: compared with maxsim.rank below
    passages = split_documents(texts, model, 40)
    assert len(passages) > len(texts)  # documents longer than 40 tokens were split
    idx, scores = maxsim.rank(next(model.query_embed([query])), list(model.embed([p.text for p in passages])), 5)
    assert [(ids[passages[i].doc], passages[i].text) for i in idx] == [(r["document_id"], r["content"]) for r in res]
    np.testing.assert_allclose([r["score"] for r in res], scores, rtol=1e-5)
    index.close()
    reopened = DocumentIndex.open(tmp_path / "ix")
    assert reopened.search(query, k=5, mode="maxsim") == res
    reopened.close()


def test_embed_cli(model, tmp_path: Path, capsys) -> None:
    pytest.importorskip("pyarrow")
    from lightcol import parquet
    from lightcol.cli import main

    texts = random_texts(25, seed=24) + ["  padded text  ", ""]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    folder = str(model.model._model_dir)
    assert main(["embed", str(src), "-o", str(tmp_path / "out"), "--model-path", folder, "--batch-size", "4", "-q"]) == 0, (
        capsys.readouterr().err
    )
    ids, vectors = parquet.read_embeddings(tmp_path / "out")
    assert ids == [f"d{i}" for i in range(len(texts))]
    for got, want in zip(vectors, model.embed(texts), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    meta = parquet.read_metadata(tmp_path / "out")
    assert meta["rules"]["do_query_expansion"] == model.spec.rules.do_query_expansion
