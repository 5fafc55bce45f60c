"""Tokenization rules: texts -> token id arrays, exactly as colbert-ai's Query/DocTokenizer build them.

Pure functions over a ``tokenizers.Tokenizer`` and :class:`~lightcol.registry.EncodingRules`:

* both kinds: ``[CLS] text [SEP]`` (whatever start and end tokens the tokenizer's post-processor
  adds: ``<s> text </s>`` for XLM-R) truncated to ``length - 1`` tokens, then the marker inserted at
  position 1, so the sequence never exceeds ``length`` (specials and marker included); a model
  without a marker (``None``) is truncated to ``length`` and gets none, as PyLate with an empty prefix;
* queries with expansion: padded to ``query_length``, every pad id replaced by the mask token; the
  expansion tokens are attended to when ``attend_to_expansion_tokens`` is set; every row is kept.
  Without expansion (``do_query_expansion=False``): padded like documents, attended rows kept;
* documents: padded to the longest in the batch; the rows kept in the output are the attended
  tokens that are not in the skiplist (colbert-ai's punctuation, PyLate's ``skiplist_words``, and
  the pad token's id wherever it occurs when ``skip_pad_token`` is set).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tokenizers import Tokenizer, normalizers, pre_tokenizers

from lightcol.errors import ArgumentError, InvalidTextError, ModelLoadError
from lightcol.registry import EncodingRules, Token


@dataclass(frozen=True)
class Batch:
    """Model inputs for a batch of texts, plus which output rows each text keeps."""

    input_ids: np.ndarray  # int64 (batch, seq)
    attention_mask: np.ndarray  # int64 (batch, seq)
    keep: np.ndarray  # bool (batch, seq): rows of the output that belong to each text


def _normalizer_lowercases(tokenizer: Tokenizer) -> bool:
    """Whether the tokenizer's normalizer lower-cases text (checked by behaviour, whatever its configuration)."""
    norm = tokenizer.normalizer
    return norm is not None and norm.normalize_str("ABC") == "abc"


class TextPrep(NamedTuple):
    """What happens to a text before the tokenizer sees it (sentence-transformers' ``Transformer.tokenize``,
    which PyLate uses: ``str.strip()``, then ``str.lower()`` when ``do_lower_case``)."""

    strip: bool = False
    lower: bool = False


def load_tokenizer(path: str | Path, rules: EncodingRules) -> Tokenizer:
    """Load ``tokenizer.json`` and check it against the rules (marker, mask and pad ids, lowercasing).

    Raises :class:`ModelLoadError` naming the file when it is missing, unreadable, or belongs to
    another model (the rules' special tokens have other ids in it).
    """
    return _load_tokenizer(path, rules)[0]


def _load_tokenizer(path: str | Path, rules: EncodingRules) -> tuple[Tokenizer, TextPrep]:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"Tokenizer file {path} is missing; re-download the model or re-export the folder.")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
        raise ModelLoadError(
            f"Tokenizer file {path} could not be read ({e}); it is truncated or not a tokenizer.json: "
            "re-download the model or re-export the folder."
        ) from e
    resolve_rules(tokenizer, rules, path)  # the rules' special tokens must be this tokenizer's
    # lower-cased in Python (exactly str.lower(), as sentence-transformers) only where the tokenizer does not
    # lower-case by itself: a BERT-uncased tokenizer keeps its own lower-casing (colbert-ai's behaviour)
    prep = TextPrep(strip=rules.strip_whitespace, lower=rules.lowercase and not _normalizer_lowercases(tokenizer))
    if rules.lowercase and not _normalizer_lowercases(tokenizer):
        # The rules say the model sees lower-cased text: make the tokenizer do it (native code).
        # first, as sentence-transformers lower-cases the text before the tokenizer sees it
        current = tokenizer.normalizer
        steps = [normalizers.Lowercase(), current] if current is not None else [normalizers.Lowercase()]
        tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer, prep


