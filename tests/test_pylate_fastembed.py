"""FastEmbed 0.9.1 on the same ONNX files: lightcol's vectors equal FastEmbed's wherever FastEmbed
follows the model's rules (docs/models.md lists where it does not).

FastEmbed keeps each model's rules as class constants (marker ids, mask token, minimum query length)
and as code: ``LateOn`` (no query expansion, PyLate's ModernBERT models), ``Colbert`` (expansion
tokens not attended) and ``JinaColbert`` (expansion tokens attended). Each tiny PyLate model is run
through the class that matches its rules, with the constants set to the model's own ids, in
FastEmbed's own environment. FastEmbed does not follow PyLate where:

* texts with leading or trailing whitespace: sentence-transformers strips them, FastEmbed does not
  (a difference for byte-level BPE and SentencePiece tokenizers, none for BERT's);
* the skiplist: FastEmbed drops the first id each punctuation character *encodes to*, PyLate the
  id of the punctuation character *as a vocabulary token*; with a SentencePiece (Metaspace)
  tokenizer ``","`` encodes to ``"▁", ","`` and FastEmbed drops every lone ``"▁"`` but keeps commas;
* tokens PyLate's skiplist holds as the unknown token: a skiplist word that is not a vocabulary
  token maps to the unknown token in PyLate (``convert_tokens_to_ids``), so PyLate drops every
  unknown token from documents; FastEmbed keeps them;
* the pad token written in a text (``"[PAD]"``): FastEmbed's ``Colbert`` drops its id from documents
  wherever it occurs, PyLate keeps it;
* queries longer than the query length: FastEmbed cuts queries at the document length.

Those texts are left out here; every other document and query must match.
"""

from __future__ import annotations

import json
import os
import string
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pylate_models import DOCUMENTS, QUERIES, TINY_PYLATE, min_cosine

FASTEMBED_PYTHON = os.environ.get("LIGHTCOL_FASTEMBED_PYTHON")
pytestmark = pytest.mark.skipif(not FASTEMBED_PYTHON, reason="no FastEmbed environment: run tools/setup_dev.sh")

_SCRIPT = r"""
import json, sys
import numpy as np
from fastembed.late_interaction.colbert import Colbert
from fastembed.late_interaction.jina_colbert import JinaColbert
from fastembed.common.model_description import DenseModelDescription, ModelSource
from fastembed.late_interaction.lateon import LateOn, MLateOn

CLASSES = {"LateOn": LateOn, "MLateOn": MLateOn, "Colbert": Colbert, "JinaColbert": JinaColbert}
job = json.load(open(sys.argv[1]))
for item in job:
    cls = CLASSES[item["class"]]
    # the model's own constants and description, as FastEmbed keeps them per model class
    cls.QUERY_MARKER_TOKEN_ID, cls.DOCUMENT_MARKER_TOKEN_ID = item["query_marker"], item["document_marker"]
    cls.MASK_TOKEN = item["mask_token"]
    cls.RESERVED_MARKER_TOKENS = 0  # PyLate's tokenizer_config.json model_max_length leaves the marker out
    if item["class"] != "LateOn":
        cls.MIN_QUERY_LENGTH = item["query_length"] - 1
    desc = DenseModelDescription(model="tiny/pylate", dim=item["dim"], description="", license="", size_in_GB=0.0,
                                 sources=ModelSource(hf="tiny/pylate"), model_file="model.onnx")
    cls._list_supported_models = classmethod(lambda c, d=desc: [d])
    model = cls("tiny/pylate", specific_model_path=item["folder"], threads=1, cuda=False)
    out = {}
    for i, v in enumerate(model.embed(item["documents"], batch_size=4)):
        out[f"doc_{i}"] = np.asarray(v, dtype=np.float32)
    for i, v in enumerate(model.query_embed(item["queries"])):
        out[f"query_{i}"] = np.asarray(v, dtype=np.float32)
    np.savez(item["out"], **out)
    print(item["folder"], len(out), flush=True)
"""


def _fastembed_class(spec: dict) -> str:
    if not spec.get("do_query_expansion", True):
        return "MLateOn" if spec.get("skiplist_words") == [] else "LateOn"  # MLateOn: no skiplist
    return "JinaColbert" if spec.get("attend_to_expansion_tokens") else "Colbert"


