"""What the benchmarks share: timing, data sets and tables.

Every benchmark is a script in this folder (``python benchmarks/bench_x.py``); Python puts this
folder on ``sys.path``, so they ``import common``, and importing it puts the checkout's ``lightcol``
first on ``sys.path`` (the code being measured is this checkout's, not an installed copy).

* timing: :func:`timed`, :func:`best_of`, :func:`latencies_ms`, :func:`p50_p99`, :func:`gemm_flops`,
  peak and current RSS;
* data: the CISI test collection (:func:`load_cisi`: ``$LIGHTCOL_CISI_DIR``, default
  ``../shared/data/cisi`` beside the checkout) with its metrics (:func:`ndcg_at`, :func:`recall_at`,
  :func:`overlap_at`) and a vector cache (:func:`embedded_cisi`); Debian's dict-gcide definitions as
  passages and held-out queries (:func:`gcide_passages`, :func:`gcide_queries`), embedded once by
  ``benchmarks/embed_gcide.py`` into ``$LIGHTCOL_GCIDE_CACHE`` (default ``.bench/gcide``);
  the MiniLM benchmark model (:data:`BENCH_MODEL`, made by ``tools/make_bench_model.py``);
* tables: :func:`print_table` prints a Markdown table.

Nothing here imports lightcol at import time: some benchmarks run parts of themselves in another
library's environment (``.venv-fastembed``, ``.venv-colbert``).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
import re
import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH = ROOT / ".bench"  # gitignored: models and caches the benchmarks make
BENCH_MODEL = BENCH / "minilm-colbert-onnx"  # tools/make_bench_model.py: MiniLM-L6 encoder, 128-dim head, int8 too
BENCH_CHECKPOINT = BENCH / "minilm-colbert"  # the colbert-ai checkpoint it was exported from
FOREIGN_MODEL = BENCH / "minilm-colbert-foreign"  # tools/make_foreign_export.py: torch.onnx.export defaults
TINY_MODEL = ROOT / "tests" / "fixtures" / "tiny-colbert-onnx"  # the test suite's random tiny model
FASTEMBED_PY = ROOT / ".venv-fastembed" / "bin" / "python"  # tools/setup_dev.sh
COLBERT_PY = ROOT / ".venv-colbert" / "bin" / "python"


def require_bench_model(folder: Path = BENCH_MODEL) -> Path:
    """``folder`` if it holds a model, else exit saying how to make the benchmark model."""
    if not (folder / "model.onnx").is_file():
        raise SystemExit(f"{folder} missing: run python tools/make_bench_model.py first")
    return folder


# ------------------------------------------------------------------------------------------------ timing
def run_child(argv: Sequence[str], what: str) -> dict:
    """Run ``argv`` (a benchmark's step in its own process, often another environment's Python) and
    return the JSON object its last stdout line holds; on failure print its output and exit naming ``what``."""
    import subprocess

    res = subprocess.run(list(argv), check=False, capture_output=True, text=True)
    if res.returncode:
        sys.stderr.write(res.stdout[-4000:] + res.stderr[-8000:])
        raise SystemExit(f"{what} failed (exit {res.returncode})")
    return json.loads(res.stdout.strip().splitlines()[-1])


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` calls of ``fn``, in seconds (the least disturbed by other work)."""
    return min(timed(fn) for _ in range(repeat))


def latencies_ms(fn: Callable[[object], object], items: Iterable, warmup: bool = True) -> list[float]:
    """Milliseconds of ``fn(item)`` for each item, one at a time (after one untimed call on the first)."""
    items = list(items)
    if warmup and items:
        fn(items[0])
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t) * 1000)
    return out


def p50_p99(values: Sequence[float], method: str = "linear") -> tuple[float, float]:
    """Median and 99th percentile. ``method`` is NumPy's: "linear" interpolates; "higher" is the sample
    at index ``n // 2`` and ``int(0.99 * n)`` of the sorted values."""
    p50, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 99], method=method)
    return float(p50), float(p99)


