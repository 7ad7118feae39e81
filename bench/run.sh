#!/usr/bin/env bash
# The side-by-side benchmark, one command on a fresh machine:
#
#   bench/run.sh                          the current build against nginx
#   BENCH_BASELINE=HEAD~1 bench/run.sh    ... and against an earlier build, in the same run
#
# Builds the release binaries, installs what is missing (scripts/setup.sh bench oha), measures
# the data directory's disk (the disk row: `espora probe-disk`), then, on loopback and for each
# repetition, runs the reference mix (bench/mix.lua) against:
#   ceiling       nginx, one worker, a fixed JSON answer from memory (a server that does nothing)
#   direct        one rinha-api instance over TCP
#   lb1           rinha-lb in front of one rinha-api instance over a Unix socket
#   rinha-lb      rinha-lb in front of two rinha-api instances over Unix sockets (the deployment)
#   nginx-stream  the same with nginx's TCP `stream` proxy instead of rinha-lb
#   X@base        target X with the baseline's binaries, when BENCH_BASELINE is set
# each with keep-alive and with one connection per request (wrk, closed loop), then each with
# keep-alive at half the ceiling's req/s, and the ceiling, the two-instance stacks and nginx
# stream at the reference peak, 340 req/s with a new connection per request (oha, open loop:
# latency at a given load, free of coordinated omission). Every row starts its processes anew on
# the same data directory (one per build: the baseline may use another file format). It prints
# two markdown tables (medians of the repetitions) and the machine; README.md says more.
#
# Environment (defaults in brackets):
#   BENCH_REPS [3]           repetitions, interleaved (every row once, then again)
#   BENCH_SECONDS [10]       seconds of load per row
#   BENCH_CONNECTIONS [32]   wrk connections (one wrk thread)
#   BENCH_RATE               fixed rate of the half rows in req/s [half of the ceiling's
#                            keep-alive req/s measured in the same repetition]
#   BENCH_OPEN_LOOP [1]      0 skips the fixed-rate rows (and oha)
#   BENCH_BASELINE           a git revision to build (into target/bench-baseline/) or a
#                            directory holding rinha-api and rinha-lb binaries
#   BENCH_TARGETS            the targets to run, space-separated [all of the above]
#   BENCH_API_WORKERS [1]    workers per rinha-api instance (the compose stack gives each one)
#   BENCH_LB_WORKERS [1]     workers of rinha-lb and of nginx stream
#   BENCH_DISK_COUNT [2000]  flushes of the disk row, one every 3 ms
#   BENCH_METRICS [0]        1 starts the current build's servers with --metrics and scrapes them
#                            every second during the load (the @base rows run without)
#   BENCH_OUT [bench/results] where raw.tsv and table.md go
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

reps=${BENCH_REPS:-3}
seconds=${BENCH_SECONDS:-10}
connections=${BENCH_CONNECTIONS:-32}
fixed_rate=${BENCH_RATE:-}
open_loop=${BENCH_OPEN_LOOP:-1}
api_workers=${BENCH_API_WORKERS:-1}
lb_workers=${BENCH_LB_WORKERS:-1}
out=${BENCH_OUT:-$here/results}
baseline=${BENCH_BASELINE:-}
metrics=${BENCH_METRICS:-0}
disk_count=${BENCH_DISK_COUNT:-2000}
current_bin=$root/target/release
bin=$current_bin

# oha only for the fixed-rate rows.
if [ "$open_loop" = 1 ]; then bash scripts/setup.sh bench oha; else bash scripts/setup.sh bench; fi
echo "bench: building release binaries" >&2
cargo build --quiet --release --locked --bin rinha-api --bin rinha-lb --bin espora

# Sets base_bin to a directory of the baseline's binaries: $baseline itself, or the release build
# of revision $baseline (once per commit, in its own target directory, from a detached worktree).
prepare_baseline() {
    if [ -x "$baseline/rinha-api" ] && [ -x "$baseline/rinha-lb" ]; then
        base_bin=$(cd "$baseline" && pwd)
        base_label=$base_bin
        return
    fi
    local commit dir=$root/target/bench-baseline
    commit=$(git -C "$root" rev-parse --verify "$baseline^{commit}") ||
        { echo "bench: BENCH_BASELINE=$baseline is neither a directory of binaries nor a revision" >&2; exit 2; }
    base_label="$(git -C "$root" rev-parse --short "$commit") ($baseline)"
    base_bin=$dir/bin-$commit
    [ -x "$base_bin/rinha-api" ] && return
    echo "bench: building the baseline $base_label" >&2
    rm -rf "$dir/src"
    git -C "$root" worktree prune
    git -C "$root" worktree add --detach --force "$dir/src" "$commit" >&2
    (cd "$dir/src" && CARGO_TARGET_DIR=$dir/target cargo build --quiet --release --locked \
        --bin rinha-api --bin rinha-lb)
    mkdir -p "$base_bin"
    cp "$dir/target/release/rinha-api" "$dir/target/release/rinha-lb" "$base_bin/"
    git -C "$root" worktree remove --force "$dir/src"
}

