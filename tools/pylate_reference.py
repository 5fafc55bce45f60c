#!/usr/bin/env python
"""Tiny PyLate ColBERT checkpoints and PyLate's own vectors for them, for parity tests and benchmarks.

Runs in the PyLate environment (``.venv-pylate``, built by ``tools/setup_dev.sh``), not lightcol's:

    python tools/pylate_reference.py JOB.json

``JOB.json`` lists what to do, in order (every key optional)::

    {"make":   [{"arch": "modernbert", "out": "DIR", "do_query_expansion": false, ...}, ...],
     "encode": [{"checkpoint": "DIR", "texts": "TEXTS.json", "out": "OUT.npz", "batch_size": 7}, ...],
     "lighton_export": [{"checkpoint": "DIR", "out": "DIR"}, ...]}

* ``make`` builds a randomly initialised backbone with ``transformers`` (``modernbert``: byte-level
  BPE, case-sensitive, global and sliding-window local attention layers; ``bert``: lower-casing
  WordPiece; ``xlmr``: SentencePiece-style Unigram with ``<s>``/``</s>``/``<pad>=1``), its tokenizer
  trained with ``tokenizers`` on a few hundred built-in sentences, wraps it as a PyLate ``ColBERT``
  (which adds the ``[Q] ``/``[D] `` prefix tokens and a Dense projection) and saves the PyLate
  checkpoint folder. Options: ``hidden`` (32), ``layers`` (3), ``heads`` (2), ``intermediate``
  (64), ``dim`` (16), ``vocab_size`` (700), ``local_attention`` (16, ModernBERT),
  ``global_every`` (3, ModernBERT), ``query_length`` (32), ``document_length`` (160),
  ``do_query_expansion`` (true), ``attend_to_expansion_tokens`` (false), ``query_prefix`` /
  ``document_prefix`` (PyLate's defaults), ``skiplist_words`` (PyLate's default), ``seed`` (0),
  ``tokenizer_texts`` (ModernBERT: a text file, one text per line, to train the BPE on instead).
  The same seed gives the same weights and tokenizer.
* ``encode`` loads a checkpoint with ``pylate.models.ColBERT`` and writes its ``encode`` output
  (``doc_{i}`` for ``{"documents": [...]}``, ``query_{i}`` for ``{"queries": [...]}``, float32,
  kept tokens only, L2-normalised as PyLate returns them) plus the ids PyLate fed the encoder
  (``doc_ids_{i}``/``query_ids_{i}``, the kept positions only).
* ``lighton_export`` runs LightOn's exporter (PyPI ``colbert-export``) on a checkpoint: the
  ``model.onnx`` + ``tokenizer.json`` + ``config_sentence_transformers.json`` folder it writes.

Printed: one JSON line per finished step. Threads are pinned to 1 so the vectors do not depend on
the machine.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

_WORDS = (
    "late interaction retrieval token vector passage query document index search rank score model "
    "ColBERT BERT encoder Matrix similarity maximum Information Science library catalog abstract "
    "user System evaluation relevance precision recall citation journal author subject analysis "
    "The A In Of Library Congress Paris London Research Data Journal Computer Online IEEE NASA "
    "indexing retrieving ranked words sentences attention window sliding global local layers"
).split()


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Deterministic training sentences: mixed case, punctuation, digits, a little non-ASCII."""
    rng = random.Random(seed)
    extra = ["café", "naïve", "résumé", "日本語", "テキスト", "中文", "€", "🙂", "(", ")", "-", "'s", "2024", "3.5"]
    out = []
    for _ in range(n):
        words = [rng.choice(_WORDS) if rng.random() < 0.9 else rng.choice(extra) for _ in range(rng.randint(3, 30))]
        words = [w + rng.choice(",.;:!?") if rng.random() < 0.15 else w for w in words]
        out.append(" ".join(words))
    return out


