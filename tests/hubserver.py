"""A fake Hugging Face hub on 127.0.0.1 for download tests (stdlib ``http.server`` in a thread).

It serves folders (or dicts of bytes) as model repos through the one endpoint ``hf_hub_download`` uses in
huggingface_hub 2.x: ``HEAD``/``GET /{org}/{name}/resolve/{revision}/{path}``, answering like the real hub:

- ``X-Repo-Commit``, ``ETag`` (git blob sha1), and for LFS files ``X-Linked-Etag`` (sha256) + ``X-Linked-Size``;
- ``Range: bytes=N-`` -> 206 with ``Content-Range`` (huggingface_hub resumes a cut transfer this way);
- errors with ``X-Error-Code`` (``RepoNotFound``, ``EntryNotFound``, ``RevisionNotFound``, ``GatedRepo``).

Knobs: per-(method, path) request counters, ``fail_next`` (5xx), ``cut_next`` (close mid-body), ``stall``
(send half a file then hang, to kill a client mid-download), ``deny`` (401/403/404 for a repo),
``require_token`` (bearer token for a repo). huggingface_hub is pointed at it through ``HF_ENDPOINT``, which
lightcol reads at call time and passes as ``endpoint=`` (huggingface_hub itself reads ``HF_ENDPOINT`` only at
import, so setting the env var is enough for lightcol but not for bare huggingface_hub calls).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    files: dict[str, bytes]
    lfs: set[str]
    commit: str


@dataclass
class _Fault:
    remaining: int
    status: int = 500
    method: str | None = None
    path_contains: str | None = None
    after_bytes: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


@dataclass
class FakeHub:
    """``with FakeHub() as hub: hub.add_repo(...); os.environ['HF_ENDPOINT'] = hub.url``."""

    repos: dict[str, Repo] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)  # (method, path) -> n
    auth_headers: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Authorization)
    denied: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    faults: list[_Fault] = field(default_factory=list)
    cuts: list[_Fault] = field(default_factory=list)
    stalls: list[_Fault] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    stalled: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ranges: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range) of each GET
    garble: set[str] = field(default_factory=set)  # GETs of paths ending so get one byte flipped (same size)
    get_delay: float = 0.0  # seconds each GET waits before sending its body (to make downloads overlap)

    # ---------------------------------------------------------------- setup
    def add_repo(
        self, repo_id: str, files: dict[str, bytes] | str | os.PathLike[str], lfs: set[str] | None = None
    ) -> Repo:
        """Serve ``files`` (a dict, or every file under a folder) as ``repo_id``; LFS by default for files > 1 KB."""
        if not isinstance(files, dict):
            root = Path(files)
            files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        if lfs is None:
            lfs = {name for name, data in files.items() if len(data) > 1024}
        h = hashlib.sha1(repo_id.encode())
        for name in sorted(files):
            h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        commit = h.hexdigest()
        repo = Repo(dict(files), set(lfs), commit)
        self.repos[repo_id] = repo
        return repo

    def fail_next(self, n: int, status: int = 500, method: str | None = None, path_contains: str | None = None) -> None:
        self.faults.append(_Fault(n, status, method, path_contains))

    def cut_next(self, path_contains: str, after_bytes: int, n: int = 1) -> None:
        """The next ``n`` GETs of a matching path send ``after_bytes`` bytes of the body, then close the socket."""
        self.cuts.append(_Fault(n, method="GET", path_contains=path_contains, after_bytes=after_bytes))

    def stall(self, path_contains: str, after_bytes: int) -> None:
        """The next GET of a matching path sends ``after_bytes`` bytes, then hangs until ``release`` is set."""
        self.stalls.append(_Fault(1, method="GET", path_contains=path_contains, after_bytes=after_bytes))

    def deny(self, repo_id: str, status: int) -> None:
        self.denied[repo_id] = status

    def require_token(self, repo_id: str, token: str) -> None:
        self.tokens[repo_id] = token

    def total(self, method: str | None = None) -> int:
        return sum(n for (m, _), n in self.counts.items() if method is None or m == method)

    def count(self, method: str, path_suffix: str) -> int:
        return sum(n for (m, p), n in self.counts.items() if m == method and p.endswith(path_suffix))

    # ------------------------------------------------------------- lifecycle
    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------- internals
    def _take(self, faults: list[_Fault], method: str, path: str) -> _Fault | None:
        for f in faults:
            if f.remaining > 0 and f.matches(method, path):
                f.remaining -= 1
                return f
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, format: str, *args: object) -> None:  # silence
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        payload = f'{{"error": "{message}"}}'.encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _serve(self, body: bool) -> None:
        hub = self.hub
        path = unquote(self.path.split("?", 1)[0])
        method = self.command
        with hub.lock:
            hub.counts[(method, path)] += 1
            hub.auth_headers.append((path, self.headers.get("Authorization")))
            fault = hub._take(hub.faults, method, path)
            if method == "GET":
                hub.ranges.append((path, self.headers.get("Range")))
        if fault is not None:
            return self._error(fault.status, None, f"injected {fault.status}")

        if "/resolve/" not in path:
            return self._error(404, None, "unknown endpoint")
        repo_id, rest = path.lstrip("/").split("/resolve/", 1)
        revision, _, filename = rest.partition("/")
        if repo_id in hub.denied:
            status = hub.denied[repo_id]
            code = {401: "RepoNotFound", 403: "GatedRepo", 404: "RepoNotFound"}.get(status)
            return self._error(status, code, f"denied with {status}")
        repo = hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if repo_id in hub.tokens and self.headers.get("Authorization") != f"Bearer {hub.tokens[repo_id]}":
            return self._error(401, "RepoNotFound", "Invalid username or password.")
        if revision not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        data = repo.files.get(filename)
        if data is None:
            return self._error(404, "EntryNotFound", "Entry not found", commit=repo.commit)

        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes=") : -1])
        part = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", repo.commit)
        if filename in repo.lfs:
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n"
            self.send_header("ETag", f'"{git_blob_sha1(pointer.encode())}"')
            self.send_header("X-Linked-Etag", f'"{sha256}"')
            self.send_header("X-Linked-Size", str(len(data)))
        else:
            self.send_header("ETag", f'"{git_blob_sha1(data)}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(part)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return
        if hub.get_delay:
            time.sleep(hub.get_delay)
        if any(path.endswith(g) for g in hub.garble) and part:
            part = bytes([part[0] ^ 0xFF]) + part[1:]

        with hub.lock:
            cut = hub._take(hub.cuts, method, path)
            stall = hub._take(hub.stalls, method, path)
        if cut is not None or stall is not None:
            n = (cut or stall).after_bytes  # type: ignore[union-attr]
            self.wfile.write(part[:n])
            self.wfile.flush()
            if stall is not None:
                hub.stalled.set()
                while not hub.release.wait(0.05):
                    pass
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        for i in range(0, len(part), 64 * 1024):
            self.wfile.write(part[i : i + 64 * 1024])


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


RULES = {
    "query_marker": {"token": "[unused0]", "id": 1},
    "document_marker": {"token": "[unused1]", "id": 2},
    "mask_token": {"token": "[MASK]", "id": 103},
    "pad_token": {"token": "[PAD]", "id": 0},
    "query_length": 32,
    "document_length": 180,
    "attend_to_expansion_tokens": False,
    "skiplist": True,
    "lowercase": True,
}


def model_entry(repo: str, tokenizer_files: tuple[str, ...] = ("tokenizer.json", "config.json")) -> dict:
    """A registry entry (for ``lightcol.registry.parse_entry``) for a synthetic repo served by the fake hub."""
    return {
        "model": repo,
        "dim": 8,
        "description": "synthetic test model",
        "license": "mit",
        "size_in_GB": 0.001,
        "sources": {"hf": repo},
        "model_file": "model.onnx",
        "additional_files": ["model.onnx_data"],
        "tokenizer_files": list(tokenizer_files),
        "rules": RULES,
    }


def resolve_in_child(entry: dict, cache_dir: str) -> str:
    """Worker for multiprocessing tests: resolve ``entry``'s model into ``cache_dir`` (env is inherited)."""
    from lightcol.download import resolve_model_dir
    from lightcol.registry import parse_entry

    return str(resolve_model_dir(parse_entry(entry), cache_dir=cache_dir, progress=False))
