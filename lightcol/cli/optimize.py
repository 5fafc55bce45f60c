"""``lightcol optimize MODEL|FOLDER [--int8] [--cache-dir DIR] [--force]``."""

from __future__ import annotations

import argparse
import functools
from typing import Any

from lightcol.cli._options import add_hub_options, command


def register(sub: Any) -> None:
    o = command(
        sub, "optimize", run,
        help="rewrite a model's float32 ONNX file for speed (what optimize=True loads)",
        description=(
            "Rewrite MODEL's (a registry name, downloaded if needed) or FOLDER's float32 ONNX file for speed (an "
            "SDPA export's per-layer attention masks and softmax NaN guards removed, QK scales folded, GELU fused; "
            "same vectors, checked), and print the file. Written beside a "
            "writable FOLDER's model, else into the cache, and reused by LateInteractionTextEmbedding(..., "
            "optimize=True) (with --int8: quantized=True as well). Needs: pip install 'lightcol[quantize]'."
        ),
    )
    o.add_argument("model", metavar="MODEL|FOLDER", help="a name from 'lightcol models', or a model folder")
    o.add_argument("--int8", action="store_true", help="also quantise the rewritten graph to int8 (optimize=True, quantized=True)")
    o.add_argument("--force", action="store_true", help="rewrite again even if an up-to-date file exists")
    add_hub_options(o)


def run(args: argparse.Namespace) -> int:
    from lightcol import optimize
    from lightcol.cli.quantize import derive

    optimize.require_onnx()
    print(derive(args, functools.partial(optimize.ensure_optimized, int8=args.int8)))
    return 0
