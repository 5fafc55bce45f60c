"""``lightcol index build INDEX --jsonl FILE ...`` and ``lightcol index search INDEX QUERY ...``.

With ``--parquet PATH``, ``build`` indexes vectors that ``lightcol embed`` wrote (no embedding).

With ``--documents FILE`` instead of ``--jsonl``, ``build`` writes a :class:`~lightcol.DocumentIndex`
(a folder: documents split into passages, texts and metadata kept), and ``search`` on such a folder
prints RAGatouille's result dicts (content, score, rank, document_id, passage_id, document_metadata).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from lightcol.cli import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("index", help="build or search a compressed on-disk index (lightcol.Index)",
                       description="Build a compressed, memory-mapped ColBERT index file, or search one.")
    cmds = p.add_subparsers(dest="index_command", metavar="{build,search}")
    cmds.required = True
    b = cmds.add_parser("build", help="embed texts (JSONL), or take 'lightcol embed' Parquet vectors, and write an index",
                        description="Embed the texts of a JSONL file (one object per line) and write INDEX atomically. "
                                    "--jsonl: a compressed index file of texts (lightcol.Index); --documents: a "
                                    "document index folder (lightcol.DocumentIndex: long documents split into "
                                    "passages, texts and metadata kept, results with their content).")
    b.add_argument("index", metavar="INDEX", help="index file (--jsonl) or folder (--documents) to write")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--jsonl", metavar="FILE", help="texts, one JSON object per line ('-': stdin)")
    src.add_argument("--documents", metavar="FILE", help="documents, one JSON object per line ('-': stdin), "
                     "for a DocumentIndex folder")
    src.add_argument("--parquet", metavar="PATH", help="vectors already embedded by 'lightcol embed' (its output "
                     "folder or one shard): no model needed; the index records the model they were made with")
    b.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    b.add_argument("--id-field", default="id", help="field holding the id (default: id; missing: the line number "
                   "with --jsonl, a hash of the text with --documents)")
    b.add_argument("--metadata-field", default="metadata", help="--documents: field holding a JSON object of "
                   "metadata returned with the document's results (default: metadata; optional)")
    b.add_argument("--backend", choices=("collection", "index"), default="index",
                   help="--documents: vectors in an exact in-memory collection or a compressed index (default)")
    b.add_argument("--max-document-length", type=int, default=None, metavar="N",
                   help="--documents: tokens per passage (default: the model's document length)")
    b.add_argument("--overlap-tokens", type=int, default=0, metavar="N",
                   help="--documents: tokens shared by consecutive passages (default 0)")
    b.add_argument("--no-split", action="store_true",
                   help="--documents: one passage per document (truncated at the model's document length)")
    b.add_argument("--overwrite", action="store_true", help="--documents: replace a document index in INDEX")
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
    s.add_argument("index", metavar="INDEX",
                   help="index file or document index folder written by 'lightcol index build'")
    s.add_argument("queries", nargs="*", metavar="QUERY", help="query texts")
    s.add_argument("--queries-file", metavar="FILE", help="more queries, one per line ('-': stdin)")
    s.add_argument("-k", "--k", type=int, default=10, help="results per query (default 10)")
    s.add_argument("--exact", action="store_true", help="final scores from the full-precision side file")
    s.add_argument("--by-document", action="store_true",
                   help="document index: each document once, scored by its best passage")
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


def _json_objects(path: str, text_field: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of a JSONL file (``-``: stdin); each record an object with a string ``text_field``."""
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
            yield n, rec


def _jsonl(path: str, text_field: str, id_field: str, ids: collections.deque[Any]) -> Iterator[str]:
    """Texts of a JSONL file; each record's id is appended to ``ids`` as its text is read."""
    for n, rec in _json_objects(path, text_field):
        ids.append(rec.get(id_field, n - 1))
        yield rec[text_field]


def run_build(args: argparse.Namespace) -> int:
    from lightcol import Index

    if args.documents is not None:
        return _build_documents(args)
    if args.parquet is not None:
        return _build_from_parquet(args)
    model = _embedder(args)
    ids: collections.deque[Any] = collections.deque()
    texts = _jsonl(args.jsonl, args.text_field, args.id_field, ids)
    index = Index.build(
        args.index, _drain_lazy(ids), model.embed(texts, batch_size=args.batch_size), nbits=args.nbits,
        n_centroids=args.centroids, model=model, seed=args.seed, keep_full=args.keep_full,
        show_progress=not args.quiet,
        extra_meta={"model_path": str(model.model_dir)} if args.model_path else None,
    )
    print(f"{index.path}: {len(index)} documents, {index.n_tokens} vectors, nbits={index.nbits}")
    return 0


