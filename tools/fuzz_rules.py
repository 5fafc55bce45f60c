"""Fuzz the tokenization-rule layer (``lightcol.rules``) with random bytes for a bounded time.

    python tools/fuzz_rules.py --seconds 60                 # atheris (coverage-guided) if installed
    python tools/fuzz_rules.py --seconds 60 --engine random # plain random bytes, no extra dependency
    python tools/fuzz_rules.py --model-path DIR             # another model folder's tokenizer and rules

Each input is split into up to 8 texts, decoded with one of several error handlers (``surrogatepass``
and ``surrogateescape`` make lone surrogates, ``replace`` makes U+FFFD...), optionally repeated to a
long text, then run through ``tokenize`` / ``build_documents`` / ``build_queries`` of both kinds. It
checks the invariants (specials and marker in place, lengths within the limits, masks and ``keep``
consistent, long-text cutting gives the same ids as a full tokenization) and that texts holding a
lone surrogate raise ``InvalidTextError`` and nothing else. Any other exception is a finding: the
input is printed (and saved by atheris as ``crash-*`` under ``--artifacts``). Exit status 0 = no finding.
"""

from __future__ import annotations

import argparse
import codecs
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TINY = ROOT / "tests" / "fixtures" / "tiny-colbert-onnx"

def _pass_or_replace(e: UnicodeDecodeError) -> tuple[str, int]:
    """``surrogatepass`` where the bytes encode a surrogate (ED A0..BF 80..BF), else ``replace``: never fails."""
    b = e.object[e.start : e.start + 3]
    if len(b) == 3 and b[0] == 0xED and 0xA0 <= b[1] <= 0xBF and 0x80 <= b[2] <= 0xBF:
        return chr(0xD000 | (b[1] & 0x3F) << 6 | (b[2] & 0x3F)), e.start + 3
    return "\ufffd", e.start + 1


codecs.register_error("lightcol-fuzz", _pass_or_replace)

DECODERS = (
    lambda b: b.decode("utf-8", "lightcol-fuzz"),  # surrogatepass, else replace
    lambda b: b.decode("utf-8", "replace"),
    lambda b: b.decode("utf-8", "surrogateescape"),
    lambda b: b.decode("utf-8", "ignore"),
    lambda b: b.decode("utf-16-le", "surrogatepass") if len(b) % 2 == 0 else b[:-1].decode("utf-16-le", "surrogatepass"),
    lambda b: b.decode("latin-1"),
)