def _followed_texts(tiny, spec: dict) -> tuple[list[str], list[str]]:
    """The documents and queries on which FastEmbed follows the model's rules (see the module docstring)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny.onnx / "tokenizer.json"))
    rules = tiny.entry["rules"]
    docs = [t for t in DOCUMENTS if t == t.strip()]
    if _fastembed_class(spec) not in ("LateOn", "MLateOn"):
        docs = [t for t in docs if rules["pad_token"]["token"] not in t and "[PAD]" not in t]
    # ids one skiplist drops and the other keeps (none for BPE and WordPiece vocabularies that hold
    # every punctuation character; SentencePiece's lone "▁" and the unknown token otherwise)
    unk = next((tok.token_to_id(t) for t in ("[UNK]", "<unk>") if tok.token_to_id(t) is not None), None)
    fastembed_skip = {tok.encode(c, add_special_tokens=False).ids[0] for c in string.punctuation}
    pylate_skip = {tok.token_to_id(w) if tok.token_to_id(w) is not None else unk for w in rules["skiplist_words"]}
    if _fastembed_class(spec) == "MLateOn":
        fastembed_skip = set()
    differ = fastembed_skip ^ pylate_skip
    docs = [t for t in docs if not differ & set(tok.encode(t).ids)]
    queries = [t for t in QUERIES if t == t.strip() and len(tok.encode(t).ids) + 1 <= spec.get("query_length", 32)]
    return docs, queries


@pytest.fixture(scope="module")
def fastembed_vectors(tiny_pylate, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fastembed")
    job, texts = [], {}
    for name, spec in TINY_PYLATE.items():
        tiny = tiny_pylate[name]
        docs, queries = texts[name] = _followed_texts(tiny, spec)
        rules = tiny.entry["rules"]
        job.append({
            "class": _fastembed_class(spec), "folder": str(tiny.onnx), "out": str(tmp / f"{name}.npz"),
            "query_marker": rules["query_marker"]["id"], "document_marker": rules["document_marker"]["id"],
            "mask_token": rules["mask_token"]["token"], "query_length": rules["query_length"],
            "dim": tiny.entry["dim"], "documents": docs, "queries": queries,
        })
    (tmp / "job.json").write_text(json.dumps(job), encoding="utf-8")
    (tmp / "run.py").write_text(_SCRIPT, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FASTEMBED_CACHE_PATH": str(tmp / "cache")}
    done = subprocess.run([FASTEMBED_PYTHON, str(tmp / "run.py"), str(tmp / "job.json")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return {name: (texts[name], dict(np.load(tmp / f"{name}.npz"))) for name in TINY_PYLATE}


@pytest.mark.parametrize("name", list(TINY_PYLATE))
def test_lightcol_equals_fastembed_where_fastembed_follows_the_rules(tiny_pylate, fastembed_vectors, name: str) -> None:
    from lightcol import LateInteractionTextEmbedding

    (docs, queries), fe = fastembed_vectors[name]
    # the comparison covers most texts, but for XLM-R with PyLate's default skiplist, where the two
    # skiplists differ on nearly every document (lone "▁" pieces, unknown tokens)
    assert len(queries) >= 6 and (len(docs) >= 15 or name == "xlmr")
    model = LateInteractionTextEmbedding(specific_model_path=tiny_pylate[name].onnx, cuda=False)
    worst = 1.0
    for kind, got in (("doc", model.embed(docs, batch_size=4)), ("query", model.query_embed(queries))):
        for i, v in enumerate(got):
            ref = fe[f"{kind}_{i}"]
            assert v.shape == ref.shape, f"{name} {kind} {i}: lightcol {v.shape[0]} tokens, FastEmbed {ref.shape[0]}"
            worst = min(worst, min_cosine(v, ref))
    assert worst >= 0.9999, f"{name}: smallest per-token cosine vs FastEmbed {worst:.6f}"


def test_fastembed_differs_from_pylate_on_untrimmed_text(tiny_pylate, tmp_path: Path) -> None:
    """The documented difference is real: on a byte-level BPE model FastEmbed's LateOn encodes a text
    with a leading space differently from the same text without it; PyLate (and lightcol) strip it."""
    tiny = tiny_pylate["modernbert-noexp"]
    rules = tiny.entry["rules"]
    job = [{"class": "LateOn", "folder": str(tiny.onnx), "out": str(tmp_path / "fe.npz"),
            "query_marker": rules["query_marker"]["id"], "document_marker": rules["document_marker"]["id"],
            "mask_token": rules["mask_token"]["token"], "query_length": rules["query_length"],
            "dim": tiny.entry["dim"], "documents": [" leading space", "leading space"], "queries": ["x"]}]
    (tmp_path / "job.json").write_text(json.dumps(job))
    (tmp_path / "run.py").write_text(_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FASTEMBED_CACHE_PATH": str(tmp_path / "cache")}
    subprocess.run([FASTEMBED_PYTHON, str(tmp_path / "run.py"), str(tmp_path / "job.json")], check=True,
                   capture_output=True, timeout=600, env=env)
    fe = np.load(tmp_path / "fe.npz")
    assert fe["doc_0"].shape != fe["doc_1"].shape or not np.allclose(fe["doc_0"], fe["doc_1"], atol=1e-3)
    ref = tiny.ref("doc")
    assert DOCUMENTS.count("  leading and trailing spaces  ") == 1  # PyLate strips: same as the trimmed text
    from lightcol import LateInteractionTextEmbedding

    model = LateInteractionTextEmbedding(specific_model_path=tiny.onnx, cuda=False)
    i = DOCUMENTS.index("  leading and trailing spaces  ")
    np.testing.assert_allclose(ref[i], next(model.embed(["leading and trailing spaces"])), atol=1e-5)
