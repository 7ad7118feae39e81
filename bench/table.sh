#!/usr/bin/env bash
# Turns bench/run.sh's raw.tsv into its two markdown tables, medians of the repetitions (errors
# are summed instead). Usage: [BENCH_TARGETS="..."] bench/table.sh bench/results/raw.tsv
# (the targets, in table order, default to the order of their first rows).
set -euo pipefail
awk -F'\t' -v order="${BENCH_TARGETS:-}" '
function median(list,    n, v, i, j, t) {
    n = split(list, v, " ")
    if (n == 0) return "-"
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] + 0 > t + 0; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function add(key, value) { if (value != "-") values[key] = values[key] " " value }
function mb(kb) { return (kb == "-") ? "-" : sprintf("%.1f", kb / 1024) }
NR == 1 { next }
{
    rep = $1; row = $2 SUBSEP $3 SUBSEP $4; reps[rep] = 1
    if (!($2 in known)) { known[$2] = 1; first_order = first_order " " $2 }
    add(row SUBSEP "rps", $5); add(row SUBSEP "p50", $6); add(row SUBSEP "p99", $7)
    add(row SUBSEP "p999", $20); add(row SUBSEP "max", $8); errors[row] += $9
    if ($10 > 0) add(row SUBSEP "sync", $11 / $10)
    add(row SUBSEP "front", $12); add(row SUBSEP "api", $13)
    add($2 SUBSEP "start", $14)
    if ($3 == "keepalive" && $4 == "closed") {
        add($2 SUBSEP "front_rest", $15); add($2 SUBSEP "api_rest", $17); add($2 SUBSEP "api_file", $18)
    }
    if ($16 > peak_front[$2, rep]) peak_front[$2, rep] = $16
    if ($19 > peak_api[$2, rep]) peak_api[$2, rep] = $19
    seen[row] = 1
}
END {
    for (key in peak_front) { split(key, k, SUBSEP); add(k[1] SUBSEP "front_peak", peak_front[key]) }
    for (key in peak_api) { split(key, k, SUBSEP); add(k[1] SUBSEP "api_peak", peak_api[key]) }
    n = 0; for (r in reps) n++
    print "| target | connections | load | req/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | fdatasyncs/tx | proxy CPU µs/req | API CPU µs/req |"
    print "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    split("closed keepalive,closed close,half keepalive,reference close", orders, ",")
    label["closed"] = "closed loop (wrk)"; label["half"] = "fixed rate, half the ceiling (oha)"
    label["reference"] = "fixed rate 340/s, the reference peak (oha)"
    nt = split(order != "" ? order : first_order, targets, " ")
    for (o = 1; o <= 4; o++) {
        split(orders[o], lm, " ")
        for (t = 1; t <= nt; t++) {
            row = targets[t] SUBSEP lm[2] SUBSEP lm[1]
            if (!(row in seen)) continue
            sync = median(values[row SUBSEP "sync"])
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s | %s |\n", targets[t],
                (lm[2] == "close") ? "one per request" : "keep-alive",
                label[lm[1]],
                median(values[row SUBSEP "rps"]), median(values[row SUBSEP "p50"]),
                median(values[row SUBSEP "p99"]), median(values[row SUBSEP "p999"]),
                median(values[row SUBSEP "max"]), errors[row],
                (sync == "-") ? "-" : sprintf("%.3f", sync),
                median(values[row SUBSEP "front"]), median(values[row SUBSEP "api"])
        }
    }
    printf "\nMedians of %d repetitions; errors summed over all of them.\n\n", n
    print "| process | RSS at rest MB | peak RSS under load MB | start to first answer ms |"
    print "|---|---:|---:|---:|"
    printf "| nginx ceiling (1 worker) | %s | %s | %s |\n", mb(median(values["ceiling" SUBSEP "front_rest"])),
        mb(median(values["ceiling" SUBSEP "front_peak"])), median(values["ceiling" SUBSEP "start"])
    for (b = 0; b < 2; b++) {
        suffix = b ? "@base" : ""
        if (!(("direct" suffix) in known) && !(("rinha-lb" suffix) in known)) continue
        d = "direct" suffix; l = "rinha-lb" suffix
        printf "| rinha-api alone%s | %s (%s file-backed) | %s | %s |\n", suffix, mb(median(values[d SUBSEP "api_rest"])),
            mb(median(values[d SUBSEP "api_file"])), mb(median(values[d SUBSEP "api_peak"])),
            median(values[d SUBSEP "start"])
        printf "| rinha-api behind rinha-lb (larger of 2)%s | %s (%s file-backed) | %s | - |\n", suffix,
            mb(median(values[l SUBSEP "api_rest"])), mb(median(values[l SUBSEP "api_file"])),
            mb(median(values[l SUBSEP "api_peak"]))
        printf "| rinha-lb%s | %s | %s | %s (whole stack) |\n", suffix, mb(median(values[l SUBSEP "front_rest"])),
            mb(median(values[l SUBSEP "front_peak"])), median(values[l SUBSEP "start"])
    }
    printf "| nginx stream (master + workers) | %s | %s | %s (whole stack) |\n",
        mb(median(values["nginx-stream" SUBSEP "front_rest"])),
        mb(median(values["nginx-stream" SUBSEP "front_peak"])), median(values["nginx-stream" SUBSEP "start"])
}' "$1"
