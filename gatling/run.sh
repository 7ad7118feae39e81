#!/usr/bin/env bash
# Runs the reference load test (simulations/crebitos/CrebitosSimulation.scala) with your Gatling
# 3.10 bundle, the way the challenge's own runner does: wait until the statement of account 1
# answers twice in a row (one request for each API instance behind the balancer), run Gatling,
# print where this run's HTML report is, and exit with Gatling's status.
#
#   GATLING_HOME=/path/to/gatling-charts-highcharts-bundle-3.10.x gatling/run.sh
#
# Environment: GATLING_HOME (required), RINHA_TARGET (default http://localhost:9999),
# RINHA_RAMP_SECONDS and RINHA_HOLD_SECONDS (default 120 each, the reference; shorter values
# compress the test and keep the peak rates), RINHA_WAIT_SECONDS (default 60).
#
# Every input is checked before Gatling starts (a JVM and a Scala compilation, then a refusal
# that is hard to read): the ramp and hold must be whole numbers of seconds, at least 1, the
# wait a whole number of seconds, the target http://HOST:PORT. Exit status: Gatling's own when
# it ran; 2 for a bad input or a missing tool; 3 when the API never answered.
#
# The report shows the challenge's 250 ms band (Gatling's default lower bound is 800 ms): the
# run passes -Dgatling.charting.indicators.lowerBound=250 to the JVM that runs the simulation,
# where a system property overrides every gatling.conf.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

fail() {
    echo "run.sh: $*" >&2
    exit 2
}

# Prints VALUE as a plain decimal number of seconds, or stops: NAME VALUE MINIMUM.
whole_seconds() {
    local name=$1 value=$2 minimum=$3
    if [[ ! $value =~ ^[0-9]{1,9}$ ]] || ((10#$value < minimum)); then
        fail "$name must be a whole number of seconds, at least $minimum (got '$value'; for example 20, not 20s)"
    fi
    echo $((10#$value))
}

[ -n "${GATLING_HOME:-}" ] || fail "set GATLING_HOME to your Gatling 3.10 bundle (the directory holding bin/gatling.sh)"
[ -x "$GATLING_HOME/bin/gatling.sh" ] || fail "$GATLING_HOME/bin/gatling.sh not found or not executable"
if [ -n "${JAVA_HOME:-}" ]; then
    [ -x "$JAVA_HOME/bin/java" ] || fail "JAVA_HOME is $JAVA_HOME, but $JAVA_HOME/bin/java is missing"
else
    command -v java >/dev/null || fail "no java on PATH (install a JDK, 21 was the reference's, or set JAVA_HOME)"
fi
command -v curl >/dev/null || fail "curl is needed to wait for the API"

target=${RINHA_TARGET:-http://localhost:9999}
[[ $target =~ ^https?://[^/[:space:]]+/?$ ]] || fail "RINHA_TARGET must be http://HOST:PORT, without a path (got '$target')"
export RINHA_TARGET=${target%/}
RINHA_RAMP_SECONDS=$(whole_seconds RINHA_RAMP_SECONDS "${RINHA_RAMP_SECONDS:-120}" 1)
RINHA_HOLD_SECONDS=$(whole_seconds RINHA_HOLD_SECONDS "${RINHA_HOLD_SECONDS:-120}" 1)
export RINHA_RAMP_SECONDS RINHA_HOLD_SECONDS
wait_s=$(whole_seconds RINHA_WAIT_SECONDS "${RINHA_WAIT_SECONDS:-60}" 0)
results=$here/results

# Like the reference runner, two statements in a row must answer 200 before Gatling starts: a
# round-robin balancer sends them to different instances, so both have answered once.
url=$RINHA_TARGET/clientes/1/extrato
echo "run.sh: warming up: waiting for two answers from $url (at most ${wait_s} s)"
deadline=$(($(date +%s) + wait_s))
answers() { curl -fsS --max-time 5 -o /dev/null "$url" 2>/dev/null; }
until answers && answers; do
    if (($(date +%s) >= deadline)); then
        echo "run.sh: $RINHA_TARGET did not answer twice within ${wait_s} s" >&2
        exit 3
    fi
    sleep 1
done

# A results directory of this run's own, so that the report named at the end is this run's and
# never an older one.
mkdir -p "$results"
run_dir=$(mktemp -d "$results/$(date +%Y%m%d-%H%M%S)-XXXX")
echo "run.sh: ramp ${RINHA_RAMP_SECONDS} s, hold ${RINHA_HOLD_SECONDS} s; results in $run_dir"
status=0
"$GATLING_HOME/bin/gatling.sh" -rm local \
    -s crebitos.CrebitosSimulation \
    -rd "crebitos: reference load test" \
    -sf "$here/simulations" \
    -rf "$run_dir" \
    -erjo "-Dgatling.charting.indicators.lowerBound=250" || status=$?

log=""
for candidate in "$run_dir"/*/simulation.log; do
    [ -f "$candidate" ] && log=$candidate
done
if [ -z "$log" ]; then
    rmdir "$run_dir" 2>/dev/null || true
    echo "run.sh: this run left no results (Gatling exit status $status)" >&2
    exit "$status"
fi
report_dir=$(dirname "$log")
if [ -f "$report_dir/index.html" ]; then
    echo "run.sh: report: $report_dir/index.html"
else
    echo "run.sh: no HTML report; the simulation log is $log" >&2
fi

# What the challenge's scoring reads: every line of simulation.log (a text file in Gatling 3.10)
# naming a ConsistenciaSaldoLimite check or an exact total is one inconsistency, and the share
# of all requests that were OK in under 250 ms (group1 of the report's stats) must be 98%.
count() { grep -c -F -- "$1" "$log" || true; }
within_limit=$(count "ConsistenciaSaldoLimite")
exact_totals=$(count "jmesPath(saldo.total).find.is")
echo "run.sh: inconsistencies as the official scoring counts them: $((within_limit + exact_totals))" \
    "($within_limit ConsistenciaSaldoLimite, $exact_totals jmesPath(saldo.total).find.is)"
stats=$report_dir/js/stats.json
if [ -f "$stats" ] && command -v jq >/dev/null; then
    figures=$(jq -r '[.stats.numberOfRequests.total, .stats.group1.count, .stats.group1.name] | @tsv' \
        "$stats" 2>/dev/null) || figures=""
    if [ -n "$figures" ]; then
        IFS=$'\t' read -r total fast band <<<"$figures"
        awk -v total="$total" -v fast="$fast" -v band="$band" 'BEGIN {
            share = total > 0 ? 100 * fast / total : 100
            printf "run.sh: OK and %s: %d of %d requests, %.2f%% (the SLA asks 98%%)\n", band, fast, total, share
        }'
        [ "$band" = "t < 250 ms" ] ||
            echo "run.sh: warning: the report's first band is '$band', not 't < 250 ms'" >&2
    fi
fi
exit "$status"
