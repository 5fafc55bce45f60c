"""Command line: ``lightcol COMMAND ...``; one module per command in this package.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``run`` (a
function ``args -> exit status``) as its default; heavy imports happen inside ``run``, so
``lightcol --help`` stays fast. Errors print one line on stderr and exit with 2 (bad usage, unknown
model) or 1 (anything else, including a missing optional extra); never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import re
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


#: The library's messages name the Python arguments (``pass overwrite=True``); the CLI shows the flag that
#: sets each: argument -> (flag, metavar or None for a switch, the command's attribute holding it, and the
#: words to use where the command has no such flag: None drops the advice, with its "or pass").
_FLAGS: dict[str, tuple[str, str | None, str, str | None]] = {
    "specific_model_path": ("--model-path", "DIR", "model_path", "the folder"),
    "model_name": ("--model", "NAME", "model", "a model name"),
    "overwrite": ("--overwrite", None, "overwrite", "--overwrite"),
    "force": ("--force", None, "force", "--force"),
    "keep_full": ("--keep-full", None, "keep_full", "'lightcol index build --keep-full'"),
    "exact": ("--exact", None, "exact", "--exact"),
    "token": ("--token", "TOKEN", "token", None),
    "cache_dir": ("--cache-dir", "DIR", "cache_dir", None),
    "to": ("--to", "DIR", "to", "--to DIR"),
    "max_document_length": ("--max-document-length", "N", "max_document_length", "--max-document-length N"),
    "overlap_tokens": ("--overlap-tokens", "N", "overlap_tokens", "--overlap-tokens N"),
    "split_documents": ("--no-split", None, "no_split", "--no-split"),
    "parallel": ("--parallel", "N", "parallel", "--parallel N"),
    "batch_size": ("--batch-size", "N", "batch_size", "--batch-size N"),
}
_ADVICE = re.compile(r"(\bor (?:pass )?|\bpass |\bset )?(?<![\w.-])(" + "|".join(_FLAGS) + r")=('[^']*'|\.\.\.|[^\s,;()]*)")


def in_cli_terms(message: str, args: argparse.Namespace | None = None) -> str:
    """``message`` with each ``argument=value`` of the library's advice written as the CLI flag that sets it."""

    def flag(m: re.Match[str]) -> str:
        pre, name, value = m.group(1) or "", m.group(2), m.group(3)
        option, metavar, attr, instead = _FLAGS[name]
        end = "." if value.endswith(".") and value != "..." else ""
        value = value[: len(value) - len(end)]
        if args is not None and not hasattr(args, attr):
            return end if instead is None else pre + instead + end
        if name == "split_documents":  # the flag turns splitting off
            return (pre + option if value == "False" else "leave out " + option) + end
        if metavar is None:
            return pre + option + end
        if value == "None":
            return f"{pre}leave out {option}{end}"
        if not value or value == "..." or value.isupper():
            value = metavar
        return f"{pre}{option} {value}{end}"

    text = _ADVICE.sub(flag, message)
    return re.sub(r"\s+([.,;)])", r"\1", re.sub(r"\(\s*\)", "", text))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = _parser()
    args = None
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
        return fail(in_cli_terms(str(e), args), 2)
    except LightcolError as e:
        return fail(in_cli_terms(str(e), args), 1)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback (ImportError names the extra)
        return fail(in_cli_terms(f"{type(e).__name__}: {e}" if not isinstance(e, ImportError) else str(e), args), 1)


if __name__ == "__main__":
    sys.exit(main())
