#!/usr/bin/env bash
# One rinha-api instance alone (no balancer) under wrk and the reference mix (bench/mix.lua, as
# in bench/run.sh, which compares whole stacks side by side): keep-alive, then one connection per
# request. Builds the release binary and installs wrk when missing (scripts/setup.sh wrk).
#
#   bench/api.sh [CONNECTIONS] [DURATION]     (defaults: 64 20s)
#
# Environment: RINHA_DRIVER (auto|io_uring|epoll) and RINHA_WORKERS, read by rinha-api itself;
# PORT [9999].
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

connections=${1:-64}
duration=${2:-20s}
port=${PORT:-9999}
bin=$root/target/release

bash scripts/setup.sh wrk
cargo build --quiet --release --locked --bin rinha-api
work=$(mktemp -d /tmp/rinha-api-bench.XXXXXX)
trap 'stop_stack; rm -rf "$work"' EXIT
start_api rinha-api "127.0.0.1:$port"
bench_wait_ready "$port"
head -1 "$work/rinha-api.err"
echo "machine: $(bench_machine)"
for header in "" "Connection: close"; do
    echo "== ${header:-keep-alive}, $connections connections, $duration"
    wrk -t2 -c"$connections" -d"$duration" --latency ${header:+-H "$header"} -s "$here/mix.lua" "http://127.0.0.1:$port"
done
