"""``lightcol serve``: the HTTP service (embed, rerank, search, documents, metrics) with dynamic batching."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from lightcol.cli import UsageError

_DESCRIPTION = (
    "Serve a model over HTTP: POST /v1/embed, /v1/rerank, /v1/token_count, /v1/search (with --index), "
    "POST/DELETE /v1/documents (with a DocumentIndex), GET /v1/model, /health, /ready, /metrics; the schema at "
    "/openapi.json. Concurrent requests share ONNX Runtime batches. Binding anything but a loopback address needs "
    "--api-key-file (or --allow-unauthenticated). Needs 'lightcol[serve]'."
)


def register(sub: Any) -> None:
    from lightcol.serve import limits

    lim = limits.Limits()
    p = sub.add_parser("serve", help="serve embeddings, reranking and search over HTTP (dynamic batching)",
                       description=_DESCRIPTION)
    p.add_argument("--model", metavar="NAME", help="model name from 'lightcol models' (default: the model --index "
                   "was built with)")
    p.add_argument("--model-path", metavar="DIR", help="local model folder, e.g. from 'lightcol download --to DIR'")
    p.add_argument("--quantized", action="store_true", help="use the model's int8 variant")
    p.add_argument("--index", metavar="PATH", help="an Index file or a DocumentIndex folder to search "
                   "(/v1/search; a DocumentIndex also takes /v1/documents)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: a free port, printed at start)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: one per core)")
    p.add_argument("--max-batch-tokens", type=int, default=None, metavar="N",
                   help="padded tokens per ONNX Runtime call (default: the model's, as in-process embed uses: "
                        "1024 for encoders up to hidden size 384, 512 at 768)")
    p.add_argument("--max-queue", type=int, default=limits.MAX_QUEUE, metavar="N",
                   help=f"texts that may wait for a batch; beyond it: 503 with Retry-After (default {limits.MAX_QUEUE})")
    p.add_argument("--max-texts", type=int, default=lim.max_texts, metavar="N",
                   help=f"texts (or ids) per request (default {lim.max_texts})")
    p.add_argument("--max-chars", type=int, default=lim.max_chars, metavar="N",
                   help=f"characters per text (default {lim.max_chars})")
    p.add_argument("--max-body-bytes", type=int, default=lim.max_body_bytes, metavar="N",
                   help=f"request body size (default {lim.max_body_bytes})")
    p.add_argument("--batch-workers", type=int, default=1, metavar="N",
                   help="batches of each kind (queries, documents) run at once on the one model, each with "
                        "--threads threads (default 1)")
    p.add_argument("--no-batching", action="store_true",
                   help="answer one request at a time (never merge requests into one batch)")
    p.add_argument("--api-key-file", metavar="FILE", help="require 'Authorization: Bearer KEY' on /v1 and "
                   "/metrics; FILE holds the accepted keys, one per line ('#' comments)")
    p.add_argument("--allow-unauthenticated", action="store_true",
                   help="serve without --api-key-file on a non-loopback --host (a proxy or network policy guards it)")
    p.add_argument("--graceful-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM/SIGINT, wait this long for requests in flight (default 30)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default info)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(run=run)


def read_api_keys(path: str) -> tuple[str, ...]:
    """The keys in ``path``: one per line; blank lines and lines starting with '#' are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UsageError(f"--api-key-file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--api-key-file {path}: not UTF-8 text") from None
    keys = tuple(k.strip() for k in lines if k.strip() and not k.strip().startswith("#"))
    if not keys:
        raise UsageError(f"--api-key-file {path} holds no key (one per line)")
    short = [k for k in keys if len(k) < 16]
    if short:
        raise UsageError(f"--api-key-file {path}: keys must have at least 16 characters (a line has {len(short[0])}); "
                         "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return keys


def _check(args: argparse.Namespace) -> tuple[str, ...]:
    from lightcol.serve.server import is_loopback

    for name in ("max_batch_tokens", "max_queue", "max_texts", "max_chars", "max_body_bytes", "batch_workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_texts > args.max_queue:
        raise UsageError(f"--max-texts ({args.max_texts}) must be at most --max-queue ({args.max_queue})")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if args.graceful_timeout < 0:
        raise UsageError(f"--graceful-timeout must be >= 0, got {args.graceful_timeout}")
    if args.model is None and args.model_path is None and args.index is None:
        raise UsageError("give --model NAME or --model-path DIR (or --index PATH to use the model it was built with)")
    keys = read_api_keys(args.api_key_file) if args.api_key_file else ()
    if not keys and not args.allow_unauthenticated and not is_loopback(args.host):
        raise UsageError(f"refusing to serve without authentication on --host {args.host}, which other machines can "
                         "reach: give --api-key-file FILE, or --allow-unauthenticated if a proxy or network policy "
                         "guards the port")
    return keys


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    """The model and the index (``None`` without ``--index``)."""
    from lightcol import LateInteractionTextEmbedding

    def model_from(name: str | None, path: str | None) -> Any:
        return LateInteractionTextEmbedding(name if path is None else args.model, specific_model_path=path,
                                            threads=args.threads, quantized=args.quantized, cuda=False)

    if args.index is None:
        return model_from(args.model, args.model_path), None
    if os.path.isdir(args.index):
        from lightcol import DocumentIndex

        model = model_from(args.model, args.model_path) if args.model or args.model_path else None
        options: dict[str, Any] = {} if model is not None else {"threads": args.threads, "cuda": False}
        if model is None and args.quantized:
            options["quantized"] = True
        index = DocumentIndex.open(args.index, model=model, **options)
        return index.model, index
    from lightcol import Index
    from lightcol.cli.index import check_index_model

    index = Index.open(args.index)
    name, path = args.model, args.model_path
    if name is None and path is None:
        name, path = index.meta.get("model"), index.meta.get("model_path")
        if name is None and path is None:
            raise UsageError(f"{args.index} does not record its model; give --model NAME or --model-path DIR")
    model = model_from(name, path)
    check_index_model(args.index, index, model)
    return model, index


def run(args: argparse.Namespace) -> int:
    from lightcol import _optional

    _optional.require("fastapi", "serve", "lightcol serve")  # the missing extra is named before the model loads
    _optional.require("uvicorn", "serve", "lightcol serve")
    keys = _check(args)
    from lightcol.serve import Limits, ServeConfig, create_app
    from lightcol.serve.server import run as serve

    model, index = _load(args)
    config = ServeConfig(
        max_batch_tokens=args.max_batch_tokens, max_queue=args.max_queue, batching=not args.no_batching,
        batch_workers=args.batch_workers,
        limits=Limits(max_body_bytes=args.max_body_bytes, max_texts=args.max_texts, max_chars=args.max_chars),
        api_keys=keys,
    )
    app = create_app(model, index, config)

    def announce(address: str) -> None:
        what = f", index {args.index}" if index is not None else ""
        auth = "bearer key required" if keys else "no authentication"
        print(f"lightcol serve: model {model.model_name} (dim {model.dim}){what}; {auth}; listening on {address}",
              file=sys.stderr, flush=True)

    try:
        serve(app, args.host, args.port, graceful_timeout=args.graceful_timeout, log_level=args.log_level,
              access_log=args.access_log, on_listen=announce)
    finally:
        if index is not None and hasattr(index, "close"):
            index.close()
    return 0
