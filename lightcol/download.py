"""Fetching model files from the Hugging Face hub into a local cache.

Layout: huggingface-hub's own cache layout under the cache folder
(``models--org--name/{blobs,refs,snapshots/<commit>}``), so ``hf cache`` tooling understands it. lightcol adds
one small manifest per repo and commit, ``models--org--name/.lightcol/<commit>.json``, holding each file's size,
sha256 and hub ETag as verified at download time. A warm load reads ``refs/<revision>``, the manifest and the
files' sizes and makes no network request at all.

Environment (read at call time):

- ``LIGHTCOL_CACHE_PATH``: cache folder (default: ``$XDG_CACHE_HOME/lightcol``, else ``~/.cache/lightcol``).
- ``HF_HUB_OFFLINE=1``: never touch the network (same as ``local_files_only=True``).
- ``HF_TOKEN``: token for private or gated repos (``token=`` wins).
- ``HF_ENDPOINT``: the hub's address (a mirror, or a fake hub in tests).
- ``LIGHTCOL_DOWNLOAD_RETRIES`` (default 3) and ``LIGHTCOL_DOWNLOAD_BACKOFF`` (seconds, default 1.0): a dropped
  connection or a 5xx is retried that many times, waiting ``backoff * 2**attempt`` in between. (huggingface_hub
  additionally retries a failed metadata request and resumes a cut transfer with a ``Range`` request by itself.)
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightcol import _derived
from lightcol._cache_dir import CACHE_ENV, default_cache_dir, resolve_cache_dir  # noqa: F401 - part of this module's API
from lightcol.errors import (
    ArgumentError,
    DownloadError,
    IntegrityError,
    OfflineModelMissingError,
    RepoAccessError,
    RepoNotFoundError,
)
from lightcol.registry import ModelSpec, read_folder_config, write_folder_config

__all__ = [
    "default_cache_dir",
    "resolve_cache_dir",
    "resolve_model_dir",
    "repair_model_dir",
    "export_model_folder",
]

RETRIES_ENV = "LIGHTCOL_DOWNLOAD_RETRIES"
BACKOFF_ENV = "LIGHTCOL_DOWNLOAD_BACKOFF"
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 1.0
_MANIFEST_DIR = ".lightcol"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")
_STALE_INCOMPLETE_S = 3600.0
_TRUE = {"1", "ON", "YES", "TRUE"}


# --------------------------------------------------------------------------------------------------- locations
def _repo_id(spec: ModelSpec) -> str:
    repo = spec.hf_repo
    if not repo:
        raise DownloadError(
            f"Model {spec.model!r} has no Hugging Face source ('sources': {{'hf': ...}}); "
            "load it from a local folder with specific_model_path=FOLDER."
        )
    return repo


def _revision(spec: ModelSpec) -> str:
    return spec.sources.get("hf_revision") or "main"


def _storage(cache: Path, repo: str) -> Path:
    return cache / ("models--" + repo.replace("/", "--"))


def _offline_reason(local_files_only: bool) -> str | None:
    if local_files_only:
        return "local_files_only=True"
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").upper() in _TRUE:
            return f"{var}={os.environ[var]}"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and getattr(constants, "HF_HUB_OFFLINE", False):
        return "HF_HUB_OFFLINE was set when huggingface_hub was imported"
    return None


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or None


def _hub_url() -> str:
    return _endpoint() or "https://huggingface.co"


def _token(token: str | None) -> str | None:
    return token or os.environ.get("HF_TOKEN") or None


def _retry_policy() -> tuple[int, float]:
    try:
        retries = max(0, int(os.environ.get(RETRIES_ENV, DEFAULT_RETRIES)))
    except ValueError:
        retries = DEFAULT_RETRIES
    try:
        backoff = max(0.0, float(os.environ.get(BACKOFF_ENV, DEFAULT_BACKOFF)))
    except ValueError:
        backoff = DEFAULT_BACKOFF
    return retries, backoff


def _fix_command(spec: ModelSpec, cache: Path) -> str:
    return f"lightcol download {spec.model} --cache-dir {cache}"


# ------------------------------------------------------------------------------------------------------ hashing
def _file_hashes(path: Path, want_git_sha1: bool) -> tuple[str, str | None]:
    """sha256 and (optionally) git blob sha1 of a file, in one pass."""
    sha256 = hashlib.sha256()
    sha1 = None
    if want_git_sha1:
        sha1 = hashlib.sha1()
        sha1.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            if sha1 is not None:
                sha1.update(chunk)
    return sha256.hexdigest(), (sha1.hexdigest() if sha1 is not None else None)


def _etag_of(pointer: Path) -> str | None:
    """The hub ETag a cached file was stored under: huggingface-hub names each blob after it."""
    if not pointer.is_symlink():
        return None
    name = Path(os.path.realpath(pointer)).name
    return name if (_SHA256.fullmatch(name) or _SHA1.fullmatch(name)) else None


# ----------------------------------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class _Problem:
    file: str
    kind: str  # "missing" | "size" | "hash" | "unrecorded"
    detail: str


def _manifest_path(storage: Path, commit: str) -> Path:
    return storage / _MANIFEST_DIR / f"{commit}.json"


def _read_manifest(storage: Path, commit: str) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(_manifest_path(storage, commit).read_text(encoding="utf-8"))
        files = data["files"]
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _write_manifest(storage: Path, repo: str, commit: str, files: dict[str, dict[str, Any]]) -> None:
    path = _manifest_path(storage, commit)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    doc = {"schema_version": 1, "repo_id": repo, "commit": commit, "files": dict(sorted(files.items()))}
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _local_commit(storage: Path, revision: str) -> str | None:
    if _SHA1.fullmatch(revision):
        return revision
    try:
        commit = (storage / "refs" / revision).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if _SHA1.fullmatch(commit) else None


def _write_ref(storage: Path, revision: str, commit: str) -> None:
    """``refs/<revision>`` -> commit, atomically, as huggingface-hub writes it."""
    if revision == commit:
        return
    ref = storage / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f"{ref.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(commit, encoding="utf-8")
    os.replace(tmp, ref)


def _check(snapshot: Path, files: tuple[str, ...], manifest: dict[str, dict[str, Any]], verify_hash: bool) -> list[_Problem]:
    """What is wrong with the cached files: size always (from the manifest), sha256 when ``verify_hash``."""
    problems = []
    for name in files:
        path = snapshot / name
        if not path.is_file():
            problems.append(_Problem(name, "missing", "not in the cache"))
            continue
        entry = manifest.get(name)
        if entry is None:
            problems.append(_Problem(name, "unrecorded", "no size/hash recorded"))
            continue
        size = path.stat().st_size
        if size != entry.get("size"):
            problems.append(_Problem(name, "size", f"size {size} bytes, expected {entry.get('size')}"))
            continue
        if verify_hash and entry.get("sha256"):
            sha256, _ = _file_hashes(path, want_git_sha1=False)
            if sha256 != entry["sha256"]:
                problems.append(_Problem(name, "hash", f"sha256 {sha256}, expected {entry['sha256']}"))
    return problems


def _verify_unrecorded_offline(snapshot: Path, problem: _Problem, verify_hash: bool) -> _Problem | None:
    """A file put in the cache by other hub tooling (no manifest): accept it, hash-checking against its ETag if asked."""
    if not verify_hash:
        return None
    path = snapshot / problem.file
    etag = _etag_of(path)
    if etag is None:
        return None
    sha256, sha1 = _file_hashes(path, want_git_sha1=bool(_SHA1.fullmatch(etag)))
    if etag in (sha256, sha1):
        return None
    return _Problem(problem.file, "hash", f"content does not match the hub ETag {etag}")


# ------------------------------------------------------------------------------------------------------- errors
def _hf_errors() -> Any:
    from huggingface_hub import errors

    return errors


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception in its cause/context chain (each once)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of the first hub HTTP error in ``exc``'s cause/context chain."""
    errors = _hf_errors()
    for cur in _chain(exc):
        if isinstance(cur, errors.HfHubHTTPError) and getattr(cur, "response", None) is not None:
            return cur.response.status_code
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level exception types of whichever HTTP client huggingface_hub uses (httpx2 in 2.x)."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):
        try:
            types.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def _is_network_error(exc: BaseException) -> bool:
    transport = _transport_errors()
    for cur in _chain(exc):
        if isinstance(cur, transport):
            return True
        if isinstance(cur, OSError) and "Consistency check failed" in str(cur):
            return True  # huggingface_hub's check that the body had the announced size
    return False


