#!/usr/bin/env bash
# Kernel matrix: boots Debian's Linux 5.10 (bullseye) and 6.1 (bookworm) kernels under
# qemu-system-x86_64 with TCG (no KVM needed) and, inside each machine, runs the whole stack on
# each runtime driver (io_uring, then epoll): two rinha-api instances on one data directory of
# an ext4 virtio disk, over Unix sockets, with rinha-lb in front on TCP; the reference scenario
# compressed; a second load during which one instance is killed with SIGKILL and started again;
# a clean stop; espora verify. Fails when any check fails, a machine does not finish in time, or
# a result is missing from its console.
#
#   bash .ci/kernels.sh [--no-build] [--keep]
#
#   --no-build   use the static binaries already built (in $CARGO_TARGET_DIR, see below)
#   --keep       keep the work directory (console logs, disks, initramfs images) even when all
#                passed; without it only a failed run's console logs stay
#
# What it needs is installed first, when missing, by `scripts/setup.sh kernels` (as root).
# Kernels and busybox come from Debian's archive (for 5.10 the bullseye suite is added to apt in
# /etc/apt/sources.list.d/kernel-matrix-bullseye.sources), extracted into the cache, never
# installed. scripts/kernel-matrix/README.md describes the pieces and the cache.
#
# Environment:
#   KERNELS_SERIES      kernel series to boot (default "5.10 6.1")
#   KERNELS_DRIVERS     runtime drivers to test in each (default "io_uring epoll")
#   KERNELS_CACHE       the cache (default /var/cache/rinha-kernels for root, else
#                       ${XDG_CACHE_HOME:-~/.cache}/rinha-kernels)
#   KERNELS_WORK        the work directory (default: a new one under ${TMPDIR:-/tmp})
#   CARGO_TARGET_DIR    where the static build goes (default target/kernel-matrix)
#   KERNELS_RAMP, KERNELS_HOLD
#                       the scenario's ramp and hold (default 3s each)
#   KERNELS_KILL_RAMP, KERNELS_KILL_HOLD, KERNELS_KILL_AFTER
#                       the second load (default 2s, 8s) and when instance 1 is killed (2 s in)
#   KERNELS_KILL_KO_PERCENT
#                       the share of the second load's requests that may fail (default 25)
#   KERNELS_STEP_TIMEOUT
#                       seconds one step inside the machine may take (default 60)
#   KERNELS_VM_TIMEOUT  seconds one machine may run, boot to power-off (default 145: two
#                       machines stay within the matrix's 5-minute budget)
#   KERNELS_SMP, KERNELS_MEMORY
#                       virtual CPUs and MiB of each machine (default 2 and 2048)
set -euo pipefail

km_repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/kernel-matrix/host.sh
source "$km_repo/scripts/kernel-matrix/host.sh"

series_list=${KERNELS_SERIES:-5.10 6.1}
drivers=${KERNELS_DRIVERS:-io_uring epoll}
vm_timeout=${KERNELS_VM_TIMEOUT:-145}
budget_seconds=300
build=1
keep=0
work_is_ours=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

for arg in "$@"; do
    case $arg in
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "kernels: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

