#!/usr/bin/env bash
# What the README's commands need beyond Python, git and make, on a fresh machine:
#   test        `make test`: Chromium (the run report page is checked in a real browser)
#   containers  `make test-containers`: podman and its helpers, debootstrap (the images' Python base)
# Missing packages are installed when this user can (root with apt-get); otherwise one line names them and
# the command stops before anything runs. .ci/run gets them the same way (through make).
set -euo pipefail
case "${1:-}" in
  test) wanted=(chromium:chromium) ;;
  containers) wanted=(podman:podman buildah:buildah runc:runc fuse-overlayfs:fuse-overlayfs newuidmap:uidmap
                      debootstrap:debootstrap) ;;
  *) echo "usage: $0 test|containers" >&2; exit 2 ;;
esac
missing=()
for pair in "${wanted[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
echo "make $1 needs ${missing[*]}: install them first (Debian/Ubuntu: sudo apt-get install -y ${missing[*]})" >&2
exit 1
