"""Tokenization rules: texts -> token id arrays, exactly as colbert-ai's Query/DocTokenizer build them.

Pure functions over a ``tokenizers.Tokenizer`` and :class:`~lightcol.registry.EncodingRules`:

* both kinds: ``[CLS] text [SEP]`` truncated to ``length - 1`` tokens, then the marker inserted at
  position 1, so the sequence never exceeds ``length`` (specials and marker included);
* queries: padded to ``query_length``, every pad id replaced by the mask token (query expansion);
  the expansion tokens are attended to when ``attend_to_expansion_tokens`` is set;
* documents: padded to the longest in the batch; the rows kept in the output are the tokens that
  are neither padding nor in the punctuation skiplist (when ``skiplist`` is set).
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, normalizers

from lightcol.errors import ModelLoadError
from lightcol.registry import EncodingRules


@dataclass(frozen=True)
class Batch:
    """Model inputs for a batch of texts, plus which output rows each text keeps."""

    input_ids: np.ndarray  # int64 (batch, seq)
    attention_mask: np.ndarray  # int64 (batch, seq)
    keep: np.ndarray  # bool (batch, seq): rows of the output that belong to each text


def _normalizer_lowercases(tokenizer: Tokenizer) -> bool:
    def walk(node: object) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "Lowercase" or node.get("lowercase") is True:
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(json.loads(tokenizer.to_str()).get("normalizer"))


def load_tokenizer(path: str | Path, rules: EncodingRules) -> Tokenizer:
    """Load ``tokenizer.json`` and check it against the rules (marker, mask and pad ids, lowercasing).

    Raises :class:`ModelLoadError` naming the file when it is missing, unreadable, or belongs to
    another model (the rules' special tokens have other ids in it).
    """
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
    for name in ("query_marker", "document_marker", "mask_token", "pad_token"):
        tok = getattr(rules, name)
        found = tokenizer.token_to_id(tok.token)
        if found != tok.id:
            raise ModelLoadError(
                f"Tokenizer file {path} maps {name} {tok.token!r} to id {found}, but the model's rules say {tok.id}: "
                "the folder holds another model's tokenizer. Use the tokenizer the model was exported with."
            )
    if rules.lowercase and not _normalizer_lowercases(tokenizer):
        # The rules say the model sees lower-cased text: make the tokenizer do it (native code).
        current = tokenizer.normalizer
        steps = [current, normalizers.Lowercase()] if current is not None else [normalizers.Lowercase()]
        tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def skiplist_ids(tokenizer: Tokenizer, rules: EncodingRules) -> np.ndarray:
    """Ids dropped from document outputs: padding, plus punctuation when the skiplist is on.

    As colbert-ai: for each character of ``string.punctuation``, the first id it encodes to.
    """
    ids = {rules.pad_token.id}
    if rules.skiplist:
        for symbol in string.punctuation:
            enc = tokenizer.encode(symbol, add_special_tokens=False).ids
            if enc:
                ids.add(enc[0])
    return np.array(sorted(ids), dtype=np.int64)


def truncating(tokenizer: Tokenizer, length: int) -> Tokenizer:
    """A copy of ``tokenizer`` that truncates ``[CLS] text [SEP]`` to ``length - 1`` ids (room for the marker).

    Each kind of text gets its own copy, so encoding never mutates shared state (thread-safe).
    """
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.enable_truncation(max_length=length - 1)
    copy.no_padding()
    return copy


def tokenize(tokenizer: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of ``[CLS] text [SEP]`` per text (``tokenizer`` from :func:`truncating`)."""
    return [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=True)]


def build_queries(ids: Sequence[Sequence[int]], rules: EncodingRules) -> Batch:
    """Query batch from :func:`tokenize` output: marker at 1, padded with the mask token to ``query_length``."""
    n, length = len(ids), rules.query_length
    input_ids = np.full((n, length), rules.pad_token.id, dtype=np.int64)
    attention = np.zeros((n, length), dtype=np.int64)
    for i, seq in enumerate(ids):
        m = len(seq)
        if m == 0:
            raise ModelLoadError("The tokenizer produced no tokens (no [CLS]/[SEP] post-processor); re-export the model.")
        input_ids[i, 0] = seq[0]
        input_ids[i, 2 : m + 1] = seq[1:]
        attention[i, : m + 1] = 1
    input_ids[:, 1] = rules.query_marker.id
    input_ids[input_ids == rules.pad_token.id] = rules.mask_token.id
    if rules.attend_to_expansion_tokens:
        attention[input_ids == rules.mask_token.id] = 1
    return Batch(input_ids, attention, np.ones((n, length), dtype=bool))


def build_documents(ids: Sequence[Sequence[int]], rules: EncodingRules, skip: np.ndarray) -> Batch:
    """Document batch from :func:`tokenize` output: marker at 1, padded to the longest; ``keep`` drops pads and skiplist ids."""
    n = len(ids)
    width = max((len(s) for s in ids), default=1) + 1
    input_ids = np.full((n, width), rules.pad_token.id, dtype=np.int64)
    attention = np.zeros((n, width), dtype=np.int64)
    for i, seq in enumerate(ids):
        m = len(seq)
        if m == 0:
            raise ModelLoadError("The tokenizer produced no tokens (no [CLS]/[SEP] post-processor); re-export the model.")
        input_ids[i, 0] = seq[0]
        input_ids[i, 2 : m + 1] = seq[1:]
        attention[i, : m + 1] = 1
    input_ids[:, 1] = rules.document_marker.id
    keep = ~np.isin(input_ids, skip)
    return Batch(input_ids, attention, keep)
