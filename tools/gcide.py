"""Definitions of Debian's dict-gcide as a real-text passage corpus, embedded once and cached.

    python tools/gcide.py --n 200000          # embed (resumable; chunks of 10k under /work/cache/gcide)
    from gcide import load_passages, load_vectors, queries

Passages: every distinct entry of ``/usr/share/dictd/gcide.{index,dict.dz}`` (dictd index + dictzip
data, which gzip reads), whitespace-normalised and cut to 700 characters, in a fixed shuffled order
(seed 0), so any prefix is a random sample. Held-out queries (:func:`queries`) come from entries
that are *not* among the embedded passages, in two kinds:

* ``"describe"`` (the default): a reverse-dictionary query, the first 16 words of a held-out entry's
  definition with its headword, pronunciation, etymology and part of speech removed ("A scraping tool
  for smoothing metal."): content words, the way people search;
* ``"meaning"``: ``"meaning of <headword>"`` - three or four word pieces, so 27 of the 32 query
  tokens are [MASK] expansion tokens; with the benchmark model's untrained head the exact MaxSim
  scores of the top documents are then nearly tied (median gap rank 10 - rank 11: 0.023 on scores
  of about 14), which makes recall against exhaustive search measure tie-breaking noise.

The cache holds, per chunk ``chunk_NNNN.npz``: float16 ``vectors`` (tokens, dim) and int64 ``lengths``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

DICT_DIR = Path("/usr/share/dictd")
CACHE = Path(os.environ.get("LIGHTCOL_GCIDE_CACHE", "/work/cache/gcide"))
MODEL = Path(__file__).resolve().parent.parent / ".bench" / "minilm-colbert-onnx"
CHUNK = 10_000
_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _b64(s: str) -> int:
    v = 0
    for c in s:
        v = v * 64 + _B64[c]
    return v


def _entries() -> list[tuple[str, str]]:
    """(headword, text) of every distinct entry, in a fixed shuffled order."""
    data = gzip.open(DICT_DIR / "gcide.dict.dz").read()
    seen: dict[tuple[int, int], str] = {}
    for line in (DICT_DIR / "gcide.index").read_text(encoding="utf-8").splitlines():
        head, off, n = line.split("\t")
        if head.startswith("00-"):
            continue
        seen.setdefault((_b64(off), _b64(n)), head)
    out = []
    for (off, n), head in sorted(seen.items()):
        text = " ".join(data[off : off + n].decode("utf-8", "replace").split())[:700]
        if len(text) > 20:
            out.append((head, text))
    random.Random(0).shuffle(out)
    return out


def load_passages(n: int) -> list[str]:
    """The first ``n`` passages (texts) in the fixed order."""
    return [t for _, t in _entries()[:n]]


_POS = re.compile(
    r"(?:^|[\s,])(?:n|a|adv|v|v\. t|v\. i|v\. t\. & i|prep|pron|conj|interj|p\. p|p\. a|imp|pl|adj|vb)\.(?=[\s,;])"
)


def _description(head: str, text: str) -> str | None:
    """The start of an entry's definition without headword, pronunciation, etymology, part of speech."""
    s = re.sub(r"\\[^\\]*\\", " ", text)  # \Pro*nun"ci*a`tion\
    while True:  # [etymology], innermost brackets first
        t = re.sub(r"\[[^\[\]]*\]", " ", s)
        if t == s:
            break
        s = t
    s = re.sub(r"\([^()]*\)", " ", s).replace("{", "").replace("}", "")
    pos = None
    for pos in _POS.finditer(s[:120]):
        pass
    if pos is None:
        return None
    s = re.sub(re.escape(head), " ", s[pos.end():], flags=re.I)
    s = re.sub(r"^[\s,;.&]*(?:[ti]\.)?[\s,;.]*", "", s)
    s = re.sub(r"^\d+\.\s*", "", s)
    s = re.sub(r"--\s*\S+", " ", s)
    words = s.split()
    if len(words) < 5 or words[0].lower().startswith("see") or words[0].lower() in ("same", "plural"):
        return None
    return " ".join(words[:16])


def queries(n_passages: int, n_queries: int, seed: int = 1, kind: str = "describe") -> list[str]:
    """``n_queries`` held-out queries from entries beyond the first ``n_passages`` (see the module doc)."""
    rest = _entries()[n_passages:]
    if kind == "meaning":
        heads = [h for h, _ in rest if any(c.isalpha() for c in h)]
        return [f"meaning of {h}" for h in random.Random(seed).sample(heads, n_queries)]
    if kind != "describe":
        raise ValueError(f"kind must be 'describe' or 'meaning'; got {kind!r}")
    found = [d for d in (_description(h, t) for h, t in rest) if d]
    return random.Random(seed).sample(found, n_queries)


def load_vectors(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached float16 vectors and int64 offsets of the first ``n`` passages (whole chunks)."""
    vecs, lens = [], []
    have = 0
    for i in range((n + CHUNK - 1) // CHUNK):
        f = CACHE / f"chunk_{i:04d}.npz"
        if not f.exists():
            raise SystemExit(f"{f} missing: run tools/gcide.py --n {n} first")
        with np.load(f) as z:
            vecs.append(z["vectors"])
            lens.append(z["lengths"])
        have += len(lens[-1])
    lengths = np.concatenate(lens)[:n]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.concatenate(vecs)[: offsets[-1]], offsets


def cached_count() -> int:
    """Passages embedded so far (complete chunks)."""
    i = 0
    while (CACHE / f"chunk_{i:04d}.npz").exists():
        i += 1
    return i * CHUNK


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from lightcol import LateInteractionTextEmbedding

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    texts = load_passages(args.n)
    model = LateInteractionTextEmbedding(specific_model_path=MODEL, threads=args.threads)
    for i in range(0, len(texts), CHUNK):
        f = CACHE / f"chunk_{i // CHUNK:04d}.npz"
        if f.exists():
            continue
        t0 = time.time()
        embs = list(model.embed(texts[i : i + CHUNK], batch_size=64, dtype="float16"))
        lengths = np.array([len(e) for e in embs], dtype=np.int64)
        tmp = f.with_suffix(".tmp.npz")
        np.savez(tmp, vectors=np.concatenate(embs), lengths=lengths)
        os.replace(tmp, f)
        print(f"chunk {i // CHUNK}: {len(embs)} docs, {lengths.sum()} tokens, {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
