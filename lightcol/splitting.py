"""Token-aware splitting of long documents into passages that fit a model's document length.

A model truncates every document at its document length (``[CLS]``, the document marker and
``[SEP]`` included), so text past it is never searchable. :func:`split_documents` cuts each text
into passages that fit, measured with the model's own tokenizer: each document is tokenized once
(with character offsets) and cut between tokens, preferring the end of a sentence, then a space
between words; a word is cut only when it alone exceeds the limit. Passages carry their character
span in the original text, and together cover all of it but whitespace.
"""

from __future__ import annotations

import bisect
import itertools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer, pre_tokenizers

from lightcol import _validate
from lightcol.errors import ArgumentError

__all__ = ["Passage", "split_documents"]

#: Tokens every passage spends besides its text: ``[CLS]``, the document marker and ``[SEP]``.
SPECIAL_TOKENS = 3
#: Documents tokenized per ``encode_batch`` call (bounds the memory the encodings take).
_CHUNK = 512
#: A sentence cut is preferred only when the passage keeps at least this share of the budget: fuller
#: passages retrieve better (CISI at 64 tokens, document nDCG@10: 0.357 at a share of 0.5, 0.377 never
#: preferring sentences; benchmarks/bench_documents.py), so a sentence end wins only when it costs little.
_MIN_SENTENCE_SHARE = 0.9
#: Per code point below U+10000: ``str.isspace`` (none above U+3000), sentence-ending punctuation,
#: and closing quotes or brackets (a sentence end may be followed by one).
_TABLE_SIZE = 0x10000
_SPACES = np.array([chr(i).isspace() for i in range(0x3001)] + [False] * (_TABLE_SIZE - 0x3001), dtype=bool)
_TERMINAL = np.zeros(_TABLE_SIZE, dtype=bool)
_TERMINAL[[ord(c) for c in ".!?\u3002\uff01\uff1f\u2026"]] = True
_CLOSER = np.zeros(_TABLE_SIZE, dtype=bool)
_CLOSER[[ord(c) for c in "\"')]\u00bb\u201d\u2019"]] = True

_TOKENIZERS: weakref.WeakKeyDictionary[Any, Tokenizer] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class Passage:
    """One passage of ``texts[doc]``: ``text == texts[doc][start:end]``."""

    doc: int
    text: str
    start: int
    end: int


def passage_budget(model: Any, max_tokens: int | None = None) -> int:
    """The most tokens a passage may have (specials and marker included): ``max_tokens`` or the model's document length.

    :raises ArgumentError: ``max_tokens`` exceeds the model's document length (the model would
        truncate the passages) or leaves no room for text.
    """
    length = int(model.spec.rules.document_length)
    if max_tokens is None:
        return length
    max_tokens = _validate.integer("max_tokens", max_tokens, minimum=SPECIAL_TOKENS + 1)
    assert max_tokens is not None
    if max_tokens > length:
        raise ArgumentError(
            f"max_tokens={max_tokens} exceeds the model's document length ({length} tokens): the model would "
            f"truncate such passages. Use max_tokens <= {length}, or a model whose rules allow longer documents."
        )
    return max_tokens


def full_tokenizer(model: Any) -> Tokenizer:
    """The model's document tokenizer without truncation (cached per model)."""
    tok = _TOKENIZERS.get(model)
    if tok is None:
        tok = Tokenizer.from_str(model._doc_tokenizer.to_str())
        tok.no_truncation()
        tok.no_padding()
        _TOKENIZERS[model] = tok
    return tok