_SPECIAL_TOKENS = ("query_marker", "document_marker", "mask_token", "pad_token")


def resolve_rules(tokenizer: Tokenizer, rules: EncodingRules, path: str | Path = "tokenizer.json") -> EncodingRules:
    """``rules`` with every special token's string and id filled in from ``tokenizer`` (a rule may give
    either), checked: a token the tokenizer does not know, or knows under another id, raises
    :class:`ModelLoadError` naming ``path``."""
    resolved: dict[str, Token] = {}
    for name in _SPECIAL_TOKENS:
        tok: Token | None = getattr(rules, name)
        if tok is None:
            continue
        if tok.token is not None:
            found = tokenizer.token_to_id(tok.token)
            if found is None or (tok.id is not None and found != tok.id):
                raise ModelLoadError(
                    f"Tokenizer file {path} maps {name} {tok.token!r} to id {found}, but the model's rules say {tok.id}: "
                    "the folder holds another model's tokenizer. Use the tokenizer the model was exported with."
                )
            resolved[name] = Token(tok.token, found)
        else:
            token = tokenizer.id_to_token(tok.id) if tok.id is not None else None
            if token is None:
                raise ModelLoadError(
                    f"Tokenizer file {path} has no token with id {tok.id}, the model's {name}: the folder holds "
                    "another model's tokenizer. Use the tokenizer the model was exported with."
                )
            resolved[name] = Token(token, tok.id)
    return replace(rules, **resolved)


def unknown_token_id(tokenizer: Tokenizer, folder: str | Path | None = None) -> int | None:
    """The id ``convert_tokens_to_ids`` of transformers gives a string that is not a token: the unknown
    token named by ``tokenizer_config.json`` / ``special_tokens_map.json`` in ``folder`` if any, else
    by the tokenizer model (WordPiece/BPE ``unk_token``, Unigram ``unk_id``); ``None`` when there is none."""
    if folder is not None:
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            try:
                unk = json.loads((Path(folder) / name).read_text(encoding="utf-8")).get("unk_token")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(unk, dict):
                unk = unk.get("content")
            if isinstance(unk, str) and tokenizer.token_to_id(unk) is not None:
                return tokenizer.token_to_id(unk)
    model = tokenizer.model
    unk = getattr(model, "unk_token", None)
    if isinstance(unk, str) and tokenizer.token_to_id(unk) is not None:
        return tokenizer.token_to_id(unk)
    unk_id = getattr(model, "unk_id", None)
    if unk_id is None and type(model).__name__ == "Unigram":
        unk_id = json.loads(tokenizer.to_str()).get("model", {}).get("unk_id")
    return unk_id if isinstance(unk_id, int) else None


def skiplist_ids(tokenizer: Tokenizer, rules: EncodingRules, unk_id: int | None = None) -> np.ndarray:
    """Ids dropped from document outputs (``rules`` resolved by :func:`resolve_rules`).

    * the pad token's id, when ``skip_pad_token`` is set (colbert-ai, FastEmbed);
    * ``skiplist``: as colbert-ai, for each character of ``string.punctuation``, the first id it encodes to;
    * ``skiplist_words``: as PyLate (``tokenizer.convert_tokens_to_ids(word)``), each word's id as a
      token of the vocabulary, ``unk_id`` (see :func:`unknown_token_id`) for a word that is not one.
    """
    ids: set[int] = set()
    if rules.skip_pad_token and rules.pad_token.id is not None:
        ids.add(rules.pad_token.id)
    if rules.skiplist:
        for symbol in string.punctuation:
            enc = tokenizer.encode(symbol, add_special_tokens=False).ids
            if enc:
                ids.add(enc[0])
    for word in rules.skiplist_words or ():
        found = tokenizer.token_to_id(word)
        if found is None:
            found = unk_id
        if found is not None:
            ids.add(found)
    return np.array(sorted(ids), dtype=np.int64)


