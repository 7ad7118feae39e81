#!/usr/bin/env bash
# Flame graphs of the running stack under the benchmark load, one SVG per process:
#
#   bench/flamegraph.sh [keepalive|close] [seconds]      (defaults: keepalive 10)
#
# Builds rinha-api and rinha-lb with the `profiling` cargo profile (release code, debug symbols)
# and frame pointers, starts the stack as bench/run.sh does (rinha-lb in front of two rinha-api
# over Unix sockets), drives it with wrk and bench/mix.lua, records the three processes with
# `perf record -g` at 999 Hz and renders them with inferno (scripts/setup.sh bench flamegraph
# installs what is missing):
#   bench/flamegraphs/<mode>-rinha-lb.svg, <mode>-rinha-api-1.svg, <mode>-rinha-api-2.svg
# Must run as root (or with kernel.perf_event_paranoid <= 1) to see kernel frames, where most of
# the time goes. Environment: BENCH_CONNECTIONS [32], BENCH_API_WORKERS [1], BENCH_LB_WORKERS
# [1], as in bench/run.sh.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

mode=${1:-keepalive}
seconds=${2:-10}
connections=${BENCH_CONNECTIONS:-32}
api_workers=${BENCH_API_WORKERS:-1}
lb_workers=${BENCH_LB_WORKERS:-1}
bin=$root/target/profiling

case $mode in keepalive | close) ;; *) echo "usage: bench/flamegraph.sh [keepalive|close] [seconds]" >&2; exit 2 ;; esac
bash scripts/setup.sh bench flamegraph
echo "bench: building with the profiling profile and frame pointers" >&2
RUSTFLAGS="-C force-frame-pointers=yes" cargo build --quiet --locked --profile profiling \
    --bin rinha-api --bin rinha-lb

work=$(mktemp -d /tmp/rinha-flame.XXXXXX)
chmod 755 "$work"
trap 'stop_stack; rm -rf "$work"' EXIT
mkdir -p "$work/data" "$here/flamegraphs"
port=$(free_port 19200)
start_api rinha-api-1 "unix:$work/api01.sock"
start_api rinha-api-2 "unix:$work/api02.sock"
start_lb rinha-lb "$port" "unix:$work/api01.sock" "unix:$work/api02.sock"
for address in "$port" "unix:$work/api01.sock" "unix:$work/api02.sock"; do bench_wait_ready "$address"; done
# The first probe may have reached rinha-lb before the second instance listened, which then
# skips it for its 1 s back-off: let that pass so that the load is shared.
sleep 1.5

header=()
[ "$mode" = close ] && header=(-H "Connection: close")
pids=$( (stack_pids rinha-lb; stack_pids rinha-api) | paste -sd,)
echo "bench: recording $pids for $seconds s under wrk -t1 -c$connections ($mode)" >&2
wrk -t1 -c"$connections" -d"$((seconds + 2))s" "${header[@]}" -s "$here/mix.lua" \
    "http://127.0.0.1:$port" >"$work/wrk.out" &
wrk_pid=$!
sleep 1
perf record --quiet -F 999 -g -p "$pids" -o "$work/perf.data" -- sleep "$seconds" 2>"$work/perf.err"
wait "$wrk_pid"
grep '^mix: ' "$work/wrk.out" >&2

# A rough first reading of a folded file: the share of samples in a few families of frames,
# each stack counted once, in the first family it matches (so the order matters).
summarise() {
    awk '{ w = $NF; total += w; c = "other"
        if ($0 ~ /io_fsync|ext4_sync_file|file_write_and_wait/) c = "fdatasync and page writeback"
        else if ($0 ~ /splice/) c = "splice (socket and pipe data path)"
        else if ($0 ~ /page_fault/) c = "page faults (write faults on the mapped files)"
        else if ($0 ~ /tcp_|unix_stream|sock_sendmsg|sock_recvmsg|inet_/) c = "socket send and receive"
        else if ($0 ~ /__do_sys_flock/) c = "flock"
        else if ($0 ~ /io_cqring_wait|schedule/) c = "io_uring wait and scheduler"
        else if ($0 ~ /io_uring|io_submit|io_issue/) c = "other io_uring"
        else if ($0 ~ /serde_json|httparse|rinha_api::(http|json|body|route)/) c = "HTTP parsing and JSON"
        else if ($0 ~ /espora::/) c = "espora (user space)"
        else if ($0 ~ /monoio::/) c = "monoio and handlers (user space)"
        share[c] += w }
        END { for (c in share) printf "    %5.1f%%  %s\n", 100 * share[c] / total, c }' "$1" | sort -rn
}

for name in rinha-lb rinha-api-1 rinha-api-2; do
    pid=$(stack_pids "$name")
    svg=$here/flamegraphs/$mode-$name.svg
    # The folded stacks (one line per distinct stack, with its weight) stay next to the SVG
    # for grep and inferno-diff-folded.
    perf script --no-inline -i "$work/perf.data" --pid "$pid" 2>/dev/null |
        inferno-collapse-perf --all >"${svg%.svg}.folded"
    inferno-flamegraph --title "$name, reference mix, $mode, $(date -u +%Y-%m-%d)" \
        --width 1600 <"${svg%.svg}.folded" >"$svg"
    echo "bench: $svg" >&2
    summarise "${svg%.svg}.folded" >&2
done
