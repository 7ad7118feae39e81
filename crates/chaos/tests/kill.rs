//! Kill under load: the reference mix runs through `rinha-lb` in front of two `rinha-api`
//! while one instance, then the other, is killed with SIGKILL and started again.
//!
//! Every acknowledged transaction (200) is recorded with its value, type, description and the
//! balance the answer gave. Afterwards each of them must be in its account file exactly once,
//! with the same fields and balance; nothing the API rejected (422) may be there; `espora
//! verify` must pass; the balancer must have kept serving through the surviving instance (the
//! failed requests around each kill are counted and printed); and both restarted instances
//! must serve the balances that the files hold.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rinha_testkit::bins::{api_command, bins};
use rinha_testkit::http;
use rinha_testkit::process::{self, Server};
use rinha_testkit::stack::{api_sockets, start_stack, stop_all, with_args};
use rinha_testkit::{temp_dir, Addr, TempDir, XorShift};

/// Client threads; each paces itself so that together they send `RATE_PER_S`.
const CLIENTS: usize = 12;
/// The reference peak: 220 debits, 110 credits and 10 statements per second.
const RATE_PER_S: u64 = 340;
/// Load before the first kill, between events and after the last restart.
const STEP: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Every description starts with this, then a unique base-36 number (10 characters in all).
const PREFIX: char = 'k';

/// What one request did.
#[derive(Debug, Clone)]
enum Outcome {
    /// 200 on a transaction: it must be in the file exactly once.
    Acknowledged { balance: i64 },
    /// 422: it must not be in the file.
    Rejected,
    /// No answer, or an answer other than 200 and 422: it may or may not be in the file.
    Failed(String),
}

#[derive(Debug, Clone)]
struct Sent {
    account: u32,
    value: i64,
    kind: char,
    description: String,
    at: Duration,
    outcome: Outcome,
}

/// Statements seen and failed, by time since the start.
#[derive(Default)]
struct Log {
    transactions: Vec<Sent>,
    statement_failures: Vec<(Duration, String)>,
    statements_ok: u64,
    below_limit: Vec<String>,
}

/// `rinha-lb` in front of two `rinha-api` (one worker each) over Unix sockets.
struct Stack {
    dir: TempDir,
    data: PathBuf,
    upstreams: [Addr; 2],
    /// The two instances, then the balancer.
    servers: Vec<Server>,
    front: Addr,
}

impl Stack {
    fn start() -> Stack {
        let dir = temp_dir("kill");
        // A short back-off lets a restarted instance receive clients again soon.
        let lb_args = ["--down-backoff-ms", "200"];
        let (servers, front) = start_stack(dir.path(), with_args(&[], &lb_args));
        Stack {
            data: dir.path().join("data"),
            upstreams: api_sockets(dir.path()),
            dir,
            servers,
            front,
        }
    }

    /// Starts instance `index` and waits until it serves.
    fn start_api(&self, index: usize) -> Server {
        let (name, addr) = (format!("api{}", index + 1), &self.upstreams[index]);
        Server::start_ready(&name, api_command(&self.data, addr), self.dir.path(), addr)
    }

    /// Kills one instance, then restarts it, then the same for the other, with `STEP` of load
    /// between events. Returns the events and when they happened.
    fn kill_and_restart_each(&mut self, started: Instant) -> Vec<(String, Duration)> {
        let mut events = Vec::new();
        for index in 0..2 {
            std::thread::sleep(STEP);
            events.push((format!("SIGKILL api{}", index + 1), started.elapsed()));
            self.servers[index].kill();
            std::thread::sleep(STEP);
            events.push((format!("restart api{}", index + 1), started.elapsed()));
            self.servers[index] = self.start_api(index);
            events.push((format!("api{} ready", index + 1), started.elapsed()));
        }
        std::thread::sleep(STEP);
        events
    }

    /// The balance each instance serves for each account; both must agree.
    fn served_balances(&self) -> Vec<i64> {
        (1..=5)
            .map(|account| {
                let balances: Vec<i64> = self
                    .upstreams
                    .iter()
                    .map(|upstream| {
                        let response = http::statement(upstream, account, REQUEST_TIMEOUT)
                            .expect("a statement from a restarted instance");
                        assert_eq!(response.status, 200);
                        response.json()["saldo"]["total"]
                            .as_i64()
                            .expect("saldo.total")
                    })
                    .collect();
                assert_eq!(balances[0], balances[1], "account {account}");
                balances[0]
            })
            .collect()
    }

