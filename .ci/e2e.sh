#!/usr/bin/env bash
# End to end: the reference scenario (compressed time, peak rates kept) against real processes,
# then against the docker compose stack with its limits applied.
#
#   bash .ci/e2e.sh
#
# Part 1 runs ./run (release binaries, balancer + two instances over Unix sockets) on a fresh
# data directory, runs rinha-scenario against it, stops it and runs espora verify.
# Part 2, when a Docker engine answers: builds the image with docker/Dockerfile, the file that
# `docker compose up --build` runs, with no network (a builder image made locally from Debian
# packages, this host's toolchain and the vendored crates: docker/builder-image.sh), checks that
# it stays small, checks docker/seccomp.json against the image's binaries and in its containers
# (docker/seccomp-check.sh), then for each compose file brings the stack up on that image
# (every process on io_uring when local processes are), checks with docker inspect that every
# container got the CPU and memory limits the compose file declares, runs the scenario against
# port 9999 with the containers' cgroup counters read before and after, stops the stack, runs
# espora verify on the volume and tears everything down, also on failure. Without an engine
# part 2 is skipped with a visible message. Then the local scenario runs again and each stack's
# p99 and max are printed against the mean of the two local runs. The figures (cgroup counters,
# ratios) come from bench/e2e-figures.sh; the checks are all here.
#
# Every scenario also writes its HTML report (rinha-scenario --report) to
# target/e2e/reports/RUN/index.html, RUN being local, local-again, or the compose file's name
# without .yml; their paths are printed at the end. The first compose stack's report (the local
# one when part 2 is skipped, which is then said) is rendered to index.png beside it by
# .ci/report-png.sh, and e2e fails when the render fails or the picture is blank.
#
# Needs what `scripts/setup.sh e2e docker report` installs (.ci/run calls it); checks, installs
# nothing.
# Environment: E2E_RAMP, E2E_HOLD (default 20s each), E2E_PORT (the compose stack's published
# port, default 9999).
set -euo pipefail
cd "$(dirname "$0")/.."

ramp=${E2E_RAMP:-20s}
hold=${E2E_HOLD:-20s}
bin=$PWD/target/release
reports=$PWD/target/e2e/reports

