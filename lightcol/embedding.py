"""``LateInteractionTextEmbedding``: texts in, per-token ColBERT vectors out (FastEmbed-compatible)."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tokenizers import Tokenizer

from lightcol import rules as _rules
from lightcol import session as _session
from lightcol import _fastembed, _validate, graph_cache, graph_interface
from lightcol.errors import ArgumentError, ModelLoadError
from lightcol.registry import ModelSpec, get_spec, list_specs, list_supported_models

DEFAULT_MODEL = "colbert-ir/colbertv2.0"
#: Texts tokenized together before length-sorting into batches (in units of ``batch_size``) ...
_WINDOW_BATCHES = 8
#: ... and at most this many texts (bounds the memory a window's vectors take, whatever batch_size).
_MAX_WINDOW = 1024
#: Tokens (rows x padded length) per ONNX Runtime call for an encoder of hidden size
#: :data:`BATCH_HIDDEN` or less. Measured on a 2-core AVX-512 CPU with a 6-layer MiniLM (hidden 384;
#: CISI abstracts, 1 and 2 threads, float32 and int8): 512-1024 is fastest (a rerun: 512 at 0.96x
#: float32 and 0.92x int8 of 1024), 4096 is 10-25% slower (activations fall out of the core's L2
#: cache), 16384 35% slower. Small batches of similar length also waste no padding. ``batch_size``
#: still caps the rows of a call.
BATCH_TOKENS = 1024
#: Wider encoders get proportionally fewer tokens per call (the same activation bytes; see
#: :func:`batch_tokens_for`): with a ModernBERT-base-sized encoder (hidden 768, 22 layers; 64 CISI
#: abstracts cut at 300 tokens, float32, 2 threads) 512 tokens were 1.03-1.25x faster than 1024 in
#: three interleaved runs.
BATCH_HIDDEN = 384


def batch_tokens_for(hidden_size: Any) -> int:
    """Default padded tokens per ONNX Runtime call for an encoder of ``hidden_size`` (``None``: unknown)."""
    if not isinstance(hidden_size, int) or isinstance(hidden_size, bool) or hidden_size <= BATCH_HIDDEN:
        return BATCH_TOKENS
    return max(128, BATCH_TOKENS * BATCH_HIDDEN // hidden_size)


#: Output dtypes ``embed``/``query_embed`` offer (``float16`` halves the memory of stored vectors).
_DTYPES = {"float32": np.float32, "float16": np.float16}


def _out_dtype(dtype: Any) -> type:
    try:
        return _DTYPES[np.dtype(dtype).name]
    except (TypeError, KeyError, ValueError):
        raise ArgumentError(f"dtype must be 'float32' or 'float16', got {dtype!r}") from None


def _check_batch_size(batch_size: Any) -> None:
    _validate.integer("batch_size", batch_size, minimum=1)


def _window_size(batch_size: int) -> int:
    return max(batch_size, min(batch_size * _WINDOW_BATCHES, _MAX_WINDOW))


def _token_batches(lengths: np.ndarray, order: np.ndarray, batch_size: int, budget: int) -> Iterator[np.ndarray]:
    """Split ``order`` (indices sorted by ascending length) into runs of at most ``batch_size`` rows
    whose padded size (rows x longest length) stays within ``budget`` tokens (one row at least)."""
    start, n = 0, len(order)
    while start < n:
        end = start + 1
        while end < n and end - start < batch_size and (end - start + 1) * lengths[order[end]] <= budget:
            end += 1
        yield order[start:end]
        start = end


def _texts(items: str | Iterable[str]) -> Iterator[str]:
    """Yield texts lazily, rejecting non-strings (``TypeError``) and lone surrogates (:class:`InvalidTextError`), naming the position."""
    if isinstance(items, str):
        _rules.check_text(0, items)
        yield items
        return
    if isinstance(items, (bytes, bytearray)) or not isinstance(items, Iterable):
        raise ArgumentError(f"expected a str or an iterable of str, got {type(items).__name__}")
    for i, text in enumerate(items):
        _rules.check_text(i, text)
        yield text


def _check_items(items: Any) -> None:
    """Reject an input that is not a str or an iterable (at the call, before any work)."""
    if not isinstance(items, str) and (isinstance(items, (bytes, bytearray)) or not isinstance(items, Iterable)):
        raise ArgumentError(f"expected a str or an iterable of str, got {type(items).__name__}")


def _windows(texts: Iterator[str], size: int) -> Iterator[tuple[list[str], Exception | None]]:
    """Chunks of up to ``size`` texts; an exception raised by the source ends the stream after the texts read before it.

    Only ordinary exceptions wait for the chunk's vectors: ``KeyboardInterrupt``, ``SystemExit`` and
    ``GeneratorExit`` propagate at once.
    """
    while True:
        chunk: list[str] = []
        try:
            for text in texts:
                chunk.append(text)
                if len(chunk) == size:
                    break
        except Exception as e:  # noqa: BLE001 - re-raised by the caller after the chunk's vectors
            yield chunk, e
            return
        if not chunk:
            return
        yield chunk, None
        if len(chunk) < size:
            return


class LateInteractionTextEmbedding:
    """ColBERT-style late-interaction text embeddings on ONNX Runtime.

    Args:
        model_name: a registry name (see :meth:`list_supported_models`); optional when
            ``specific_model_path`` holds a folder exported by ``tools/export_onnx.py``.
        cache_dir: where downloaded models live (else ``$LIGHTCOL_CACHE_PATH``, else the default cache).
        threads: ONNX Runtime intra-op threads (default: ONNX Runtime's choice, one per core).
        providers: explicit ONNX Runtime execution providers; not with ``cuda=True``.
        cuda: ``"auto"`` uses CUDA when onnxruntime offers it, ``True`` requires it, ``False`` never.
        device_id: CUDA device for the CUDA provider.
        lazy_load: open the ONNX session on first use instead of now.
        specific_model_path: a local model folder (no download); its ``lightcol_config.json``, if any,
            supplies the rules, else the registry entry named by ``model_name``.
        local_files_only: never touch the network; fail if the model is not cached.
        token: Hugging Face token for private or gated repositories (else ``$HF_TOKEN``).
        session_options: ONNX Runtime session options: an ``onnxruntime.SessionOptions`` used as
            given, or a mapping of its attribute names / session config keys to values (see
            :func:`lightcol.session.session_options`). Default: all graph optimisations, sequential.
        quantized: load the model's int8 variant (``tools/export_onnx.py --quantize int8``); same as
            ``model_variant="int8"``. A model without an int8 file gets one made from its float32 file
            on first load (beside it if the folder is writable, else in the cache) and reused: needs
            ``pip install 'lightcol[quantize]'`` (see :mod:`lightcol.quantize`).
        optimize: load a rewritten copy of the float32 file (the SDPA export's extra work removed,
            ONNX Runtime's transformer fusions; same vectors), made once like the int8 file: makes
            ONNX files exported by others (SDPA) as fast as ``tools/export_onnx.py``'s (see
            :mod:`lightcol.optimize`). With ``quantized=True``: int8 made from that rewritten graph
            (the model's own int8 file, if any, is not used). Needs ``lightcol[quantize]``.
        model_variant: load another ONNX file of the model by variant name (``"int8"``, ``"fp16"``;
            the ``variants`` of its ``lightcol_config.json`` / registry entry); ``None``: float32.
        **kwargs: ``onnxruntime.SessionOptions`` attributes as keywords (FastEmbed's
            ``enable_cpu_mem_arena=False``), merged into ``session_options``; ``device_ids``
            (FastEmbed's): its first id is ``device_id``. Any other keyword raises a ``TypeError``.
    """

    def __init__(
        self,
        model_name: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        providers: Sequence[_session.ProviderSpec] | None = None,
        cuda: bool | Literal["auto"] = "auto",
        device_id: int | None = None,
        lazy_load: bool = False,
        specific_model_path: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        *,
        token: str | None = None,
        session_options: _session.SessionOptionsLike | None = None,
        quantized: bool = False,
        model_variant: str | None = None,
        optimize: bool = False,
        **kwargs: Any,
    ) -> None:
        device_ids = kwargs.pop("device_ids", None)  # FastEmbed's spelling
        session_options = _fastembed.session_keywords(kwargs, session_options)
        if device_id is None and device_ids:
            device_id = int(device_ids[0])
        self._providers = _session.choose_providers(cuda, providers, device_id)
        self._options = _session.session_options(threads, session_options)
        self._threads, self._session_options_arg = threads, session_options
        self._graph_cache = graph_cache.enabled(self._providers, session_options)
        # what worker processes (embed(parallel=N)) need to open the same session
        self._worker_state = {"threads": threads, "session_options": _session.options_state(session_options),
                              "providers": self._providers}
        # paths resolved now: a later os.chdir (or a worker process) must not change what they mean
        self._cache_dir = None if cache_dir is None else os.path.abspath(os.fspath(cache_dir))
        self._local_files_only = local_files_only
        self._token = token
        if quantized and model_variant not in (None, "int8"):
            raise ArgumentError(f"quantized=True loads the 'int8' variant; it contradicts model_variant={model_variant!r}")
        self.model_variant = "int8" if quantized else model_variant
        self.model_name, self.spec, self.model_dir, self._from_cache = self._resolve(model_name, specific_model_path)
        # int8 without an int8 file of the model's own: made from the float32 file on load (lightcol.quantize)
        # with optimize=True, int8 is always made from the optimised float32 graph (lightcol.optimize)
        self._derive_int8 = self.model_variant == "int8" and (
            bool(optimize)
            or "int8" not in self.spec.variants
            or not (self.model_dir / self.spec.variants["int8"]).is_file()
        )
        self._model_file = self.spec.model_file if self._derive_int8 else self.spec.variant_file(self.model_variant)
        if optimize and self._model_file != self.spec.model_file:
            raise ArgumentError(
                f"optimize=True rewrites the float32 model file; the model's own {self.model_variant!r} file "
                f"({self._model_file}) is used as it is. Drop optimize=True, or quantized=True without an int8 file."
            )
        self._optimize = bool(optimize)
        encoder_config = self._encoder_config()
        self._check_position_limit(encoder_config)
        # the rules' special tokens resolved (token and id) against the model's own tokenizer
        base, rules, self._skip, self._prep = _rules.load(self.model_dir, self.spec.rules)
        self.spec = dataclasses.replace(self.spec, rules=rules)
        # the loaded tokenizer becomes the query one; the document one is a copy made on first use
        # (a copy costs ~15 ms: a serverless function that only embeds queries never pays it)
        self._query_tokenizer = _rules.set_truncation(base, rules.query_length, rules.query_marker is not None)
        self._doc_tokenizer_copy: Tokenizer | None = None
        self._tokenizer_lock = threading.Lock()
        self._session_lock = threading.Lock()
        #: padded tokens per ONNX Runtime call (see :func:`batch_tokens_for`); tune per machine if needed
        self.batch_tokens = batch_tokens_for(encoder_config.get("hidden_size"))
        self._model: Any = None
        if not lazy_load:
            self._load_onnx()

    @property
    def _doc_tokenizer(self) -> Tokenizer:
        """The document tokenizer (made from the query one on first use, once, thread-safe)."""
        tokenizer = self._doc_tokenizer_copy
        if tokenizer is None:
            with self._tokenizer_lock:
                if self._doc_tokenizer_copy is None:
                    rules = self.spec.rules
                    self._doc_tokenizer_copy = _rules.truncating(
                        self._query_tokenizer, rules.document_length, rules.document_marker is not None
                    )
                tokenizer = self._doc_tokenizer_copy
        return tokenizer

    # -- loading ---------------------------------------------------------------------------------
    def _resolve(self, model_name: str | None, path: str | os.PathLike[str] | None) -> tuple[str, ModelSpec, Path, bool]:
        if path is not None:
            folder = Path(path).absolute()
            if not folder.is_dir():
                raise ModelLoadError(f"specific_model_path {folder} is not a folder; pass the folder holding the model files.")
            from lightcol import model_folder

            folder = model_folder.snapshot_folder(folder)
            spec = model_folder.describe(folder, model_name)
            return model_name or spec.model, spec, folder, False
        spec = get_spec(model_name or DEFAULT_MODEL)
        if self.model_variant != "int8":  # int8 is made from float32 when the model has none
            spec.variant_file(self.model_variant)  # an unknown variant fails before anything is downloaded
        from lightcol import download  # deferred: only models fetched from the hub need it

        folder = download.resolve_model_dir(
            spec, cache_dir=self._cache_dir, local_files_only=self._local_files_only, token=self._token
        )
        return spec.model, spec, Path(folder), True

    def _encoder_config(self) -> dict[str, Any]:
        """The encoder's ``config.json`` beside the ONNX file, or ``{}`` when there is none readable."""
        try:
            config = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return config if isinstance(config, dict) else {}

    def _check_position_limit(self, encoder_config: dict[str, Any]) -> None:
        """Refuse rules whose query/document length exceeds the encoder's position embeddings."""
        config = self.model_dir / "config.json"
        limit = encoder_config.get("max_position_embeddings")
        if not isinstance(limit, int) or isinstance(limit, bool):
            return
        rules = self.spec.rules
        for name in ("document_length", "query_length"):
            length = getattr(rules, name)
            if length > limit:
                raise ModelLoadError(
                    f"model {self.spec.model!r}: the rules' {name} is {length} tokens, but the encoder has "
                    f"max_position_embeddings={limit} ({config}); lower {name} to at most {limit} in "
                    "lightcol_config.json / the registry entry."
                )

    def _model_path(self, force: bool = False) -> Path:
        """The ONNX file to open; a derived one (int8 or optimised) is made now if it is missing or stale."""
        path = self.model_dir / self._model_file
        if not self._derive_int8 and not self._optimize:
            return path
        from lightcol import optimize, quantize

        lock = None
        if self._from_cache:
            from lightcol import download

            lock = download.lock_path(self.spec, self._cache_dir)
        where = {"cache_dir": self._cache_dir, "beside": not self._from_cache, "lock": lock, "force": force}
        if self._optimize:
            return optimize.ensure_optimized(path, int8=self._derive_int8, **where)
        return quantize.ensure_int8(path, **where)

    def _open(self, model_path: Path) -> Any:
        """An ONNX Runtime session on ``model_path``, through the optimised-graph cache where it applies."""
        if not self._graph_cache:
            return _session.create_session(model_path, self._providers, self._options)
        return graph_cache.open_session(
            model_path,
            self._providers,
            lambda: _session.session_options(self._threads, self._session_options_arg),
            self._session_options_arg,
            self._cache_dir,
            lambda path, options: _session.create_session(path, self._providers, options),
        )

    def _load_onnx(self) -> None:
        try:
            model_path = self._model_path()
            sess = self._open(model_path)
        except ModelLoadError:
            if not self._from_cache and not self._derive_int8 and not self._optimize:
                raise
            if self._from_cache:
                from lightcol import download

                # A cached file may have been corrupted after download: hash-check, re-fetch, retry once.
                self.model_dir = Path(
                    download.repair_model_dir(
                        self.spec, cache_dir=self._cache_dir, local_files_only=self._local_files_only, token=self._token
                    )
                )
            # a derived file that does not load is made again (never loaded twice)
            model_path = self._model_path(force=self._derive_int8 or self._optimize)
            sess = self._open(model_path)
        self._graph = graph_interface.check(sess, self.spec.rules, self.spec.dim, self.spec.model, model_path)
        self._model = sess

    @property
    def model(self) -> _fastembed.ModelHandle:
        """The model, shaped as FastEmbed's: ``.model`` is the ONNX Runtime session (absent until loaded
        with ``lazy_load=True``), ``._model_dir`` the folder, ``.tokenizer`` the document tokenizer; other
        attributes are the session's (``embedding.model.get_inputs()``), opening it on first use."""
        return _fastembed.ModelHandle(self)

    def _session(self) -> Any:
        """The ONNX Runtime session, opened now if ``lazy_load=True`` deferred it."""
        if self._model is None:
            with self._session_lock:
                if self._model is None:
                    self._load_onnx()
        return self._model

    @property
    def dim(self) -> int:
        """Dimension of every output vector."""
        return self.spec.dim

    @property
    def embedding_size(self) -> int:
        """Dimension of every output vector (FastEmbed's name for :attr:`dim`)."""
        return self.spec.dim

    @classmethod
    def get_embedding_size(cls, model_name: str) -> int:
        """Vector dimension of a registry model, without loading it (as FastEmbed)."""
        return get_spec(model_name).dim

    @staticmethod
    def list_supported_models() -> list[dict[str, Any]]:
        """Every model in the registry, as FastEmbed's dicts plus lightcol's keys (``rules``...)."""
        return list_supported_models()

    @classmethod
    def _list_supported_models(cls) -> list[ModelSpec]:
        """Every registry entry as an object with ``.model``, ``.dim``, ``.model_file``... (as FastEmbed's)."""
        return list_specs()

    # -- encoding --------------------------------------------------------------------------------
    def _run(self, batch: _rules.Batch) -> np.ndarray:
        session = self._session()
        feeds = graph_interface.feeds(self._graph, batch.input_ids, batch.attention_mask)
        out = session.run([self._graph.output_name], feeds)[0]
        if out.ndim != 3 or out.shape[:2] != batch.input_ids.shape or out.shape[2] != self.spec.dim:
            raise ModelLoadError(
                f"ONNX model returned shape {out.shape} for inputs {batch.input_ids.shape}; expected (..., {self.spec.dim})."
            )
        return graph_interface.vectors(self._graph, out)

    def _embed_documents(
        self, texts: list[str], batch_size: int, dtype: type = np.float32, pool: tuple[int, int] = (1, 1)
    ) -> list[np.ndarray]:
        """Vectors of ``texts`` in input order; ``pool`` = (pool_factor, protected_tokens) pools them (float32 first)."""
        pooled = pool[0] > 1
        cast = dtype if not pooled else np.float32
        ids = self._tokenize(texts, is_doc=True)
        lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids)) + 1  # + marker
        order = np.argsort(lengths, kind="stable")
        result: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
        for idx in _token_batches(lengths, order, batch_size, self.batch_tokens):
            vectors = self._encode([ids[i] for i in idx], is_doc=True, dtype=cast)
            for row, i in enumerate(idx.tolist()):
                result[i] = vectors[row]
        if pooled:
            from lightcol.pooling import pool_tokens_batch

            result = pool_tokens_batch(result, *pool)
            if dtype is not np.float32:
                result = [v.astype(dtype) for v in result]
        return result

    def _embed_queries(self, texts: list[str], batch_size: int, dtype: type = np.float32) -> list[np.ndarray]:
        ids = self._tokenize(texts, is_doc=False)
        rules = self.spec.rules
        if rules.do_query_expansion:  # every query is query_length tokens; every row is kept
            rows = max(1, min(batch_size, self.batch_tokens // rules.query_length))
            batches = (np.arange(s, min(s + rows, len(ids))) for s in range(0, len(ids), rows))
        else:  # padded like documents: batches of similar length
            lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids)) + 1
            batches = _token_batches(lengths, np.argsort(lengths, kind="stable"), batch_size, self.batch_tokens)
        result: list[np.ndarray] = [None] * len(ids)  # type: ignore[list-item]
        for idx in batches:
            for i, vectors in zip(idx.tolist(), self._encode([ids[i] for i in idx], is_doc=False, dtype=dtype)):
                result[i] = vectors
        return result

    def _tokenize(self, texts: Sequence[str], is_doc: bool) -> list[list[int]]:
        """Token ids of ``[CLS] text [SEP]`` per text, truncated for documents or queries (no marker yet)."""
        return _rules.tokenize(self._doc_tokenizer if is_doc else self._query_tokenizer, texts, self._prep)

    def _encode(self, ids: Sequence[Sequence[int]], is_doc: bool, dtype: type = np.float32) -> list[np.ndarray]:
        """One ONNX Runtime call on token ids from :meth:`_tokenize`: each text's vectors, in order.

        Documents keep their non-padding, non-skiplist rows ``(kept_tokens, dim)``; queries all
        ``query_length`` rows with query expansion, else their non-padding rows. The batching service
        (:mod:`lightcol.serve`) merges texts of many requests into one call through this method, so its
        vectors are ``embed``'s.
        """
        rules = self.spec.rules
        if not is_doc:
            batch = _rules.build_queries(ids, rules)
            vectors = self._run(batch).astype(dtype, copy=False)
            if rules.do_query_expansion:
                return list(vectors)
            return [vectors[row][batch.keep[row]] for row in range(len(ids))]
        batch = _rules.build_documents(ids, rules, self._skip)
        vectors = self._run(batch)
        if dtype is not np.float32:
            vectors = vectors.astype(dtype)
        return [vectors[row][batch.keep[row]] for row in range(len(ids))]

    def _stream(
        self, items: str | Iterable[str], batch_size: int, is_doc: bool, dtype: Any = "float32",
        pool: tuple[int, int] = (1, 1),
    ) -> Iterator[np.ndarray]:
        """Validate the arguments now (at the call), then return the lazy generator."""
        _check_batch_size(batch_size)
        out_dtype = _out_dtype(dtype)
        _check_items(items)
        return self._generate(items, batch_size, is_doc, out_dtype, pool)

    def _generate(
        self, items: str | Iterable[str], batch_size: int, is_doc: bool, out_dtype: type, pool: tuple[int, int]
    ) -> Iterator[np.ndarray]:
        for chunk, error in _windows(_texts(items), _window_size(batch_size)):
            if chunk:
                if is_doc:
                    yield from self._embed_documents(chunk, batch_size, out_dtype, pool)
                else:
                    yield from self._embed_queries(chunk, batch_size, out_dtype)
            if error is not None:
                raise error

    def embed(
        self,
        documents: str | Iterable[str],
        batch_size: int = 256,
        parallel: int | None = None,
        *,
        dtype: Any = "float32",
        pool_factor: int = 1,
        protected_tokens: int = 1,
        **kwargs: Any,
    ) -> Iterator[np.ndarray]:
        """Embed documents lazily: one array ``(kept_tokens, dim)`` per document, in input order.

        Documents are truncated to the model's document length; padding and (per the model's rules)
        punctuation tokens are dropped; rows are L2-normalised. Any iterable is consumed in windows
        of ``min(8 * batch_size, 1024)`` texts (at least ``batch_size``), so memory stays constant
        however long the stream. Within a window texts are sorted by token length and run in batches
        of similar length holding at most ``batch_size`` texts and about ``self.batch_tokens``
        padded tokens (:func:`batch_tokens_for`: 1,024 for encoders up to hidden size 384, fewer for wider ones).

        Args:
            batch_size: most texts per ONNX Runtime call.
            parallel: ``None``: embed in this process (ONNX Runtime uses the ``threads`` given).
                ``N >= 1``: ``N`` worker processes, each with its own session (``0``: one per CPU
                core), for large offline jobs; results still come in input order, and a worker
                that dies raises :class:`lightcol.WorkerError`. Inputs of at most
                ``batch_size`` texts given as a list or tuple are embedded in-process.
            dtype: ``"float32"`` (default) or ``"float16"`` (half the memory; computed in float32).
            pool_factor: token pooling (:func:`lightcol.pool_tokens`): about ``pool_factor`` vectors
                become one, by Ward clustering of each document's vectors; ``1`` (default): off.
            protected_tokens: leading vectors kept unpooled (``[CLS]``), with ``pool_factor > 1``.
        """
        if kwargs:
            raise ArgumentError(f"unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        _check_batch_size(batch_size)
        from lightcol.pooling import _check_args

        pool = _check_args(pool_factor, protected_tokens)
        if parallel is None or (isinstance(documents, (list, tuple)) and len(documents) <= batch_size):
            if parallel is not None:
                from lightcol.parallel import worker_count

                worker_count(parallel)  # validate
            return self._stream(documents, batch_size, is_doc=True, dtype=dtype, pool=pool)
        return self._embed_parallel(documents, batch_size, parallel, dtype, pool)

    def _embed_parallel(
        self, documents: str | Iterable[str], batch_size: int, parallel: int, dtype: Any, pool: tuple[int, int]
    ) -> Iterator[np.ndarray]:
        from lightcol import parallel as _parallel

        workers = _parallel.worker_count(parallel)
        out_dtype = _out_dtype(dtype)
        _check_items(documents)
        state = self._worker_state
        threads = state["threads"] or max(1, (os.cpu_count() or 1) // workers)
        init = {
            "model_name": self.model_name,
            "specific_model_path": str(self.model_dir),
            "providers": state["providers"],
            "threads": threads,
            "session_options": state["session_options"],
            "model_variant": self.model_variant,
            "local_files_only": True,
        }
        if self._derive_int8 or self._optimize:
            init.update(cache_dir=self._cache_dir, optimize=self._optimize)
            self._model_path()  # made once here, not by every worker
        windows = _windows(_texts(documents), min(_window_size(batch_size), _parallel.CHUNK_TEXTS))
        return _parallel.embed_documents(LateInteractionTextEmbedding, init, windows, workers, batch_size, out_dtype, pool)

    def query_embed(
        self, query: str | Iterable[str], batch_size: int = 256, *, dtype: Any = "float32", **kwargs: Any
    ) -> Iterator[np.ndarray]:
        """Embed queries lazily: one array ``(query_length, dim)`` per query, in input order.

        Queries are padded with the mask token to the model's query length (query augmentation)
        and run in batches (at most ``batch_size`` queries, about ``self.batch_tokens`` tokens).
        ``dtype``: ``"float32"`` (default) or ``"float16"``.
        """
        if kwargs:
            raise ArgumentError(f"unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        return self._stream(query, batch_size, is_doc=False, dtype=dtype)

    def token_count(
        self, texts: str | Iterable[str], batch_size: int = 1024, is_doc: bool = True, include_extension: bool = False
    ) -> int:
        """Tokens of ``texts`` as FastEmbed counts them: ``[CLS]``, text and ``[SEP]`` after truncation.

        ``include_extension=True`` adds the document/query marker of each text, and for queries
        the mask-token expansion (every query then counts ``query_length``). Unlike FastEmbed,
        texts are truncated as lightcol embeds them: documents at the model's document length,
        queries at its query length (FastEmbed: both at 512), marker included.
        """
        _check_batch_size(batch_size)
        _check_items(texts)
        tokenizer = self._doc_tokenizer if is_doc else self._query_tokenizer
        rules = self.spec.rules
        query_length = rules.query_length
        marker = (rules.document_marker if is_doc else rules.query_marker) is not None
        total = 0
        for chunk, error in _windows(_texts(texts), batch_size):
            if not is_doc and include_extension and rules.do_query_expansion:
                total += len(chunk) * query_length  # marker + text + [MASK] expansion
            else:
                total += sum(len(s) for s in _rules.tokenize(tokenizer, chunk, self._prep))
                if include_extension and marker:
                    total += len(chunk)  # one marker each
            if error is not None:
                raise error
        return total

    def passage_embed(self, texts: str | Iterable[str], **kwargs: Any) -> Iterator[np.ndarray]:
        """FastEmbed's alias of :meth:`embed` (same arguments)."""
        return self.embed(texts, **kwargs)

    def rerank(
        self, query: str, documents: Sequence[str], k: int | None = None, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rerank first-stage candidates by MaxSim: ``(indices into documents, scores)``, best first.

        The candidates (typically 100-500 from a dense or BM25 retriever) are embedded in one
        batched, length-sorted pass; ``k=None`` returns them all, ties broken by lower index.
        """
        from lightcol import maxsim

        if not isinstance(query, str):
            raise ArgumentError(f"query must be a str, got {type(query).__name__}")
        if isinstance(documents, str):
            raise ArgumentError("documents must be a sequence of str, not a single str")
        if k is not None:
            _validate.k(k)
        _check_batch_size(batch_size)
        docs = list(documents)
        if not docs:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        q = next(self.query_embed(query))
        vectors = list(self.embed(docs, batch_size=batch_size))
        return maxsim.rank(q, vectors, len(docs) if k is None else k)