class Loaded(NamedTuple):
    """:func:`load`'s result: the tokenizer, the resolved rules, the ids documents drop, the text preparation."""

    tokenizer: Tokenizer
    rules: EncodingRules
    skip: np.ndarray
    prep: TextPrep


def load(folder: str | Path, rules: EncodingRules) -> Loaded:
    """``folder/tokenizer.json`` loaded and checked (:func:`load_tokenizer`), ``rules`` resolved against
    it (:func:`resolve_rules`), the ids documents drop (:func:`skiplist_ids`) and what :func:`tokenize`
    does to each text first (:class:`TextPrep`)."""
    path = Path(folder) / "tokenizer.json"
    tokenizer, prep = _load_tokenizer(path, rules)
    resolved = resolve_rules(tokenizer, rules, path)
    unk = unknown_token_id(tokenizer, folder) if resolved.skiplist_words else None
    return Loaded(tokenizer, resolved, skiplist_ids(tokenizer, resolved, unk), prep)


def truncating(tokenizer: Tokenizer, length: int, marker: bool = True) -> Tokenizer:
    """A copy of ``tokenizer`` that truncates ``[CLS] text [SEP]`` to ``length - 1`` ids (room for the
    marker; ``length`` without one).

    Each kind of text gets its own copy, so encoding never mutates shared state (thread-safe).
    """
    return set_truncation(Tokenizer.from_str(tokenizer.to_str()), length, marker)


def set_truncation(tokenizer: Tokenizer, length: int, marker: bool = True) -> Tokenizer:
    """Make ``tokenizer`` itself truncate ``[CLS] text [SEP]`` to ``length - 1`` ids (``length`` without
    a marker); returns it.

    For a tokenizer no one else holds (a copy costs ~15 ms on a BERT vocabulary, see :func:`truncating`).
    """
    tokenizer.enable_truncation(max_length=length - 1 if marker else length)
    tokenizer.no_padding()
    return tokenizer


#: Characters of prefix tried per token of the truncation limit before cutting a long text (see :func:`_clip`).
_CLIP_CHARS_PER_TOKEN = 16
#: CJK ideographs, which BERT's normalizer (``handle_chinese_chars``) turns into words of their own.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
#: Unicode White_Space (Rust's ``char::is_whitespace``, what the tokenizers' pre-tokenizers split on):
#: tab, LF, VT, FF, CR, space, NEL, NBSP, ogham space, en quad..hair space, line/paragraph separators,
#: narrow NBSP, medium math space, ideographic space.
_WHITESPACE_CODES = (
    *range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000
)


def _cut_points(tokenizer: Tokenizer) -> re.Pattern[str] | None:
    """Positions ``j`` where ``text[:j]`` tokenizes to exactly the leading tokens of ``text``, or ``None`` if unknown.

    BERT (whitespace + punctuation pre-tokenizer, char-local normalizer): before any Unicode
    whitespace character, an ASCII punctuation mark or (with ``handle_chinese_chars``) a CJK
    ideograph -- nothing after such a character changes the words before it. Whitespace-splitting
    pre-tokenizers: before a whitespace character that follows a non-whitespace one; Metaspace
    (which splits on the space only): before a space that follows a non-space.
    """
    pre = tokenizer.pre_tokenizer
    ws = _separating_whitespace(tokenizer)
    if isinstance(pre, pre_tokenizers.BertPreTokenizer):
        chars = ws + re.escape(string.punctuation)
        norm = tokenizer.normalizer
        if isinstance(norm, normalizers.BertNormalizer) and norm.handle_chinese_chars:
            chars += _CJK
        return re.compile(f"[{chars}]")
    if isinstance(pre, (pre_tokenizers.WhitespaceSplit, pre_tokenizers.Whitespace)):
        return re.compile(f"(?<![{ws}])[{ws}]")
    if isinstance(pre, pre_tokenizers.Metaspace):
        return re.compile("(?<! ) ")
    return None


