"""Every CLI message names CLI flags, every API message the arguments the caller passed."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

import lightcol
from lightcol import DocumentIndex, Index
from lightcol.cli import in_cli_terms, main

from conftest import ONNX_DIR, unit_rows

ROOT = Path(__file__).resolve().parent.parent
#: Python advice: ``overwrite=True``, ``specific_model_path=FOLDER``, ``token=...``, ``model_name=``
PYTHON_ADVICE = re.compile(r"\b[a-z_]+=(True|False|\.\.\.|[A-Z]{2,}\b|\s|$|[0-9])")


def _err(capsys: pytest.CaptureFixture[str], argv: list[str], code: int) -> str:
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert not PYTHON_ADVICE.search(err), err
    return err


def _docs(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"text number {i} about retrieval"}) + "\n"
                            for i in range(3)))
    return path


def test_search_of_an_index_of_an_unregistered_model_names_model_path(tmp_path: Path, capsys) -> None:
    """An index built from vectors of a model folder records only its name (as from --parquet)."""
    rng = np.random.default_rng(0)
    ix = tmp_path / "v.index"
    Index.build(ix, ["a", "b"], [unit_rows(rng, 4, 16), unit_rows(rng, 5, 16)], model="lightcol/tiny-colbert",
                n_centroids=2, show_progress=False)
    err = _err(capsys, ["index", "search", str(ix), "a query"], 2)
    assert "pass --model-path DIR" in err and "specific_model_path" not in err


def test_rebuilding_a_document_index_names_overwrite(tmp_path: Path, capsys) -> None:
    docs, ix = _docs(tmp_path), str(tmp_path / "di")
    build = ["index", "build", ix, "--documents", str(docs), "--model-path", str(ONNX_DIR), "-q"]
    assert main(build) == 0
    err = _err(capsys, build, 1)
    assert "already holds a document index" in err and "--overwrite" in err and "DocumentIndex" not in err
    assert main([*build, "--overwrite"]) == 0


def test_max_document_length_is_named_as_passed(tmp_path: Path, capsys, model) -> None:
    docs = _docs(tmp_path)
    err = _err(capsys, ["index", "build", str(tmp_path / "a"), "--documents", str(docs), "--model-path", str(ONNX_DIR),
                        "-q", "--max-document-length", "180"], 1)
    assert "--max-document-length 180 exceeds the model's document length (64 tokens)" in err
    assert "--max-document-length 64 or less" in err and "max_tokens" not in err
    err = _err(capsys, ["index", "build", str(tmp_path / "b"), "--documents", str(docs), "--model-path", str(ONNX_DIR),
                        "-q", "--no-split", "--overlap-tokens", "2"], 2)
    assert "--overlap-tokens" in err and "--no-split" in err
    with pytest.raises(lightcol.ArgumentError, match=r"max_document_length=180 exceeds .* max_document_length=64") as e:
        DocumentIndex.create(tmp_path / "c", model, max_document_length=180)
    assert "max_tokens" not in str(e.value)
    with pytest.raises(lightcol.ArgumentError, match="max_document_length must be an int >= 4, got 2"):
        DocumentIndex.create(tmp_path / "c", model, max_document_length=2)


def test_search_help_names_its_flags(capsys) -> None:
    assert main(["index", "search", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--queries-file" in text and not re.search(r"--queries(?!-file)", text)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["embed", "x.txt", "-o", "out", "--model-path", "m", "--batch-size", "0"], "--batch-size"),
        (["embed", "x.txt", "-o", "out", "--model-path", "m", "--parallel", "-1"], "--parallel"),
        (["embed", "x.txt", "-o", "out", "--model-path", "m", "--threads", "0"], "--threads"),
        (["embed", "x.txt", "-o", "out", "--model-path", "m", "--pool-factor", "0"], "--pool-factor"),
        (["embed", "x.txt", "-o", "out", "--model-path", "m", "--protected-tokens", "-1"], "--protected-tokens"),
        (["embed", "x.txt", "-o", "out", "--model-path", "m", "--shard-size", "0"], "--shard-size"),
        (["embed", "x.txt", "-o", "out", "--model-path", "m", "--ray-actors", "0"], "--ray-actors"),
        (["index", "build", "i", "--jsonl", "x", "--model-path", "m", "--batch-size", "0"], "--batch-size"),
        (["index", "build", "i", "--jsonl", "x", "--model-path", "m", "--centroids", "0"], "--centroids"),
        (["index", "build", "i", "--jsonl", "x", "--model-path", "m", "--threads", "-1"], "--threads"),
        (["index", "build", "i", "--documents", "x", "--model-path", "m", "--max-document-length", "0"],
         "--max-document-length"),
        (["index", "build", "i", "--documents", "x", "--model-path", "m", "--overlap-tokens", "-1"], "--overlap-tokens"),
        (["index", "search", "i", "q", "-k", "0"], "-k"),
        (["index", "search", "i", "q", "--threads", "x"], "--threads"),
    ],
)
def test_bad_numbers_name_the_flag(capsys, argv: list[str], flag: str) -> None:
    err = _err(capsys, argv, 2)
    assert f"argument {flag}" in err and ("must be an int >=" in err or "expected an int" in err)


def test_embed_option_conflicts_name_flags(tmp_path: Path, capsys) -> None:
    docs = _docs(tmp_path)
    pytest.importorskip("pyarrow")
    err = _err(capsys, ["embed", str(docs), "-o", str(tmp_path / "o"), "--model-path", str(ONNX_DIR), "--queries",
                        "--pool-factor", "2"], 2)
    assert "--pool-factor applies to documents, not to --queries" in err
    err = _err(capsys, ["embed", str(docs), "-o", str(tmp_path / "o"), "--model-path", str(ONNX_DIR),
                        "--muvera", str(tmp_path / "missing.npz")], 2)
    assert "--muvera must be" in err


def test_folder_without_rules_names_model_flag(tmp_path: Path, capsys) -> None:
    err = _err(capsys, ["index", "search", str(tmp_path), "q", "--model-path", str(tmp_path)], 1)
    assert "--model NAME" in err or "no document index" in err
    err = _err(capsys, ["index", "build", str(tmp_path / "x.index"), "--jsonl", str(_docs(tmp_path)), "--model-path",
                        str(tmp_path), "-q"], 1)
    assert "has no lightcol_config.json; pass --model NAME" in err


def test_exact_without_full_vectors_names_keep_full(tmp_path: Path, capsys) -> None:
    ix = str(tmp_path / "j.index")
    assert main(["index", "build", ix, "--jsonl", str(_docs(tmp_path)), "--model-path", str(ONNX_DIR), "-q"]) == 0
    err = _err(capsys, ["index", "search", ix, "q", "--exact"], 1)
    assert "--exact needs full-precision vectors" in err and "--keep-full" in err
    err = _err(capsys, ["index", "search", str(tmp_path / "nope.index"), "q"], 1)
    assert "no index file or document index folder" in err and "lightcol index build" in err


def test_download_messages(tmp_path: Path, capsys) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    err = _err(capsys, ["download", "colbert-ir/colbertv2.0", "--to", str(tmp_path / "full")], 1)
    assert "not empty" in err and "pass --force" in err
    err = _err(capsys, ["download", "no/such-model"], 2)
    assert "specific_model_path" not in err


def test_library_advice_in_cli_terms() -> None:
    """The translation the CLI applies to library messages, for a command with and without each flag."""
    import argparse

    full = argparse.Namespace(model_path=None, model=None, overwrite=False, force=False, token=None, cache_dir=None,
                              to=None, max_document_length=None, overlap_tokens=0, no_split=False, exact=False)
    bare = argparse.Namespace()
    cases = [
        ("For a folder, pass specific_model_path=FOLDER.", "For a folder, pass --model-path DIR.",
         "For a folder, pass the folder."),
        ("or pass overwrite=True to replace it.", "or pass --overwrite to replace it.", None),
        ("Set HF_TOKEN or pass token=... with a token.", "Set HF_TOKEN or pass --token TOKEN with a token.",
         "Set HF_TOKEN  with a token."),
        ("(HF_TOKEN or token=...).", "(HF_TOKEN or --token TOKEN).", "(HF_TOKEN)."),
        ("set LIGHTCOL_CACHE_PATH or pass cache_dir= to a folder", "set LIGHTCOL_CACHE_PATH or pass --cache-dir DIR "
         "to a folder", "set LIGHTCOL_CACHE_PATH  to a folder"),
        ("max_document_length=180 exceeds", "--max-document-length 180 exceeds", None),
        ("rebuild it with keep_full=True.", None, "rebuild it with 'lightcol index build --keep-full'."),
        ("apply to split documents; set split_documents=True.", "apply to split documents; leave out --no-split.",
         None),
        ("the destination folder to='' is empty", "the destination folder --to '' is empty", None),
        ("keeps some_other=True as it is", "keeps some_other=True as it is", None),
    ]
    for message, with_flags, without in cases:
        if with_flags is not None:
            assert in_cli_terms(message, full) == with_flags
        if without is not None:
            assert in_cli_terms(message, bare) == without


def _error_strings(path: Path) -> list[tuple[int, str]]:
    """Literal text of each ``SomethingError(...)`` / ``UsageError(...)`` call's first argument in a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and node.args:
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name.endswith("Error"):
                parts = [n.value for n in ast.walk(node.args[0]) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                out.append((node.lineno, "".join(parts)))
    return out


@pytest.mark.parametrize("module", sorted([*(ROOT / "lightcol" / "cli").glob("*.py"), ROOT / "lightcol" / "embed_job.py"]),
                         ids=lambda p: p.name)
def test_cli_modules_raise_no_python_advice(module: Path) -> None:
    bad = [(line, text) for line, text in _error_strings(module)
           if PYTHON_ADVICE.search(text) or re.search(r"\b(DocumentIndex|Index|MultiVectorCollection)\.\w+", text)]
    assert not bad, f"{module.name}: messages with Python advice (use the CLI flags): {bad}"
