#!/usr/bin/env bash
# Builds the crebitos image.
#
#   docker/build-image.sh [--from-host|--from-source [--offline]] [TAG]
#
# --from-host (the default) compiles static glibc binaries on this machine and copies them into a
# FROM scratch image (docker/Dockerfile.host): no image is pulled. --from-source runs the
# multi-stage docker/Dockerfile, the one `docker compose up --build` runs; it pulls its Rust
# image (RUST_IMAGE, when set in the environment, replaces the Dockerfile's default). With
# --offline, nothing is pulled: docker/builder-image.sh makes the Rust image locally (Debian
# packages, this host's toolchain, the vendored crates) and the build runs with no network at
# all; this is how CI builds the image. TAG defaults to rinha-crebitos:latest, the image
# docker-compose.yml runs.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=--from-host
offline=false
tag=rinha-crebitos:latest
for arg in "$@"; do
    case "$arg" in
        --from-host|--from-source) mode=$arg ;;
        --offline) offline=true ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) echo "build-image: unknown option $arg (see --help)" >&2; exit 2 ;;
        *) tag=$arg ;;
    esac
done
if [ "$offline" = true ] && [ "$mode" != --from-source ]; then
    echo "build-image: --offline goes with --from-source (--from-host never pulls anything)" >&2
    exit 2
fi

# Removes the untagged images that descend from image $1: the classic builder (Docker 20.10, or
# DOCKER_BUILDKIT=0) keeps the build stage's layers so, /src/target included, hundreds of MB for
# every source change (BuildKit does not). Removing a leaf also removes its untagged parents.
remove_stage_images() {
    local base leaves
    base=$(docker image inspect -f '{{.Id}}' "$1")
    # shellcheck disable=SC2046
    leaves=$(docker image inspect -f '{{.Id}} {{if .Parent}}{{.Parent}}{{else}}-{{end}} {{len .RepoTags}}' \
            $(docker image ls -a -q --no-trunc) | awk -v base="$base" '
        { parent[$1] = $2; tags[$1] = $3; has_child[$2] = 1 }
        END {
            for (id in parent) {
                if (has_child[id] || tags[id] > 0) continue
                for (p = parent[id]; p != "-" && p != base && (p in parent); p = parent[p]) ;
                if (p == base) print id
            }
        }')
    # An image another build still uses is refused; it costs disk only, never the build.
    # shellcheck disable=SC2086
    if [ -n "$leaves" ] && ! docker rmi $leaves >/dev/null 2>&1; then
        echo "build-image: note: some untagged build-stage images below $1 are still in use" >&2
    fi
}

if [ "$mode" = --from-source ]; then
    args=()
    if [ "$offline" = true ]; then
        RUST_IMAGE=$(docker/builder-image.sh)
        # --force-rm: a failed step's container would otherwise stay, and keep its image.
        args+=(--network none --force-rm)
    fi
    [ -z "${RUST_IMAGE:-}" ] || args+=(--build-arg "RUST_IMAGE=$RUST_IMAGE")
    status=0
    docker build ${args[@]+"${args[@]}"} -f docker/Dockerfile -t "$tag" . || status=$?
    # Only below our own builder image: the cache of an image pulled from a registry may be
    # someone else's.
    [ "$offline" = false ] || remove_stage_images "$RUST_IMAGE"
    if [ "$status" != 0 ]; then
        echo "build-image: docker build -f docker/Dockerfile failed (exit $status)" >&2
        exit "$status"
    fi
    docker image ls "$tag"
    exit 0
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
    if command -v file >/dev/null && ! file "$binary" 2>/dev/null | grep -q 'static'; then
        echo "build-image: $binary is not statically linked" >&2
        exit 1
    fi
    if command -v strip >/dev/null; then
        strip -o "$stage/bin/$name" "$binary"
    else
        cp "$binary" "$stage/bin/$name"
    fi
done
docker build -f docker/Dockerfile.host -t "$tag" "$stage"
docker image ls "$tag"
