#!/usr/bin/env bash
# Installs what the project's scripts need, by group, skipping what is already there: the one
# place that installs anything. The entry points call it at their top (.ci/run, .ci/kernels.sh,
# bench/run.sh, bench/lb.sh, bench/api.sh, bench/flamegraph.sh); every other script only checks
# (--check) and, when something is missing, fails with one line naming the command to run.
#
#   scripts/setup.sh GROUP|TOOL...           install what is missing: Debian packages with
#                                            apt-get (as root), rustup components, crates.io
#                                            tools with cargo install --locked (~/.cargo/bin)
#   scripts/setup.sh --check GROUP|TOOL...   install nothing; exit 1 naming what is missing
#
# Groups:
#   ci          .ci/run's own steps and the tests: rustfmt, clippy, jq (.ci/msrv.sh), what
#               the root-only tests of crates/chaos run (a failing disk, PID namespaces): mount,
#               umount, losetup, mkfs.ext4, unshare, dd, and what gatling/run.sh needs besides
#               Gatling, which its test runs (crates/scenario/tests/gatling_run.rs): curl,
#               sha1sum, unzip
#   kernels     .ci/kernels.sh: qemu-system-x86_64, cpio, mkfs.ext4, gzip, dpkg-deb, awk, xz, zstd
#   e2e         .ci/e2e.sh: ss, awk, join, python3 with PyYAML (it reads the compose files' limits)
#   docker      .ci/e2e.sh's Docker part, skipped when no Docker engine answers: a compose
#               command (docker-compose when `docker compose` is missing), strace, curl, pkill
#               (docker/seccomp-check.sh), debootstrap (docker/builder-image.sh)
#   bench       bench/run.sh, lb.sh and flamegraph.sh: wrk, nginx with its stream module, jq, ss,
#               python3
#   oha         oha from crates.io (with libssl-dev and pkg-config), for the fixed-rate rows
#   flamegraph  perf (Debian's linux-perf) and inferno from crates.io
#   lint        shellcheck, for whoever changes these scripts
#   schemathesis
#               .ci/schemathesis.sh: python3 with venv (it installs schemathesis from PyPI into a
#               virtual environment of its own), ss
#   report      .ci/report-png.sh, which .ci/e2e.sh runs on a scenario's HTML report: chromium
#               (Debian's, run headless to take a screenshot), python3 (it decodes the PNG)
# A TOOL is any name a group lists (bench/api.sh asks for wrk alone).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

# The tools of group $1, or nothing when $1 is not a group.
group_tools() {
    case $1 in
        ci) echo rustfmt clippy jq mount umount losetup mkfs.ext4 unshare dd curl sha1sum unzip ;;
        kernels) echo qemu-system-x86_64 cpio mkfs.ext4 gzip dpkg-deb awk xz zstd ;;
        e2e) echo ss awk join python3 pyyaml ;;
        docker) echo compose strace curl pkill debootstrap ;;
        bench) echo wrk nginx nginx-stream jq ss python3 ;;
        oha) echo pkg-config libssl-dev oha ;;
        flamegraph) echo perf inferno ;;
        lint) echo shellcheck ;;
        schemathesis) echo python3 venv ss ;;
        report) echo chromium python3 ;;
    esac
}

