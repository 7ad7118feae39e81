# Shell helpers shared by .ci/e2e.sh, docker/seccomp-check.sh, scripts/soak.sh and bench/lib.sh.
# Source it; the caller sets $bin to the directory holding the rinha-api binary.
# shellcheck shell=bash disable=SC2154

# Fails with a line naming the command that installs them unless the groups or tools named
# are present (scripts/setup.sh --check).
require_tools() { bash "$(dirname "${BASH_SOURCE[0]}")/setup.sh" --check "$@"; }

# Prints a free loopback TCP port, from $1 upwards.
free_port() {
    local port=$1
    while ss -Htln "sport = :$port" 2>/dev/null | grep -q .; do
        port=$((port + 1))
    done
    echo "$port"
}

# Waits until GET /clientes/1/extrato answers 200 on $1 (a port on 127.0.0.1, or unix:/path),
# at most $2 seconds; the probe is rinha-api's own health check. Fails when time runs out.
wait_ready() {
    local addr=$1 deadline=$((SECONDS + $2))
    case $addr in unix:*) ;; *) addr=127.0.0.1:$addr ;; esac
    until "$bin/rinha-api" --healthcheck "$addr" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# Sets the compose command in the array `compose`: Compose v2, else docker-compose (v1), which
# scripts/setup.sh docker installs when neither exists.
find_compose() {
    if docker compose version >/dev/null 2>&1; then
        compose=(docker compose)
    else
        require_tools compose
        # Compose v1 applies deploy.resources.limits only in compatibility mode.
        compose=(docker-compose --compatibility)
    fi
    echo "${0##*/}: compose command: ${compose[*]} ($("${compose[@]}" version 2>/dev/null | head -1))"
}