def embed_speed(embed_docs: Callable[[list[str]], int], embed_query: Callable[[str], object], docs: list[str],
                queries: list[str], repeat: int, during: AbstractContextManager | None = None) -> dict[str, float]:
    """An embedder's speed: after a warm-up (16 documents, 5 queries), the best of ``repeat`` passes over
    all ``docs`` (``embed_docs`` returns how many it embedded) and the latency of each query alone, p50 and
    p99 (the samples at ``n // 2`` and ``int(0.99 * n)``); ``during``: a context the timing runs in."""
    embed_docs(docs[:16])
    for q in queries[:5]:
        embed_query(q)
    counted: list[int] = []
    with during or nullcontext():
        best = best_of(lambda: counted.append(embed_docs(docs)), repeat)
        p50, p99 = p50_p99(latencies_ms(embed_query, queries, warmup=False), method="higher")
    assert counted[-1] == len(docs), (counted[-1], len(docs))
    return {"doc_seconds": best, "docs_s": len(docs) / best, "p50_ms": p50, "p99_ms": p99}


def gemm_flops(m: int, k: int, n: int, rounds: int = 10) -> float:
    """FLOP/s of NumPy's float32 ``(m, k) @ (k, n)`` product: best of ``rounds`` after a warm-up."""
    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    np.matmul(a, b, out=out)
    return 2 * m * k * n / best_of(lambda: np.matmul(a, b, out=out), rounds)


def rss_mib() -> float:
    """This process's resident memory now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib(source: str = "maxrss") -> float:
    """This process's peak resident memory: ``ru_maxrss`` ("maxrss"), or ``VmHWM`` ("hwm": unlike
    ``ru_maxrss`` on Linux, it never counts the pages of the parent that forked this process)."""
    if source == "hwm":
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def machine() -> str:
    """One line: CPUs and the load average (timings on a shared machine need it)."""
    return f"{os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}"


# ------------------------------------------------------------------------------------------------ tables
def table_lines(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table; cells are printed with ``str`` (format numbers before)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def print_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    print("\n".join(table_lines(header, rows)), flush=True)


# -------------------------------------------------------------------------------------------------- CISI
def cisi_dir() -> Path:
    """``$LIGHTCOL_CISI_DIR``, else ``../shared/data/cisi`` beside the checkout."""
    path = Path(os.environ.get("LIGHTCOL_CISI_DIR", ROOT.parent / "shared" / "data" / "cisi"))
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


def load_cisi(fields: str = "TW") -> tuple[dict[int, str], dict[int, str], dict[int, set[int]]]:
    """CISI's documents and queries ({id: text} in file order; ``fields`` "TW": title and text, "W":
    text only) and relevance judgments ({query id: {document ids}}; 76 of the 112 queries have some)."""
    folder = cisi_dir()
    docs = _records((folder / "CISI.ALL").read_text(encoding="utf-8", errors="replace"), fields)
    queries = _records((folder / "CISI.QRY").read_text(encoding="utf-8", errors="replace"), fields)
    qrels: dict[int, set[int]] = {}
    for line in (folder / "CISI.REL").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            qrels.setdefault(int(parts[0]), set()).add(int(parts[1]))
    return docs, queries, qrels


def cisi_texts(n_docs: int) -> tuple[list[str], list[str]]:
    """The first ``n_docs`` CISI abstracts and all 112 queries, text field only: the speed benchmarks' texts."""
    docs, queries, _ = load_cisi("W")
    return list(docs.values())[:n_docs], list(queries.values())


def ndcg_at_k(ranked: list, judged: set, k: int = 10) -> float:
    """nDCG@k of one ranking (ids, best first) against the set of relevant ids (binary gains)."""
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in judged)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(judged))))
    return dcg / ideal if ideal else 0.0