def _build_from_parquet(args: argparse.Namespace) -> int:
    from lightcol import Index
    from lightcol import parquet

    meta = parquet.read_metadata(args.parquet)
    if meta.get("queries"):
        raise UsageError(f"{args.parquet} holds query vectors (lightcol embed --queries); index document vectors")
    ids = [i for batch in parquet.iter_batches(args.parquet, columns=("id",)) for i in batch["id"]]
    vectors = (v for batch in parquet.iter_batches(args.parquet, columns=("vectors",)) for v in batch["vectors"])
    index = Index.build(
        args.index, ids, vectors, nbits=args.nbits, n_centroids=args.centroids, model=meta.get("model"),
        seed=args.seed, keep_full=args.keep_full, show_progress=not args.quiet,
        extra_meta={"rules": meta["rules"]} if isinstance(meta.get("rules"), dict) else None,
    )
    print(f"{index.path}: {len(index)} documents, {index.n_tokens} vectors, nbits={index.nbits} (from {args.parquet})")
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
    if os.path.isdir(args.index):
        return _search_documents(args, queries)
    index = Index.open(args.index)
    model = _embedder(args, index.meta)
    check_index_model(args.index, index, model)
    out = sys.stdout
    for text, q in zip(queries, model.query_embed(queries), strict=True):
        res = index.search(q, args.k, exact=args.exact)
        out.write(json.dumps({"query": text, "results": [{"id": d, "score": round(s, 6)} for d, s in res]}) + "\n")
    return 0


def check_index_model(path: str, index: Any, model: Any) -> None:
    """Raise :class:`UsageError` unless ``model`` (name, dim, rules) can embed queries for ``index``."""
    if index.model is not None and model.model_name != index.model:
        raise UsageError(f"{path} was built with model {index.model!r}, not {model.model_name!r}")
    if index.dim != model.dim:
        raise UsageError(f"{path} holds vectors of dim {index.dim}; {model.model_name!r} gives dim {model.dim}")
    diff = [] if index.rules is None else model.spec.rules.differences(index.rules)
    if diff:
        raise UsageError(f"{path} was built with other encoding rules than {model.model_name!r} has "
                         f"({', '.join(diff)} differ); search with the model folder it was built with")


def _records(path: str, args: argparse.Namespace) -> tuple[list[str], list[Any] | None, list[Any] | None]:
    """Texts, ids (``None`` if no record has one) and metadata (``None`` if none has any) of a JSONL file."""
    texts: list[str] = []
    ids: list[Any] = []
    metas: list[Any] = []
    for n, rec in _json_objects(path, args.text_field):
        meta = rec.get(args.metadata_field)
        if meta is not None and not isinstance(meta, dict):
            raise UsageError(f"{path}:{n}: field {args.metadata_field!r} must be a JSON object")
        texts.append(rec[args.text_field])
        ids.append(rec.get(args.id_field))
        metas.append(meta)
    if any(i is None for i in ids):
        if any(i is not None for i in ids):
            raise UsageError(f"{path}: some records have an {args.id_field!r} field and others not; give all or none")
        ids = None  # type: ignore[assignment]
    return texts, ids, (metas if any(m is not None for m in metas) else None)


def _build_documents(args: argparse.Namespace) -> int:
    from lightcol import DocumentIndex

    texts, ids, metas = _records(args.documents, args)
    model = _embedder(args)
    index = DocumentIndex.create(
        args.index, model, split_documents=not args.no_split, max_document_length=args.max_document_length,
        overlap_tokens=args.overlap_tokens, backend=args.backend, nbits=args.nbits, batch_size=args.batch_size,
        overwrite=args.overwrite,
    )
    index.add(texts, ids, metas)
    print(f"{index.path}: {len(index)} documents, {index.n_passages} passages, backend={index.backend}")
    return 0


def _search_documents(args: argparse.Namespace, queries: list[str]) -> int:
    from lightcol import DocumentIndex

    model = _embedder(args) if args.model or args.model_path else None
    index = DocumentIndex.open(args.index, model=model, threads=args.threads, cuda=False)
    out = sys.stdout
    for text, res in zip(queries, index.search_many(queries, args.k, by_document=args.by_document), strict=True):
        out.write(json.dumps({"query": text, "results": res}, ensure_ascii=False) + "\n")
    return 0
