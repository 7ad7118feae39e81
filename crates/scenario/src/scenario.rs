//! The reference scenario of docs/load-test.md, phase by phase, with every check.
//!
//! Phases 1 and 2 (25 concurrent debits, then credits, each followed by an exact total), then in
//! parallel the validation chain of each account and the 404 check, after which the load phase
//! starts. The Gatling simulation in `gatling/` describes the same steps as the scenarios listed
//! in [`SCENARIOS`], under the same names; `tests/gatling_twin.rs` checks that the names and the
//! named checks of the two agree.

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crate::call::{self, get_statement, post, Call, Entry, TRANSACTION_WITHIN_LIMIT};
use crate::client::{Method, Target};
use crate::config::Config;
use crate::load;
use crate::stats::{Recorder, Report};

/// The five accounts and their limits (docs/api.md), as the server seeds them.
pub use rinha_api::contract::ACCOUNTS;

/// Users started at once in each of phases 1 and 2.
pub const CONCURRENT_USERS: usize = 25;

/// Concurrent statements after the "danada" credit of the validation chain.
pub const CONCURRENT_STATEMENTS: usize = 4;

// Scenario and request names are the official simulation's (RinhaBackendCrebitosSimulation in
// the challenge's repository), so that both reports read alike and the challenge's text report,
// which selects requests by name, finds them.

/// Phase 1: [`CONCURRENT_USERS`] users at once debit 1 from account 1.
pub const CONCURRENT_DEBITS: &str = "validação concorrência transações - d";
/// Then one statement of account 1 must show a total of exactly -[`CONCURRENT_USERS`] (the
/// official name holds the total it expects).
pub const TOTAL_AFTER_DEBITS: &str = "validação concorrência saldo - -25";
/// Phase 2: [`CONCURRENT_USERS`] users at once credit 1 to account 1.
pub const CONCURRENT_CREDITS: &str = "validação concorrência transações - c";
/// Then one statement of account 1 must show a total of exactly 0.
pub const TOTAL_AFTER_CREDITS: &str = "validação concorrência saldo - 0";
/// Phase 3: the validation chain, one user per account.
pub const VALIDATION_CHAIN: &str = "validações";
/// Phase 3, alongside the chain: the statement of an unknown account answers 404.
pub const NOT_FOUND: &str = "validação HTTP 404";

/// Every scenario of a run, in the order they start; the Gatling twin has one `scenario(...)`
/// per name. Failure messages name the scenario of the failed request.
pub const SCENARIOS: [&str; 9] = [
    CONCURRENT_DEBITS,
    TOTAL_AFTER_DEBITS,
    CONCURRENT_CREDITS,
    TOTAL_AFTER_CREDITS,
    VALIDATION_CHAIN,
    NOT_FOUND,
    load::DEBITS,
    load::CREDITS,
    load::STATEMENTS,
];

/// The report's name for every request of phases 1 to 3, the 404 included, as in the simulation.
pub const VALIDATIONS: &str = "validações";

/// Runs the whole scenario and returns what it saw.
pub fn run(config: &Config) -> Report {
    let mut recorder = Recorder::default();
    if !config.load_only {
        let users = CONCURRENT_USERS as i64;
        let debits = (CONCURRENT_DEBITS, TOTAL_AFTER_DEBITS);
        concurrent_transactions(config, debits, "d", -users, &mut recorder);
        let credits = (CONCURRENT_CREDITS, TOTAL_AFTER_CREDITS);
        concurrent_transactions(config, credits, "c", 0, &mut recorder);
    }
    thread::scope(|scope| {
        let mut chains = Vec::new();
        if !config.load_only {
            for (account, limit) in ACCOUNTS {
                chains.push(scope.spawn(move || validation_chain(config, account, limit)));
            }
            not_found(config, &mut recorder);
        }
        recorder.merge(load::run(config));
        for chain in chains {
            recorder.merge(chain.join().expect("a validation thread panicked"));
        }
    });
    recorder.report()
}

