#!/usr/bin/env bash
# Side-by-side benchmark of rinha-lb against nginx's TCP `stream` proxy and against the upstream
# directly. Needs wrk, nginx (Debian: nginx-light + libnginx-mod-stream) and a release build:
#   cargo build --release -p rinha-lb
# Usage: crates/lb/bench/run.sh [seconds per run] [repetitions] [connections]
# Upstreams are two nginx instances (one worker each) answering a fixed 3-byte body on
# 127.0.0.1:8081 and :8082, or, with UPSTREAM=api, two rinha-api instances on the same ports
# serving GET /clientes/1/extrato (needs target/release/rinha-api).
# Environment: WORKERS [1] worker threads of rinha-lb and worker processes of nginx stream (1 is
# what the deployment's 0.3-CPU quota gives rinha-lb); RATES ["20000:keepalive 5000:close"]
# fixed-rate rows measured with oha (open loop, latency corrected for coordinated omission;
# empty skips them and oha).
set -euo pipefail
SECONDS_PER_RUN=${1:-6}
REPS=${2:-3}
CONNS=${3:-32}
WORKERS=${WORKERS:-1}
RATES=${RATES-20000:keepalive 5000:close}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
LB=$ROOT/target/release/rinha-lb
WORK=$(mktemp -d /tmp/lbbench.XXXXXX)
PIDS=()
declare -A PROXY_PID
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

upstream_nginx() { # port
  cat > "$WORK/up$1.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/up$1.pid; error_log $WORK/up$1.err;
events { worker_connections 8192; }
http { access_log off; server { listen 127.0.0.1:$1 reuseport backlog=4096;
  keepalive_requests 10000000; location / { return 200 "ok\n"; } } }
CONF
  nginx -c "$WORK/up$1.conf" -p "$WORK" & PIDS+=($!)
}
upstream_api() { # port
  mkdir -p "$WORK/data"
  "$ROOT/target/release/rinha-api" --data-dir "$WORK/data" --listen 127.0.0.1:$1 --workers 1 2>>"$WORK/api.err" & PIDS+=($!)
}
nginx_stream() { # port upstream-ports...
  local port=$1; shift
  local servers=""; for p in "$@"; do servers="$servers server 127.0.0.1:$p;"; done
  cat > "$WORK/ng$port.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes $WORKERS; daemon off; pid $WORK/ng$port.pid; error_log $WORK/ng$port.err;
events { worker_connections 16384; }
stream { upstream api { $servers } server { listen 127.0.0.1:$port reuseport backlog=4096;
  proxy_pass api; proxy_connect_timeout 1s; tcp_nodelay on; } }
CONF
  nginx -c "$WORK/ng$port.conf" -p "$WORK" & PIDS+=($!); PROXY_PID[$port]=$!
}
rinha_lb() { # port driver splice upstream-ports...
  local port=$1 driver=$2 splice=$3; shift 3
  local args=(); for p in "$@"; do args+=(--upstream "127.0.0.1:$p"); done
  RINHA_DRIVER=$driver "$LB" --listen 127.0.0.1:$port --workers "$WORKERS" --splice "$splice" "${args[@]}" 2>>"$WORK/lb.err" & PIDS+=($!); PROXY_PID[$port]=$!
}
# CPU ticks (1/100 s) used so far by a process, its threads (io-wq workers included) and its
# children (nginx workers).
cpu_ticks() {
  local total=0 pid
  for pid in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo $total
}

if [ "${UPSTREAM:-nginx}" = api ]; then upstream_api 8081; upstream_api 8082; PATH_=/clientes/1/extrato
else upstream_nginx 8081; upstream_nginx 8082; PATH_=/; fi
nginx_stream 9101 8081;        nginx_stream 9102 8081 8082
rinha_lb 9111 auto op 8081;  rinha_lb 9112 auto op 8081 8082
rinha_lb 9121 auto direct 8081; rinha_lb 9122 auto direct 8081 8082
rinha_lb 9131 epoll auto 8081; rinha_lb 9132 epoll auto 8081 8082
sleep 1
TARGETS=("direct-1:8081" "nginx-1:9101" "lb-uring-op-1:9111" "lb-uring-dir-1:9121" "lb-epoll-op-1:9131"
         "nginx-2:9102" "lb-uring-op-2:9112" "lb-uring-dir-2:9122" "lb-epoll-op-2:9132")
# req/s and latency move a lot on a shared 2-core machine; the proxy's own CPU time per request
# (us/req, from /proc) is the steadier measure of what a balancer costs.
printf "%-9s %-15s %9s %9s %9s %8s\n" mode target req/s p50 p99 us/req
for mode in keepalive close; do
  header=(); [ $mode = close ] && header=(-H "Connection: close")
  for rep in $(seq "$REPS"); do
    for entry in "${TARGETS[@]}"; do
      name=${entry%%:*}; port=${entry##*:}
      pid=${PROXY_PID[$port]:-}
      before=0; [ -n "$pid" ] && before=$(cpu_ticks "$pid")
      out=$(wrk -t1 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency "${header[@]}" "http://127.0.0.1:$port$PATH_")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
      errs=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")
      total=$(awk '/requests in/ {print $1}' <<<"$out")
      cost=-; [ -n "$pid" ] && cost=$(( ($(cpu_ticks "$pid") - before) * 10000 / (total > 0 ? total : 1) ))
      printf "%-9s %-15s %9s %9s %9s %8s %s\n" $mode "$name" "$rps" "$p50" "$p99" "$cost" "$errs"
    done
  done
done

# Open loop: the same offered rate against each target, so latency differences are what each
# proxy adds rather than a consequence of different throughput.
[ -z "$RATES" ] && exit 0
echo
printf "%-9s %-15s %7s %9s %9s %9s %8s\n" mode target rate/s p50 p99 errors us/req
for entry_rate in $RATES; do
  rate=${entry_rate%%:*}; mode=${entry_rate##*:}
  flags=(); [ "$mode" = close ] && flags=(--disable-keepalive)
  for rep in $(seq "$REPS"); do
    for entry in "${TARGETS[@]}"; do
      name=${entry%%:*}; port=${entry##*:}
      case $name in *-op-*) continue ;; esac
      pid=${PROXY_PID[$port]:-}
      before=0; [ -n "$pid" ] && before=$(cpu_ticks "$pid")
      oha --no-tui -z "${SECONDS_PER_RUN}s" -q "$rate" -c "$CONNS" --latency-correction "${flags[@]}" \
        --output-format json -o "$WORK/oha.json" "http://127.0.0.1:$port$PATH_" >/dev/null 2>&1
      total=$(jq '[.statusCodeDistribution[]] | add // 0' "$WORK/oha.json")
      errors=$(jq '[.errorDistribution | to_entries[] | select(.key != "aborted due to deadline") | .value] | add // 0' "$WORK/oha.json")
      p50=$(jq '(.latencyPercentiles.p50 // 0) * 1e6 | floor' "$WORK/oha.json")
      p99=$(jq '(.latencyPercentiles.p99 // 0) * 1e6 | floor' "$WORK/oha.json")
      cost=-; [ -n "$pid" ] && cost=$(( ($(cpu_ticks "$pid") - before) * 10000 / (total > 0 ? total : 1) ))
      printf "%-9s %-15s %7s %7sus %7sus %9s %8s\n" "$mode" "$name" "$rate" "$p50" "$p99" "$errors" "$cost"
    done
  done
done
