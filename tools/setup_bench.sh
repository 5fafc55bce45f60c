#!/usr/bin/env bash
# Opt-in benchmark environments (not part of CI's tools/setup_dev.sh):
#   .venv-fastplaid  fast-plaid 1.7.0.2110 with the torch it pins (torch==2.11.0: from PyPI a multi-GB
#                    CUDA build; it runs on CPU here), for the index benchmark's fast-plaid rows
#                    (benchmarks/bench_fastplaid.py, called by benchmarks/bench_index.py --fastplaid)
# Usage: bash tools/setup_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pipq() { "$1" -m pip install --disable-pip-version-check -q "${@:2}"; }

[ -x .venv-fastplaid/bin/python ] || "$PY" -m venv .venv-fastplaid
pipq .venv-fastplaid/bin/python "torch==2.11.0" "fast-plaid==1.7.0.2110"
echo "ready: .venv-fastplaid (fast-plaid $(.venv-fastplaid/bin/python -c 'import importlib.metadata as m; print(m.version("fast-plaid"))'))"
