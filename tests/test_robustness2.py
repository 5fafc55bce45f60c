"""Robustness, second pass: one regression test per defect found (each failed before its fix)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lightcol
from lightcol import LateInteractionTextEmbedding, MultiVectorCollection, maxsim
from lightcol import rules as _rules
from lightcol.errors import ArgumentError, DuplicateIdError, LightcolError, ModelLoadError, ShapeError, WorkerError

from conftest import ONNX_DIR, unit_rows

ROOT = Path(__file__).resolve().parent.parent


def _saved(tmp_path: Path, n: int = 5, dim: int = 8) -> Path:
    rng = np.random.default_rng(0)
    c = MultiVectorCollection()
    c.add([f"d{i}" for i in range(n)], [unit_rows(rng, 3 + i, dim) for i in range(n)])
    path = tmp_path / "c.npz"
    c.save(path)
    return path


# ------------------------------------------------------------------------------------- 1. bad files
def _rewrite_member(src: Path, dst: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, data if info.filename == name else zin.read(info))


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["half", "empty", "npy", "bad_ids_json", "offsets_2d", "ids_not_unique", "text"])
def test_load_bad_file_raises_shape_error(tmp_path: Path, kind: str) -> None:
    good = _saved(tmp_path)
    bad = tmp_path / "bad.npz"
    data = good.read_bytes()
    if kind == "half":
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "npy":
        np.save(tmp_path / "bad.npy", np.zeros((3, 3)))
        bad = tmp_path / "bad.npy"
    elif kind == "bad_ids_json":
        _rewrite_member(good, bad, "ids.npy", _npy_bytes(np.frombuffer(b'["d0", "d1"', dtype=np.uint8)))
    elif kind == "offsets_2d":
        _rewrite_member(good, bad, "offsets.npy", _npy_bytes(np.zeros((2, 3), dtype=np.int64)))
    elif kind == "ids_not_unique":
        ids = json.dumps(["d0", "d0", "d1", "d2", "d3"]).encode()
        _rewrite_member(good, bad, "ids.npy", _npy_bytes(np.frombuffer(ids, dtype=np.uint8)))
    else:
        bad.write_text("hello, not a collection")
    for mmap in (False, True):
        with pytest.raises(ShapeError, match=str(bad.name)):
            MultiVectorCollection.load(bad, mmap=mmap)


def test_load_missing_file_stays_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        MultiVectorCollection.load(tmp_path / "nope.npz")


# ------------------------------------------------------------------------ 2. NaN in a mapped file
def test_nan_in_memory_mapped_collection_ranks_last_and_never_empties_search(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    c = MultiVectorCollection.load(path)
    q = unit_rows(np.random.default_rng(1), 4, 8)
    expected = c.search(q, k=5)
    # overwrite the first vector of document d2 with NaN inside the stored (uncompressed) array
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("vectors.npy")
    raw = bytearray(path.read_bytes())
    header = raw.find(b"\x93NUMPY", info.header_offset)
    start = raw.index(b"\n", header) + 1  # end of the .npy header
    row = int(c._offsets[2])
    pos = start + row * 8 * 4
    raw[pos : pos + 4] = np.array([np.nan], dtype=np.float32).tobytes()
    path.write_bytes(bytes(raw))
    m = MultiVectorCollection.load(path, mmap=True)
    with pytest.warns(lightcol.NonFiniteWarning, match="'d2'"):
        got = m.search(q, k=3)
    assert len(got) == 3 and "d2" not in [i for i, _ in got]
    assert [i for i, _ in got] == [i for i, _ in expected if i != "d2"][:3]
    with pytest.warns(lightcol.NonFiniteWarning, match="'d2'"):
        full = m.search(q, k=5)
    assert full[-1][0] == "d2" and np.isnan(full[-1][1])


# ----------------------------------------------------------------------------------- 3. NaN top-k
def test_top_k_ranks_nan_last() -> None:
    idx, vals = maxsim.top_k(np.array([3.0, np.nan, 2.0, 1.0]), 2)
    assert idx.tolist() == [0, 2] and vals.tolist() == [3.0, 2.0]
    idx, vals = maxsim.top_k(np.array([np.nan, 1.0, np.nan, -np.inf]), 4)
    assert idx.tolist() == [1, 3, 0, 2] and vals[0] == 1.0 and np.isnan(vals[2:]).all()
    idx, _ = maxsim.top_k(np.array([np.nan, np.nan]), 1)
    assert idx.tolist() == [0]


# ---------------------------------------------------------------------- 4. Ctrl-C is not held back
@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_interrupt_in_source_propagates_at_once(model, monkeypatch, exc) -> None:
    calls = []
    real = model._embed_documents
    monkeypatch.setattr(model, "_embed_documents", lambda *a, **k: calls.append(1) or real(*a, **k))

    def source():
        yield from ["a text"] * 5
        raise exc()

    with pytest.raises(exc):
        list(model.embed(source(), batch_size=256))
    assert calls == []  # nothing embedded after the interrupt


def test_ordinary_error_still_waits_for_the_window(model) -> None:
    def source():
        yield from ["a text"] * 5
        raise OSError("disk")

    got = []
    with pytest.raises(OSError, match="disk"):
        for v in model.embed(source()):
            got.append(v)
    assert len(got) == 5


# ----------------------------------------------------------------------------- 5. orphaned workers
_ORPHAN_SCRIPT = """
import os, sys, time
sys.path.insert(0, {root!r})
from lightcol import LateInteractionTextEmbedding
if __name__ == "__main__":
    m = LateInteractionTextEmbedding(specific_model_path={model!r}, cuda=False)
    it = m.embed(iter(["some text"] * 10000), batch_size=8, parallel=2)
    next(it)
    import multiprocessing as mp
    print(" ".join(str(p.pid) for p in mp.active_children()), flush=True)
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for reaping counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and SIGKILL")
def test_workers_exit_when_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN_SCRIPT.format(root=str(ROOT), model=str(ONNX_DIR)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    children = [int(p) for p in line.split()]
    assert len(children) >= 2, line
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in children):
        time.sleep(0.2)
    left = [p for p in children if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived their parent"


_KILL_WORKER_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {root!r})
import multiprocessing as mp
from lightcol import LateInteractionTextEmbedding
from lightcol.errors import WorkerError
if __name__ == "__main__":
    m = LateInteractionTextEmbedding(specific_model_path={model!r}, cuda=False)
    it = m.embed(iter(["some text"] * 100000), batch_size=8, parallel=2)
    next(it)
    os.kill(mp.active_children()[0].pid, signal.SIGKILL)
    try:
        for _ in it:
            pass
    except WorkerError:
        print("WorkerError", flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses SIGKILL")
@pytest.mark.parametrize("killed", ["worker", "caller"])
def test_no_leaked_semaphores_when_a_process_is_killed(tmp_path: Path, killed: str) -> None:
    """The queues' named semaphores are unlinked once the workers have opened them: the resource
    tracker (which shares the caller's stderr and outlives it) finds nothing to clean up."""
    script = tmp_path / "kill.py"
    template = _KILL_WORKER_SCRIPT if killed == "worker" else _ORPHAN_SCRIPT
    script.write_text(template.format(root=str(ROOT), model=str(ONNX_DIR)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if killed == "caller":
            assert len(proc.stdout.readline().split()) >= 2  # the workers are running and have reported in
            os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=90)  # EOF: the workers and the tracker have exited too
    finally:
        if proc.poll() is None:
            proc.kill()
    if killed == "worker":
        assert proc.returncode == 0 and out.strip() == "WorkerError", out + err
    assert "leaked semaphore" not in err and "resource_tracker" not in err, err


# ---------------------------------------------------------------- 6. any whitespace takes the fast path
SEPARATORS = {
    "space": " ", "newline": "\n", "crlf": "\r\n", "tab": "\t", "nbsp": "\xa0", "em space": "\u2003",
    "ideographic": "\u3000", "line separator": "\u2028", "paragraph separator": "\u2029",
    "narrow nbsp": "\u202f", "comma": ",", "slash": "/",
}


@pytest.mark.parametrize("name", SEPARATORS)
def test_long_text_is_cut_whatever_the_separator(model, name: str) -> None:
    text = SEPARATORS[name].join(["alpha", "beta", "gamma"] * 300_000)  # ~5 MB
    tok = model._doc_tokenizer
    limit = tok.truncation["max_length"]
    cut = _rules._cut_points(tok)
    clipped = _rules._clip(tok, text, limit, cut)
    assert len(clipped) < len(text) // 100  # cut: the tokenizer never sees the whole text
    assert tok.encode(clipped).ids == tok.encode(text[:50_000]).ids
    assert model.token_count([text]) == model.token_count([text[:50_000]])


def test_characters_the_normalizer_deletes_are_not_cut_points(model) -> None:
    # BERT's clean_text removes VT/FF/NEL (control characters): "a\x0bb" is one word "ab"
    ws = _rules._separating_whitespace(model._doc_tokenizer)
    for c in "\x0b\x0c\x85":
        assert c not in ws.replace("\\", "")
    for c in " \t\n\r\xa0\u3000":
        assert c in ws.replace("\\", "") or "\\" + c in ws


# ------------------------------------------------------------------ 7. relative paths and os.chdir
def test_relative_model_path_survives_chdir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ONNX_DIR.parent)
    m = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR.name, lazy_load=True, cuda=False)
    monkeypatch.chdir(tmp_path)
    assert m.model_dir == ONNX_DIR.resolve()
    assert len(list(m.embed(["hello world"]))) == 1


