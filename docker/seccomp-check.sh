#!/usr/bin/env bash
# Checks docker/seccomp.json against what the shipped binaries really call. Runs rinha-api,
# rinha-lb and espora under `strace -f` through the paths they take in a container, and fails
# when one of them made a system call that the profile does not allow.
#
#   docker/seccomp-check.sh [--image IMAGE | --bin DIR] [--profile FILE] [--print]
#
#   --image IMAGE   trace the binaries of that image (docker create + cp), the ones the compose
#                   files run; then check as each service of both compose files, with its own
#                   security options, that the filter is in force (docker/seccomp-probe.rs)
#   --bin DIR       trace rinha-api, rinha-lb and espora from DIR (default target/release)
#   --profile FILE  the profile to check (default docker/seccomp.json)
#   --print         also list every system call seen, with the programs that made it
#
# The paths (docker/README.md lists them and says how the profile is made): both I/O drivers and
# both splice modes, account files created and recovered after a SIGKILL, Unix and TCP listeners,
# the reference scenario (rinha-scenario from target/release, not traced) through the balancer,
# odd requests, scrapes, health checks, a down upstream, the SIGTERM drain (each server must exit
# 0) and the espora tool. System calls behind a path this run does not take stay unseen, so the
# profile also allows the close relatives glibc or Rust's standard library pick elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

image='' bin=$PWD/target/release profile=docker/seccomp.json print=0
while [ $# -gt 0 ]; do
    case $1 in
        --image) image=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --profile) profile=$2; shift 2 ;;
        --print) print=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "seccomp-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
scenario=$PWD/target/release/rinha-scenario
[ -x "$scenario" ] || { echo "seccomp-check: $scenario is missing (cargo build --release)" >&2; exit 1; }
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
require_tools strace curl pkill

