"""lightcol: fast ColBERT-style late-interaction text embeddings on ONNX Runtime."""

from lightcol import maxsim
from lightcol.collection import MultiVectorCollection
from lightcol.document_index import DocumentIndex
from lightcol.embedding import LateInteractionTextEmbedding
from lightcol.index import Index
from lightcol.errors import (
    ArgumentError,
    DuplicateIdError,
    DownloadError,
    IncompatibleModelError,
    IndexFormatError,
    IndexVersionError,
    IntegrityError,
    InvalidTextError,
    LightcolError,
    ModelLoadError,
    OfflineModelMissingError,
    ProviderError,
    RegistryError,
    RepoAccessError,
    RepoNotFoundError,
    ShapeError,
    UnknownModelError,
    WorkerError,
)
from lightcol.muvera import Muvera
from lightcol.pooling import pool_tokens, pool_tokens_batch
from lightcol.registry import list_supported_models
from lightcol.splitting import Passage, split_documents

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "DuplicateIdError",
    "DocumentIndex",
    "DownloadError",
    "IncompatibleModelError",
    "Index",
    "IndexFormatError",
    "IndexVersionError",
    "IntegrityError",
    "InvalidTextError",
    "LateInteractionTextEmbedding",
    "LightcolError",
    "ModelLoadError",
    "MultiVectorCollection",
    "OfflineModelMissingError",
    "Passage",
    "ProviderError",
    "RegistryError",
    "RepoAccessError",
    "RepoNotFoundError",
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