# Sets `probe`, a command that succeeds when tool $1 is present (by default: a command of that
# name on PATH, from wherever), and `from`, where it comes from: apt PACKAGE..., rustup
# COMPONENT or cargo CRATE. Fails for a name no group lists.
describe() {
    probe=(command -v "$1") from=(apt "$1")
    case $1 in
        rustfmt) probe=(cargo fmt --version) from=(rustup rustfmt) ;;
        clippy) probe=(cargo clippy --version) from=(rustup clippy) ;;
        mount | umount | losetup) from=(apt mount) ;;
        unshare) from=(apt util-linux) ;;
        dd | join | sha1sum) from=(apt coreutils) ;;
        mkfs.ext4) from=(apt e2fsprogs) ;;
        qemu-system-x86_64) from=(apt qemu-system-x86) ;;
        dpkg-deb) from=(apt dpkg) ;;
        awk) from=(apt gawk) ;;
        xz) from=(apt xz-utils) ;;
        ss) from=(apt iproute2) ;;
        pyyaml) probe=(python3 -c 'import yaml') from=(apt python3-yaml) ;;
        # Debian's python3 makes virtual environments (with pip) only with python3-venv.
        venv) probe=(python3 -c 'import ensurepip, venv') from=(apt python3-venv) ;;
        compose) probe=(has_compose) from=(apt docker-compose) ;;
        pkill) from=(apt procps) ;;
        debootstrap) from=(apt debootstrap debian-archive-keyring) ;;
        nginx) from=(apt nginx-light) ;;
        nginx-stream) probe=(test -e /usr/lib/nginx/modules/ngx_stream_module.so) from=(apt libnginx-mod-stream) ;;
        perf) from=(apt linux-perf) ;;
        # Its default TLS back ends (rustls on aws-lc) make most of its build time; only plain
        # HTTP is measured here, but oha does not build without one: native-tls, on the system's
        # OpenSSL (libssl-dev, found with pkg-config).
        oha) from=(cargo oha --no-default-features --features native-tls) ;;
        libssl-dev) probe=(dpkg -s libssl-dev) ;;
        inferno) probe=(command -v inferno-flamegraph) from=(cargo inferno) ;;
        jq | cpio | gzip | zstd | wrk | python3 | strace | curl | shellcheck | pkg-config | unzip | chromium) ;;
        *) return 1 ;;
    esac
}

has_compose() { docker compose version || command -v docker-compose; }

present() {
    describe "$1"
    "${probe[@]}" >/dev/null 2>&1
}

check=0
[ "${1:-}" = --check ] && { check=1; shift; }
case ${1:-} in
    -h | --help) usage; exit 0 ;;
    '') usage >&2; exit 2 ;;
esac

# The tools asked for, each once, in order.
tools=()
for arg in "$@"; do
    names=$(group_tools "$arg")
    if [ -z "$names" ]; then
        describe "$arg" || { echo "setup: unknown group or tool '$arg' (see --help)" >&2; exit 2; }
        names=$arg
    elif [ "$arg" = docker ] && [ "$check" = 0 ] && ! docker info >/dev/null 2>&1; then
        echo "setup: no reachable Docker engine: the docker group is skipped (so is .ci/e2e.sh's Docker part)" >&2
        continue
    fi
    for name in $names; do
        [[ " ${tools[*]} " == *" $name "* ]] || tools+=("$name")
    done
done

missing=()
for name in ${tools[@]+"${tools[@]}"}; do
    present "$name" || missing+=("$name")
done
[ "${#missing[@]}" -gt 0 ] || exit 0
if [ "$check" = 1 ]; then
    die "missing ${missing[*]}: run scripts/setup.sh $*"
fi

packages=() components=() crates=()
for name in "${missing[@]}"; do
    describe "$name"
    case ${from[0]} in
        apt) packages+=("${from[@]:1}") ;;
        rustup) components+=("${from[1]}") ;;
        cargo) crates+=("$name") ;;
    esac
done

if [ "${#packages[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || die "apt-get not found: install ${packages[*]} (Debian's names) by hand"
    [ "$(id -u)" = 0 ] || die "missing ${packages[*]}: run as root (sudo scripts/setup.sh $*)"
    echo "setup: installing ${packages[*]} (apt-get)" >&2
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null ||
        die "apt-get install ${packages[*]} failed"
fi
if [ "${#components[@]}" -gt 0 ]; then
    command -v rustup >/dev/null || die "missing ${components[*]} and no rustup: add them to the Rust toolchain"
    echo "setup: installing ${components[*]} (rustup component add)" >&2
    rustup component add "${components[@]}" >&2
fi
for name in ${crates[@]+"${crates[@]}"}; do
    describe "$name"
    echo "setup: installing ${from[1]} (cargo install, minutes)" >&2
    cargo install --locked "${from[@]:1}" >&2 || die "cargo install ${from[1]} failed"
done

for name in "${missing[@]}"; do
    present "$name" || die "$name is still missing after installing ${from[*]:1}"
done
