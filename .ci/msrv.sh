#!/usr/bin/env bash
# The declared minimum Rust version is true for the locked dependencies.
#
#   bash .ci/msrv.sh
#
# Fails when a package in Cargo.lock's resolve (every platform, dev-dependencies included, as
# `cargo metadata --locked` lists them) declares a rust-version newer than a workspace member's,
# naming the packages that need more. Also fails when docker/Dockerfile's default RUST_IMAGE is
# not the official image of the declared version, so a user's `docker compose up --build`
# compiles with exactly the minimum the project claims.
#
# This checks the dependencies' declarations only; that our own code needs no newer Rust is what
# clippy's incompatible_msrv lint (on by default, -D warnings in .ci/run) checks for the standard
# library's APIs. Neither replaces building with that toolchain, which this machine cannot
# download.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --check jq

metadata=$(cargo metadata --locked --format-version 1) ||
    { echo "msrv: cargo metadata --locked failed (is Cargo.lock up to date?)" >&2; exit 1; }

# Versions as arrays of three numbers, so that jq compares them numerically ("1.9" < "1.10").
# shellcheck disable=SC2016
report=$(jq -r '
    def v: split(".") | map(tonumber) | . + [0, 0, 0] | .[0:3];
    .workspace_members as $members
    | [.packages[] | select(.id | IN($members[]))] as $ours
    | [.packages[] | select(.id | IN($members[]) | not)
        | select(.rust_version != null)] as $deps
    | ($deps | map(.rust_version | v) | max) as $need
    | ($ours[] | select(.rust_version == null) | "undeclared \(.name)"),
      ($ours[] | select(.rust_version != null and (.rust_version | v) < $need)
        | "old \(.name) \(.rust_version)"),
      "need \($deps | max_by(.rust_version | v) | .rust_version)",
      ($deps[] | select((.rust_version | v) == $need) | "by \(.name) \(.version)"),
      ($ours | map(.rust_version // empty) | unique[] | "declared \(.)")
' <<<"$metadata")

need=$(sed -n 's/^need //p' <<<"$report")
needed_by=$(sed -n 's/^by //p' <<<"$report" | paste -sd, - | sed 's/,/, /g')
status=0
while read -r kind name version; do
    case $kind in
        undeclared)
            echo "msrv: $name declares no rust-version (inherit the workspace's: rust-version.workspace = true)" >&2
            status=1 ;;
        old)
            echo "msrv: $name declares rust-version $version, but the locked dependencies need $need ($needed_by)" >&2
            status=1 ;;
    esac
done <<<"$report"

declared=$(sed -n 's/^declared //p' <<<"$report")
if [ "$(wc -l <<<"$declared")" != 1 ]; then
    echo "msrv: the workspace members declare different rust-versions: $(paste -sd' ' <<<"$declared")" >&2
    status=1
fi
declared=$(head -1 <<<"$declared")
echo "msrv: declared rust-version $declared; the locked dependencies need $need ($needed_by)"

image=$(sed -n 's/^ARG RUST_IMAGE=//p' docker/Dockerfile)
if [ "$image" != "rust:$declared-bookworm" ]; then
    echo "msrv: docker/Dockerfile's default RUST_IMAGE is '$image'; expected rust:$declared-bookworm, the declared rust-version" >&2
    status=1
fi
[ "$status" = 0 ] && echo "msrv: ok"
exit "$status"
