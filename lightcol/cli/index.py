"""``lightcol index build INDEX --jsonl FILE ...`` and ``lightcol index search INDEX QUERY ...``."""

from __future__ import annotations

import argparse
import collections
import json
import sys
from collections.abc import Iterator
from typing import Any

from lightcol.cli import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("index", help="build or search a compressed on-disk index (lightcol.Index)",
                       description="Build a compressed, memory-mapped ColBERT index file, or search one.")
    cmds = p.add_subparsers(dest="index_command", metavar="{build,search}")
    cmds.required = True
    b = cmds.add_parser("build", help="embed texts (JSONL) and write an index file",
                        description="Embed the texts of a JSONL file (one object per line) and write INDEX atomically.")
    b.add_argument("index", metavar="INDEX", help="index file to write (replaced atomically)")
    b.add_argument("--jsonl", metavar="FILE", required=True, help="documents, one JSON object per line ('-': stdin)")
    b.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    b.add_argument("--id-field", default="id", help="field holding the id (default: id; missing: line number)")
    _model_args(b)
    b.add_argument("--nbits", type=int, default=2, choices=(1, 2, 4, 8), help="residual bits per dimension (default 2)")
    b.add_argument("--centroids", type=int, default=None, metavar="N", help="k-means centroids (default: automatic)")
    b.add_argument("--seed", type=int, default=0, help="seed of the codec training (default 0)")
    b.add_argument("--keep-full", action="store_true", help="also keep float16 vectors in INDEX.full (search --exact)")
    b.add_argument("--batch-size", type=int, default=64, help="texts per ONNX Runtime call (default 64)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    b.set_defaults(run=run_build)
    s = cmds.add_parser("search", help="search an index with text queries; prints one JSON line per query",
                        description="Embed each QUERY (or each line of --queries) and print "
                                    '{"query": ..., "results": [{"id": ..., "score": ...}, ...]} per query.')
    s.add_argument("index", metavar="INDEX", help="index file written by 'lightcol index build'")
    s.add_argument("queries", nargs="*", metavar="QUERY", help="query texts")
    s.add_argument("--queries-file", metavar="FILE", help="more queries, one per line ('-': stdin)")
    s.add_argument("-k", "--k", type=int, default=10, help="results per query (default 10)")
    s.add_argument("--exact", action="store_true", help="final scores from the full-precision side file")
    _model_args(s, default_from_index=True)
    s.set_defaults(run=run_search)


def _model_args(p: argparse.ArgumentParser, default_from_index: bool = False) -> None:
    extra = " (default: the model the index was built with)" if default_from_index else ""
    p.add_argument("--model", metavar="NAME", help=f"model name from 'lightcol models'{extra}")
    p.add_argument("--model-path", metavar="DIR", help=f"local model folder{extra}")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")


def _embedder(args: argparse.Namespace, meta: dict[str, Any] | None = None) -> Any:
    from lightcol import LateInteractionTextEmbedding

    name, path = args.model, args.model_path
    if name is None and path is None and meta is not None:
        name, path = meta.get("model"), meta.get("model_path")
    if name is None and path is None:
        raise UsageError("give --model NAME or --model-path DIR")
    return LateInteractionTextEmbedding(name if path is None else None, specific_model_path=path,
                                        threads=args.threads, cuda=False)


def _jsonl(path: str, text_field: str, id_field: str, ids: collections.deque[Any]) -> Iterator[str]:
    """Texts of a JSONL file; each record's id is appended to ``ids`` as its text is read."""
    f = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get(text_field), str):
                raise UsageError(f"{path}:{n}: expected an object with a string field {text_field!r}")
            ids.append(rec.get(id_field, n - 1))
            yield rec[text_field]


def run_build(args: argparse.Namespace) -> int:
    from lightcol import Index

    model = _embedder(args)
    ids: collections.deque[Any] = collections.deque()
    texts = _jsonl(args.jsonl, args.text_field, args.id_field, ids)
    index = Index.build(
        args.index, _drain_lazy(ids), model.embed(texts, batch_size=args.batch_size), nbits=args.nbits,
        n_centroids=args.centroids, model=model.model_name, seed=args.seed, keep_full=args.keep_full,
        show_progress=not args.quiet,
        extra_meta={"model_path": str(model.model_dir)} if args.model_path else None,
    )
    print(f"{index.path}: {len(index)} documents, {index.n_tokens} vectors, nbits={index.nbits}")
    return 0


def _drain_lazy(ids: collections.deque[Any]) -> Iterator[Any]:
    """Ids in order; the text reader runs ahead of the embedder, so each id is there when needed."""
    while True:
        if not ids:
            return
        yield ids.popleft()


def run_search(args: argparse.Namespace) -> int:
    from lightcol import Index

    queries = list(args.queries)
    if args.queries_file:
        f = sys.stdin if args.queries_file == "-" else open(args.queries_file, encoding="utf-8")
        with f:
            queries += [line.rstrip("\n") for line in f if line.strip()]
    if not queries:
        raise UsageError("give at least one QUERY or --queries-file")
    index = Index.open(args.index)
    model = _embedder(args, index.meta)
    if index.model is not None and model.model_name != index.model:
        raise UsageError(f"{args.index} was built with model {index.model!r}, not {model.model_name!r}")
    out = sys.stdout
    for text, q in zip(queries, model.query_embed(queries), strict=True):
        res = index.search(q, args.k, exact=args.exact)
        out.write(json.dumps({"query": text, "results": [{"id": d, "score": round(s, 6)} for d, s in res]}) + "\n")
    return 0
