"""lightcol.integrations against the real client libraries: Qdrant local mode, embedded LanceDB,
weaviate-client serialisation, langchain-core, llama-index-core. Rankings equal lightcol's own
exhaustive MaxSim on the same vectors (the stores' cosine equals the dot product on unit rows)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import random_texts
from lightcol import MultiVectorCollection, maxsim

QUERIES = ["late interaction retrieval index", "library catalog subject analysis", "precision recall evaluation"]
N_DOCS = 40


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return random_texts(N_DOCS, seed=12, max_words=60)


@pytest.fixture(scope="module")
def collection(model, texts) -> MultiVectorCollection:
    c = MultiVectorCollection()
    c.add(range(len(texts)), model.embed(texts))
    return c


def exhaustive(model, collection: MultiVectorCollection, query: str, k: int) -> list[tuple[int, float]]:
    return collection.search(next(model.query_embed([query])), k=k)


# ------------------------------------------------------------------------------------------------
# import hygiene and missing extras


def test_import_lightcol_imports_no_integration() -> None:
    code = (
        "import sys, lightcol, lightcol.integrations; "
        "print(' '.join(m for m in sys.modules if m.split('.')[0] in "
        "('qdrant_client', 'lancedb', 'weaviate', 'langchain_core', 'llama_index', 'pyarrow') "
        "or m.startswith('lightcol.integrations.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == ""


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("qdrant", "qdrant_client", "qdrant"),
        ("lancedb", "lancedb", "lancedb"),
        ("weaviate", "weaviate", "weaviate"),
        ("langchain", "langchain_core", "langchain"),
        ("llama_index", "llama_index", "llama-index"),
    ],
)
def test_missing_extra_names_it(module: str, blocked: str, extra: str) -> None:
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "try:\n"
        f"    import lightcol.integrations.{module} as m\n"
        f"    m.__dict__.get('_models', lambda: None)()\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert f"pip install 'lightcol[{extra}]'" in out


# ------------------------------------------------------------------------------------------------
# Qdrant (local mode: the real client library, no server)


@pytest.mark.parametrize("where", ["memory", "path"])
def test_qdrant_ranks_as_exhaustive_maxsim(model, texts, collection, tmp_path, where: str) -> None:
    from qdrant_client import QdrantClient, models

    from lightcol.integrations import qdrant

    client = QdrantClient(":memory:") if where == "memory" else QdrantClient(path=str(tmp_path / "q"))
    qdrant.create_collection(client, "docs", model)
    params = client.get_collection("docs").config.params.vectors["colbert"]
    assert params.multivector_config.comparator == models.MultiVectorComparator.MAX_SIM
    assert params.hnsw_config.m == 0 and params.size == model.embedding_size
    payloads = [{"n": i} for i in range(len(texts))]
    n = qdrant.upsert(client, "docs", documents=texts, ids=range(len(texts)), payloads=payloads, model=model,
                      batch_size=7, show_progress=False)
    assert n == len(texts) == client.count("docs").count
    for query in QUERIES:
        points = qdrant.query(client, "docs", query, model=model, limit=10)
        expected = exhaustive(model, collection, query, 10)
        assert [p.id for p in points] == [i for i, _ in expected]
        np.testing.assert_allclose([p.score for p in points], [s for _, s in expected], rtol=1e-5)
        assert points[0].payload == {"n": points[0].id, "text": texts[points[0].id]}
    client.close()


class MeanPool:
    """A stand-in for a FastEmbed-compatible Muvera (same three members): the mean vector."""

    def __init__(self, dim: int) -> None:
        self.embedding_size = dim

    def process_document(self, vectors: np.ndarray) -> np.ndarray:
        return vectors.mean(axis=0)

    process_query = process_document


def test_qdrant_prefetch_then_maxsim(model, texts, collection) -> None:
    from qdrant_client import QdrantClient

    from lightcol.integrations import qdrant

    pool = MeanPool(model.embedding_size)
    client = QdrantClient(":memory:")
    qdrant.create_collection(client, "docs", model, muvera=pool)
    assert client.get_collection("docs").config.params.vectors["muvera"].size == model.embedding_size
    qdrant.upsert(client, "docs", documents=texts, model=model, muvera=pool, show_progress=False)
    dense = np.stack([v.mean(axis=0) for v in collection])
    for query in QUERIES:
        q = next(model.query_embed([query]))
        # every point prefetched: exactly the exhaustive ranking
        full = qdrant.query(client, "docs", query, model=model, limit=10, muvera=pool, prefetch_limit=N_DOCS)
        assert [p.id for p in full] == [i for i, _ in exhaustive(model, collection, query, 10)]
        # 12 prefetched by the dense field, reranked by MaxSim
        got = qdrant.query(client, "docs", query, model=model, limit=5, muvera=pool, prefetch_limit=12)
        candidates = np.argsort(-(dense @ q.mean(axis=0)), kind="stable")[:12]
        scores = collection.score(q)
        order = candidates[np.argsort(-scores[candidates], kind="stable")][:5]
        assert [p.id for p in got] == order.tolist()
        np.testing.assert_allclose([p.score for p in got], scores[order], rtol=1e-5)


def test_qdrant_string_ids_and_stored_vectors(model, texts) -> None:
    from qdrant_client import QdrantClient

    from lightcol.integrations import qdrant

    client = QdrantClient(":memory:")
    qdrant.create_collection(client, "docs", model)
    ids = [f"doc-{i}" for i in range(5)]
    qdrant.upsert(client, "docs", documents=texts[:5], ids=ids, model=model, show_progress=False)
    got = client.retrieve("docs", [qdrant.point_id("doc-3")], with_vectors=True)[0]
    assert got.payload["id"] == "doc-3"
    np.testing.assert_allclose(np.array(got.vector["colbert"]), next(model.embed([texts[3]])), atol=1e-6)
    uid = "12345678-1234-5678-1234-567812345678"
    assert qdrant.point_id(uid) == uid and qdrant.point_id(7) == 7
    with pytest.raises(ValueError, match="unsigned"):
        qdrant.point_id(-1)


def test_qdrant_upsert_checks_lengths(model, texts) -> None:
    from qdrant_client import QdrantClient

    from lightcol import ShapeError
    from lightcol.integrations import qdrant

    client = QdrantClient(":memory:")
    qdrant.create_collection(client, "docs", model)
    with pytest.raises(ShapeError, match="more documents than ids"):
        qdrant.upsert(client, "docs", documents=texts[:4], ids=[0, 1], model=model, show_progress=False)
    with pytest.raises(ShapeError, match="more ids than documents"):
        qdrant.upsert(client, "docs", documents=texts[:2], ids=[0, 1, 2], model=model, show_progress=False)


# ------------------------------------------------------------------------------------------------
# LanceDB (embedded)


@pytest.mark.parametrize("str_ids", [False, True])
def test_lancedb_ranks_as_exhaustive_maxsim(model, texts, collection, tmp_path, str_ids: bool) -> None:
    import lancedb
    import pyarrow as pa

    from lightcol.integrations import lancedb as lc

    db = lancedb.connect(str(tmp_path / "lance"))
    ids = [f"d{i}" for i in range(len(texts))] if str_ids else list(range(len(texts)))
    table = lc.create_table(db, "docs", model, documents=texts, ids=ids, batch_size=9, show_progress=False)
    assert table.count_rows() == len(texts)
    assert table.schema.field("vector").type == pa.list_(pa.list_(pa.float32(), model.embedding_size))
    stored = table.to_arrow().sort_by("id" if not str_ids else [("id", "ascending")])
    first = np.array(table.to_arrow().column("vector")[0].as_py(), dtype=np.float32)
    np.testing.assert_array_equal(first, next(model.embed([texts[0]])))
    assert len(stored) == len(texts)
    for query in QUERIES:
        rows = lc.search(table, query, model=model, limit=10)
        expected = exhaustive(model, collection, query, 10)
        assert [r["id"] for r in rows] == [ids[i] for i, _ in expected]
        np.testing.assert_allclose([r["score"] for r in rows], [s for _, s in expected], rtol=1e-5)
        assert "vector" not in rows[0] and rows[0]["text"] == texts[expected[0][0]]


# ------------------------------------------------------------------------------------------------
# Weaviate (no server here: what the client serialises)


def test_weaviate_collection_config_serialises() -> None:
    from weaviate.collections.classes.config import _CollectionConfigCreate

    from lightcol.integrations import weaviate as lw

    plain = _CollectionConfigCreate(**lw.collection_config("Docs"))._to_dict()
    assert plain["class"] == "Docs"
    assert plain["vectorConfig"] == {
        "colbert": {"vectorizer": {"none": {}}, "vectorIndexType": "hnsw",
                    "vectorIndexConfig": {"multivector": {"enabled": True}}}
    }
    assert [p["name"] for p in plain["properties"]] == ["text", "doc_id"]
    muvera = _CollectionConfigCreate(**lw.collection_config("Docs", muvera={"ksim": 4, "repetitions": 10}))._to_dict()
    assert muvera["vectorConfig"]["colbert"]["vectorIndexConfig"]["multivector"] == {
        "enabled": True, "muvera": {"enabled": True, "ksim": 4, "repetitions": 10}
    }


class _Recorder:
    """Stands in for a Weaviate collection: records what would go to the server."""

    def __init__(self) -> None:
        self.inserted: list = []
        self.queries: list = []
        self.data = self
        self.query = self

    def insert_many(self, objects):
        self.inserted.extend(objects)
        return type("Result", (), {"errors": {}})()

    def near_vector(self, **kwargs):
        self.queries.append(kwargs)
        return kwargs


def test_weaviate_objects_and_query_serialise(model, texts) -> None:
    from weaviate.collections.classes.batch import _BatchObject
    from weaviate.collections.batch.grpc_batch import _BatchGRPC
    from weaviate.collections.grpc.shared import _Pack, _Unpack
    from weaviate.proto.v1 import base_pb2

    from lightcol.integrations import weaviate as lw

    rec = _Recorder()
    assert lw.insert(rec, texts[:5], ids=[10, 11, 12, 13, 14], model=model, batch_size=2, show_progress=False) == 5
    obj = rec.inserted[3]
    assert obj.uuid == lw.object_uuid(13) and obj.properties == {"text": texts[3], "doc_id": "13"}
    expected = next(model.embed([texts[3]]))
    packed = _Pack.parse_single_or_multi_vec(obj.vector["colbert"])
    assert packed.type_ == base_pb2.Vectors.VECTOR_TYPE_MULTI_FP32
    np.testing.assert_array_equal(np.array(_Unpack.multi(packed.bytes_), dtype=np.float32), expected)
    grpc = _BatchGRPC(weaviate_version=None, consistency_level=None, grpc_max_msg_size=None).grpc_object(
        _BatchObject(collection="Docs", properties=obj.properties, uuid=obj.uuid, vector=obj.vector,
                     references=None, tenant=None, index=0)
    )
    assert grpc.vectors[0].name == "colbert" and grpc.vectors[0].type == base_pb2.Vectors.VECTOR_TYPE_MULTI_FP32
    np.testing.assert_array_equal(np.array(_Unpack.multi(grpc.vectors[0].vector_bytes), dtype=np.float32), expected)

    lw.query(rec, QUERIES[0], model=model, limit=3)
    sent = rec.queries[0]
    assert sent["target_vector"] == "colbert" and sent["limit"] == 3
    np.testing.assert_array_equal(np.array(sent["near_vector"], dtype=np.float32), next(model.query_embed([QUERIES[0]])))


# ------------------------------------------------------------------------------------------------
# LangChain


def test_langchain_reranker(model, texts) -> None:
    from langchain_core.documents import Document

    from lightcol.integrations.langchain import LightcolReranker

    docs = [Document(page_content=t, metadata={"n": i}, id=f"x{i}") for i, t in enumerate(texts[:12])]
    out = LightcolReranker(model=model, top_n=4).compress_documents(docs, QUERIES[1])
    expected = maxsim.rank(next(model.query_embed([QUERIES[1]])), list(model.embed(texts[:12])), 4)
    assert [d.metadata["n"] for d in out] == expected[0].tolist()
    assert [d.id for d in out] == [f"x{i}" for i in expected[0]]
    np.testing.assert_allclose([d.metadata["relevance_score"] for d in out], expected[1], rtol=1e-6)
    assert "relevance_score" not in docs[0].metadata  # inputs untouched
    assert LightcolReranker(model=model).compress_documents([], "q") == []
    with pytest.raises(ValueError, match="top_n"):
        LightcolReranker(model=model, top_n=0)


def test_langchain_retriever(model, texts, collection) -> None:
    from langchain_core.documents import Document

    from lightcol.integrations.langchain import LightcolRetriever

    expected = exhaustive(model, collection, QUERIES[2], 5)
    for documents in (texts, {i: Document(page_content=t, metadata={"n": i}) for i, t in enumerate(texts)}):
        got = LightcolRetriever(source=collection, model=model, documents=documents, k=5).invoke(QUERIES[2])
        assert [d.metadata["id"] for d in got] == [i for i, _ in expected]
        assert [d.page_content for d in got] == [texts[i] for i, _ in expected]
        np.testing.assert_allclose([d.metadata["relevance_score"] for d in got], [s for _, s in expected], rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# LlamaIndex


def test_llama_index_rerank(model, texts) -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    from lightcol.integrations.llama_index import LightcolRerank

    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.0) for i, t in enumerate(texts[:12])]
    out = LightcolRerank(model=model, top_n=3).postprocess_nodes(nodes, query_str=QUERIES[0])
    idx, scores = maxsim.rank(next(model.query_embed([QUERIES[0]])), list(model.embed(texts[:12])), 3)
    assert [n.node.node_id for n in out] == [f"n{i}" for i in idx]
    np.testing.assert_allclose([n.score for n in out], scores, rtol=1e-6)
    with pytest.raises(ValueError, match="query"):
        LightcolRerank(model=model).postprocess_nodes(nodes)


def test_llama_index_retriever(model, texts, collection) -> None:
    from llama_index.core.schema import TextNode

    from lightcol.integrations.llama_index import LightcolRetriever

    expected = exhaustive(model, collection, QUERIES[1], 4)
    for nodes in (texts, lambda i: TextNode(text=texts[i], id_=f"n{i}")):
        got = LightcolRetriever(collection, model, nodes, similarity_top_k=4).retrieve(QUERIES[1])
        assert [n.node.get_content() for n in got] == [texts[i] for i, _ in expected]
        np.testing.assert_allclose([n.score for n in got], [s for _, s in expected], rtol=1e-6)
    assert got[0].node.node_id == f"n{expected[0][0]}"


# ------------------------------------------------------------------------------------------------
# the retrievers over a lightcol.Index (compressed) answer what Index.search answers


def test_retrievers_over_index(model, texts, tmp_path) -> None:
    from lightcol import Index
    from lightcol.integrations.langchain import LightcolRetriever as LangchainRetriever
    from lightcol.integrations.llama_index import LightcolRetriever as LlamaRetriever

    index = Index.build(tmp_path / "docs.lci", [f"d{i}" for i in range(len(texts))], model.embed(texts), nbits=4,
                        show_progress=False)
    by_id = {f"d{i}": t for i, t in enumerate(texts)}
    for query in QUERIES:
        expected = index.search(next(model.query_embed([query])), k=5)
        docs = LangchainRetriever(source=index, model=model, documents=by_id, k=5).invoke(query)
        assert [(d.metadata["id"], d.page_content) for d in docs] == [(i, by_id[i]) for i, _ in expected]
        np.testing.assert_allclose([d.metadata["relevance_score"] for d in docs], [s for _, s in expected], rtol=1e-6)
        nodes = LlamaRetriever(index, model, by_id, similarity_top_k=5).retrieve(query)
        assert [(n.node.node_id, n.score) for n in nodes] == [(i, pytest.approx(s, rel=1e-6)) for i, s in expected]


def test_store_errors_stop_the_stream(model, texts) -> None:
    from lightcol.integrations import weaviate as lw

    class Rejecting(_Recorder):
        def insert_many(self, objects):
            super().insert_many(objects)
            return type("Result", (), {"errors": {1: "vector dimensions mismatch"}})()

    rec = Rejecting()
    with pytest.raises(RuntimeError, match="rejected 1 object.*object 1: vector dimensions mismatch"):
        lw.insert(rec, texts[:10], model=model, batch_size=4, show_progress=False)
    assert len(rec.inserted) == 4  # the first batch only: nothing sent after the error