def ndcg_at(ranked: list[list], relevant: list[set], k: int = 10) -> float:
    """Mean nDCG@k over queries (``ranked``: ids best first; queries without judgments skipped)."""
    scores = [ndcg_at_k(ids, rel, k) for ids, rel in zip(ranked, relevant, strict=True) if rel]
    return sum(scores) / len(scores)


def recall_at(ranked: list[list], relevant: list[set], k: int) -> float:
    """Mean share of each query's judged documents in its top k (queries without judgments skipped)."""
    scores = [len(set(ids[:k]) & rel) / len(rel) for ids, rel in zip(ranked, relevant, strict=True) if rel]
    return sum(scores) / len(scores)


def overlap_at(ranked: list[list], reference: list[list], k: int) -> float:
    """Mean share of the reference's top k found in ``ranked`` (e.g. recall against exhaustive MaxSim)."""
    scores = [len(set(a) & set(b[:k])) / len(b[:k]) for a, b in zip(ranked, reference, strict=True)]
    return sum(scores) / len(scores)


def embedded_cisi(model_dir: Path, cache: Path | None = None, batch_size: int = 32):
    """CISI (title + text) embedded with the model in ``model_dir``, cached in ``cache`` (an .npz):
    (doc ids, doc vectors, query ids, query vectors, qrels, embedding seconds)."""
    docs, queries, qrels = load_cisi()
    if cache is not None and cache.is_file():
        z = np.load(cache)
        off, vectors = z["offsets"], z["vectors"]  # each z[...] reads the member again: read once
        dv = [vectors[off[i] : off[i + 1]] for i in range(len(off) - 1)]
        return list(docs), dv, list(queries), list(z["queries"]), qrels, float(z["seconds"])
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


# ------------------------------------------------------------------------------------------------- gcide
#: dict-gcide (``apt-get install dict-gcide``): every distinct entry of the dictd index + dictzip data,
#: whitespace-normalised and cut to 700 characters, in a fixed shuffled order (seed 0), so any prefix
#: is a random sample. Vectors of the benchmark model: ``benchmarks/embed_gcide.py --n N``.
GCIDE_DIR = Path("/usr/share/dictd")
GCIDE_CACHE = Path(os.environ.get("LIGHTCOL_GCIDE_CACHE", BENCH / "gcide"))  # chunk_NNNN.npz: float16 vectors, lengths
GCIDE_CHUNK = 10_000
CISI_CACHE = GCIDE_CACHE.parent / "cisi-minilm.npz"  # embedded_cisi(BENCH_MODEL, CISI_CACHE)
_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _b64(s: str) -> int:
    v = 0
    for c in s:
        v = v * 64 + _B64[c]
    return v


def _gcide_entries() -> list[tuple[str, str]]:
    """(headword, text) of every distinct entry, in the fixed shuffled order."""
    if not (GCIDE_DIR / "gcide.index").is_file():
        raise SystemExit(f"dict-gcide not found in {GCIDE_DIR}: apt-get install dict-gcide")
    data = gzip.open(GCIDE_DIR / "gcide.dict.dz").read()
    seen: dict[tuple[int, int], str] = {}
    for line in (GCIDE_DIR / "gcide.index").read_text(encoding="utf-8").splitlines():
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


def gcide_passages(n: int) -> list[str]:
    """The first ``n`` passages (texts) in the fixed order."""
    return [t for _, t in _gcide_entries()[:n]]


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


def gcide_queries(n_passages: int, n_queries: int, seed: int = 1, kind: str = "describe") -> list[str]:
    """``n_queries`` held-out queries from entries beyond the first ``n_passages``, of two kinds:

    * ``"describe"``: a reverse-dictionary query, the first 16 words of a held-out entry's definition
      without headword, pronunciation, etymology and part of speech ("A scraping tool for smoothing
      metal."): content words, the way people search;
    * ``"meaning"``: ``"meaning of <headword>"``: three or four word pieces, so 27 of 32 query tokens
      are [MASK] expansion tokens; with the benchmark model's untrained head the exact top scores are
      then nearly tied, and recall against exhaustive search measures tie-breaking.
    """
    rest = _gcide_entries()[n_passages:]
    if kind == "meaning":
        heads = [h for h, _ in rest if any(c.isalpha() for c in h)]
        return [f"meaning of {h}" for h in random.Random(seed).sample(heads, n_queries)]
    if kind != "describe":
        raise ValueError(f"kind must be 'describe' or 'meaning'; got {kind!r}")
    found = [d for d in (_description(h, t) for h, t in rest) if d]
    return random.Random(seed).sample(found, n_queries)


