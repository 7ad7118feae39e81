#!/usr/bin/env bash
# Soak: the reference load mix at twice its peak rate for a long time (default 10 minutes) through
# the whole stack, reporting resident memory at the start and at the end, errors and p99.
#
#   scripts/soak.sh [--local|--compose]
#
# The stack is the compose stack (with its CPU and memory limits) when a Docker engine answers,
# otherwise local processes started by ./run (two rinha-api behind rinha-lb over Unix sockets).
# --local or --compose forces one.
#
# Load: rinha-scenario has no rate multiplier, so two of them run the load phase side by side
# (--load-only), each at the reference peak rates: together 680 requests/s, every request on a
# new TCP connection, every answer checked (status, balance never below the limit).
#
# Memory: VmRSS (and its anonymous part; the rest is mostly the account files' shared mapping) of
# every server process, from /proc (for containers, the host pid docker inspect reports), at the
# start, every minute and at the end.
#
# Environment: SOAK_HOLD (default 10m), SOAK_RAMP (default 10s), SOAK_PORT (default: a free
# port from 19990), SOAK_THREADS (client threads per load process, default 256).
# Exit status: 0 when both load processes passed every check, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

hold=${SOAK_HOLD:-10m}
ramp=${SOAK_RAMP:-10s}
threads=${SOAK_THREADS:-256}
bin=$PWD/target/release
mode=auto
for arg in "$@"; do
    case "$arg" in
        --local) mode=local ;;
        --compose) mode=compose ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "soak: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$mode" = auto ]; then
    if docker info >/dev/null 2>&1; then mode=compose; else mode=local; fi
fi

say() { printf 'soak: %s\n' "$*"; }

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
require_tools ss awk

# Prints "name=RSS_KiB" for every server process, on one line.
rss_line() {
    local entry name pid rss out=""
    for entry in "${servers[@]}"; do
        name=${entry%%:*}
        pid=${entry#*:}
        rss=$(awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } END { print r "KiB(anon " a "KiB)" }' \
            "/proc/$pid/status" 2>/dev/null || echo gone)
        out+="$name=$rss "
    done
    echo "$out"
}

port=${SOAK_PORT:-$(free_port 19990)}
work=$(mktemp -d "${TMPDIR:-/tmp}/rinha-soak.XXXXXX")
servers=() loaders=()
run_pid="" project=""

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    [ "${#loaders[@]}" = 0 ] || kill "${loaders[@]}" 2>/dev/null || true
    if [ -n "$run_pid" ]; then
        kill -TERM "$run_pid" 2>/dev/null || true
        wait "$run_pid" 2>/dev/null || true
    fi
    if [ -n "$project" ]; then
        "${compose[@]}" -p "$project" down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

say "mode $mode, port $port, ramp $ramp then hold $hold at 2x the reference peak (680 requests/s)"
say "machine: $(nproc) CPUs, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release --locked --bin rinha-api --bin rinha-lb --bin espora --bin rinha-scenario

if [ "$mode" = local ]; then
    RINHA_PORT=$port RINHA_DATA_DIR=$work/data ./run --fresh --no-build >"$work/run.log" 2>&1 &
    run_pid=$!
    wait_ready "$port" 30 || { cat "$work/run.log" >&2; say "the local stack never answered"; exit 1; }
    for pid in $(pgrep -P "$run_pid"); do
        servers+=("$(cat "/proc/$pid/comm")#$pid:$pid")
    done
else
    find_compose
    project=rinhasoak$$
    docker/build-image.sh --from-host rinha-crebitos:latest >/dev/null
    RINHA_PORT=$port "${compose[@]}" -p "$project" up -d --no-build
    wait_ready "$port" 60 || { "${compose[@]}" -p "$project" logs --tail 50 >&2; say "the compose stack never answered"; exit 1; }
    for service in api01 api02 lb; do
        pid=$(docker inspect -f '{{.State.Pid}}' "$("${compose[@]}" -p "$project" ps -q "$service")")
        servers+=("$service:$pid")
    done
fi
say "servers: ${servers[*]}"
rss_start=$(rss_line)
say "RSS at start: $rss_start"

started=$(date +%s)
for seed in 1 2; do
    "$bin/rinha-scenario" --target "http://127.0.0.1:$port" --load-only --ramp "$ramp" \
        --hold "$hold" --threads "$threads" --timeout 10s --seed "$seed$started" \
        >"$work/load$seed.txt" 2>&1 &
    loaders+=($!)
done
failed=0
last_sample=$started
# kill -0 succeeds while any of the load processes runs.
while kill -0 "${loaders[@]}" 2>/dev/null; do
    sleep 2
    now=$(date +%s)
    if [ $((now - last_sample)) -ge 60 ]; then
        last_sample=$now
        say "t=$((now - started))s RSS: $(rss_line) load average $(cut -d' ' -f1-3 /proc/loadavg)"
    fi
done
for pid in "${loaders[@]}"; do wait "$pid" || failed=1; done
loaders=()
rss_end=$(rss_line)
elapsed=$(($(date +%s) - started))

for seed in 1 2; do
    say "load process $seed report:"
    sed 's/^/    /' "$work/load$seed.txt"
done
read -r requests errors p99 < <(awk '$1 == "all" { n += $2; ko += $3; if (p == "" || $8 + 0 > p + 0) p = $8 }
    END { print n + 0, ko + 0, p }' "$work/load1.txt" "$work/load2.txt")
echo
say "SUMMARY ($mode, ${elapsed} s of load)"
say "  requests $requests, errors (ko) $errors, worst p99 of the two load processes ${p99} ms"
say "  RSS start: $rss_start"
say "  RSS end:   $rss_end"
if [ "$failed" = 0 ]; then say "  every check passed"; else say "  FAILED: see the reports above"; fi
exit "$failed"
