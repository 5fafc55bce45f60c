"""Robustness: odd inputs, broken model folders, threads, resource leaks (see docs/errors.md)."""

from __future__ import annotations

import gc
import json
import os
import shutil
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from conftest import ONNX_DIR, random_texts
from lightcol import InvalidTextError, LateInteractionTextEmbedding, LightcolError, ModelLoadError, RegistryError
from lightcol import rules as _rules

DIM, QLEN, DLEN = 16, 32, 64


def _ok_doc(v: np.ndarray) -> None:
    assert v.dtype == np.float32 and v.ndim == 2 and v.shape[1] == DIM and 3 <= v.shape[0] <= DLEN
    assert np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def _ok_query(v: np.ndarray) -> None:
    assert v.dtype == np.float32 and v.shape == (QLEN, DIM) and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


# -- input types -------------------------------------------------------------------------------------
CALLS = {
    "embed": lambda m, x: list(m.embed(x)),
    "query_embed": lambda m, x: list(m.query_embed(x)),
    "token_count": lambda m, x: m.token_count(x),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize(
    ("items", "position", "kind"),
    [
        (["ok", None], 1, "NoneType"),
        ([3, "ok"], 0, "int"),
        (["a", "b", 2.5], 2, "float"),
        (["a", b"bytes"], 1, "bytes"),
        (["a", ["nested", "list"]], 1, "list"),
        (("a", "b", "c", {"x": 1}), 3, "dict"),  # passed as a generator
    ],
)
def test_non_strings_raise_type_error_naming_position(model, call, items, position, kind) -> None:
    if isinstance(items, tuple):
        items = (t for t in items)
    with pytest.raises(TypeError, match=rf"item {position} is {kind}, not str"):
        CALLS[call](model, items)


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("bare", [None, 42, 3.5, b"bytes", bytearray(b"x"), object()])
def test_bare_non_iterable_raises_type_error(model, call, bare) -> None:
    with pytest.raises(TypeError, match="expected a str or an iterable of str"):
        CALLS[call](model, bare)


def test_vectors_before_a_bad_item_are_yielded_then_type_error(model) -> None:
    texts = random_texts(5, seed=3)
    gen = model.embed([*texts, None, "never reached"], batch_size=2)
    got = [next(gen) for _ in range(5)]
    with pytest.raises(TypeError, match="item 5"):
        next(gen)
    for a, b in zip(got, model.embed(texts), strict=True):
        np.testing.assert_array_equal(a, b)


def test_empty_inputs(model) -> None:
    assert list(model.embed([])) == [] and list(model.query_embed(iter([]))) == []
    assert model.token_count([]) == 0


def test_numpy_and_str_subclass_items_are_texts(model) -> None:
    class Tagged(str):
        pass

    ref = list(model.embed(["hello world", "b"]))
    for items in (np.array(["hello world", "b"]), [Tagged("hello world"), Tagged("b")]):
        for a, b in zip(model.embed(items), ref, strict=True):
            np.testing.assert_array_equal(a, b)


# -- odd but valid text: always embedded ------------------------------------------------------------------
#: Texts the tokenizer reduces to nothing: embedded exactly as the empty text ([CLS] marker [SEP]).
EMPTY_LIKE = [
    "",
    " ",
    "\t\n\r\x0b\x0c",
    "\u200b\u200c\u200d\u2060\ufeff",  # zero-width characters: removed by BERT's normalizer
    "\x00\x01\x07\x1b\x7f",  # control characters: removed
    "\u0301\u0308",  # combining marks alone: stripped with the accents
    "\ufffd",  # the replacement character: removed by BERT's normalizer
]
#: text -> number of document rows (CLS + marker + kept tokens + SEP) with the tiny model's BERT tokenizer.
ODD_TEXTS = {
    "!!! ... ??? ;;; --- ((( )))": 3,  # punctuation only: seen by the model, dropped by the skiplist
    "🙂🚀": 4,  # emoji: one [UNK]
    "\U0010ffff\ufdd0": 4,  # non-characters: one [UNK]
    "مرحبا بالعالم": 15,  # RTL
    "abc \u202e\u202d RTL override עברית": 13,  # bidi overrides are removed (format characters)
    "日本語のテキストと中文文本": 16,  # CJK: one token per ideograph
    "mixed Ελληνικά кириллица 한국어 ไทย": 30,
}


def test_odd_texts_are_embedded(model) -> None:
    texts = EMPTY_LIKE + list(ODD_TEXTS)
    docs = list(model.embed(texts, batch_size=3))
    queries = list(model.query_embed(texts, batch_size=3))
    assert [d.shape[0] for d in docs] == [3] * len(EMPTY_LIKE) + list(ODD_TEXTS.values())
    for d, q in zip(docs, queries, strict=True):
        _ok_doc(d)
        _ok_query(q)
    for i, text in enumerate(EMPTY_LIKE):
        np.testing.assert_allclose(docs[i], docs[0], atol=1e-6, err_msg=repr(text))
        np.testing.assert_allclose(queries[i], queries[0], atol=1e-6, err_msg=repr(text))
    assert model.token_count(EMPTY_LIKE, include_extension=True) == 3 * len(EMPTY_LIKE)
    # punctuation is seen by the encoder (it changes the context) even though its rows are dropped
    assert not np.allclose(docs[len(EMPTY_LIKE)], docs[0], atol=1e-3)


@pytest.mark.parametrize(
    ("text", "offset"),
    [("\ud800", 0), ("ok \udfff", 3), ("caf\udce9", 3), ("\ud83d\ude42 as two code units", 0)],
)
def test_lone_surrogates_raise_invalid_text_error(model, text, offset) -> None:
    good = random_texts(3, seed=5)
    for call in ("embed", "query_embed"):
        gen = getattr(model, call)([*good, text, "after"], batch_size=2)
        got = [next(gen) for _ in range(3)]  # the texts before the bad one still get their vectors
        with pytest.raises(InvalidTextError, match="item 3 holds the lone surrogate") as info:
            next(gen)
        assert isinstance(info.value, ValueError) and isinstance(info.value, UnicodeError)
        assert isinstance(info.value, LightcolError)
        assert (info.value.position, info.value.offset) == (3, offset)
        for a, b in zip(got, getattr(model, call)(good), strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(InvalidTextError, match="item 0"):
        list(model.embed(text))  # a bare str is item 0
    with pytest.raises(InvalidTextError, match="item 1"):
        model.token_count(["fine", text])


def test_rules_layer_rejects_surrogates_with_invalid_text_error(model) -> None:
    with pytest.raises(InvalidTextError, match="item 1"):
        _rules.tokenize(model._doc_tokenizer, ["ok", "a\ud800b"])
    long = "word " * 2000 + "\udc80"  # found by tools/fuzz_rules.py: long texts are cut before tokenizing
    with pytest.raises(InvalidTextError, match="item 2"):
        _rules.tokenize(model._query_tokenizer, ["ok", "fine", long])


def test_cleaning_surrogates_with_replace_drops_the_bad_bytes(model) -> None:
    raw = b"caf\xe9 au lait"  # latin-1 bytes, decoded as UTF-8 with surrogateescape -> "caf\udce9 au lait"
    text = raw.decode("utf-8", "surrogateescape")
    with pytest.raises(InvalidTextError):
        next(model.embed(text))
    cleaned = text.encode("utf-8", "replace").decode("utf-8")  # the fix the error message suggests
    assert cleaned == "caf? au lait"
    np.testing.assert_array_equal(next(model.embed(cleaned)), next(model.embed("caf? au lait")))
    replaced = raw.decode("utf-8", "replace")  # U+FFFD, which BERT's normalizer removes
    np.testing.assert_allclose(next(model.embed(replaced)), next(model.embed("caf au lait")), atol=1e-6)


# -- huge texts ------------------------------------------------------------------------------------------
def _prefix_with(tokenizer, text: str, n_tokens: int) -> str:
    """The shortest prefix of ``text`` ending at a space that holds at least ``n_tokens`` content tokens."""
    end = 0
    while True:
        end = text.index(" ", end + 1)
        if len(tokenizer.encode(text[:end], add_special_tokens=False).ids) >= n_tokens:
            return text[:end]


@pytest.mark.parametrize(
    "unit",
    ["retrieval with late interaction, token by token. ", "Ünïcödé tëxt 日本語のテキスト 🙂 ", "a" * 90 + " "],
)
def test_10mb_document_is_truncated_quickly(model, unit) -> None:
    big = unit * (10_000_000 // len(unit))
    assert len(big) > 9_900_000
    start = time.perf_counter()
    doc = next(model.embed(big))
    query = next(model.query_embed(big))
    count = model.token_count(big, include_extension=True)
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0, f"10 MB document took {elapsed:.1f} s"
    assert count == DLEN
    # equal to the vectors of a prefix that holds the first document_length tokens (and no more is needed)
    prefix = _prefix_with(model._doc_tokenizer, big, DLEN - 3)  # [CLS] marker ... [SEP]
    assert len(prefix) < 10_000
    np.testing.assert_array_equal(doc, next(model.embed(prefix)))
    np.testing.assert_array_equal(query, next(model.query_embed(prefix)))
    # and exactly what the tokenizer gives for the whole text (on 200k characters: the full 10 MB takes ~10 s)
    part = big[:200_000]
    assert _rules.tokenize(model._doc_tokenizer, [part]) == [model._doc_tokenizer.encode(part).ids]


def test_huge_text_in_a_batch_keeps_order(model) -> None:
    texts = random_texts(10, seed=9)
    big = "late interaction retrieval " * 400_000
    mixed = [*texts[:5], big, *texts[5:]]
    got = list(model.embed(mixed, batch_size=4))
    ref = list(model.embed(texts, batch_size=4))
    for a, b in zip(got[:5] + got[6:], ref, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got[5], next(model.embed(big[:2000])))


# -- iterators that fail -------------------------------------------------------------------------------------
class Boom(RuntimeError):
    pass


def _failing(texts: list[str], at: int):
    for i, t in enumerate(texts):
        if i == at:
            raise Boom(f"source failed at {i}")
        yield t


@pytest.mark.parametrize("call", ["embed", "query_embed"])
@pytest.mark.parametrize("at", [0, 1, 21, 32])  # batch_size 2 -> windows of 16: 21 is mid-window, 32 on a boundary
def test_source_error_propagates_after_vectors_already_read(model, call, at) -> None:
    texts = random_texts(40, seed=11)
    got = []
    with pytest.raises(Boom, match=f"failed at {at}"):
        for v in getattr(model, call)(_failing(texts, at), batch_size=2):
            got.append(v)
    ref = list(getattr(model, call)(texts[:at], batch_size=2))
    assert len(got) == at
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, b)


def test_token_count_propagates_source_error(model) -> None:
    with pytest.raises(Boom):
        model.token_count(_failing(random_texts(10), 7), batch_size=3)


# -- broken model folders: an error naming the file and the fix, at load -------------------------------------------
def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(ONNX_DIR, dst)
    return dst


def _load(folder: Path, **kw) -> LateInteractionTextEmbedding:
    return LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, lazy_load=False, **kw)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(4096))


