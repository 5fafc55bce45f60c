#!/usr/bin/env bash
# Development environment from the repository's own files:
#   .venv          lightcol (editable) + export and test extras, torch 2.13.0 CPU
#   .venv-colbert  the official encoder (colbert-ai, transformers<4.50) for the parity tests
# Usage: bash tools/setup_dev.sh    (then: .venv/bin/python -m pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pipq() { "$1" -m pip install --disable-pip-version-check -q "${@:2}"; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
pipq .venv/bin/python "torch==2.13.0"
pipq .venv/bin/python -e ".[export,dev]"

[ -x .venv-colbert/bin/python ] || "$PY" -m venv .venv-colbert
pipq .venv-colbert/bin/python "torch==2.13.0"
pipq .venv-colbert/bin/python "colbert-ai==0.2.22" "transformers>=4.40,<4.50" numpy
echo "ready: .venv (lightcol) and .venv-colbert (colbert-ai)"
