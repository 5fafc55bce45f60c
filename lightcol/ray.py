"""Ray Data integration: embed a ``ray.data.Dataset`` of texts on a Ray cluster, one model per actor.

``embed_dataset(ds, ...)`` adds a ``vectors`` column (``list<fixed_size_list<float, dim>>``, the
Parquet schema of ``lightcol embed``), ``n_tokens`` and optionally ``muvera`` through
``Dataset.map_batches`` with a pool of actors: each actor loads the model once and runs ONNX
Runtime with ``threads_per_actor`` threads on as many reserved CPUs. ``embed_texts`` streams a
Python iterable through such actors in order; ``lightcol embed --ray`` uses it.

Needs ``ray[data]`` (``pip install 'lightcol[ray]'``); ``import lightcol`` does not import Ray.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from lightcol._optional import require
from lightcol.errors import ArgumentError

#: Rows per ``map_batches`` call / per task sent to an actor: large enough that Ray's per-call
#: overhead (a few ms) is small next to the embedding, small enough to spread work over actors.
ROWS_PER_BATCH = 1024


def _ray() -> Any:
    return require("ray", "ray", "lightcol.ray (embedding on a Ray cluster)")


def _muvera_kwargs(muvera: Any) -> dict[str, int] | None:
    if muvera is None or muvera is False:
        return None
    from lightcol.muvera import NAMED_SETTINGS

    if muvera is True:
        muvera = "recommended"
    if isinstance(muvera, str) and muvera in NAMED_SETTINGS:
        return dict(NAMED_SETTINGS[muvera])
    if isinstance(muvera, dict):
        return dict(muvera)
    raise ArgumentError(f"muvera must be None, 'recommended', 'fastembed' or a dict of Muvera arguments, got {muvera!r}")


class Embedder:
    """One model, loaded once per actor; ``__call__`` maps an Arrow batch (``map_batches``)."""

    def __init__(self, model_name: str | None = None, specific_model_path: str | None = None, *,
                 text_column: str = "text", output_column: str = "vectors", batch_size: int = 256,
                 dtype: str = "float32", quantized: bool = False, pool_factor: int = 1, protected_tokens: int = 1,
                 queries: bool = False, muvera: dict[str, int] | None = None, threads: int | None = 1,
                 cache_dir: str | None = None, local_files_only: bool = False) -> None:
        from lightcol import LateInteractionTextEmbedding

        self.model = LateInteractionTextEmbedding(model_name, cache_dir=cache_dir, threads=threads, cuda=False,
                                                  specific_model_path=specific_model_path, quantized=quantized,
                                                  local_files_only=local_files_only)
        self.text_column, self.output_column = text_column, output_column
        self.batch_size, self.dtype, self.queries = batch_size, dtype, queries
        self.pool = (pool_factor, protected_tokens)
        self.muvera = None
        if muvera is not None:
            from lightcol.muvera import Muvera

            self.muvera = Muvera(self.model.dim, **muvera)

    def embed(self, texts: list[str]) -> list[np.ndarray]:
        if self.queries:
            return list(self.model.query_embed(texts, batch_size=self.batch_size, dtype=self.dtype))
        return list(self.model.embed(texts, batch_size=self.batch_size, dtype=self.dtype, pool_factor=self.pool[0],
                                     protected_tokens=self.pool[1]))

    def embed_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of ``texts`` as one ``(total, dim)`` array and per-text lengths (cheap to ship)."""
        vectors = self.embed(texts)
        lengths = np.array([len(v) for v in vectors], dtype=np.int64)
        flat = np.concatenate(vectors) if vectors else np.zeros((0, self.model.dim), dtype=self.dtype)
        return flat, lengths

    def __call__(self, batch: Any) -> Any:
        from lightcol import parquet

        pa = parquet.pa()
        texts = batch.column(self.text_column).to_pylist()
        vectors = self.embed(texts)
        arr, counts = parquet.vectors_array(vectors, self.model.dim, self.dtype)
        batch = batch.append_column(self.output_column, arr).append_column("n_tokens", pa.array(counts))
        if self.muvera is not None:
            fde = self.muvera.process_queries(vectors) if self.queries else self.muvera.process_documents(vectors)
            batch = batch.append_column("muvera", parquet.fixed_array(fde))
        return batch


