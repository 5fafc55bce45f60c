"""ONNX Runtime sessions: execution-provider choice and session options."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import onnxruntime as ort

from lightcol import _validate
from lightcol.errors import ArgumentError, ModelLoadError, ProviderError

ProviderSpec = Union[str, tuple[str, dict[str, Any]]]

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers (``onnxruntime-gpu`` adds CUDA)."""
    return list(ort.get_available_providers())


#: FastEmbed's ``Device`` names for ``cuda=``.
_DEVICES: dict[str, bool | str] = {"cuda": True, "cpu": False, "auto": "auto"}


def choose_providers(
    cuda: bool | Literal["auto"] = "auto",
    providers: Sequence[ProviderSpec] | None = None,
    device_id: int | None = None,
) -> list[ProviderSpec]:
    """Resolve the user's ``cuda`` / ``providers`` / ``device_id`` into an ONNX Runtime provider list.

    ``cuda="auto"`` takes CUDA when onnxruntime offers it, else the CPU; ``cuda=True`` insists on CUDA;
    ``providers`` is taken as given (names checked) and cannot be combined with ``cuda=True``.
    FastEmbed's ``Device`` values (``"cuda"``, ``"cpu"``, ``"auto"``: a ``str`` enum) mean ``True``,
    ``False`` and ``"auto"``.
    """
    available = available_providers()
    if isinstance(cuda, str) and not isinstance(cuda, bool):
        cuda = _DEVICES.get(str(cuda.value if hasattr(cuda, "value") else cuda).lower(), cuda)
    if providers is not None:
        if cuda is True:
            raise ProviderError("Pass either providers=[...] or cuda=True, not both.")
        if isinstance(providers, (str, bytes)):
            raise ProviderError(f"providers must be a list of provider names, e.g. [{providers!r}]")
        resolved: list[ProviderSpec] = []
        for p in providers:
            name = p[0] if isinstance(p, tuple) else p
            if name not in available:
                raise ProviderError(
                    f"Execution provider {name!r} is not available in this onnxruntime build; available: {available}. "
                    "For CUDA install lightcol[gpu] (onnxruntime-gpu) instead of onnxruntime."
                )
            resolved.append(p)
        if not resolved:
            raise ProviderError(f"providers is empty; choose from {available}")
        return resolved
    if cuda not in (True, False, "auto"):
        raise ProviderError(f"cuda must be True, False or 'auto' (or FastEmbed's 'cuda' / 'cpu'), got {cuda!r}")
    if cuda is True and CUDA not in available:
        raise ProviderError(
            f"cuda=True but onnxruntime offers no CUDAExecutionProvider (available: {available}). "
            "Install lightcol[gpu] (onnxruntime-gpu) with a matching CUDA, or use cuda='auto'."
        )
    if cuda is True or (cuda == "auto" and CUDA in available):
        return [(CUDA, {"device_id": device_id or 0}), CPU]
    return [CPU]


#: ``SessionOptions`` attributes that :func:`options_state` copies (for worker processes: the object does not pickle).
_OPTION_ATTRS = (
    "graph_optimization_level",
    "execution_mode",
    "intra_op_num_threads",
    "inter_op_num_threads",
    "enable_cpu_mem_arena",
    "enable_mem_pattern",
    "enable_mem_reuse",
    "log_severity_level",
    "optimized_model_filepath",
)

_ENUM_ATTRS = {"graph_optimization_level": ort.GraphOptimizationLevel, "execution_mode": ort.ExecutionMode}

SessionOptionsLike = Union[ort.SessionOptions, Mapping[str, Any]]


#: Prefixes of ONNX Runtime session config keys (``onnxruntime_session_options_config_keys.h``).
_CONFIG_PREFIXES = ("session.", "optimization.", "mlas.", "ep.", "kernel.", "qdq.", "memory.")


#: Microseconds an idle intra-op thread spins before it sleeps (see :func:`session_options`).
SPIN_US = 100
_SPIN_KEYS = ("session.intra_op.allow_spinning", "session.intra_op.spin_duration_us")


def _attribute_names() -> list[str]:
    opts = ort.SessionOptions()
    return sorted(a for a in dir(opts) if not a.startswith("_") and not callable(getattr(opts, a)))


def _check_threads(threads: int | None) -> None:
    _validate.integer("threads", threads, minimum=1, allow_none=True)


