"""Read the CISI test collection (``../shared/data/cisi`` beside the checkout) for benchmarks and quality checks.

    from cisi import load_cisi
    docs, queries, qrels = load_cisi()   # {id: text}, {id: text}, {query id: {doc ids}}

The collection is read where it lies; it is not part of the repository.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cisi"


def cisi_dir() -> Path:
    """``$LIGHTCOL_CISI_DIR``, else ``../shared/data/cisi`` relative to the repository root."""
    path = Path(os.environ.get("LIGHTCOL_CISI_DIR", DEFAULT_DIR))
    if not (path / "CISI.ALL").is_file():
        raise SystemExit(f"CISI not found in {path}: set LIGHTCOL_CISI_DIR to the folder holding CISI.ALL")
    return path


def _records(text: str, fields: str) -> dict[int, str]:
    """``.I`` records; the text of the wanted ``fields`` (e.g. "TW") joined with a blank."""
    out: dict[int, str] = {}
    for block in re.split(r"^\.I\s+", text, flags=re.M)[1:]:
        head, _, body = block.partition("\n")
        parts = re.split(r"^\.([A-Z])\s*$", "\n" + body, flags=re.M)
        wanted = [" ".join(parts[i + 1].split()) for i in range(1, len(parts) - 1, 2) if parts[i] in fields]
        out[int(head.strip())] = " ".join(w for w in wanted if w)
    return out


def load_cisi(folder: Path | None = None) -> tuple[dict[int, str], dict[int, str], dict[int, set[int]]]:
    """Documents (title + abstract), queries, and relevance judgments."""
    folder = folder or cisi_dir()
    docs = _records((folder / "CISI.ALL").read_text(encoding="utf-8", errors="replace"), "TW")
    queries = _records((folder / "CISI.QRY").read_text(encoding="utf-8", errors="replace"), "TW")
    qrels: dict[int, set[int]] = {}
    for line in (folder / "CISI.REL").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            qrels.setdefault(int(parts[0]), set()).add(int(parts[1]))
    return docs, queries, qrels


def ndcg_at_k(ranked: list, judged: set, k: int = 10) -> float:
    """nDCG@k of one ranking (ids, best first) against the set of relevant ids (binary gains)."""
    import math

    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in judged)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(judged))))
    return dcg / ideal if ideal else 0.0


def ndcg_at(ranked: list[list[int]], relevant: list[set[int]], k: int = 10) -> float:
    """Mean binary-gain nDCG@k over queries (``ranked``: doc ids best first; queries without judgments skipped)."""
    scores = [ndcg_at_k(ids, rel, k) for ids, rel in zip(ranked, relevant, strict=True) if rel]
    return sum(scores) / len(scores)


def recall_at(ranked: list[list[int]], relevant: list[set[int]], k: int) -> float:
    """Mean fraction of each query's judged documents found in its top k (queries without judgments skipped)."""
    scores = [len(set(ids[:k]) & rel) / len(rel) for ids, rel in zip(ranked, relevant, strict=True) if rel]
    return sum(scores) / len(scores)


def overlap_at(ranked: list[list[int]], reference: list[list[int]], k: int) -> float:
    """Mean fraction of the reference's top k found in ``ranked`` (e.g. recall vs exhaustive MaxSim)."""
    scores = [len(set(a) & set(b[:k])) / len(b[:k]) for a, b in zip(ranked, reference, strict=True)]
    return sum(scores) / len(scores)


def embedded(model_dir: Path, cache: Path | None = None, batch_size: int = 32):
    """CISI embedded with the model in ``model_dir``, cached in ``cache`` (an .npz): (doc ids, doc vectors,
    query ids, query vectors, qrels, embedding seconds)."""
    import time

    import numpy as np

    docs, queries, qrels = load_cisi()
    if cache is not None and cache.is_file():
        z = np.load(cache)
        off, vectors = z["offsets"], z["vectors"]  # each z[...] reads the member again: read once
        dv = [vectors[off[i] : off[i + 1]] for i in range(len(off) - 1)]
        qv = list(z["queries"])
        return list(docs), dv, list(queries), qv, qrels, float(z["seconds"])
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from lightcol import LateInteractionTextEmbedding

    model = LateInteractionTextEmbedding(specific_model_path=model_dir, cuda=False)
    t = time.perf_counter()
    dv = list(model.embed(list(docs.values()), batch_size=batch_size))
    seconds = time.perf_counter() - t
    qv = list(model.query_embed(list(queries.values())))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        off = np.cumsum([0] + [len(v) for v in dv])
        np.savez(cache, vectors=np.concatenate(dv), offsets=off, queries=np.stack(qv), seconds=seconds)
    return list(docs), dv, list(queries), qv, qrels, seconds


if __name__ == "__main__":
    d, q, r = load_cisi()
    print(f"{len(d)} documents, {len(q)} queries, {len(r)} judged queries")
