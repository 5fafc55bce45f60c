"""lightcol: fast ColBERT-style late-interaction text embeddings on ONNX Runtime."""

from lightcol import maxsim
from lightcol.collection import MultiVectorCollection
from lightcol.embedding import LateInteractionTextEmbedding
from lightcol.index import Index
from lightcol.errors import (
    ArgumentError,
    DuplicateIdError,
    DownloadError,
    IndexFormatError,
    IndexVersionError,
    InputFileError,
    IntegrityError,
    InvalidTextError,
    LightcolError,
    ModelLoadError,
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
from lightcol.muvera import Muvera
from lightcol.pooling import pool_tokens, pool_tokens_batch
from lightcol.registry import list_supported_models

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "DuplicateIdError",
    "DownloadError",
    "Index",
    "IndexFormatError",
    "IndexVersionError",
    "InputFileError",
    "IntegrityError",
    "InvalidTextError",
    "LateInteractionTextEmbedding",
    "LightcolError",
    "ModelLoadError",
    "MultiVectorCollection",
    "OfflineModelMissingError",
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
    "maxsim",
    "__version__",
]
