"""``lightcol serve``: an HTTP service for embedding, reranking and search, with dynamic batching.

Needs ``pip install 'lightcol[serve]'`` (FastAPI, uvicorn). ``import lightcol`` imports none of this.

* :func:`create_app` builds the ASGI application around one model (and optionally an index);
* :func:`run` serves it with uvicorn (graceful shutdown on SIGTERM/SIGINT);
* :class:`ServeConfig` holds the batching and limit settings;
* :mod:`lightcol.serve.batching` merges concurrent requests into ONNX Runtime batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightcol.serve.limits import Limits

if TYPE_CHECKING:
    from lightcol.serve.service import ServeConfig
    from lightcol.serve.app import create_app
    from lightcol.serve.server import run

__all__ = ["Limits", "ServeConfig", "create_app", "run"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from lightcol.serve.app import create_app

        return create_app
    if name == "ServeConfig":
        from lightcol.serve.service import ServeConfig

        return ServeConfig
    if name == "run":
        from lightcol.serve.server import run

        return run
    raise AttributeError(f"module 'lightcol.serve' has no attribute {name!r}")