def session_options(threads: int | None = None, options: SessionOptionsLike | None = None) -> ort.SessionOptions:
    """Session options tuned for inference: all graph optimisations, ``threads`` intra-op threads
    that spin at most :data:`SPIN_US` microseconds when idle.

    ``options`` overrides the defaults: an ``onnxruntime.SessionOptions`` is used as given (only
    ``threads``, when not ``None``, is applied to it); a mapping sets ``SessionOptions`` attributes
    by name (``{"intra_op_num_threads": 2, "enable_mem_pattern": False}``) and any other key as a
    session config entry (``{"session.intra_op.allow_spinning": "0"}``).
    """
    _check_threads(threads)
    if options is not None and not isinstance(options, (ort.SessionOptions, Mapping)):
        raise ArgumentError(
            f"session_options must be an onnxruntime.SessionOptions or a mapping, got {type(options).__name__}"
        )
    if isinstance(options, ort.SessionOptions):
        opts = options
    else:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        # Idle intra-op threads spin only briefly (SPIN_US) before they sleep: between the operators
        # of one run they stay awake (no wake-up per operator: single-query latency), between runs
        # and under load they sleep. ONNX Runtime's unbounded spinning, measured on a 2-core machine
        # shared with other work, costs a third of the throughput. Either setting given wins:
        # {"session.intra_op.allow_spinning": "0"} never spins, "1" alone spins as ONNX Runtime does.
        if options is None or not any(k in options for k in _SPIN_KEYS):
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
            opts.add_session_config_entry("session.intra_op.spin_duration_us", str(SPIN_US))
        if options is not None:
            attrs = _attribute_names()
            for key, value in options.items():
                if not isinstance(key, str):
                    raise ArgumentError(f"session_options keys must be str, got {key!r}")
                if key in attrs:
                    try:
                        if key in _ENUM_ATTRS and isinstance(value, (int, str)):
                            enum = _ENUM_ATTRS[key]
                            value = getattr(enum, value) if isinstance(value, str) else enum(value)
                        setattr(opts, key, value)
                    except (TypeError, ValueError, AttributeError) as e:
                        raise ArgumentError(f"session_options[{key!r}] = {value!r} is not a valid value: {e}") from None
                elif key.startswith(_CONFIG_PREFIXES):
                    opts.add_session_config_entry(key, str(value))
                else:
                    raise ArgumentError(
                        f"unknown session_options key {key!r}. Valid keys: the onnxruntime.SessionOptions attributes "
                        f"{', '.join(attrs)}; or a session config entry starting with {', '.join(_CONFIG_PREFIXES)} "
                        "(e.g. 'session.intra_op.allow_spinning')."
                    )
    if threads is not None:
        opts.intra_op_num_threads = threads
    return opts


def options_state(options: SessionOptionsLike | None) -> dict[str, Any] | None:
    """A picklable mapping that :func:`session_options` turns back into equivalent options.

    Session config entries of a ``SessionOptions`` object cannot be read back by name in general;
    those that lightcol knows of are copied, others are lost (pass a mapping to keep them all).
    """
    if options is None or isinstance(options, Mapping):
        return None if options is None else dict(options)
    state: dict[str, Any] = {}
    for attr in _OPTION_ATTRS:
        value = getattr(options, attr, None)
        if value is not None and value != "":
            state[attr] = int(value) if attr in _ENUM_ATTRS else value
    for key in (*_SPIN_KEYS, "session.inter_op.allow_spinning"):
        try:
            value = options.get_session_config_entry(key)
        except Exception:  # onnxruntime raises when the entry is not set
            continue
        state[key] = value
    return state


def create_session(
    model_path: str | Path,
    providers: Sequence[ProviderSpec],
    options: ort.SessionOptions,
) -> ort.InferenceSession:
    """Open ``model_path`` with ONNX Runtime; a missing or corrupt file raises :class:`ModelLoadError`."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelLoadError(f"ONNX file {path} is missing; re-download the model or re-export the folder.")
    try:
        return ort.InferenceSession(os.fspath(path), sess_options=options, providers=list(providers))
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        from lightcol.model_folder import missing_external_data

        missing = missing_external_data(path)
        if missing:
            raise ModelLoadError(
                f"ONNX file {path} keeps its weights in {', '.join(missing)}, which is not in {path.parent}: copy "
                "it next to the ONNX file (it belongs to the export), or re-download the model."
            ) from e
        raise ModelLoadError(
            f"ONNX file {path} could not be loaded ({type(e).__name__}: {str(e).strip()[:300]}); it is truncated or "
            "corrupt: delete it and re-download the model (or re-export the folder)."
        ) from e
