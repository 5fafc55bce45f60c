"""Command line: ``lightcol COMMAND ...``; one module per command in this package.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``run`` (a
function ``args -> exit status``) as its default; heavy imports happen inside ``run``, so
``lightcol --help`` stays fast. Errors print one line on stderr and exit with 2 (bad usage, unknown
model) or 1 (anything else, including a missing optional extra); never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from lightcol.errors import LightcolError, RegistryError, UnknownModelError

PROG = "lightcol"
#: Command modules of this package, in the order ``--help`` lists them.
COMMANDS = ("models", "download", "quantize", "optimize", "embed", "index", "serve")


class UsageError(Exception):
    """Bad command-line usage found after parsing (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise UsageError(f"{message} (see '{self.prog} --help')")


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
    for name in COMMANDS:
        importlib.import_module(f"lightcol.cli.{name}").register(sub)
    return p


def fail(message: str, code: int) -> int:
    """Print ``lightcol: error: message`` (one line) on stderr and return ``code``."""
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        run = getattr(args, "run", None)
        if run is None:
            parser.print_help(sys.stderr)
            return 2
        return int(run(args))
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else 0
    except UsageError as e:
        return fail(str(e), 2)
    except (UnknownModelError, RegistryError) as e:
        return fail(str(e), 2)
    except LightcolError as e:
        return fail(str(e), 1)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback (ImportError names the extra)
        return fail(f"{type(e).__name__}: {e}" if not isinstance(e, ImportError) else str(e), 1)


if __name__ == "__main__":
    sys.exit(main())
