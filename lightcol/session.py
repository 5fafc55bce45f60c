"""ONNX Runtime sessions: execution-provider choice and session options."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union

import onnxruntime as ort

from lightcol.errors import ModelLoadError, ProviderError

ProviderSpec = Union[str, tuple[str, dict[str, Any]]]

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers (``onnxruntime-gpu`` adds CUDA)."""
    return list(ort.get_available_providers())


def choose_providers(
    cuda: bool | Literal["auto"] = "auto",
    providers: Sequence[ProviderSpec] | None = None,
    device_id: int | None = None,
) -> list[ProviderSpec]:
    """Resolve the user's ``cuda`` / ``providers`` / ``device_id`` into an ONNX Runtime provider list.

    ``cuda="auto"`` takes CUDA when onnxruntime offers it, else the CPU; ``cuda=True`` insists on CUDA;
    ``providers`` is taken as given (names checked) and cannot be combined with ``cuda=True``.
    """
    available = available_providers()
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
        raise ProviderError(f"cuda must be True, False or 'auto', got {cuda!r}")
    if cuda is True and CUDA not in available:
        raise ProviderError(
            f"cuda=True but onnxruntime offers no CUDAExecutionProvider (available: {available}). "
            "Install lightcol[gpu] (onnxruntime-gpu) with a matching CUDA, or use cuda='auto'."
        )
    if cuda is True or (cuda == "auto" and CUDA in available):
        return [(CUDA, {"device_id": device_id or 0}), CPU]
    return [CPU]


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Session options tuned for inference: all graph optimisations, ``threads`` intra-op threads."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


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
        raise ModelLoadError(
            f"ONNX file {path} could not be loaded ({type(e).__name__}: {str(e).strip()[:300]}); it is truncated or "
            "corrupt: delete it and re-download the model (or re-export the folder)."
        ) from e