targets="ceiling direct lb1 rinha-lb nginx-stream"
base_bin='' base_label=''
if [ -n "$baseline" ]; then
    prepare_baseline
    targets="ceiling direct direct@base lb1 lb1@base rinha-lb rinha-lb@base nginx-stream"
fi
targets=${BENCH_TARGETS:-$targets}

work=$(mktemp -d /tmp/rinha-bench.XXXXXX)
chmod 755 "$work"
trap 'stop_stack; rm -rf "$work"' EXIT
raw=$out/raw.tsv
# The instances create the account files at their first start.
mkdir -p "$out" "$work/data" "$work/data-base"

declare -A port
next_port=19100
for target in $targets; do
    port[$target]=$(free_port "$next_port")
    next_port=$((port[$target] + 1))
done

# Bodies for oha, which picks one line at random per request: credits and debits 1:2 as in the
# mix, random values and descriptions.
awk 'BEGIN { srand(42); a = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  for (i = 0; i < 30000; i++) { d = ""; for (j = 0; j < 10; j++) d = d substr(a, int(rand() * 62) + 1, 1);
    printf "{\"valor\": %d, \"tipo\": \"%s\", \"descricao\": \"%s\"}\n", int(rand() * 10000) + 1,
      (i % 3 == 0) ? "c" : "d", d } }' >"$work/bodies.txt"

# Starts target $1 with the binaries and data directory of its build (`bin`, `data`).
start_target() {
    local target=$1
    bin=$current_bin data=$work/data with_metrics=
    [ "$metrics" = 1 ] && with_metrics=1
    case $target in *@base) bin=$base_bin data=$work/data-base with_metrics= ;; esac
    : >"$work/metrics.ports"
    case ${target%@base} in
        # A fixed JSON body of the size of a transaction's answer.
        ceiling) start_nginx_fixed nginx-ceiling "${port[$target]}" application/json '{"limite":100000,"saldo":-9098}' ;;
        direct) start_api api "127.0.0.1:${port[$target]}" ;;
        lb1)
            start_api api01 "unix:$work/api01.sock"
            start_lb rinha-lb "${port[$target]}" "unix:$work/api01.sock"
            ;;
        rinha-lb | nginx-stream)
            start_api api01 "unix:$work/api01.sock"
            start_api api02 "unix:$work/api02.sock"
            if [ "${target%@base}" = rinha-lb ]; then
                start_lb rinha-lb "${port[$target]}" "unix:$work/api01.sock" "unix:$work/api02.sock"
            else
                start_nginx_stream nginx-stream "${port[$target]}" "unix:$work/api01.sock" "unix:$work/api02.sock"
            fi
            ;;
        *) echo "bench: unknown target $target" >&2; exit 2 ;;
    esac
}

# The value of key=value in a line.
field() { grep -o "\b$1=[0-9.]*" <<<"$2" | head -1 | cut -d= -f2; }

# Closed loop: wrk with the mix. Sets requests, rps, p50, p99, max (ms) and errors.
load_closed() {
    local url=$1 mode=$2 header=() line
    [ "$mode" = close ] && header=(-H "Connection: close")
    line=$(wrk -t1 -c"$connections" -d"${seconds}s" "${header[@]}" -s "$here/mix.lua" "$url" | grep '^mix: ')
    read -r requests rps p50 p99 max errors < <(awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        printf "%d %.0f %.2f %.2f %.2f %d\n", f["requests"], f["requests"] / (f["duration_us"] / 1e6),
            f["p50_us"] / 1000, f["p99_us"] / 1000, f["max_us"] / 1000,
            f["unexpected"] + f["connect"] + f["read"] + f["write"] + f["timeout"] }' <<<"$line")
}