def split_documents(
    texts: Sequence[str], model: Any, max_tokens: int | None = None, overlap_tokens: int = 0
) -> list[Passage]:
    """Cut each text into passages that the model embeds without truncation.

    Args:
        texts: the documents (a sequence of ``str``).
        model: a :class:`~lightcol.LateInteractionTextEmbedding`; its tokenizer measures the passages.
        max_tokens: the most tokens per passage, ``[CLS]``, document marker and ``[SEP]`` included;
            default (and at most) the model's document length.
        overlap_tokens: up to this many tokens of the end of a passage start the next one (whole
            words only; ``0``: no overlap). Less than the passage's text budget.

    Returns:
        Passages in document order (every document has at least one; an empty or blank text gives
        one empty passage). Cuts fall after a sentence end when that keeps at least 90% of the
        budget, else at the last space between words that fits, and inside a word only when the
        word alone exceeds the budget. ``passage.text == texts[passage.doc][passage.start:passage.end]``
        and has no leading or trailing whitespace; a document's passages cover all of its
        non-whitespace characters.
    """
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise ArgumentError(
            f"texts must be a sequence of str (a list), got {type(texts).__name__}; wrap one text in a list."
        )
    from lightcol.rules import check_text

    for i, t in enumerate(texts):
        check_text(i, t)
    limit = passage_budget(model, max_tokens)
    budget = limit - SPECIAL_TOKENS
    overlap = _validate.integer("overlap_tokens", overlap_tokens, minimum=0)
    assert overlap is not None
    if overlap >= budget:
        raise ArgumentError(
            f"overlap_tokens={overlap} must be less than the {budget} text tokens a passage holds "
            f"({limit} minus [CLS], marker and [SEP])."
        )
    tokenizer = full_tokenizer(model)
    # Between words, these pre-tokenizers make a passage's tokens exactly the document's tokens in
    # its span; a cut inside a word, or another tokenizer, is checked by tokenizing the passage.
    word_exact = isinstance(tokenizer.pre_tokenizer, _WORD_LOCAL)
    out: list[Passage] = []
    for first in range(0, len(texts), _CHUNK):
        chunk = list(texts[first : first + _CHUNK])
        encodings = tokenizer.encode_batch(chunk, add_special_tokens=False)
        long = [j for j, enc in enumerate(encodings) if len(enc.ids) > budget]
        bounds = dict(zip(long, _boundaries([chunk[j] for j in long], [encodings[j].offsets for j in long]),
                          strict=True)) if long else {}
        passages: list[Passage] = []
        unsure: list[int] = []
        for j, text in enumerate(chunk):
            b = bounds.get(j)
            for s, e, between_words in _split(text, (), budget, overlap, b) if b else _whole(text):
                if not (between_words and word_exact):
                    unsure.append(len(passages))
                passages.append(Passage(first + j, text[s:e], s, e))
        replaced = _check(passages, unsure, tokenizer, limit, overlap) if unsure else {}
        for i, p in enumerate(passages):
            out.extend(replaced.get(i, (p,)))
    return out


#: Pre-tokenizers that split words at whitespace (and punctuation) and tokenize each word alone.
_WORD_LOCAL = (pre_tokenizers.BertPreTokenizer, pre_tokenizers.WhitespaceSplit, pre_tokenizers.Whitespace)


def _check(
    passages: list[Passage], unsure: list[int], tokenizer: Tokenizer, limit: int, overlap: int
) -> dict[int, list[Passage]]:
    """Tokenize ``passages[unsure]`` in one batch; those that do not fit (a word cut in two whose
    pieces tokenize differently alone, a tokenizer whose tokens depend on their context) are split
    again with a smaller budget: ``{position: replacement passages}``."""
    encodings = tokenizer.encode_batch([passages[i].text for i in unsure], add_special_tokens=True)
    out: dict[int, list[Passage]] = {}
    for i, enc in zip(unsure, encodings, strict=True):
        n = len(enc.ids) + 1
        if n > limit:
            out[i] = _resplit(passages[i], n, tokenizer, limit, overlap)
    return out


def _resplit(p: Passage, n: int, tokenizer: Tokenizer, limit: int, overlap: int, depth: int = 0) -> list[Passage]:
    """``p`` (``n`` tokens, over ``limit``) split with a lower budget, recursively, until every piece fits
    (a single character that alone exceeds the limit stays as it is)."""
    budget = max(1, limit - SPECIAL_TOKENS - (n - limit))
    offsets = tokenizer.encode(p.text, add_special_tokens=False).offsets
    spans = _split(p.text, offsets, budget, min(overlap, budget - 1))
    pieces = [Passage(p.doc, p.text[a:b], p.start + a, p.start + b) for a, b, _ in spans]
    if depth == 32 or len(pieces) == 1 and (pieces[0].start, pieces[0].end) == (p.start, p.end):
        return [p]
    counts = [len(e.ids) + 1 for e in tokenizer.encode_batch([q.text for q in pieces], add_special_tokens=True)]
    out: list[Passage] = []
    for q, c in zip(pieces, counts, strict=True):
        out.extend(_resplit(q, c, tokenizer, limit, overlap, depth + 1) if c > limit else (q,))
    return out


