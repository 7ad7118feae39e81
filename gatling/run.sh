#!/usr/bin/env bash
# Runs the reference load test (simulations/crebitos/CrebitosSimulation.scala) with your Gatling
# 3.10 bundle, the way the challenge's own runner does: wait until the API answers, run Gatling,
# print where the HTML report is.
#
#   GATLING_HOME=/path/to/gatling-charts-highcharts-bundle-3.10.x gatling/run.sh
#
# Environment: GATLING_HOME (required), RINHA_TARGET (default http://localhost:9999),
# RINHA_RAMP_SECONDS and RINHA_HOLD_SECONDS (default 120 each, the reference; shorter values
# compress the test and keep the peak rates), RINHA_WAIT_SECONDS (default 60).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

: "${GATLING_HOME:?set GATLING_HOME to your Gatling 3.10 bundle (the directory holding bin/gatling.sh)}"
[ -x "$GATLING_HOME/bin/gatling.sh" ] || { echo "run.sh: $GATLING_HOME/bin/gatling.sh not found" >&2; exit 1; }
export RINHA_TARGET=${RINHA_TARGET:-http://localhost:9999}
wait_s=${RINHA_WAIT_SECONDS:-60}
results=$here/results

# Like the reference runner: poll the statement of account 1 until it answers 200.
echo "run.sh: waiting for $RINHA_TARGET/clientes/1/extrato (at most ${wait_s} s)"
deadline=$(( $(date +%s) + wait_s ))
until curl -fsS -o /dev/null "$RINHA_TARGET/clientes/1/extrato" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "run.sh: $RINHA_TARGET did not answer within ${wait_s} s" >&2
        exit 1
    fi
    sleep 1
done

mkdir -p "$results"
status=0
"$GATLING_HOME/bin/gatling.sh" -rm local \
    -s crebitos.CrebitosSimulation \
    -rd "crebitos: reference load test" \
    -sf "$here/simulations" \
    -rf "$results" || status=$?

report=$(ls -1dt "$results"/*/ 2>/dev/null | head -1)
if [ -n "$report" ]; then
    echo "run.sh: report: ${report}index.html"
fi
exit "$status"
