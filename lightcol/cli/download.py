"""``lightcol download MODEL [--cache-dir DIR] [--to DIR [--force]] [--token T]``."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    d = sub.add_parser(
        "download",
        help="download a model into the cache, or into a self-contained folder with --to",
        description=(
            "Download MODEL's files into the cache (default: $LIGHTCOL_CACHE_PATH, else ~/.cache/lightcol), "
            "hash-check them (re-fetching damaged ones) and print the folder. With --to DIR, also copy them "
            "into DIR with a lightcol_config.json, for LateInteractionTextEmbedding(specific_model_path=DIR)."
        ),
    )
    d.add_argument("model", metavar="MODEL", help="a name from 'lightcol models'")
    d.add_argument("--cache-dir", metavar="DIR", help="cache folder (default: $LIGHTCOL_CACHE_PATH or ~/.cache/lightcol)")
    d.add_argument("--to", metavar="DIR", help="also write a self-contained model folder here (real files, no symlinks)")
    d.add_argument("--force", action="store_true", help="with --to: write into a non-empty folder that holds something else")
    d.add_argument("--token", metavar="T", help="Hugging Face token for private/gated repos (default: $HF_TOKEN)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    d.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lightcol import download
    from lightcol.registry import get_spec

    spec = get_spec(args.model)
    if args.to is not None:
        folder = download.export_model_folder(spec, args.to, cache_dir=args.cache_dir, token=args.token, force=args.force)
    else:
        folder = download.resolve_model_dir(
            spec, cache_dir=args.cache_dir, token=args.token, verify_hash=True, progress=not args.quiet
        )
    print(folder)
    return 0
