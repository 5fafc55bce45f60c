"""``lightcol embed``: every input format, schema, parity with in-process embed, resume after a kill,
refused reruns, bad-input errors naming file and line, ``--on-error skip``, the missing-extra message."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import EDGE_TEXTS, ONNX_DIR, random_texts  # noqa: E402

from lightcol import Muvera, embed_job, parquet, registry  # noqa: E402
from lightcol.cli import main  # noqa: E402
from lightcol.muvera import RECOMMENDED  # noqa: E402
from lightcol.registry import parse_entry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = ["--model-path", str(ONNX_DIR)]
TEXTS = random_texts(37, seed=3) + EDGE_TEXTS  # 51 texts, some with newlines, tabs, emoji, empty
LINE_TEXTS = [t for t in TEXTS if "\n" not in t and "\r" not in t]


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("lightcol: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def write_inputs(folder: Path, texts: list[str], ids: list[str] | None = None) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ids = ids or [f"doc-{i}" for i in range(len(texts))]
    paths = {fmt: folder / f"in{fmt}" for fmt in (".txt", ".jsonl", ".csv", ".parquet")}
    paths[".txt"].write_text("".join(t + "\n" for t in texts if "\n" not in t and "\r" not in t), encoding="utf-8")
    with open(paths[".jsonl"], "w", encoding="utf-8") as f:
        for i, t in zip(ids, texts, strict=True):
            f.write(json.dumps({"id": i, "text": t, "other": 1}) + "\n")
    with open(paths[".csv"], "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows(zip(ids, texts, strict=True))
    pq.write_table(pa.table({"text": texts, "id": ids}), paths[".parquet"], row_group_size=16)
    return paths


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["embed", *args])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def model():
    from lightcol import LateInteractionTextEmbedding

    return LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=False)


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("fmt", [".txt", ".jsonl", ".csv", ".parquet"])
def test_each_format_equals_in_process_embed(fmt: str, tmp_path: Path, model, capsys) -> None:
    paths = write_inputs(tmp_path / "in", TEXTS)
    out = tmp_path / "out"
    code, err = run([str(paths[fmt]), "-o", str(out), *MODEL, "--batch-size", "8", "--shard-size", "16", "-q"], capsys)
    assert code == 0, err
    texts = LINE_TEXTS if fmt == ".txt" else TEXTS
    ids, vectors = parquet.read_embeddings(out)
    assert ids == (list(range(len(texts))) if fmt == ".txt" else [f"doc-{i}" for i in range(len(texts))])
    assert_same(vectors, list(model.embed(texts, batch_size=8)))
    shards = sorted(p.name for p in out.glob("*.parquet"))
    assert shards == [f"part-{k:05d}.parquet" for k in range(-(-len(texts) // 16))]
    assert [pq.read_metadata(out / s).num_rows for s in shards][:-1] == [16] * (len(shards) - 1)
    assert not list(out.glob(".*"))  # no temporary files left


def test_schema_and_metadata(tmp_path: Path, model, capsys) -> None:
    paths = write_inputs(tmp_path / "in", TEXTS)
    out = tmp_path / "out"
    code, err = run([str(paths[".jsonl"]), "-o", str(out), *MODEL, "--dtype", "float16", "-q"], capsys)
    assert code == 0, err
    table = pq.read_table(out / "part-00000.parquet")
    assert table.schema.field("id").type == pa.string()
    assert table.schema.field("vectors").type == pa.list_(pa.list_(pa.float16(), 16))
    assert table.schema.field("n_tokens").type == pa.int32()
    assert table.column_names == ["id", "vectors", "n_tokens"]
    want = list(model.embed(TEXTS, dtype="float16"))
    assert table.column("n_tokens").to_pylist() == [len(v) for v in want]
    # what pyarrow users see: a list of dim-long lists per row
    assert np.array(table.column("vectors")[5].as_py(), dtype=np.float16).tolist() == want[5].tolist()
    meta = parquet.read_metadata(out)
    assert meta["model"] == "lightcol/tiny-colbert" and meta["dim"] == 16 and meta["dtype"] == "float16"
    assert meta["schema_version"] == 1 and meta["rules"]["document_length"] == 64
    assert meta["fingerprint"]["dtype"] == "float16"


def test_options_pool_muvera_queries(tmp_path: Path, model, capsys) -> None:
    paths = write_inputs(tmp_path / "in", TEXTS)
    out = tmp_path / "pooled"
    code, err = run([str(paths[".jsonl"]), "-o", str(out), *MODEL, "--pool-factor", "2", "--muvera", "-q"], capsys)
    assert code == 0, err
    want = list(model.embed(TEXTS, pool_factor=2))
    batches = list(parquet.iter_batches(out, columns=("id", "vectors", "n_tokens", "muvera")))
    vectors = [v for b in batches for v in b["vectors"]]
    assert_same(vectors, want)
    fde = np.concatenate([b["muvera"] for b in batches])
    np.testing.assert_array_equal(fde, Muvera(16, **RECOMMENDED).process_documents(want))
    assert pq.read_schema(out / "part-00000.parquet").field("muvera").type == pa.list_(pa.float32(), 10240)

    out = tmp_path / "queries"
    code, err = run([str(paths[".txt"]), "-o", str(out), *MODEL, "--queries", "--muvera", "fastembed", "-q"], capsys)
    assert code == 0, err
    batches = list(parquet.iter_batches(out, columns=("vectors", "muvera")))
    want = list(model.query_embed(LINE_TEXTS))
    assert_same([v for b in batches for v in b["vectors"]], want)
    np.testing.assert_array_equal(np.concatenate([b["muvera"] for b in batches]),
                                  Muvera(16, k_sim=5, dim_proj=16, r_reps=20).process_queries(want))


def test_saved_muvera_file(tmp_path: Path, model, capsys) -> None:
    paths = write_inputs(tmp_path / "in", TEXTS)
    fitted = Muvera.fit(list(model.embed(TEXTS)), k_sim=2, dim_proj=4, r_reps=2)
    fitted.save(tmp_path / "muvera.npz")
    out = tmp_path / "out"
    code, err = run([str(paths[".jsonl"]), "-o", str(out), *MODEL, "--muvera", str(tmp_path / "muvera.npz"), "-q"], capsys)
    assert code == 0, err
    fde = np.concatenate([b["muvera"] for b in parquet.iter_batches(out, columns=("muvera",))])
    np.testing.assert_array_equal(fde, fitted.process_documents(list(model.embed(TEXTS))))
    Muvera.fit(list(model.embed(TEXTS)), k_sim=2, dim_proj=4, r_reps=2, random_seed=7).save(tmp_path / "muvera.npz")
    code, err = run([str(paths[".jsonl"]), "-o", str(out), *MODEL, "--muvera", str(tmp_path / "muvera.npz"), "-q"], capsys)
    assert code != 0 and "muvera" in err  # another encoder under the same name: refused, not mixed
    code, err = run([str(paths[".jsonl"]), "-o", str(tmp_path / "o2"), *MODEL, "--muvera", "nope", "-q"], capsys)
    assert code == 2 and "Muvera.save" in err


def test_parallel_workers_give_the_same_vectors(tmp_path: Path, model, capsys) -> None:
    paths = write_inputs(tmp_path / "in", TEXTS)
    out = tmp_path / "out"
    code, err = run([str(paths[".csv"]), "-o", str(out), *MODEL, "--parallel", "2", "--batch-size", "8", "-q"], capsys)
    assert code == 0, err
    assert_same(parquet.read_embeddings(out)[1], list(model.embed(TEXTS, batch_size=8)))


def test_several_inputs_number_rows_across_files(tmp_path: Path, model, capsys) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("first\nsecond\n", encoding="utf-8")
    b.write_text("third\n\nfifth", encoding="utf-8")  # an empty line is a text; no final newline
    out = tmp_path / "out"
    code, err = run([str(a), str(b), "-o", str(out), *MODEL], capsys)
    assert code == 0, err
    ids, vectors = parquet.read_embeddings(out)
    assert ids == [0, 1, 2, 3, 4]
    assert_same(vectors, list(model.embed(["first", "second", "third", "", "fifth"])))
    assert "embedded 5 texts" in err and "1 shard(s) written" in err  # the summary line


def test_byte_order_mark_and_empty_input(tmp_path: Path, model, capsys) -> None:
    bom = b"\xef\xbb\xbf"
    (tmp_path / "a.txt").write_bytes(bom + b"first\nsecond\n")
    (tmp_path / "b.jsonl").write_bytes(bom + b'{"text": "third"}\n')
    (tmp_path / "c.csv").write_bytes(bom + b"text\nfourth\n")
    out = tmp_path / "out"
    code, err = run([str(tmp_path / n) for n in ("a.txt", "b.jsonl", "c.csv")] + ["-o", str(out), *MODEL, "-q"], capsys)
    assert code == 0, err
    ids, vectors = parquet.read_embeddings(out)
    assert ids == [0, 1, 2, 3]
    assert_same(vectors, list(model.embed(["first", "second", "third", "fourth"])))
    (tmp_path / "empty.txt").write_bytes(b"")
    code, err = run([str(tmp_path / "empty.txt"), "-o", str(tmp_path / "e"), *MODEL, "-q"], capsys)
    assert code == 0, err
    assert parquet.read_embeddings(tmp_path / "e") == ([], [])
    assert pq.read_schema(tmp_path / "e" / "part-00000.parquet").field("vectors").type == parquet.vectors_type(16, "float32")


def test_model_name_with_a_folder_without_config(tmp_path: Path, model, capsys, monkeypatch) -> None:
    entry = json.loads((ONNX_DIR / "lightcol_config.json").read_text())
    spec = parse_entry(entry)
    monkeypatch.setattr(registry, "_registry", lambda: {spec.model.lower(): spec})
    folder = tmp_path / "bare"
    shutil.copytree(ONNX_DIR, folder)
    (folder / "lightcol_config.json").unlink()
    paths = write_inputs(tmp_path / "in", TEXTS[:10])
    code, err = run([str(paths[".jsonl"]), "-o", str(tmp_path / "x"), "--model-path", str(folder), "-q"], capsys)
    assert code == 1 and "no lightcol_config.json" in one_line_error(err)
    out = tmp_path / "out"
    code, err = run([str(paths[".jsonl"]), "-o", str(out), "--model-path", str(folder), "--model", spec.model, "-q"],
                    capsys)
    assert code == 0, err
    assert_same(parquet.read_embeddings(out)[1], list(model.embed(TEXTS[:10])))


# -- resume ----------------------------------------------------------------------------------------
_KILLER = """
import os, signal, sys
from lightcol import embed_job, parquet
closed = []
real_close, real_write = embed_job._ShardWriter._close, parquet.Writer.write
def close(self):
    real_close(self)
    closed.append(1)
