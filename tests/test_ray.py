"""lightcol.ray on a local Ray cluster (2 CPUs): same vectors as in-process, the CLI's schema, the job on Ray."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import EDGE_TEXTS, ONNX_DIR, random_texts  # noqa: E402

from lightcol import embed_job, parquet  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TEXTS = random_texts(60, seed=11) + EDGE_TEXTS


@pytest.fixture(scope="module")
def cluster():
    # workers must import this checkout's lightcol (not another installed copy)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + old if old else "")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def model():
    from lightcol import LateInteractionTextEmbedding

    return LateInteractionTextEmbedding(specific_model_path=ONNX_DIR, cuda=False)


def _collect(ds) -> tuple[list, list[np.ndarray], dict]:
    table = pa.concat_tables(list(ds.iter_batches(batch_format="pyarrow", batch_size=None)))
    table = table.sort_by("id")
    return table.column("id").to_pylist(), parquet.split_vectors(table.column("vectors")), table


def test_embed_dataset_equals_in_process(cluster, model, tmp_path: Path) -> None:
    from lightcol.ray import embed_dataset

    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(TEXTS)], override_num_blocks=4)
    out = embed_dataset(ds, specific_model_path=ONNX_DIR, actors=2, rows_per_batch=16, batch_size=8,
                        dtype="float16", muvera="recommended")
    ids, vectors, table = _collect(out)
    assert ids == list(range(len(TEXTS)))
    want = list(model.embed(TEXTS, batch_size=8, dtype="float16"))
    for g, w in zip(vectors, want, strict=True):
        assert g.dtype == np.float16 and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    assert table.column("n_tokens").to_pylist() == [len(w) for w in want]
    assert table.schema.field("vectors").type == parquet.vectors_type(16, "float16")
    from lightcol import Muvera
    from lightcol.muvera import RECOMMENDED

    fde = table.column("muvera").combine_chunks().values.to_numpy().reshape(len(TEXTS), -1)
    np.testing.assert_array_equal(fde, Muvera(16, **RECOMMENDED).process_documents(want))

    # write_parquet gives the CLI's column types
    out.select_columns(["id", "vectors", "n_tokens"]).write_parquet(str(tmp_path / "ray"))
    schema = pq.read_schema(next((tmp_path / "ray").glob("*.parquet")))
    cli = parquet.schema(16, "float16")
    for name in ("id", "vectors", "n_tokens"):
        assert schema.field(name).type == cli.field(name).type


def test_embed_texts_in_order_and_the_cli_job_on_ray(cluster, model, tmp_path: Path) -> None:
    from lightcol.ray import embed_texts

    got = list(embed_texts(iter(TEXTS), address="auto", actors=2, specific_model_path=ONNX_DIR, rows_per_task=10,
                           queries=True))
    want = list(model.query_embed(TEXTS))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)

    src = tmp_path / "in.txt"
    lines = [t for t in TEXTS if "\n" not in t and "\r" not in t]
    src.write_text("".join(t + "\n" for t in lines), encoding="utf-8")
    opts = embed_job.JobOptions(inputs=[str(src)], output=str(tmp_path / "out"), model_path=str(ONNX_DIR),
                                ray_address="auto", ray_actors=2, shard_size=25, quiet=True, batch_size=8)
    summary = embed_job.run_job(opts, model=model)
    assert summary.embedded == len(lines) and summary.shards_written == 3
    ids, vectors = parquet.read_embeddings(tmp_path / "out")
    assert ids == list(range(len(lines)))
    for g, w in zip(vectors, model.embed(lines, batch_size=8), strict=True):
        np.testing.assert_array_equal(g, w)


def test_a_bad_text_fails_with_the_texts_before_it_embedded(cluster, model) -> None:
    from lightcol.ray import embed_texts

    def source():
        yield from TEXTS[:25]
        raise ValueError("bad row 25")

    got = []
    with pytest.raises(ValueError, match="bad row 25"):
        for v in embed_texts(source(), actors=2, specific_model_path=ONNX_DIR, rows_per_task=10):
            got.append(v)
    assert len(got) == 25
    np.testing.assert_array_equal(got[-1], next(model.embed([TEXTS[24]])))
