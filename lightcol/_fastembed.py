"""FastEmbed's shapes that ``LateInteractionTextEmbedding`` keeps for drop-in use: the inner model
object users reach into (``embedding.model.model``) and constructor keywords that are session options."""

from __future__ import annotations

from typing import Any

import onnxruntime as ort

from lightcol import session as _session
from lightcol.errors import ArgumentError


def session_keywords(kwargs: dict[str, Any], options: _session.SessionOptionsLike | None) -> _session.SessionOptionsLike | None:
    """Move the ``onnxruntime.SessionOptions`` attribute names in ``kwargs`` (FastEmbed passes e.g.
    ``enable_cpu_mem_arena=False`` this way) into ``options``; any other keyword raises a
    ``TypeError`` (:class:`ArgumentError`) naming it."""
    names = set(_session._attribute_names())
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
    if kwargs:
        raise ArgumentError(
            f"LateInteractionTextEmbedding() got unexpected keyword argument(s): {', '.join(sorted(kwargs))}. "
            "Other keywords must be onnxruntime.SessionOptions attributes (e.g. enable_cpu_mem_arena=False)."
        )
    if not extra:
        return options
    if isinstance(options, ort.SessionOptions):
        raise ArgumentError(
            f"{', '.join(sorted(extra))} given as keyword(s) and session_options as an onnxruntime.SessionOptions: "
            "set them on that object instead."
        )
    merged = dict(options or {})
    for key in extra:
        if key in merged and merged[key] != extra[key]:
            raise ArgumentError(f"{key} given twice, as a keyword ({extra[key]!r}) and in session_options ({merged[key]!r})")
    merged.update(extra)
    return merged


class ModelHandle:
    """What FastEmbed's ``embedding.model`` is: ``.model`` is the ONNX Runtime session (absent, as in
    FastEmbed, until it is loaded), ``._model_dir`` the model folder, ``.tokenizer`` the document
    tokenizer; every other attribute is the session's (``embedding.model.run(...)``,
    ``.get_inputs()``), opening it if ``lazy_load=True`` deferred it."""

    def __init__(self, owner: Any) -> None:
        """``owner``: the ``LateInteractionTextEmbedding`` whose model this is."""
        self._owner = owner

    @property
    def _model_dir(self) -> Any:
        return self._owner.model_dir

    @property
    def model_name(self) -> str:
        return self._owner.model_name

    @property
    def model_description(self) -> Any:
        return self._owner.spec

    @property
    def tokenizer(self) -> Any:
        return self._owner._doc_tokenizer

    @property
    def query_tokenizer(self) -> Any:
        return self._owner._query_tokenizer

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "model":
            session = self._owner._model
            if session is None:
                raise AttributeError("model: the ONNX Runtime session is not loaded yet (lazy_load=True)")
            return session
        return getattr(self._owner._session(), name)

    def __repr__(self) -> str:
        state = "loaded" if self._owner._model is not None else "not loaded"
        return f"<lightcol model {self._owner.model_name!r} ({self._owner.model_dir}), session {state}>"