/// Waits until `GET /clientes/1/extrato` answers 200, like the reference runner does before it
/// starts Gatling.
pub fn wait_ready(target: &Target, wait: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let mut call = call::send(
            target,
            Duration::from_secs(2),
            "ready",
            "ready",
            Method::Get,
            "/clientes/1/extrato",
            None,
        );
        if call.status_in(&[200]) {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= wait {
            return Err(format!(
                "http://{} ({}) did not answer GET /clientes/1/extrato with 200 within {wait:?}",
                target.host, target.addr
            ));
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Checks every account is fresh (balance 0, no transaction), which phases 1 to 3 assume.
pub fn check_fresh(config: &Config) -> Result<(), String> {
    for (account, _) in ACCOUNTS {
        let path = format!("/clientes/{account}/extrato");
        let mut call = call::send(
            &config.target,
            config.timeout,
            "fresh",
            "fresh",
            Method::Get,
            &path,
            None,
        );
        if !call.status_in(&[200]) {
            return Err(format!(
                "GET {path} did not answer 200 ({:?})",
                call.status()
            ));
        }
        let statement = call
            .statement()
            .ok_or_else(|| format!("GET {path}: unreadable statement"))?;
        if statement.total != 0 || !statement.latest.is_empty() {
            return Err(format!(
                "account {account} is not fresh (balance {}, {} transactions): the full scenario \
                 needs a stack started on an empty data directory (or use --load-only)",
                statement.total,
                statement.latest.len()
            ));
        }
    }
    Ok(())
}

/// Phases 1 and 2: 25 users at once send one transaction of 1 on account 1 (the first scenario of
/// `scenarios`), then one statement must show exactly `total` (the second).
fn concurrent_transactions(
    config: &Config,
    scenarios: (&'static str, &'static str),
    kind: &str,
    total: i64,
    recorder: &mut Recorder,
) {
    let (concurrent, then_total) = scenarios;
    let body = format!(r#"{{"valor": 1, "tipo": "{kind}", "descricao": "validacao"}}"#);
    let barrier = Barrier::new(CONCURRENT_USERS);
    thread::scope(|scope| {
        let users: Vec<_> = (0..CONCURRENT_USERS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let mut call = post(config, concurrent, VALIDATIONS, 1, &body);
                    call.status_in(&[200]);
                    call
                })
            })
            .collect();
        for user in users {
            user.join()
                .expect("a validation thread panicked")
                .finish(recorder);
        }
    });
    let mut call = get_statement(config, then_total, VALIDATIONS, 1);
    if call.status_in(&[200]) {
        if let Some(statement) = call.statement() {
            call.exact_total(statement.total, total);
        }
    }
    call.finish(recorder);
}

/// Phase 3(b): an unknown account answers 404.
fn not_found(config: &Config, recorder: &mut Recorder) {
    let mut call = get_statement(config, NOT_FOUND, VALIDATIONS, 6);
    call.status_in(&[404]);
    call.finish(recorder);
}

/// Phase 3(a): the validation chain of one account, sequential except for the concurrent
/// statements after "danada".
fn validation_chain(config: &Config, account: u32, limit: i64) -> Recorder {
    let mut recorder = Recorder::default();
    let mut call = get_statement(config, VALIDATION_CHAIN, VALIDATIONS, account);
    if call.status_in(&[200]) {
        if let Some(statement) = call.statement() {
            call.ensure(statement.limit == limit, || {
                format!("saldo.limite is {}, expected {limit}", statement.limit)
            });
            call.exact_total(statement.total, 0);
        }
    }
    call.finish(&mut recorder);
    // "toma" and "devolve" must both pass, and each answer must keep the balance within the limit.
    for (kind, description) in [("c", "toma"), ("d", "devolve")] {
        let body = format!(r#"{{"valor": 1, "tipo": "{kind}", "descricao": "{description}"}}"#);
        let mut call = post(config, VALIDATION_CHAIN, VALIDATIONS, account, &body);
        if call.status_in(&[200]) {
            if let Some(outcome) = call.outcome() {
                call.consistent(TRANSACTION_WITHIN_LIMIT, outcome.balance, outcome.limit);
            }
        }
        call.finish(&mut recorder);
    }
    let mut call = get_statement(config, VALIDATION_CHAIN, VALIDATIONS, account);
    if call.status_in(&[200]) {
        if let Some(statement) = call.statement() {
            expect_entry(&mut call, &statement.latest, 0, "devolve", "d");
            expect_entry(&mut call, &statement.latest, 1, "toma", "c");
        }
    }
    call.finish(&mut recorder);
    danada(config, account, &mut recorder);
    invalid_transactions(config, account, &mut recorder);
    recorder
}

/// The "danada" credit, then four concurrent statements that must all show it, the limit and
/// the balance it answered.
fn danada(config: &Config, account: u32, recorder: &mut Recorder) {
    let body = r#"{"valor": 1, "tipo": "c", "descricao": "danada"}"#;
    let mut call = post(config, VALIDATION_CHAIN, VALIDATIONS, account, body);
    let outcome = if call.status_in(&[200]) {
        call.outcome()
    } else {
        None
    };
    call.finish(recorder);
    let Some(outcome) = outcome else { return };
    thread::scope(|scope| {
        let statements: Vec<_> = (0..CONCURRENT_STATEMENTS)
            .map(|_| {
                scope.spawn(move || {
                    let mut call = get_statement(config, VALIDATION_CHAIN, VALIDATIONS, account);
                    if call.status_in(&[200]) {
                        if let Some(statement) = call.statement() {
                            expect_entry(&mut call, &statement.latest, 0, "danada", "c");
                            call.ensure(statement.limit == outcome.limit, || {
                                format!("saldo.limite {} != {}", statement.limit, outcome.limit)
                            });
                            call.exact_total(statement.total, outcome.balance);
                        }
                    }
                    call
                })
            })
            .collect();
        for statement in statements {
            statement
                .join()
                .expect("a statement thread panicked")
                .finish(recorder);
        }
    });
}

/// Five transactions the API must refuse with 422 (or 400).
fn invalid_transactions(config: &Config, account: u32, recorder: &mut Recorder) {
    let bodies = [
        r#"{"valor": 1.2, "tipo": "d", "descricao": "devolve"}"#,
        r#"{"valor": 1, "tipo": "x", "descricao": "devolve"}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": "123456789 e mais um pouco"}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": ""}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": null}"#,
    ];
    for body in bodies {
        let mut call = post(config, VALIDATION_CHAIN, VALIDATIONS, account, body);
        call.status_in(&[422, 400]);
        call.finish(recorder);
    }
}

fn expect_entry(call: &mut Call, latest: &[Entry], index: usize, description: &str, kind: &str) {
    let wanted = Entry {
        value: 1,
        kind: kind.to_string(),
        description: description.to_string(),
    };
    call.ensure(latest.get(index) == Some(&wanted), || {
        format!(
            "ultimas_transacoes[{index}] is {:?}, expected {wanted:?}",
            latest.get(index)
        )
    });
}