# Builds rinha-api, rinha-lb, rinha-scenario and espora as static binaries (glibc, crt-static,
# as docker/Dockerfile builds them); sets bins to their directory.
build_binaries() {
    local target_dir=${CARGO_TARGET_DIR:-$km_repo/target/kernel-matrix} name
    bins=$target_dir/x86_64-unknown-linux-gnu/release
    if [ "$build" = 1 ]; then
        command -v cargo >/dev/null || km_die "cargo not found (install Rust, or pass --no-build)"
        km_log "building static release binaries in $target_dir"
        (cd "$km_repo" && RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$target_dir" \
            cargo build --release --locked --target x86_64-unknown-linux-gnu \
            --bin rinha-api --bin rinha-lb --bin rinha-scenario --bin espora) ||
            km_die "the static release build failed"
    fi
    for name in rinha-api rinha-lb rinha-scenario espora; do
        [ -x "$bins/$name" ] || km_die "$bins/$name is missing (drop --no-build)"
        km_require_static "$bins/$name"
    done
}

# Writes the guest's configuration for series $1 to file $2.
write_guest_config() {
    cat >"$2" <<EOF
KM_DRIVERS="$drivers"
KM_RAMP="${KERNELS_RAMP:-3s}"
KM_HOLD="${KERNELS_HOLD:-3s}"
KM_KILL_RAMP="${KERNELS_KILL_RAMP:-2s}"
KM_KILL_HOLD="${KERNELS_KILL_HOLD:-8s}"
KM_KILL_AFTER="${KERNELS_KILL_AFTER:-2}"
KM_KILL_KO_PERCENT="${KERNELS_KILL_KO_PERCENT:-25}"
KM_STEP_TIMEOUT="${KERNELS_STEP_TIMEOUT:-60}"
KM_BACKEND_EXPECT="$(km_series_field "$1" 3)"
EOF
}

# Boots the kernel of series $1 (prepared in kernel_dirs) and judges its console; appends to
# the summary and to vm_rows. Returns 1 when anything failed.
run_series() {
    local series=$1 kernel=${kernel_dirs[$1]} dir="$km_work/$1" started status=0 boot_status=0
    local release seconds
    release=$(cat "$kernel/release")
    mkdir -p "$dir"
    started=$(km_now)
    write_guest_config "$series" "$dir/config"
    km_make_initramfs "$dir/initramfs.gz" "$kernel" "$dir/config" "$bins"
    km_make_disk "$dir/disk.img"
    km_log "booting $release (series $series) under TCG, at most $vm_timeout s"
    km_boot "$kernel" "$dir/initramfs.gz" "$dir/disk.img" "$dir/console.log" "$series" "$vm_timeout" ||
        boot_status=$?
    seconds=$(km_since "$started")
    if [ "$boot_status" = 124 ] || [ "$boot_status" = 137 ]; then
        echo "FAIL [$series] the machine did not finish within $vm_timeout s"
        status=1
    elif [ "$boot_status" != 0 ]; then
        echo "FAIL [$series] qemu exited with status $boot_status"
        status=1
    fi
    km_judge "$dir/console.log" "$drivers" "$series" || status=1
    vm_rows+=("$series $release $seconds $(km_boot_seconds "$dir/console.log")")
    [ "$keep" = 1 ] || rm -f "$dir/disk.img" "$dir/initramfs.gz"
    return "$status"
}

# The guest's uptime when /init started, from its "KM BOOT" line.
km_boot_seconds() {
    sed -n 's/^KM BOOT uptime=\([0-9.]*\).*/\1/p' "$1" | head -n 1 | grep . || echo "-"
}

print_summary() {
    local total=$1
    echo
    echo "== kernel matrix"
    # shellcheck disable=SC2048,SC2086 # a row is four words, and printf repeats its format for each
    printf '%-7s %-18s %8s %12s\n' series release "vm s" "boot to init" ${vm_rows[*]}
    echo
    printf '%-7s %-9s %8s  %s\n' series driver seconds verdict
    while read -r series driver seconds verdict; do
        printf '%-7s %-9s %8s  %s\n' "$series" "$driver" "$seconds" "$verdict"
    done <"$km_work/summary"
    echo
    echo "matrix wall-clock time: $total s (budget $budget_seconds s, without build and downloads)"
    if awk -v t="$total" -v b="$budget_seconds" 'BEGIN { exit !(t > b) }'; then
        echo "warning: the matrix took longer than its $budget_seconds s budget"
    fi
}

# Removes what this run wrote in the work directory, and the directory when it made it.
remove_work() {
    local series
    for series in $series_list; do rm -rf "${km_work:?}/$series"; done
    rm -f "$km_work/summary"
    if [ "$work_is_ours" = 1 ]; then rmdir "$km_work" 2>/dev/null || true; fi
}

main() {
    bash "$km_repo/scripts/setup.sh" kernels
    km_cache=${KERNELS_CACHE:-/var/cache/rinha-kernels}
    [ -n "${KERNELS_CACHE:-}" ] || km_is_root || km_cache="${XDG_CACHE_HOME:-$HOME/.cache}/rinha-kernels"
    mkdir -p "$km_cache" || km_die "cannot create the cache $km_cache (set KERNELS_CACHE)"
    if [ -n "${KERNELS_WORK:-}" ]; then
        km_work=$KERNELS_WORK
        mkdir -p "$km_work"
    else
        km_work=$(mktemp -d "${TMPDIR:-/tmp}/rinha-kernels.XXXXXX")
        work_is_ours=1
    fi
    : >"$km_work/summary"

    local prepared series failed=0 started
    prepared=$(km_now)
    build_binaries
    km_prepare_busybox
    declare -gA kernel_dirs=()
    for series in $series_list; do
        km_series_field "$series" 2 >/dev/null
        km_prepare_kernel "$series"
        kernel_dirs[$series]=$km_kernel_dir
        km_log "series $series: $(cat "$km_kernel_dir/release") from $(basename "$km_kernel_dir")"
    done
    km_log "build and downloads: $(km_since "$prepared") s; cache $km_cache"

    vm_rows=()
    started=$(km_now)
    for series in $series_list; do
        run_series "$series" || failed=1
    done
    print_summary "$(km_since "$started")"

    if [ "$failed" = 0 ] && [ "$keep" = 0 ]; then
        remove_work
    else
        echo "console logs: $km_work/<series>/console.log"
    fi
    if [ "$failed" = 0 ]; then
        echo "kernel matrix: PASSED"
    else
        echo "kernel matrix: FAILED"
        exit 1
    fi
}

main
