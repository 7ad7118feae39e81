# Shared by the scripts of bench/ (sourced, not run): starting and stopping the processes under
# test on loopback, and reading their CPU time and memory from /proc. Sets `here` (bench/) and
# `root` (the repository), where the scripts then run; expects `work` (a scratch directory) to be
# set before a process starts. The tools come from scripts/setup.sh, which each script calls first.
# shellcheck shell=bash disable=SC2154

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root" || exit

# Where cargo install put oha and inferno.
export PATH="$HOME/.cargo/bin:$PATH"

# Prints the machine in one line: CPUs, model, memory, kernel, load average.
bench_machine() {
    local model memory
    model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    memory=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
    echo "$(nproc) CPUs ($model), $memory, Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

# Processes started by these helpers, as "name pid" lines of the current stack.
stack=()

# Starts a rinha-api instance: name, listen address. Its stderr goes to $work/name.err, whose
# last line (RINHA_API_STATS=1) carries the append and fdatasync counts. The data directory is
# $data, else $work/data; the workers $api_workers, else rinha-api's own default.
start_api() {
    local workers=() metrics_flag=()
    [ -n "${api_workers:-}" ] && workers=(--workers "$api_workers")
    [ -n "${with_metrics:-}" ] && metrics_flag=(--metrics "127.0.0.1:$(metrics_port)")
    RINHA_API_STATS=1 "$bin/rinha-api" --data-dir "${data:-$work/data}" --listen "$2" \
        ${workers[@]+"${workers[@]}"} ${metrics_flag[@]+"${metrics_flag[@]}"} 2>"$work/$1.err" &
    stack+=("$1 $!")
}

# With $with_metrics set, each process started gets a free --metrics port, recorded in
# $work/metrics.ports so that scrape_metrics can reach them all.
metrics_port() {
    local port
    port=$(free_port $((20100 + RANDOM % 500)))
    echo "$port" >>"$work/metrics.ports"
    echo "$port"
}

# Scrapes every metrics port of the current stack once a second until killed (a monitoring
# system, only faster), so that the rows measure the scrapes too. One long-lived process, like a
# real scraper: a process per scrape (curl) would itself disturb the rows, as health checks did.
scrape_metrics() {
    exec python3 - "$work/metrics.ports" <<'PY'
import socket, sys, time
ports = [int(line) for line in open(sys.argv[1]) if line.strip()]
while True:
    time.sleep(1)
    for port in ports:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
                while s.recv(65536):
                    pass
        except OSError:
            pass
PY
}

# Starts rinha-lb: name, port on 127.0.0.1, then the upstreams; with $lb_workers workers and the
# flags of the array lb_flags, if set (--splice, --driver...). Its stderr goes to $work/name.err.
start_lb() {
    local name=$1 port=$2 args=() upstream
    shift 2
    for upstream in "$@"; do args+=(--upstream "$upstream"); done
    [ -n "${with_metrics:-}" ] && args+=(--metrics "127.0.0.1:$(metrics_port)")
    "$bin/rinha-lb" --listen "127.0.0.1:$port" --workers "$lb_workers" \
        ${lb_flags[@]+"${lb_flags[@]}"} "${args[@]}" 2>"$work/$name.err" &
    stack+=("$name $!")
}

# Starts nginx as the invoking user, so that its workers may reach the Unix sockets in $work:
# name, worker processes, the lines that must come first (load_module), then the rest.
start_nginx() {
    local name=$1 processes=$2 first=$3 rest=$4
    cat >"$work/$name.conf" <<CONF
$first
$([ "$(id -u)" = 0 ] && echo "user root root;")
worker_processes $processes; daemon off; pid $work/$name.pid; error_log $work/$name.err;
events { worker_connections 16384; }
$rest
CONF
    nginx -e "$work/$name.err" -p "$work" -c "$work/$name.conf" &
    stack+=("$name $!")
}

# Starts nginx as a plain TCP proxy (the `stream` module): name, port, then the upstreams
# (unix:/path or HOST:PORT), with as many workers as rinha-lb has ($lb_workers).
start_nginx_stream() {
    local name=$1 port=$2 servers="" upstream
    shift 2
    # An upstream that refuses is skipped for 1 s, as rinha-lb's default --down-backoff-ms
    # (nginx's default is 10 s, which a stack started a few milliseconds before its instances
    # would pay in full).
    for upstream in "$@"; do servers="$servers server $upstream fail_timeout=1s;"; done
    start_nginx "$name" "$lb_workers" "load_module /usr/lib/nginx/modules/ngx_stream_module.so;" "stream {
  upstream api { $servers }
  server { listen 127.0.0.1:$port reuseport backlog=4096; proxy_pass api;
           proxy_connect_timeout 1s; tcp_nodelay on; }
}"
}

# Starts nginx with one worker answering every request from memory with a fixed body: name,
# port, content type, body (in nginx's quoting: \n is a newline).
start_nginx_fixed() {
    start_nginx "$1" 1 "" "http {
  access_log off; keepalive_requests 100000000;
  server { listen 127.0.0.1:$2 reuseport backlog=4096;
    location / { default_type $3; return 200 '$4'; } }
}"
}

# Waits at most 20 s for the stack to answer on $1 (a port or unix:/path), printing the logs if
# it never does.
bench_wait_ready() {
    if ! wait_ready "$1" 20; then
        echo "bench: nothing answers on $1; logs:" >&2
        tail -n 5 "$work"/*.err >&2 || true
        return 1
    fi
}

# Stops the current stack with SIGTERM and waits for it.
stop_stack() {
    local entry
    for entry in "${stack[@]}"; do kill -TERM "${entry#* }" 2>/dev/null || true; done
    for entry in "${stack[@]}"; do wait "${entry#* }" 2>/dev/null || true; done
    stack=()
}

# The pids of the current stack's processes whose name starts with $1.
stack_pids() {
    local entry
    for entry in "${stack[@]}"; do
        case "$entry" in "$1"*) echo "${entry#* }" ;; esac
    done
}

# CPU time (clock ticks) used so far by the given processes, their threads (io_uring's io-wq
# workers included) and their direct children (nginx workers).
cpu_ticks() {
    local total=0 pid child
    for pid in "$@"; do
        for child in "$pid" $(pgrep -P "$pid" || true); do
            total=$((total + $(awk '{ print $14 + $15 }' "/proc/$child/stat" 2>/dev/null || echo 0)))
        done
    done
    echo "$total"
}

# The largest over the given processes of a /proc/PID/status field (kB), each process counted
# with its direct children (nginx's master and its workers add up).
memory_kb() {
    local field=$1 best=0 pid child total
    shift
    for pid in "$@"; do
        total=0
        for child in "$pid" $(pgrep -P "$pid" || true); do
            total=$((total + $(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$child/status" 2>/dev/null || echo 0)))
        done
        [ "$total" -gt "$best" ] && best=$total
    done
    echo "$best"
}