def write(self, *a, **k):
    real_write(self, *a, **k)
    if len(closed) == 2:  # shards 0 and 1 renamed, shard 2 half written in its temporary file
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
embed_job._ShardWriter._close, parquet.Writer.write = close, write
from lightcol.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _kill_midway(sig: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _KILLER, sig, "embed", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_resume_after_kill(sig: str, tmp_path: Path, model, capsys) -> None:
    texts = random_texts(100, seed=7)
    paths = write_inputs(tmp_path / "in", texts)
    out = tmp_path / "out"
    args = [str(paths[".jsonl"]), "-o", str(out), *MODEL, "--shard-size", "20", "--batch-size", "4"]
    proc = _kill_midway(sig, args)
    assert proc.returncode == (-9 if sig == "SIGKILL" else 130), proc.stderr
    if sig == "SIGTERM":
        assert "rerun the same command to resume" in one_line_error(proc.stderr)
    # SIGKILL: exactly the 2 renamed shards; SIGTERM unwinds, so shards already complete in the writer's queue
    # are renamed too (never the partial one)
    n = len(list(out.glob("*.parquet")))
    assert n == 2 if sig == "SIGKILL" else 2 <= n < 5
    assert sorted(p.name for p in out.glob("*.parquet")) == [f"part-{k:05d}.parquet" for k in range(n)]
    temps = list(out.glob(".part-*"))
    assert len(temps) == (1 if sig == "SIGKILL" else 0)  # a killed process leaves its hidden temporary file
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}

    code, err = run(args, capsys)
    assert code == 0, err
    # nothing embedded twice: only the rows of the missing shards
    assert f"embedded {100 - 20 * n} texts" in err and f"{n} kept from an earlier run ({20 * n} rows)" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet") if p.name in kept} == kept
    ids, vectors = parquet.read_embeddings(out)
    assert ids == [f"doc-{i}" for i in range(100)]
    assert_same(vectors, list(model.embed(texts, batch_size=4)))
    assert not list(out.glob(".*"))

    code, err = run(args, capsys)  # complete: a rerun embeds nothing
    assert code == 0 and "embedded 0 texts" in err and "5 kept" in err

    (out / "part-00003.parquet").write_bytes(b"PAR1 cut short")  # damaged (e.g. by a disk error): redone
    code, err = run(args, capsys)
    assert code == 0 and "part-00003.parquet is damaged" in err and "embedded 20 texts" in err
    ids, vectors = parquet.read_embeddings(out)
    assert ids == [f"doc-{i}" for i in range(100)]
    assert_same(vectors, list(model.embed(texts, batch_size=4)))


