#!/usr/bin/env bash
# Build every labpipe image in dependency order (base -> stage images), optionally push them and record the
# pushed digests in components/images.lock.json, the one file the components read (`labpipe compile` then
# puts image@sha256:... references in the pipeline YAML).
#
#   scripts/build-images.sh [options]
#     --engine podman|buildah|docker  container engine (default: the first found, in that order)
#     --registry NAME       image name prefix (default quay.io/labpipe)
#     --tag TAG             image tag (default: the version in pyproject.toml)
#     --ca-bundle FILE      CA bundle for builds behind a TLS-inspecting proxy: mounted as a build secret for
#                           the RUN steps that download (pip, MT-Bench), never stored in a layer
#     --torch-index-url URL wheel index for the GPU stages' torch (default: PyTorch's CUDA 12.8 index)
#     --cpu-training        training image on the CPU base (local verification; no CUDA base is built)
#     --no-gpu-evaluation   skip labpipe-evaluation-gpu (vLLM + CUDA, several GB; only evaluation_engine=vllm
#                           runs it): local verification, CI
#     --local-base          no registry: the Python base is Debian bookworm from debootstrap
#                           (images/Containerfile.python-debian), instead of the pinned UBI image
#     --torch-wheels DIR    a folder holding the torch wheel (podman/buildah: mounted for the build; the CPU
#                           torch then comes from there rather than PyTorch's index)
#     --mt-bench DIR        a local copy of FastChat's mt_bench data (podman/buildah: mounted for the build;
#                           default: downloaded from FastChat's pinned commit); verified against the pinned
#                           sha256 either way
#     --push REGISTRY       push the stage images to REGISTRY and write REGISTRY/name@sha256:... into
#                           components/images.lock.json
#     --push-insecure       the push registry speaks plain HTTP or has a self-signed certificate (a local one)
#     --skip-build          push (and pin) images built earlier with the same --registry and --tag
#     --timings FILE        append one JSON line per image: name, build seconds, size in bytes
#
# Examples: scripts/build-images.sh --push quay.io/myorg
#           scripts/build-images.sh --ca-bundle /etc/pki/tls/certs/ca-bundle.crt --push registry.internal/ml
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE="" REGISTRY="quay.io/labpipe" TAG="" CA_BUNDLE="" PUSH="" TIMINGS=""
PUSH_TLS=true SKIP_BUILD=0
TORCH_INDEX_URL_GPU="https://download.pytorch.org/whl/cu128" CPU_TRAINING=0 LOCAL_BASE=0 WHEELS="" MT_BENCH=""
GPU_EVALUATION=1
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) ENGINE=$2; shift 2 ;;
    --registry) REGISTRY=${2%/}; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --ca-bundle) CA_BUNDLE=$2; shift 2 ;;
    --torch-index-url) TORCH_INDEX_URL_GPU=$2; shift 2 ;;
    --cpu-training) CPU_TRAINING=1; shift ;;
    --no-gpu-evaluation) GPU_EVALUATION=0; shift ;;
    --local-base) LOCAL_BASE=1; shift ;;
    --torch-wheels) WHEELS=$(cd "$2" && pwd); shift 2 ;;
    --mt-bench) MT_BENCH=$(cd "$2" && pwd); shift 2 ;;
    --push) PUSH=${2%/}; shift 2 ;;
    --push-insecure) PUSH_TLS=false; shift ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --timings) TIMINGS=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-images.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -n "$CA_BUNDLE" ] && [ ! -s "$CA_BUNDLE" ]; then
  echo "build-images.sh: --ca-bundle $CA_BUNDLE: no such file (or empty)" >&2; exit 1
fi
if [ -z "$ENGINE" ]; then
  for e in podman buildah docker; do command -v "$e" >/dev/null && { ENGINE=$e; break; }; done
  [ -n "$ENGINE" ] || { echo "build-images.sh: no podman, buildah or docker found" >&2; exit 1; }
fi
if [ "$ENGINE" = docker ] && { [ -n "$WHEELS" ] || [ -n "$MT_BENCH" ]; }; then
  echo "build-images.sh: --torch-wheels/--mt-bench mount folders for the build: podman or buildah only" >&2; exit 1
