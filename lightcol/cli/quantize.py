"""``lightcol quantize MODEL|FOLDER [--cache-dir DIR] [--force]``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    q = sub.add_parser(
        "quantize",
        help="make the int8 variant of a model that has only float32 (what quantized=True loads)",
        description=(
            "Quantise MODEL's (a registry name, downloaded if needed) or FOLDER's float32 ONNX file to int8 "
            "(dynamic quantisation, as tools/export_onnx.py --quantize int8) and print the file. It is written "
            "beside a writable FOLDER's model, else into the cache, and reused by "
            "LateInteractionTextEmbedding(..., quantized=True). Needs: pip install 'lightcol[quantize]'."
        ),
    )
    q.add_argument("model", metavar="MODEL|FOLDER", help="a name from 'lightcol models', or a model folder")
    q.add_argument("--cache-dir", metavar="DIR", help="cache folder (default: $LIGHTCOL_CACHE_PATH or ~/.cache/lightcol)")
    q.add_argument("--force", action="store_true", help="quantise again even if an up-to-date int8 file exists")
    q.add_argument("--token", metavar="T", help="Hugging Face token for private/gated repos (default: $HF_TOKEN)")
    q.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lightcol import quantize

    quantize.require_onnx()
    print(derive(args, quantize.ensure_int8, own_variant="int8"))
    return 0


def derive(args: argparse.Namespace, ensure: Any, own_variant: str | None = None) -> Path:
    """Make a derived file of MODEL|FOLDER's float32 ONNX file with ``ensure`` (int8, optimised) and return it."""
    from lightcol import model_folder
    from lightcol.errors import ModelLoadError
    from lightcol.registry import get_spec

    folder = Path(args.model)
    if folder.is_dir():
        try:  # lightcol's, LightOn's exporter's, PyLate's or FastEmbed's folder: its model file and variants
            spec = model_folder.describe(folder)
        except ModelLoadError:
            spec = None
        name = spec.model_file if spec is not None else "model.onnx"
        own = spec.variants.get(own_variant) if spec is not None and own_variant else None
        if own and (folder / own).is_file() and not args.force:
            return (folder / own).absolute()  # the folder has its own file of that variant
        source = folder / name
        if not source.is_file():
            raise ModelLoadError(f"{folder} has no {name}; pass a folder exported by tools/export_onnx.py.")
        return ensure(source, cache_dir=args.cache_dir, beside=True, force=args.force)
    from lightcol import download

    spec = get_spec(args.model)
    snapshot = download.resolve_model_dir(spec, cache_dir=args.cache_dir, token=args.token, progress=True)
    lock = download.lock_path(spec, args.cache_dir)
    return ensure(snapshot / spec.model_file, cache_dir=args.cache_dir, beside=False, lock=lock, force=args.force)
