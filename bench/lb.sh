#!/usr/bin/env bash
# rinha-lb alone, side by side with nginx's TCP `stream` proxy and with the upstream reached
# directly, in each of rinha-lb's modes:
#
#   bench/lb.sh [seconds per run] [repetitions] [connections]     (defaults: 6 3 32)
#
# Upstreams are two nginx instances (one worker each) answering a fixed 3-byte body, or, with
# UPSTREAM=api, two rinha-api instances (one worker each) serving GET /clientes/1/extrato; all on
# TCP. In front of one and of two upstreams: nginx stream, and rinha-lb with io_uring and
# IORING_OP_SPLICE (uring-op), io_uring and direct splice (uring-dir, the default) and epoll
# (epoll-op). wrk -t1 --latency runs against each, keep-alive then `Connection: close`,
# repetitions interleaved; then oha at fixed rates (open loop, latency corrected for coordinated
# omission), so that latency is compared at the same offered load. Besides req/s and latency it
# prints the proxy's own CPU time per request (us/req, from /proc: threads, io-wq workers and
# nginx workers included), the steadier measure on a shared machine.
#
# Builds the release binaries and installs what is missing (scripts/setup.sh bench, and oha for
# the fixed-rate rows). Environment: WORKERS [1] worker threads of rinha-lb and worker
# processes of nginx stream (1 is what the deployment's 0.3-CPU quota gives rinha-lb); RATES
# ["20000:keepalive 5000:close"] the fixed-rate rows (empty skips them and oha); UPSTREAM
# [nginx] or api.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"

seconds=${1:-6}
reps=${2:-3}
connections=${3:-32}
lb_workers=${WORKERS:-1}
api_workers=1
rates=${RATES-20000:keepalive 5000:close}
open_loop=0
[ -n "$rates" ] && open_loop=1
bin=$root/target/release
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

# oha only for the fixed-rate rows.
if [ "$open_loop" = 1 ]; then bash scripts/setup.sh bench oha; else bash scripts/setup.sh bench; fi
cargo build --quiet --release --locked --bin rinha-api --bin rinha-lb
work=$(mktemp -d /tmp/rinha-lb-bench.XXXXXX)
chmod 755 "$work"
trap 'stop_stack; rm -rf "$work"' EXIT

up1=$(free_port 8081)
up2=$(free_port $((up1 + 1)))
if [ "${UPSTREAM:-nginx}" = api ]; then
    start_api api-1 "127.0.0.1:$up1"
    start_api api-2 "127.0.0.1:$up2"
    path=/clientes/1/extrato
else
    start_nginx_fixed nginx-up-1 "$up1" text/plain 'ok\n'
    start_nginx_fixed nginx-up-2 "$up2" text/plain 'ok\n'
    path=/
fi
# Both answer before any proxy starts, so that no proxy marks one down for its back-off.
bench_wait_ready "$up1"
bench_wait_ready "$up2"

# Each target: name, port and the pid whose CPU time is the proxy's (none for direct).
targets=()
declare -A proxy_pid
add_target() {
    local entry=${stack[-1]}
    targets+=("$1:$2")
    proxy_pid[$2]=${entry#* }
}
targets+=("direct-1:$up1")
next=$(free_port 9101)
for upstreams in 1 2; do
    servers=("127.0.0.1:$up1")
    [ "$upstreams" = 2 ] && servers+=("127.0.0.1:$up2")
    port=$next
    start_nginx_stream "nginx-$upstreams" "$port" "${servers[@]}"
    add_target "nginx-$upstreams" "$port"
    # name:driver:splice; the uring rows take the driver's default, io_uring where it works.
    for mode in uring-op:auto:op uring-dir:auto:direct epoll-op:epoll:auto; do
        IFS=: read -r name driver splice <<<"$mode"
        port=$(free_port $((port + 1)))
        lb_flags=(--driver "$driver" --splice "$splice")
        start_lb "lb-$name-$upstreams" "$port" "${servers[@]}"
        add_target "lb-$name-$upstreams" "$port"
    done
    next=$(free_port $((port + 1)))
done
for entry in "${targets[@]}"; do bench_wait_ready "${entry##*:}"; done
echo "machine: $(bench_machine)"

printf "%-9s %-15s %9s %9s %9s %8s\n" mode target req/s p50 p99 us/req
for mode in keepalive close; do
    header=()
    [ "$mode" = close ] && header=(-H "Connection: close")
    for _ in $(seq "$reps"); do
        for entry in "${targets[@]}"; do
            name=${entry%%:*} port=${entry##*:}
            pid=${proxy_pid[$port]:-}
            before=0
            [ -n "$pid" ] && before=$(cpu_ticks "$pid")
            out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency ${header[@]+"${header[@]}"} \
                "http://127.0.0.1:$port$path")
            rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
            p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
            p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
            errors=$(awk '/Non-2xx|Socket errors/ { printf "%s ", $0 }' <<<"$out")
            total=$(awk '/requests in/ { print $1 }' <<<"$out")
            cost=-
            [ -n "$pid" ] && cost=$((($(cpu_ticks "$pid") - before) * 10000 / (total > 0 ? total : 1)))
            printf "%-9s %-15s %9s %9s %9s %8s %s\n" "$mode" "$name" "$rps" "$p50" "$p99" "$cost" "$errors"
        done
    done
done

# Open loop: the same offered rate against each target, so latency differences are what each
# proxy adds rather than a consequence of different throughput. The op modes are left out.
[ -z "$rates" ] && exit 0
echo
printf "%-9s %-15s %7s %9s %9s %9s %8s\n" mode target rate/s p50 p99 errors us/req
for entry_rate in $rates; do
    rate=${entry_rate%%:*} mode=${entry_rate##*:}
    keepalive=()
    [ "$mode" = close ] && keepalive=(--disable-keepalive)
    for _ in $(seq "$reps"); do
        for entry in "${targets[@]}"; do
            name=${entry%%:*} port=${entry##*:}
            case $name in *-op-*) continue ;; esac
            pid=${proxy_pid[$port]:-}
            before=0
            [ -n "$pid" ] && before=$(cpu_ticks "$pid")
            oha --no-tui -z "${seconds}s" -q "$rate" -c "$connections" --latency-correction \
                ${keepalive[@]+"${keepalive[@]}"} --output-format json -o "$work/oha.json" \
                "http://127.0.0.1:$port$path" >/dev/null 2>&1
            total=$(jq '[.statusCodeDistribution[]] | add // 0' "$work/oha.json")
            errors=$(jq '[.errorDistribution | to_entries[] | select(.key != "aborted due to deadline") | .value] | add // 0' "$work/oha.json")
            p50=$(jq '(.latencyPercentiles.p50 // 0) * 1e6 | floor' "$work/oha.json")
            p99=$(jq '(.latencyPercentiles.p99 // 0) * 1e6 | floor' "$work/oha.json")
            cost=-
            [ -n "$pid" ] && cost=$((($(cpu_ticks "$pid") - before) * 10000 / (total > 0 ? total : 1)))
            printf "%-9s %-15s %7s %7sus %7sus %9s %8s\n" "$mode" "$name" "$rate" "$p50" "$p99" "$errors" "$cost"
        done
    done
done
