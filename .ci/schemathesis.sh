#!/usr/bin/env bash
# docs/openapi.yaml against the real stack: schemathesis, a property-based fuzzer for OpenAPI
# documents from PyPI, sends what the document calls valid and invalid requests to the balancer
# in front of two instances, and fails on any finding.
#
#   bash .ci/schemathesis.sh
#
# Installs the pinned schemathesis (.ci/schemathesis/requirements.txt) into a virtual
# environment under the cargo target directory, once per change of that file; builds the release
# binaries (as .ci/e2e.sh does, so nothing is built twice); starts the stack as ./run does, on a
# fresh data directory; then runs every phase (the document's examples, coverage of each
# schema's edges and of undocumented methods, random fuzzing, and stateful sequences along the
# document's links) in both modes (valid and invalid data), with every check (`--checks all`,
# and the two of .ci/schemathesis/hooks.py), a fixed seed and a bounded number of examples per
# operation. Afterwards the processes must stop cleanly on SIGTERM, and `espora verify` must find
# the account files sound.
#
# Needs python3 with venv (`scripts/setup.sh schemathesis`, which .ci/run calls) and PyPI.
# Environment: SCHEMATHESIS_SEED (default 20240117), SCHEMATHESIS_MAX_EXAMPLES (per operation and
# phase, default 1000).
set -euo pipefail
cd "$(dirname "$0")/.."

seed=${SCHEMATHESIS_SEED:-20240117}
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-1000}
requirements=.ci/schemathesis/requirements.txt

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
require_tools schemathesis

banner() { printf '\n== schemathesis: %s\n' "$*"; }

target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin=$target_dir/release
venv=$target_dir/schemathesis/venv

banner "virtual environment $venv"
if ! cmp -s "$requirements" "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi
"$venv/bin/schemathesis" --version

banner "release build"
cargo build --release --locked

work=$(mktemp -d "${TMPDIR:-/tmp}/rinha-schemathesis.XXXXXX")
pids=()
stop() {
    trap - EXIT
    if [ "${#pids[@]}" -gt 0 ]; then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop EXIT

banner "stack: rinha-lb and two rinha-api on a fresh data directory"
port=$(free_port 9999)
for name in api01 api02; do
    "$bin/rinha-api" --data-dir "$work/data" --listen "unix:$work/$name.sock" 2>"$work/$name.log" &
    pids+=($!)
done
"$bin/rinha-lb" --listen "127.0.0.1:$port" \
    --upstream "unix:$work/api01.sock" --upstream "unix:$work/api02.sock" 2>"$work/lb.log" &
pids+=($!)
if ! wait_ready "$port" 30; then
    cat "$work"/*.log >&2
    echo "schemathesis: the stack did not answer on port $port" >&2
    exit 1
fi
cat "$work"/*.log

banner "run (seed $seed, at most $max_examples examples per operation and phase)"
started=$SECONDS
status=0
# No example database and no cache (schemathesis.toml): every run starts from the seed alone.
# What Hypothesis still writes goes to the work directory, not the tree.
HYPOTHESIS_STORAGE_DIRECTORY=$work/hypothesis "$venv/bin/schemathesis" --config-file .ci/schemathesis/schemathesis.toml --no-color \
    run docs/openapi.yaml --url "http://127.0.0.1:$port" \
    --checks all --mode all --phases examples,coverage,fuzzing,stateful \
    --seed "$seed" --max-examples "$max_examples" --generation-database none \
    --workers 1 --request-timeout 10 \
    --report json,ndjson --report-json-path "$work/run.json" \
    --report-ndjson-path "$work/events.ndjson" || status=$?
echo "schemathesis: exit $status after $((SECONDS - started)) s"
if [ -f "$work/run.json" ] && [ -f "$work/events.ndjson" ]; then
    python3 .ci/schemathesis/summary.py "$work/run.json" "$work/events.ndjson"
fi
[ "$status" = 0 ] || { echo "schemathesis: findings (above); the stack's logs:" >&2; cat "$work"/*.log >&2; exit 1; }

banner "stop (SIGTERM) and espora verify"
kill -TERM "${pids[@]}"
for pid in "${pids[@]}"; do
    code=0
    wait "$pid" || code=$?
    [ "$code" = 0 ] || { cat "$work"/*.log >&2; echo "schemathesis: process $pid exited $code" >&2; exit 1; }
done
pids=()
if grep -E 'panicked|storage unavailable' "$work"/*.log; then
    echo "schemathesis: the stack's logs show a failure (above)" >&2
    exit 1
fi
"$bin/espora" verify "$work/data"
echo "schemathesis: ok"