def _gcide_chunk(i: int) -> Path:
    return GCIDE_CACHE / f"chunk_{i:04d}.npz"


def gcide_vectors(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached float16 vectors and int64 offsets of the first ``n`` passages."""
    vecs, lens = [], []
    for i in range((n + GCIDE_CHUNK - 1) // GCIDE_CHUNK):
        if not _gcide_chunk(i).exists():
            raise SystemExit(f"{_gcide_chunk(i)} missing: run python benchmarks/embed_gcide.py --n {n} first")
        with np.load(_gcide_chunk(i)) as z:
            vecs.append(z["vectors"])
            lens.append(z["lengths"])
    lengths = np.concatenate(lens)[:n]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.concatenate(vecs)[: offsets[-1]], offsets


def gcide_stream(n: int) -> Iterator[np.ndarray]:
    """Per-passage float16 arrays of the first ``n`` cached passages, one cache chunk in memory at a time."""
    left, i = n, 0
    while left > 0:
        with np.load(_gcide_chunk(i)) as z:
            v, lens = z["vectors"], z["lengths"]
        off = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=off[1:])
        for j in range(min(left, len(lens))):
            yield v[off[j] : off[j + 1]]
        left -= len(lens)
        i += 1


def gcide_query_vectors(n: int, n_queries: int, kind: str = "describe") -> list[np.ndarray]:
    """The benchmark model's vectors of :func:`gcide_queries` (``n`` passages held in), cached."""
    f = GCIDE_CACHE / (f"queries_{n}_{n_queries}.npy" if kind == "meaning" else f"queries_{kind}_{n}_{n_queries}.npy")
    if f.exists():
        return list(np.load(f))
    from lightcol import LateInteractionTextEmbedding

    model = LateInteractionTextEmbedding(specific_model_path=BENCH_MODEL, threads=1)
    qv = np.stack(list(model.query_embed(gcide_queries(n, n_queries, kind=kind))))
    np.save(f, qv)
    return list(qv)


# ----------------------------------------------------------------------------------------- other engines
def fastembed_view(model_dir: Path, view: Path, max_length: int | None) -> Path:
    """A folder FastEmbed loads as colbertv2.0 with ``model_dir``'s files (linked), truncating documents
    at ``max_length`` tokens (``model_max_length`` of tokenizer_config.json; None: as the folder says)."""
    view.mkdir(exist_ok=True)
    for f in ("model.onnx", "tokenizer.json", "config.json"):
        link, target = view / f, (model_dir / f).resolve()
        if link.is_symlink() and Path(os.readlink(link)) != target:
            link.unlink()  # dangling, or made from another checkout
        if not link.exists():
            link.symlink_to(target)
    tok = json.loads((model_dir / "tokenizer_config.json").read_text())
    if max_length is not None:
        tok["model_max_length"] = max_length
    (view / "tokenizer_config.json").unlink(missing_ok=True)  # never write through a link into the model
    (view / "tokenizer_config.json").write_text(json.dumps(tok))
    (view / "special_tokens_map.json").write_text(json.dumps(
        {k: tok[k] for k in ("cls_token", "sep_token", "pad_token", "mask_token", "unk_token") if k in tok}))
    return view


def document_length(model_dir: Path) -> int:
    """The document length of a lightcol model folder's rules."""
    return json.loads((model_dir / "lightcol_config.json").read_text())["rules"]["document_length"]
