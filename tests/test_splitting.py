"""split_documents: spans, coverage, limits, word boundaries and overlap (hypothesis texts + fixed cases)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lightcol
from lightcol.splitting import Passage, full_tokenizer, split_documents

from conftest import random_texts

# Words of several lengths (some longer than small budgets in word pieces), punctuation, sentence
# ends, newlines, accents, CJK (one token per character, no spaces) and emoji.
_WORD = st.one_of(
    st.sampled_from(["late", "interaction", "ColBERT", "passage", "antidisestablishmentarianism", "café", "naïve"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzéü日本語中文🙂0123456789-'", min_size=1, max_size=40),
)
_SEP = st.sampled_from([" ", " ", " ", "  ", ", ", ". ", "! ", "? ", "\n", "\n\n", "\t", " (", ") ", '." '])
_TEXT = st.lists(st.tuples(_WORD, _SEP), max_size=120).map(lambda parts: "".join(w + s for w, s in parts))


def _tokens(model, text: str) -> int:
    """Tokens the model gives ``text`` as a document, untruncated: [CLS] text [SEP] + marker."""
    return len(full_tokenizer(model).encode(text, add_special_tokens=True).ids) + 1


def _word_tokens(model, text: str, i: int) -> int:
    """Tokens (no specials) of the whitespace-delimited word holding character ``i``."""
    s = i
    while s > 0 and not text[s - 1].isspace():
        s -= 1
    e = i
    while e < len(text) and not text[e].isspace():
        e += 1
    return len(full_tokenizer(model).encode(text[s:e], add_special_tokens=False).ids)


def _check(model, texts: list[str], passages: list[Passage], max_tokens: int, overlap: int) -> None:
    budget = max_tokens - 3
    assert [p.doc for p in passages] == sorted(p.doc for p in passages)
    assert {p.doc for p in passages} == set(range(len(texts)))  # every document has a passage
    for d, text in enumerate(texts):
        mine = [p for p in passages if p.doc == d]
        covered = bytearray(len(text))
        for p in mine:
            assert p.text == text[p.start : p.end]
            assert p.text == p.text.strip() or not p.text.strip()
            assert _tokens(model, p.text) <= max_tokens, p
            covered[p.start : p.end] = b"\1" * (p.end - p.start)
            # a cut inside a word only when that word alone exceeds the budget
            if p.start > 0 and not text[p.start - 1].isspace() and p.start < len(text):
                assert _word_tokens(model, text, p.start) > budget, (p, text)
            if p.end < len(text) and p.end > 0 and not text[p.end].isspace():
                assert _word_tokens(model, text, p.end - 1) > budget, (p, text)
        missing = [i for i, c in enumerate(text) if not c.isspace() and not covered[i]]
        assert not missing, (text, mine)
        for p, q in zip(mine, mine[1:]):
            assert p.start < q.start and p.end < q.end  # progress, no passage inside another
            if overlap == 0:
                assert q.start >= p.end
            elif q.start < p.end:
                shared = text[q.start : p.end]
                assert len(full_tokenizer(model).encode(shared, add_special_tokens=False).ids) <= overlap


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # same examples on every run: deterministic CI
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(texts=st.lists(_TEXT, min_size=1, max_size=4), max_tokens=st.integers(4, 40), data=st.data())
def test_passages_cover_fit_and_respect_words(model, texts, max_tokens, data) -> None:
    overlap = data.draw(st.integers(0, max_tokens - 4))
    passages = split_documents(texts, model, max_tokens=max_tokens, overlap_tokens=overlap)
    _check(model, texts, passages, max_tokens, overlap)


def test_default_limit_is_the_document_length_and_passages_embed_untruncated(model) -> None:
    texts = random_texts(40, seed=3, max_words=300)
    passages = split_documents(texts, model)
    length = model.spec.rules.document_length
    assert len(passages) > len(texts)  # long texts were split
    for p in passages:
        n = _tokens(model, p.text)
        assert n <= length
        # what embed keeps (truncating tokenizer) is the whole passage: nothing is truncated
        assert model.token_count([p.text], include_extension=True) == n
    vectors = list(model.embed([p.text for p in passages]))
    assert len(vectors) == len(passages)
    _check(model, texts, passages, length, 0)


def test_sentence_boundaries_preferred(model) -> None:
    sentence = "Late interaction scores every query token against every passage token."
    text = " ".join([sentence] * 6)
    per = _tokens(model, sentence) - 3  # text tokens of one sentence
    passages = split_documents([text], model, max_tokens=2 * per + 3 + 2)
    assert [p.text for p in passages] == [f"{sentence} {sentence}"] * 3
    assert [(p.start, p.end) for p in passages] == [
        (m.start(), m.end()) for m in re.finditer(re.escape(f"{sentence} {sentence}"), text)
    ]


def test_word_cut_only_for_a_word_longer_than_the_budget(model) -> None:
    long_word = "antidisestablishmentarianism" * 3
    text = f"short words here {long_word} and more"
    passages = split_documents([text], model, max_tokens=8)
    _check(model, [text], passages, 8, 0)
    w0, w1 = text.index(long_word), text.index(long_word) + len(long_word)
    assert passages[0].text == "short words here"  # the words before it stay whole, apart
    assert sum(w0 < p.start < w1 for p in passages) >= 2  # cut inside the long word only
    assert all(p.text.split()[-1] in ("more", "and") or p.end < w1 for p in passages)


def test_overlap_repeats_whole_words(model) -> None:
    text = " ".join(f"w{i}" for i in range(60))  # "w12" -> w, ##12: two tokens a word
    passages = split_documents([text], model, max_tokens=13, overlap_tokens=4)
    _check(model, [text], passages, 13, 4)
    for p, q in zip(passages, passages[1:]):
        assert text[q.start : p.end].split() == p.text.split()[-2:]  # two words = four tokens shared


def test_empty_and_blank_documents_give_one_empty_passage(model) -> None:
    passages = split_documents(["", "  \n ", "x"], model)
    assert passages == [Passage(0, "", 0, 0), Passage(1, "", 0, 0), Passage(2, "x", 0, 1)]


def test_arguments_are_checked(model) -> None:
    length = model.spec.rules.document_length
    with pytest.raises(lightcol.ArgumentError, match="exceeds the model's document length"):
        split_documents(["a"], model, max_tokens=length + 1)
    with pytest.raises(lightcol.ArgumentError, match="overlap_tokens"):
        split_documents(["a"], model, max_tokens=10, overlap_tokens=7)
    with pytest.raises(lightcol.ArgumentError, match="sequence of str"):
        split_documents("a text", model)
    with pytest.raises(lightcol.ArgumentError, match="item 1"):
        split_documents(["a", 3], model)
    with pytest.raises(lightcol.ArgumentError):
        split_documents(["a"], model, max_tokens=3)


@pytest.mark.parametrize("max_tokens", [4, 9, 64])
def test_edge_texts_fit_and_are_covered(model, max_tokens) -> None:
    from conftest import EDGE_TEXTS

    texts = [*EDGE_TEXTS, "a\x0bb\x0cc\x85d\u200be " * 20, "\u3000".join(["全角"] * 30)]
    passages = split_documents(texts, model, max_tokens=max_tokens, overlap_tokens=min(2, max_tokens - 4))
    for d, text in enumerate(texts):
        mine = [p for p in passages if p.doc == d]
        assert mine
        covered = bytearray(len(text))
        for p in mine:
            assert p.text == text[p.start : p.end]
            assert _tokens(model, p.text) <= max_tokens, p
            covered[p.start : p.end] = b"\1" * (p.end - p.start)
        assert all(covered[i] for i, c in enumerate(text) if not c.isspace()), text
