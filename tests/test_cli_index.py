"""``lightcol index build`` / ``lightcol index search``: JSONL in, JSON lines out, one-line errors."""

from __future__ import annotations

import json

from conftest import ONNX_DIR, random_texts

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
