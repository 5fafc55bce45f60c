"""``LateInteractionTextEmbedding``: texts in, per-token ColBERT vectors out (FastEmbed-compatible)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lightcol import rules as _rules
from lightcol import session as _session
from lightcol.errors import ModelLoadError
from lightcol.registry import ModelSpec, get_spec, list_supported_models, read_folder_config

DEFAULT_MODEL = "colbert-ir/colbertv2.0"
#: Texts tokenized together before length-sorting into batches (in units of ``batch_size``).
_WINDOW_BATCHES = 8


def _texts(items: str | Iterable[str]) -> Iterator[str]:
    """Yield texts lazily, rejecting non-strings with a ``TypeError`` that names the position."""
    if isinstance(items, str):
        yield items
        return
    if isinstance(items, (bytes, bytearray)) or not isinstance(items, Iterable):
        raise TypeError(f"expected a str or an iterable of str, got {type(items).__name__}")
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"item {i} is {type(text).__name__}, not str; every text must be a str")
        yield text


def _windows(texts: Iterator[str], size: int) -> Iterator[tuple[list[str], BaseException | None]]:
    """Chunks of up to ``size`` texts; an exception raised by the source ends the stream after the texts read before it."""
    while True:
        chunk: list[str] = []
        try:
            for text in texts:
                chunk.append(text)
                if len(chunk) == size:
                    break
        except BaseException as e:  # noqa: BLE001 - re-raised by the caller after the chunk's vectors
            yield chunk, e
            return
        if not chunk:
            return
        yield chunk, None
        if len(chunk) < size:
            return


def _normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (as ``torch.nn.functional.normalize``, eps 1e-12), in place."""
    norms = np.sqrt(np.einsum("...d,...d->...", x, x))[..., None]
    np.maximum(norms, 1e-12, out=norms)
    x /= norms
    return x


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
        **kwargs: Any,
    ) -> None:
        device_ids = kwargs.pop("device_ids", None)  # FastEmbed's spelling
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        if device_id is None and device_ids:
            device_id = int(device_ids[0])
        self._providers = _session.choose_providers(cuda, providers, device_id)
        self._options = _session.session_options(threads)
        self._cache_dir = cache_dir
        self._local_files_only = local_files_only
        self._token = token
        self.model_name, self.spec, self.model_dir, self._from_cache = self._resolve(model_name, specific_model_path)
        rules = self.spec.rules
        base = _rules.load_tokenizer(self.model_dir / "tokenizer.json", rules)
        self._query_tokenizer = _rules.truncating(base, rules.query_length)
        self._doc_tokenizer = _rules.truncating(base, rules.document_length)
        self._skip = _rules.skiplist_ids(base, rules)
        self._session_lock = threading.Lock()
        self._model: Any = None
        if not lazy_load:
            self._load_onnx()

    # -- loading ---------------------------------------------------------------------------------
    def _resolve(self, model_name: str | None, path: str | os.PathLike[str] | None) -> tuple[str, ModelSpec, Path, bool]:
        if path is not None:
            folder = Path(path)
            if not folder.is_dir():
                raise ModelLoadError(f"specific_model_path {folder} is not a folder; pass the folder holding the model files.")
            spec = read_folder_config(folder)
            if spec is None:
                if model_name is None:
                    raise ModelLoadError(
                        f"{folder} has no lightcol_config.json; pass model_name= to take the rules from the registry, "
                        "or export the folder with tools/export_onnx.py."
                    )
                spec = get_spec(model_name)
            elif model_name is not None and model_name.lower() != spec.model.lower():
                spec = get_spec(model_name)  # an explicit registry name wins over the folder's own rules
            return model_name or spec.model, spec, folder, False
        spec = get_spec(model_name or DEFAULT_MODEL)
        from lightcol import download  # deferred: only models fetched from the hub need it

        folder = download.resolve_model_dir(
            spec, cache_dir=self._cache_dir, local_files_only=self._local_files_only, token=self._token
        )
        return spec.model, spec, Path(folder), True

    def _load_onnx(self) -> None:
        model_path = self.model_dir / self.spec.model_file
        try:
            sess = _session.create_session(model_path, self._providers, self._options)
        except ModelLoadError:
            if not self._from_cache:
                raise
            from lightcol import download

            # A cached file may have been corrupted after download: hash-check, re-fetch, retry once.
            self.model_dir = Path(
                download.repair_model_dir(
                    self.spec, cache_dir=self._cache_dir, local_files_only=self._local_files_only, token=self._token
                )
            )
            sess = _session.create_session(self.model_dir / self.spec.model_file, self._providers, self._options)
        inputs = {i.name: i for i in sess.get_inputs()}
        for required in ("input_ids", "attention_mask"):
            if required not in inputs:
                raise ModelLoadError(
                    f"ONNX file {model_path} has inputs {sorted(inputs)}, expected input_ids and attention_mask: "
                    "export it with tools/export_onnx.py."
                )
        out = sess.get_outputs()[0]
        if len(out.shape) != 3 or (isinstance(out.shape[-1], int) and out.shape[-1] != self.spec.dim):
            raise ModelLoadError(
                f"ONNX file {model_path} outputs shape {out.shape}, but model {self.spec.model!r} has dim {self.spec.dim}: "
                "the folder holds another model, or the registry entry is wrong."
            )
        self._input_types = {
            name: (np.int32 if "int32" in i.type else np.int64) for name, i in inputs.items()
        }
        self._output_name = out.name
        self._model = sess

    @property
    def model(self) -> Any:
        """The ONNX Runtime session (opened on first use when ``lazy_load=True``)."""
        if self._model is None:
            with self._session_lock:
                if self._model is None:
                    self._load_onnx()
        return self._model

    @property
    def dim(self) -> int:
        """Dimension of every output vector."""
        return self.spec.dim

    @staticmethod
    def list_supported_models() -> list[dict[str, Any]]:
        """Every model in the registry, as FastEmbed's dicts plus lightcol's keys (``rules``...)."""
        return list_supported_models()

    # -- encoding --------------------------------------------------------------------------------
    def _run(self, batch: _rules.Batch) -> np.ndarray:
        session = self.model
        feeds: dict[str, np.ndarray] = {}
        for name, dtype in self._input_types.items():
            if name == "input_ids":
                feeds[name] = batch.input_ids.astype(dtype, copy=False)
            elif name == "attention_mask":
                feeds[name] = batch.attention_mask.astype(dtype, copy=False)
            elif name == "token_type_ids":
                feeds[name] = np.zeros_like(batch.input_ids, dtype=dtype)
            else:
                raise ModelLoadError(f"ONNX model has an unexpected input {name!r}; export it with tools/export_onnx.py.")
        out = session.run([self._output_name], feeds)[0]
        if out.ndim != 3 or out.shape[:2] != batch.input_ids.shape or out.shape[2] != self.spec.dim:
            raise ModelLoadError(
                f"ONNX model returned shape {out.shape} for inputs {batch.input_ids.shape}; expected (..., {self.spec.dim})."
            )
        return _normalize(np.asarray(out, dtype=np.float32))

    def _embed_documents(self, texts: list[str], batch_size: int) -> list[np.ndarray]:
        ids = _rules.tokenize(self._doc_tokenizer, texts)
        order = np.argsort(np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids)), kind="stable")
        result: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = _rules.build_documents([ids[i] for i in idx], self.spec.rules, self._skip)
            vectors = self._run(batch)
            for row, i in enumerate(idx):
                result[i] = vectors[row][batch.keep[row]]
        return result

    def _embed_queries(self, texts: list[str], batch_size: int) -> list[np.ndarray]:
        ids = _rules.tokenize(self._query_tokenizer, texts)
        result: list[np.ndarray] = []
        for start in range(0, len(ids), batch_size):
            vectors = self._run(_rules.build_queries(ids[start : start + batch_size], self.spec.rules))
            result.extend(np.array(v) for v in vectors)
        return result

    def _stream(self, items: str | Iterable[str], batch_size: int, is_doc: bool) -> Iterator[np.ndarray]:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        encode = self._embed_documents if is_doc else self._embed_queries
        for chunk, error in _windows(_texts(items), batch_size * _WINDOW_BATCHES):
            if chunk:
                yield from encode(chunk, batch_size)
            if error is not None:
                raise error

    def embed(self, documents: str | Iterable[str], batch_size: int = 32, **kwargs: Any) -> Iterator[np.ndarray]:
        """Embed documents lazily: one float32 array ``(kept_tokens, dim)`` per document, in input order.

        Documents are truncated to the model's document length; padding and (per the model's rules)
        punctuation tokens are dropped; rows are L2-normalised. Any iterable is consumed in windows
        of ``8 * batch_size`` texts, so memory stays constant however long the stream.
        """
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        return self._stream(documents, batch_size, is_doc=True)

    def query_embed(self, query: str | Iterable[str], batch_size: int = 32, **kwargs: Any) -> Iterator[np.ndarray]:
        """Embed queries lazily: one float32 array ``(query_length, dim)`` per query, in input order.

        Queries are padded with the mask token to the model's query length (query augmentation).
        """
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        return self._stream(query, batch_size, is_doc=False)

    def token_count(
        self, texts: str | Iterable[str], batch_size: int = 1024, is_doc: bool = True, include_extension: bool = False
    ) -> int:
        """Tokens the model sees for ``texts``: ``[CLS]``, marker, text and ``[SEP]`` after truncation.

        With ``is_doc=False`` and ``include_extension=True``, queries count their mask-token
        expansion too (every query then counts ``query_length``).
        """
        if not is_doc and include_extension:
            return sum(len(chunk) for chunk, _ in _windows(_texts(texts), batch_size)) * self.spec.rules.query_length
        tokenizer = self._doc_tokenizer if is_doc else self._query_tokenizer
        total = 0
        for chunk, error in _windows(_texts(texts), batch_size):
            total += sum(len(s) + 1 for s in _rules.tokenize(tokenizer, chunk))
            if error is not None:
                raise error
        return total

    def rerank(
        self, query: str, documents: Sequence[str], k: int | None = None, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rerank first-stage candidates by MaxSim: ``(indices into documents, scores)``, best first.

        The candidates (typically 100-500 from a dense or BM25 retriever) are embedded in one
        batched, length-sorted pass; ``k=None`` returns them all, ties broken by lower index.
        """
        from lightcol import maxsim

        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        if isinstance(documents, str):
            raise TypeError("documents must be a sequence of str, not a single str")
        docs = list(documents)
        if not docs:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        q = next(self.query_embed(query))
        vectors = list(self.embed(docs, batch_size=batch_size))
        return maxsim.rank(q, vectors, len(docs) if k is None else k)