def test_changed_options_or_inputs_are_refused(tmp_path: Path, capsys) -> None:
    paths = write_inputs(tmp_path / "in", TEXTS)
    out = tmp_path / "out"
    args = [str(paths[".jsonl"]), "-o", str(out), *MODEL, "-q"]
    assert run(args, capsys)[0] == 0
    before = sorted(out.iterdir())
    code, err = run([*args, "--dtype", "float16"], capsys)
    line = one_line_error(err)
    assert code == 1 and "dtype: 'float32' -> 'float16'" in line and "new --output folder" in line
    code, err = run([*args, "--pool-factor", "2"], capsys)
    assert code == 1 and "pool_factor: 1 -> 2" in one_line_error(err)
    with open(paths[".jsonl"], "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "new", "text": "appended"}) + "\n")
    code, err = run(args, capsys)
    assert code == 1 and "inputs:" in one_line_error(err)
    assert sorted(out.iterdir()) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, err = run([str(paths[".jsonl"]), "-o", str(other), *MODEL, "-q"], capsys)
    assert code == 1 and "not empty" in one_line_error(err)


# -- bad input -------------------------------------------------------------------------------------
def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("a.jsonl", ['{"text": "ok"}', "", '{"txt": "typo"}'], "a.jsonl:3: field 'text' is missing, not a string"),
        ("b.jsonl", ['{"text": "ok"}', '{"text": 12}'], "b.jsonl:2: field 'text' is int, not a string"),
        ("c.jsonl", ['{"text": "ok"}', '{"text": "ok"', ], "c.jsonl:2: not valid JSON"),
        ("d.jsonl", ['{"text": "ok"}', '{"text": "\\ud800"}'], "d.jsonl:2: field 'text' holds a lone surrogate"),
        ("e.jsonl", ['{"text": "ok", "id": 1}', '{"text": "ok"}'], "e.jsonl:2: id field 'id' is missing"),
        ("f.jsonl", ['{"text": "ok", "id": 1}', '{"text": "ok", "id": "x"}'], "f.jsonl:2: id 'x' is a string"),
        ("g.jsonl", ['["text"]'], "g.jsonl:1: expected a JSON object, got list"),
    ],
)
def test_bad_records_name_file_and_line(name: str, content: list[str], message: str, tmp_path: Path, capsys) -> None:
    path = _jsonl(tmp_path / name, content)
    out = tmp_path / "out"
    code, err = run([str(path), "-o", str(out), *MODEL, "-q"], capsys)
    assert code == 1 and message in one_line_error(err)
    assert not list(out.glob("*.parquet")) and not list(out.glob(".part-*"))  # never a silently shorter output


