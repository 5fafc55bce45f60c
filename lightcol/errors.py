"""Exception types raised by lightcol.

Every error lightcol raises on purpose derives from :class:`LightcolError`, and each also derives
from the built-in exception a caller would naturally catch (``ValueError``, ``FileNotFoundError``,
``RuntimeError``...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class LightcolError(Exception):
    """Base class of every error lightcol raises on purpose."""


class RegistryError(LightcolError, ValueError):
    """``models.json`` (or a model folder's ``lightcol_config.json``) is malformed."""


class UnknownModelError(LightcolError, ValueError):
    """The model name is not in the registry and no local folder with rules was given."""


class InvalidTextError(LightcolError, UnicodeError):
    """A text cannot be encoded as UTF-8 (it holds a lone surrogate such as ``"\\ud800"``).

    A ``ValueError`` (via ``UnicodeError``). ``position`` is the item's index in the input iterable,
    ``offset`` the index of the first bad character in the text.
    """

    def __init__(self, message: str, position: int = 0, offset: int = 0) -> None:
        super().__init__(message)
        self.position = position
        self.offset = offset


class ModelLoadError(LightcolError, RuntimeError):
    """A model file (ONNX, tokenizer, config) is missing, truncated, garbage or inconsistent."""


class ProviderError(LightcolError, ValueError):
    """An ONNX Runtime execution provider was asked for but is not available."""


class ShapeError(LightcolError, ValueError):
    """Vectors handed to MaxSim or a collection have the wrong rank, dimension or dtype."""


class DownloadError(LightcolError, OSError):
    """Fetching a model from the Hugging Face hub failed."""


class OfflineModelMissingError(DownloadError, FileNotFoundError):
    """Offline mode is on and the model is not (completely) in the cache."""


class RepoAccessError(DownloadError, PermissionError):
    """The hub answered 401 (no/invalid token) or 403 (gated or forbidden)."""


class RepoNotFoundError(DownloadError, FileNotFoundError):
    """The hub answered 404: the repository, revision or file does not exist (or is private)."""


class IntegrityError(DownloadError):
    """A downloaded or cached file does not match the size or sha256 the hub reports."""


class WorkerError(LightcolError, RuntimeError):
    """A worker process of ``embed(..., parallel=N)`` died or failed."""


class ArgumentError(LightcolError, ValueError, TypeError):
    """An argument has a wrong type or value (``k=-1``, ``batch_size=0``, ``dtype="int8"``, an unknown
    option, a non-``str`` item). Both a ``ValueError`` and a ``TypeError``: either ``except`` catches it."""


class DuplicateIdError(LightcolError, ValueError):
    """An id given to a collection or index is already in it (or given twice in one call)."""


class IncompatibleModelError(LightcolError, ValueError):
    """A model given to open an index is not the one its vectors came from (name, dim or tokenization rules)."""


class IndexFormatError(LightcolError, ValueError):
    """A file is not a lightcol index, or is truncated or corrupted (rebuild it)."""


class IndexVersionError(IndexFormatError):
    """An index file was written in a newer format version than this lightcol reads (upgrade)."""


class IndexLockedError(LightcolError, RuntimeError):
    """Another writer (process, thread or object) is changing the index or document index: one writer
    at a time. Readers are never blocked; retry the change once the other writer is done."""


class DriftWarning(UserWarning):
    """Documents added to an index lie measurably farther from its codec's training data than that
    data did (see ``Index.drift``): they are stored with more error. Retrain (``compact(retrain=True)``
    on an index built with ``keep_full=True``) or rebuild the index."""


class InputFileError(LightcolError, ValueError):
    """An input file of ``lightcol embed`` cannot be read: unreadable, not valid UTF-8 / JSON / CSV, or a
    record lacks the text field or holds a non-string text. The message names the file and line (row);
    ``path`` and ``line`` hold them (``line`` is 1-based, ``None`` for the whole file)."""

    def __init__(self, message: str, path: str = "", line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class ResumeError(LightcolError, ValueError):
    """An output folder holds a job started with another model, options or inputs: it is not resumed
    (that would mix vectors); use a new folder or delete the old one."""


class NonFiniteWarning(RuntimeWarning):
    """Documents scored NaN or infinite because their stored vectors hold NaN or infinite values
    (damaged data, e.g. a memory-mapped file changed on disk): they rank last. The message names them;
    ``MultiVectorCollection.nonfinite_ids()`` lists every such document of a collection."""


class FilterError(ArgumentError):
    """A ``where`` metadata filter is malformed: an unknown operator, a value of the wrong type for its
    operator, an empty ``$and``... The message names the place in the filter (``where["year"]["$gte"]``)."""
