"""``lightcol embed INPUT... --output OUT``: embed files into Parquet shards (resumable; optionally on Ray)."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from lightcol.cli import UsageError
from lightcol.cli._options import add_model_options, add_quiet, command, int_at_least, require_model

_DESCRIPTION = (
    "Embed the texts of INPUT files (.txt: one text per line; .jsonl; .csv with a header; .parquet) into Parquet "
    "shards in the folder OUT: columns id, vectors (list of fixed-size float vectors), n_tokens (and muvera). "
    "Interrupted, rerun the same command to resume: finished shards are kept. Needs pyarrow "
    "(pip install 'lightcol[parquet]'); --ray needs 'lightcol[ray]'."
)


def register(sub: Any) -> None:
    p = command(sub, "embed", run, help="embed text files into Parquet shards (resumable, optionally on Ray)",
                description=_DESCRIPTION)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".txt, .jsonl, .csv or .parquet files (read in order)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (created; rerun to resume)")
    add_model_options(p, threads_help="ONNX Runtime threads (with --ray: per actor, default 1)")
    p.add_argument("--text-field", default="text", help="field/column holding the text (default: text)")
    p.add_argument("--id-field", default=None, metavar="FIELD",
                   help="field/column holding the id, required in every record (default: 'id' where a file's first "
                        "record or header has it, else the row number, 0-based across all inputs)")
    p.add_argument("--batch-size", type=int_at_least(1), default=256, help="most texts per ONNX Runtime call (default 256)")
    p.add_argument("--parallel", type=int_at_least(0), default=None, metavar="N",
                   help="N worker processes (0: one per core); default: in-process")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float32", help="stored vectors (default float32)")
    p.add_argument("--quantized", action="store_true", help="use the model's int8 variant")
    p.add_argument("--pool-factor", type=int_at_least(1), default=1, help="token pooling factor (default 1: off)")
    p.add_argument("--protected-tokens", type=int_at_least(0), default=1, help="leading vectors kept unpooled (default 1)")
    p.add_argument("--muvera", nargs="?", const="recommended", default=None, metavar="recommended|fastembed|FILE",
                   help="add a 'muvera' column of MUVERA encodings: lightcol's recommended or FastEmbed's default "
                        "random setting, or a saved encoder (Muvera.save, e.g. a fitted one) (default: recommended)")
    p.add_argument("--queries", action="store_true", help="embed the texts as queries")
    p.add_argument("--shard-size", type=int_at_least(1), default=None, metavar="ROWS",
                   help="input rows per output shard (default 65536)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="a bad record: stop with an error naming file and line (default), or skip it and list it "
                        "in OUT/_skipped.jsonl")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run the embedding on a Ray cluster ('auto': the running one; 'local': start one here)")
    p.add_argument("--ray-actors", type=int_at_least(1), default=None, metavar="N",
                   help="with --ray: model actors (default: the cluster's CPUs / threads)")
    add_quiet(p, "no progress bar, no summary line")


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: the half-written shard is removed, finished ones are kept


def run(args: argparse.Namespace) -> int:
    from lightcol import embed_job
    from lightcol.errors import ArgumentError

    require_model(args)
    from lightcol import parquet

    parquet.pa()  # the missing extra is named before the model loads
    if args.ray is not None:
        from lightcol import ray as _lray

        _lray._ray()
    opts = embed_job.JobOptions(
        inputs=list(args.inputs), output=args.output, model_name=args.model, model_path=args.model_path,
        text_field=args.text_field, id_field=args.id_field or "id", id_required=args.id_field is not None,
        batch_size=args.batch_size, parallel=args.parallel, threads=args.threads, dtype=args.dtype,
        quantized=args.quantized, pool_factor=args.pool_factor, protected_tokens=args.protected_tokens,
        muvera=args.muvera, queries=args.queries, shard_size=args.shard_size or embed_job.SHARD_SIZE,
        on_error=args.on_error, quiet=args.quiet, ray_address=args.ray, ray_actors=args.ray_actors,
    )
    try:
        embed_job._check(opts)
    except ArgumentError as e:
        raise UsageError(str(e)) from None
    try:
        old = signal.signal(signal.SIGTERM, _sigterm)
    except ValueError:  # not the main thread
        old = None
    try:
        embed_job.run_job(opts)
    except KeyboardInterrupt:
        from lightcol.cli import fail

        return fail(f"interrupted; finished shards are kept in {args.output}: rerun the same command to resume", 130)
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    return 0
