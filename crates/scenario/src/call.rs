//! One request of a virtual user and the checks made on its answer.
//!
//! A `Call` holds the response and collects every failed check in the order the checks ran;
//! `finish` records the request as OK only when nothing failed, as Gatling marks a request KO when
//! any of its checks fails.
//!
//! The checks the official scoring of the challenge counts carry the official names. That scoring
//! reads Gatling's `simulation.log`, where a KO request is written with the message of its first
//! failed check, and counts one inconsistency per line holding `ConsistenciaSaldoLimite` (the
//! balance-within-limit checks, [`NAMED_CHECKS`]) or [`EXACT_TOTAL`] (an exact `saldo.total`).
//! `finish` counts inconsistencies the same way: a request whose first failed check is one of
//! those.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{self, Method, Response, Target};
use crate::config::Config;
use crate::stats::{Recorder, Sample};

/// The balance-within-limit check on a transaction answer (`saldo >= -limite`), named as the
/// official simulation names it.
pub const TRANSACTION_WITHIN_LIMIT: &str = "ConsistenciaSaldoLimite - Transação";

/// The balance-within-limit check on a statement (`saldo.total >= -saldo.limite`), named as the
/// official simulation names it.
pub const STATEMENT_WITHIN_LIMIT: &str = "ConsistenciaSaldoLimite - Extrato";

/// Every named check of the scenario: the names the Gatling twin gives its `validate` checks.
pub const NAMED_CHECKS: [&str; 2] = [TRANSACTION_WITHIN_LIMIT, STATEMENT_WITHIN_LIMIT];

/// How Gatling 3.10 opens the message of a failed exact check of a statement's total, written
/// `jmesPath("saldo.total").ofType[Int].is(expected)`; the official scoring counts these messages.
pub const EXACT_TOTAL: &str = "jmesPath(saldo.total).find.is";

/// A request sent, with what its checks found.
#[derive(Debug)]
pub struct Call {
    scenario: &'static str,
    name: &'static str,
    what: String,
    started: Instant,
    latency: Duration,
    response: Option<Response>,
    problems: Vec<Problem>,
}

/// One failed check.
#[derive(Debug)]
struct Problem {
    message: String,
    /// Whether the official scoring counts this check's failure as an inconsistency.
    scored: bool,
}

impl Problem {
    fn plain(message: String) -> Problem {
        Problem {
            message,
            scored: false,
        }
    }
}

/// The parts of a transaction answer the checks read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `saldo`: the balance after the transaction.
    pub balance: i64,
    /// `limite`: the account's limit.
    pub limit: i64,
}

/// One entry of `ultimas_transacoes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `valor`.
    pub value: i64,
    /// `tipo`.
    pub kind: String,
    /// `descricao`.
    pub description: String,
}

/// The parts of a statement the checks read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// `saldo.total`.
    pub total: i64,
    /// `saldo.limite`.
    pub limit: i64,
    /// `ultimas_transacoes`, newest first.
    pub latest: Vec<Entry>,
}

/// Sends one request on a new connection and times it from before `connect` to the last byte.
/// `scenario` labels the failure messages; `name` groups the request in the report.
pub fn send(
    target: &Target,
    timeout: Duration,
    scenario: &'static str,
    name: &'static str,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Call {
    let started = Instant::now();
    let result = client::exchange(target, method, path, body, timeout);
    let latency = started.elapsed();
    let verb = if method == Method::Get { "GET" } else { "POST" };
    let what = match body {
        Some(body) => format!("{verb} {path} {body}"),
        None => format!("{verb} {path}"),
    };
    let mut call = Call {
        scenario,
        name,
        what,
        started,
        latency,
        response: None,
        problems: Vec::new(),
    };
    match result {
        Ok(response) => call.response = Some(response),
        Err(error) => call.fail(format!("no answer: {error}")),
    }
    call
}

/// `POST /clientes/{account}/transacoes` with `body`, a request named `name` of `scenario`.
pub fn post(
    config: &Config,
    scenario: &'static str,
    name: &'static str,
    account: u32,
    body: &str,
) -> Call {
    let path = format!("/clientes/{account}/transacoes");
    send(
        &config.target,
        config.timeout,
        scenario,
        name,
        Method::Post,
        &path,
        Some(body),
    )
}