def _whole(text: str) -> list[tuple[int, int, bool]]:
    """The one passage of a text that fits: all of it but surrounding whitespace."""
    s, e = _strip(text, 0, len(text))
    return [(s, e, True) if s < e else (0, 0, True)]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` narrowed to exclude leading and trailing whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split(
    text: str, offsets: Sequence[tuple[int, int]], budget: int, overlap: int, bounds: Any = None
) -> list[tuple[int, int, bool]]:
    """``(start, end, between_words)`` of the passages of one text, from its token offsets (no
    special tokens) or its :func:`_boundaries` ``bounds``; ``between_words``: neither end of the
    passage cuts a word."""
    if bounds is None:
        n = len(offsets)
        if n <= budget:
            s, e = _strip(text, 0, len(text))
            return [(s, e, True) if s < e else (0, 0, True)]
        bounds = _boundaries([text], [offsets])[0]
    cut, words, sentences = bounds
    n = len(cut) - 1
    if n <= budget:
        s, e = _strip(text, 0, len(text))
        return [(s, e, True) if s < e else (0, 0, True)]
    spans: list[tuple[int, int, bool]] = []
    a = prev = 0
    a_word = prev_word = True
    while True:
        top = a + budget  # > prev: the overlap is less than the budget
        b_word = True
        if top >= n:
            b = n
        else:
            b = _last(sentences, max(prev + 1, a + max(1, int(budget * _MIN_SENTENCE_SHARE))), top)
            if b is None:
                b = _last(words, max(prev + 1, a + 1), top)
            if b is None and a < prev:  # the overlap leaves no room for the next word: drop it
                a, a_word = prev, prev_word
                continue
            if b is None:  # one word longer than the budget: cut inside it
                b, b_word = top, False
            while b < n and cut[b] <= cut[a]:  # several tokens of one character (byte-level tokenizers)
                b += 1
        s, e = _strip(text, cut[a], cut[b])
        if s < e or not spans and b >= n:
            spans.append((s, e, a_word and b_word) if s < e else (0, 0, True))
        if b >= n:
            return spans
        i = bisect.bisect_left(words, b - overlap) if overlap else len(words)
        if i < len(words) and a < words[i] < b:
            a, a_word = words[i], True
        else:
            a, a_word = b, b_word
        prev, prev_word = b, b_word


def _boundaries(texts: Sequence[str], offsets: Sequence[Sequence[tuple[int, int]]]) -> list[Any]:
    """Where passages may be cut between the tokens of each text (computed for all texts at once).

    Per text, ``(cut, words, sentences)``: ``cut[b]`` (``b`` in ``0..n``) is the character where a
    passage ending before token ``b`` ends and one starting at token ``b`` starts (after the
    whitespace between them); ``words``: the ``b`` with whitespace between tokens ``b - 1`` and
    ``b`` (and 0); ``sentences``: those where, in addition, a sentence ends before the whitespace
    or it holds a line break.
    """
    n_tok = np.fromiter((len(o) for o in offsets), dtype=np.int64, count=len(offsets))
    tok_base = np.zeros(len(offsets) + 1, dtype=np.int64)
    np.cumsum(n_tok, out=tok_base[1:])
    char_base = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), out=char_base[1:])
    total = int(tok_base[-1])
    off = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(offsets)), dtype=np.int64,
                      count=2 * total).reshape(total, 2)
    off += np.repeat(char_base[:-1], n_tok)[:, None]
    cp = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    cp16 = np.minimum(cp, _TABLE_SIZE - 1)  # code points past the tables are none of these characters
    ws = _SPACES[cp16]
    ws_count = np.zeros(cp.shape[0] + 1, dtype=np.int64)
    np.cumsum(ws, out=ws_count[1:])
    nl_count = np.zeros(cp.shape[0] + 1, dtype=np.int64)
    np.cumsum(cp == 10, out=nl_count[1:])
    last_ws = np.maximum.accumulate(np.where(ws, np.arange(cp.shape[0]), -1)) if cp.shape[0] else ws_count
    # boundary j: between global tokens j and j + 1
    prev_end, start = off[:-1, 1], off[1:, 0]
    low = np.minimum(prev_end, start)
    word = ws_count[start] > ws_count[low]
    cut = start.copy()
    cut[word] = last_ws[start[word] - 1] + 1
    end_char = cp16[np.maximum(prev_end - 1, 0)] if cp.shape[0] else prev_end
    before = cp16[np.maximum(prev_end - 2, 0)] if cp.shape[0] else prev_end
    ends = _TERMINAL[end_char] | (_CLOSER[end_char] & _TERMINAL[before]) if cp.shape[0] else word
    sentence = word & (ends | (nl_count[start] > nl_count[low]))
    out = []
    for d, text in enumerate(texts):
        t0, t1 = int(tok_base[d]), int(tok_base[d + 1])
        base = int(char_base[d])
        if t1 - t0 < 2:
            out.append(([0, len(text)] if t1 > t0 else [0], [0], []))
            continue
        inner = slice(t0, t1 - 1)
        out.append((
            [0, *(cut[inner] - base).tolist(), len(text)],
            [0, *(np.flatnonzero(word[inner]) + 1).tolist()],
            (np.flatnonzero(sentence[inner]) + 1).tolist(),
        ))
    return out


def _last(points: list[int], low: int, high: int) -> int | None:
    """The largest of the sorted ``points`` in ``[low, high]``, or ``None``."""
    i = bisect.bisect_right(points, high) - 1
    if i >= 0 and points[i] >= low:
        return points[i]
    return None
