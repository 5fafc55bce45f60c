"""Definitions of Debian's dict-gcide as a real-text passage corpus, embedded once and cached.

    python tools/gcide.py --n 200000          # embed (resumable; chunks of 10k under /work/cache/gcide)
    from gcide import load_passages, load_vectors, queries

Passages: every distinct entry of ``/usr/share/dictd/gcide.{index,dict.dz}`` (dictd index + dictzip
data, which gzip reads), whitespace-normalised and cut to 700 characters, in a fixed shuffled order
(seed 0), so any prefix is a random sample. Held-out queries (:func:`queries`): short query-like
strings built from headwords whose entries are *not* among the embedded passages
("meaning of <headword>"), so no query is a copy of a passage.

The cache holds, per chunk ``chunk_NNNN.npz``: float16 ``vectors`` (tokens, dim) and int64 ``lengths``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
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


def queries(n_passages: int, n_queries: int, seed: int = 1) -> list[str]:
    """``n_queries`` held-out queries: headwords of entries beyond the first ``n_passages``."""
    rest = [h for h, _ in _entries()[n_passages:] if any(c.isalpha() for c in h)]
    pick = random.Random(seed).sample(rest, n_queries)
    return [f"meaning of {h}" for h in pick]


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
