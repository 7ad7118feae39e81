#!/bin/sh
# The test run inside each virtual machine of the kernel matrix (busybox sh), once per runtime
# driver: two rinha-api instances on one data directory of the ext4 disk, over Unix sockets,
# rinha-lb on TCP in front of them; the reference scenario (compressed); a second load during
# which one instance is killed with SIGKILL and started again; a clean stop; espora verify.
#
# Reads /km/config, which .ci/kernels.sh writes from the KERNELS_* variables its header
# describes: KM_DRIVERS (in order), KM_RAMP, KM_HOLD, KM_KILL_RAMP, KM_KILL_HOLD, KM_KILL_AFTER,
# KM_KILL_KO_PERCENT, KM_STEP_TIMEOUT (any one step: a scenario run, a start, a stop), and
# KM_BACKEND_EXPECT, the back end rinha-api's startup line must name as espora=X.
#
# Prints, for the host to read (one line each):
#   KM RESULT <driver> <check> PASS|FAIL|MISSING <details>
#   KM TIME <driver> <seconds>
#   KM STEP <driver> at <uptime> s: <what starts>
# and, indented, the scenario reports, espora verify's output and the logs of whatever failed.
# Exits 1 when any check failed.
# shellcheck source=/dev/null
. /km/config

bin=/km/bin
failed=0

uptime_now() { cut -d ' ' -f 1 /proc/uptime; }
seconds_since() { awk -v start="$1" -v end="$(uptime_now)" 'BEGIN { printf "%.1f", end - start }'; }

# result CHECK STATUS DETAILS...
result() {
    result_check=$1 result_status=$2
    shift 2
    echo "KM RESULT $driver $result_check $result_status $*"
    [ "$result_status" != FAIL ] || failed=1
}

# A progress line, with the guest's uptime.
step() { echo "KM STEP $driver at $(uptime_now) s: $*"; }

# Prints each file named indented, under a title.
show() {
    for shown in "$@"; do
        echo "  --- $shown"
        sed 's/^/  | /' "$shown" 2>/dev/null | tail -n 60
    done
}

# Waits for child $1, killing it (SIGKILL) when it runs longer than KM_STEP_TIMEOUT seconds
# from now; returns its exit status (137 when it had to be killed).
wait_bounded() {
    (sleep "$KM_STEP_TIMEOUT" && kill -9 "$1" 2>/dev/null) &
    watchdog=$!
    wait "$1"
    waited=$?
    kill "$watchdog" 2>/dev/null
    wait "$watchdog" 2>/dev/null
    return "$waited"
}

