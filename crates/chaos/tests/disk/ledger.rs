//! What the clients sent and were told, what the disk holds, and the checks between the two.
//!
//! Every transaction carries a unique description (a prefix letter and a base-36 counter, ten
//! characters), so that a record on the disk and a line of a statement name the request they
//! came from. The disk is read with O_DIRECT (`dd iflag=direct`): the blocks as the device holds
//! them, never the page cache, so it can be read while servers run, and right after a statement
//! to check what that statement claimed durable.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use espora::layout::{Record, HEADER_SIZE, RECORD_SIZE};
use rinha_testkit::bins::bins;
use rinha_testkit::http;
use rinha_testkit::process::{self, start_api, Start, READY_WAIT};
use rinha_testkit::{free_tcp, Addr, XorShift};

/// The accounts `rinha-api` serves.
pub const ACCOUNTS: [u32; 5] = [1, 2, 3, 4, 5];
/// Bound on one request.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// What a transaction request got.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// 200: it must be on the disk exactly once, with this balance.
    Acknowledged { balance: i64 },
    /// 422: it must not be on the disk.
    Rejected,
    /// Anything else (503, no answer): it may or may not be on the disk.
    Failed(String),
}

/// One transaction request.
#[derive(Debug, Clone)]
pub struct Sent {
    pub account: u32,
    pub value: i64,
    pub kind: char,
    pub description: String,
    /// When (the test's phase) and to which server it was sent.
    pub phase: String,
    pub via: String,
    pub outcome: Outcome,
}

/// One transaction a statement listed.
#[derive(Debug, Clone)]
pub struct Listed {
    pub description: String,
    pub value: i64,
    pub kind: char,
}

/// One statement answered 200.
#[derive(Debug, Clone)]
pub struct Seen {
    pub account: u32,
    pub phase: String,
    pub via: String,
    pub balance: i64,
    pub listed: Vec<Listed>,
}

#[derive(Default)]
struct Records {
    sent: Vec<Sent>,
    statements: Vec<Seen>,
    /// Statements not answered 200: account, phase, server and what happened.
    statement_failures: Vec<(u32, String, String, String)>,
}

/// Everything the clients of one test sent and saw.
pub struct Ledger {
    prefix: char,
    counter: AtomicU64,
    records: Mutex<Records>,
}

impl Ledger {
    /// A ledger whose descriptions start with `prefix`.
    pub fn new(prefix: char) -> Arc<Ledger> {
        Arc::new(Ledger {
            prefix,
            counter: AtomicU64::new(0),
            records: Mutex::new(Records::default()),
        })
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records
            .lock()
            .unwrap_or_else(|error| error.into_inner())
    }

    /// A description used once in the test: the prefix, then the counter in base 36.
    fn next_description(&self) -> String {
        let number = self.counter.fetch_add(1, Ordering::Relaxed);
        rinha_testkit::description(self.prefix, number)
    }

    /// Sends one transaction to `addr` on a new connection and records what it got.
    pub fn transact(
        &self,
        addr: &Addr,
        via: &str,
        phase: &str,
        account: u32,
        value: i64,
        kind: char,
    ) -> Outcome {
        let description = self.next_description();
        let outcome = match http::post(addr, account, value, kind, &description, TIMEOUT) {
            Ok(response) if response.status == 200 => {
                let balance = response.json()["saldo"].as_i64().expect("saldo");
                Outcome::Acknowledged { balance }
            }
            Ok(response) if response.status == 422 => Outcome::Rejected,
            Ok(response) => Outcome::Failed(format!("status {}", response.status)),
            Err(error) => Outcome::Failed(error.kind().to_string()),
        };
        self.records().sent.push(Sent {
            account,
            value,
            kind,
            description,
            phase: phase.to_owned(),
            via: via.to_owned(),
            outcome: outcome.clone(),
        });
        outcome
    }

