"""Tokenization rules: exact ids, markers, truncation, padding, skiplist (no model needed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import ONNX_DIR
from lightcol import rules as R
from lightcol.errors import ModelLoadError
from lightcol.registry import read_folder_config

SPEC = read_folder_config(ONNX_DIR)
RULES = SPEC.rules  # query 32, document 64, markers 1/2, mask 103, pad 0
HELLO, WORLD, COMMA, BANG = 7592, 2088, 1010, 999


@pytest.fixture(scope="module")
def tok():
    return R.load_tokenizer(ONNX_DIR / "tokenizer.json", RULES)


def test_document_ids_marker_and_skiplist(tok) -> None:
    ids = R.tokenize(R.truncating(tok, RULES.document_length), ["Hello, world!", "hello"])
    b = R.build_documents(ids, RULES, R.skiplist_ids(tok, RULES))
    np.testing.assert_array_equal(b.input_ids[0], [101, 2, HELLO, COMMA, WORLD, BANG, 102])
    np.testing.assert_array_equal(b.input_ids[1], [101, 2, HELLO, 102, 0, 0, 0])
    np.testing.assert_array_equal(b.attention_mask[1], [1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(b.keep[0], [1, 1, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(b.keep[1], [1, 1, 1, 1, 0, 0, 0])
    no_skip = dataclasses.replace(RULES, skiplist=False)
    np.testing.assert_array_equal(R.skiplist_ids(tok, no_skip), [0])


def test_query_ids_expansion_and_attention(tok) -> None:
    ids = R.tokenize(R.truncating(tok, RULES.query_length), ["hello world"])
    q = R.build_queries(ids, RULES)
    assert q.input_ids.shape == (1, 32)
    np.testing.assert_array_equal(q.input_ids[0, :5], [101, 1, HELLO, WORLD, 102])
    assert (q.input_ids[0, 5:] == 103).all()
    np.testing.assert_array_equal(q.attention_mask[0], [1] * 5 + [0] * 27)
    attend = R.build_queries(ids, dataclasses.replace(RULES, attend_to_expansion_tokens=True))
    assert attend.attention_mask.all()


def test_truncation_counts_specials_and_marker(tok) -> None:
    long = "word " * 500
    d = R.tokenize(R.truncating(tok, RULES.document_length), [long])
    b = R.build_documents(d, RULES, R.skiplist_ids(tok, RULES))
    assert b.input_ids.shape == (1, 64) and b.input_ids[0, -1] == 102 and b.input_ids[0, 1] == 2
    q = R.build_queries(R.tokenize(R.truncating(tok, RULES.query_length), [long]), RULES)
    assert q.input_ids.shape == (1, 32) and q.input_ids[0, -1] == 102 and (q.input_ids != 103).all()


def test_empty_text_is_cls_marker_sep(tok) -> None:
    b = R.build_documents(R.tokenize(R.truncating(tok, 64), [""]), RULES, R.skiplist_ids(tok, RULES))
    np.testing.assert_array_equal(b.input_ids[0], [101, 2, 102])


def test_lowercasing_rule_is_enforced(tmp_path) -> None:
    import json

    data = json.loads((ONNX_DIR / "tokenizer.json").read_text())
    data["normalizer"] = None
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data))
    tok = R.load_tokenizer(path, RULES)  # rules say lowercase: the tokenizer is made to lowercase
    assert tok.encode("HELLO", add_special_tokens=False).ids == [HELLO]


def test_tokenizer_from_another_model_is_rejected(tmp_path) -> None:
    wrong = dataclasses.replace(RULES, mask_token=dataclasses.replace(RULES.mask_token, id=250001))
    with pytest.raises(ModelLoadError, match="another model's tokenizer"):
        R.load_tokenizer(ONNX_DIR / "tokenizer.json", wrong)
    (tmp_path / "tokenizer.json").write_text('{"truncated": ')
    with pytest.raises(ModelLoadError, match="could not be read"):
        R.load_tokenizer(tmp_path / "tokenizer.json", RULES)
    with pytest.raises(ModelLoadError, match="missing"):
        R.load_tokenizer(tmp_path / "nope.json", RULES)