def bpe_tokenizer(vocab_size: int, texts: list[str] | None = None) -> Any:
    """Byte-level BPE, case-sensitive (ModernBERT's kind): ``[CLS] text [SEP]``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts or corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return tok, dict(unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]")


def wordpiece_tokenizer(vocab_size: int) -> Any:
    """Lower-casing WordPiece (BERT's kind): ``[CLS] text [SEP]``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return tok, dict(unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]")


def unigram_tokenizer(vocab_size: int) -> Any:
    """SentencePiece-style Unigram (XLM-RoBERTa's kind): ``<s> text </s>``, ``<pad>`` = 1, case-sensitive."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    return tok, dict(
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", cls_token="<s>", sep_token="</s>", pad_token="<pad>",
        mask_token="<mask>",
    )


def backbone(arch: str, folder: Path, spec: dict[str, Any]) -> None:
    """A randomly initialised ``arch`` encoder and its tokenizer, saved to ``folder`` (transformers layout)."""
    import torch
    from transformers import PreTrainedTokenizerFast

    vocab = int(spec.get("vocab_size", 700))
    hidden, layers = int(spec.get("hidden", 32)), int(spec.get("layers", 3))
    heads, inter = int(spec.get("heads", 2)), int(spec.get("intermediate", 64))
    if arch == "modernbert":
        from transformers import ModernBertConfig, ModernBertModel

        train = None
        if spec.get("tokenizer_texts"):  # a text file to train the BPE on (one text per line)
            train = Path(spec["tokenizer_texts"]).read_text(encoding="utf-8").splitlines()
        tok, special = bpe_tokenizer(vocab, train)
        ids = {k: tok.token_to_id(v) for k, v in special.items()}
        config = ModernBertConfig(
            vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
            intermediate_size=inter, max_position_embeddings=int(spec.get("max_position", 8192)),
            global_attn_every_n_layers=int(spec.get("global_every", 3)),
            local_attention=int(spec.get("local_attention", 16)),
            pad_token_id=ids["pad_token"], cls_token_id=ids["cls_token"], sep_token_id=ids["sep_token"],
            bos_token_id=ids["cls_token"], eos_token_id=ids["sep_token"],
        )
        model_cls = ModernBertModel
    elif arch == "bert":
        from transformers import BertConfig, BertModel

        tok, special = wordpiece_tokenizer(vocab)
        config = BertConfig(
            vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
            intermediate_size=inter, max_position_embeddings=int(spec.get("max_position", 512)),
            pad_token_id=tok.token_to_id("[PAD]"),
        )
        model_cls = BertModel
    elif arch == "xlmr":
        from transformers import XLMRobertaConfig, XLMRobertaModel

        tok, special = unigram_tokenizer(vocab)
        pad = tok.token_to_id("<pad>")
        config = XLMRobertaConfig(
            vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
            intermediate_size=inter, max_position_embeddings=int(spec.get("max_position", 514)),
            pad_token_id=pad, bos_token_id=tok.token_to_id("<s>"), eos_token_id=tok.token_to_id("</s>"),
            type_vocab_size=1,
        )
        model_cls = XLMRobertaModel
    else:
        raise SystemExit(f"unknown arch {arch!r} (modernbert, bert, xlmr)")
    torch.manual_seed(int(spec.get("seed", 0)))
    model = model_cls(config)
    if arch == "xlmr" and pad is not None:
        with torch.no_grad():  # as pretrained XLM-R: the padding row of the position table is unused
            model.embeddings.position_embeddings.weight[pad].zero_()
    model.save_pretrained(str(folder))
    names = ["input_ids", "token_type_ids", "attention_mask"] if arch == "bert" else ["input_ids", "attention_mask"]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=int(spec.get("max_position", 8192)), model_input_names=names, **special
    )
    fast.save_pretrained(str(folder))


def make(spec: dict[str, Any]) -> dict[str, Any]:
    import tempfile

    import torch
    from pylate import models

    out = Path(spec["out"])
    with tempfile.TemporaryDirectory() as tmp:
        backbone(spec["arch"], Path(tmp), spec)
        torch.manual_seed(int(spec.get("seed", 0)) + 1)
        kwargs = {k: spec[k] for k in ("query_prefix", "document_prefix", "skiplist_words") if k in spec}
        model = models.ColBERT(
            model_name_or_path=tmp, device="cpu", embedding_size=int(spec.get("dim", 16)),
            query_length=int(spec.get("query_length", 32)), document_length=int(spec.get("document_length", 160)),
            do_query_expansion=bool(spec.get("do_query_expansion", True)),
            attend_to_expansion_tokens=bool(spec.get("attend_to_expansion_tokens", False)), **kwargs,
        )
        model.save(str(out))
    return {"made": str(out), "arch": spec["arch"], "vocab": len(model.tokenizer)}


def encode(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from pylate import models

    model = models.ColBERT(model_name_or_path=job["checkpoint"], device="cpu")
    texts = json.loads(Path(job["texts"]).read_text(encoding="utf-8"))
    bs = int(job.get("batch_size", 7))
    out: dict[str, Any] = {}
    for kind, key, is_query in (("doc", "documents", False), ("query", "queries", True)):
        items = texts.get(key, [])
        if not items:
            continue
        vecs = model.encode(items, is_query=is_query, batch_size=bs, show_progress_bar=False)
        full = model.encode(items, is_query=is_query, batch_size=bs, show_progress_bar=False, output_value=None)
        for i, v in enumerate(vecs):
            out[f"{kind}_{i}"] = np.asarray(v, dtype=np.float32)
            ids, mask = np.asarray(full["input_ids"][i]), np.asarray(full["masks"][i]).astype(bool)
            out[f"{kind}_ids_{i}"] = ids[mask].astype(np.int64)
    np.savez(job["out"], **out)
    return {"encoded": job["checkpoint"], "out": job["out"], "arrays": len(out)}


def lighton_export(job: dict[str, Any]) -> dict[str, Any]:
    import io
    from contextlib import redirect_stdout

    from colbert_export import export_model

    with redirect_stdout(io.StringIO()):
        export_model(job["checkpoint"], Path(job["out"]), verbose=False, force=True)
    return {"lighton_export": job["out"]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    import logging
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    for step, fn in (("make", make), ("encode", encode), ("lighton_export", lighton_export)):
        for item in job.get(step, []):
            print(json.dumps(fn(item)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