def _separating_whitespace(tokenizer: Tokenizer) -> str:
    """The Unicode whitespace characters that separate words for this tokenizer, as a regex class body.

    Checked by behaviour: ``"a<c>b"`` must encode like ``"a b"``. A normalizer may delete a character
    instead (BERT's ``clean_text`` removes VT, FF and NEL as control characters, joining the words
    around them): cutting there would change the ids, so such characters are left out.
    """
    expected = tokenizer.encode("a b", add_special_tokens=False).ids
    chars = [c for c in map(chr, _WHITESPACE_CODES) if tokenizer.encode(f"a{c}b", add_special_tokens=False).ids == expected]
    return "".join(re.escape(c) for c in chars) or " "


def _safe_cut(text: str, start: int, cut: re.Pattern[str], added: Sequence[str]) -> int | None:
    """The first cut point at or after ``start`` that is not inside or next to an added token (``[MASK]``...).

    Added tokens are matched in the raw text before pre-tokenization, so cutting ``"[MASK]"`` after
    ``"[MASK"`` would change its ids. ``None`` when there is none within 1,000 candidates.
    """
    for n, m in enumerate(cut.finditer(text, start)):
        if n == 1000:
            return None
        j = m.start()
        if not any(a in text[max(0, j - len(a)) : j + len(a)].casefold() for a in added):
            return j
    return None


def _clip(tokenizer: Tokenizer, text: str, max_length: int, cut: re.Pattern[str]) -> str:
    """A prefix of ``text`` that tokenizes (with truncation) to the same ids as ``text``, or ``text`` itself.

    Tokenizing a 10 MB text costs seconds and gigabytes even though only ``max_length`` ids are kept:
    cut it at a safe boundary (:func:`_cut_points`, :func:`_safe_cut`) once the prefix alone fills the
    limit. As a guard, the cut is only taken when a prefix twice as long gives the same ids. A text
    with no safe boundary (one 10 MB word) is tokenized whole.
    """
    added = [t.content.casefold() for t in tokenizer.get_added_tokens_decoder().values() if t.content]
    k = max(1024, _CLIP_CHARS_PER_TOKEN * max_length)
    while 4 * k <= len(text):
        j = _safe_cut(text, k, cut, added)
        if j is None:
            return text
        ids = tokenizer.encode(text[:j], add_special_tokens=True).ids
        if len(ids) >= max_length:
            j2 = _safe_cut(text, 2 * j, cut, added)
            if j2 is None:
                return text
            if tokenizer.encode(text[:j2], add_special_tokens=True).ids == ids:
                return text[:j]
        k *= 4
    return text


def tokenize(tokenizer: Tokenizer, texts: Sequence[str], prep: TextPrep = TextPrep()) -> list[list[int]]:
    """Token ids of ``[CLS] text [SEP]`` per text (``tokenizer`` from :func:`truncating`), each text first
    stripped and/or lower-cased as ``prep`` says.

    Very long texts are cut (exactly, see :func:`_clip`) before tokenizing, so time and memory stay
    bounded. A text holding a lone surrogate raises :class:`InvalidTextError`.
    """
    texts = list(texts)
    if prep.strip:
        texts = [t.strip() if isinstance(t, str) else t for t in texts]
    if prep.lower:
        texts = [t.lower() if isinstance(t, str) else t for t in texts]
    limit = (tokenizer.truncation or {}).get("max_length")
    try:
        if limit and any(len(t) >= 4 * max(1024, _CLIP_CHARS_PER_TOKEN * limit) for t in texts):
            cut = _cut_points(tokenizer)
            if cut is not None:
                for i, t in enumerate(texts):
                    if len(t) >= 4 * max(1024, _CLIP_CHARS_PER_TOKEN * limit):
                        check_text(i, t)  # before cutting: a bad character past the cut is still an error
                        texts[i] = _clip(tokenizer, t, limit, cut)
        return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=True)]
    except TypeError:
        for i, t in enumerate(texts):
            check_text(i, t)
        raise


