#!/usr/bin/env bash
# rinha-lb alone, side by side with nginx's TCP `stream` proxy and with the upstream reached
# directly, in each of rinha-lb's modes:
#
#   bench/lb.sh [seconds per run] [repetitions] [connections]     (defaults: 6 3 32)
#
# Upstreams: two nginx instances (one worker each) answering a fixed 3-byte body, or with
# UPSTREAM=api two rinha-api instances (one worker each) serving GET /clientes/1/extrato, on TCP.
# In front of one and of two of them: nginx stream, and rinha-lb with io_uring and
# IORING_OP_SPLICE (uring-op), io_uring and direct splice (uring-dir, the default) and epoll
# (epoll-op). wrk -t1 runs against each, keep-alive then `Connection: close`, repetitions
# interleaved, then oha at fixed rates; each row also shows the proxy's own CPU time per request
# (us/req, from /proc), the steadier measure on a shared machine. crates/lb/README.md says more.
# Builds the release binaries and installs what is missing (scripts/setup.sh bench, oha).
#
# Environment: WORKERS [1] worker threads of rinha-lb and worker processes of nginx stream (1 is
# what the deployment's 0.3-CPU quota gives rinha-lb); RATES ["20000:keepalive 5000:close"] the
# fixed-rate rows (empty skips them and oha); UPSTREAM [nginx] or api.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

seconds=${1:-6}
reps=${2:-3}
connections=${3:-32}
lb_workers=${WORKERS:-1}
api_workers=1
rates=${RATES-20000:keepalive 5000:close}
bin=$root/target/release

# oha only for the fixed-rate rows.
bash scripts/setup.sh bench ${rates:+oha}
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

# Each target as name:port:pid, the pid whose CPU time is the proxy's (none for direct).
targets=("direct-1:$up1:")
add_target() { targets+=("$1:$2:${stack[-1]#* }"); }
port=9100
for upstreams in 1 2; do
    servers=("127.0.0.1:$up1")
    [ "$upstreams" = 2 ] && servers+=("127.0.0.1:$up2")
    port=$(free_port $((port + 1)))
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
done
for entry in "${targets[@]}"; do
    IFS=: read -r _ port _ <<<"$entry"
    bench_wait_ready "$port"
done
echo "machine: $(bench_machine)"

printf "%-9s %-15s %9s %9s %9s %8s\n" mode target req/s p50 p99 us/req
for mode in keepalive close; do
    header=()
    [ "$mode" = close ] && header=(-H "Connection: close")
    for _ in $(seq "$reps"); do
        for entry in "${targets[@]}"; do
            IFS=: read -r name port pid <<<"$entry"
            before=$(cpu_ticks ${pid:+"$pid"})
            out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency ${header[@]+"${header[@]}"} \
                "http://127.0.0.1:$port$path")
            read -r rps p50 p99 total errors < <(awk '/Requests\/sec/ { rps = $2 } $1 == "50%" { p50 = $2 }
                $1 == "99%" { p99 = $2 } /requests in/ { total = $1 } /Non-2xx|Socket errors/ { errors = errors $0 " " }
                END { print rps, p50, p99, total, errors }' <<<"$out")
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
            IFS=: read -r name port pid <<<"$entry"
            case $name in *-op-*) continue ;; esac
            before=$(cpu_ticks ${pid:+"$pid"})
            oha --no-tui -z "${seconds}s" -q "$rate" -c "$connections" --latency-correction \
                ${keepalive[@]+"${keepalive[@]}"} --output-format json -o "$work/oha.json" \
                "http://127.0.0.1:$port$path" >/dev/null 2>&1
            read -r total errors p50 p99 < <(jq -r '[([.statusCodeDistribution[]] | add // 0),
                ([.errorDistribution | to_entries[] | select(.key != "aborted due to deadline") | .value] | add // 0),
                ((.latencyPercentiles.p50 // 0) * 1e6 | floor), ((.latencyPercentiles.p99 // 0) * 1e6 | floor)] | @tsv' "$work/oha.json")
            cost=-
            [ -n "$pid" ] && cost=$((($(cpu_ticks "$pid") - before) * 10000 / (total > 0 ? total : 1)))
            printf "%-9s %-15s %7s %7sus %7sus %9s %8s\n" "$mode" "$name" "$rate" "$p50" "$p99" "$errors" "$cost"
        done
    done
done