    /// SIGTERM to every process, the balancer first; each must exit 0.
    fn stop(&mut self) {
        for (name, status) in stop_all(&mut self.servers, Duration::from_secs(10)) {
            assert!(status.success(), "{name} exited {status}");
        }
    }
}

#[test]
fn acknowledged_transactions_survive_sigkill_of_each_instance() {
    let mut stack = Stack::start();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Log::default()));
    let counter = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let (front, stop, log, counter) = (
                stack.front.clone(),
                Arc::clone(&stop),
                Arc::clone(&log),
                Arc::clone(&counter),
            );
            std::thread::spawn(move || {
                drive(index as u64, &front, started, &stop, &log, &counter);
            })
        })
        .collect();
    let events = stack.kill_and_restart_each(started);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("a client thread panicked");
    }
    let log = std::mem::take(&mut *log.lock().unwrap());
    report(&log, &events, started.elapsed());
    assert!(log.below_limit.is_empty(), "{:?}", log.below_limit);

    // The restarted instances serve the same balances, which are the files' (checked below).
    let served = stack.served_balances();
    stack.stop();
    let mut verify = Command::new(&bins().espora);
    verify.arg("verify").arg(&stack.data);
    let (code, stderr, stdout) = process::run(verify, Duration::from_secs(30));
    eprintln!("{stdout}");
    assert_eq!(code, 0, "espora verify failed: {stdout}{stderr}");
    check_files(&bins().espora, &stack.data, &log.transactions, &served);
}

/// One client thread: the reference mix (2 debits, 1 credit, about 1 statement in 34) at its
/// share of the rate, every request on a new connection, never retried.
fn drive(
    seed: u64,
    front: &Addr,
    started: Instant,
    stop: &AtomicBool,
    log: &Mutex<Log>,
    counter: &AtomicU64,
) {
    let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut next = || rng.next_u64();
    let interval = Duration::from_secs_f64(CLIENTS as f64 / RATE_PER_S as f64);
    let mut due = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        due += interval;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let account = (next() % 5 + 1) as u32;
        let at = started.elapsed();
        let pick = next() % 34;
        if pick == 0 {
            statement(front, account, at, log);
            continue;
        }
        let kind = if pick <= 22 { 'd' } else { 'c' };
        let value = (next() % 10_000 + 1) as i64;
        let number = counter.fetch_add(1, Ordering::Relaxed);
        let description = rinha_testkit::description(PREFIX, number);
        let outcome = match http::post(front, account, value, kind, &description, REQUEST_TIMEOUT) {
            Ok(response) if response.status == 200 => {
                let json = response.json();
                let balance = json["saldo"].as_i64().expect("saldo");
                let limit = json["limite"].as_i64().expect("limite");
                if balance < -limit {
                    log.lock().unwrap().below_limit.push(format!("{json}"));
                }
                Outcome::Acknowledged { balance }
            }
            Ok(response) if response.status == 422 && kind == 'd' => Outcome::Rejected,
            Ok(response) => Outcome::Failed(format!("status {}", response.status)),
            Err(error) => Outcome::Failed(error.kind().to_string()),
        };
        log.lock().unwrap().transactions.push(Sent {
            account,
            value,
            kind,
            description,
            at,
            outcome,
        });
    }
}

fn statement(front: &Addr, account: u32, at: Duration, log: &Mutex<Log>) {
    match http::statement(front, account, REQUEST_TIMEOUT) {
        Ok(response) if response.status == 200 => {
            let json = response.json();
            let total = json["saldo"]["total"].as_i64().expect("saldo.total");
            let limit = json["saldo"]["limite"].as_i64().expect("saldo.limite");
            let mut log = log.lock().unwrap();
            log.statements_ok += 1;
            if total < -limit {
                log.below_limit.push(format!("{json}"));
            }
        }
        Ok(response) => log
            .lock()
            .unwrap()
            .statement_failures
            .push((at, format!("status {}", response.status))),
        Err(error) => log
            .lock()
            .unwrap()
            .statement_failures
            .push((at, error.kind().to_string())),
    }
}

