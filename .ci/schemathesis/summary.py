"""Prints the counts of one schemathesis run, from its JSON and NDJSON reports.

    python3 .ci/schemathesis/summary.py RUN.json EVENTS.ndjson

The JSON report gives the totals (operations, test cases, failures, warnings, and per operation
and phase how much valid data was accepted). The NDJSON events record each case of the examples,
coverage and fuzzing phases with its request, answer and checks (not the stateful phase's), from
which come the answers by method and status and the checks run, by name and outcome.
"""

import collections
import json
import sys


def main(run_path, events_path):
    with open(run_path) as file:
        run = json.load(file)
    operations, cases = run["operations"], run["test_cases"]
    warnings = sum(len(found) for found in run["warnings"].values())
    print(
        f"schemathesis: {operations['tested']} of {operations['total']} operations tested; "
        f"{cases['generated']} test cases, {cases['with_failures']} with failures "
        f"({cases['unique_failures']} unique), {cases['errored']} errors, {warnings} warnings"
    )
    for operation, phases in run["valid_rates"].items():
        rates = ", ".join(
            f"{phase} {rate['accepted']} accepted / {rate['rejected']} refused"
            for phase, rate in phases.items()
        )
        print(f"schemathesis: valid data, {operation}: {rates}")

    modes, answers, checks = collections.Counter(), collections.Counter(), collections.Counter()
    with open(events_path) as file:
        for line in file:
            event = json.loads(line).get("ScenarioFinished")
            if event is None:
                continue
            recorder = event["recorder"]
            for case in recorder.get("cases", {}).values():
                meta = case["value"].get("meta") or {}
                modes[meta.get("generation", {}).get("mode", "unknown")] += 1
            for interaction in recorder.get("interactions", {}).values():
                response = interaction.get("response") or {}
                answers[f"{interaction['request']['method']} {response.get('status_code')}"] += 1
            for results in recorder.get("checks", {}).values():
                for result in results:
                    checks[(result["name"], result["status"])] += 1
    print(
        f"schemathesis: examples, coverage and fuzzing: {sum(modes.values())} cases "
        f"({modes['positive']} valid data, {modes['negative']} invalid); answers: "
        + ", ".join(f"{answer} x{count}" for answer, count in sorted(answers.items()))
    )
    names = sorted({name for name, _ in checks})
    failed = sum(count for (_, status), count in checks.items() if status == "failure")
    print(
        f"schemathesis: checks: {len(names)} kinds, {sum(checks.values())} evaluations, "
        f"{failed} failed: "
        + ", ".join(
            f"{name} {sum(count for (each, _), count in checks.items() if each == name)}"
            for name in names
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