BREAKS = {
    "missing": lambda p: p.unlink(),
    "empty": lambda p: p.write_bytes(b""),
    "truncated": _truncate,
    "garbage": _garbage,
}


@pytest.mark.parametrize("how", sorted(BREAKS))
@pytest.mark.parametrize(
    ("name", "error", "fix"),
    [
        ("model.onnx", ModelLoadError, "re-download|re-export"),
        ("tokenizer.json", ModelLoadError, "re-download|re-export"),
        ("lightcol_config.json", (ModelLoadError, RegistryError), "re-export|model_name="),
    ],
)
def test_broken_file_fails_at_load_naming_it(tmp_path, name, how, error, fix) -> None:
    folder = _copy(tmp_path)
    BREAKS[how](folder / name)
    with pytest.raises(error, match=fix) as info:
        _load(folder)
    message = str(info.value)
    assert name in message, message
    assert isinstance(info.value, LightcolError)


def test_folder_without_config_loads_with_registry_name_only(tmp_path) -> None:
    folder = _copy(tmp_path)
    (folder / "lightcol_config.json").unlink()
    with pytest.raises(ModelLoadError, match="no lightcol_config.json; pass model_name="):
        _load(folder)


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "lightcol_config.json"
    cfg = json.loads(path.read_text())
    for key, value in changes.items():
        if key in cfg["rules"]:
            cfg["rules"][key] = value
        else:
            cfg[key] = value
    path.write_text(json.dumps(cfg))


