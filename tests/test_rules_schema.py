"""The rules that differ between model families, as data: parsing, defaults for rows written before
a rule existed, resolution against the model's own tokenizer, and the ids and rows they give."""

from __future__ import annotations

import copy
import dataclasses
import json
import string

import numpy as np
import pytest

from conftest import ONNX_DIR
from lightcol import rules as R
from lightcol.errors import ModelLoadError, RegistryError
from lightcol.registry import RULE_DEFAULTS, EncodingRules, Token, parse_entry, parse_rules, read_folder_config

SPEC = read_folder_config(ONNX_DIR)
RULES = SPEC.rules  # query 32, document 64, markers [unused0]=1 / [unused1]=2, mask 103, pad 0, BERT uncased
HELLO, WORLD, COMMA, BANG, UNK = 7592, 2088, 1010, 999, 100
ENTRY = json.loads((ONNX_DIR / "lightcol_config.json").read_text())


@pytest.fixture(scope="module")
def tok():
    return R.load_tokenizer(ONNX_DIR / "tokenizer.json", RULES)


def _rules(**changes) -> EncodingRules:
    rules = copy.deepcopy(ENTRY["rules"])
    rules.update(changes)
    return parse_rules(rules, "test")


def _pylate(**changes) -> EncodingRules:
    """PyLate's settings on the tiny tokenizer: [MASK] pads and expands, punctuation words skipped."""
    base = {
        "mask_token": {"token": "[MASK]"},
        "pad_token": {"token": "[MASK]"},
        "skiplist": False,
        "skiplist_words": list(string.punctuation),
        "skip_pad_token": False,
    }
    return _rules(**{**base, **changes})


def test_rows_written_before_the_new_rules_keep_their_meaning() -> None:
    parsed = parse_rules(ENTRY["rules"], "test")
    assert {k: getattr(parsed, k) for k in RULE_DEFAULTS} == RULE_DEFAULTS
    assert parsed.do_query_expansion and parsed.skip_pad_token and parsed.skiplist_words is None
    assert (parsed.query_truncation, parsed.document_truncation) == (31, 63)
    # an index that recorded the rules before they existed sees no difference
    assert RULES.differences(ENTRY["rules"]) == []
    assert RULES.differences({**ENTRY["rules"], "do_query_expansion": False}) == ["do_query_expansion"]
    assert RULES.differences(RULES.to_dict()) == []
    with_words = _pylate()
    assert with_words.differences(json.loads(json.dumps(with_words.to_dict()))) == []  # list vs tuple
    assert RULES.differences({**ENTRY["rules"], "graph_normalizes": True}) == []  # same vectors


def test_every_rule_round_trips_through_json() -> None:
    rules = _pylate(
        query_marker={"token": "[unused0]"},
        document_marker=None,
        do_query_expansion=False,
        attend_to_expansion_tokens=False,
        token_type_ids=False,
        graph_normalizes=True,
        output_name="output",
        query_length=2 + 1,
        document_length=2,
    )
    assert rules.document_marker is None and rules.query_marker == Token("[unused0]", None)
    assert rules.document_truncation == 2 and rules.query_truncation == 2
    again = parse_rules(json.loads(json.dumps(rules.to_dict())), "again")
    assert again == rules
    entry = {**ENTRY, "rules": rules.to_dict()}
    assert parse_entry(json.loads(json.dumps(parse_entry(entry).to_dict()))) == parse_entry(entry)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"mask_token": None}, "needs a mask_token"),
        ({"do_query_expansion": False, "attend_to_expansion_tokens": True}, "needs do_query_expansion"),
        ({"skiplist_words": "!?"}, "'skiplist_words' must be"),
        ({"skiplist_words": ["!", ""]}, "non-empty strings"),
        ({"output_name": ""}, "must not be empty"),
        ({"output_name": 3}, "'output_name' must be"),
        ({"token_type_ids": "yes"}, "'token_type_ids' must be"),
        ({"graph_normalizes": None}, "'graph_normalizes' must be"),
        ({"do_query_expansion": 1}, "'do_query_expansion' must be"),
        ({"pad_token": None}, "'pad_token' must be"),
        ({"pad_token": {}}, "either may be left out"),
        ({"pad_token": {"token": None, "id": None}}, "give the token, its id, or both"),
        ({"pad_token": {"name": "[PAD]"}}, "either may be left out"),
        ({"query_marker": {"token": ""}}, "must not be empty"),
        ({"query_marker": None, "query_length": 1}, r"query_length must be >= 2 \(start, end"),
        ({"query_length": 2}, r"query_length must be >= 3 \(start, marker, end"),
    ],
)
def test_malformed_rules_fail_with_the_reason(changes, message) -> None:
    with pytest.raises(RegistryError, match=message):
        _rules(**changes)


