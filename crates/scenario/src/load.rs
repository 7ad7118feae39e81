//! The load phase: debits, credits and statements at once, each an open-model arrival rate.
//!
//! One dispatcher thread releases users at their scheduled times into a queue; a pool of client
//! threads takes them, each user opening its own connection. A user released while every thread
//! is busy waits in the queue; that wait is recorded as start lag, so a saturated client shows up
//! in the report instead of silently lowering the rate.

use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rinha_api::contract::ACCOUNTS;

use crate::call::{self, STATEMENT_WITHIN_LIMIT, TRANSACTION_WITHIN_LIMIT};
use crate::config::Config;
use crate::rng::Rng;
use crate::schedule::Injection;
use crate::stats::Recorder;

/// The debit scenario: random debits. Each load scenario names its one request after itself.
pub const DEBITS: &str = "débitos";
/// The credit scenario: random credits.
pub const CREDITS: &str = "créditos";
/// The statement scenario: statements of random accounts.
pub const STATEMENTS: &str = "extratos";

/// Users per second at the start of every ramp.
pub const START_PER_S: f64 = 1.0;
/// Peak rate of the debit scenario.
pub const DEBITS_PEAK_PER_S: f64 = 220.0;
/// Peak rate of the credit scenario.
pub const CREDITS_PEAK_PER_S: f64 = 110.0;
/// Peak rate of the statement scenario.
pub const STATEMENTS_PEAK_PER_S: f64 = 10.0;

/// Stack of each client thread; a user needs little.
const CLIENT_STACK_BYTES: usize = 256 * 1024;

/// The three load scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A random debit; 200 or 422.
    Debit,
    /// A random credit; 200.
    Credit,
    /// A random statement.
    Statement,
}

/// The injection profile of one scenario under `config`'s compressed time.
pub fn injection(config: &Config, kind: Kind) -> Injection {
    let peak_per_s = match kind {
        Kind::Debit => DEBITS_PEAK_PER_S,
        Kind::Credit => CREDITS_PEAK_PER_S,
        Kind::Statement => STATEMENTS_PEAK_PER_S,
    };
    Injection {
        start_per_s: START_PER_S,
        peak_per_s,
        ramp: config.ramp,
        hold: config.hold,
    }
}

/// Every user of the three scenarios, ordered by start time.
pub fn plan(config: &Config) -> Vec<(Duration, Kind)> {
    let mut plan: Vec<(Duration, Kind)> = [Kind::Debit, Kind::Credit, Kind::Statement]
        .into_iter()
        .flat_map(|kind| {
            injection(config, kind)
                .arrivals()
                .into_iter()
                .map(move |at| (at, kind))
        })
        .collect();
    plan.sort_by_key(|&(at, _)| at);
    plan
}

/// Runs the load phase and returns what the users saw.
pub fn run(config: &Config) -> Recorder {
    let plan = plan(config);
    let (sender, receiver) = mpsc::channel::<(Instant, Kind)>();
    let receiver = Arc::new(Mutex::new(receiver));
    let workers: Vec<_> = (0..config.threads.max(1))
        .map(|index| {
            let receiver = Arc::clone(&receiver);
            let config = config.clone();
            let seed = config.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            thread::Builder::new()
                .name(format!("load-{index}"))
                .stack_size(CLIENT_STACK_BYTES)
                .spawn(move || client_thread(&config, &receiver, Rng::new(seed)))
                .expect("cannot start a client thread")
        })
        .collect();
    let started = Instant::now();
    for (at, kind) in plan {
        let due = started + at;
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        if sender.send((due, kind)).is_err() {
            break;
        }
    }
    drop(sender);
    let mut recorder = Recorder::default();
    for worker in workers {
        recorder.merge(worker.join().expect("a client thread panicked"));
    }
    recorder
}

/// Takes users from the queue until the dispatcher is done.
fn client_thread(
    config: &Config,
    receiver: &Mutex<Receiver<(Instant, Kind)>>,
    mut rng: Rng,
) -> Recorder {
    let mut recorder = Recorder::default();
    loop {
        let next = receiver
            .lock()
            .expect("the queue lock is never poisoned")
            .recv();
        let Ok((due, kind)) = next else { break };
        recorder.lag(Instant::now().saturating_duration_since(due));
        match kind {
            Kind::Debit => transaction(config, &mut rng, "d", &mut recorder),
            Kind::Credit => transaction(config, &mut rng, "c", &mut recorder),
            Kind::Statement => statement(config, &mut rng, &mut recorder),
        }
    }
    recorder
}

/// A debit may be refused for the limit (422); a credit must always pass. Either way a 200 must
/// not show a balance below the limit.
fn transaction(config: &Config, rng: &mut Rng, kind: &str, recorder: &mut Recorder) {
    let account = rng.between(1, ACCOUNTS.len() as u64) as u32;
    let value = rng.between(1, 10_000);
    let description = rng.alphanumeric(10);
    let body = format!(r#"{{"valor": {value}, "tipo": "{kind}", "descricao": "{description}"}}"#);
    let (name, allowed): (&'static str, &[u16]) = if kind == "d" {
        (DEBITS, &[200, 422])
    } else {
        (CREDITS, &[200])
    };
    let mut call = call::post(config, name, name, account, &body);
    if call.status_in(allowed) && call.status() == Some(200) {
        if let Some(outcome) = call.outcome() {
            call.consistent(TRANSACTION_WITHIN_LIMIT, outcome.balance, outcome.limit);
        }
    }
    call.finish(recorder);
}

/// A statement of a random account must not show a balance below the limit.
fn statement(config: &Config, rng: &mut Rng, recorder: &mut Recorder) {
    let account = rng.between(1, ACCOUNTS.len() as u64) as u32;
    let mut call = call::get_statement(config, STATEMENTS, STATEMENTS, account);
    if call.status_in(&[200]) {
        if let Some(statement) = call.statement() {
            call.consistent(STATEMENT_WITHIN_LIMIT, statement.total, statement.limit);
        }
    }
    call.finish(recorder);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Target;

    fn config(ramp_s: u64, hold_s: u64) -> Config {
        Config {
            target: Target::parse("127.0.0.1:9").unwrap(),
            ramp: Duration::from_secs(ramp_s),
            hold: Duration::from_secs(hold_s),
            threads: 1,
            timeout: Duration::from_secs(1),
            seed: 1,
            load_only: true,
        }
    }

    #[test]
    fn the_reference_plan_has_the_reference_counts() {
        let plan = plan(&config(120, 120));
        let count = |kind| plan.iter().filter(|(_, k)| *k == kind).count();
        assert_eq!(count(Kind::Debit), 39_660);
        assert_eq!(count(Kind::Credit), 19_860);
        assert_eq!(count(Kind::Statement), 1_860);
        assert!(plan.windows(2).all(|pair| pair[0].0 <= pair[1].0));
        assert_eq!(plan.last().unwrap().0, Duration::from_secs(240));
    }
}