banner() { printf '\n== e2e: %s\n' "$*"; }
now() { date +%s.%N; }
seconds_since() { awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.2f", end - start }'; }

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# shellcheck source=bench/e2e-figures.sh
source bench/e2e-figures.sh

part_local() {
    banner "release build"
    cargo build --release --locked
    local_scenario "" local
}

# The scenario against local processes ($1 says which run this is, $2 names its report);
# appends its p99 and max to local_tails and its report to local_reports.
local_scenario() {
    settle
    banner "scenario against local processes${1:+, $1} (ramp $ramp, hold $hold)"
    local work port run_pid status p99 max
    work=$(mktemp -d)
    port=$(free_port 9999)
    RINHA_PORT=$port RINHA_DATA_DIR=$work/data ./run --no-build >"$work/run.log" 2>&1 &
    run_pid=$!
    # shellcheck disable=SC2064
    trap "kill -TERM $run_pid 2>/dev/null || true; wait $run_pid 2>/dev/null || true; rm -rf '$work'" EXIT
    if ! wait_ready "$port" 30; then
        cat "$work/run.log"
        echo "e2e: the local stack did not answer on port $port" >&2
        return 1
    fi
    grep -E '^rinha-(api|lb) ' "$work/run.log" || true
    # Where this host gives local processes io_uring, the containers must get it too (the
    # seccomp profile allows it): remembered for part 2.
    if grep -q 'driver=io_uring' "$work/run.log"; then local_driver=io_uring; else local_driver=epoll; fi
    "$bin/rinha-scenario" --target "http://127.0.0.1:$port" --ramp "$ramp" --hold "$hold" \
        --report "$reports/$2" | tee "$work/scenario.txt"
    local_reports+=("$reports/$2/index.html")
    read -r p99 max < <(scenario_tail "$work/scenario.txt")
    local_tails+=("$p99 $max")
    kill -TERM "$run_pid"
    status=0
    wait "$run_pid" || status=$?
    trap - EXIT
    [ "$status" = 0 ] || { cat "$work/run.log"; echo "e2e: ./run exited $status" >&2; return 1; }
    banner "espora verify (local data directory)"
    "$bin/espora" verify "$work/data"
    rm -rf "$work"
}

# Prints the limits compose file $1 declares (deploy.resources.limits), one line per service:
# the service, NanoCPUs and bytes (compose reads memory units as binary: MB means MiB), or "- -"
# when the service declares none.
compose_limits() {
    python3 - "$1" <<'PY'
import re, sys, yaml
units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
for name, service in yaml.safe_load(open(sys.argv[1]))["services"].items():
    limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    if "cpus" not in limits or "memory" not in limits:
        print(name, "-", "-")
        continue
    number, unit = re.fullmatch(r"([0-9.]+) ?([kmgt]?)i?b?", str(limits["memory"]).lower()).groups()
    print(name, round(float(limits["cpus"]) * 1e9), int(float(number) * units[unit]))
PY
}

# Checks with docker inspect that every container got the limits of $limits (compose_limits of
# the stack's file), and that together they stay within the challenge's 1.5 CPUs and 550MB.
check_limits() {
    local cpu_total=0 memory_total=0 service cpu_expected memory_expected id nano quota period memory
    while read -r service cpu_expected memory_expected; do
        if [ "$cpu_expected" = - ]; then
            echo "e2e: $compose_file declares no CPU and memory limits for $service" >&2
            return 1
        fi
        id=$("${compose[@]}" -f "$compose_file" -p "$project" ps -q "$service")
        read -r nano quota period memory < <(docker inspect --format \
            '{{.HostConfig.NanoCpus}} {{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}} {{.HostConfig.Memory}}' "$id")
        # Some engines express a CPU limit as quota/period instead of NanoCPUs.
        if [ "$nano" = 0 ] && [ "$quota" -gt 0 ]; then
            nano=$((quota * 1000000000 / period))
        fi
        echo "e2e: $service: cpus $(awk -v n="$nano" 'BEGIN { print n / 1e9 }'), memory $((memory / 1048576)) MiB"
        if [ "$nano" != "$cpu_expected" ] || [ "$memory" != "$memory_expected" ]; then
            echo "e2e: $service did not get the limits $compose_file declares (expected $cpu_expected nano-CPUs and $memory_expected bytes)" >&2
            return 1
        fi
        cpu_total=$((cpu_total + nano))
        memory_total=$((memory_total + memory))
    done <<<"$limits"
    echo "e2e: total: $(awk -v n="$cpu_total" 'BEGIN { print n / 1e9 }') CPUs, $((memory_total / 1048576)) MiB"
    if [ "$cpu_total" -gt 1500000000 ] || [ "$memory_total" -gt $((550 * 1048576)) ]; then
        echo "e2e: the limits exceed 1.5 CPUs / 550MB" >&2
        return 1
    fi
}

teardown_compose() {
    local status=$?
    [ -n "${project:-}" ] || return "$status"
    if [ "$status" != 0 ]; then
        echo "e2e: failure; the stack's logs:" >&2
        "${compose[@]}" -f "$compose_file" -p "$project" logs --no-color --tail 50 >&2 || true
    fi
    banner "teardown ($project)"
    "${compose[@]}" -f "$compose_file" -p "$project" down -v --remove-orphans || true
    project=
    return "$status"
}

part_image() {
    banner "docker"
    if ! docker info >/dev/null 2>&1; then
        echo "=================================================================="
        echo "== SKIP: no reachable Docker engine (docker info failed):        =="
        echo "== the image, compose stack, limits and volume checks did NOT run. =="
        echo "=================================================================="
        docker_ready=0
        return 0
    fi
    require_tools docker
    find_compose
    project=
    export RINHA_PORT
    RINHA_PORT=${E2E_PORT:-9999}
    if ss -Htln "sport = :$RINHA_PORT" | grep -q .; then
        RINHA_PORT=$(free_port 19999)
        echo "e2e: NOTE: port ${E2E_PORT:-9999} is taken on this host; publishing on $RINHA_PORT instead"
    fi

    banner "builder image (Debian bookworm packages, this host's Rust toolchain, vendored crates)"
    local started builder size
    started=$(now)
    builder=$(docker/builder-image.sh)
    echo "e2e: builder image $builder in $(seconds_since "$started") s"

    banner "image from docker/Dockerfile (RUST_IMAGE=$builder, no network)"
    started=$(now)
    # --offline asks docker/builder-image.sh again, which now answers from its cache.
    docker/build-image.sh --from-source --offline rinha-crebitos:latest
    size=$(docker image inspect -f '{{.Size}}' rinha-crebitos:latest)
    echo "e2e: docker/Dockerfile built in $(seconds_since "$started") s; image size $size bytes"
    # Three stripped static binaries FROM scratch weigh about 5.6 MB; more than 10 MB means
    # something else got into the final stage.
    if [ "$size" -gt 10000000 ]; then
        echo "e2e: the image is $size bytes, more than 10 MB: check the final stage of docker/Dockerfile" >&2
        return 1
    fi
    docker_ready=1
}

# The seccomp profile against what the image's binaries call, and in force in the containers.
part_seccomp() {
    [ "$docker_ready" = 1 ] || return 0
    banner "seccomp profile (docker/seccomp-check.sh)"
    docker/seccomp-check.sh --image rinha-crebitos:latest
}

# Part 2's stacks, once part_image has built the image (docker_ready).
part_compose() {
    [ "$docker_ready" = 1 ] || return 0
    trap teardown_compose EXIT
    run_compose docker-compose.yml "host networking"
    run_compose docker-compose.bridge.yml "bridge network, published port"
}

# The stack's containers as SERVICE=ID, one per service of its compose file.
stack_containers() {
    local service
    for service in "${services[@]}"; do
        echo "$service=$(docker inspect --format '{{.Id}}' "$("${compose[@]}" -f "$compose_file" -p "$project" ps -q "$service")")"
    done
}

# Runs the reference scenario against the stack of compose file $1 ($2 says what it is).
run_compose() {
    local file=$1 what=$2 started ready report before after containers
    compose_file=$file
    limits=$(compose_limits "$file")
    mapfile -t services < <(cut -d' ' -f1 <<<"$limits")
    project=rinhae2e$$${file//[^a-z]/}
    banner "compose up: $file, $what (project $project, port $RINHA_PORT)"
    started=$(now)
    "${compose[@]}" -f "$compose_file" -p "$project" up -d --no-build
    wait_ready "$RINHA_PORT" 60 || { echo "e2e: the compose stack never answered" >&2; return 1; }
    ready=$(seconds_since "$started")
    echo "e2e: first 200 on GET /clientes/1/extrato ${ready} s after compose up"
    if awk -v t="$ready" 'BEGIN { exit !(t > 5) }'; then
        echo "e2e: WARNING: slower than the 5 s target (a shared or loaded machine?)"
    fi
    local startup
    startup=$("${compose[@]}" -f "$compose_file" -p "$project" logs --no-color | grep -E 'rinha-(api|lb) ' || true)
    echo "$startup"
    if [ "$local_driver" = io_uring ] && [ "$(grep -c 'driver=io_uring' <<<"$startup")" != "${#services[@]}" ]; then
        echo "e2e: a container is not on io_uring although local processes are: check docker/seccomp.json" >&2
        return 1
    fi

    banner "limits (docker inspect)"
    check_limits

    settle
    banner "scenario against port $RINHA_PORT (ramp $ramp, hold $hold)"
    report=$(mktemp)
    mapfile -t containers < <(stack_containers)
    before=$(cgroup_counters "${containers[@]}")
    started=$(now)
    "$bin/rinha-scenario" --target "http://127.0.0.1:$RINHA_PORT" --ramp "$ramp" --hold "$hold" \
        --report "$reports/${file%.yml}" | tee "$report"
    compose_reports+=("$reports/${file%.yml}/index.html")
    after=$(cgroup_counters "${containers[@]}")
    containers_report "$before" "$after" "$(seconds_since "$started")" "${containers[@]}"
    read -r p99 max < <(scenario_tail "$report")
    compose_tails+=("$file $p99 $max")
    rm -f "$report"

    banner "espora verify on the volume"
    "${compose[@]}" -f "$compose_file" -p "$project" stop
    docker run --rm -v "${project}_accounts:/data" rinha-crebitos:latest /espora verify /data
    teardown_compose
}

# Writes back what earlier steps (builds, image layers) left dirty in the page cache and lets the
# disk settle, so that a scenario's fdatasyncs do not queue behind it: the scenarios of the local
# processes and of each compose stack are then measured alike.
settle() {
    sync
    sleep 2
}

# Renders the first compose stack's report to a PNG and checks it is not blank; the local one
# when no compose stack ran.
render_report() {
    local page
    if [ "${#compose_reports[@]}" -gt 0 ]; then
        page=${compose_reports[0]}
        banner "report rendered (.ci/report-png.sh): the first compose stack's"
    else
        page=${local_reports[0]}
        banner "report rendered (.ci/report-png.sh): the local run's, as no compose stack ran"
    fi
    bash .ci/report-png.sh "$page" "${page%.html}.png"
    echo "e2e: ${page%.html}.png"
}

require_tools e2e report
docker_ready=0
local_driver=epoll
local_tails=()
compose_tails=()
local_reports=()
compose_reports=()
rm -rf "$reports"
mkdir -p "$reports"
# The image is built before any scenario runs (see settle).
part_image
part_local
part_seccomp
part_compose
if [ "$docker_ready" = 1 ]; then
    local_scenario "again, after the compose stacks" local-again
fi
if [ "${#compose_tails[@]}" -gt 0 ]; then
    banner "the compose stacks against local processes"
    tails_summary "$(printf '%s\n' "${local_tails[@]}")" "${compose_tails[@]}"
fi
banner "reports (rinha-scenario --report)"
printf 'e2e: %s\n' "${local_reports[@]}" "${compose_reports[@]}"
render_report
banner "passed"
