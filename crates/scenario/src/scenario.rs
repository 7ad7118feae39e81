//! The reference scenario of LOAD.md, phase by phase, with every check.
//!
//! Phases 1 and 2 (25 concurrent debits, then credits, each followed by an exact total), then in
//! parallel the validation chain of each account and the 404 check, after which the load phase
//! starts. The Gatling simulation in `gatling/` describes the same steps; keep the two in step.

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crate::call::{self, Call, Entry};
use crate::client::{Method, Target};
use crate::load;
use crate::stats::{Recorder, Report};

/// The five accounts and their limits (API.md).
pub const ACCOUNTS: [(u32, i64); 5] = [
    (1, 100_000),
    (2, 80_000),
    (3, 1_000_000),
    (4, 10_000_000),
    (5, 500_000),
];

/// Users started at once in each of phases 1 and 2.
pub const CONCURRENT_USERS: usize = 25;

/// Concurrent statements after the "danada" credit of the validation chain.
pub const CONCURRENT_STATEMENTS: usize = 4;

/// How a run is driven.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the API (normally the balancer) listens.
    pub target: Target,
    /// Length of the linear ramp of the load phase (the reference: 2 minutes).
    pub ramp: Duration,
    /// Length of the peak hold after the ramp (the reference: 2 minutes).
    pub hold: Duration,
    /// Client threads running load users; a user waits for a free thread.
    pub threads: usize,
    /// Bound on one request, from connect to the last byte.
    pub timeout: Duration,
    /// Seed of the random accounts, values and descriptions.
    pub seed: u64,
    /// Skip phases 1 to 3 and run only the load phase (for a stack that is not fresh).
    pub load_only: bool,
}

/// Runs the whole scenario and returns what it saw.
pub fn run(config: &Config) -> Report {
    let mut recorder = Recorder::default();
    if !config.load_only {
        concurrent_transactions(config, "d", -25, &mut recorder);
        concurrent_transactions(config, "c", 0, &mut recorder);
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

/// Phases 1 and 2: 25 users at once send one transaction of 1 on account 1, then one statement
/// must show exactly `total`.
fn concurrent_transactions(config: &Config, kind: &str, total: i64, recorder: &mut Recorder) {
    let body = format!(r#"{{"valor": 1, "tipo": "{kind}", "descricao": "validacao"}}"#);
    let barrier = Barrier::new(CONCURRENT_USERS);
    thread::scope(|scope| {
        let users: Vec<_> = (0..CONCURRENT_USERS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let mut call = post(config, "validations", 1, &body);
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
    let mut call = get_statement(config, "validations", 1);
    if call.status_in(&[200]) {
        if let Some(statement) = call.statement() {
            call.ensure(statement.total == total, || {
                format!(
                    "saldo.total is {}, expected exactly {total}",
                    statement.total
                )
            });
        }
    }
    call.finish(recorder);
}

/// Phase 3(b): an unknown account answers 404.
fn not_found(config: &Config, recorder: &mut Recorder) {
    let mut call = get_statement(config, "not found", 6);
    call.status_in(&[404]);
    call.finish(recorder);
}

/// Phase 3(a): the validation chain of one account, sequential except for the concurrent
/// statements after "danada".
fn validation_chain(config: &Config, account: u32, limit: i64) -> Recorder {
    let mut recorder = Recorder::default();
    let name = "validations";
    let mut call = get_statement(config, name, account);
    if call.status_in(&[200]) {
        if let Some(statement) = call.statement() {
            call.ensure(statement.limit == limit, || {
                format!("saldo.limite is {}, expected {limit}", statement.limit)
            });
            call.ensure(statement.total == 0, || {
                format!("saldo.total is {}, expected 0", statement.total)
            });
        }
    }
    call.finish(&mut recorder);
    for (kind, description) in [("c", "toma"), ("d", "devolve")] {
        let body = format!(r#"{{"valor": 1, "tipo": "{kind}", "descricao": "{description}"}}"#);
        let mut call = post(config, name, account, &body);
        call.status_in(&[200]);
        call.finish(&mut recorder);
    }
    let mut call = get_statement(config, name, account);
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
    let name = "validations";
    let body = r#"{"valor": 1, "tipo": "c", "descricao": "danada"}"#;
    let mut call = post(config, name, account, body);
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
                    let mut call = get_statement(config, name, account);
                    if call.status_in(&[200]) {
                        if let Some(statement) = call.statement() {
                            expect_entry(&mut call, &statement.latest, 0, "danada", "c");
                            call.ensure(statement.limit == outcome.limit, || {
                                format!("saldo.limite {} != {}", statement.limit, outcome.limit)
                            });
                            call.ensure(statement.total == outcome.balance, || {
                                format!("saldo.total {} != {}", statement.total, outcome.balance)
                            });
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
        let mut call = post(config, "validations", account, body);
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

/// `POST /clientes/{account}/transacoes` with `body`.
pub fn post(config: &Config, name: &'static str, account: u32, body: &str) -> Call {
    let path = format!("/clientes/{account}/transacoes");
    call::send(
        &config.target,
        config.timeout,
        name,
        Method::Post,
        &path,
        Some(body),
    )
}

/// `GET /clientes/{account}/extrato`.
pub fn get_statement(config: &Config, name: &'static str, account: u32) -> Call {
    let path = format!("/clientes/{account}/extrato");
    call::send(
        &config.target,
        config.timeout,
        name,
        Method::Get,
        &path,
        None,
    )
}