def test_tokens_given_by_name_or_id_are_resolved_and_checked(tok) -> None:
    by_name = _rules(mask_token={"token": "[MASK]"}, pad_token={"id": 0}, query_marker={"token": "[unused0]"})
    resolved = R.resolve_rules(tok, by_name)
    assert resolved.mask_token == Token("[MASK]", 103) and resolved.pad_token == Token("[PAD]", 0)
    assert resolved == RULES
    with pytest.raises(ModelLoadError, match="maps mask_token '\\[MASK\\]' to id 103, but the model's rules say 5"):
        R.resolve_rules(tok, _rules(mask_token={"token": "[MASK]", "id": 5}))
    with pytest.raises(ModelLoadError, match="maps query_marker '\\[Q\\] ' to id None"):
        R.resolve_rules(tok, _rules(query_marker={"token": "[Q] "}))
    with pytest.raises(ModelLoadError, match="no token with id 999999"):
        R.resolve_rules(tok, _rules(pad_token={"id": 999999}))
    with pytest.raises(ModelLoadError, match="resolve the rules"):
        R.build_queries([[101, 102]], by_name)  # unresolved rules are refused, not guessed


def test_no_marker_truncates_to_the_full_length_and_inserts_nothing(tok) -> None:
    rules = R.resolve_rules(tok, _rules(document_marker=None, query_marker=None, document_length=6, query_length=6))
    doc_tok = R.truncating(tok, rules.document_length, marker=False)
    ids = R.tokenize(doc_tok, ["hello world hello world hello world", "hello"])
    b = R.build_documents(ids, rules, R.skiplist_ids(tok, rules))
    np.testing.assert_array_equal(b.input_ids, [[101, HELLO, WORLD, HELLO, WORLD, 102], [101, HELLO, 102, 0, 0, 0]])
    np.testing.assert_array_equal(b.keep[1], [1, 1, 1, 0, 0, 0])
    q = R.build_queries(R.tokenize(R.truncating(tok, 6, marker=False), ["hello"]), rules)
    np.testing.assert_array_equal(q.input_ids, [[101, HELLO, 102, 103, 103, 103]])


