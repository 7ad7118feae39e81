//! The Gatling simulation (`gatling/simulations/crebitos/CrebitosSimulation.scala`) and
//! rinha-scenario are twins, and Gatling cannot run here, so this test reads the Scala source and
//! checks that the two cannot drift apart silently:
//!
//! - the simulation's scenarios, every `scenario("...")`, are exactly [`scenario::SCENARIOS`];
//! - its request names, every `http("...")`, are exactly rinha-scenario's ([`REQUESTS`]), the
//!   official ones that the report groups requests by;
//! - its named checks, every `.validate("...", ...)` and `.name("...")`, are exactly
//!   [`call::NAMED_CHECKS`], the official `ConsistenciaSaldoLimite` names the official scoring
//!   counts;
//! - it checks `saldo.total` only in the form whose failure Gatling reports as
//!   [`call::EXACT_TOTAL`], the other string the official scoring counts;
//! - no scenario or request name holds a string the scoring counts (simulation.log names every
//!   scenario and request).
//!
//! Names must be string literals, so that a simple scan of the source finds them all; comments
//! are skipped. The second test breaks the real source in a few ways and expects each break to be
//! caught, so the check itself is known to be able to fail.

use std::collections::BTreeSet;
use std::path::Path;

use rinha_scenario::{call, load, scenario};

const SIMULATION: &str = "../../gatling/simulations/crebitos/CrebitosSimulation.scala";

/// Every request name rinha-scenario reports, the official ones: all of phases 1 to 3, then one
/// per load scenario.
const REQUESTS: [&str; 4] = [
    scenario::VALIDATIONS,
    load::DEBITS,
    load::CREDITS,
    load::STATEMENTS,
];

/// The prefix of every check name the official scoring counts.
const CONSISTENCY: &str = "ConsistenciaSaldoLimite";

fn simulation_source() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SIMULATION);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

#[test]
fn the_simulation_and_rinha_scenario_agree() {
    let problems = disagreements(&simulation_source());
    assert!(
        problems.is_empty(),
        "the Gatling simulation and rinha-scenario disagree:\n  - {}",
        problems.join("\n  - ")
    );
}

