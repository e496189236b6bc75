#!/usr/bin/env bash
# Run the test suite in the project environment. pytest's exit code 5 ("no tests collected") is a
# failure here: a suite that runs nothing must not pass.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/python" -m pytest -q -ra --durations=15 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
