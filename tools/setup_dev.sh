#!/usr/bin/env bash
# Development environment from the repository's own files:
#   .venv            lightcol (editable) + export, test and every optional extra, torch 2.13.0 CPU
#   .venv-colbert    the official encoder (colbert-ai, transformers<4.50) for the parity tests
#   .venv-fastembed  FastEmbed (its own venv: it pins huggingface-hub<2) for the MUVERA parity tests
#                    and the side-by-side benchmarks
#   .venv-pylate     PyLate 1.6.0 (pylate.models.ColBERT, the reference for PyLate checkpoints) and
#                    LightOn's exporter (colbert-export), on the same torch 2.13.0 CPU wheel
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

# PyLate 1.6.0 pins fast-plaid<=1.4.6.2110 (its PLAID index, built for torch 2.11 with CUDA wheels:
# gigabytes) and fastkmeans/ninja (its k-means); pylate.models.ColBERT -- encode, tokenize, save --
# imports none of them. So PyLate goes in without dependencies, next to every requirement its
# models need, pinned as PyLate pins them (sentence-transformers 5.3.0, transformers <= 5.3.0).
[ -x .venv-pylate/bin/python ] || "$PY" -m venv .venv-pylate
pipq .venv-pylate/bin/python "torch==2.13.0"
pipq .venv-pylate/bin/python "sentence-transformers==5.3.0" "transformers>=4.41,<=5.3.0" "datasets>=2.20" \
    "accelerate>=0.31" "pandas>=2.2.1" "ujson==5.12.0" scipy safetensors onnx onnxscript onnxruntime
pipq .venv-pylate/bin/python --no-deps "pylate==1.6.0" "colbert-export==0.1.0"
.venv-pylate/bin/python -c "from pylate import models; import colbert_export"
echo "ready: .venv (lightcol), .venv-colbert (colbert-ai), .venv-fastembed (fastembed), .venv-pylate (pylate)"
