"""The Dockerfile agrees with the CLI and the package (no Docker engine needed): its commands parse with
lightcol's own parsers, the model it downloads is the one it serves, it runs offline and unprivileged."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from lightcol.cli import _parser

ROOT = Path(__file__).resolve().parent.parent


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def one(name: str) -> str:
    found = [rest for word, rest in instructions() if word == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def env() -> dict[str, str]:
    values: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                values[key] = value
    return values


def serve_args() -> list[str]:
    entry, cmd = json.loads(one("ENTRYPOINT")), json.loads(one("CMD"))
    assert entry[:2] == ["lightcol", "serve"]
    return entry[1:] + cmd


def test_entrypoint_parses_and_passes_the_cli_checks(tmp_path):
    from lightcol.cli import UsageError
    from lightcol.cli.serve import _check

    argv = serve_args()
    args = _parser().parse_args(argv)
    assert args.command == "serve" and args.host == "0.0.0.0" and args.model_path == "/models/model"
    assert args.api_key_file == "/run/secrets/lightcol_api_key"
    key = tmp_path / "key"
    key.write_text("k" * 32 + "\n")
    args.api_key_file = str(key)
    assert _check(args) == ("k" * 32,)  # a public address with a key: accepted
    # the image started without its key file (CMD overridden by nothing) refuses to serve unauthenticated
    bare = _parser().parse_args(json.loads(one("ENTRYPOINT"))[1:])
    with pytest.raises(UsageError, match="refusing to serve without authentication"):
        _check(bare)
    allowed = _parser().parse_args([*json.loads(one("ENTRYPOINT"))[1:], "--allow-unauthenticated", "--threads", "2"])
    assert _check(allowed) == () and allowed.threads == 2  # arguments after the image name are appended
    # docker stop waits 10 s before SIGKILL: the graceful timeout stays below it
    assert args.graceful_timeout < 10


def test_the_downloaded_model_is_the_one_served():
    from lightcol.registry import get_spec

    arg = one("ARG")
    name, _, default = arg.partition("=")
    assert name == "MODEL"
    get_spec(default)  # a registry model
    run = next(rest for word, rest in instructions() if word == "RUN" and "lightcol download" in rest)
    command = run[run.index("lightcol download"):].split("&&")[0].replace('"$MODEL"', default)
    args = _parser().parse_args(shlex.split(command)[1:])
    assert args.command == "download" and args.model == default
    assert args.to == _parser().parse_args(serve_args()).model_path
    assert "rm -rf " + args.cache_dir in run  # the download cache does not stay in the image


def test_offline_unprivileged_and_ports_agree():
    values = env()
    assert values["HF_HUB_OFFLINE"] == "1"
    assert values["LIGHTCOL_CACHE_PATH"].startswith("/tmp/")  # writable by the unprivileged user
    user = one("USER")
    assert user not in ("root", "0")
    assert re.search(rf"--uid {user}\b", next(r for w, r in instructions() if w == "RUN" and "useradd" in r))
    port = str(_parser().parse_args(serve_args()).port)
    assert one("EXPOSE") == port
    assert f"127.0.0.1:{port}/ready" in one("HEALTHCHECK")
    # the USER line comes after every RUN that writes outside /tmp (install, download)
    order = [w for w, _ in instructions()]
    assert order.index("USER") > max(i for i, w in enumerate(order) if w == "RUN")


def test_installs_the_serve_extra_from_the_sources_it_copies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    assert {"fastapi", "uvicorn"} <= {re.split(r"[<>=;\[ ]", d)[0] for d in extras["serve"]}
    assert 'pip install ".[serve]"' in " ".join(r for w, r in instructions() if w == "RUN")
    copied = [p for w, r in instructions() if w == "COPY" for p in r.split()[:-1]]
    for path in copied:
        assert (ROOT / path).exists(), path
    # everything the wheel build reads is copied
    assert {"pyproject.toml", project["project"]["readme"], "models.json", "lightcol"} <= set(copied)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not set(copied) & set(ignored)
