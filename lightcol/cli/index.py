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

from lightcol.cli import UsageError, fail
from lightcol.cli._options import add_model_options, add_quiet, int_at_least


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
    b.add_argument("--max-document-length", type=int_at_least(1), default=None, metavar="N",
                   help="--documents: tokens per passage (default: the model's document length)")
    b.add_argument("--overlap-tokens", type=int_at_least(0), default=0, metavar="N",
                   help="--documents: tokens shared by consecutive passages (default 0)")
    b.add_argument("--no-split", action="store_true",
                   help="--documents: one passage per document (truncated at the model's document length)")
    b.add_argument("--overwrite", action="store_true", help="--documents: replace a document index in INDEX")
    add_model_options(b)
    b.add_argument("--nbits", type=int, default=2, choices=(1, 2, 4, 8), help="residual bits per dimension (default 2)")
    b.add_argument("--centroids", type=int_at_least(1), default=None, metavar="N", help="k-means centroids (default: automatic)")
    b.add_argument("--seed", type=int, default=0, help="seed of the codec training (default 0)")
    b.add_argument("--keep-full", action="store_true", help="also keep float16 vectors in INDEX.full (search --exact)")
    b.add_argument("--sample-tokens", type=int_at_least(1), default=None, metavar="N",
                   help="vectors the codec trains on (default 1048576); the build's working memory is about "
                        "N x dim x 4 bytes plus a constant, whatever the corpus size")
    b.add_argument("--batch-size", type=int_at_least(1), default=64, help="texts per ONNX Runtime call (default 64)")
    add_quiet(b)
    b.set_defaults(run=run_build)
    s = cmds.add_parser("search", help="search an index with text queries; prints one JSON line per query",
                        description="Embed each QUERY (or each line of --queries-file) and print "
                                    '{"query": ..., "results": [{"id": ..., "score": ...}, ...]} per query.')
    s.add_argument("index", metavar="INDEX",
                   help="index file or document index folder written by 'lightcol index build'")
    s.add_argument("queries", nargs="*", metavar="QUERY", help="query texts")
    s.add_argument("--queries-file", metavar="FILE", help="more queries, one per line ('-': stdin)")
    s.add_argument("-k", "--k", type=int_at_least(1), default=10, help="results per query (default 10)")
    s.add_argument("--exact", action="store_true", help="final scores from the full-precision side file")
    s.add_argument("--by-document", action="store_true",
                   help="document index: each document once, scored from its passages")
    s.add_argument("--where", metavar="JSON", default=None,
                   help='document index: a metadata filter, e.g. \'{"lang": "en", "year": {"$gte": 2020}}\' '
                        "($eq $ne $gt $gte $lt $lte $in $nin $exists $and $or $not)")
    s.add_argument("--mode", choices=("maxsim", "keyword", "hybrid"), default=None,
                   help="document index: MaxSim, BM25 keywords, or both fused (default: hybrid)")
    s.add_argument("--alpha", type=float, default=None,
                   help="document index, --mode hybrid: weight of MaxSim from 0 (keywords) to 1 (default 0.6)")
    s.add_argument("--highlights", action="store_true",
                   help="document index: add each passage's best-matching spans")
    add_model_options(s, default_from_index=True)
    s.set_defaults(run=run_search)


def _embedder(args: argparse.Namespace, meta: dict[str, Any] | None = None) -> Any:
    from lightcol import LateInteractionTextEmbedding

    name, path = args.model, args.model_path
    if name is None and path is None and meta is not None:
        name, path = meta.get("model"), meta.get("model_path")
    if name is None and path is None:
        raise UsageError("give --model NAME or --model-path DIR")
    return LateInteractionTextEmbedding(name if path is None or args.model else None, specific_model_path=path,
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
        show_progress=not args.quiet, **_sample(args),
        extra_meta={"model_path": str(model.model_dir)} if args.model_path else None,
    )
    print(f"{index.path}: {len(index)} documents, {index.n_tokens} vectors, nbits={index.nbits}")
    return 0


def _build_from_parquet(args: argparse.Namespace) -> int:
    from lightcol import parquet

    meta = parquet.read_metadata(args.parquet)
    if meta.get("queries"):
        raise UsageError(f"{args.parquet} holds query vectors (lightcol embed --queries); index document vectors")
    index = parquet.build_index(args.index, args.parquet, nbits=args.nbits, n_centroids=args.centroids, seed=args.seed,
                                keep_full=args.keep_full, show_progress=not args.quiet, **_sample(args))
    print(f"{index.path}: {len(index)} documents, {index.n_tokens} vectors, nbits={index.nbits} (from {args.parquet})")
    return 0


def _sample(args: argparse.Namespace) -> dict[str, int]:
    if args.sample_tokens is None:
        return {}
    if args.sample_tokens < 1:
        raise UsageError(f"--sample-tokens must be positive; got {args.sample_tokens}")
    return {"sample_tokens": args.sample_tokens}


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
    if args.where is not None or args.mode is not None or args.alpha is not None or args.highlights:
        raise UsageError("--where, --mode, --alpha and --highlights need a document index (a folder built with "
                         "--documents)")
    if not os.path.exists(args.index):
        return fail(f"no index file or document index folder at {args.index}; build one with 'lightcol index build'", 1)
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
    from lightcol.document_index import DB_NAME

    if args.no_split and (args.max_document_length is not None or args.overlap_tokens):
        raise UsageError("--max-document-length and --overlap-tokens split documents; leave out --no-split")
    if not args.overwrite and os.path.exists(os.path.join(args.index, DB_NAME)):
        return fail(f"{args.index} already holds a document index; search it with 'lightcol index search', "
                    "or add --overwrite to replace it", 1)
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
    from lightcol.errors import FilterError

    options: dict[str, Any] = {"by_document": args.by_document, "highlights": args.highlights}
    if args.where is not None:
        try:
            options["where"] = json.loads(args.where)
        except json.JSONDecodeError as e:
            raise UsageError(f"--where is not JSON ({e.msg} at character {e.pos}): {args.where!r}") from None
    if args.mode is not None:
        options["mode"] = args.mode
    if args.alpha is not None:
        options["alpha"] = args.alpha
    index = DocumentIndex.open(args.index, model=model, threads=args.threads, cuda=False)
    try:
        found = index.search_many(queries, args.k, **options)
    except FilterError as e:
        raise UsageError(f"--where: {e}") from None
    out = sys.stdout
    for text, res in zip(queries, found, strict=True):
        out.write(json.dumps({"query": text, "results": res}, ensure_ascii=False) + "\n")
    return 0