def check_text(i: int, t: object) -> None:
    """Raise :class:`ArgumentError` (a ``TypeError``) unless ``t`` is a ``str``, :class:`InvalidTextError` if it holds a lone surrogate.

    ``i`` is the item's position in the caller's input, named in the message.
    """
    if not isinstance(t, str):
        raise ArgumentError(f"item {i} is {type(t).__name__}, not str; every text must be a str")
    if t.isascii():  # O(1) in CPython
        return
    try:
        t.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidTextError(
            f"item {i} holds the lone surrogate {t[e.start]!r} at offset {e.start}: it is not valid Unicode and "
            "cannot be UTF-8 encoded (typically bytes decoded with errors='surrogateescape'). Clean it first, e.g. "
            "text.encode('utf-8', 'replace').decode('utf-8').",
            i,
            e.start,
        ) from None


def _with_marker(
    ids: Sequence[Sequence[int]], width: int, pad: int, marker: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` of shape ``(len(ids), width)``: each ``[CLS] text [SEP]`` with
    ``marker`` inserted at position 1 (none when ``None``), right-padded with ``pad`` (attention 0)."""
    input_ids = np.full((len(ids), width), pad, dtype=np.int64)
    attention = np.zeros((len(ids), width), dtype=np.int64)
    shift = 0 if marker is None else 1
    for i, seq in enumerate(ids):
        m = len(seq)
        if m == 0:
            raise ModelLoadError("The tokenizer produced no tokens (no [CLS]/[SEP] post-processor); re-export the model.")
        input_ids[i, 0] = seq[0]
        input_ids[i, 1 + shift : m + shift] = seq[1:]
        attention[i, : m + shift] = 1
    if marker is not None:
        input_ids[:, 1] = marker
    return input_ids, attention


def _id(token: Token | None) -> int | None:
    if token is None:
        return None
    if token.id is None:
        raise ModelLoadError(f"the rules' token {token.token!r} has no id; resolve the rules with lightcol.rules.resolve_rules first")
    return token.id


def build_queries(ids: Sequence[Sequence[int]], rules: EncodingRules) -> Batch:
    """Query batch from :func:`tokenize` output: marker at 1; with query expansion padded with the mask
    token to ``query_length`` (every row kept), else padded to the longest (attended rows kept)."""
    marker, pad = _id(rules.query_marker), _id(rules.pad_token)
    assert pad is not None
    if not rules.do_query_expansion:
        width = max((len(s) for s in ids), default=1) + (marker is not None)
        input_ids, attention = _with_marker(ids, width, pad, marker)
        return Batch(input_ids, attention, attention.astype(bool))
    mask = _id(rules.mask_token)
    assert mask is not None  # parse_rules: expansion needs a mask token
    n, length = len(ids), rules.query_length
    input_ids, attention = _with_marker(ids, length, pad, marker)
    input_ids[input_ids == pad] = mask
    if rules.attend_to_expansion_tokens:
        attention[input_ids == mask] = 1
    return Batch(input_ids, attention, np.ones((n, length), dtype=bool))


def build_documents(ids: Sequence[Sequence[int]], rules: EncodingRules, skip: np.ndarray) -> Batch:
    """Document batch from :func:`tokenize` output: marker at 1, padded to the longest; ``keep`` is the
    attended tokens whose ids are not in ``skip`` (:func:`skiplist_ids`)."""
    marker, pad = _id(rules.document_marker), _id(rules.pad_token)
    assert pad is not None
    width = max((len(s) for s in ids), default=1) + (marker is not None)
    input_ids, attention = _with_marker(ids, width, pad, marker)
    keep = attention.astype(bool)
    if len(skip):
        keep &= ~np.isin(input_ids, skip)
    return Batch(input_ids, attention, keep)