# Open loop: two oha processes at once, transactions at 330/340 of the rate and statements at
# 10/340, keep-alive or (mode close) a new connection per request, corrected for coordinated
# omission; requests in flight at the end are awaited (-w), not counted as errors. The mix's
# percentiles and max are the larger of the two streams' (an upper bound of the mix's own).
load_rate() {
    local base=$1 rate=$2 mode=$3 post_rate get_rate connection=()
    post_rate=$((rate * 330 / 340))
    get_rate=$((rate - post_rate))
    [ "$mode" = close ] && connection=(--disable-keepalive)
    oha --no-tui -z "${seconds}s" -w -q "$post_rate" -c 64 --latency-correction "${connection[@]}" -m POST \
        -T application/json -Z "$work/bodies.txt" --rand-regex-url "$base/clientes/[1-5]/transacoes" \
        --output-format json -o "$work/post.json" >/dev/null 2>"$work/oha.err" &
    local post_pid=$!
    oha --no-tui -z "${seconds}s" -w -q "$get_rate" -c 4 --latency-correction "${connection[@]}" \
        --rand-regex-url "$base/clientes/[1-5]/extrato" \
        --output-format json -o "$work/get.json" >/dev/null 2>>"$work/oha.err"
    wait "$post_pid"
    # shellcheck disable=SC2016
    local summary='[(.statusCodeDistribution | to_entries | map(.value) | add // 0),
        (.errorDistribution | to_entries | map(.value) | add // 0),
        (.statusCodeDistribution | to_entries | map(select(.key != "200" and .key != "422") | .value) | add // 0),
        .latencyPercentiles.p50, .latencyPercentiles.p99, .latencyPercentiles["p99.9"],
        .summary.slowest] | @tsv'
    local streams
    streams=$(jq -r "$summary" "$work/post.json" "$work/get.json")
    read -r requests errors rps p50 p99 p999 max < <(awk -v s="$seconds" -F'\t' '
        { n += $1 + $2; e += $2 + $3; for (i = 4; i <= 7; i++) if ($i > m[i]) m[i] = $i }
        END { printf "%d %d %.0f %.2f %.2f %.2f %.2f\n", n, e, n / s, m[4] * 1000, m[5] * 1000,
                     m[6] * 1000, m[7] * 1000 }' <<<"$streams")
}

# One row: target, mode (keepalive|close), load (closed: wrk; half: oha at half the ceiling;
# reference: oha at 340 req/s, the reference test's peak). Appends a line to $raw.
# shellcheck disable=SC2086 # $front and $apis are lists of pids.
run_row() {
    local target=$1 mode=$2 load=$3 rep=$4 started ready front apis
    local url="http://127.0.0.1:${port[$target]}"
    started=$(date +%s%N)
    start_target "$target"
    bench_wait_ready "${port[$target]}"
    ready=$(date +%s%N)
    # The first answer may come before the second instance listens; the balancer then skips
    # that instance for its back-off (1 s, rinha-lb and nginx alike) and would send every
    # keep-alive connection opened meanwhile to the first. Both must be up, and the back-off over.
    local instance
    for instance in api01 api02; do
        [ ! -e "$work/$instance.err" ] || bench_wait_ready "unix:$work/$instance.sock"
    done
    sleep 1.5
    front=$(stack_pids rinha-lb; stack_pids nginx)
    apis=$(stack_pids api)
    local front_rest api_rest api_rest_file front_ticks api_ticks
    front_rest=$(memory_kb VmRSS $front)
    api_rest=$(memory_kb VmRSS $apis)
    api_rest_file=$(memory_kb RssFile $apis)
    front_ticks=$(cpu_ticks $front)
    api_ticks=$(cpu_ticks $apis)
    p999=-
    local scraper=
    if [ -s "$work/metrics.ports" ]; then
        scrape_metrics &
        scraper=$!
    fi
    case $load in
        closed) load_closed "$url" "$mode" ;;
        half) load_rate "$url" "$rate" "$mode" ;;
        reference) load_rate "$url" 340 "$mode" ;;
    esac
    [ -n "$scraper" ] && { kill "$scraper"; wait "$scraper" 2>/dev/null || true; }
    local front_peak api_peak front_us api_us appends=0 syncs=0 name value split=""
    read -r front_us api_us < <(awk -v f="$(($(cpu_ticks $front) - front_ticks))" -v a="$(($(cpu_ticks $apis) - api_ticks))" \
        -v n="$requests" -v u="$((1000000 / $(getconf CLK_TCK)))" 'BEGIN { printf "%.1f %.1f\n", n ? f * u / n : 0, n ? a * u / n : 0 }')
    front_peak=$(memory_kb VmHWM $front)
    api_peak=$(memory_kb VmHWM $apis)
    stop_stack
    for name in api api01 api02; do
        [ -e "$work/$name.err" ] || continue
        local line
        line=$(grep 'stopped: appends=' "$work/$name.err" || true)
        value=$(field appends "$line")
        appends=$((appends + ${value:-0}))
        split="$split${split:+/}${value:-0}"
        value=$(field fdatasyncs "$line")
        syncs=$((syncs + ${value:-0}))
        rm -f "$work/$name.err"
    done
    [ -n "$front" ] || front_us=-
    [ -n "$apis" ] || api_us=-
    echo "$rep $target $mode $load $rps $p50 $p99 $max $errors $appends $syncs $front_us $api_us" \
        "$(((ready - started) / 1000000)) $front_rest $front_peak $api_rest $api_rest_file $api_peak $p999" | tr ' ' '\t' >>"$raw"
    printf 'bench: rep %s %-14s %-9s %-9s %7s req/s p50 %6s p99 %6s p99.9 %6s max %7s ms errors %s appends %s syncs %s\n' \
        "$rep" "$target" "$mode" "$load" "$rps" "$p50" "$p99" "$p999" "$max" "$errors" "${split:--}" "$syncs" >&2
}