# Waits until rinha-api's health check answers 200 on address $1, at most KM_STEP_TIMEOUT s.
wait_ready() {
    deadline=$(($(cut -d . -f 1 /proc/uptime) + KM_STEP_TIMEOUT))
    until "$bin/rinha-api" --healthcheck "$1" 2>/dev/null; do
        [ "$(cut -d . -f 1 /proc/uptime)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# start_api N LOG: starts instance N; sets api<N>_pid.
api1_pid="" api2_pid=""
start_api() {
    "$bin/rinha-api" --driver "$driver" --data-dir "$data" --listen "unix:$run/api$1.sock" 2>"$2" &
    eval "api$1_pid=\$!"
}

# Every server's first line names the driver it runs: "... driver=X workers=...".
check_driver_lines() {
    wrong=""
    for log in "$run/api1.log" "$run/api2.log" "$run/lb.log"; do
        head -n 1 "$log" | grep -q " driver=$driver " || wrong="$wrong ${log##*/}"
    done
    if [ -z "$wrong" ]; then
        result driver PASS "every server reports driver=$driver"
    else
        result driver FAIL "not on $driver:$wrong"
        for log in $wrong; do show "$run/$log"; done
    fi
}

# Field $2 of the row named $1 in a rinha-scenario report $3 (2: count, 3: ko).
report_field() { awk -v name="$1" -v field="$2" '$1 == name { print $field; exit }' "$3"; }

run_scenario() {
    log=$run/scenario.log
    started=$(uptime_now)
    "$bin/rinha-scenario" --target "http://127.0.0.1:$port" --ramp "$KM_RAMP" \
        --hold "$KM_HOLD" --timeout 20s --wait 30s >"$log" 2>&1 &
    wait_bounded $!
    status=$?
    verdict=FAIL
    [ "$status" != 0 ] || verdict=PASS
    result scenario "$verdict" "exit $status, $(report_field all 2 "$log") requests, $(report_field all 3 "$log") ko, p99 $(report_field all 8 "$log") ms, $(seconds_since "$started") s"
    show "$log"
}

# Posts a credit of 1 to account 1 through the balancer; true on a 200.
post_credit() {
    body='{"valor": 1, "tipo": "c", "descricao": "kmatrix"}'
    printf 'POST /clientes/1/transacoes HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
        "${#body}" "$body" | nc -w 10 127.0.0.1 "$port" 2>/dev/null | head -n 1 | grep -q '^HTTP/1.1 200 '
}

# The second load, with instance 1 killed (SIGKILL) KM_KILL_AFTER seconds in and started again
# at once on the same socket and data directory.
run_kill_restart() {
    log=$run/scenario-kill.log
    "$bin/rinha-scenario" --target "http://127.0.0.1:$port" --load-only --ramp "$KM_KILL_RAMP" \
        --hold "$KM_KILL_HOLD" --timeout 20s --wait 30s >"$log" 2>&1 &
    load_pid=$!
    sleep "$KM_KILL_AFTER"
    kill -9 "$api1_pid"
    wait "$api1_pid"
    killed=$?
    started=$(uptime_now)
    start_api 1 "$run/api1-restarted.log"
    if wait_ready "unix:$run/api1.sock" && [ "$killed" = 137 ]; then
        result restart PASS "killed (status $killed), serving again after $(seconds_since "$started") s"
    else
        result restart FAIL "killed with status $killed (expected 137); restarted instance not ready"
        show "$run/api1-restarted.log"
    fi
    wait_bounded "$load_pid"
    status=$?
    count=$(report_field all 2 "$log")
    ko=$(report_field all 3 "$log")
    inconsistent=$(sed -n 's/^inconsistencies[^:]*: \([0-9]*\).*/\1/p' "$log" | head -n 1)
    # The report lists the first failures (up to 20): count them by kind.
    grep '^  - \[' "$log" >"$run/failures.log"
    unavailable=$(grep -c 'status 503' "$run/failures.log")
    unanswered=$(grep -c ': no answer: ' "$run/failures.log")
    other=$(grep -v -e 'status 503' -e ': no answer: ' "$run/failures.log" | grep -c .)
    # Afterwards every write must succeed again, on either instance (the balancer alternates).
    credited=0
    for _ in 1 2 3 4; do
        post_credit && credited=$((credited + 1))
    done
    details="exit $status, ${count:-?} requests, ${ko:-?} ko (allowed ${KM_KILL_KO_PERCENT}%; of those listed: $unavailable 503, $unanswered unanswered, $other other), ${inconsistent:-?} inconsistencies; afterwards $credited/4 credits answered 200"
    # Two kinds of failure are expected around the kill: no answer to requests in flight on the
    # killed instance, and a 503 to writers of the other instance that wait too long while the
    # restarted one recovers an account under its lock (seconds per account under TCG). Any other
    # failure, a balance below its limit, too many failures or a failed write afterwards fail.
    if [ -n "$count" ] && [ "$count" -gt 0 ] && [ -n "$ko" ] &&
        [ $((ko * 100)) -le $((count * KM_KILL_KO_PERCENT)) ] && [ "$inconsistent" = 0 ] &&
        [ "$other" = 0 ] && [ "$credited" = 4 ] &&
        "$bin/rinha-api" --healthcheck "unix:$run/api1.sock" 2>/dev/null &&
        "$bin/rinha-api" --healthcheck "unix:$run/api2.sock" 2>/dev/null; then
        result kill-load PASS "$details"
    else
        result kill-load FAIL "$details"
    fi
    show "$log"
    # What the servers said besides their first line (503s, recovery, ...).
    for each in api1.log api1-restarted.log api2.log lb.log; do
        [ "$(wc -l <"$run/$each")" -le 1 ] || show "$run/$each"
    done
}

# SIGTERM to every server; each must exit 0 within KM_STEP_TIMEOUT seconds.
stop_all() {
    kill -TERM "$lb_pid" "$api1_pid" "$api2_pid" 2>/dev/null
    statuses=""
    for pid in "$lb_pid" "$api1_pid" "$api2_pid"; do
        wait_bounded "$pid"
        statuses="$statuses $?"
    done
    if [ "$statuses" = " 0 0 0" ]; then
        result stop PASS "lb, api1, api2 exited 0 on SIGTERM"
    else
        result stop FAIL "exit statuses (lb api1 api2):$statuses"
        show "$run/lb.log" "$run/api1-restarted.log" "$run/api2.log"
    fi
}

verify_files() {
    if "$bin/espora" verify "$data" >"$run/verify.log" 2>&1; then
        result verify PASS "$(grep -c ': ok' "$run/verify.log") account files sound"
    else
        result verify FAIL "espora verify exited $?"
    fi
    show "$run/verify.log"
}

# rinha-api names the back end of espora's durable path in its startup line: espora=X.
check_backend() {
    found=$(cat "$run"/api*.log | sed -n 's/^rinha-api .* espora=\([a-z_]*\).*/\1/p' | sort -u | tr '\n' ' ')
    found=${found% }
    if [ -z "$found" ]; then
        result backend FAIL "no espora=... in the API's startup line"
    elif [ "$found" = "$KM_BACKEND_EXPECT" ]; then
        result backend PASS "espora=$found"
    else
        result backend FAIL "espora=$found, expected $KM_BACKEND_EXPECT"
    fi
}

# Nothing in the kernel's log since the last check may be an oops, a BUG, a WARNING or a
# process killed by a fault.
check_kernel_log() {
    dmesg -c >"$run/dmesg.log" 2>&1
    if grep -qE 'BUG:|Oops|WARNING:|Call Trace|general protection|segfault|trap invalid opcode' "$run/dmesg.log"; then
        result kernel-log FAIL "the kernel logged a fault"
        show "$run/dmesg.log"
    else
        result kernel-log PASS "no oops, BUG, WARNING or fault"
    fi
}

run_driver() {
    driver=$1 port=$2
    began=$(uptime_now)
    run=/run/km-$driver
    data=/mnt/data/$driver
    rm -rf "$run" "$data"
    mkdir -p "$run" "$data"
    step "starting api1, api2 and the balancer on 127.0.0.1:$port"
    start_api 1 "$run/api1.log"
    start_api 2 "$run/api2.log"
    "$bin/rinha-lb" --driver "$driver" --listen "127.0.0.1:$port" \
        --upstream "unix:$run/api1.sock" --upstream "unix:$run/api2.sock" 2>"$run/lb.log" &
    lb_pid=$!
    if wait_ready "unix:$run/api1.sock" && wait_ready "unix:$run/api2.sock" &&
        wait_ready "127.0.0.1:$port"; then
        result ready PASS "both instances and the balancer answering after $(seconds_since "$began") s"
    else
        result ready FAIL "api1, api2 or the balancer on 127.0.0.1:$port not answering after $KM_STEP_TIMEOUT s"
        show "$run/api1.log" "$run/api2.log" "$run/lb.log"
    fi
    check_driver_lines
    step "scenario (ramp $KM_RAMP, hold $KM_HOLD)"
    run_scenario
    step "load (ramp $KM_KILL_RAMP, hold $KM_KILL_HOLD) with instance 1 killed after $KM_KILL_AFTER s"
    run_kill_restart
    step "stopping"
    stop_all
    step "espora verify"
    verify_files
    check_backend
    check_kernel_log
    echo "KM TIME $driver $(seconds_since "$began")"
}

port=9990
for each in $KM_DRIVERS; do
    port=$((port + 1))
    run_driver "$each" "$port"
done
exit "$failed"
