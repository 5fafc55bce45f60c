"""The argparse pieces the command modules share: a command's parser, its model, hub and progress
options, and int options with a minimum (so that argparse's message names the flag)."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from lightcol.cli import UsageError

_CACHE_HELP = "cache folder (default: $LIGHTCOL_CACHE_PATH or ~/.cache/lightcol)"


def command(sub: Any, name: str, run: Callable[[argparse.Namespace], int], *, help: str,
            description: str) -> argparse.ArgumentParser:
    """Add the parser of the command ``name`` to ``sub``; ``run(args)`` runs it and returns the exit status."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description)
    parser.set_defaults(run=run)
    return parser


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an int >= ``minimum``; argparse's message then names the flag."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def add_model_options(parser: argparse.ArgumentParser, *, default_from_index: bool = False,
                      threads_help: str = "ONNX Runtime threads") -> None:
    """``--model NAME``, ``--model-path DIR`` (both: the registry entry's rules for a folder without
    ``lightcol_config.json``) and ``--threads N``."""
    extra = " (default: the model the index was built with)" if default_from_index else ""
    parser.add_argument("--model", metavar="NAME", help=f"model name from 'lightcol models'{extra}")
    parser.add_argument("--model-path", metavar="DIR", help=f"local model folder{extra} (with --model: the registry "
                        "entry's rules when the folder has no lightcol_config.json)")
    parser.add_argument("--threads", type=int_at_least(1), default=None, help=threads_help)


def require_model(args: argparse.Namespace) -> None:
    """Raise :class:`UsageError` unless ``--model`` or ``--model-path`` was given."""
    if args.model is None and args.model_path is None:
        raise UsageError("give --model NAME or --model-path DIR")


def add_hub_options(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir DIR`` and ``--token T`` of the commands that may download a model."""
    parser.add_argument("--cache-dir", metavar="DIR", help=_CACHE_HELP)
    parser.add_argument("--token", metavar="T", help="Hugging Face token for private/gated repos (default: $HF_TOKEN)")


def add_quiet(parser: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    """``-q`` / ``--quiet``."""
    parser.add_argument("-q", "--quiet", action="store_true", help=help)
