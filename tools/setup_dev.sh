#!/usr/bin/env bash
# Development environment from the repository's own files:
#   .venv            lightcol (editable) + export, test and every optional extra, torch 2.13.0 CPU
#   .venv-colbert    the official encoder (colbert-ai, transformers<4.50) for the parity tests
#   .venv-fastembed  FastEmbed (its own venv: it pins huggingface-hub<2) for the MUVERA parity tests
#                    and the side-by-side benchmarks
# Usage: bash tools/setup_dev.sh    (then: .venv/bin/python -m pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pipq() { "$1" -m pip install --disable-pip-version-check -q "${@:2}"; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
pipq .venv/bin/python "torch==2.13.0"
pipq .venv/bin/python -e ".[export,dev,all]"
# weaviate-client needs protobuf<7; onnx would otherwise take the newest
pipq .venv/bin/python "protobuf<7"

[ -x .venv-colbert/bin/python ] || "$PY" -m venv .venv-colbert
pipq .venv-colbert/bin/python "torch==2.13.0"
pipq .venv-colbert/bin/python "colbert-ai==0.2.22" "transformers>=4.40,<4.50" numpy faiss-cpu

[ -x .venv-fastembed/bin/python ] || "$PY" -m venv .venv-fastembed
pipq .venv-fastembed/bin/python "fastembed==0.9.1"
echo "ready: .venv (lightcol), .venv-colbert (colbert-ai), .venv-fastembed (fastembed)"
