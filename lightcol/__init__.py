"""lightcol: fast ColBERT-style late-interaction text embeddings on ONNX Runtime."""

from typing import TYPE_CHECKING

from lightcol import maxsim
from lightcol.embedding import LateInteractionTextEmbedding
from lightcol.errors import (
    ArgumentError,
    DuplicateIdError,
    DownloadError,
    DriftWarning,
    FilterError,
    IncompatibleModelError,
    IndexFormatError,
    IndexLockedError,
    IndexVersionError,
    InputFileError,
    IntegrityError,
    InvalidTextError,
    LightcolError,
    ModelLoadError,
    NonFiniteWarning,
    OfflineModelMissingError,
    ProviderError,
    RegistryError,
    RepoAccessError,
    RepoNotFoundError,
    ResumeError,
    ShapeError,
    UnknownModelError,
    WorkerError,
)
from lightcol.registry import list_supported_models

if TYPE_CHECKING:
    from lightcol.collection import MultiVectorCollection
    from lightcol.document_index import DocumentIndex
    from lightcol.index import Index
    from lightcol.muvera import Muvera
    from lightcol.pooling import pool_tokens, pool_tokens_batch
    from lightcol.splitting import Passage, split_documents

__version__ = "0.1.0"

#: Imported on first use (PEP 562), so ``import lightcol`` (a serverless cold start) does not pay for them.
_LAZY = {
    "DocumentIndex": "lightcol.document_index",
    "Index": "lightcol.index",
    "MultiVectorCollection": "lightcol.collection",
    "Muvera": "lightcol.muvera",
    "pool_tokens": "lightcol.pooling",
    "pool_tokens_batch": "lightcol.pooling",
    "Passage": "lightcol.splitting",
    "split_documents": "lightcol.splitting",
}


def __getattr__(name: str) -> object:
    import importlib
    import importlib.util

    module = _LAZY.get(name)
    if module is None:
        # a submodule not imported yet (``lightcol.collection``), as if ``import lightcol`` had imported it
        if name.startswith("_") or importlib.util.find_spec(f"lightcol.{name}") is None:
            raise AttributeError(f"module 'lightcol' has no attribute {name!r}")
        return importlib.import_module(f"lightcol.{name}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "ArgumentError",
    "DuplicateIdError",
    "DocumentIndex",
    "DownloadError",
    "DriftWarning",
    "FilterError",
    "IncompatibleModelError",
    "Index",
    "IndexFormatError",
    "IndexLockedError",
    "IndexVersionError",
    "InputFileError",
    "IntegrityError",
    "InvalidTextError",
    "LateInteractionTextEmbedding",
    "LightcolError",
    "ModelLoadError",
    "MultiVectorCollection",
    "NonFiniteWarning",
    "OfflineModelMissingError",
    "Passage",
    "ProviderError",
    "RegistryError",
    "RepoAccessError",
    "RepoNotFoundError",
    "ResumeError",
    "ShapeError",
    "UnknownModelError",
    "WorkerError",
    "Muvera",
    "list_supported_models",
    "pool_tokens",
    "pool_tokens_batch",
    "split_documents",
    "maxsim",
    "__version__",
]