# Every acknowledged transaction waits for an fdatasync, so the data directory's disk bounds
# the durable rows: the disk row is its paced flush latency with nothing else running.
disk_row() {
    "$current_bin/espora" probe-disk "$work" --count "$disk_count" --interval-ms 3 |
        grep -o 'p50 .*'
}
disk=$(disk_row)
echo "bench: machine: $(bench_machine); disk (128-byte write + fdatasync every 3 ms, $disk_count times): $disk" >&2
[ -n "$base_bin" ] && echo "bench: baseline: $base_label" >&2
echo "bench: $reps repetitions of $seconds s, wrk -t1 -c$connections, rinha-api workers $api_workers, rinha-lb and nginx stream workers $lb_workers" >&2
printf 'rep\ttarget\tmode\tload\trps\tp50\tp99\tmax\terrors\tappends\tsyncs\tfront_us\tapi_us\tstart_ms\tfront_rest_kb\tfront_peak_kb\tapi_rest_kb\tapi_rest_file_kb\tapi_peak_kb\tp999\n' >"$raw"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for rep in $(seq "$reps"); do
    ceiling_rps=
    for target in $targets; do
        for mode in keepalive close; do
            run_row "$target" "$mode" closed "$rep"
            if [ "$target" = ceiling ] && [ "$mode" = keepalive ]; then ceiling_rps=$rps; fi
        done
    done
    rate=${fixed_rate:-$((${ceiling_rps:-20000} / 2))}
    [ "$open_loop" = 1 ] || continue
    for target in $targets; do
        run_row "$target" keepalive half "$rep"
    done
    for target in ceiling rinha-lb rinha-lb@base nginx-stream; do
        [[ " $targets " != *" $target "* ]] || run_row "$target" close reference "$rep"
    done
done
disk_after=$(disk_row)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

BENCH_TARGETS=$targets "$here/table.sh" "$raw" >"$out/table.md"
{
    echo "Machine: $(bench_machine | sed 's/, load average.*//'); load average $load_before before, $load_after after."
    echo
    echo "Disk row (the data directory's disk, \`espora probe-disk\`: 128-byte write + fdatasync every 3 ms, $disk_count times): before the rows $disk; after them $disk_after."
    echo
    [ -n "$base_bin" ] && echo "Baseline (the rows marked @base): $base_label." && echo
    [ "$metrics" = 1 ] && echo "Metrics: the current build's servers ran with --metrics, scraped every second during the load; the @base rows without." && echo
    echo "Command: \`bench/run.sh\` with BENCH_REPS=$reps BENCH_SECONDS=$seconds BENCH_CONNECTIONS=$connections BENCH_API_WORKERS=$api_workers BENCH_LB_WORKERS=$lb_workers${fixed_rate:+ BENCH_RATE=$fixed_rate}${baseline:+ BENCH_BASELINE=$baseline}; $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    cat "$out/table.md"
} | tee "$out/latest.md"
