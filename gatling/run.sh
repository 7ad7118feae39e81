#!/usr/bin/env bash
# Runs the reference load test (gatling/simulations/crebitos/CrebitosSimulation.scala) with a
# Gatling 3.10 bundle, the way the challenge's own runner does: wait until the statement of
# account 1 answers twice in a row (one request for each API instance behind the balancer), run
# Gatling, print where this run's HTML report is, count what failed, and exit non-zero when
# anything did.
#
#   GATLING_HOME=/path/to/gatling-charts-highcharts-bundle-3.10.3 gatling/run.sh
#   gatling/run.sh --download DIR     fetch the 3.10.3 bundle from Maven Central into DIR, check
#                                     it against the SHA-1 published next to it, unzip it, and
#                                     print the GATLING_HOME to use; runs nothing
#   gatling/run.sh --help
#
# Environment: GATLING_HOME (required for a run), RINHA_TARGET (default http://localhost:9999),
# RINHA_RAMP_SECONDS and RINHA_HOLD_SECONDS (default 120 each, the reference; shorter values
# compress the test and keep the peak rates), RINHA_WAIT_SECONDS (default 60), RINHA_RESULTS_DIR
# (default gatling/results), RINHA_MAVEN_URL (the repository --download reads, default
# https://repo1.maven.org/maven2).
#
# Every input is checked before Gatling starts (a JVM and a Scala compilation, then a refusal
# that is hard to read): the ramp and hold must be whole numbers of seconds, at least 1, the
# wait a whole number of seconds, the target http://HOST:PORT.
#
# Gatling exits 0 whatever its requests did (this simulation has no assertions), so this script
# reads the run's simulation.log itself: every REQUEST record marked KO, every ERROR record (a
# request that could not be built) and every inconsistency as the official scoring counts them.
#
# Exit status:
#   0  every request OK, no inconsistency
#   1  this script failed unexpectedly (a command it runs failed)
#   2  bad usage: an unknown argument, --download without DIR, a bad RINHA_* value
#   3  the API never answered the warm-up
#   4  Gatling or a tool is missing: GATLING_HOME, its bin/gatling.sh, java, curl (and, for
#      --download, unzip and sha1sum)
#   5  Gatling failed: it exited non-zero, or left no simulation.log, or one with no request
#   6  --download failed: the bundle or its checksum could not be fetched, the checksum does not
#      match, or the archive could not be unpacked
#   7  some requests were KO (or not sent), no inconsistency
#   8  inconsistencies were counted (with or without other KOs)
set -eEuo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# A command that fails where nothing expects it stops the script with 1, never with a status
# the table above gives a meaning.
trap 'echo "run.sh: unexpected failure (line $LINENO)" >&2; exit 1' ERR

readonly EXIT_USAGE=2 EXIT_NOT_READY=3 EXIT_MISSING=4 EXIT_GATLING=5 EXIT_DOWNLOAD=6
readonly EXIT_KO=7 EXIT_INCONSISTENT=8
readonly GATLING_VERSION=3.10.3
readonly BUNDLE=gatling-charts-highcharts-bundle-$GATLING_VERSION

# die STATUS MESSAGE...: prints the message and exits with STATUS.
die() {
    local status=$1
    shift
    echo "run.sh: $*" >&2
    exit "$status"
}

