"""``lightcol index build`` / ``lightcol index search``: JSONL in, JSON lines out, one-line errors."""

from __future__ import annotations

import dataclasses
import json

from conftest import ONNX_DIR, model_with_rules, random_texts

from lightcol import Index
from lightcol.cli import main


def _write_jsonl(path, n=60):
    with open(path, "w", encoding="utf-8") as f:
        for i, t in enumerate(random_texts(n, seed=9, max_words=30)):
            f.write(json.dumps({"id": f"doc{i}", "text": t}) + "\n")


def test_build_then_search(tmp_path, capsys, model):
    _write_jsonl(tmp_path / "docs.jsonl")
    ix = str(tmp_path / "docs.lci")
    assert main(["index", "build", ix, "--jsonl", str(tmp_path / "docs.jsonl"), "--model-path", str(ONNX_DIR),
                 "--nbits", "4", "-q"]) == 0
    assert "60 documents" in capsys.readouterr().out
    index = Index.open(ix)
    assert index.ids == [f"doc{i}" for i in range(60)] and index.nbits == 4
    assert index.model == model.model_name and index.meta["model_path"] == str(ONNX_DIR)
    # the model comes from the index's metadata
    assert main(["index", "search", ix, "first query", "second query", "-k", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [x["query"] for x in lines] == ["first query", "second query"]
    q = next(iter(model.query_embed(["first query"])))
    assert [r["id"] for r in lines[0]["results"]] == [d for d, _ in index.search(q, 3)]
    assert index.rules == dataclasses.asdict(model.spec.rules) and index.dim == model.dim  # recorded at build


def test_search_refuses_a_model_with_other_rules(tmp_path, capsys):
    """The index records the encoding rules; a query model whose rules differ (same name) is refused."""
    _write_jsonl(tmp_path / "docs.jsonl", n=20)
    ix = str(tmp_path / "docs.lci")
    assert main(["index", "build", ix, "--jsonl", str(tmp_path / "docs.jsonl"), "--model-path", str(ONNX_DIR), "-q"]) == 0
    other = model_with_rules(tmp_path / "other-model", query_length=16)
    capsys.readouterr()
    assert main(["index", "search", ix, "a query", "--model-path", str(other)]) == 2
    err = capsys.readouterr().err
    assert "other encoding rules" in err and "query_length" in err and len(err.strip().splitlines()) == 1
    model_with_rules(other, query_length=32, document_length=64)  # document length only: searchable
    assert main(["index", "search", ix, "a query", "--model-path", str(other)]) == 0


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "ok"}\nnot json\n')
    ix = str(tmp_path / "x.lci")
    assert main(["index", "build", ix, "--jsonl", str(bad), "--model-path", str(ONNX_DIR), "-q"]) == 2
    assert "bad.jsonl:2: not JSON" in capsys.readouterr().err
    (tmp_path / "junk.lci").write_bytes(b"junk" * 10)
    assert main(["index", "search", str(tmp_path / "junk.lci"), "q", "--model-path", str(ONNX_DIR)]) == 1
    err = capsys.readouterr().err
    assert "not a lightcol index" in err and len(err.strip().splitlines()) == 1


def test_documents_build_then_search(tmp_path, capsys, model):
    from lightcol import DocumentIndex

    texts = random_texts(20, seed=11, max_words=120)
    with open(tmp_path / "docs.jsonl", "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"key": f"k{i}", "body": t, "meta": {"n": i}}) + "\n")
    ix = str(tmp_path / "docs-index")
    assert main(["index", "build", ix, "--documents", str(tmp_path / "docs.jsonl"), "--model-path", str(ONNX_DIR),
                 "--id-field", "key", "--text-field", "body", "--metadata-field", "meta",
                 "--max-document-length", "24", "--backend", "collection", "-q"]) == 0
    assert "20 documents" in capsys.readouterr().out
    index = DocumentIndex.open(ix)
    assert index.document_ids == [f"k{i}" for i in range(20)] and index.max_tokens == 24
    assert index.n_passages > 20
    assert main(["index", "search", ix, "first query", "second query", "-k", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [x["query"] for x in lines] == ["first query", "second query"]
    assert lines[0]["results"] == index.search("first query", k=3)
    assert lines[0]["results"][0]["document_metadata"] == {"n": int(lines[0]["results"][0]["document_id"][1:])}
    assert main(["index", "search", ix, "first query", "-k", "4", "--by-document"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["results"] == index.search("first query", k=4, by_document=True)
    # without ids: generated from the text; a second build into the same folder needs --overwrite
    with open(tmp_path / "noid.jsonl", "w", encoding="utf-8") as f:
        f.write(json.dumps({"text": texts[0]}) + "\n")
    args = ["index", "build", ix, "--documents", str(tmp_path / "noid.jsonl"), "--model-path", str(ONNX_DIR), "-q"]
    assert main(args) == 1
    assert "overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    from lightcol.document_index import document_id_for

    assert DocumentIndex.open(ix).document_ids == [document_id_for(texts[0])]


def test_build_from_embed_parquet(tmp_path, capsys, model):
    _write_jsonl(tmp_path / "docs.jsonl")
    out = tmp_path / "vectors"
    assert main(["embed", str(tmp_path / "docs.jsonl"), "-o", str(out), "--model-path", str(ONNX_DIR),
                 "--dtype", "float32", "-q"]) == 0
    ix = str(tmp_path / "from-parquet.lci")
    assert main(["index", "build", ix, "--parquet", str(out), "-q"]) == 0
    assert "60 documents" in capsys.readouterr().out
    index = Index.open(ix)
    texts = [json.loads(line)["text"] for line in (tmp_path / "docs.jsonl").read_text().splitlines()]
    same = Index.build(tmp_path / "in-process.lci", [f"doc{i}" for i in range(60)], model.embed(texts),
                       model=model.model_name)
    assert index.ids == same.ids and index.model == model.model_name
    assert index.rules == dataclasses.asdict(model.spec.rules)  # from the Parquet files' metadata
    q = next(iter(model.query_embed(["first query"])))
    assert index.search(q, 5) == same.search(q, 5)  # the vectors Parquet holds are the in-process ones
    assert main(["index", "search", ix, "first query", "-k", "5", "--model-path", str(ONNX_DIR)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in got["results"]] == [d for d, _ in same.search(q, 5)]
    queries = tmp_path / "queries"
    assert main(["embed", str(tmp_path / "docs.jsonl"), "-o", str(queries), "--model-path", str(ONNX_DIR),
                 "--queries", "-q"]) == 0
    assert main(["index", "build", str(tmp_path / "q.lci"), "--parquet", str(queries), "-q"]) == 2
    assert "query vectors" in capsys.readouterr().err
