#!/usr/bin/env bash
# The revision an image is labelled with (org.opencontainers.image.revision): $LABPIPE_REVISION if set, the git
# commit in a checkout, else (a source archive, no .git) a digest of the sources: "src-sha256-<12 hex>".
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${LABPIPE_REVISION:-}" ]; then
  echo "$LABPIPE_REVISION"
elif rev=$(git rev-parse HEAD 2>/dev/null); then
  echo "$rev"
else
  digest=$(find src components pipelines images scripts pyproject.toml setup.py constraints.txt \
             requirements-nodeps.txt -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 2>/dev/null \
           | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
  echo "src-sha256-$digest"
fi
