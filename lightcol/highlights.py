"""Why a passage matched: the tokens its MaxSim picks, as character spans of its text.

MaxSim scores a passage by taking, for each query token, the passage token most similar to it. Those
argmax tokens are the match's evidence: :func:`highlight` re-embeds the passages (the model's exact
vectors, on either backend), finds each query token's argmax, and maps the passage tokens back to
character offsets with the tokenizer's offsets (``[CLS]``, the document marker and ``[SEP]`` have
none and are left out). Adjacent tokens (pieces of one word) merge into one span; a span's ``score``
is the sum of the similarities of the query tokens that chose it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["token_spans", "highlight"]


def token_spans(model: Any, text: str) -> list[tuple[int, int] | None]:
    """Per vector of ``model.embed([text])`` (same order), the ``(start, end)`` characters of its token
    in ``text``, or ``None`` for ``[CLS]``, the document marker and ``[SEP]``."""
    enc = model._doc_tokenizer.encode(text, add_special_tokens=True)
    special = enc.special_tokens_mask
    ids = [enc.ids[0], -1, *enc.ids[1:]]  # the marker goes at position 1 (build_documents)
    offs: list[tuple[int, int] | None] = [None, None]
    offs += [None if special[i] else enc.offsets[i] for i in range(1, len(enc.ids))]
    keep = ~np.isin(np.asarray(ids, dtype=np.int64), model._skip)
    keep[1] = True
    return [o for o, kept in zip(offs, keep.tolist(), strict=True) if kept]


def highlight(model: Any, query_vectors: np.ndarray, texts: list[str]) -> list[list[dict[str, Any]]]:
    """For each text, its spans that the query's tokens match best: ``[{"start", "end", "text",
    "score"}]`` in text order (see the module doc)."""
    if not texts:
        return []
    q = np.asarray(query_vectors, dtype=np.float32)
    out = []
    for text, vectors in zip(texts, model.embed(texts), strict=True):
        spans = token_spans(model, text)
        if len(spans) != len(vectors):  # a tokenizer whose offsets do not line up: no evidence to show
            out.append([])
            continue
        sim = q @ np.asarray(vectors, dtype=np.float32).T
        best = sim.argmax(axis=1)
        weight: dict[tuple[int, int], float] = {}
        for row, col in enumerate(best.tolist()):
            span = spans[col]
            if span is not None and span[1] > span[0]:
                weight[span] = weight.get(span, 0.0) + float(sim[row, col])
        merged: list[list[Any]] = []
        for (s, e), w in sorted(weight.items()):
            if merged and s <= merged[-1][1] and not text[merged[-1][1]:s].strip():
                merged[-1][1] = max(merged[-1][1], e)
                merged[-1][2] += w
            else:
                merged.append([s, e, w])
        out.append([{"start": s, "end": e, "text": text[s:e], "score": round(w, 6)} for s, e, w in merged])
    return out
