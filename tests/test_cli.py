"""``lightcol`` command line: models table, download (cache / --to / --token), one-line errors and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hubserver import FakeHub, model_entry  # noqa: E402

from lightcol import registry  # noqa: E402
from lightcol.cli import main  # noqa: E402
from lightcol.registry import FOLDER_CONFIG, parse_entry, read_folder_config  # noqa: E402

REPO = "cli-org/tiny"
FILES = {
    "model.onnx": os.urandom(20_000),
    "model.onnx_data": os.urandom(5_000),
    "tokenizer.json": b'{"version": "1.0"}',
    "config.json": b"{}",
}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "LIGHTCOL_CACHE_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LIGHTCOL_DOWNLOAD_RETRIES", "1")
    monkeypatch.setenv("LIGHTCOL_DOWNLOAD_BACKOFF", "0.01")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    spec = parse_entry(model_entry(REPO))
    monkeypatch.setattr(registry, "_registry", lambda: {spec.model.lower(): spec})
    with FakeHub() as h:
        h.add_repo(REPO, FILES)
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        yield h


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lightcol: error: "), err
    return lines[0]


def test_models_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "dim", "size", "GB", "license"]
    for m in registry.list_supported_models():
        row = next(line for line in lines if line.startswith(m["model"] + " "))
        assert row.split() == [m["model"], str(m["dim"]), f"{m['size_in_GB']:.2f}", m["license"]]


def test_download_prints_cache_folder(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["download", REPO, "--cache-dir", str(tmp_path / "c"), "-q"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert tmp_path / "c" in folder.parents and (folder / "model.onnx").read_bytes() == FILES["model.onnx"]
    hub.counts.clear()
    assert main(["download", REPO, "--cache-dir", str(tmp_path / "c"), "-q"]) == 0  # warm: nothing fetched
    assert Path(capsys.readouterr().out.strip()) == folder and hub.total() == 0


def test_download_to_folder_with_token(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub.require_token(REPO, "hf_cli")
    out = tmp_path / "model"
    code = main(["download", REPO, "--cache-dir", str(tmp_path / "c"), "--to", str(out), "--token", "hf_cli"])
    assert code == 0 and Path(capsys.readouterr().out.strip()) == out
    for name, data in FILES.items():
        assert not (out / name).is_symlink() and (out / name).read_bytes() == data
    assert read_folder_config(out).model == REPO and (out / FOLDER_CONFIG).is_file()
    assert {a for _, a in hub.auth_headers} == {"Bearer hf_cli"}


def test_errors_are_one_line(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    cache = str(tmp_path / "c")
    assert main(["download", "no/such-model", "--cache-dir", cache]) == 2  # not in the registry
    assert "not supported" in one_line_error(capsys.readouterr().err)

    hub.deny(REPO, 401)
    assert main(["download", REPO, "--cache-dir", cache]) == 1
    assert "HF_TOKEN" in one_line_error(capsys.readouterr().err)
    hub.denied.clear()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", REPO, "--cache-dir", cache]) == 1
    assert f"lightcol download {REPO} --cache-dir" in one_line_error(capsys.readouterr().err)


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["download"]) == 2
    assert "MODEL" in one_line_error(capsys.readouterr().err)
    assert main(["frobnicate"]) == 2
    one_line_error(capsys.readouterr().err)
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "download" in capsys.readouterr().out


def test_python_dash_m() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    ok = subprocess.run([sys.executable, "-m", "lightcol", "models"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and registry.list_supported_models()[0]["model"] in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "lightcol", "download", "nope/nope"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and bad.stdout == ""
    one_line_error(bad.stderr)
