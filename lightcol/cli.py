"""Command line: ``lightcol models`` and ``lightcol download MODEL [--cache-dir DIR] [--to DIR] [--token T]``.

Errors print one line on stderr and exit with 2 (bad usage, unknown model) or 1 (anything else); never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from lightcol.errors import LightcolError, RegistryError, UnknownModelError

PROG = "lightcol"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _version() -> str:
    try:
        from lightcol import __version__

        return str(__version__)
    except Exception:  # noqa: BLE001
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="ColBERT-style late-interaction embeddings on ONNX Runtime.")
    p.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("models", help="list the supported models", description="List the supported models.")
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
    d.add_argument("--token", metavar="T", help="Hugging Face token for private/gated repos (default: $HF_TOKEN)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def _models() -> int:
    from lightcol.registry import list_supported_models

    rows = [("name", "dim", "size GB", "license")]
    rows += [(m["model"], str(m["dim"]), f"{m['size_in_GB']:.2f}", m["license"]) for m in list_supported_models()]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]), r[3]]).rstrip())
    return 0


def _download(args: argparse.Namespace) -> int:
    from lightcol import download
    from lightcol.registry import get_spec

    spec = get_spec(args.model)
    if args.to:
        folder = download.export_model_folder(spec, args.to, cache_dir=args.cache_dir, token=args.token)
    else:
        folder = download.resolve_model_dir(
            spec, cache_dir=args.cache_dir, token=args.token, verify_hash=True, progress=not args.quiet
        )
    print(folder)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "models":
            return _models()
        if args.command == "download":
            return _download(args)
        parser.print_help(sys.stderr)
        return 2
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else 0
    except _UsageError as e:
        return _fail(str(e), 2)
    except (UnknownModelError, RegistryError) as e:
        return _fail(str(e), 2)
    except LightcolError as e:
        return _fail(str(e), 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback
        return _fail(f"{type(e).__name__}: {e}", 1)


if __name__ == "__main__":
    sys.exit(main())
