"""``lightcol download MODEL [--cache-dir DIR] [--to DIR [--force]] [--token T]``."""

from __future__ import annotations

import argparse
from typing import Any

from lightcol.cli._options import add_hub_options, add_quiet, command


def register(sub: Any) -> None:
    d = command(
        sub, "download", run,
        help="download a model into the cache, or into a self-contained folder with --to",
        description=(
            "Download MODEL's files into the cache (default: $LIGHTCOL_CACHE_PATH, else ~/.cache/lightcol), "
            "hash-check them (re-fetching damaged ones) and print the folder. With --to DIR, also copy them "
            "into DIR with a lightcol_config.json, for LateInteractionTextEmbedding(specific_model_path=DIR)."
        ),
    )
    d.add_argument("model", metavar="MODEL", help="a name from 'lightcol models'")
    d.add_argument("--to", metavar="DIR", help="also write a self-contained model folder here (real files, no symlinks)")
    d.add_argument("--force", action="store_true", help="with --to: write into a non-empty folder that holds something else")
    add_hub_options(d)
    add_quiet(d)


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
