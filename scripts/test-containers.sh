#!/usr/bin/env bash
# `make test-containers`: build every image locally (scripts/build-images.sh) and run tests/containers: each
# image against what its components import, then the whole compiled pipeline with every task in its own
# image, as UID 1000650000 in group 0, without network.
#
# The Python base comes from debootstrap (--local-base) unless LABPIPE_REGISTRY_BASE=1. On this kind of
# machine podman needs runc and lowered ulimits (../shared/CONTAINERS.md): a containers.conf of our own is
# selected with CONTAINERS_CONF unless one is set. Inputs (all optional, found automatically):
#   LABPIPE_BUILD_CA_BUNDLE  CA bundle for pip behind a TLS-inspecting proxy (default: the host's bundle)
#   LABPIPE_TORCH_WHEELS     folder with the CPU torch wheel (default: /opt/wheels when it holds one)
#   LABPIPE_MT_BENCH_DIR     local MT-Bench copy (default: ../shared/data/mt_bench when present)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
CACHE=${LABPIPE_CACHE:-$PWD/.ci-cache}
mkdir -p "$CACHE/containers"

if [ -z "${CONTAINERS_CONF:-}" ]; then
  export CONTAINERS_CONF="$CACHE/containers/containers.conf"
  cat > "$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
fi

args=(--engine podman --cpu-training --no-gpu-evaluation --registry localhost/labpipe --tag ci --timings "$CACHE/containers/timings.jsonl")
# The pinned UBI base needs a registry; here (and in CI) none is reachable, so by default the Python base is
# built from debootstrap. LABPIPE_REGISTRY_BASE=1 builds on the pinned UBI image instead.
if [ "${LABPIPE_REGISTRY_BASE:-0}" != 1 ]; then
  echo "==> the Python base is built from debootstrap (LABPIPE_REGISTRY_BASE=1: the pinned UBI image)"
  args+=(--local-base)
fi
ca=${LABPIPE_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$ca" ] && args+=(--ca-bundle "$ca")
wheels=${LABPIPE_TORCH_WHEELS:-/opt/wheels}
compgen -G "$wheels/torch-2.13.0*.whl" >/dev/null && args+=(--torch-wheels "$wheels")
mt_bench=${LABPIPE_MT_BENCH_DIR:-../shared/data/mt_bench}
[ -d "$mt_bench" ] && args+=(--mt-bench "$mt_bench")

: > "$CACHE/containers/timings.jsonl"
scripts/build-images.sh "${args[@]}"
LABPIPE_TEST_IMAGES=localhost/labpipe:ci ./scripts/run-tests.sh tests/containers "$@"
