"""Download, cache, offline, integrity, retry, auth and concurrency tests against a local fake hub.

How huggingface_hub is pointed at the fake hub: lightcol reads ``HF_ENDPOINT`` at call time and passes it to
``hf_hub_download(endpoint=...)``, so ``monkeypatch.setenv("HF_ENDPOINT", hub.url)`` is enough, whenever
huggingface_hub was imported (its own ``constants.ENDPOINT`` is frozen at import and not relied upon).
Subprocesses inherit the env. Telemetry (huggingface_hub's once-a-day ``/api/agent-harnesses`` fetch, sent to
its import-time endpoint) is switched off below, and request counts only look at ``/resolve/`` URLs.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hubserver import FakeHub, model_entry, resolve_in_child, wait_for  # noqa: E402

from lightcol import download  # noqa: E402
from lightcol.errors import (  # noqa: E402
    DownloadError,
    IntegrityError,
    OfflineModelMissingError,
    RepoAccessError,
    RepoNotFoundError,
)
from lightcol.registry import FOLDER_CONFIG, parse_entry, read_folder_config  # noqa: E402

REPO = "test-org/tiny-colbert"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny-colbert-onnx"


def entry(repo: str = REPO, tokenizer_files: tuple[str, ...] = ("tokenizer.json", "config.json")) -> dict:
    return model_entry(repo, tokenizer_files)


FILES = {
    "model.onnx": os.urandom(200_000),  # LFS: sha256 ETag
    "model.onnx_data": os.urandom(50_000),  # LFS
    "tokenizer.json": b'{"version": "1.0", "model": {}}',  # small git file: git-blob-sha1 ETag
    "config.json": b'{"hidden_size": 8}',
    "pytorch_model.bin": os.urandom(300_000),  # must never be fetched
    "README.md": b"# tiny\n",
}
SPEC_FILES = ("model.onnx", "model.onnx_data", "tokenizer.json", "config.json")


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "LIGHTCOL_CACHE_PATH", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(download.RETRIES_ENV, "2")
    monkeypatch.setenv(download.BACKOFF_ENV, "0.01")
    try:  # in case huggingface_hub was imported with telemetry on: never fetch the agent registry
        from huggingface_hub.utils import _detect_agent

        monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY, raising=False)
    except ImportError:
        pass


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    with FakeHub() as h:
        h.add_repo(REPO, FILES)
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        yield h


@pytest.fixture
def spec():
    return parse_entry(entry())


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def resolve_requests(hub: FakeHub) -> int:
    return sum(n for (_, p), n in hub.counts.items() if "/resolve/" in p)


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def assert_complete(folder: Path) -> None:
    for name in SPEC_FILES:
        assert sha(folder / name) == hashlib.sha256(FILES[name]).hexdigest(), name


# ------------------------------------------------------------------------------------------- cache location
def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert download.default_cache_dir() == Path.home() / ".cache" / "lightcol"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download.default_cache_dir() == tmp_path / "xdg" / "lightcol"
    assert download.resolve_cache_dir(None) == tmp_path / "xdg" / "lightcol"
    monkeypatch.setenv("LIGHTCOL_CACHE_PATH", str(tmp_path / "env"))
    assert download.resolve_cache_dir(None) == tmp_path / "env"
    assert download.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_cache_path_env_is_used(hub: FakeHub, spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTCOL_CACHE_PATH", str(tmp_path / "envcache"))
    folder = download.resolve_model_dir(spec, progress=False)
    assert tmp_path / "envcache" in folder.parents


# --------------------------------------------------------------------------------------------- cold / warm
def test_cold_download_then_warm_load_makes_no_request(hub: FakeHub, spec, cache: Path) -> None:
    folder = download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    cold = resolve_requests(hub)
    assert_complete(folder)
    # huggingface-hub layout, exactly the spec's files, never the PyTorch weights or README
    assert folder.parent.parent == cache / "models--test-org--tiny-colbert"
    assert folder.parent.name == "snapshots" and len(folder.name) == 40
    assert sorted(p.name for p in folder.iterdir()) == sorted(SPEC_FILES)
    assert not any("pytorch_model.bin" in p or "README" in p for (_, p) in hub.counts)
    for name in SPEC_FILES:  # lightcol's HEAD (size/ETag, fail-fast) + huggingface_hub's HEAD + one GET per file
        assert hub.count("HEAD", "/" + name) == 2 and hub.count("GET", "/" + name) == 1
    assert cold == 3 * len(SPEC_FILES)
    manifest = json.loads((folder.parent.parent / ".lightcol" / f"{folder.name}.json").read_text())
    assert manifest["files"]["model.onnx"]["checked_against"] == "sha256"
    assert manifest["files"]["tokenizer.json"]["checked_against"] == "git-sha1"
    assert manifest["files"]["model.onnx"]["size"] == len(FILES["model.onnx"])

    hub.counts.clear()
    again = download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    warm = resolve_requests(hub) + hub.total()
    assert again == folder and warm == 0
    print(f"\nHTTP requests: cold load {cold} ({len(SPEC_FILES)} files x 2 HEAD + 1 GET), warm load {warm}")

    import huggingface_hub  # the cache is one huggingface-hub itself understands

    info = huggingface_hub.scan_cache_dir(cache)
    assert not info.warnings and [r.repo_id for r in info.repos] == [REPO]


def test_warm_load_with_server_stopped(spec, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHub() as h:
        h.add_repo(REPO, FILES)
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        folder = download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    # server is gone; any request would fail
    assert download.resolve_model_dir(spec, cache_dir=cache, progress=False) == folder
    assert download.resolve_model_dir(spec, cache_dir=cache, verify_hash=True, progress=False) == folder
    assert h.total() == 3 * len(SPEC_FILES)


# --------------------------------------------------------------------------------------------------- offline
@pytest.mark.parametrize("how", ["env", "arg"])
def test_offline_missing_model_fails_at_once(hub: FakeHub, spec, cache: Path, how: str, monkeypatch) -> None:
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after import: read at call time
    with pytest.raises(OfflineModelMissingError) as ei:
        download.resolve_model_dir(spec, cache_dir=cache, local_files_only=how == "arg")
    msg = str(ei.value)
    assert REPO in msg and str(cache) in msg
    assert f"lightcol download {REPO} --cache-dir {cache}" in msg
    assert hub.total() == 0


@pytest.mark.parametrize("how", ["env", "arg"])
def test_offline_uses_cache(hub: FakeHub, spec, cache: Path, how: str, monkeypatch) -> None:
    folder = download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    hub.counts.clear()
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert download.resolve_model_dir(spec, cache_dir=cache, local_files_only=how == "arg") == folder
    # a partly cached model offline: names the missing file
    (folder / "config.json").unlink()
    with pytest.raises(OfflineModelMissingError, match="config.json"):
        download.resolve_model_dir(spec, cache_dir=cache, local_files_only=how == "arg")
    assert hub.total() == 0


# ------------------------------------------------------------------------------------------ network faults
def test_connection_cut_mid_file_is_resumed(hub: FakeHub, cache: Path) -> None:
    big = {**FILES, "model.onnx": os.urandom(12 * 2**20)}  # > huggingface_hub's 10 MiB read chunk
    hub.add_repo("test-org/big", big)
    hub.cut_next("/model.onnx", after_bytes=11 * 2**20)
    folder = download.resolve_model_dir(parse_entry(entry("test-org/big")), cache_dir=cache, progress=False)
    assert sha(folder / "model.onnx") == hashlib.sha256(big["model.onnx"]).hexdigest()
    gets = [r for p, r in hub.ranges if p.endswith("/model.onnx")]
    assert gets == [None, f"bytes={10 * 2**20}-"]  # huggingface_hub resumed from what it had written


def test_killed_mid_download_leaves_nothing_loadable_then_next_call_completes(hub: FakeHub, cache: Path, spec) -> None:
    hub.stall("/model.onnx", after_bytes=100_000)
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=resolve_in_child, args=(entry(), str(cache)))
    proc.start()
    try:
        assert hub.stalled.wait(20), "child never reached the stalled transfer"
        storage = cache / "models--test-org--tiny-colbert"
        assert wait_for(lambda: any(storage.glob("blobs/*.incomplete")))
    finally:
        proc.kill()
        proc.join(10)
    hub.release.set()
    # half a file sits in blobs/<sha256>.<id>.incomplete; nothing in the snapshot, no manifest entry
    assert list(storage.glob("blobs/*.incomplete"))
    assert not list(storage.glob("snapshots/*/model.onnx"))
    with pytest.raises(OfflineModelMissingError):
        download.resolve_model_dir(spec, cache_dir=cache, local_files_only=True)
    folder = download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    assert_complete(folder)


def test_5xx_is_retried_with_backoff(hub: FakeHub, spec, cache: Path) -> None:
    hub.fail_next(2, 500, method="GET", path_contains="/model.onnx")
    hub.fail_next(1, 503, method="HEAD", path_contains="/tokenizer.json")
    folder = download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    assert_complete(folder)
    assert hub.count("GET", "/model.onnx") == 3


def test_5xx_retries_are_bounded(hub: FakeHub, spec, cache: Path) -> None:
    hub.fail_next(100, 502, method="GET")
    with pytest.raises(DownloadError, match=r"HTTP 502.*gave up after 3 attempts"):
        download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    assert hub.count("GET", "/model.onnx") == 3  # LIGHTCOL_DOWNLOAD_RETRIES=2 -> 3 attempts


# ------------------------------------------------------------------------------------------------ integrity
def _blob(folder: Path, name: str) -> Path:
    return Path(os.path.realpath(folder / name))


def test_truncated_cached_file_is_refetched(hub: FakeHub, spec, cache: Path) -> None:
    folder = download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    blob = _blob(folder, "model.onnx")
    blob.write_bytes(blob.read_bytes()[:1000])
    hub.counts.clear()
    assert download.resolve_model_dir(spec, cache_dir=cache, progress=False) == folder
    assert_complete(folder)
    assert hub.count("GET", "/model.onnx") == 1 and resolve_requests(hub) == 3  # only the bad file


def test_truncated_file_offline_is_reported(hub: FakeHub, spec, cache: Path) -> None:
    folder = download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    _blob(folder, "config.json").write_bytes(b"{")
    with pytest.raises(IntegrityError) as ei:
        download.resolve_model_dir(spec, cache_dir=cache, local_files_only=True)
    assert "config.json" in str(ei.value) and f"lightcol download {REPO} --cache-dir {cache}" in str(ei.value)


def test_same_size_corruption_needs_hash_check(hub: FakeHub, spec, cache: Path) -> None:
    folder = download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    blob = _blob(folder, "model.onnx")
    data = bytearray(blob.read_bytes())
    data[123] ^= 0xFF
    blob.write_bytes(bytes(data))
    hub.counts.clear()
    # the cheap check (size) cannot see it and makes no request
    download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    assert hub.total() == 0
    # offline repair reports it precisely
    with pytest.raises(IntegrityError, match="model.onnx.*sha256"):
        download.repair_model_dir(spec, cache_dir=cache, local_files_only=True)
    # verify_hash / repair re-fetch it
    assert download.resolve_model_dir(spec, cache_dir=cache, verify_hash=True, progress=False) == folder
    assert_complete(folder)
    data = bytearray(_blob(folder, "tokenizer.json").read_bytes())
    data[0] ^= 0x01
    _blob(folder, "tokenizer.json").write_bytes(bytes(data))
    assert download.repair_model_dir(spec, cache_dir=cache) == folder
    assert_complete(folder)
    assert hub.count("GET", "/model.onnx") == 1 and hub.count("GET", "/tokenizer.json") == 1


def test_hub_serving_bad_bytes_is_detected(hub: FakeHub, spec, cache: Path) -> None:
    hub.garble = {"/model.onnx", "/config.json"}  # right size, wrong content
    with pytest.raises(IntegrityError, match="model.onnx.*sha256"):
        download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    assert not list((cache / "models--test-org--tiny-colbert").glob("snapshots/*/model.onnx"))
    hub.garble = {"/config.json"}
    with pytest.raises(IntegrityError, match="config.json.*git blob sha1"):
        download.resolve_model_dir(spec, cache_dir=cache, progress=False)
    hub.garble = set()
    assert_complete(download.resolve_model_dir(spec, cache_dir=cache, progress=False))


# ----------------------------------------------------------------------------------------- access errors
@pytest.mark.parametrize(
    ("status", "exc", "words"),
    [
        (401, RepoAccessError, ["401", "token", "HF_TOKEN", "token="]),
        (403, RepoAccessError, ["403", "gated", "terms", "private-org/gated"]),
        (404, RepoNotFoundError, ["404", "private-org/gated", "does not exist"]),
    ],
)
def test_access_errors(hub: FakeHub, cache: Path, status: int, exc: type, words: list[str]) -> None:
    hub.add_repo("private-org/gated", FILES)
    hub.deny("private-org/gated", status)
    with pytest.raises(exc) as ei:
        download.resolve_model_dir(parse_entry(entry("private-org/gated")), cache_dir=cache, progress=False)
    for w in words:
        assert w in str(ei.value)
    assert resolve_requests(hub) == 1  # not retried


def test_unknown_repo_and_missing_file(hub: FakeHub, cache: Path) -> None:
    with pytest.raises(RepoNotFoundError, match="nobody/nothing"):
        download.resolve_model_dir(parse_entry(entry("nobody/nothing")), cache_dir=cache, progress=False)
    spec = parse_entry(entry(tokenizer_files=("tokenizer.json", "vocab.txt")))
    with pytest.raises(RepoNotFoundError, match="vocab.txt"):
        download.resolve_model_dir(spec, cache_dir=cache, progress=False)


def test_token_is_passed_through(hub: FakeHub, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("private-org/model", FILES)
    hub.require_token("private-org/model", "hf_secret")
    spec = parse_entry(entry("private-org/model"))
    with pytest.raises(RepoAccessError, match="401"):
        download.resolve_model_dir(spec, cache_dir=cache, progress=False, token="hf_wrong")
    download.resolve_model_dir(spec, cache_dir=cache, progress=False, token="hf_secret")
    assert ("/private-org/model/resolve/main/model.onnx", "Bearer hf_secret") in hub.auth_headers
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    hub.auth_headers.clear()
    download.resolve_model_dir(spec, cache_dir=cache / "other", progress=False)
    assert {a for p, a in hub.auth_headers if "/private-org/" in p} == {"Bearer hf_secret"}


# ------------------------------------------------------------------------------------------------- export
def test_export_model_folder(hub: FakeHub, spec, cache: Path, tmp_path: Path) -> None:
    out = download.export_model_folder(spec, tmp_path / "out", cache_dir=cache)
    assert sorted(p.name for p in out.iterdir()) == sorted((*SPEC_FILES, FOLDER_CONFIG))
    for name in SPEC_FILES:
        assert not (out / name).is_symlink() and (out / name).read_bytes() == FILES[name]
    assert read_folder_config(out) == spec
    hub.counts.clear()
    download.export_model_folder(spec, tmp_path / "out", cache_dir=cache)  # again: from the cache, overwrites
    assert hub.total() == 0


# -------------------------------------------------------------------------------------------- concurrency
def test_three_processes_share_one_download(hub: FakeHub, cache: Path) -> None:
    hub.get_delay = 0.2  # make the transfers overlap
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        folders = pool.starmap(resolve_in_child, [(entry(), str(cache))] * 3, chunksize=1)
    assert len(set(folders)) == 1
    assert_complete(Path(folders[0]))
    for name in SPEC_FILES:
        assert hub.count("GET", "/" + name) == 1, (name, dict(hub.counts))


# --------------------------------------------------------------------------------------------- end to end
@pytest.fixture()
def fixture_hub(monkeypatch: pytest.MonkeyPatch):
    """The real tiny ONNX fixture served as hub repo ``lightcol-test/tiny-colbert``, its entry in the registry."""
    from lightcol import registry

    if not (FIXTURE / FOLDER_CONFIG).is_file():
        pytest.skip("tests/fixtures/tiny-colbert-onnx not built")
    data = json.loads((FIXTURE / FOLDER_CONFIG).read_text())
    data["sources"] = {"hf": "lightcol-test/tiny-colbert"}
    spec = parse_entry(data)
    monkeypatch.setattr(registry, "_registry", lambda: {spec.model.lower(): spec})
    with FakeHub() as h:
        h.add_repo("lightcol-test/tiny-colbert", FIXTURE)
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        yield h, spec


def test_end_to_end_embedding_from_fake_hub(fixture_hub, cache: Path) -> None:
    from lightcol.embedding import LateInteractionTextEmbedding  # = lightcol.LateInteractionTextEmbedding

    h, spec = fixture_hub
    model = LateInteractionTextEmbedding(spec.model, cache_dir=cache)
    cold = resolve_requests(h)
    h.counts.clear()
    model2 = LateInteractionTextEmbedding(spec.model, cache_dir=cache)
    assert h.total() == 0
    assert cold == 3 * len(spec.files)
    assert not any(FOLDER_CONFIG in p for (_, p) in h.counts)
    doc = next(iter(model.embed(["hello world"])))
    assert doc.shape[1] == spec.dim
    assert (next(iter(model2.embed(["hello world"]))) == doc).all()


def test_corrupt_cached_onnx_is_repaired_at_load(fixture_hub, cache: Path) -> None:
    """Same-size garbage in the cached model.onnx: the failed load hash-checks and re-fetches it (offline: reported)."""
    from lightcol.embedding import LateInteractionTextEmbedding

    h, spec = fixture_hub
    model = LateInteractionTextEmbedding(spec.model, cache_dir=cache)
    expected = next(model.embed("hello world"))
    onnx_file = (model.model_dir / "model.onnx").resolve()
    onnx_file.write_bytes(b"\0" * onnx_file.stat().st_size)  # same size: the cheap size check cannot see it
    with pytest.raises(IntegrityError, match="model.onnx"):
        LateInteractionTextEmbedding(spec.model, cache_dir=cache, local_files_only=True)
    h.counts.clear()
    repaired = LateInteractionTextEmbedding(spec.model, cache_dir=cache)
    assert h.count("GET", "/model.onnx") == 1
    np.testing.assert_array_equal(next(repaired.embed("hello world")), expected)
