#!/usr/bin/env bash
# Makes a Rust builder image for docker/Dockerfile on a machine that cannot pull images.
#
#   docker/builder-image.sh            prints the image's tag on stdout (progress goes to stderr)
#
# The image is a minimal Debian bookworm made with debootstrap (gcc as the linker, libc6-dev for
# the static glibc, security updates applied), plus the Rust toolchain installed on this host
# (the one `rustc --print sysroot` names, trimmed to what `cargo build` needs) and the crates of
# Cargo.lock vendored under CARGO_HOME with a cargo config that uses them and never the network.
# Pass it to the real Dockerfile, which then builds with no network at all:
#
#   docker build --network none --build-arg RUST_IMAGE="$(docker/builder-image.sh)" \
#       -f docker/Dockerfile -t rinha-crebitos:latest .
#
# (docker/build-image.sh --from-source --offline does exactly that.)
#
# Needs root (debootstrap and chroot), a Docker engine, and network access to a Debian mirror and
# crates.io; debootstrap must be there (scripts/setup.sh docker installs it).
#
# Caching (docker/README.md says what is kept and why reusing it is safe): the image is tagged
# crebitos-builder:<key>, the key hashing everything that goes into it, and the debootstrapped
# rootfs is kept as a tarball under target/docker-builder/; both are remade once older than
# BUILDER_MAX_AGE_DAYS, as the final binaries link glibc statically from this rootfs.
#
# Environment: BUILDER_MIRROR (default http://deb.debian.org/debian), BUILDER_SECURITY_MIRROR
# (default http://deb.debian.org/debian-security), BUILDER_MAX_AGE_DAYS (7), BUILDER_NO_CACHE=1
# (ignore and replace the cached tarball and image).
set -euo pipefail
cd "$(dirname "$0")/.."
# The image's directories get the usual 755 whatever the caller's umask.
umask 022