def test_queries_without_expansion_are_padded_like_documents(tok) -> None:
    rules = R.resolve_rules(tok, _pylate(do_query_expansion=False))
    ids = R.tokenize(R.truncating(tok, rules.query_length), ["hello world", "hello"])
    q = R.build_queries(ids, rules)
    np.testing.assert_array_equal(q.input_ids, [[101, 1, HELLO, WORLD, 102], [101, 1, HELLO, 102, 103]])
    np.testing.assert_array_equal(q.attention_mask, [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(q.keep, q.attention_mask.astype(bool))


def test_pylate_skiplist_words_are_vocabulary_tokens(tok) -> None:
    rules = R.resolve_rules(tok, _pylate(skiplist_words=[",", "!", "hello", "notatokenword"]))
    # convert_tokens_to_ids: each word as one token; a word that is not one maps to [UNK]
    np.testing.assert_array_equal(R.skiplist_ids(tok, rules, unk_id=UNK), sorted([COMMA, BANG, HELLO, UNK]))
    assert R.unknown_token_id(tok, ONNX_DIR) == UNK
    np.testing.assert_array_equal(R.skiplist_ids(tok, rules), sorted([COMMA, BANG, HELLO]))
    # no pad id: PyLate keeps every attended token, a literal [MASK] / [PAD] in the text included
    ids = R.tokenize(R.truncating(tok, 64), ["hello, [MASK] [PAD] world!"])
    b = R.build_documents(ids, rules, R.skiplist_ids(tok, rules, UNK))
    np.testing.assert_array_equal(b.input_ids[0], [101, 2, HELLO, COMMA, 103, 0, WORLD, BANG, 102])
    np.testing.assert_array_equal(b.keep[0], [1, 1, 0, 0, 1, 1, 1, 0, 1])
    # colbert-ai / FastEmbed drop the pad id wherever it occurs
    colbert = R.build_documents(ids, RULES, R.skiplist_ids(tok, RULES))
    np.testing.assert_array_equal(colbert.keep[0], [1, 1, 1, 0, 1, 0, 1, 0, 1])
    empty = R.resolve_rules(tok, _pylate(skiplist_words=[]))
    assert R.skiplist_ids(tok, empty).size == 0


def test_load_resolves_rules_and_skiplist_from_the_folder() -> None:
    tokenizer, rules, skip, prep = R.load(ONNX_DIR, dataclasses.replace(RULES, mask_token=Token("[MASK]", None)))
    assert rules == RULES and tokenizer.token_to_id("[MASK]") == 103
    np.testing.assert_array_equal(skip, R.skiplist_ids(tokenizer, RULES))
    assert prep == R.TextPrep(strip=False, lower=False)  # BERT uncased lower-cases by itself (colbert-ai)


def test_strip_whitespace_and_python_lowercasing_as_sentence_transformers(tmp_path) -> None:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers

    # a tokenizer where a leading space is a token of its own (as in byte-level BPE / SentencePiece)
    cased = Tokenizer.from_file(str(ONNX_DIR / "tokenizer.json"))
    cased.normalizer = normalizers.NFC()
    cased.pre_tokenizer = pre_tokenizers.Split(" ", "isolated")
    path = tmp_path / "tokenizer.json"
    cased.save(str(path))
    text = "  Hello World  "
    pylate = dataclasses.replace(RULES, strip_whitespace=True)
    tok, prep = R._load_tokenizer(path, pylate)
    assert prep == R.TextPrep(strip=True, lower=True)
    stripped = R.tokenize(tok, [text], prep)[0]
    assert stripped == R.tokenize(tok, ["hello world"], prep)[0] == tok.encode("hello world").ids
    assert R.tokenize(tok, [text])[0] != stripped  # without the rule the spaces are tokens
    # str.lower() exactly (final sigma), not the tokenizer's character-wise lower-casing
    assert R.tokenize(tok, ["ΟΔΟΣ"], prep)[0] == tok.encode("οδος").ids
    assert _rules(strip_whitespace=True).strip_whitespace and not _rules().strip_whitespace


def test_lowercase_rule_lowercases_before_the_tokenizer(tmp_path) -> None:
    from tokenizers import Tokenizer, normalizers

    cased = Tokenizer.from_file(str(ONNX_DIR / "tokenizer.json"))
    cased.normalizer = normalizers.NFC()  # not lower-casing
    path = tmp_path / "tokenizer.json"
    cased.save(str(path))
    lowered = R.load_tokenizer(path, RULES)
    assert lowered.encode("HELLO World", add_special_tokens=False).ids == [HELLO, WORLD]
    unchanged = R.load_tokenizer(path, dataclasses.replace(RULES, lowercase=False))
    assert unchanged.encode("HELLO", add_special_tokens=False).ids != [HELLO]
