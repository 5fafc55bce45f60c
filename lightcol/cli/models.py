"""``lightcol models``: the registry as a table."""

from __future__ import annotations

import argparse
from typing import Any

from lightcol.cli._options import command


def register(sub: Any) -> None:
    command(sub, "models", run, help="list the supported models", description="List the supported models.")


def run(args: argparse.Namespace) -> int:
    from lightcol.registry import list_supported_models

    rows = [("name", "dim", "size GB", "license")]
    rows += [(m["model"], str(m["dim"]), f"{m['size_in_GB']:.2f}", m["license"]) for m in list_supported_models()]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]), r[3]]).rstrip())
    return 0
