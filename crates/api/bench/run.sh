#!/usr/bin/env bash
# Benchmarks one rinha-api instance directly (no balancer) with wrk and the reference mix
# (bench/mix.lua, shared with bench/run.sh, which compares the whole stack side by side):
# keep-alive, then one connection per request. Needs the Debian package `wrk`.
#   crates/api/bench/run.sh [CONNECTIONS] [DURATION]     (defaults: 64 20s)
# Environment: RINHA_DRIVER (auto|io_uring|epoll), RINHA_WORKERS, PORT (default 9999).
set -euo pipefail
cd "$(dirname "$0")/../../.."
connections=${1:-64}
duration=${2:-20s}
port=${PORT:-9999}
command -v wrk >/dev/null || { echo "bench: wrk not found (apt-get install wrk)" >&2; exit 1; }
cargo build --quiet --release -p rinha-api
data=$(mktemp -d /tmp/rinha-api-bench.XXXXXX)
workers=()
[[ -n "${RINHA_WORKERS:-}" ]] && workers=(--workers "$RINHA_WORKERS")
target/release/rinha-api --data-dir "$data" --listen "127.0.0.1:$port" "${workers[@]}" 2>"$data/stderr" &
server=$!
cleanup() { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 100); do
  grep -q driver= "$data/stderr" 2>/dev/null && break
  sleep 0.1
done
head -1 "$data/stderr"
echo "machine: $(nproc) CPUs, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== keep-alive, $connections connections, $duration"
wrk -t2 -c"$connections" -d"$duration" --latency -s bench/mix.lua "http://127.0.0.1:$port"
echo "== Connection: close, $connections connections, $duration"
wrk -t2 -c"$connections" -d"$duration" --latency -H 'Connection: close' \
  -s bench/mix.lua "http://127.0.0.1:$port"
