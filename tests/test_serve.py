"""``lightcol serve`` over real HTTP: the real server (uvicorn) on a free port, called with httpx.

Vectors, rerank orders, token counts and search results are compared with the library in-process
on the same tiny model; every 4xx/503 case, authentication, metrics and graceful shutdown are checked.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")  # the dev extra
pytest.importorskip("fastapi")  # lightcol[serve]

from conftest import EDGE_TEXTS, ONNX_DIR, random_texts  # noqa: E402
from serving import ROOT, InThread, Subprocess  # noqa: E402

from lightcol import DocumentIndex, Index, maxsim  # noqa: E402

TEXTS = EDGE_TEXTS + random_texts(20, seed=3)


def floats(e) -> np.ndarray:
    return np.asarray(e, dtype=np.float32).reshape(-1, 16)


def b64(e) -> np.ndarray:
    assert e["dtype"] == "float32"
    return np.frombuffer(base64.b64decode(e["data"]), dtype="<f4").reshape(e["shape"])


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    # ONNX Runtime gives each text the same vectors in any batch (checked here on every run)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)


@pytest.fixture(scope="module")
def server():
    s = Subprocess("--model-path", str(ONNX_DIR), "--threads", "1", "--max-texts", "40", "--max-chars", "5000",
                   "--max-body-bytes", "200000", "--max-queue", "64")
    yield s
    assert s.stop() == 0, s.log


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def error(r, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["type"] == kind, body
    return body["error"]["message"]


# -- vectors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["document", "query"])
@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embed_equals_in_process(client, model, kind, encoding):
    r = client.post("/v1/embed", json={"texts": TEXTS, "kind": kind, "encoding": encoding})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "lightcol/tiny-colbert" and body["dim"] == 16
    got = [floats(e) if encoding == "float" else b64(e) for e in body["embeddings"]]
    want = list(model.embed(TEXTS) if kind == "document" else model.query_embed(TEXTS))
    assert_same(got, want)
    assert body["n_tokens"] == [w.shape[0] for w in want]
    if kind == "query":
        assert set(body["n_tokens"]) == {32}


def test_float_responses_read_back_the_same_with_or_without_orjson(monkeypatch):
    from lightcol.serve import app as serve_app

    rng = np.random.default_rng(0)
    vecs = [rng.standard_normal((n, 16)).astype(np.float32) for n in (1, 7, 32)]
    payload = {"model": "m\u00e9", "dim": 16, "embeddings": [v.tolist() for v in vecs], "n_tokens": [1, 7, 32]}
    want = serve_app._dumps(payload)
    got = serve_app._dumps_floats(payload, vecs)  # orjson when installed
    assert json.loads(got) == json.loads(want)
    for v, e in zip(vecs, json.loads(got)["embeddings"], strict=True):
        np.testing.assert_array_equal(np.asarray(e, dtype=np.float32), v)
    nan = [np.array([[0.5, np.nan]], dtype=np.float32)]
    with pytest.raises(ValueError):  # never written as null
        serve_app._dumps_floats({"embeddings": [nan[0].tolist()]}, nan)
    monkeypatch.setattr(serve_app, "_orjson", None)
    assert serve_app._dumps_floats(payload, vecs) == want


def test_embed_defaults_and_empty(client, model):
    body = client.post("/v1/embed", json={"texts": ["late interaction"]}).json()  # document, float
    assert_same([floats(body["embeddings"][0])], list(model.embed(["late interaction"])))
    assert client.post("/v1/embed", json={"texts": []}).json()["embeddings"] == []


def test_concurrent_callers_get_their_own_vectors(client, model):
    concurrent_callers(client, model)


def test_batch_workers_run_batches_at_once_and_give_the_same_vectors(model):
    s = Subprocess("--model-path", str(ONNX_DIR), "--threads", "1", "--batch-workers", "2")
    try:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            concurrent_callers(c, model)
            assert c.get("/v1/model").json()["batch_workers"] == 2
    finally:
        assert s.stop() == 0, s.log


def concurrent_callers(client, model) -> None:
    """16 callers, queries and documents mixed: each gets exactly in-process vectors; some calls merged requests."""
    texts = random_texts(64, seed=11, max_words=60)
    want_docs = list(model.embed(texts))
    want_queries = list(model.query_embed(texts))

    def call(i: int):
        kind = "query" if i % 3 == 0 else "document"
        chunk = texts[i % 60 : i % 60 + 1 + i % 4]
        r = client.post("/v1/embed", json={"texts": chunk, "kind": kind, "encoding": "base64"})
        assert r.status_code == 200, r.text
        return i, kind, [b64(e) for e in r.json()["embeddings"]]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(96)))
    for i, kind, got in results:
        want = want_queries if kind == "query" else want_docs
        assert_same(got, want[i % 60 : i % 60 + 1 + i % 4])
    metrics = client.get("/metrics").text
    # some calls merged several requests (16 callers on one model)
    merged = [line for line in metrics.splitlines() if line.startswith("lightcol_batch_requests_bucket")
              and 'le="1"' in line]
    total = [line for line in metrics.splitlines() if line.startswith("lightcol_batch_requests_count")]
    assert sum(float(x.split()[-1]) for x in total) > sum(float(x.split()[-1]) for x in merged)


def test_rerank_equals_in_process_maxsim(client, model):
    query = "information retrieval evaluation"
    docs = random_texts(25, seed=5)
    r = client.post("/v1/rerank", json={"query": query, "documents": docs, "top_n": 10})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    idx, scores = model.rerank(query, docs, k=10)
    assert [x["index"] for x in results] == idx.tolist()
    np.testing.assert_array_equal(np.array([x["score"] for x in results], dtype=np.float32), scores)
    q = next(model.query_embed(query))
    np.testing.assert_array_equal(maxsim.score(q, list(model.embed(docs)))[idx], scores)
    everything = client.post("/v1/rerank", json={"query": query, "documents": docs}).json()["results"]
    assert [x["index"] for x in everything] == model.rerank(query, docs)[0].tolist()
    assert client.post("/v1/rerank", json={"query": query, "documents": []}).json()["results"] == []


def test_token_count_equals_in_process(client, model):
    for kind, ext in (("document", False), ("document", True), ("query", False), ("query", True)):
        body = client.post("/v1/token_count", json={"texts": TEXTS, "kind": kind, "include_extension": ext}).json()
        assert body["total"] == model.token_count(TEXTS, is_doc=kind == "document", include_extension=ext)
        assert body["n_tokens"] == [model.token_count([t], is_doc=kind == "document", include_extension=ext)
                                    for t in TEXTS]


def test_model_health_ready_openapi(client):
    info = client.get("/v1/model").json()
    assert info["model"] == "lightcol/tiny-colbert" and info["dim"] == 16
    assert info["query_length"] == 32 and info["document_length"] == 64 and info["index"] is None
    assert info["limits"] == {"max_body_bytes": 200000, "max_texts": 40, "max_chars": 5000}
    assert info["batching"] is True and info["max_queue"] == 64
    assert info["max_batch_tokens"] == 1024  # no --max-batch-tokens: the model's tokens per call
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    doc = client.get("/openapi.json").json()
    routes = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert routes >= {("POST", "/v1/embed"), ("POST", "/v1/rerank"), ("POST", "/v1/search"), ("POST", "/v1/documents"),
                      ("DELETE", "/v1/documents"), ("POST", "/v1/token_count"), ("GET", "/v1/model"),
                      ("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics")}
    embed = doc["paths"]["/v1/embed"]["post"]
    assert embed["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/EmbedRequest")
    schemas = doc["components"]["schemas"]
    assert set(schemas["EmbedRequest"]["properties"]) == {"texts", "kind", "encoding"}
    assert set(schemas["EmbedResponse"]["properties"]) == {"model", "dim", "embeddings", "n_tokens"}
    assert set(schemas["SearchRequest"]["properties"]) == {"query", "k", "where", "by_document", "mode", "alpha", "fusion", "highlights"}
    assert {"422", "413", "503"} <= set(embed["responses"])


# -- bad input -----------------------------------------------------------------------------------

def test_malformed_json_and_wrong_shapes(client):
    assert "not valid JSON" in error(client.post("/v1/embed", content=b'{"texts": ['), 400, "ArgumentError")
    assert "not UTF-8" in error(client.post("/v1/embed", content=b'{"texts": ["\xff"]}'), 400, "ArgumentError")
    assert "must be a JSON object, got an array" in error(client.post("/v1/embed", json=["x"]), 400, "ArgumentError")
    msg = error(client.post("/v1/embed", json={"texts": ["a"], "colour": "red"}), 422, "ArgumentError")
    assert "unknown field(s) 'colour'" in msg and "'texts', 'kind', 'encoding'" in msg
    assert "needs the field(s) 'texts'" in error(client.post("/v1/embed", json={}), 422, "ArgumentError")
    # the library's own messages
    assert error(client.post("/v1/embed", json={"texts": ["a", 3]}), 422, "ArgumentError") == \
        "item 1 is int, not str; every text must be a str"
    msg = error(client.post("/v1/embed", content=b'{"texts": ["ok", "bad \\ud800"]}',
                            headers={"content-type": "application/json"}), 422, "InvalidTextError")
    assert msg.startswith("item 1 holds the lone surrogate")
    assert "wrap one text in a list" in error(client.post("/v1/embed", json={"texts": "a"}), 422, "ArgumentError")
    assert "kind must be one of 'document', 'query'" in error(
        client.post("/v1/embed", json={"texts": ["a"], "kind": "passage"}), 422, "ArgumentError")
    assert "encoding must be one of" in error(
        client.post("/v1/embed", json={"texts": ["a"], "encoding": "int8"}), 422, "ArgumentError")
    assert error(client.post("/v1/rerank", json={"query": "q", "documents": ["a"], "top_n": -1}), 422,
                 "ArgumentError") == "top_n must be an int >= 0, got -1."
    assert error(client.post("/v1/rerank", json={"query": "q", "documents": ["a"], "top_n": 1.5}), 422,
                 "ArgumentError") == "top_n must be an int, got 1.5 (float)."
    assert "query must be a str" in error(client.post("/v1/rerank", json={"query": 5, "documents": []}), 422,
                                          "ArgumentError")
    assert "include_extension must be true or false" in error(
        client.post("/v1/token_count", json={"texts": [], "include_extension": "yes"}), 422, "ArgumentError")
    error(client.get("/v1/nothing"), 404, "NotFound")
    error(client.get("/v1/embed"), 405, "MethodNotAllowed")
    assert client.get("/health").status_code == 200  # the server goes on


def test_limits(client):
    msg = error(client.post("/v1/embed", json={"texts": ["a"] * 41}), 413, "LimitExceeded")
    assert "holds 41 texts" in msg and "at most 40" in msg and "--max-texts" in msg
    msg = error(client.post("/v1/embed", json={"texts": ["a", "b" * 5001]}), 413, "LimitExceeded")
    assert "texts[1] has 5001 characters" in msg and "--max-chars" in msg
    assert "--max-chars" in error(client.post("/v1/rerank", json={"query": "q" * 5001, "documents": []}), 413,
                                  "LimitExceeded")
    body = json.dumps({"texts": ["word " * 1100] * 40}).encode()
    assert len(body) > 200000
    assert "--max-body-bytes" in error(client.post("/v1/embed", content=body), 413, "LimitExceeded")

    def chunks():  # no Content-Length: the limit holds while streaming
        yield b'{"texts": ['
        for _ in range(300):
            yield b'"' + b"x" * 1000 + b'",'
        yield b'"x"]}'

    assert "--max-body-bytes" in error(client.post("/v1/embed", content=chunks()), 413, "LimitExceeded")
    assert client.post("/v1/embed", json={"texts": ["a"] * 40}).status_code == 200


def test_no_index(client):
    assert "--index PATH" in error(client.post("/v1/search", json={"query": "q"}), 400, "Unsupported")
    assert "--index PATH" in error(client.post("/v1/documents", json={"texts": ["a"]}), 400, "Unsupported")
    assert "--index PATH" in error(client.request("DELETE", "/v1/documents", json={"ids": [1]}), 400, "Unsupported")


def test_metrics_prometheus_text(client):
    client.post("/v1/embed", json={"texts": ["metrics"]})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    for name, kind in (("lightcol_requests_total", "counter"), ("lightcol_request_duration_seconds", "histogram"),
                       ("lightcol_batch_size", "histogram"), ("lightcol_batch_tokens", "histogram"),
                       ("lightcol_queue_depth", "gauge"), ("lightcol_requests_in_flight", "gauge"),
                       ("lightcol_texts_total", "counter")):
        assert f"# TYPE {name} {kind}\n" in text
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples['lightcol_requests_total{endpoint="embed",status="200"}']) >= 1
    assert float(samples['lightcol_requests_total{endpoint="embed",status="422"}']) >= 1
    assert samples["lightcol_queue_depth"] == "0"
    assert float(samples['lightcol_request_duration_seconds_count{endpoint="embed"}']) >= 1
    assert samples['lightcol_batch_size_bucket{kind="document",le="+Inf"}'] == \
        samples['lightcol_batch_size_count{kind="document"}']
    assert samples['lightcol_model_info{model="lightcol/tiny-colbert",dim="16",variant="float32"}'] == "1"


# -- authentication ------------------------------------------------------------------------------

def test_api_key(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# service keys\nfirst-key-0123456789abcdef\n\nsecond-key-0123456789abcdef\n")
    s = Subprocess("--model-path", str(ONNX_DIR), "--api-key-file", str(keys), "--max-body-bytes", "50000")
    try:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            assert "Bearer" in error(c.post("/v1/embed", json={"texts": ["a"]}), 401, "Unauthorized")
            r = c.post("/v1/embed", json={"texts": ["a"]}, headers={"Authorization": "Bearer wrong-key-0123456789"})
            error(r, 401, "Unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
            error(c.post("/v1/embed", json={"texts": ["a"]}, headers={"Authorization": "Basic first-key-0123456789abcdef"}),
                  401, "Unauthorized")
            error(c.get("/metrics"), 401, "Unauthorized")
            error(c.get("/v1/model"), 401, "Unauthorized")
            for key in ("first-key-0123456789abcdef", "second-key-0123456789abcdef"):
                h = {"Authorization": f"Bearer {key}"}
                assert c.post("/v1/embed", json={"texts": ["a"]}, headers=h).status_code == 200
                assert c.get("/metrics", headers=h).status_code == 200
            assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200  # probes stay open
            assert c.get("/openapi.json").json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
            # 401 before the body is read: a huge unauthenticated body gets 401, not 413
            error(c.post("/v1/embed", content=b"x" * 60000), 401, "Unauthorized")
    finally:
        assert s.stop() == 0, s.log


def run_cli(capsys, *args: str) -> tuple[int, str]:
    from lightcol.cli import main

    code = main(["serve", *args])
    return code, capsys.readouterr().err


def test_refuses_unauthenticated_on_a_public_address(tmp_path, capsys):
    code, err = run_cli(capsys, "--model-path", str(ONNX_DIR), "--host", "0.0.0.0")
    assert code == 2
    assert "refusing to serve without authentication on --host 0.0.0.0" in err
    assert "--api-key-file" in err and "--allow-unauthenticated" in err
    short = tmp_path / "short"
    short.write_text("abc\n")
    code, err = run_cli(capsys, "--model-path", str(ONNX_DIR), "--api-key-file", str(short))
    assert code == 2 and "at least 16 characters" in err
    code, err = run_cli(capsys, "--model-path", str(ONNX_DIR), "--api-key-file", str(tmp_path / "missing"))
    assert code == 2 and "--api-key-file" in err
    code, err = run_cli(capsys, "--model-path", str(ONNX_DIR), "--max-texts", "10", "--max-queue", "5")
    assert code == 2 and "--max-texts (10) must be at most --max-queue (5)" in err
    code, err = run_cli(capsys)
    assert code == 2 and "give --model NAME or --model-path DIR" in err


def test_loopback_detection():
    from lightcol.serve.server import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.1.2.3")


def test_missing_extra_is_named():
    code = ("import sys; sys.modules['fastapi'] = None\n"
            "from lightcol.cli import main\n"
            f"sys.exit(main(['serve', '--model-path', {str(ONNX_DIR)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1
    assert "pip install 'lightcol[serve]'" in r.stderr and "'fastapi'" in r.stderr
    code = ("import sys; sys.modules['fastapi'] = None\nimport lightcol.serve\n"
            "try:\n    lightcol.serve.create_app\nexcept ImportError as e:\n    print(e)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "lightcol[serve]" in r.stdout, r.stderr


def test_import_lightcol_imports_no_web_stack():
    code = ("import sys, lightcol, lightcol.cli\nlightcol.cli._parser()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'uvicorn', 'pydantic', "
            "'httpx', 'anyio') or m in ('lightcol.serve.app', 'lightcol.serve.service')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# -- indexes -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus():
    return random_texts(60, seed=21, max_words=80)


def test_search_an_index(tmp_path_factory, model, corpus):
    path = tmp_path_factory.mktemp("index") / "docs.lci"
    ids = [f"d{i}" for i in range(len(corpus))]
    index = Index.build(path, ids, model.embed(corpus), model=model, nbits=2, n_centroids=32, show_progress=False)
    s = Subprocess("--index", str(path), "--model-path", str(ONNX_DIR))
    try:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            for query in corpus[:5] + ["retrieval evaluation"]:
                r = c.post("/v1/search", json={"query": query, "k": 7})
                assert r.status_code == 200, r.text
                want = index.search(next(model.query_embed(query)), 7)
                assert [(x["id"], x["score"]) for x in r.json()["results"]] == [(i, pytest.approx(v, abs=1e-6))
                                                                                 for i, v in want]
            assert "need a DocumentIndex" in error(c.post("/v1/search", json={"query": "q", "where": {"a": 1}}), 400,
                                                   "Unsupported")
            assert "needs a DocumentIndex" in error(c.post("/v1/documents", json={"texts": ["a"]}), 400, "Unsupported")
            assert error(c.post("/v1/search", json={"query": "q", "k": 0}), 422, "ArgumentError") == \
                "k must be an int >= 1, got 0."
            info = c.get("/v1/model").json()["index"]
            assert info["type"] == "Index" and info["documents"] == 60
    finally:
        assert s.stop() == 0, s.log


def test_document_index_search_add_delete(tmp_path_factory, model, corpus):
    folder = tmp_path_factory.mktemp("docindex") / "docs"
    meta = [{"n": i, "even": i % 2 == 0} for i in range(30)]
    DocumentIndex.create(folder, model, texts=corpus[:30], document_ids=list(range(30)), metadata=meta).close()
    s = Subprocess("--index", str(folder))  # the model recorded in the index
    try:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            ref = DocumentIndex.open(folder, model=model)
            query = corpus[3]
            r = c.post("/v1/search", json={"query": query, "k": 5})  # the library's default mode (hybrid)
            assert r.status_code == 200, r.text
            got = r.json()["results"]
            want = ref.search(query, 5)
            assert [{k: v for k, v in g.items() if k != "id"} for g in got] == json.loads(json.dumps(want))
            assert [g["id"] for g in got] == [w["document_id"] for w in want]
            r = c.post("/v1/search", json={"query": query, "k": 5, "mode": "maxsim"})
            assert r.status_code == 200, r.text
            got = r.json()["results"]
            want = ref.search(query, 5, mode="maxsim")
            assert [{k: v for k, v in g.items() if k != "id"} for g in got] == json.loads(json.dumps(want))
            assert [g["id"] for g in got] == [w["document_id"] for w in want] and got[0]["id"] == 3
            r = c.post("/v1/search", json={"query": query, "k": 3, "mode": "hybrid", "alpha": 0.25, "fusion": "rrf"})
            assert r.status_code == 200, r.text
            want = ref.search(query, 3, mode="hybrid", alpha=0.25, fusion="rrf")
            assert [g["id"] for g in r.json()["results"]] == [w["document_id"] for w in want]
            r = c.post("/v1/search", json={"query": query, "k": 3, "mode": "bm42"})
            assert r.status_code == 422, r.text
            assert got[0]["metadata"] == {"n": 3, "even": False}
            by_doc = c.post("/v1/search", json={"query": query, "k": 5, "by_document": True}).json()["results"]
            assert [g["document_id"] for g in by_doc] == [w["document_id"] for w in ref.search(query, 5, True)]

            # add: single writer, concurrent additions all land
            def add(i):
                return c.post("/v1/documents", json={"texts": [corpus[30 + i]], "ids": [f"new{i}"],
                                                     "metadata": [{"batch": i}]})

            with ThreadPoolExecutor(4) as pool:
                responses = list(pool.map(add, range(8)))
            assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
            assert [r.json()["ids"] for r in responses] == [[f"new{i}"] for i in range(8)]
            assert c.get("/v1/model").json()["index"]["documents"] == 38
            hit = c.post("/v1/search", json={"query": corpus[35], "k": 1, "mode": "maxsim"}).json()["results"][0]
            assert hit["id"] == "new5" and hit["metadata"] == {"batch": 5} and hit["content"] == corpus[35]
            r = c.post("/v1/documents", json={"texts": [corpus[40], corpus[41]]})  # ids from the text
            assert r.status_code == 200 and r.json()["documents"] == 40
            msg = error(c.post("/v1/documents", json={"texts": [corpus[40]]}), 409, "DuplicateIdError")
            assert "already in the index" in msg
            error(c.post("/v1/documents", json={"texts": ["x"], "ids": [True]}), 422, "ArgumentError")
            assert "got 1 texts but 2 ids" in error(c.post("/v1/documents", json={"texts": ["x"], "ids": [1, 2]}), 422,
                                                    "ArgumentError")
            # delete
            r = c.request("DELETE", "/v1/documents", json={"ids": ["new5", 3]})
            assert r.status_code == 200 and r.json() == {"deleted": ["new5", 3], "documents": 38}
            assert all(h["id"] != "new5" for h in
                       c.post("/v1/search", json={"query": corpus[35], "k": 40}).json()["results"])
            msg = error(c.request("DELETE", "/v1/documents", json={"ids": ["new5", 4]}), 404, "ArgumentError")
            assert "not in the index; nothing was deleted" in msg
            assert c.get("/v1/model").json()["index"]["documents"] == 38
            ref.close()
            reopened = DocumentIndex.open(folder, model=model)
            assert len(reopened) == 38 and "new5" not in reopened and 4 in reopened
            reopened.close()
            if "where" not in inspect.signature(DocumentIndex.search).parameters:
                assert "does not support where filters" in error(
                    c.post("/v1/search", json={"query": "q", "where": {"even": True}}), 400, "Unsupported")
            assert "where must be a JSON object" in error(c.post("/v1/search", json={"query": "q", "where": [1]}), 422,
                                                          "ArgumentError")
    finally:
        assert s.stop() == 0, s.log


def test_where_is_passed_to_document_index_search(tmp_path, model, corpus):
    from lightcol.serve import ServeConfig, create_app

    class Filtering(DocumentIndex):
        def search(self, query, k=10, by_document=False, where=None):
            results = super().search(query, 40, by_document)
            keep = [r for r in results if where is None or all(r.get("metadata", {}).get(f) == v
                                                                for f, v in where.items())]
            return keep[:k]

    DocumentIndex.create(tmp_path / "d", model, texts=corpus[:20],
                         metadata=[{"even": i % 2 == 0} for i in range(20)]).close()
    index = Filtering.open(tmp_path / "d", model=model)
    server = InThread(create_app(model, index, ServeConfig()))
    try:
        r = httpx.post(server.url + "/v1/search", json={"query": corpus[1], "k": 4, "where": {"even": True}})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert len(results) == 4 and all(x["metadata"] == {"even": True} for x in results)
    finally:
        server.stop()
        index.close()


# -- isolation, overload, shutdown (a model whose calls the test holds or breaks) -----------------

class Held:
    """The tiny model, whose ONNX calls wait for ``gate`` and fail on a text holding 'explode'."""

    def __init__(self, model) -> None:
        self._model = model
        self.gate = threading.Event()
        self.gate.set()
        self.calls = threading.Semaphore(0)
        self.explode = model._tokenize(["explode"], True)[0][1]

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _encode(self, ids, is_doc, dtype=np.float32):
        self.calls.release()
        assert self.gate.wait(30)
        if any(self.explode in s for s in ids):
            raise FloatingPointError("this text breaks the model")
        return self._model._encode(ids, is_doc, dtype)


def test_an_exception_fails_only_its_request(model):
    from lightcol.serve import ServeConfig, create_app

    held = Held(model)
    server = InThread(create_app(held, None, ServeConfig()))
    try:
        held.gate.clear()
        with httpx.Client(base_url=server.url, timeout=30) as c, ThreadPoolExecutor(8) as pool:
            first = pool.submit(c.post, "/v1/embed", json={"texts": ["warm"]})
            assert held.calls.acquire(timeout=10)  # the first call is running: the next ones queue up together
            texts = [["fine text one"], ["please explode now", "and this"], ["fine text two"], ["x y z"]]
            futures = [pool.submit(c.post, "/v1/embed", json={"texts": t, "encoding": "base64"}) for t in texts]
            time.sleep(0.3)
            held.gate.set()
            assert first.result().status_code == 200
            responses = [f.result() for f in futures]
            msg = error(responses[1], 500, "FloatingPointError")
            assert msg == "this text breaks the model"
            for i in (0, 2, 3):
                assert responses[i].status_code == 200
                assert_same([b64(e) for e in responses[i].json()["embeddings"]], list(model.embed(texts[i])))
            assert c.post("/v1/embed", json={"texts": ["after"]}).status_code == 200
            assert 'endpoint="embed",status="500"} 1' in c.get("/metrics").text
    finally:
        held.gate.set()
        server.stop()


def test_full_queue_answers_503_with_retry_after(model):
    from lightcol.serve import Limits, ServeConfig, create_app

    held = Held(model)
    server = InThread(create_app(held, None, ServeConfig(max_queue=6, limits=Limits(max_texts=4))))
    try:
        held.gate.clear()
        with httpx.Client(base_url=server.url, timeout=30) as c, ThreadPoolExecutor(8) as pool:
            running = pool.submit(c.post, "/v1/embed", json={"texts": ["a"]})
            assert held.calls.acquire(timeout=10)
            waiting = pool.submit(c.post, "/v1/embed", json={"texts": ["b", "c", "d", "e"]})
            deadline = time.monotonic() + 10
            while 'lightcol_queue_depth 4' not in c.get("/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            r = c.post("/v1/embed", json={"texts": ["f", "g", "h"]})
            msg = error(r, 503, "QueueFull")
            assert int(r.headers["retry-after"]) >= 1 and "at most 6 may wait" in msg
            assert error(c.post("/v1/rerank", json={"query": "q", "documents": ["1", "2", "3"]}), 503, "QueueFull")
            assert 'lightcol_queue_depth 4' in c.get("/metrics").text  # nothing of the refused requests queued
            fits = pool.submit(c.post, "/v1/embed", json={"texts": ["fits", "too"]})  # 4 + 2 <= 6: admitted
            while 'lightcol_queue_depth 6' not in c.get("/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            held.gate.set()
            assert running.result().status_code == 200 and waiting.result().status_code == 200
            assert fits.result().status_code == 200
            assert c.post("/v1/embed", json={"texts": ["f", "g", "h"]}).status_code == 200
    finally:
        held.gate.set()
        server.stop()


def test_shutdown_finishes_the_request_in_flight(model):
    from lightcol.serve import ServeConfig, create_app

    held = Held(model)
    app = create_app(held, None, ServeConfig())
    server = InThread(app)
    held.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        texts = ["finish me", "and me too"]
        inflight = pool.submit(httpx.post, server.url + "/v1/embed", json={"texts": texts, "encoding": "base64"},
                               timeout=30)
        assert held.calls.acquire(timeout=10)
        stopper = pool.submit(server.stop)  # what SIGTERM does
        time.sleep(0.5)
        assert not stopper.done()  # waiting for the request in flight
        with pytest.raises(httpx.TransportError):  # no new connections meanwhile
            httpx.get(server.url + "/health", timeout=2)
        held.gate.set()
        r = inflight.result(30)
        stopper.result(30)
    assert r.status_code == 200
    assert_same([b64(e) for e in r.json()["embeddings"]], list(model.embed(texts)))
    assert not server.thread.is_alive()
    assert app.state.service.batcher.closed


def test_tokens_per_call_default_to_the_models(model):
    from lightcol import LateInteractionTextEmbedding
    from lightcol.serve import ServeConfig
    from lightcol.serve.service import Service

    wide = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, threads=1)
    wide.batch_tokens = 512  # as a hidden-768 encoder gets (embedding.batch_tokens_for)
    for m, config, want in ((model, ServeConfig(), model.batch_tokens), (wide, ServeConfig(), 512),
                            (wide, ServeConfig(max_batch_tokens=300), 300)):
        service = Service(m, None, config)
        try:
            assert service.batcher.max_batch_tokens == want
            assert service.model_info()["max_batch_tokens"] == want
        finally:
            service.close()