# ----------------------------------------------------------------- 8. rules beyond position limit
def test_document_length_above_position_limit_refused_at_load(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(ONNX_DIR, folder)
    cfg = json.loads((folder / "lightcol_config.json").read_text())
    limit = json.loads((folder / "config.json").read_text())["max_position_embeddings"]
    cfg["rules"]["document_length"] = limit + 88
    (folder / "lightcol_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=rf"document_length is {limit + 88}.*max_position_embeddings={limit}"):
        LateInteractionTextEmbedding(specific_model_path=folder, lazy_load=True, cuda=False)


# -------------------------------------------------------- 9. every deliberate error is a LightcolError
def _bad_calls(model):
    q = unit_rows(np.random.default_rng(0), 3, 16)
    docs = [unit_rows(np.random.default_rng(i), 4, 16) for i in range(3)]
    coll = MultiVectorCollection()
    coll.add(["a", "b", "c"], docs)
    empty = MultiVectorCollection(dim=16)
    return {
        "rank k<0": (lambda: maxsim.rank(q, docs, -1), ValueError),
        "rank k float": (lambda: maxsim.rank(q, docs, 2.7), TypeError),
        "rank k str": (lambda: maxsim.rank(q, docs, "3"), TypeError),
        "rank k bool": (lambda: maxsim.rank(q, docs, True), TypeError),
        "rank_many k<0": (lambda: maxsim.rank_many([q], docs, -1), ValueError),
        "top_k k<0": (lambda: maxsim.top_k(np.ones(3), -2), ValueError),
        "block_tokens 0": (lambda: maxsim.score(q, docs, block_tokens=0), ValueError),
        "search k<0": (lambda: coll.search(q, k=-1), ValueError),
        "search k float": (lambda: coll.search(q, k=2.7), TypeError),
        "search_many k<0": (lambda: coll.search_many([q], k=-1), ValueError),
        "empty search k<0": (lambda: empty.search(q, k=-1), ValueError),
        "empty search wrong dim": (lambda: empty.search(q[:, :8], k=1), ValueError),
        "empty search block_tokens": (lambda: empty.search(q, block_tokens=0), ValueError),
        "collection dtype": (lambda: MultiVectorCollection(dtype="int8"), ValueError),
        "collection ids str": (lambda: coll.add("x", docs[:1]), TypeError),
        "collection id float": (lambda: coll.add([1.5], docs[:1]), TypeError),
        "rerank k<0": (lambda: model.rerank("q", ["a", "b"], k=-1), ValueError),
        "rerank query int": (lambda: model.rerank(3, ["a"]), TypeError),
        "embed dtype": (lambda: model.embed(["a"], dtype="int8"), ValueError),
        "embed batch_size 0": (lambda: model.embed(["a"], batch_size=0), ValueError),
        "embed parallel -1": (lambda: model.embed(["a"] * 500, parallel=-1), ValueError),
        "embed parallel str": (lambda: model.embed(["a"] * 500, parallel="2"), ValueError),
        "embed None": (lambda: model.embed(None), TypeError),
        "embed unknown kwarg": (lambda: model.embed(["a"], foo=1), TypeError),
        "query_embed batch_size": (lambda: model.query_embed(["a"], batch_size=-1), ValueError),
        "query_embed dtype": (lambda: model.query_embed(["a"], dtype=int), ValueError),
        "token_count batch_size 0": (lambda: model.token_count(["a"], batch_size=0), ValueError),
        "token_count batch_size -1": (lambda: model.token_count(["a"], batch_size=-1), ValueError),
        "item not str": (lambda: list(model.embed(["a", None])), TypeError),
        "quantized+fp16": (
            lambda: LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, quantized=True, model_variant="fp16"),
            ValueError,
        ),
        "threads 0": (lambda: LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, threads=0), ValueError),
        "unknown ctor kwarg": (lambda: LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, bogus=1), TypeError),
        "unknown session option": (
            lambda: LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, session_options={"intra_threads": 2}),
            ValueError,
        ),
        "bad session option value": (
            lambda: LateInteractionTextEmbedding(
                specific_model_path=ONNX_DIR, session_options={"graph_optimization_level": "FAST"}
            ),
            ValueError,
        ),
        "session_options list": (
            lambda: LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, session_options=[1]),
            TypeError,
        ),
        "unknown model": (lambda: LateInteractionTextEmbedding("no/such-model"), ValueError),
        "pack empty": (lambda: maxsim.pack([]), ValueError),
    }


