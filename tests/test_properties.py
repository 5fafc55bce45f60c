"""Property-based tests (hypothesis) over arbitrary unicode text: shapes, norms, order, determinism, batching."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from lightcol import rules as _rules

DIM, QLEN, DLEN = 16, 32, 64

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,  # same examples on every run: deterministic CI
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# st.text() excludes lone surrogates (category Cs); those raise InvalidTextError (tests/test_robustness.py)
texts = st.text(max_size=400)
text_lists = st.lists(texts, min_size=1, max_size=12)


def _unit_rows(v: np.ndarray) -> None:
    assert v.dtype == np.float32 and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@SETTINGS
@given(text_lists)
def test_shapes_and_unit_norm_rows(model, items) -> None:
    docs = list(model.embed(items))
    queries = list(model.query_embed(items))
    assert len(docs) == len(queries) == len(items)
    counts = [model.token_count(t, include_extension=True) for t in items]
    for d, q, n in zip(docs, queries, counts, strict=True):
        assert d.ndim == 2 and d.shape[1] == DIM and 3 <= d.shape[0] <= n <= DLEN
        assert q.shape == (QLEN, DIM)
        _unit_rows(d)
        _unit_rows(q)


@SETTINGS
@given(text_lists, st.integers(1, 5), st.integers(1, 5))
def test_batch_size_order_and_determinism(model, items, bs1, bs2) -> None:
    alone = [next(model.embed(t)) for t in items]
    alone_q = [next(model.query_embed(t)) for t in items]
    batched = list(model.embed(items, batch_size=bs1))
    again = list(model.embed(items, batch_size=bs1))
    reordered = list(model.embed(items[::-1], batch_size=bs2))[::-1]
    batched_q = list(model.query_embed(items, batch_size=bs2))
    for i in range(len(items)):
        np.testing.assert_array_equal(batched[i], again[i])  # determinism: bit-identical
        assert batched[i].shape == alone[i].shape == reordered[i].shape
        np.testing.assert_allclose(batched[i], alone[i], atol=1e-5)  # any batch, any neighbours
        np.testing.assert_allclose(reordered[i], alone[i], atol=1e-5)
        np.testing.assert_allclose(batched_q[i], alone_q[i], atol=1e-5)


@SETTINGS
@given(texts)
def test_same_text_anywhere_in_a_batch(model, text) -> None:
    neighbours = ["short", "a much longer neighbour text " * 20, "", "🙂"]
    ref = next(model.embed(text))
    for pos in range(len(neighbours) + 1):
        items = neighbours[:pos] + [text] + neighbours[pos:]
        np.testing.assert_allclose(list(model.embed(items, batch_size=len(items)))[pos], ref, atol=1e-5)


# Long texts are cut before tokenizing (lightcol.rules._clip): the ids must equal a full tokenization's.
long_alphabet = st.sampled_from(
    list("abcxyz ABC  ,.;!?-'\"()[]{}") + ["\t", "\n", "\u00e9", "e\u0301", "\u0301", "\u200b", "\x00", "日", "本", "語",
    "ア", "ß", "İ", "🙂", "ﬁ", "\u3000", "\u00a0", "\u202e", "١٢", "word", "supercalifragilistic", "[SEP]", "[MASK]"]
)


@SETTINGS
@given(st.lists(long_alphabet, min_size=1, max_size=60), st.integers(5_000, 40_000), st.text(max_size=50))
def test_cutting_long_texts_keeps_exact_ids(model, pieces, size, tail) -> None:
    unit = "".join(pieces)
    big = (unit * (size // max(1, len(unit)) + 1))[:size] + tail
    for tok in (model._doc_tokenizer, model._query_tokenizer):
        assert _rules.tokenize(tok, [big, "x"]) == [tok.encode(big).ids, tok.encode("x").ids]


_UNTRUNCATED: dict[int, object] = {}


def _untruncated(tok):
    if id(tok) not in _UNTRUNCATED:
        copy = Tokenizer.from_str(tok.to_str())
        copy.no_truncation()
        _UNTRUNCATED[id(tok)] = copy
    return _UNTRUNCATED[id(tok)]


@SETTINGS
@given(st.lists(long_alphabet | st.text(max_size=3), min_size=1, max_size=80))
@example(["banana split, supercalifragilistic.日本語 naïve café e\u0301t\u00e9 [MASK]x ﬁne\u3000İstanbul"])
def test_every_cut_point_keeps_a_prefix_of_the_ids(model, pieces) -> None:
    """What _clip relies on: at each cut point j, the tokens of text[:j] are the first tokens of text."""
    text = "".join(pieces)
    cut = _rules._cut_points(model._doc_tokenizer)
    assert cut is not None  # BERT: cut before spaces, ASCII punctuation, CJK ideographs
    added = [t.content.casefold() for t in model._doc_tokenizer.get_added_tokens_decoder().values()]
    tok = _untruncated(model._doc_tokenizer)
    ids = tok.encode(text, add_special_tokens=False).ids
    j = _rules._safe_cut(text, 0, cut, added)
    while j is not None:
        head = tok.encode(text[:j], add_special_tokens=False).ids
        assert ids[: len(head)] == head, (text[:j], text)
        j = _rules._safe_cut(text, j + 1, cut, added)
