#!/usr/bin/env bash
# Create (or bring up to date) the virtual environment labpipe runs in: CPU torch pinned to 2.13.0
# unless a GPU build is already installed, then labpipe and its dev tools under constraints.txt.
# Idempotent: a second run installs nothing new. Used by `make run`, `make test` and .ci/run.
#
#   VENV=.venv                  where the environment goes
#   TORCH_INDEX_URL=...         index for torch (e.g. PyTorch's CPU wheel index on a laptop);
#                               unset: pip's configured indexes
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
# pip's and the build backend's chatter is shown only when a step fails.
quiet() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then cat "$log" >&2; fi
  rm -f "$log"
  return "$rc"
}
quiet "${pip[@]}" install -q --upgrade "pip>=24" "setuptools>=77" wheel

# torch first and pinned: anything that lets pip choose torch itself pulls several GB of CUDA wheels.
if ! "$VENV/bin/python" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  echo "==> installing torch==2.13.0"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    quiet "${pip[@]}" install -q "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
  else
    quiet "${pip[@]}" install -q "torch==2.13.0"
  fi
fi

echo "==> installing labpipe (editable) with dev tools under constraints.txt"
quiet "${pip[@]}" install -q -c constraints.txt -e ".[dev]"
if [ -f requirements-nodeps.txt ]; then
  # Packages whose declared dependencies are heavier than what labpipe uses (see the file's comments).
  quiet "${pip[@]}" install -q --no-deps -c constraints.txt -r requirements-nodeps.txt
fi
# The MLflow server plugin OpenShift AI runs (Kubernetes workspaces and RBAC authorization), for the tests
# that stand in for the platform's MLflow (tests/support/platform_mlflow.py). It declares Python >= 3.12 but
# runs on 3.11 as it is; its dependencies (mlflow 3.17, kubernetes, graphql-core) are installed above.
if ! "$VENV/bin/python" -c 'import mlflow_kubernetes_plugins' 2>/dev/null; then
  quiet "${pip[@]}" install -q --no-deps --ignore-requires-python -c constraints.txt mlflow-kubernetes-plugins
fi
# xgrammar declares triton (GPU kernels, ~1 GB) which CPU decoding never imports: the one accepted gap.
if ! out=$("${pip[@]}" check 2>&1); then
  unexpected=$(printf '%s\n' "$out" | grep -v 'requires triton, which is not installed' || true)
  if [ -n "$unexpected" ]; then printf '%s\n' "$unexpected" >&2; exit 1; fi
fi
echo "==> environment ready: $VENV"