fi
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
TAG=${TAG:-$VERSION}
REVISION=$(./scripts/source-revision.sh)  # the git commit, or a digest of the sources (an archive)
SOURCE=${LABPIPE_SOURCE_URL:-https://github.com/labpipe/labpipe}

# The secret is always given (empty without --ca-bundle), so the Containerfiles' mount always resolves.
SECRET=${CA_BUNDLE:-$(mktemp)}
[ -n "$CA_BUNDLE" ] || trap 'rm -f "$SECRET"' EXIT

build() {  # build TAG CONTAINERFILE [extra build args...]
  local image=$1 file=$2; shift 2
  [ "$SKIP_BUILD" = 0 ] || return 0
  local args=(-f "$file" -t "$image" --secret "id=ca,src=$SECRET"
              --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "SOURCE=$SOURCE"
              --label "org.opencontainers.image.revision=$REVISION" "$@")
  # (the revision also as --label: set on the image when it is committed, never taken from podman's layer
  # cache, which reuses a LABEL step built from the same content at another commit)
  local start end
  start=$(date +%s.%N)
  echo "==> $ENGINE build $image ($file)"
  case "$ENGINE" in
    podman) podman build --layers --network=host "${args[@]}" . ;;
    buildah) buildah bud --layers --network=host "${args[@]}" . ;;
    docker) DOCKER_BUILDKIT=1 docker build "${args[@]}" . ;;
  esac
  end=$(date +%s.%N)
  if [ -n "$TIMINGS" ]; then
    local size
    size=$("$ENGINE" image inspect --format '{{.Size}}' "$image" 2>/dev/null | head -1 || echo 0)
    printf '{"image": "%s", "build_s": %.1f, "size_bytes": %s}\n' "$image" "$(echo "$end - $start" | bc)" "${size:-0}" >> "$TIMINGS"
  fi
}

mounts=()
[ -n "$WHEELS" ] && mounts+=(-v "$WHEELS:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels --build-arg TORCH_INDEX_URL=)

# 1. the Python base: pinned UBI by default; Debian from debootstrap where no registry is reachable
python_args=()
if [ "$LOCAL_BASE" = 1 ]; then
  [ "$ENGINE" != buildah ] || { echo "build-images.sh: --local-base imports a rootfs: podman or docker" >&2; exit 1; }
  if [ "$SKIP_BUILD" = 0 ] && ! "$ENGINE" image inspect localhost/debian-base:bookworm >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    echo "==> debootstrap bookworm from ${mirror:-http://deb.debian.org/debian}"
    debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >/dev/null
    tar -C "$rootfs" -c . | "$ENGINE" import --change 'CMD ["/bin/bash"]' - localhost/debian-base:bookworm
    rm -rf "$rootfs"
  fi
  build localhost/labpipe-python:3.11 images/Containerfile.python-debian
  python_args=(--pull=never --build-arg PYTHON_IMAGE=localhost/labpipe-python:3.11)
fi

# 2. labpipe base (CPU torch), 3. the CUDA base for training, 4. the stage images on top
build "$REGISTRY/labpipe-base:$TAG" images/Containerfile.base "${python_args[@]}" "${mounts[@]}"
training_base="$REGISTRY/labpipe-base:$TAG"
if [ "$CPU_TRAINING" = 0 ]; then
  training_base="$REGISTRY/labpipe-training-base:$TAG"
  build "$training_base" images/Containerfile.base "${python_args[@]}" --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL_GPU"
fi
stages=$(sed -n 's/^    "\([a-z_-]*\)": "labpipe-[a-z-]*",.*/\1/p' components/images.py)
[ "$GPU_EVALUATION" = 1 ] || stages=$(echo "$stages" | grep -vx evaluation-gpu)
for stage in $stages; do
  base="$REGISTRY/labpipe-base:$TAG"
  [ "$stage" = training ] && base=$training_base
  [ "$stage" = evaluation-gpu ] && base="$REGISTRY/labpipe-evaluation:$TAG"  # built just before it
  extra=()
  if [ "$stage" = evaluation ] && [ -n "$MT_BENCH" ]; then
    extra=(-v "$MT_BENCH:/mt-bench-src:ro" --build-arg MT_BENCH_DIR=/mt-bench-src)
  fi
  build "$REGISTRY/labpipe-$stage:$TAG" "images/Containerfile.$stage" --pull=never --build-arg "BASE=$base" "${extra[@]}"
done

# 5. push and pin: REGISTRY/name@sha256:... in the one file the components read
if [ -n "$PUSH" ]; then
  lock=${LABPIPE_IMAGES_LOCK:-components/images.lock.json}
  entries=()
  for stage in $stages; do
    local_ref="$REGISTRY/labpipe-$stage:$TAG" remote="$PUSH/labpipe-$stage:$TAG"
    digestfile=$(mktemp)
    case "$ENGINE" in
      podman|buildah) "$ENGINE" push --tls-verify="$PUSH_TLS" --digestfile "$digestfile" "$local_ref" "docker://$remote" ;;
      docker) docker tag "$local_ref" "$remote" && docker push "$remote" &&
              docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$remote" |
              sed -n "s|^$PUSH/labpipe-$stage@||p" | head -1 > "$digestfile" ;;
    esac
    digest=$(tr -d '[:space:]' < "$digestfile"); rm -f "$digestfile"
    case "$digest" in sha256:*) ;; *) echo "build-images.sh: no digest for $remote" >&2; exit 1 ;; esac
    entries+=("\"$stage\": \"$PUSH/labpipe-$stage@$digest\"")
  done
  { echo "{"; for i in "${!entries[@]}"; do
      sep=","; [ "$i" -eq $((${#entries[@]} - 1)) ] && sep=""
      echo "  ${entries[$i]}$sep"
    done; echo "}"; } > "$lock.tmp" && mv "$lock.tmp" "$lock"
  echo "==> pinned in $lock; run \`labpipe compile\` to put the digests in pipelines/lab_pipeline.yaml"
fi