def test_every_deliberate_error_is_a_lightcol_error_and_the_builtin(model) -> None:
    problems = []
    for name, (call, builtin) in _bad_calls(model).items():
        try:
            call()
        except LightcolError as e:
            if not isinstance(e, builtin):
                problems.append(f"{name}: {type(e).__name__} is not a {builtin.__name__}")
        except BaseException as e:  # noqa: BLE001 - collected
            problems.append(f"{name}: raised {type(e).__name__} ({e}), not a LightcolError")
        else:
            problems.append(f"{name}: no error")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------- rough edges
def test_arguments_are_checked_when_the_call_is_made(model) -> None:
    with pytest.raises(ArgumentError):  # not at the first next()
        model.embed(["a"], batch_size=0)
    with pytest.raises(ArgumentError):
        model.query_embed(["a"], batch_size=0)


def test_duplicate_ids_rejected_all_or_nothing() -> None:
    rng = np.random.default_rng(0)
    c = MultiVectorCollection()
    c.add(["a", "b"], [unit_rows(rng, 2, 4), unit_rows(rng, 3, 4)])
    with pytest.raises(DuplicateIdError, match="'a'.*already in the collection"):
        c.add(["c", "a"], [unit_rows(rng, 2, 4), unit_rows(rng, 2, 4)])
    with pytest.raises(DuplicateIdError, match="given twice"):
        c.add(["x", "x"], [unit_rows(rng, 2, 4), unit_rows(rng, 2, 4)])
    assert c.ids == ["a", "b"] and len(c) == 2 and c.n_tokens == 5
    n = MultiVectorCollection()
    n.add([1], [unit_rows(rng, 2, 4)])
    with pytest.raises(DuplicateIdError, match="ids=None"):
        n.add(None, [unit_rows(rng, 2, 4)])  # would be numbered 1, clashing with the explicit id 1
    n.add(None, [])  # nothing to add: fine