work=$(mktemp -d "${TMPDIR:-/tmp}/seccomp-check.XXXXXX")
pids=()
cleanup() {
    local status=$?
    [ "${#pids[@]}" -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
    return "$status"
}
trap cleanup EXIT

if [ -n "$image" ]; then
    container=$(docker create "$image")
    mkdir -p "$work/bin"
    for name in rinha-api rinha-lb espora; do
        docker cp "$container:/$name" "$work/bin/$name" >/dev/null
    done
    docker rm "$container" >/dev/null
    bin=$work/bin
fi
for name in rinha-api rinha-lb espora; do
    [ -x "$bin/$name" ] || { echo "seccomp-check: $bin/$name is missing" >&2; exit 1; }
done

traces=0
# Runs $2... under strace and waits; the trace is named after $1.
traced() {
    local name=$1
    shift
    traces=$((traces + 1))
    strace -f -qq -o "$work/trace.$BASHPID-$traces.$name" "$@"
}

# The same for a server, started with `spawn NAME CMD... &`: the background subshell becomes
# strace (its BASHPID keeps the file names apart), so $! is strace's pid, the server its child.
spawn() {
    local name=$1
    shift
    exec strace -f -qq -o "$work/trace.$BASHPID.$name" "$@"
}

# Sends SIGTERM to the servers traced by the straces named by pid and checks that each exits 0
# (strace exits with its program's status).
stop() {
    local pid status
    for pid in "$@"; do
        pkill -TERM -P "$pid"
    done
    for pid in "$@"; do
        status=0
        wait "$pid" || status=$?
        [ "$status" = 0 ] || { echo "seccomp-check: a server exited $status after SIGTERM" >&2; exit 1; }
    done
    pids=()
}

# Malformed and odd requests straight to an instance: each must get an answer, not a crash.
odd_requests() {
    local port=$1 request answer
    for request in 'GARBAGE\r\n\r\n' 'GET /clientes/9/extrato HTTP/1.1\r\nHost: x\r\n\r\n' \
        'HEAD /clientes/1/extrato HTTP/1.1\r\nHost: x\r\n\r\n' \
        'POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n{x}'; do
        exec 3<>"/dev/tcp/127.0.0.1/$port"
        # shellcheck disable=SC2059
        printf "$request" >&3
        answer=$(timeout 5 head -c 12 <&3) || true
        [[ $answer =~ ^HTTP/1.1\ [245] ]] || { echo "seccomp-check: no answer to $request" >&2; exit 1; }
        exec 3>&-
    done
}

# (Captured, not piped: `grep -q` leaves at the first match and a pipe would fail the writer.)
scrape() {
    local body
    if ! body=$(curl -fsS "http://127.0.0.1:$1/metrics") || ! grep -q '^# TYPE' <<<"$body"; then
        echo "seccomp-check: no metrics on port $1" >&2
        exit 1
    fi
}

# One stack per driver: two instances (Unix and TCP listeners, metrics), then the balancer in each
# splice mode in front of them, the scenario through it, scrapes, health checks, the drain.
run_driver() {
    local driver=$1 data=$work/data-$1 api1 api2 lb mode p1 p2 m1 m2 pl ml load
    p1=$(free_port 21000) m1=$(free_port $((p1 + 1))) p2=$(free_port $((m1 + 1)))
    m2=$(free_port $((p2 + 1)))
    spawn "api-$driver" "$bin/rinha-api" --driver "$driver" --workers 2 --data-dir "$data" \
        --listen "unix:$work/a1.sock" --listen "127.0.0.1:$p1" --metrics "127.0.0.1:$m1" 2>/dev/null &
    api1=$!
    spawn "api-$driver" "$bin/rinha-api" --driver "$driver" --workers 2 --data-dir "$data" \
        --listen "unix:$work/a2.sock" --listen "127.0.0.1:$p2" --metrics "127.0.0.1:$m2" 2>/dev/null &
    api2=$!
    pids=("$api1" "$api2")
    wait_ready "unix:$work/a1.sock" 20
    wait_ready "unix:$work/a2.sock" 20
    traced healthcheck "$bin/rinha-api" --healthcheck "unix:$work/a1.sock"
    traced healthcheck "$bin/rinha-api" --healthcheck "127.0.0.1:$p2"
    odd_requests "$p1"
    for mode in direct op; do
        pl=$(free_port $((m2 + 1))) ml=$(free_port $((pl + 1)))
        spawn "lb-$driver-$mode" "$bin/rinha-lb" --driver "$driver" --splice "$mode" --workers 2 \
            --listen "127.0.0.1:$pl" --metrics "127.0.0.1:$ml" \
            --upstream "unix:$work/a1.sock" --upstream "127.0.0.1:$p2" 2>/dev/null &
        lb=$!
        pids+=("$lb")
        wait_ready "$pl" 20
        traced healthcheck "$bin/rinha-lb" --healthcheck "127.0.0.1:$pl"
        # The whole scenario on the fresh files of the first mode, then its load alone.
        load=(--ramp 2s)
        [ "$mode" = direct ] || load=(--ramp 1s --load-only)
        "$scenario" --target "http://127.0.0.1:$pl" "${load[@]}" --hold 2s >"$work/scenario.txt" 2>&1 ||
            { cat "$work/scenario.txt"; echo "seccomp-check: the scenario failed" >&2; exit 1; }
        scrape "$m1"
        scrape "$m2"
        scrape "$ml"
        stop "$lb"
        pids=("$api1" "$api2")
    done
    # An upstream that is down: the client is closed, the balancer marks it and carries on.
    pl=$(free_port $((m2 + 1)))
    spawn "lb-$driver-down" "$bin/rinha-lb" --driver "$driver" --listen "127.0.0.1:$pl" \
        --upstream "unix:$work/missing.sock" 2>/dev/null &
    lb=$!
    pids+=("$lb")
    until bash -c "exec 3<>/dev/tcp/127.0.0.1/$pl" 2>/dev/null; do sleep 0.05; done
    curl -sS -m 5 "http://127.0.0.1:$pl/clientes/1/extrato" >/dev/null 2>&1 || true
    stop "$api1" "$api2" "$lb"
}

# Reopening existing files, and recovery after a SIGKILL while appends are in flight.
run_recovery() {
    local data=$work/data-io_uring api port i
    port=$(free_port 21100)
    spawn api-recovery "$bin/rinha-api" --data-dir "$data" --listen "127.0.0.1:$port" 2>/dev/null &
    api=$!
    pids=("$api")
    wait_ready "$port" 20
    for i in $(seq 1 40); do
        curl -s -m 5 -o /dev/null -H 'Content-Type: application/json' \
            -d '{"valor": 1, "tipo": "c", "descricao": "x"}' \
            "http://127.0.0.1:$port/clientes/$((i % 5 + 1))/transacoes" &
    done
    sleep 0.05
    pkill -KILL -P "$api"
    wait "$api" 2>/dev/null || true
    wait
    spawn api-recovery "$bin/rinha-api" --data-dir "$data" --listen "127.0.0.1:$port" 2>/dev/null &
    api=$!
    pids=("$api")
    wait_ready "$port" 20
    stop "$api"
}

run_tool() {
    local file
    traced espora "$bin/espora" init "$work/tool" --account 1:1000 --ring-records 64 >/dev/null
    traced espora "$bin/espora" verify "$work/data-epoll" >/dev/null
    file=$work/data-epoll/account-1.espora
    traced espora "$bin/espora" dump "$file" >/dev/null
    traced espora "$bin/espora" dump --json "$file" >/dev/null
    traced espora "$bin/espora" probe-disk --count 20 --interval-ms 1 "$work" >/dev/null
    # Refusals: each must fail.
    if traced espora "$bin/espora" verify "$work/absent" >/dev/null 2>&1 ||
        traced refused "$bin/rinha-api" --no-such-flag 2>/dev/null ||
        traced refused "$bin/rinha-lb" --no-such-flag 2>/dev/null; then
        echo "seccomp-check: a refused command exited 0" >&2
        exit 1
    fi
    traced refused "$bin/rinha-api" --help >/dev/null
}

# The probe in the image, as each service of both compose files: `compose run` applies the
# service's security options, so this checks the shipped files, not a copy of their options.
run_probe() {
    local compose file service project=seccompprobe$$
    find_compose
    mkdir -p "$work/probe"
    rustc --edition 2021 -O -C target-feature=+crt-static -o "$work/probe/seccomp-probe" \
        docker/seccomp-probe.rs
    # The services run as uid 10001.
    chmod 755 "$work" "$work/probe"
    for file in docker-compose.yml docker-compose.bridge.yml; do
        for service in api01 lb; do
            echo "seccomp-check: the probe as $service of $file"
            if ! "${compose[@]}" -f "$file" -p "$project" run --rm --no-deps \
                -v "$work/probe:/probe:ro" "$service" /probe/seccomp-probe 2>"$work/compose.log"; then
                cat "$work/compose.log" >&2
                "${compose[@]}" -f "$file" -p "$project" down -v >/dev/null 2>&1 || true
                echo "seccomp-check: the filter is not what $profile says in $file's $service" >&2
                exit 1
            fi
        done
        "${compose[@]}" -f "$file" -p "$project" down -v >/dev/null 2>&1
    done
}

echo "seccomp-check: tracing $bin/{rinha-api,rinha-lb,espora} against $profile"
run_driver io_uring
run_driver epoll
run_recovery
run_tool

python3 - "$profile" "$print" "$work"/trace.* <<'EOF'
import collections, json, re, sys

profile_path, show = sys.argv[1], sys.argv[2] == "1"
with open(profile_path) as f:
    profile = json.load(f)
# A call is accounted for when the profile allows it, or refuses it by a rule of its own (a call
# the program has a fallback for, clone3 for one), rather than by the default.
allowed, refused = set(), set()
for rule in profile["syscalls"]:
    (allowed if rule["action"] == "SCMP_ACT_ALLOW" else refused).update(rule["names"])

# "1234 name(args..." starts a call; "<... name resumed>" continues one and names nothing new.
call = re.compile(r"^\d+\s+([a-z_][a-z0-9_]*)\(")
seen = collections.defaultdict(set)
for path in sys.argv[3:]:
    program = path.rsplit(".", 1)[-1]
    with open(path) as f:
        for line in f:
            m = call.match(line)
            if m:
                seen[m.group(1)].add(program)

missing = sorted(name for name in seen if name not in allowed | refused)
if show:
    for name in sorted(seen):
        mark = " " if name in allowed else "-" if name in refused else "!"
        print(f"{mark} {name:24} {' '.join(sorted(seen[name]))}")
print(f"seccomp-check: {len(seen)} system calls seen in {len(sys.argv) - 3} traces; "
      f"{profile_path} allows {len(allowed)} and refuses {len(refused)} by name: "
      f"{len(seen.keys() & allowed)} seen allowed, {len(seen.keys() & refused)} seen refused "
      f"({', '.join(sorted(seen.keys() & refused)) or 'none'})")
if missing:
    for name in missing:
        print(f"seccomp-check: NOT ALLOWED: {name} (made by {', '.join(sorted(seen[name]))})")
    sys.exit(1)
EOF

[ -z "$image" ] || run_probe