suite=bookworm
# gcc drives the link (and brings binutils: strip), libc6-dev has libc.a for +crt-static, zlib1g
# is what rustc's LLVM links against.
packages=gcc,libc6-dev,zlib1g
mirror=${BUILDER_MIRROR:-http://deb.debian.org/debian}
security_mirror=${BUILDER_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
max_age_days=${BUILDER_MAX_AGE_DAYS:-7}
no_cache=${BUILDER_NO_CACHE:-0}
cache=target/docker-builder
repository=crebitos-builder

log() { printf 'builder-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
short_sha() { sha256sum | cut -c1-12; }
# True when the epoch $1 is older than the maximum age.
too_old() { [ $(($(date +%s) - $1)) -gt $((max_age_days * 86400)) ]; }
# Runs a chatty command with its output in the build log, shown (the end of it) only on failure.
build_log=$cache/build.log
quiet() {
    "$@" >>"$build_log" 2>&1 && return 0
    tail -n 30 "$build_log" | sed 's/^/  | /' >&2
    return 1
}

case ${1:-} in
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    '') ;;
    *) die "unknown argument '$1' (see --help)" ;;
esac

docker info >/dev/null 2>&1 || die "no reachable Docker engine (docker info failed)"
if ! command -v rustc >/dev/null || ! command -v cargo >/dev/null; then
    die "rustc and cargo must be installed on this host (the image copies their toolchain)"
fi
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
# docker/Dockerfile builds for x86_64-unknown-linux-gnu, so the builder must run that natively.
[ "$host" = x86_64-unknown-linux-gnu ] ||
    die "the toolchain's host is $host; docker/Dockerfile needs x86_64-unknown-linux-gnu"
[ -x "$sysroot/bin/cargo" ] ||
    die "$sysroot/bin/cargo is missing: add cargo to that toolchain (rustup component add cargo)"
rust_version=$(rustc -V | awk '{ print $2 }')

# The Debian part. Its text is hashed into the cached tarball's name, so changing this
# function, the suite, the packages or the mirrors makes a new tarball.
make_rootfs() {
    local out=$1 dir
    dir=$(mktemp -d "$cache/rootfs.XXXXXX")
    # mktemp makes the directory 700; it becomes the image's /.
    chmod 755 "$dir"
    # shellcheck disable=SC2064
    trap "cleanup_rootfs '$dir'" EXIT
    log "debootstrap $suite ($packages) from $mirror (output in $build_log)"
    quiet debootstrap --variant=minbase --include="$packages" "$suite" "$dir" "$mirror" ||
        die "debootstrap failed (is $mirror reachable?)"
    log "applying $suite-updates and $suite-security"
    cat >"$dir/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
    quiet chroot "$dir" apt-get update || die "apt-get update in the rootfs failed"
    quiet chroot "$dir" env DEBIAN_FRONTEND=noninteractive apt-get upgrade -y ||
        die "apt-get upgrade in the rootfs failed"
    chroot "$dir" apt-get clean
    # Package lists, documentation and translations: a build image needs none of them.
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin \
        "$dir"/usr/share/doc "$dir"/usr/share/man "$dir"/usr/share/info "$dir"/usr/share/locale
    cleanup_mounts "$dir"
    tar --numeric-owner -C "$dir" -cf "$out.partial" .
    mv "$out.partial" "$out"
    cleanup_rootfs "$dir"
    trap - EXIT
}

# debootstrap mounts /proc and /sys into the target (and, inside a container, binds /dev); if it
# stops half-way they stay mounted. Unmount them, deepest first, before archiving or deleting.
cleanup_mounts() {
    local mount
    awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mount; do
        umount -l "$mount" || true
    done
}

cleanup_rootfs() {
    cleanup_mounts "$1"
    # --one-file-system: never delete through a mount left behind.
    rm -rf --one-file-system "$1"
}

rootfs_key=$({ declare -f make_rootfs cleanup_mounts; echo "$suite $packages $mirror $security_mirror"; } | short_sha)
lock_sum=$(sha256sum Cargo.lock | cut -c1-12)
key=$({ echo "$rootfs_key"; rustc -vV; cargo -V; echo "$lock_sum"; sed -n '/^# ASSEMBLY/,$p' "$0"; } | short_sha)
tag=$repository:$key

if [ "$no_cache" != 1 ] &&
    made=$(docker image inspect -f '{{ index .Config.Labels "org.crebitos.builder.rootfs-epoch" }}' "$tag" 2>/dev/null) &&
    [ -n "$made" ] && ! too_old "$made"; then
    log "reusing $tag (Rust $rust_version, rootfs of $(date -u -d "@$made" +%F))"
    echo "$tag"
    exit 0
fi

# ASSEMBLY: everything from this line on is hashed into the image's key.
mkdir -p "$cache"
: >"$build_log"
rootfs=$cache/rootfs-$suite-$rootfs_key.tar
if [ "$no_cache" = 1 ] || [ ! -f "$rootfs" ] || too_old "$(stat -c %Y "$rootfs")"; then
    [ "$(id -u)" = 0 ] || die "making the Debian rootfs needs root (debootstrap, chroot)"
    bash scripts/setup.sh --check debootstrap
    rm -f "$cache"/rootfs-*.tar "$cache"/rootfs-*.tar.partial
    make_rootfs "$rootfs"
else
    log "reusing the rootfs tarball $rootfs"
fi
rootfs_epoch=$(stat -c %Y "$rootfs")

stage=$(mktemp -d "$cache/stage.XXXXXX")
# shellcheck disable=SC2064
trap "rm -rf '$stage'" EXIT
tree=$stage/tree
mkdir -p "$tree/usr/local/rust/bin" "$tree/usr/local/rust/lib/rustlib/$host" "$tree/usr/local/cargo"

# The toolchain without documentation, rustfmt, clippy or debugger scripts: cargo, rustc, its
# shared libraries, the standard library and the linker helpers (rust-lld, gcc-ld). Hard links
# when the toolchain is on the same file system (nothing is copied), copies otherwise.
log "adding Rust $rust_version from $sysroot"
link() { cp -al "$@" 2>/dev/null || cp -a "$@"; }
link "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$tree/usr/local/rust/bin/"
link "$sysroot"/lib/*.so* "$tree/usr/local/rust/lib/"
link "$sysroot/lib/rustlib/$host/lib" "$sysroot/lib/rustlib/$host/bin" "$tree/usr/local/rust/lib/rustlib/$host/"

# The crates of Cargo.lock, and a cargo config that replaces crates.io with them; net.offline
# makes a crate missing from them cargo's clear offline error instead of a network timeout.
log "vendoring the crates of Cargo.lock"
cargo vendor --locked --quiet "$tree/usr/local/cargo/vendor" >/dev/null
cat >"$tree/usr/local/cargo/config.toml" <<'EOF'
# Written by docker/builder-image.sh: build from the crates vendored in this image, offline.
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "/usr/local/cargo/vendor"

[net]
offline = true
EOF

# One tarball, the rootfs with the two trees appended, imported as a single layer.
cp "$rootfs" "$stage/image.tar"
tar --numeric-owner --owner=0 --group=0 -rf "$stage/image.tar" -C "$tree" ./usr/local/rust ./usr/local/cargo

log "importing $tag"
old=$(docker image ls -q "$repository" | sort -u)
docker import \
    --change 'ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change "LABEL org.crebitos.builder.rust=$rust_version" \
    --change "LABEL org.crebitos.builder.rootfs-epoch=$rootfs_epoch" \
    --change 'CMD ["/bin/bash"]' \
    --message "docker/builder-image.sh: Debian $suite, Rust $rust_version, crates of Cargo.lock $lock_sum" \
    "$stage/image.tar" "$tag" >/dev/null
rm -rf "$stage"
trap - EXIT
new=$(docker image inspect -f '{{.Id}}' "$tag")
# Keep one builder image, the one just made (an image a container still uses stays).
for id in $old; do
    case $new in *"$id"*) continue ;; esac
    if docker rmi "$id" >/dev/null 2>&1; then log "removed the older builder image $id"; fi
done
# Hand out only an image whose cargo, rustc and C compiler driver (the linker) all start.
docker run --rm --network none "$tag" sh -c 'cargo -V && rustc -V && cc --version | head -1' >&2 ||
    die "the new image $tag cannot run cargo, rustc or cc"
log "made $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
echo "$tag"