/// Prints the load held and the failures around each event, and checks that the balancer kept
/// serving: requests succeeded between each kill and the restart, when only one instance ran.
fn report(log: &Log, events: &[(String, Duration)], elapsed: Duration) {
    let transactions = &log.transactions;
    let acknowledged = transactions
        .iter()
        .filter(|sent| matches!(sent.outcome, Outcome::Acknowledged { .. }))
        .count();
    let rejected = transactions
        .iter()
        .filter(|sent| matches!(sent.outcome, Outcome::Rejected))
        .count();
    let failed: Vec<&Sent> = transactions
        .iter()
        .filter(|sent| matches!(sent.outcome, Outcome::Failed(_)))
        .collect();
    eprintln!(
        "kill under load: {:.1} s, {} transactions ({acknowledged} acknowledged, {rejected} \
         rejected 422, {} failed), {} statements ok, {} statements failed",
        elapsed.as_secs_f64(),
        transactions.len(),
        failed.len(),
        log.statements_ok,
        log.statement_failures.len()
    );
    for (event, at) in events {
        eprintln!("  {:>6.2} s  {event}", at.as_secs_f64());
    }
    for sent in &failed {
        if let Outcome::Failed(reason) = &sent.outcome {
            eprintln!("  failed at {:.3} s: {reason}", sent.at.as_secs_f64());
        }
    }
    for (at, reason) in &log.statement_failures {
        eprintln!("  statement failed at {:.3} s: {reason}", at.as_secs_f64());
    }
    // Between a kill and its restart only the other instance runs: it must have served.
    for pair in events.windows(2) {
        let (from, to) = (pair[0].1, pair[1].1);
        if !pair[0].0.starts_with("SIGKILL") {
            continue;
        }
        let served = transactions
            .iter()
            .filter(|sent| sent.at > from && sent.at < to)
            .filter(|sent| !matches!(sent.outcome, Outcome::Failed(_)))
            .count();
        let lost = transactions
            .iter()
            .filter(|sent| sent.at > from && sent.at < to)
            .filter(|sent| matches!(sent.outcome, Outcome::Failed(_)))
            .count();
        eprintln!(
            "  while {} was down: {served} served, {lost} failed",
            &pair[0].0[8..]
        );
        assert!(
            served > 100,
            "the balancer stopped serving after {}",
            pair[0].0
        );
    }
    // A failure is allowed only for a request in flight at a kill, or sent just after it
    // (before the balancer marked the dead instance down).
    let total = transactions.len() + log.statements_ok as usize + log.statement_failures.len();
    let failures = failed.len() + log.statement_failures.len();
    assert!(
        failures * 50 <= total,
        "more than 2% of the requests failed: {failures} of {total}"
    );
}

/// Reads every account file with `espora dump --json` and checks the acknowledged and rejected
/// transactions against it.
fn check_files(espora: &std::path::Path, data: &std::path::Path, sent: &[Sent], served: &[i64]) {
    let by_description: HashMap<&str, &Sent> = sent
        .iter()
        .map(|sent| (sent.description.as_str(), sent))
        .collect();
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut failed_but_committed = 0;
    for account in 1..=5u32 {
        let path = data.join(format!("account-{account}.espora"));
        let mut dump = Command::new(espora);
        dump.arg("dump").arg(&path).arg("--json");
        let (code, stderr, stdout) = process::run(dump, Duration::from_secs(30));
        assert_eq!(code, 0, "espora dump {}: {stderr}", path.display());
        let mut last_balance = 0;
        for line in stdout.lines() {
            let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let description = record["description"]
                .as_str()
                .expect("description")
                .to_owned();
            last_balance = record["balance"].as_i64().expect("balance");
            let Some(origin) = by_description.get(description.as_str()) else {
                panic!("a record nobody sent: {line}");
            };
            assert_eq!(origin.account, account, "{line}");
            assert_eq!(record["value"].as_i64(), Some(origin.value), "{line}");
            assert_eq!(
                record["kind"].as_str(),
                Some(origin.kind.to_string().as_str()),
                "{line}"
            );
            match origin.outcome {
                Outcome::Acknowledged { balance } => {
                    assert_eq!(record["balance"].as_i64(), Some(balance), "{line}");
                }
                Outcome::Rejected => panic!("a rejected (422) transaction is in the file: {line}"),
                Outcome::Failed(_) => failed_but_committed += 1,
            }
            *seen.entry(description).or_default() += 1;
        }
        assert_eq!(
            served[account as usize - 1],
            last_balance,
            "account {account}: the instances served a balance the file does not end with"
        );
    }
    let mut acknowledged = 0;
    for sent in sent {
        if matches!(sent.outcome, Outcome::Acknowledged { .. }) {
            acknowledged += 1;
            assert_eq!(
                seen.get(&sent.description),
                Some(&1),
                "acknowledged transaction {sent:?} is not in its file exactly once"
            );
        }
    }
    assert!(
        seen.values().all(|&count| count == 1),
        "a transaction twice"
    );
    eprintln!(
        "files: all {acknowledged} acknowledged transactions found exactly once with their \
         balance; {failed_but_committed} transactions without an answer were committed"
    );
}