def _translate(exc: Exception, spec: ModelSpec, repo: str, revision: str, filename: str) -> tuple[bool, Exception]:
    """(transient?, lightcol error) for an exception raised while fetching ``filename``."""
    errors = _hf_errors()
    status = _http_status(exc)
    page = f"{_hub_url()}/{repo}"
    where = f"{repo!r} (model {spec.model!r}, revision {revision!r}, file {filename!r})"
    if status == 401:
        return False, RepoAccessError(
            f"401 Unauthorized from the hub for {where}: a token is missing or invalid (the repository is private "
            "or gated, or does not exist). Set HF_TOKEN or pass token=... with a token that can read it."
        )
    if status == 403:
        return False, RepoAccessError(
            f"403 Forbidden from the hub for {where}: the repository is gated or your token may not read it. "
            f"Accept the model's terms at {page} with the account whose token you use (HF_TOKEN or token=...)."
        )
    if status == 404 or isinstance(exc, (errors.RepositoryNotFoundError, errors.RevisionNotFoundError)):
        if isinstance(exc, errors.RemoteEntryNotFoundError):
            what = f"file {filename!r} does not exist in {repo!r} at revision {revision!r}"
        elif isinstance(exc, errors.RevisionNotFoundError):
            what = f"revision {revision!r} does not exist in {repo!r}"
        else:
            what = f"repository {repo!r} does not exist, or it is private and the token sent cannot see it"
        return False, RepoNotFoundError(
            f"404 Not Found from the hub for model {spec.model!r}: {what}. Check the name at {page}; "
            "for a private repo set HF_TOKEN or pass token=...."
        )
    if (status is not None and (status >= 500 or status in (408, 429))) or _is_network_error(exc):
        reason = f"HTTP {status}" if status is not None else f"{type(exc).__name__}: {exc}".splitlines()[0]
        return True, DownloadError(f"Downloading {where} from {_hub_url()} failed ({reason}); retry later.")
    if isinstance(exc, errors.LocalEntryNotFoundError):
        # huggingface_hub's "couldn't reach the hub and the file isn't cached": a connectivity problem.
        return True, DownloadError(f"Could not reach {_hub_url()} to download {where}: {exc}".splitlines()[0])
    if isinstance(exc, errors.FileMetadataError):
        return False, DownloadError(f"{_hub_url()} did not answer like a Hugging Face hub for {where}: {exc}")
    return False, DownloadError(f"Downloading {where} failed: {type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------------------------------- fetching
def _progress_class(progress: bool) -> Any:
    if progress:
        return None  # huggingface_hub's bars (they honour HF_HUB_DISABLE_PROGRESS_BARS)
    from tqdm.auto import tqdm

    class _Silent(tqdm):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return _Silent


def _library_version() -> str:
    try:
        from importlib.metadata import version

        return version("lightcol")
    except Exception:
        return "0"


@dataclass(frozen=True)
class _HubFile:
    """What the hub reported for one file (HEAD on its resolve URL)."""

    commit: str
    etag: str | None
    size: int | None


def _head(repo: str, revision: str, filename: str, token: str | None) -> _HubFile:
    """One metadata request, no retries inside (ours are outside, with a backoff we control)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo, filename, revision=revision, endpoint=_endpoint())
    meta = get_hf_file_metadata(url, token=token, endpoint=_endpoint(), retry_on_errors=False)
    if not meta.commit_hash:
        from huggingface_hub.errors import FileMetadataError

        raise FileMetadataError(f"the answer for {url} has no X-Repo-Commit header")
    return _HubFile(meta.commit_hash, (meta.etag or "").lower() or None, meta.size)


def _download_one(
    spec: ModelSpec, repo: str, revision: str, filename: str, cache: Path, token: str | None, tqdm_class: Any
) -> tuple[Path, _HubFile | None]:
    """Fetch one file with ``hf_hub_download``, retrying transient failures with exponential backoff.

    A HEAD request of our own comes first: it reports the commit, size and ETag, and fails fast (huggingface_hub
    would otherwise retry a failing metadata request for ~20 s by itself before giving up). Returns the cached
    path and what the hub reported (``None`` when the file was already in the snapshot).
    """
    from huggingface_hub import hf_hub_download

    storage = _storage(cache, repo)
    retries, backoff = _retry_policy()
    for attempt in range(retries + 1):
        try:
            hub = None
            if not (_SHA1.fullmatch(revision) and (storage / "snapshots" / revision / filename).is_file()):
                hub = _head(repo, revision, filename, token)
            path = hf_hub_download(
                repo,
                filename,
                revision=hub.commit if hub else revision,
                cache_dir=str(cache),
                token=token,
                endpoint=_endpoint(),
                tqdm_class=tqdm_class,
                library_name="lightcol",
                library_version=_library_version(),
            )
            return Path(str(path)), hub
        except Exception as e:  # noqa: BLE001 - every failure becomes a lightcol error below
            transient, err = _translate(e, spec, repo, revision, filename)
            if not transient or attempt == retries:
                if transient:
                    err = type(err)(f"{err} (gave up after {attempt + 1} attempts)")
                raise err from e
            time.sleep(backoff * (2**attempt))
    raise AssertionError("unreachable")


def _record(spec: ModelSpec, pointer: Path, filename: str, hub: _HubFile | None) -> dict[str, Any]:
    """Check a fetched file against the hub's size and ETag (sha256 for LFS files, git blob sha1 otherwise)."""
    etag = hub.etag if hub is not None else _etag_of(pointer)
    if etag is not None and not (_SHA256.fullmatch(etag) or _SHA1.fullmatch(etag)):
        etag = None  # not a content hash (a non-hub server): size only
    size = pointer.stat().st_size
    problem = None
    if hub is not None and hub.size is not None and size != hub.size:
        problem = f"it has {size} bytes, the hub reports {hub.size}"
    sha256, sha1 = _file_hashes(pointer, want_git_sha1=bool(etag and _SHA1.fullmatch(etag)))
    if problem is None and etag is not None and etag not in (sha256, sha1):
        kind = "sha256" if _SHA256.fullmatch(etag) else "git blob sha1"
        problem = f"its content does not match the {kind} the hub reports ({etag})"
    if problem is not None:
        _remove_cached(pointer)
        raise IntegrityError(
            f"Downloaded file {filename!r} of model {spec.model!r} is corrupt: {problem}. "
            "The bad copy was removed; run the command again."
        )
    return {
        "size": size,
        "sha256": sha256,
        "etag": etag,
        "checked_against": None if etag is None else ("sha256" if _SHA256.fullmatch(etag) else "git-sha1"),
    }


def _remove_cached(pointer: Path) -> None:
    """Delete a cached file: its snapshot entry and the blob it points to."""
    blob = Path(os.path.realpath(pointer)) if pointer.is_symlink() else None
    for p in (pointer, blob):
        if p is not None:
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def _clean_stale_incomplete(storage: Path) -> None:
    """Remove temp files left by downloads that were killed (huggingface-hub cannot resume those)."""
    now = time.time()
    for p in (storage / "blobs").glob("*.incomplete"):
        try:
            if now - p.stat().st_mtime > _STALE_INCOMPLETE_S:
                p.unlink()
        except OSError:
            pass


def _lock_path(cache: Path, storage: Path) -> Path:
    return cache / ".locks" / storage.name / "lightcol.lock"


def lock_path(spec: ModelSpec, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The lock file held while ``spec``'s cached files are written (downloads, derived int8 files)."""
    cache = resolve_cache_dir(cache_dir)
    return _lock_path(cache, _storage(cache, _repo_id(spec)))


def _lock(cache: Path, storage: Path) -> Any:
    return _derived.file_lock(_lock_path(cache, storage))


def _fetch(
    spec: ModelSpec,
    repo: str,
    revision: str,
    cache: Path,
    storage: Path,
    token: str | None,
    progress: bool,
    verify_hash: bool,
) -> Path:
    """Download whatever is missing or bad, under a per-repo lock; return the snapshot folder."""
    with _lock(cache, storage):
        # Another process may have completed the work while we waited for the lock.
        commit = _local_commit(storage, revision)
        problems: list[_Problem] | None = None
        if commit is not None:
            manifest = _read_manifest(storage, commit)
            problems = _check(storage / "snapshots" / commit, spec.files, manifest, verify_hash)
            if not problems:
                return storage / "snapshots" / commit
        else:
            manifest = {}
        todo = {p.file: p for p in problems} if problems is not None else {f: None for f in spec.files}
        tqdm_class = _progress_class(progress)
        for filename in spec.files:
            if filename not in todo:
                continue
            problem = todo[filename]
            if commit is not None and problem is not None and problem.kind in ("size", "hash"):
                _remove_cached(storage / "snapshots" / commit / filename)
            for attempt in (1, 2):  # a corrupt transfer is removed and fetched once more
                pointer, hub = _download_one(spec, repo, commit or revision, filename, cache, token, tqdm_class)
                if commit is None:
                    # Pin the remaining files to the commit the first one came from; remember revision -> commit.
                    commit = hub.commit if hub is not None else revision
                    _write_ref(storage, revision, commit)
                    manifest = _read_manifest(storage, commit)
                try:
                    manifest[filename] = _record(spec, pointer, filename, hub)
                    break
                except IntegrityError:
                    if attempt == 2:
                        raise
            assert commit is not None  # set by the first download of the loop
            _write_manifest(storage, repo, commit, manifest)
        _clean_stale_incomplete(storage)
        assert commit is not None
        return storage / "snapshots" / commit


def _ensure(
    spec: ModelSpec,
    *,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    token: str | None,
    verify_hash: bool,
    progress: bool,
) -> Path:
    repo = _repo_id(spec)
    revision = _revision(spec)
    cache = resolve_cache_dir(cache_dir)
    storage = _storage(cache, repo)
    offline = _offline_reason(local_files_only)

    commit = _local_commit(storage, revision)
    if commit is not None:
        snapshot = storage / "snapshots" / commit
        problems = _check(snapshot, spec.files, _read_manifest(storage, commit), verify_hash)
        if not problems:
            return snapshot  # warm load: no network
        if offline:
            _raise_offline(spec, cache, snapshot, problems, offline, verify_hash)
            return snapshot
    elif offline:
        raise OfflineModelMissingError(
            f"Model {spec.model!r} ({repo}) is not in the cache {cache} and offline mode is on ({offline}). "
            f"Fetch it while online with: {_fix_command(spec, cache)}"
        )
    return _fetch(spec, repo, revision, cache, storage, _token(token), progress, verify_hash)


def _raise_offline(
    spec: ModelSpec, cache: Path, snapshot: Path, problems: list[_Problem], offline: str, verify_hash: bool
) -> None:
    """Offline with an incomplete or damaged cache: raise a precise error, unless only manifests are missing."""
    real = [p for p in problems if p.kind != "unrecorded"]
    real += [q for p in problems if p.kind == "unrecorded" and (q := _verify_unrecorded_offline(snapshot, p, verify_hash))]
    if not real:
        return
    missing = [p.file for p in real if p.kind == "missing"]
    if missing:
        raise OfflineModelMissingError(
            f"Model {spec.model!r} ({spec.hf_repo}) is only partly in the cache {cache}: missing {', '.join(missing)}; "
            f"offline mode is on ({offline}). Fetch it while online with: {_fix_command(spec, cache)}"
        )
    bad = "; ".join(f"{snapshot / p.file}: {p.detail}" for p in real)
    raise IntegrityError(
        f"Cached files of model {spec.model!r} are damaged ({bad}) and offline mode is on ({offline}), so they "
        f"cannot be re-fetched. While online run: {_fix_command(spec, cache)} (it re-fetches bad files), "
        f"or delete {snapshot.parent.parent}."
    )


# ------------------------------------------------------------------------------------------------------- public
def resolve_model_dir(
    spec: ModelSpec,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | None = None,
    verify_hash: bool = False,
    progress: bool = True,
) -> Path:
    """A folder holding every file in ``spec.files``, downloading what the cache lacks.

    A warm cache is used without any network request (sizes are checked against the manifest; sha256 too
    when ``verify_hash``). Damaged files are re-fetched, or reported when offline.
    """
    return _ensure(
        spec,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
        verify_hash=verify_hash,
        progress=progress,
    )


def repair_model_dir(
    spec: ModelSpec,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | None = None,
) -> Path:
    """Hash-check every cached file of ``spec`` and re-fetch the bad ones (or raise when offline)."""
    return _ensure(
        spec, cache_dir=cache_dir, local_files_only=local_files_only, token=token, verify_hash=True, progress=True
    )


def export_model_folder(
    spec: ModelSpec,
    to: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | None = None,
    force: bool = False,
) -> Path:
    """Copy ``spec.files`` (real files, no symlinks) and ``lightcol_config.json`` into ``to``.

    ``LateInteractionTextEmbedding(specific_model_path=to)`` then loads it with no name and no cache.
    ``to`` must be empty, missing, or already hold this model (its ``lightcol_config.json`` names it):
    other files would be mixed with the model's; ``force=True`` writes into it anyway.
    """
    if not os.fspath(to).strip():
        raise ArgumentError("the destination folder to='' is empty; give a folder path.")
    dest = Path(to).expanduser().absolute()
    if dest.exists() and not dest.is_dir():
        raise DownloadError(f"the destination {dest} exists and is not a folder.")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        try:
            held = read_folder_config(dest)
        except Exception:  # noqa: BLE001 - unreadable config: treated as another folder
            held = None
        if held is None or held.model.lower() != spec.model.lower():
            what = f"model {held.model!r}" if held is not None else "other files"
            raise DownloadError(
                f"the destination {dest} is not empty and holds {what}, not {spec.model!r}; writing there would mix the "
                "files. Choose an empty or new folder, or pass force=True to write into it anyway."
            )
    source = resolve_model_dir(
        spec, cache_dir=cache_dir, local_files_only=local_files_only, token=token, verify_hash=True
    )
    dest.mkdir(parents=True, exist_ok=True)
    for name in spec.files:
        src = Path(os.path.realpath(source / name))
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)  # replaces a symlink rather than writing through it
        finally:
            tmp.unlink(missing_ok=True)
        if target.stat().st_size != src.stat().st_size:
            raise IntegrityError(f"Copying {src} to {target} produced a file of the wrong size; is the disk full?")
    write_folder_config(dest, spec)
    return dest