/// `GET /clientes/{account}/extrato`, a request named `name` of `scenario`.
pub fn get_statement(
    config: &Config,
    scenario: &'static str,
    name: &'static str,
    account: u32,
) -> Call {
    let path = format!("/clientes/{account}/extrato");
    send(
        &config.target,
        config.timeout,
        scenario,
        name,
        Method::Get,
        &path,
        None,
    )
}

impl Call {
    /// Checks the status is one of `allowed`; false also when there was no answer.
    pub fn status_in(&mut self, allowed: &[u16]) -> bool {
        let Some(response) = &self.response else {
            return false;
        };
        if allowed.contains(&response.status) {
            return true;
        }
        let status = response.status;
        let body = String::from_utf8_lossy(&response.body).into_owned();
        self.fail(format!(
            "status {status}, expected one of {allowed:?} (body {body:?})"
        ));
        false
    }

    /// The status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        self.response.as_ref().map(|response| response.status)
    }

    /// Records a failed check when `ok` is false.
    pub fn ensure(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.fail(message());
        }
    }

    /// The balance-within-limit check named `check` ([`TRANSACTION_WITHIN_LIMIT`] or
    /// [`STATEMENT_WITHIN_LIMIT`]): `balance` must not be below `-limit`. Its failure is one the
    /// official scoring counts.
    pub fn consistent(&mut self, check: &'static str, balance: i64, limit: i64) {
        if balance < -limit {
            self.problems.push(Problem {
                message: format!("{check}: saldo {balance} is below -limite (-{limit})"),
                scored: true,
            });
        }
    }

    /// The exact check of a statement's total: `total` must be `expected`. Its failure message is
    /// the one Gatling writes for the twin check ([`EXACT_TOTAL`]), and the official scoring
    /// counts it.
    pub fn exact_total(&mut self, total: i64, expected: i64) {
        if total != expected {
            self.problems.push(Problem {
                message: format!("{EXACT_TOTAL}({expected}), but actually found {total}"),
                scored: true,
            });
        }
    }

    /// Reads `{"limite": L, "saldo": S}` from a transaction answer.
    pub fn outcome(&mut self) -> Option<Outcome> {
        let json = self.json()?;
        let balance = self.int_at(&json, "/saldo")?;
        let limit = self.int_at(&json, "/limite")?;
        Some(Outcome { balance, limit })
    }

    /// Reads a statement answer.
    pub fn statement(&mut self) -> Option<Statement> {
        let json = self.json()?;
        let total = self.int_at(&json, "/saldo/total")?;
        let limit = self.int_at(&json, "/saldo/limite")?;
        let Some(list) = json
            .pointer("/ultimas_transacoes")
            .and_then(Value::as_array)
        else {
            self.fail("ultimas_transacoes is missing or not an array".to_string());
            return None;
        };
        let mut latest = Vec::with_capacity(list.len());
        for item in list {
            let entry = || -> Option<Entry> {
                Some(Entry {
                    value: item.get("valor").and_then(Value::as_i64)?,
                    kind: item.get("tipo").and_then(Value::as_str)?.to_string(),
                    description: item.get("descricao").and_then(Value::as_str)?.to_string(),
                })
            };
            let Some(entry) = entry() else {
                self.fail(format!("malformed entry in ultimas_transacoes: {item}"));
                return None;
            };
            latest.push(entry);
        }
        Some(Statement {
            total,
            limit,
            latest,
        })
    }

    /// Records the request and its failed checks, and an inconsistency when the first failed
    /// check is one the official scoring counts (Gatling logs only the first failure of a
    /// request).
    pub fn finish(self, recorder: &mut Recorder) {
        let ok = self.response.is_some() && self.problems.is_empty();
        let sample = Sample::new(self.name, self.started, self.latency, self.status(), ok);
        recorder.request(sample);
        let label = |message: &str| format!("[{}] {}: {message}", self.scenario, self.what);
        if let Some(first) = self.problems.first().filter(|problem| problem.scored) {
            recorder.inconsistency(label(&first.message));
        }
        for problem in &self.problems {
            recorder.failure(label(&problem.message));
        }
    }

    fn fail(&mut self, message: String) {
        self.problems.push(Problem::plain(message));
    }

    fn json(&mut self) -> Option<Value> {
        let response = self.response.as_ref()?;
        match serde_json::from_slice::<Value>(&response.body) {
            Ok(json) => Some(json),
            Err(error) => {
                let body = String::from_utf8_lossy(&response.body).into_owned();
                self.fail(format!("body is not JSON ({error}): {body:?}"));
                None
            }
        }
    }

    fn int_at(&mut self, json: &Value, pointer: &str) -> Option<i64> {
        let value = json.pointer(pointer).and_then(Value::as_i64);
        if value.is_none() {
            self.fail(format!("{pointer} is missing or not an integer in {json}"));
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_with(status: u16, body: &str) -> Call {
        Call {
            scenario: "test scenario",
            name: "test",
            what: "GET /x".to_string(),
            started: Instant::now(),
            latency: Duration::from_millis(1),
            response: Some(Response {
                status,
                body: body.as_bytes().to_vec(),
            }),
            problems: Vec::new(),
        }
    }

    /// Reads a statement from `body` and compares it and the number of failed checks.
    #[track_caller]
    fn check(body: &str, expected: Option<Statement>, problems: usize) {
        let mut call = call_with(200, body);
        assert_eq!(call.statement(), expected, "body {body}");
        assert_eq!(
            call.problems.len(),
            problems,
            "body {body}: {:?}",
            call.problems
        );
    }

    #[test]
    fn statement_reading() {
        let entry = |value, kind: &str, description: &str| Entry {
            value,
            kind: kind.to_string(),
            description: description.to_string(),
        };
        check(
            r#"{"saldo":{"total":-5,"limite":100,"data_extrato":"x"},"ultimas_transacoes":[
                {"valor":5,"tipo":"d","descricao":"a","realizada_em":"x"}]}"#,
            Some(Statement {
                total: -5,
                limit: 100,
                latest: vec![entry(5, "d", "a")],
            }),
            0,
        );
        check("not json", None, 1);
        check(
            r#"{"saldo":{"total":1.5,"limite":1},"ultimas_transacoes":[]}"#,
            None,
            1,
        );
        check(r#"{"saldo":{"total":1,"limite":1}}"#, None, 1);
        check(
            r#"{"saldo":{"total":1,"limite":1},"ultimas_transacoes":[{"valor":1}]}"#,
            None,
            1,
        );
    }

    #[test]
    fn checks_mark_the_request_and_count_inconsistencies() {
        let mut call = call_with(422, r#"{"erro":"x"}"#);
        assert!(!call.status_in(&[200]));
        let mut recorder = Recorder::default();
        call.finish(&mut recorder);
        let report = recorder.report();
        assert_eq!((report.all.ko, report.failures_total), (1, 1));

        let mut call = call_with(200, r#"{"limite":100,"saldo":-101}"#);
        assert!(call.status_in(&[200, 422]));
        let outcome = call.outcome().unwrap();
        call.consistent(TRANSACTION_WITHIN_LIMIT, outcome.balance, outcome.limit);
        let mut recorder = Recorder::default();
        call.finish(&mut recorder);
        let report = recorder.report();
        assert_eq!(report.inconsistencies_total, 1);
        assert!(!report.passed());
        assert_eq!(
            report.inconsistencies,
            [
                "[test scenario] GET /x: ConsistenciaSaldoLimite - Transação: saldo -101 is below \
              -limite (-100)"
            ]
        );
    }

    #[test]
    fn an_exact_total_fails_with_gatlings_message_and_counts() {
        let mut call = call_with(200, "{}");
        call.exact_total(-24, -25);
        call.exact_total(7, 7);
        assert_eq!(call.problems.len(), 1);
        assert_eq!(
            call.problems[0].message,
            "jmesPath(saldo.total).find.is(-25), but actually found -24"
        );
        let mut recorder = Recorder::default();
        call.finish(&mut recorder);
        assert_eq!(recorder.report().inconsistencies_total, 1);
    }

    #[test]
    fn only_a_scored_first_failure_counts_as_an_inconsistency() {
        // The official scoring sees only the first failed check of a request, as Gatling logs it.
        let mut call = call_with(200, "{}");
        call.ensure(false, || "saldo.limite is 1, expected 2".to_string());
        call.exact_total(1, 0);
        call.consistent(STATEMENT_WITHIN_LIMIT, -3, 2);
        let mut recorder = Recorder::default();
        call.finish(&mut recorder);
        let report = recorder.report();
        assert_eq!(
            (report.failures_total, report.inconsistencies_total),
            (3, 0)
        );
        assert_eq!(report.all.ko, 1);
    }
}