#[test]
fn a_drifted_simulation_is_caught() {
    // The breaks apply to the code, not to the comments that may quote it.
    let source = strip_comments(&simulation_source());
    let breaks = [
        // A check renamed on one side only.
        (
            r#""ConsistenciaSaldoLimite - Extrato""#,
            r#""ConsistenciaSaldoLimite - Extratos""#,
        ),
        // A scenario renamed on one side only.
        (
            r#"scenario("validação HTTP 404")"#,
            r#"scenario("validação 404")"#,
        ),
        // A scenario name the scan cannot read.
        (r#"scenario("extratos")"#, r#"scenario(s"extratos")"#),
        // A request renamed on one side only (back to the English names of before).
        (r#"http("extratos")"#, r#"http("statements")"#),
        // A request name the scan cannot read.
        (r#"http("débitos")"#, r#"http(debitsName)"#),
        // An exact total in a form the official scoring does not count.
        (
            r#"jmesPath("saldo.total").ofType[Int].is(0)"#,
            r#"jsonPath("$.saldo.total").ofType[Int].is(0)"#,
        ),
        // A consistency check whose name is not a literal.
        (
            r#".validate("ConsistenciaSaldoLimite - Transação","#,
            ".validate(transactionCheckName,",
        ),
    ];
    for (original, broken) in breaks {
        assert!(
            source.contains(original),
            "the simulation's code no longer contains {original}; update this test"
        );
        let drifted = source.replacen(original, broken, 1);
        assert!(
            !disagreements(&drifted).is_empty(),
            "replacing {original} by {broken} went unnoticed"
        );
    }
}

#[test]
fn the_scan_skips_comments_and_keeps_strings() {
    let code = strip_comments(
        "a // scenario(\"x\")\nb /* scenario(\"y\") /* nested */ */ c \"http://h\" \"\"\"q // r\"\"\" '\"'",
    );
    assert_eq!(code, "a \nb  c \"http://h\" \"\"\"q // r\"\"\" '\"'");
    let (names, errors) = literal_arguments(
        "scenario(\"a\") myscenario(\"b\") scenario( \"c\" ) scenario(name)",
        "scenario(",
    );
    assert_eq!(names, ["a", "c"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
}

/// Every way the simulation `source` disagrees with rinha-scenario; empty when the twins agree.
fn disagreements(source: &str) -> Vec<String> {
    let code = strip_comments(source);
    let mut problems = Vec::new();

    let (scenarios, errors) = literal_arguments(&code, "scenario(");
    problems.extend(errors);
    let mut seen = BTreeSet::new();
    for name in &scenarios {
        if !seen.insert(name.as_str()) {
            problems.push(format!(
                "scenario {name:?} is defined twice in the simulation"
            ));
        }
    }
    compare("scenario", &seen, &scenario::SCENARIOS, &mut problems);

    let (requests, errors) = literal_arguments(&code, "http(");
    problems.extend(errors);
    let requests: BTreeSet<&str> = requests.iter().map(String::as_str).collect();
    compare("request name", &requests, &REQUESTS, &mut problems);

    let mut checks = BTreeSet::new();
    for call in [".validate(", ".name("] {
        let (names, errors) = literal_arguments(&code, call);
        checks.extend(names);
        problems.extend(errors);
    }
    let checks: BTreeSet<&str> = checks.iter().map(String::as_str).collect();
    compare("named check", &checks, &call::NAMED_CHECKS, &mut problems);

    // Gatling names a failed check `extractor(path).find.validator`; EXACT_TOTAL is that name
    // for `jmesPath("saldo.total")...is(...)`. Every check of the total must go through that
    // extractor, and the exact ones must be written `.ofType[Int].is(...)`.
    let (extractor, path) = call::EXACT_TOTAL
        .strip_suffix(").find.is")
        .and_then(|head| head.split_once('('))
        .expect("EXACT_TOTAL reads extractor(path).find.is");
    let exact_form = format!("{extractor}(\"{path}\").ofType[Int].is(");
    if !code.contains(&exact_form) {
        problems.push(format!(
            "the simulation has no exact total written {exact_form}...), which the official \
             scoring counts as {}",
            call::EXACT_TOTAL
        ));
    }
    let opening = format!("{extractor}(\"");
    let mut from = 0;
    while let Some(found) = code[from..].find(path) {
        let at = from + found;
        from = at + path.len();
        if !(code[..at].ends_with(&opening) && code[from..].starts_with('"')) {
            let line_start = code[..at].rfind('\n').map_or(0, |newline| newline + 1);
            let line_end = code[at..]
                .find('\n')
                .map_or(code.len(), |newline| at + newline);
            problems.push(format!(
                "`{}` reads {path} other than through {opening}{path}\"): the official scoring \
                 would not count its failures",
                code[line_start..line_end].trim()
            ));
        }
    }

    // Each balance check reads the balance of its kind of answer.
    for (name, balance) in [
        (call::TRANSACTION_WITHIN_LIMIT, "saldo"),
        (call::STATEMENT_WITHIN_LIMIT, path),
    ] {
        let form = format!("{extractor}(\"{balance}\").validate(\"{name}\",");
        if !code.contains(&form) {
            problems.push(format!("the simulation has no check written {form} ...)"));
        }
    }

    for name in call::NAMED_CHECKS {
        if !name.starts_with(CONSISTENCY) {
            problems.push(format!(
                "named check {name:?} does not start with {CONSISTENCY}, the string the official \
                 scoring counts"
            ));
        }
    }
    for name in scenario::SCENARIOS.iter().chain(&REQUESTS) {
        if name.contains(CONSISTENCY) || name.contains(call::EXACT_TOTAL) {
            problems.push(format!(
                "name {name:?} holds a string the official scoring counts in simulation.log"
            ));
        }
    }
    problems
}

/// Reports every name found on one side only; `what` says what the names are.
fn compare(what: &str, simulation: &BTreeSet<&str>, rust: &[&str], problems: &mut Vec<String>) {
    let rust: BTreeSet<&str> = rust.iter().copied().collect();
    for name in simulation.difference(&rust) {
        problems.push(format!(
            "{what} {name:?} is in the simulation but not in rinha-scenario"
        ));
    }
    for name in rust.difference(simulation) {
        problems.push(format!(
            "{what} {name:?} is in rinha-scenario but not in the simulation"
        ));
    }
}

/// The string literals given as first argument to every `call` (for example `scenario(`) in
/// `code`, in order, and an error for every call whose first argument is not a plain string
/// literal. `call` must start at an identifier boundary: `myscenario(` is not a `scenario(`.
fn literal_arguments(code: &str, call: &str) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find(call) {
        let at = from + found;
        from = at + call.len();
        let boundary = code[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if !boundary && !call.starts_with('.') {
            continue;
        }
        let literal = code[from..]
            .trim_start()
            .strip_prefix('"')
            .filter(|literal| !literal.starts_with('"'))
            .and_then(|literal| literal.split_once('"'))
            .map(|(name, _)| name)
            .filter(|name| !name.contains(['\\', '$', '\n']));
        match literal {
            Some(name) => names.push(name.to_string()),
            None => {
                let line = code[at..].lines().next().unwrap_or_default();
                errors.push(format!(
                    "`{line}`: the name must be a plain string literal so that this test can \
                     read it"
                ));
            }
        }
    }
    (names, errors)
}

/// `source` without its Scala comments (`// ...` and `/* ... */`, nested), string and character
/// literals kept whole so that a `//` inside a string is not taken for a comment.
fn strip_comments(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut code = String::with_capacity(source.len());
    let mut i = 0;
    let starts = |i: usize, text: &str| {
        text.chars()
            .enumerate()
            .all(|(k, c)| chars.get(i + k) == Some(&c))
    };
    while i < chars.len() {
        if starts(i, "\"\"\"") {
            let end = (i + 3..chars.len())
                .find(|&j| starts(j, "\"\"\""))
                .map_or(chars.len(), |j| j + 3);
            code.extend(&chars[i..end]);
            i = end;
        } else if chars[i] == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' && chars[j] != '\n' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(chars.len());
            code.extend(&chars[i..end]);
            i = end;
        } else if chars[i] == '\'' && chars.get(i + 2) == Some(&'\'') {
            code.extend(&chars[i..i + 3]);
            i += 3;
        } else if starts(i, "//") {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if starts(i, "/*") {
            let mut depth = 0;
            while i < chars.len() {
                if starts(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if starts(i, "*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else {
            code.push(chars[i]);
            i += 1;
        }
    }
    code
}
