# The figures .ci/e2e.sh prints beside its checks (sourced, not run): what each container of a
# compose stack used over the scenario, from its cgroup, and each stack's tail latency against
# that of local processes on the same machine. They inform and never fail a run: the checks are
# .ci/e2e.sh's. Containers are named as SERVICE=ID (the full container id).
# shellcheck shell=bash

# The p99 and max (ms) of the `all` row of rinha-scenario report $1.
scenario_tail() {
    awk '$1 == "all" { print $8, $9 }' "$1"
}

# Prints one line per container: service, CPU time used so far (ns), throttled periods and time
# (ns), from its cgroup (v1 or v2). Reading files costs nothing, unlike `docker stats`, which
# measured itself (a quarter of a CPU when sampled in a loop during the scenario).
cgroup_counters() {
    local container id stat usage
    for container in "$@"; do
        id=${container#*=}
        # cgroup v1 counts CPU time in cpuacct.usage (ns), v2 in cpu.stat's usage_usec.
        usage=$(cat "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage" 2>/dev/null || echo 0)
        for stat in "/sys/fs/cgroup/cpu/docker/$id/cpu.stat" \
            "/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat" /dev/null; do
            [ ! -r "$stat" ] || break
        done
        awk -v service="${container%%=*}" -v usage="$usage" '
            $1 == "usage_usec" { usage = $2 * 1000 } $1 == "nr_throttled" { throttled = $2 }
            $1 == "throttled_time" { ns = $2 } $1 == "throttled_usec" { ns = $2 * 1000 }
            END { print service, usage, throttled + 0, ns + 0 }' "$stat"
    done
}

# Prints each container's peak memory as its cgroup counted it, page cache of the mapped account
# files included (docker stats leaves the cache out), when the cgroup files are readable here.
cgroup_peaks() {
    local container id file
    for container in "$@"; do
        id=${container#*=}
        for file in "/sys/fs/cgroup/memory/docker/$id/memory.max_usage_in_bytes" \
            "/sys/fs/cgroup/system.slice/docker-$id.scope/memory.peak"; do
            if [ -r "$file" ]; then
                echo "  ${container%%=*}: cgroup peak $(($(cat "$file") / 1048576)) MiB (page cache included)"
                break
            fi
        done
    done
}

# What each container used over a scenario of $3 seconds, from the cgroup_counters lines taken
# before ($1) and after ($2) it (CPU, throttling); then containers $4...: peak memory, docker stats.
containers_report() {
    local before=$1 after=$2 seconds=$3 container ids=()
    shift 3
    for container in "$@"; do ids+=("${container#*=}"); done
    echo "e2e: per container over the scenario (cgroup counters; CPU in percent of one core):"
    join <(sort <<<"$before") <(sort <<<"$after") | awk -v s="$seconds" '{
        printf "  %s CPU %.1f%% mean, throttled periods %d before and %d after (%.1f ms throttled)\n",
            $1, ($5 - $2) / 1e9 / s * 100, $3, $6, ($7 - $4) / 1e6 }'
    cgroup_peaks "$@"
    docker stats --no-stream --format '  {{.Name}}: memory {{.MemUsage}} (docker stats, after the scenario)' \
        "${ids[@]}" || true
}

# The deployment's cost: each compose stack's p99 and max against the local processes' on the
# same machine. $1 holds the local runs' "p99 max" lines, the other arguments are "FILE p99 max"
# per stack. The ratios are taken against the mean of local runs before and after the stacks,
# minutes apart, so a drift of the machine's speed (its disk's flush latency) weighs on both alike.
tails_summary() {
    local local_tails=$1 line file p99 max local_p99 local_max
    shift
    read -r local_p99 local_max < <(awk '{ p += $1; m += $2 } END { printf "%.3f %.3f\n", p / NR, m / NR }' \
        <<<"$local_tails")
    echo "e2e: local processes, p99 / max per run: $(awk '{ printf "%s%s / %s ms", (NR > 1 ? ", " : ""), $1, $2 }' \
        <<<"$local_tails"); mean $local_p99 / $local_max ms"
    for line in "$@"; do
        read -r file p99 max <<<"$line"
        echo "e2e: $file against local processes: p99 $p99 ms against $local_p99 ms" \
            "($(awk -v a="$p99" -v b="$local_p99" 'BEGIN { printf "%.2f", a / b }')x)," \
            "max $max ms against $local_max ms ($(awk -v a="$max" -v b="$local_max" 'BEGIN { printf "%.2f", a / b }')x)"
    done
}