def test_bad_bytes_and_files(tmp_path: Path, capsys) -> None:
    txt = tmp_path / "bad.txt"
    txt.write_bytes(b"fine\nbad \xff byte\n")
    code, err = run([str(txt), "-o", str(tmp_path / "o1"), *MODEL, "-q"], capsys)
    assert code == 1 and "bad.txt:2: invalid UTF-8" in one_line_error(err)
    csv_path = tmp_path / "bad.csv"
    csv_path.write_bytes(b"id,body\n1,x\n")
    code, err = run([str(csv_path), "-o", str(tmp_path / "o2"), *MODEL, "-q"], capsys)
    assert code == 1 and "bad.csv:1: no column 'text'" in one_line_error(err)
    csv_path.write_bytes(b"id,text\n1,x\n2,\"multi\nline \xfe\"\n")
    code, err = run([str(csv_path), "-o", str(tmp_path / "o3"), *MODEL, "-q"], capsys)
    assert code == 1 and "bad.csv:3: invalid UTF-8" in one_line_error(err)
    code, err = run([str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o4"), *MODEL, "-q"], capsys)
    assert code == 1 and "missing.jsonl: no such file" in one_line_error(err)
    pqt = tmp_path / "bad.parquet"
    pqt.write_bytes(b"not parquet at all")
    code, err = run([str(pqt), "-o", str(tmp_path / "o5"), *MODEL, "-q"], capsys)
    assert code == 1 and "bad.parquet: not a readable Parquet file" in one_line_error(err)
    pq.write_table(pa.table({"text": ["a", None, "c"]}), pqt)
    code, err = run([str(pqt), "-o", str(tmp_path / "o6"), *MODEL, "-q"], capsys)
    assert code == 1 and "bad.parquet: row 2: field 'text' is null" in one_line_error(err)
    code, err = run([str(tmp_path / "x.docx"), "-o", str(tmp_path / "o7"), *MODEL, "-q"], capsys)
    assert code == 1 and "unknown input format '.docx'" in one_line_error(err)


def test_on_error_skip_records_skipped_ids(tmp_path: Path, model, capsys) -> None:
    lines = [json.dumps({"id": f"d{i}", "text": f"text number {i}"}) for i in range(30)]
    lines[4] = '{"id": "d4", "text": 4}'
    lines[17] = '{"id": "d17"}'
    lines[25] = "{broken"
    path = _jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out"
    code, err = run([str(path), "-o", str(out), *MODEL, "--on-error", "skip", "--shard-size", "8"], capsys)
    assert code == 0, err
    assert "3 bad row(s) skipped" in err
    ids, vectors = parquet.read_embeddings(out)
    good = [i for i in range(30) if i not in (4, 17, 25)]
    assert ids == [f"d{i}" for i in good]
    assert_same(vectors, list(model.embed([f"text number {i}" for i in good])))
    skipped = [json.loads(line) for line in (out / "_skipped.jsonl").read_text().splitlines()]
    assert [(s["row"], s["id"], s["line"]) for s in skipped] == [(4, "d4", 5), (17, "d17", 18), (25, 25, 26)]
    assert skipped[0]["file"] == str(path) and "is int" in skipped[0]["error"]
    assert [pq.read_metadata(p).num_rows for p in sorted(out.glob("part-*.parquet"))] == [7, 8, 7, 5]
    assert pq.read_table(out).column("id").to_pylist() == ids  # the folder reads as a dataset, side files skipped


def test_usage_errors(tmp_path: Path, capsys) -> None:
    paths = write_inputs(tmp_path / "in", TEXTS[:3])
    code, err = run([str(paths[".txt"]), "-o", str(tmp_path / "o")], capsys)
    assert code == 2 and "--model" in one_line_error(err)
    code, err = run([str(paths[".txt"]), "-o", str(tmp_path / "o"), *MODEL, "--queries", "--pool-factor", "2"], capsys)
    assert code == 2 and "--pool-factor applies to documents, not to --queries" in one_line_error(err)
    code, err = run([str(paths[".txt"]), "-o", str(tmp_path / "o"), *MODEL, "--batch-size", "0"], capsys)
    assert code == 2 and "argument --batch-size: must be an int >= 1, got 0" in one_line_error(err)


def test_missing_extra_names_it(tmp_path: Path) -> None:
    paths = write_inputs(tmp_path / "in", TEXTS[:3])
    code = ("import sys; sys.modules['pyarrow'] = None; from lightcol.cli import main; "
            f"sys.exit(main(['embed', {str(paths['.txt'])!r}, '-o', {str(tmp_path / 'o')!r}, '--model-path', {str(ONNX_DIR)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert "pip install 'lightcol[parquet]'" in one_line_error(proc.stderr)
    assert not (tmp_path / "o").exists()


def test_missing_ray_extra_names_it(tmp_path: Path) -> None:
    paths = write_inputs(tmp_path / "in", TEXTS[:3])
    code = ("import sys; sys.modules['ray'] = None; from lightcol.cli import main; "
            f"sys.exit(main(['embed', {str(paths['.txt'])!r}, '-o', {str(tmp_path / 'o')!r}, '--model-path', "
            f"{str(ONNX_DIR)!r}, '--ray', 'auto']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert "pip install 'lightcol[ray]'" in one_line_error(proc.stderr)


def test_import_lightcol_imports_neither_pyarrow_nor_ray() -> None:
    code = "import sys, lightcol, lightcol.cli; print([m for m in ('pyarrow', 'ray') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_job_api_returns_a_summary(tmp_path: Path, model) -> None:
    paths = write_inputs(tmp_path / "in", TEXTS)
    opts = embed_job.JobOptions(inputs=[str(paths[".parquet"])], output=str(tmp_path / "out"), model_path=str(ONNX_DIR),
                                quiet=True, shard_size=32)
    s = embed_job.run_job(opts, model=model)
    assert (s.embedded, s.skipped, s.shards_written, s.shards_kept) == (len(TEXTS), 0, 2, 0)
    assert s.tokens == sum(len(v) for v in model.embed(TEXTS))
    assert os.path.exists(tmp_path / "out" / embed_job.MANIFEST)


def test_lancedb_takes_the_output_as_a_multivector_column(tmp_path: Path, capsys) -> None:
    lancedb = pytest.importorskip("lancedb")
    paths = write_inputs(tmp_path / "in", TEXTS)
    out = tmp_path / "out"
    assert run([str(paths[".jsonl"]), "-o", str(out), *MODEL, "-q"], capsys)[0] == 0
    table = lancedb.connect(str(tmp_path / "db")).create_table("docs", pq.read_table(out))
    ids, vectors = parquet.read_embeddings(out)
    hits = table.search(vectors[7]).limit(1).to_list()  # a document's own vectors: itself first
    assert hits[0]["id"] == ids[7]
