#!/usr/bin/env bash
# Builds dockyard's base image for the Docker executor without a registry: a minimal Debian
# bookworm root file system with Python 3.11, venv, pip and CA certificates (debootstrap),
# imported as a Docker image. About a minute; needs root, debootstrap and a running dockerd.
#
#   scripts/build-base-image.sh [IMAGE]      (default: dockyard-base:py311)
#
# dockyard builds one image per requirements set on top of it (FROM this image, the job's
# packages installed with uv); code is never baked in.
set -euo pipefail
IMAGE="${1:-${DOCKYARD_DOCKER_BASE_IMAGE:-dockyard-base:py311}}"
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
echo "building $IMAGE (debootstrap bookworm, about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$ROOT/rootfs" >"$ROOT/debootstrap.log" 2>&1 || { tail -20 "$ROOT/debootstrap.log" >&2; exit 1; }
tar -C "$ROOT/rootfs" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
echo "built $IMAGE"