class Checker:
    def __init__(self, model_path: Path, rules_module) -> None:
        from lightcol.registry import read_folder_config

        self.r = rules_module
        spec = read_folder_config(model_path)
        if spec is None:
            raise SystemExit(f"{model_path} has no lightcol_config.json")
        self.rules = spec.rules
        base = rules_module.load_tokenizer(model_path / "tokenizer.json", spec.rules)
        self.doc = rules_module.truncating(base, spec.rules.document_length)
        self.query = rules_module.truncating(base, spec.rules.query_length)
        self.skip = rules_module.skiplist_ids(base, spec.rules)
        self.cls = base.encode("", add_special_tokens=True).ids[0]
        self.sep = base.encode("", add_special_tokens=True).ids[-1]
        self.runs = 0
        self.texts = 0
        self.rejected = 0
        self.long = 0
        self.started = time.monotonic()
        self.next_report = self.started + 15

    def texts_from(self, data: bytes) -> list[str]:
        if not data:
            return [""]
        head, body = data[0], data[1:]
        decode = DECODERS[head % len(DECODERS)]
        texts = [decode(part) for part in body.split(b"\xfe")[:8]]
        if head & 0x80 and texts[0]:  # long text: exercises the cutting of texts before tokenization
            texts[0] = (texts[0] * (6000 // len(texts[0]) + 1))[: 5000 + 37 * (head & 0x7F)]
        return texts

    def check(self, data: bytes) -> None:
        from lightcol.errors import InvalidTextError

        if time.monotonic() > self.next_report:
            self.next_report += 15
            print(self.report(time.monotonic() - self.started), flush=True)
        texts = self.texts_from(data)
        self.runs += 1
        self.texts += len(texts)
        bad = []
        for i, t in enumerate(texts):
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                bad.append(i)
        if bad:
            self.rejected += 1
            for tok in (self.doc, self.query):
                try:
                    self.r.tokenize(tok, texts)
                except InvalidTextError as e:
                    assert e.position == bad[0], (e.position, bad)
                else:
                    raise AssertionError(f"text {bad[0]} holds a lone surrogate but tokenize accepted it")
            texts = [t for i, t in enumerate(texts) if i not in bad]
            if not texts:
                return
        rules = self.rules
        for tok, length in ((self.doc, rules.document_length), (self.query, rules.query_length)):
            ids = self.r.tokenize(tok, texts)
            assert len(ids) == len(texts)
            for t, seq in zip(texts, ids, strict=True):
                assert 2 <= len(seq) <= length - 1, (len(seq), length)
                assert seq[0] == self.cls and seq[-1] == self.sep, seq
                if len(t) >= 4096:
                    self.long += 1
                    assert seq == tok.encode(t).ids, "cutting a long text changed its ids"
            if tok is self.doc:
                self._check_documents(ids)
            else:
                self._check_queries(ids)

    def _check_documents(self, ids: list[list[int]]) -> None:
        rules = self.rules
        b = self.r.build_documents(ids, rules, self.skip)
        width = max(len(s) for s in ids) + 1
        assert b.input_ids.shape == b.attention_mask.shape == b.keep.shape == (len(ids), width)
        assert width <= rules.document_length
        assert (b.input_ids[:, 1] == rules.document_marker.id).all()
        for row, seq in enumerate(ids):
            m = len(seq) + 1
            assert b.attention_mask[row].sum() == m and b.attention_mask[row, :m].all()
            assert b.input_ids[row, 0] == seq[0] and list(b.input_ids[row, 2:m]) == seq[1:]
            assert (b.input_ids[row, m:] == rules.pad_token.id).all()
            assert b.keep[row, 0] and b.keep[row, 1] and b.keep[row, m - 1]  # [CLS], marker, [SEP]
            assert not b.keep[row, m:].any() and b.keep[row].sum() <= m
            assert not np.isin(b.input_ids[row][b.keep[row]], self.skip).any()

    def _check_queries(self, ids: list[list[int]]) -> None:
        rules = self.rules
        b = self.r.build_queries(ids, rules)
        assert b.input_ids.shape == b.attention_mask.shape == (len(ids), rules.query_length)
        assert (b.input_ids[:, 1] == rules.query_marker.id).all()
        assert not (b.input_ids == rules.pad_token.id).any()
        for row, seq in enumerate(ids):
            m = len(seq) + 1
            assert b.input_ids[row, 0] == seq[0] and list(b.input_ids[row, 2:m]) == seq[1:]
            assert (b.input_ids[row, m:] == rules.mask_token.id).all()
            expected = rules.query_length if rules.attend_to_expansion_tokens else m
            assert b.attention_mask[row].sum() >= expected and b.attention_mask[row, :m].all()

    def report(self, elapsed: float) -> str:
        return (
            f"{self.runs:,} inputs, {self.texts:,} texts ({self.rejected:,} inputs with lone surrogates rejected, "
            f"{self.long:,} long texts cut) in {elapsed:.0f} s: no finding so far"
        )


def _random_bytes(rng: random.Random) -> bytes:
    kind = rng.random()
    n = rng.choice((0, 1, 2, 5, 20, 100, 600, 3000))
    if kind < 0.3:  # arbitrary bytes
        return rng.randbytes(n)
    pool = [
        b" ", b"\t", b"\n", b".", b",", b"!", b"[MASK]", b"[SEP]", b"[unused0]", b"a", b"Z", b"word", b"\xfe",
        "é".encode(), "e\u0301".encode(), "日本".encode(), "🙂".encode(), "\u200b".encode(), "\u202e".encode(),
        "\ufffd".encode(), b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\x80", b"\xff", b"\xc3", b"\x00", b"\x1f",
    ]
    return bytes([rng.randrange(256)]) + b"".join(rng.choice(pool) for _ in range(n))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    ap.add_argument("--model-path", type=Path, default=TINY)
    ap.add_argument("--seed", type=int, default=0, help="random engine seed")
    ap.add_argument("--artifacts", default=os.environ.get("TMPDIR", "/tmp") + "/lightcol-fuzz-", help="atheris crash prefix")
    args, rest = ap.parse_known_args(argv)

    engine = args.engine
    atheris = None
    if engine in ("auto", "atheris"):
        try:
            import atheris  # type: ignore[import-not-found,no-redef]
        except ImportError:
            if engine == "atheris":
                raise SystemExit("atheris is not installed: pip install atheris, or use --engine random")
        engine = "atheris" if atheris else "random"

    if engine == "atheris":
        with atheris.instrument_imports(include=["lightcol"]):
            from lightcol import rules
    else:
        from lightcol import rules
    checker = Checker(args.model_path, rules)
    start = time.monotonic()
    print(f"fuzzing lightcol.rules with {engine} for {args.seconds} s ({args.model_path.name})", flush=True)

    if engine == "atheris":
        atheris.Setup(
            [sys.argv[0], f"-max_total_time={args.seconds}", f"-artifact_prefix={args.artifacts}", "-max_len=4096",
             "-print_final_stats=1", *rest],
            checker.check,
        )
        atheris.Fuzz()  # exits the process: 0 when time is up, non-zero on a finding
        return 0

    rng = random.Random(args.seed)
    deadline = start + args.seconds
    while time.monotonic() < deadline:
        data = _random_bytes(rng)
        try:
            checker.check(data)
        except Exception:
            print(f"FINDING on input {data!r}", flush=True)
            raise
    print(checker.report(time.monotonic() - start) + "; done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