    /// Asks `addr` for a statement on a new connection and records it; returns the status
    /// (0 when there was no answer).
    pub fn statement(&self, addr: &Addr, via: &str, phase: &str, account: u32) -> u16 {
        let response = match http::statement(addr, account, TIMEOUT) {
            Ok(response) => response,
            Err(error) => {
                self.records().statement_failures.push((
                    account,
                    phase.to_owned(),
                    via.to_owned(),
                    error.kind().to_string(),
                ));
                return 0;
            }
        };
        if response.status != 200 {
            self.records().statement_failures.push((
                account,
                phase.to_owned(),
                via.to_owned(),
                format!("status {}", response.status),
            ));
            return response.status;
        }
        let json = response.json();
        let listed = json["ultimas_transacoes"]
            .as_array()
            .expect("ultimas_transacoes")
            .iter()
            .map(|entry| Listed {
                description: entry["descricao"].as_str().expect("descricao").to_owned(),
                value: entry["valor"].as_i64().expect("valor"),
                kind: entry["tipo"]
                    .as_str()
                    .and_then(|kind| kind.chars().next())
                    .expect("tipo"),
            })
            .collect();
        self.records().statements.push(Seen {
            account,
            phase: phase.to_owned(),
            via: via.to_owned(),
            balance: json["saldo"]["total"].as_i64().expect("saldo.total"),
            listed,
        });
        200
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.records().sent.clone()
    }

    pub fn statements(&self) -> Vec<Seen> {
        self.records().statements.clone()
    }

    /// The statements answered 200 in `phase`.
    pub fn statements_in(&self, phase: &str) -> Vec<Seen> {
        let records = self.records();
        let seen = records.statements.iter();
        seen.filter(|seen| seen.phase == phase).cloned().collect()
    }

    /// Whether `via` answered a transaction or a statement with `failure` (as recorded, e.g.
    /// "status 503") in a phase whose name starts with `phase`.
    pub fn answered(&self, via: &str, phase: &str, failure: &str) -> bool {
        let records = self.records();
        let failed = |outcome: &Outcome| matches!(outcome, Outcome::Failed(why) if why == failure);
        let sent = records.sent.iter();
        let statements = records.statement_failures.iter();
        sent.filter(|sent| sent.via == via && sent.phase.starts_with(phase))
            .any(|sent| failed(&sent.outcome))
            || statements
                .filter(|(_, at, from, _)| from == via && at.starts_with(phase))
                .any(|(_, _, _, why)| why == failure)
    }

    /// Prints, phase by phase in order of first use, how the requests ended.
    pub fn print_summary(&self, test: &str) {
        let records = self.records();
        let mut phases: Vec<String> = Vec::new();
        let phase_names = records
            .sent
            .iter()
            .map(|sent| &sent.phase)
            .chain(records.statements.iter().map(|seen| &seen.phase))
            .chain(records.statement_failures.iter().map(|failure| &failure.1));
        for phase in phase_names {
            if !phases.contains(phase) {
                phases.push(phase.clone());
            }
        }
        for phase in &phases {
            let sent = records.sent.iter().filter(|sent| &sent.phase == phase);
            let (mut ok, mut rejected, mut failed) = (0, 0, HashMap::<String, usize>::new());
            for sent in sent {
                match &sent.outcome {
                    Outcome::Acknowledged { .. } => ok += 1,
                    Outcome::Rejected => rejected += 1,
                    Outcome::Failed(why) => *failed.entry(why.clone()).or_default() += 1,
                }
            }
            let statements = records
                .statements
                .iter()
                .filter(|seen| &seen.phase == phase)
                .count();
            let mut statement_failed = HashMap::<String, usize>::new();
            for (_, at, _, why) in &records.statement_failures {
                if at == phase {
                    *statement_failed.entry(why.clone()).or_default() += 1;
                }
            }
            eprintln!(
                "{test}: {phase}: transactions {ok} acknowledged, {rejected} rejected, failed \
                 {failed:?}; statements {statements} answered, failed {statement_failed:?}"
            );
        }
    }
}