def _default_actors(ray: Any, threads_per_actor: int) -> int:
    if not ray.is_initialized():
        ray.init()  # what Ray Data does on first use: the cluster at $RAY_ADDRESS, else a local one
    return max(1, int(ray.cluster_resources().get("CPU", 1) // threads_per_actor))


def _model_path(path: str | os.PathLike[str] | None) -> str | None:
    # a relative path means nothing on another node: resolve it here (it must be the same path there)
    return None if path is None else os.path.abspath(os.fspath(path))


def embed_dataset(
    ds: Any,
    model_name: str | None = None,
    specific_model_path: str | os.PathLike[str] | None = None,
    text_column: str = "text",
    *,
    output_column: str = "vectors",
    batch_size: int = 256,
    rows_per_batch: int = ROWS_PER_BATCH,
    dtype: str = "float32",
    quantized: bool = False,
    pool_factor: int = 1,
    protected_tokens: int = 1,
    queries: bool = False,
    muvera: Any = None,
    actors: int | tuple[int, int] | None = None,
    threads_per_actor: int = 1,
    cache_dir: str | None = None,
    local_files_only: bool = False,
    **ray_remote_args: Any,
) -> Any:
    """``ds`` with ``output_column`` (token vectors), ``n_tokens`` and, with ``muvera``, ``muvera`` added.

    Args:
        ds: a ``ray.data.Dataset`` with a string column ``text_column``.
        model_name, specific_model_path: as :class:`lightcol.LateInteractionTextEmbedding`; the folder
            (or the model cache) must exist on every node (see docs/ray.md).
        batch_size: most texts per ONNX Runtime call; ``rows_per_batch``: rows per ``map_batches`` call.
        dtype, quantized, pool_factor, protected_tokens: as ``embed``; ``queries=True`` embeds queries.
        muvera: ``None``, ``"recommended"``, ``"fastembed"`` or a dict of :class:`lightcol.Muvera` arguments.
        actors: actor pool size, or ``(min, max)`` to autoscale; default: the cluster's CPUs / threads_per_actor.
        threads_per_actor: ONNX Runtime threads per actor, and the CPUs each actor reserves.
        ray_remote_args: passed to ``map_batches`` (``memory=``, ``resources=``, ``runtime_env=``...).

    Returns the lazy ``Dataset``; ``ds.write_parquet(path)`` writes the schema of ``lightcol embed``
    (drop other columns with ``select_columns(["id", "vectors", "n_tokens"])``).
    """
    ray = _ray()
    if not isinstance(threads_per_actor, int) or threads_per_actor < 1:
        raise ArgumentError(f"threads_per_actor must be an int >= 1, got {threads_per_actor!r}")
    if dtype not in ("float16", "float32"):
        raise ArgumentError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    if model_name is None and specific_model_path is None:
        raise ArgumentError("give model_name or specific_model_path")
    kwargs = dict(text_column=text_column, output_column=output_column, batch_size=batch_size, dtype=dtype,
                  quantized=quantized, pool_factor=pool_factor, protected_tokens=protected_tokens, queries=queries,
                  muvera=_muvera_kwargs(muvera), threads=threads_per_actor, cache_dir=cache_dir,
                  local_files_only=local_files_only)
    return ds.map_batches(
        Embedder, fn_constructor_args=(model_name, _model_path(specific_model_path)), fn_constructor_kwargs=kwargs,
        batch_size=rows_per_batch, batch_format="pyarrow", zero_copy_batch=True,
        concurrency=actors if actors is not None else _default_actors(ray, threads_per_actor),
        num_cpus=threads_per_actor, **ray_remote_args,
    )


def _connect(ray: Any, address: str | None) -> None:
    if ray.is_initialized():
        return
    if address in (None, "local"):
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)


def embed_texts(
    texts: Iterable[str],
    *,
    address: str | None = None,
    actors: int | None = None,
    model_name: str | None = None,
    specific_model_path: str | os.PathLike[str] | None = None,
    batch_size: int = 256,
    dtype: str = "float32",
    quantized: bool = False,
    pool_factor: int = 1,
    protected_tokens: int = 1,
    queries: bool = False,
    threads_per_actor: int = 1,
    rows_per_task: int = ROWS_PER_BATCH,
    cache_dir: str | None = None,
    local_files_only: bool = False,
) -> Iterator[np.ndarray]:
    """Vectors of ``texts`` in input order, computed by a pool of model actors on a Ray cluster.

    ``address``: a Ray address, ``"auto"`` (the running cluster) or ``"local"``/``None`` (start one here),
    used if Ray is not initialised yet. The input is read lazily, with at most two tasks per actor in
    flight; if reading it raises, the vectors of the texts read before are still yielded first.
    """
    ray = _ray()
    _connect(ray, address)
    n = actors or _default_actors(ray, threads_per_actor)
    actor_cls = ray.remote(num_cpus=threads_per_actor)(Embedder)
    pool = [actor_cls.remote(model_name, _model_path(specific_model_path), batch_size=batch_size, dtype=dtype,
                             quantized=quantized, pool_factor=pool_factor, protected_tokens=protected_tokens,
                             queries=queries, threads=threads_per_actor, cache_dir=cache_dir,
                             local_files_only=local_files_only)
            for _ in range(n)]
    inflight: collections.deque[Any] = collections.deque()
    source_error: Exception | None = None
    it = iter(texts)

    def results(ref: Any) -> Iterator[np.ndarray]:
        flat, lengths = ray.get(ref)
        start = 0
        for k in lengths.tolist():
            yield flat[start : start + k]
            start += k

    try:
        sent = 0
        while source_error is None:
            chunk: list[str] = []
            try:
                for text in it:
                    chunk.append(text)
                    if len(chunk) == rows_per_task:
                        break
            except Exception as e:  # noqa: BLE001 - re-raised after the vectors read before it
                source_error = e
            if not chunk:
                break
            inflight.append(pool[sent % n].embed_flat.remote(chunk))
            sent += 1
            if len(inflight) >= 2 * n:
                yield from results(inflight.popleft())
            if len(chunk) < rows_per_task:
                break
        while inflight:
            yield from results(inflight.popleft())
        if source_error is not None:
            raise source_error
    finally:
        for a in pool:
            ray.kill(a)
