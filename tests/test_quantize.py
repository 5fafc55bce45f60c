"""int8 for every model: quantized=True on a float32-only folder, made once and reused; ``lightcol quantize``."""

from __future__ import annotations

import builtins
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import ONNX_DIR, random_texts
from lightcol import LateInteractionTextEmbedding, ModelLoadError, RegistryError, _derived, quantize
from lightcol.cli import main

TEXTS = random_texts(12, seed=3) + ["ColBERT encodes every token.", ""]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    shutil.copytree(ONNX_DIR, d)
    assert not (d / "model_int8.onnx").exists()
    return d


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LIGHTCOL_CACHE_PATH", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _per_token_cos(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    assert [x.shape for x in a] == [x.shape for x in b]
    return np.concatenate([(x * y).sum(1) for x, y in zip(a, b)])  # rows are unit vectors


def test_quantized_made_once_beside_writable_folder(folder: Path) -> None:
    q = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)
    made = folder / "model_int8.onnx"
    assert made.is_file() and _derived.record_path(made).is_file()
    record = json.loads(_derived.record_path(made).read_text())
    assert record["per_channel"] is True and record["reduce_range"] is True
    mtime = made.stat().st_mtime_ns
    q2 = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)
    assert made.stat().st_mtime_ns == mtime  # reused, not rewritten
    f32 = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False)
    vq, vq2, vf = list(q.embed(TEXTS)), list(q2.embed(TEXTS)), list(f32.embed(TEXTS))
    for a, b in zip(vq, vq2):
        np.testing.assert_array_equal(a, b)
    cos = _per_token_cos(vq, vf)
    assert cos.min() > 0.99 and cos.mean() > 0.998, (cos.min(), cos.mean())
    assert not np.array_equal(vq[0], vf[0])  # really the int8 model
    qq, qf = next(q.query_embed("late interaction")), next(f32.query_embed("late interaction"))
    assert qq.shape == qf.shape == (q.spec.rules.query_length, q.dim)


def test_same_file_as_export_recipe(folder: Path, tmp_path: Path) -> None:
    """quantized=True makes exactly what tools/export_onnx.py --quantize int8 makes (one recipe)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import export_onnx

    LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)
    export_onnx.quantize_int8(folder / "model.onnx", tmp_path / "exported_int8.onnx")
    assert (tmp_path / "exported_int8.onnx").read_bytes() == (folder / "model_int8.onnx").read_bytes()


def test_stale_or_damaged_file_is_rebuilt_not_loaded(folder: Path) -> None:
    LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)
    made = folder / "model_int8.onnx"
    good = made.read_bytes()
    made.write_bytes(good[: len(good) // 2])  # truncated after the fact: size no longer the recorded one
    q = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)
    assert made.read_bytes() == good and len(next(q.embed("text"))) > 0
    # the float32 file changes: the int8 file is stale and made again
    src = folder / "model.onnx"
    src.write_bytes(src.read_bytes())
    st = src.stat()
    os.utime(src, (st.st_atime + 10, st.st_mtime + 10))  # mtimes are compared in seconds
    key_before = json.loads(_derived.record_path(made).read_text())["key"]
    LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)
    assert json.loads(_derived.record_path(made).read_text())["key"] != key_before


def test_foreign_file_of_that_name_left_alone(folder: Path, _cache: Path) -> None:
    (folder / "model_int8.onnx").write_bytes(b"not ours")
    LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)
    assert (folder / "model_int8.onnx").read_bytes() == b"not ours"
    assert len(list(_cache.glob("derived/*/model_int8.onnx"))) == 1


def test_read_only_folder_goes_to_cache(folder: Path, _cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = _derived.writable_dir
    monkeypatch.setattr(_derived, "writable_dir", lambda p: False if Path(p) == folder else real(p))
    q = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)
    assert not (folder / "model_int8.onnx").exists()
    made = list(_cache.glob("derived/*/model_int8.onnx"))
    assert len(made) == 1
    mtime = made[0].stat().st_mtime_ns
    LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)
    assert made[0].stat().st_mtime_ns == mtime
    assert next(q.embed("hello")).shape[1] == q.dim


def test_nowhere_writable(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_derived, "writable_dir", lambda p: False)
    with pytest.raises(ModelLoadError, match="cache_dir="):
        LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)


def test_missing_extra_names_it(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "onnx", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ImportError, match=r"lightcol\[quantize\]"):
        LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)
    assert not (folder / "model_int8.onnx").exists()
    assert main(["quantize", str(folder)]) == 1


def test_other_unknown_variant_still_fails(folder: Path) -> None:
    with pytest.raises(RegistryError, match="no 'fp16' variant"):
        LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, model_variant="fp16")


def test_cli_quantize_folder(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", str(folder)]) == 0
    out = capsys.readouterr().out.strip()
    made = folder / "model_int8.onnx"
    assert out == str(made) and made.is_file()
    mtime = made.stat().st_mtime_ns
    assert main(["quantize", str(folder)]) == 0  # up to date: not rewritten
    assert made.stat().st_mtime_ns == mtime
    q = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, quantized=True)
    assert made.stat().st_mtime_ns == mtime and q._session() is not None
    assert main(["quantize", str(folder), "--force"]) == 0
    assert made.stat().st_mtime_ns != mtime


def test_cli_quantize_registry_model_into_cache(tmp_path: Path, _cache: Path, monkeypatch, capsys) -> None:
    """A registry model (here: a cache snapshot built by hand) gets its int8 file in the cache, not the snapshot."""
    from lightcol import download, registry

    spec = registry.parse_entry(
        {**json.loads((ONNX_DIR / "lightcol_config.json").read_text()), "model": "org/tiny",
         "sources": {"hf": "org/tiny"}},
    )
    monkeypatch.setattr("lightcol.registry.get_spec", lambda name: spec)
    snapshot = tmp_path / "snapshot"
    shutil.copytree(ONNX_DIR, snapshot)
    monkeypatch.setattr(download, "resolve_model_dir", lambda *a, **k: snapshot)
    assert main(["quantize", "org/tiny"]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out.parent.parent == _cache / "derived" and out.is_file()
    assert not (snapshot / "model_int8.onnx").exists()
    assert download.lock_path(spec).parent.is_dir()  # quantised under the download lock
    assert quantize.ensure_int8(snapshot / "model.onnx", beside=False) == out
    monkeypatch.setattr("lightcol.embedding.get_spec", lambda name: spec)
    q = LateInteractionTextEmbedding("org/tiny", cuda=False, quantized=True)
    assert q._model_path() == out and not (snapshot / "model_int8.onnx").exists()
    assert next(q.embed("hello")).shape[1] == q.dim
