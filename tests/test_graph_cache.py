"""Cold start: ONNX Runtime's optimised graph is cached on first load and reused, safely."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from conftest import ONNX_DIR, random_texts
from lightcol import LateInteractionTextEmbedding, _derived, graph_cache

TEXTS = random_texts(6, seed=5) + [""]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LIGHTCOL_CACHE_PATH", str(tmp_path / "cache"))
    monkeypatch.delenv(graph_cache.ENV, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every file ONNX Runtime opens, with the graph optimisation level it was opened at."""
    seen: list[tuple[str, int]] = []
    real = ort.InferenceSession

    def spy(path, sess_options=None, providers=None, **kw):
        seen.append((str(path), int(sess_options.graph_optimization_level)))
        return real(path, sess_options=sess_options, providers=providers, **kw)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    return seen


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("derived/ort/*/*.optimized.onnx"))


def _vectors(**kw) -> list[np.ndarray]:
    m = LateInteractionTextEmbedding(specific_model_path=kw.pop("path", ONNX_DIR), cuda=False, **kw)
    return list(m.embed(TEXTS)) + list(m.query_embed(TEXTS[:2]))


def test_first_load_saves_later_loads_reuse(cache: Path, opened) -> None:
    first = _vectors()
    [entry] = _entries(cache)
    assert opened[-1][0] == str(ONNX_DIR / "model.onnx")  # optimised from the model itself
    mtime = entry.stat().st_mtime_ns
    second = _vectors()
    assert opened[-1] == (str(entry), int(ort.GraphOptimizationLevel.ORT_DISABLE_ALL))
    assert entry.stat().st_mtime_ns == mtime and _entries(cache) == [entry]
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_damaged_entry_rebuilt_never_loaded(cache: Path, opened) -> None:
    _vectors()
    [entry] = _entries(cache)
    entry.write_bytes(entry.read_bytes()[:1000])  # partial file: no longer the recorded size
    opened.clear()
    ref = _vectors()
    assert str(entry) not in [p for p, _ in opened]  # not loaded: rebuilt from the model
    assert entry.stat().st_size > 1000 and _entries(cache) == [entry]
    # an entry whose record matches but that ONNX Runtime refuses is deleted and rebuilt
    good = entry.read_bytes()
    entry.write_bytes(b"\0" * len(good))
    import json

    rec = _derived.record_path(entry)
    data = json.loads(rec.read_text())
    data["mtime"] = int(os.stat(entry).st_mtime)
    rec.write_text(json.dumps(data))
    again = _vectors()
    assert entry.read_bytes() != b"\0" * len(good)
    for a, b in zip(ref, again):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _weights(entry: Path) -> list[Path]:
    return sorted(entry.parent.glob(f"{entry.stem}.*.data"))


def test_weights_kept_beside_the_graph_and_checked(cache: Path, opened) -> None:
    """The entry's weights live in one side file the record names; a changed or missing one is never loaded."""
    ref = _vectors()
    [entry] = _entries(cache)
    [weights] = _weights(entry)
    assert weights.stat().st_size > entry.stat().st_size  # the weights left the protobuf
    for damage in ("truncate", "delete"):
        if damage == "truncate":
            weights.write_bytes(weights.read_bytes()[:-4096])
        else:
            weights.unlink()
        opened.clear()
        again = _vectors()
        assert str(entry) not in [p for p, _ in opened]  # rebuilt from the model, not loaded
        [weights] = _weights(entry)  # one weights file again, the old one gone
        for a, b in zip(ref, again):
            np.testing.assert_allclose(a, b, atol=1e-5)
    opened.clear()
    _vectors()
    assert opened[-1] == (str(entry), int(ort.GraphOptimizationLevel.ORT_DISABLE_ALL))


def test_changed_model_gets_a_new_entry(cache: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(ONNX_DIR, folder)
    _vectors(path=folder)
    src = folder / "model.onnx"
    src.write_bytes(src.read_bytes())
    os.utime(src, (src.stat().st_atime + 10, src.stat().st_mtime + 10))  # new mtime: stale entry
    _vectors(path=folder)
    assert len(_entries(cache)) == 2
    _vectors(path=folder, threads=1)  # thread counts do not change the graph: same entry
    assert len(_entries(cache)) == 2
    _vectors(path=folder, session_options={"graph_optimization_level": "ORT_ENABLE_BASIC"})  # other graph: other key
    assert len(_entries(cache)) == 3


def test_old_entries_pruned_recently_used_kept(cache: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(graph_cache._prune, "__defaults__", (2,))  # keep 2 entries
    folder = tmp_path / "model"
    shutil.copytree(ONNX_DIR, folder)
    src = folder / "model.onnx"
    base = src.stat().st_mtime
    made = {}
    for version in (0, 1, 2):  # three versions of the model file: three entries, the oldest pruned
        os.utime(src, (base, base + 10 * version))
        before = set(_entries(cache))
        _vectors(path=folder)
        made[version] = (set(_entries(cache)) - before).pop()
    assert set(_entries(cache)) == {made[1], made[2]}
    os.utime(made[1].parent, (1, 1))
    os.utime(made[2].parent, (2, 2))
    os.utime(src, (base, base + 10))  # version 1 used again: its entry becomes the most recent
    _vectors(path=folder)
    os.utime(src, (base, base + 30))  # a new version: the least recently used entry (version 2's) goes
    _vectors(path=folder)
    assert made[1] in _entries(cache) and made[2] not in _entries(cache) and len(_entries(cache)) == 2


def test_unwritable_cache_skipped_silently(cache: Path, monkeypatch, opened) -> None:
    monkeypatch.setattr(_derived, "writable_dir", lambda p: False)
    v = _vectors()
    assert _entries(cache) == [] and opened[-1][0] == str(ONNX_DIR / "model.onnx")
    assert len(v) == len(TEXTS) + 2


def test_off_by_env_and_for_own_session_options(cache: Path, monkeypatch) -> None:
    monkeypatch.setenv(graph_cache.ENV, "0")
    _vectors()
    assert _entries(cache) == []
    monkeypatch.delenv(graph_cache.ENV)
    opts = ort.SessionOptions()
    _vectors(session_options=opts)
    assert _entries(cache) == [] and opts.optimized_model_filepath == ""
    assert not graph_cache.enabled(["CUDAExecutionProvider", "CPUExecutionProvider"], None)


def test_bounded_spinning_default_and_overrides() -> None:
    from lightcol import session

    def entry(opts, key):
        try:
            return opts.get_session_config_entry(key)
        except Exception:  # noqa: BLE001 - not set
            return None

    d = session.session_options(None, None)
    assert entry(d, "session.intra_op.allow_spinning") == "1"
    assert entry(d, "session.intra_op.spin_duration_us") == str(session.SPIN_US)
    off = session.session_options(None, {"session.intra_op.allow_spinning": "0"})
    assert entry(off, "session.intra_op.allow_spinning") == "0"
    assert entry(off, "session.intra_op.spin_duration_us") is None
    full = session.session_options(None, {"session.intra_op.allow_spinning": "1"})
    assert entry(full, "session.intra_op.spin_duration_us") is None  # ONNX Runtime's own spinning
    state = session.options_state(d)
    assert state["session.intra_op.spin_duration_us"] == str(session.SPIN_US)  # reaches worker processes