/// Client threads sending a mix of credits, debits (small amounts, so rarely beyond a limit)
/// and statements (one request in five) to every account, each on a new connection, never
/// retried, until stopped. The phase they record can be changed while they run.
pub struct Load {
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<String>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `threads` clients, each sending about `rate_per_s` requests a second, spread
    /// over `targets` (a name for the ledger and an address).
    pub fn start(
        ledger: &Arc<Ledger>,
        targets: &[(&str, Addr)],
        threads: usize,
        rate_per_s: u32,
        phase: &str,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(Mutex::new(phase.to_owned()));
        let targets: Vec<(String, Addr)> = targets
            .iter()
            .map(|(name, addr)| ((*name).to_owned(), addr.clone()))
            .collect();
        let threads = (0..threads)
            .map(|index| {
                let (ledger, stop, phase, targets) = (
                    Arc::clone(ledger),
                    Arc::clone(&stop),
                    Arc::clone(&phase),
                    targets.clone(),
                );
                let interval = Duration::from_secs_f64(1.0 / f64::from(rate_per_s));
                std::thread::spawn(move || {
                    let mut rng =
                        XorShift((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
                    let mut due = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        due += interval;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let (via, addr) = &targets[rng.below(targets.len() as u64) as usize];
                        let account = ACCOUNTS[rng.below(ACCOUNTS.len() as u64) as usize];
                        let phase = phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        match rng.below(5) {
                            0 => {
                                ledger.statement(addr, via, &phase, account);
                            }
                            pick => {
                                let kind = if pick % 2 == 0 { 'd' } else { 'c' };
                                let value = rng.below(1000) as i64 + 1;
                                ledger.transact(addr, via, &phase, account, value, kind);
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            phase,
            threads,
        }
    }

    /// The phase recorded from now on.
    pub fn set_phase(&self, phase: &str) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase.to_owned();
    }

    /// Stops the clients and waits for their last requests.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("a client thread panicked");
        }
    }
}

/// One account file as the device holds it.
#[derive(Debug, Clone)]
pub struct OnDisk {
    pub account: u32,
    /// The records from seq 1 on, as long as each slot holds the next one (the tests never
    /// write enough to wrap a ring).
    pub history: Vec<Record>,
    /// Valid records after the first gap: not part of the history.
    pub orphans: Vec<Record>,
}

impl OnDisk {
    /// The balance of the newest record of the history (0 when empty).
    pub fn balance(&self) -> i64 {
        self.history.last().map_or(0, |record| record.balance)
    }

    fn in_history(&self, description: &str) -> Vec<&Record> {
        let history = self.history.iter();
        history
            .filter(|record| record.description() == description)
            .collect()
    }

    /// Where the history ends, and the orphans if any, for failure messages.
    fn describe(&self) -> String {
        let mut text = format!(
            "the disk's history of account {} ends at seq {} (balance {})",
            self.account,
            self.history.len(),
            self.balance()
        );
        if let (Some(first), Some(last)) = (self.orphans.first(), self.orphans.last()) {
            text.push_str(&format!(
                ", then {} record(s) beyond a gap (seq {} to {})",
                self.orphans.len(),
                first.seq,
                last.seq
            ));
        }
        text
    }
}

/// Reads every account file of `data` from the device (O_DIRECT).
pub fn read_disk(data: &Path) -> Vec<OnDisk> {
    ACCOUNTS
        .iter()
        .map(|&account| read_account(data, account))
        .collect()
}

/// Reads one account file from the device with `dd iflag=direct`, bypassing the page cache.
pub fn read_account(data: &Path, account: u32) -> OnDisk {
    let path = data.join(espora::file::account_file_name(account));
    let output = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["iflag=direct", "bs=1M", "status=none"])
        .output()
        .expect("run dd");
    assert!(
        output.status.success(),
        "dd iflag=direct of {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = output.stdout;
    assert!(bytes.len() > HEADER_SIZE, "{} is too short", path.display());
    let mut history = Vec::new();
    let mut orphans = Vec::new();
    for (slot, chunk) in bytes[HEADER_SIZE..].chunks_exact(RECORD_SIZE).enumerate() {
        let Ok(record) = Record::decode(chunk.try_into().expect("one record")) else {
            continue;
        };
        if orphans.is_empty() && record.seq == slot as u64 + 1 && history.len() == slot {
            history.push(record);
        } else {
            orphans.push(record);
        }
    }
    OnDisk {
        account,
        history,
        orphans,
    }
}

fn account_on(disk: &[OnDisk], account: u32) -> &OnDisk {
    disk.iter()
        .find(|on_disk| on_disk.account == account)
        .expect("every account was read")
}

/// Every transaction `statements` listed must be in its account's history on `disk`, with its
/// value and type. With `balances`, each statement's balance must also be the disk's (for
/// statements read while nothing was written).
pub fn check_listings(statements: &[Seen], disk: &[OnDisk], balances: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut reported = std::collections::HashSet::new();
    for seen in statements {
        let on_disk = account_on(disk, seen.account);
        for listed in &seen.listed {
            let found = on_disk.in_history(&listed.description);
            let matches = found
                .iter()
                .any(|record| record.value == listed.value && record.kind.as_char() == listed.kind);
            if !matches && reported.insert((seen.account, listed.description.clone())) {
                problems.push(format!(
                    "account {}: a statement ({}, from {}) listed {} ({}{}) that the disk lacks; \
                     {}",
                    seen.account,
                    seen.phase,
                    seen.via,
                    listed.description,
                    listed.value,
                    listed.kind,
                    on_disk.describe()
                ));
            }
        }
        if balances && seen.balance != on_disk.balance() {
            problems.push(format!(
                "account {}: a statement ({}, from {}) gave balance {}, the disk holds {}; {}",
                seen.account,
                seen.phase,
                seen.via,
                seen.balance,
                on_disk.balance(),
                on_disk.describe()
            ));
        }
    }
    problems
}

/// Every acknowledged transaction must be in its account's history exactly once with its
/// value, type and the balance it answered; no rejected one may be; every record must be one
/// that was sent, to that account.
pub fn check_acknowledged(sent: &[Sent], disk: &[OnDisk]) -> Vec<String> {
    let mut problems = Vec::new();
    let by_description: HashMap<&str, &Sent> = sent
        .iter()
        .map(|sent| (sent.description.as_str(), sent))
        .collect();
    for sent in sent {
        let on_disk = account_on(disk, sent.account);
        let found = on_disk.in_history(&sent.description);
        match sent.outcome {
            Outcome::Acknowledged { balance } => {
                let what = format!(
                    "account {}: acknowledged {} ({}{}, balance {}; {}, from {})",
                    sent.account,
                    sent.description,
                    sent.value,
                    sent.kind,
                    balance,
                    sent.phase,
                    sent.via
                );
                match found.as_slice() {
                    [] => {
                        problems.push(format!("{what} is not on the disk; {}", on_disk.describe()))
                    }
                    [record] => {
                        let stored = (record.value, record.kind.as_char(), record.balance);
                        if stored != (sent.value, sent.kind, balance) {
                            problems.push(format!(
                                "{what} is on the disk as {}{} with balance {} (seq {})",
                                record.value,
                                record.kind.as_char(),
                                record.balance,
                                record.seq
                            ));
                        }
                    }
                    twice => problems.push(format!("{what} is on the disk {} times", twice.len())),
                }
            }
            Outcome::Rejected if !found.is_empty() => problems.push(format!(
                "account {}: rejected (422) {} is on the disk",
                sent.account, sent.description
            )),
            _ => {}
        }
    }
    for on_disk in disk {
        for record in &on_disk.history {
            match by_description.get(record.description()) {
                Some(sent) if sent.account == on_disk.account => {}
                Some(sent) => problems.push(format!(
                    "account {}: seq {} {} was sent to account {}",
                    on_disk.account,
                    record.seq,
                    record.description(),
                    sent.account
                )),
                None => problems.push(format!(
                    "account {}: seq {} {} was never sent",
                    on_disk.account,
                    record.seq,
                    record.description()
                )),
            }
        }
    }
    problems
}

/// `espora verify DIR`: `None` when it passes, else the lines of its report that are not about
/// a sound file.
pub fn verify(data: &Path) -> Option<String> {
    let mut command = Command::new(&bins().espora);
    command.arg("verify").arg(data);
    let (code, stderr, stdout) = process::run(command, Duration::from_secs(60));
    if code == 0 {
        return None;
    }
    let report = format!("{stdout}\n{stderr}");
    let lines = report.lines();
    let failed: Vec<&str> = lines
        .filter(|line| !line.trim().is_empty() && !line.contains(": ok: "))
        .collect();
    Some(format!(
        "espora verify exited {code}: {}",
        failed.join("; ")
    ))
}

/// Starts one `rinha-api` on `data` and asks it for every account's statement: each must be
/// answered 200, list only what the disk holds and give the disk's balance.
pub fn check_every_account_opens(
    data: &Path,
    log_dir: &Path,
    ledger: &Ledger,
    disk: &[OnDisk],
) -> Vec<String> {
    let addr = free_tcp();
    let mut api = match start_api("reopened", data, &addr, log_dir, &[], READY_WAIT) {
        Start::Serving(api) => api,
        Start::Exited(code, log) => {
            return vec![format!(
                "rinha-api refused the data directory after the remount (exit {code:?}): {}",
                log.trim()
            )]
        }
    };
    let mut problems = Vec::new();
    for account in ACCOUNTS {
        let status = ledger.statement(&addr, "reopened", "reopened", account);
        if status != 200 {
            problems.push(format!(
                "account {account}: statement answered {status} after the remount"
            ));
        }
    }
    let reopened = ledger.statements_in("reopened");
    problems.extend(check_listings(&reopened, disk, true));
    api.terminate(Duration::from_secs(10));
    problems
}