def test_config_dim_disagreeing_with_onnx_fails_at_load(tmp_path) -> None:
    folder = _copy(tmp_path)
    _edit_config(folder, dim=32)
    with pytest.raises(ModelLoadError, match=r"model.onnx outputs shape .*dim 16.*has dim 32"):
        _load(folder)


def test_config_that_is_not_a_valid_entry_fails_at_load(tmp_path) -> None:
    folder = _copy(tmp_path)
    _edit_config(folder, query_length=2)
    with pytest.raises(RegistryError, match=r"lightcol_config.json.*query_length must be >= 3"):
        _load(folder)


def test_tokenizer_of_another_model_fails_at_load(tmp_path) -> None:
    folder = _copy(tmp_path)
    path = folder / "tokenizer.json"
    tok = json.loads(path.read_text(encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    vocab["[unused0]"], vocab["[unused7]"] = vocab["[unused7]"], vocab["[unused0]"]  # markers at other ids
    path.write_text(json.dumps(tok), encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"tokenizer.json maps query_marker '\[unused0\]' to id 8.*another model"):
        _load(folder)


def _edit_onnx(folder: Path, edit) -> None:
    onnx = pytest.importorskip("onnx")
    path = folder / "model.onnx"
    proto = onnx.load(str(path))
    edit(onnx, proto.graph)
    onnx.save(proto, str(path))


def _rename_input(onnx, graph) -> None:
    graph.input[0].name = "ids"
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == "input_ids":
                node.input[i] = "ids"


def _extra_input(onnx, graph) -> None:
    graph.input.append(onnx.helper.make_tensor_value_info("pixel_values", onnx.TensorProto.FLOAT, ["batch", 3]))


def _float_input(onnx, graph) -> None:
    graph.input[1].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    # keep the graph valid: cast the float mask back to int64 where it was used
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == "attention_mask":
                node.input[i] = "attention_mask_i64"
    graph.node.insert(0, onnx.helper.make_node("Cast", ["attention_mask"], ["attention_mask_i64"], to=onnx.TensorProto.INT64))


@pytest.mark.parametrize("edit", [_rename_input, _extra_input, _float_input], ids=["renamed", "extra", "float"])
def test_onnx_with_other_inputs_fails_at_load(tmp_path, edit) -> None:
    folder = _copy(tmp_path)
    _edit_onnx(folder, edit)
    with pytest.raises(ModelLoadError, match=r"model.onnx has inputs .*another kind of model"):
        _load(folder)


def _dynamic_dim(onnx, graph) -> None:
    """Route the output through Reshape(x, [*x.shape[:2], -1]): ONNX Runtime can no longer infer the last dim."""
    helper, tp = onnx.helper, onnx.TensorProto
    out = graph.output[0]
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == out.name:
                node.output[i] = "static_out"
    graph.initializer.extend(
        [helper.make_tensor(n, tp.INT64, [1], [v]) for n, v in (("dyn_start", 0), ("dyn_end", 2), ("dyn_last", -1))]
    )
    graph.node.extend(
        [
            helper.make_node("Shape", ["static_out"], ["dyn_shape"]),
            helper.make_node("Slice", ["dyn_shape", "dyn_start", "dyn_end"], ["dyn_head"]),
            helper.make_node("Concat", ["dyn_head", "dyn_last"], ["dyn_target"], axis=0),
            helper.make_node("Reshape", ["static_out", "dyn_target"], [out.name]),
        ]
    )
    out.type.tensor_type.shape.dim[2].dim_param = "hidden"


def test_onnx_with_dynamic_dim_is_probed_at_load(tmp_path, model) -> None:
    folder = _copy(tmp_path)
    _edit_onnx(folder, _dynamic_dim)
    m = _load(folder)
    assert not isinstance(m.model.get_outputs()[0].shape[2], int)  # really symbolic
    texts = random_texts(4, seed=2)
    for a, b in zip(m.embed(texts), model.embed(texts), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    _edit_config(folder, dim=32)
    with pytest.raises(ModelLoadError, match=r"model.onnx outputs shape .*dim 16.*has dim 32"):
        _load(folder)


def test_lazy_load_reports_the_same_error_on_first_use(tmp_path) -> None:
    folder = _copy(tmp_path)
    _truncate(folder / "model.onnx")
    m = LateInteractionTextEmbedding(specific_model_path=folder, cuda=False, lazy_load=True)
    with pytest.raises(ModelLoadError, match="model.onnx could not be loaded"):
        list(m.embed(["x"]))


# -- threads ---------------------------------------------------------------------------------------------
def test_one_model_shared_by_threads_matches_sequential(model) -> None:
    jobs = []
    for j in range(200):
        texts = random_texts(1 + j % 7, seed=100 + j, max_words=60)
        jobs.append(("embed" if j % 2 else "query_embed", texts, 1 + j % 3))
    expected = [list(getattr(model, call)(texts, batch_size=bs)) for call, texts, bs in jobs]
    results: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(w: int) -> None:
        try:
            barrier.wait()
            for j in range(w, len(jobs), 4):  # 4 threads x 50 calls
                call, texts, bs = jobs[j]
                results[j] = list(getattr(model, call)(texts, batch_size=bs))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == len(jobs)
    for j, exp in enumerate(expected):
        assert len(results[j]) == len(exp)
        for a, b in zip(results[j], exp, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)


def test_lazy_session_is_opened_once_under_concurrent_first_use(monkeypatch) -> None:
    from lightcol import session as _session

    opened = []
    real = _session.create_session

    def counting(*args, **kwargs):
        opened.append(1)
        time.sleep(0.05)  # widen the race window
        return real(*args, **kwargs)

    monkeypatch.setattr(_session, "create_session", counting)
    m = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=False, lazy_load=True)
    out: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: out.append(next(m.embed("x")))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(opened) == 1 and len(out) == 6


# -- resources ----------------------------------------------------------------------------------------------
def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_model_loads_leak_no_files_or_threads() -> None:
    # 1,000 loads take about 2 minutes (benchmarks/bench_memory.py --loads 1000); a leak of one handle or thread per
    # load, or one every few dozen loads, shows in 100.
    def cycle(n: int) -> None:
        for _ in range(n):
            m = LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=False, lazy_load=False)
            next(m.embed("warm the session's thread pool"))
            del m
        gc.collect()

    cycle(3)  # first loads open shared libraries and ONNX Runtime's global state
    fds, tasks, pythreads = _open_fds(), _native_threads(), threading.active_count()
    cycle(100)
    assert _open_fds() <= fds, "file handles leaked"
    assert _native_threads() <= tasks, "native threads leaked"
    assert threading.active_count() <= pythreads


def _stream(n: int, seed: int = 0):
    words = "late interaction retrieval token vector passage query document index search".split()
    for i in range(n):
        yield " ".join(words[(i + k) % len(words)] for k in range(8 + (i * 7 + seed) % 40))


def test_streaming_memory_is_flat(model) -> None:
    """Python-side peak memory (tracemalloc: deterministic) does not grow with the stream's length."""

    def peak(n: int) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            count = 0
            for v in model.embed(_stream(n), batch_size=16):
                count += v.shape[0] > 0
            assert count == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(500), peak(4000)
    # retaining every document (4000 x ~40 rows x 16 x 4 bytes = 10 MB) or every token list would show here
    assert large < small * 1.5 + 256 * 1024, (small, large)


def test_streaming_rss_growth_is_bounded(model) -> None:
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    it = model.embed(_stream(12_000, seed=1), batch_size=32)
    for _ in range(2_000):  # warm up: arenas, ONNX Runtime's buffers
        next(it)
    gc.collect()
    before = proc.memory_info().rss
    for _ in it:
        pass
    gc.collect()
    growth = proc.memory_info().rss - before
    assert growth < 40 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB over 10,000 documents"