usage() { sed -n '2,/^set -eEuo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# Prints VALUE as a plain decimal number of seconds, or stops: NAME VALUE MINIMUM.
whole_seconds() {
    local name=$1 value=$2 minimum=$3
    if [[ ! $value =~ ^[0-9]{1,9}$ ]] || ((10#$value < minimum)); then
        die $EXIT_USAGE "$name must be a whole number of seconds, at least $minimum (got '$value'; for example 20, not 20s)"
    fi
    echo $((10#$value))
}

# need TOOL...: stops unless every TOOL is on PATH.
need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die $EXIT_MISSING "$tool is needed and not on PATH"
    done
}

# Fetches the bundle and its published SHA-1 from Maven Central (or RINHA_MAVEN_URL), checks
# one against the other and unpacks the bundle into DIR. The checksum comes from the same
# server: it catches a truncated or corrupted download, not a compromised repository.
download() {
    local dir=$1
    local base=${RINHA_MAVEN_URL:-https://repo1.maven.org/maven2}
    local url=${base%/}/io/gatling/highcharts/gatling-charts-highcharts-bundle/$GATLING_VERSION/$BUNDLE-bundle.zip
    need curl sha1sum unzip
    mkdir -p "$dir" || die $EXIT_DOWNLOAD "cannot create $dir"
    dir=$(cd "$dir" && pwd)
    if [ -e "$dir/$BUNDLE" ]; then
        echo "run.sh: $dir/$BUNDLE is already there (delete it to download again)"
        echo "run.sh: run the load test with: GATLING_HOME=$dir/$BUNDLE $0"
        return
    fi
    staging=$(mktemp -d "$dir/.download-XXXXXX")
    trap 'rm -rf "$staging"' EXIT
    local zip=$staging/$BUNDLE-bundle.zip
    echo "run.sh: fetching $url"
    curl -fsSL --retry 2 -o "$zip" "$url" || die $EXIT_DOWNLOAD "could not fetch $url"
    curl -fsSL --retry 2 -o "$zip.sha1" "$url.sha1" || die $EXIT_DOWNLOAD "could not fetch $url.sha1"
    # Maven's .sha1 holds the hex digest, sometimes followed by the file's name.
    local expected actual
    expected=$(grep -o -m 1 -E '^[[:space:]]*[0-9a-fA-F]{40}' "$zip.sha1" | tr -d '[:space:]' | tr 'A-F' 'a-f') || true
    [ -n "$expected" ] || die $EXIT_DOWNLOAD "$url.sha1 holds no SHA-1 digest"
    actual=$(sha1sum "$zip" | cut -d ' ' -f 1)
    [ "$actual" = "$expected" ] ||
        die $EXIT_DOWNLOAD "checksum mismatch: $url has SHA-1 $actual, $url.sha1 says $expected; nothing unpacked"
    unzip -q "$zip" -d "$staging/unpacked" || die $EXIT_DOWNLOAD "could not unzip $url"
    [ -f "$staging/unpacked/$BUNDLE/bin/gatling.sh" ] ||
        die $EXIT_DOWNLOAD "the archive holds no $BUNDLE/bin/gatling.sh"
    chmod +x "$staging/unpacked/$BUNDLE/bin/"*.sh
    mv "$staging/unpacked/$BUNDLE" "$dir/$BUNDLE"
    echo "run.sh: Gatling $GATLING_VERSION is in $dir/$BUNDLE (SHA-1 $expected, as published)"
    echo "run.sh: run the load test with: GATLING_HOME=$dir/$BUNDLE $0"
}

# The command line: nothing (a run), --download DIR or --help.
download_dir=""
while (($# > 0)); do
    case $1 in
        -h | --help)
            usage
            exit 0
            ;;
        --download)
            [[ -n ${2:-} && ${2:-} != -* ]] || die $EXIT_USAGE "--download needs a directory: --download DIR"
            download_dir=$2
            shift 2
            ;;
        --download=*)
            download_dir=${1#--download=}
            [ -n "$download_dir" ] || die $EXIT_USAGE "--download needs a directory: --download DIR"
            shift
            ;;
        *) die $EXIT_USAGE "unknown argument '$1' (see --help)" ;;
    esac
done
if [ -n "$download_dir" ]; then
    download "$download_dir"
    exit 0
fi

# A run: the inputs first.
target=${RINHA_TARGET:-http://localhost:9999}
[[ $target =~ ^https?://[^/[:space:]]+/?$ ]] || die $EXIT_USAGE "RINHA_TARGET must be http://HOST:PORT, without a path (got '$target')"
export RINHA_TARGET=${target%/}
# whole_seconds stops in a subshell: `|| exit` passes its status on.
RINHA_RAMP_SECONDS=$(whole_seconds RINHA_RAMP_SECONDS "${RINHA_RAMP_SECONDS:-120}" 1) || exit
RINHA_HOLD_SECONDS=$(whole_seconds RINHA_HOLD_SECONDS "${RINHA_HOLD_SECONDS:-120}" 1) || exit
export RINHA_RAMP_SECONDS RINHA_HOLD_SECONDS
wait_s=$(whole_seconds RINHA_WAIT_SECONDS "${RINHA_WAIT_SECONDS:-60}" 0) || exit
results=${RINHA_RESULTS_DIR:-$here/results}

[ -n "${GATLING_HOME:-}" ] || die $EXIT_MISSING "set GATLING_HOME to your Gatling 3.10 bundle (the directory holding bin/gatling.sh), or fetch one with: $0 --download DIR"
install=$(cd "$GATLING_HOME" 2>/dev/null && pwd) || die $EXIT_MISSING "GATLING_HOME is $GATLING_HOME, which is not a directory"
[ -x "$install/bin/gatling.sh" ] || die $EXIT_MISSING "$install/bin/gatling.sh not found or not executable"
if [ -n "${JAVA_HOME:-}" ]; then
    [ -x "$JAVA_HOME/bin/java" ] || die $EXIT_MISSING "JAVA_HOME is $JAVA_HOME, but $JAVA_HOME/bin/java is missing"
else
    command -v java >/dev/null || die $EXIT_MISSING "no java on PATH (install a JDK, 21 was the reference's, or set JAVA_HOME)"
fi
need curl
mkdir -p "$results" 2>/dev/null || die $EXIT_USAGE "RINHA_RESULTS_DIR: cannot create $results"
results=$(cd "$results" && pwd)

# Like the reference runner, two statements in a row must answer 200 before Gatling starts: a
# round-robin balancer sends them to different instances, so both have answered once.
url=$RINHA_TARGET/clientes/1/extrato
echo "run.sh: warming up: waiting for two answers from $url (at most ${wait_s} s)"
deadline=$(($(date +%s) + wait_s))
answers() { curl -fsS --max-time 5 -o /dev/null "$url" 2>/dev/null; }
until answers && answers; do
    if (($(date +%s) >= deadline)); then
        die $EXIT_NOT_READY "$RINHA_TARGET did not answer twice within ${wait_s} s"
    fi
    sleep 1
done

# A results directory of this run's own, so that the report named at the end is this run's. Zinc,
# which compiles the simulation, writes the classes where -bf says but its cache to
# $GATLING_HOME/target/inc_compile.zip, a path no option moves: so Gatling gets a home of this
# run's own, the install's lib, conf and user-files linked (read only), removed when the run ends.
run_dir=$(mktemp -d "$results/$(date +%Y%m%d-%H%M%S)-XXXX")
build=$run_dir/build
trap 'rm -rf "$build"' EXIT
home=$build/gatling-home
mkdir -p "$home/target" "$home/user-files" "$build/classes"
ln -s "$install/lib" "$home/lib"
ln -s "$install/conf" "$home/conf"
for part in lib resources; do
    if [ -d "$install/user-files/$part" ]; then
        ln -s "$install/user-files/$part" "$home/user-files/$part"
    else
        mkdir "$home/user-files/$part"
    fi
done

echo "run.sh: ramp ${RINHA_RAMP_SECONDS} s, hold ${RINHA_HOLD_SECONDS} s; results in $run_dir"
status=0
GATLING_HOME=$home "$install/bin/gatling.sh" -rm local \
    -s crebitos.CrebitosSimulation \
    -rd "crebitos: reference load test" \
    -sf "$here/simulations" \
    -bf "$build/classes" \
    -rf "$run_dir" \
    -erjo "-Dgatling.charting.indicators.lowerBound=250" || status=$?

log=""
for candidate in "$run_dir"/*/simulation.log; do
    [ -f "$candidate" ] && log=$candidate
done
if [ -z "$log" ]; then
    rm -rf "$build"
    rmdir "$run_dir" 2>/dev/null || true
    die $EXIT_GATLING "this run left no simulation.log (Gatling exit status $status)"
fi
report_dir=$(dirname "$log")
if [ -f "$report_dir/index.html" ]; then
    echo "run.sh: report: $report_dir/index.html"
else
    echo "run.sh: no HTML report; the simulation log is $log" >&2
fi

# Gatling 3.10's simulation.log is text, one tab-separated record per line: REQUEST, its group
# (empty here), its name, start, end, OK or KO, and the message of its first failed check; ERROR,
# a request that could not be built (and so was never sent). Per request name: requests, KOs.
echo "run.sh: requests by name, from $log:"
awk -F '\t' '$1 == "REQUEST" { requests[$3]++; if ($6 == "KO") ko[$3]++ }
    END { for (name in requests) printf "run.sh:   %7d requests, %6d KO: %s\n", requests[name], ko[name], name }' \
    "$log" | sort -k 2,2nr
read -r requests kos errors < <(awk -F '\t' '
    $1 == "REQUEST" { requests++; if ($6 == "KO") ko++ }
    $1 == "ERROR" { errors++ }
    END { print requests + 0, ko + 0, errors + 0 }' "$log")
if ((kos > 0)); then
    echo "run.sh: the most frequent KO messages:"
    { awk -F '\t' '$1 == "REQUEST" && $6 == "KO" { print $3 ": " $7 }' "$log" |
        sort | uniq -c | sort -rn | head -n 5 | sed 's/^/run.sh:   /'; } || true
fi
if ((errors > 0)); then
    echo "run.sh: $errors requests could not be built and were not sent (ERROR records), for example:"
    { awk -F '\t' '$1 == "ERROR" { print $2 }' "$log" | head -n 3 | sed 's/^/run.sh:   /'; } || true
fi

# What the challenge's scoring reads: every line of simulation.log naming a ConsistenciaSaldoLimite
# check or an exact total is one inconsistency (it greps for each and adds the counts), and the
# share of all requests OK in under 250 ms (group1 of the report's stats) must be 98%.
count() { grep -c -F -- "$1" "$log" || true; }
within_limit=$(count "ConsistenciaSaldoLimite")
exact_totals=$(count "jmesPath(saldo.total).find.is")
inconsistencies=$((within_limit + exact_totals))
echo "run.sh: inconsistencies as the official scoring counts them: $inconsistencies" \
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

if ((inconsistencies > 0)); then
    die $EXIT_INCONSISTENT "FAILED: $inconsistencies inconsistencies, $kos KO of $requests requests, $errors not sent"
elif ((kos + errors > 0)); then
    die $EXIT_KO "FAILED: $kos KO of $requests requests, $errors not sent"
elif ((status != 0)); then
    die $EXIT_GATLING "FAILED: Gatling exited with status $status"
elif ((requests == 0)); then
    die $EXIT_GATLING "FAILED: $log holds no request"
fi
echo "run.sh: passed: $requests requests, all OK, no inconsistency"