def test_duplicate_ids_checked_after_load(tmp_path: Path) -> None:
    c = MultiVectorCollection.load(_saved(tmp_path))
    with pytest.raises(DuplicateIdError):
        c.add(["d3"], [unit_rows(np.random.default_rng(0), 2, 8)])


def test_save_to_read_only_folder_names_the_target(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    c = MultiVectorCollection()
    c.add(["a"], [np.ones((1, 4), np.float32)])
    try:
        with pytest.raises(PermissionError, match=str(folder / "x.npz")):
            c.save(folder / "x.npz")
    finally:
        folder.chmod(0o755)


def test_save_error_names_the_target_not_the_temp_file(tmp_path: Path) -> None:
    c = MultiVectorCollection()
    c.add(["a"], [np.ones((1, 4), np.float32)])
    target = tmp_path / "missing-folder" / "x.npz"
    with pytest.raises(FileNotFoundError) as err:
        c.save(target)
    assert str(target) in str(err.value) and ".tmp" not in str(err.value)


def test_model_name_conflicting_with_folder_says_what_conflicts() -> None:
    with pytest.raises(lightcol.UnknownModelError, match="conflicts with .*lightcol_config.json.*lightcol/tiny-colbert"):
        LateInteractionTextEmbedding("my/other-model", specific_model_path=ONNX_DIR, lazy_load=True)


def test_embedding_size_and_get_embedding_size(model) -> None:
    assert model.embedding_size == 16 == model.dim
    assert LateInteractionTextEmbedding.get_embedding_size("colbert-ir/colbertv2.0") == 128
    with pytest.raises(lightcol.UnknownModelError):
        LateInteractionTextEmbedding.get_embedding_size("no/such")


def _noguard_script(tmp_path: Path, report: Path) -> Path:
    """A script that calls embed(parallel=2) at module level, without the main guard.

    The spawned workers re-import it (as ``__mp_main__``) and share the parent's stdout and
    stderr, where their writes interleave with each other's; so the parent alone (``__name__ ==
    "__main__"``) reports its uncaught exception, to a file no worker writes.
    """
    script = tmp_path / "noguard.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(ROOT)!r})
            if __name__ == "__main__":
                def _report(kind, exc, tb):
                    with open({str(report)!r}, "w") as f:
                        f.write(f"{{kind.__name__}}: {{exc}}")
                    sys.__excepthook__(kind, exc, tb)
                sys.excepthook = _report
            from lightcol import LateInteractionTextEmbedding
            m = LateInteractionTextEmbedding(specific_model_path={str(ONNX_DIR)!r}, cuda=False)
            list(m.embed(["some text"] * 300, batch_size=8, parallel=2))
            """
        )
    )
    return script


def test_parallel_without_main_guard_says_what_to_do(tmp_path: Path) -> None:
    report = tmp_path / "parent-error.txt"
    script = _noguard_script(tmp_path, report)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    parent = report.read_text()
    assert parent.startswith("WorkerError: embedding worker process(es) exited during start-up"), parent
    assert 'put the calling code under `if __name__ == "__main__":`' in parent
    # Each worker fails on the call itself, naming it (one write per message line: never split).
    assert "was called while an embedding worker process was importing the main script" in out.stderr


def test_download_to_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    from lightcol import download
    from lightcol.registry import get_spec

    spec = get_spec("colbert-ir/colbertv2.0")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(lightcol.DownloadError, match="not empty.*force=True"):
        download.export_model_folder(spec, other, local_files_only=True)
    shutil.copytree(ONNX_DIR, tmp_path / "tiny")  # holds another model
    with pytest.raises(lightcol.DownloadError, match="lightcol/tiny-colbert"):
        download.export_model_folder(spec, tmp_path / "tiny", local_files_only=True)
    with pytest.raises(ArgumentError, match="empty"):
        download.export_model_folder(spec, "", local_files_only=True)


def test_cli_download_to_empty_string_is_an_error(capsys) -> None:
    from lightcol.cli import main

    assert main(["download", "colbert-ir/colbertv2.0", "--to", ""]) != 0
    assert "destination folder --to '' is empty" in capsys.readouterr().err


def test_worker_init_gets_absolute_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ONNX_DIR.parent.parent)
    m = LateInteractionTextEmbedding(specific_model_path=os.path.join("fixtures", ONNX_DIR.name), lazy_load=True,
                                     cache_dir="rel-cache")
    assert m.model_dir.is_absolute() and os.path.isabs(m._cache_dir)
    assert m._cache_dir == str(ONNX_DIR.parent.parent / "rel-cache")
