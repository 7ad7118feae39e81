//! Helpers shared by espora's integration tests: a runtime, temp dirs, child processes,
//! transactions.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use espora::file::{self, Mapping};
use espora::layout::Record;
use espora::verify::{self, Scan};
use espora::{shared, Backend, Entry, Kind, Transaction};

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::IoUring) };
}

/// A transaction that passes espora's rules, as `append` takes it.
#[track_caller]
pub fn entry(value: i64, kind: Kind, description: &str) -> Entry {
    let transaction = Transaction {
        value,
        kind,
        description,
    };
    transaction.validate().expect("a valid transaction")
}

/// Runs a future on a fresh monoio runtime with the timer enabled: io_uring, or epoll when
/// `RINHA_DRIVER=epoll` or io_uring cannot be set up. Workers made inside it use espora's ring
/// back end on io_uring and its helper threads on epoll (see [`backend`]), so that the tests
/// that run on both drivers cover both back ends.
pub fn block_on<F: Future>(future: F) -> F::Output {
    block_on_with(
        std::env::var("RINHA_DRIVER").as_deref() == Ok("epoll"),
        future,
    )
}

/// Like [`block_on`], choosing the driver explicitly.
pub fn block_on_with<F: Future>(epoll: bool, future: F) -> F::Output {
    if !epoll {
        let built = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build();
        if let Ok(mut rt) = built {
            BACKEND.with(|backend| backend.set(Backend::IoUring));
            return rt.block_on(future);
        }
    }
    BACKEND.with(|backend| backend.set(Backend::Threads));
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("epoll runtime");
    rt.block_on(future)
}

/// The back end of workers created inside the current `block_on`, unless `ESPORA_BACKEND`
/// (`io_uring` or `threads`) says otherwise, so that a child can pair either back end with
/// either driver.
pub fn backend() -> Backend {
    match std::env::var("ESPORA_BACKEND").as_deref() {
        Ok("io_uring") => Backend::IoUring,
        Ok("threads") => Backend::Threads,
        _ => BACKEND.with(|backend| backend.get()),
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("espora-test-")
        .tempdir()
        .expect("temp dir")
}

/// The credit limits in cents of the accounts the tests open, ids 1 to 5 in order. espora serves
/// whatever table it is given; this one is the tests' own: account 3 may not go below zero at all,
/// the others span small to large limits.
const LIMITS: [i64; 5] = [250_000, 60_000, 0, 5_000_000, 1_000];

/// The accounts the tests open: (id, limit).
pub const ACCOUNTS: [(u32, i64); 5] = {
    let mut accounts = [(0, 0); 5];
    let mut i = 0;
    while i < LIMITS.len() {
        accounts[i] = (i as u32 + 1, LIMITS[i]);
        i += 1;
    }
    accounts
};

/// Options that open [`ACCOUNTS`], with espora's defaults otherwise.
pub fn options() -> espora::Options {
    espora::Options {
        accounts: ACCOUNTS.to_vec(),
        ..espora::Options::default()
    }
}

/// Small deterministic generator for test inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Starts this test binary again, running only the test named `entry`, with `env` set. The
/// child test does its work only when `ESPORA_CHILD` is set.
pub fn spawn_child(entry: &str, env: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command.args([
        entry,
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ]);
    command.env("ESPORA_CHILD", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    command.spawn().expect("spawn child")
}

pub fn is_child() -> bool {
    std::env::var_os("ESPORA_CHILD").is_some()
}

/// An acknowledged append as a child reports it: `ACK account seq value kind balance description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub account: u32,
    pub seq: u64,
    pub value: i64,
    pub kind: char,
    pub balance: i64,
    pub description: String,
}

impl Ack {
    pub fn line(&self) -> String {
        format!(
            "ACK {} {} {} {} {} {}",
            self.account, self.seq, self.value, self.kind, self.balance, self.description
        )
    }

    /// Parses a complete line; a line cut short by a kill is ignored by the caller.
    pub fn parse(line: &str) -> Option<Ack> {
        let mut parts = line.strip_prefix("ACK ")?.split(' ');
        let ack = Ack {
            account: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
            value: parts.next()?.parse().ok()?,
            kind: parts.next()?.chars().next()?,
            balance: parts.next()?.parse().ok()?,
            description: parts.next()?.to_string(),
        };
        // The description is the last field and ends with a fixed marker, so a torn line
        // cannot pass for a whole one.
        ack.description.ends_with('#').then_some(ack)
    }
}

/// Opens an account file and checks it, returning the scan and the retained records.
pub fn read_history(dir: &Path, account: u32) -> (Scan, Vec<Record>, Mapping) {
    let path = dir.join(file::account_file_name(account));
    let (handle, mapping) = file::open_existing(&path).expect("open account file");
    file::lock_shared_blocking(&handle).expect("lock");
    let known = shared::peek_durable(&dir.join(file::shared_file_name(account)), mapping.header());
    let scan = verify::scan(&mapping, known);
    file::unlock(&handle);
    let scan = scan.unwrap_or_else(|c| panic!("{}: {c}", path.display()));
    let records = if scan.newest == 0 {
        Vec::new()
    } else {
        (scan.oldest..=scan.newest)
            .map(|seq| mapping.read_record(seq).expect("record"))
            .collect()
    };
    (scan, records, mapping)
}

/// Checks that every acknowledged append is in the history exactly once, at its sequence
/// number, with its value, type, description and resulting balance.
pub fn assert_acks_in_history(acks: &[Ack], records: &[Record]) {
    let mut seen = std::collections::HashSet::new();
    for ack in acks {
        assert!(
            seen.insert(ack.seq),
            "two acknowledgements for seq {}",
            ack.seq
        );
        let record = records
            .iter()
            .find(|r| r.seq == ack.seq)
            .unwrap_or_else(|| panic!("acknowledged seq {} missing from history", ack.seq));
        assert_eq!(record.value, ack.value, "{ack:?}");
        assert_eq!(record.kind.as_char(), ack.kind, "{ack:?}");
        assert_eq!(record.balance, ack.balance, "{ack:?}");
        assert_eq!(record.description(), ack.description, "{ack:?}");
    }
    let descriptions: std::collections::HashSet<&str> =
        records.iter().map(|r| r.description()).collect();
    assert_eq!(
        descriptions.len(),
        records.len(),
        "a description appears twice in history"
    );
}
