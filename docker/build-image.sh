#!/usr/bin/env bash
# Builds the crebitos image.
#
#   docker/build-image.sh [--from-host|--from-source] [TAG]
#
# --from-host (the default) compiles static glibc binaries on this machine and copies them into a
# FROM scratch image (docker/Dockerfile.host): no image is pulled. --from-source runs the
# multi-stage docker/Dockerfile, which pulls a Rust image. TAG defaults to rinha-crebitos:latest,
# the image docker-compose.yml runs.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=--from-host
tag=rinha-crebitos:latest
for arg in "$@"; do
    case "$arg" in
        --from-host|--from-source) mode=$arg ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) tag=$arg ;;
    esac
done

if [ "$mode" = --from-source ]; then
    exec docker build -f docker/Dockerfile -t "$tag" .
fi

triple=x86_64-unknown-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$triple" --bin rinha-api --bin rinha-lb --bin espora

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/data" "$stage/run/rinha"
for name in rinha-api rinha-lb espora; do
    binary="target/$triple/release/$name"
    # A dynamic binary would fail in scratch with a confusing "no such file" at start.
    if ! file "$binary" 2>/dev/null | grep -q 'static'; then
        if command -v file >/dev/null; then
            echo "build-image: $binary is not statically linked" >&2
            exit 1
        fi
    fi
    if command -v strip >/dev/null; then
        strip -o "$stage/bin/$name" "$binary"
    else
        cp "$binary" "$stage/bin/$name"
    fi
done
docker build -f docker/Dockerfile.host -t "$tag" "$stage"
docker image ls "$tag"
