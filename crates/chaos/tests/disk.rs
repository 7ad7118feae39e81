//! Writeback failures of a real disk that runs out of space: ext4 on a loop device whose sparse
//! backing file sits on a small tmpfs (`tests/disk/fixture.rs`). Once the tmpfs is full, writing
//! back a new block fails (ENOSPC), and Linux keeps the written pages in the page cache, marked
//! clean: a process that reads the file sees records the disk never got, and the error is
//! reported once to each open file description, then never again. Nothing here injects faults into
//! espora; the kernel fails the writes.
//!
//! espora creates its account files with `fallocate`: ext4 reserves the blocks and writes
//! nothing to the device until records land in them, so the still-empty slots are unprovisioned
//! (see `tests/disk/fixture.rs`), and their writeback fails once the tmpfs is full. After such a
//! failure ext4 leaves the block unwritten while the cached page claims it written, so later
//! writes into that page, even fdatasynced, would read back as zeros: recovery must write the
//! device's bytes back directly. Every case below reads the disk again at the end.
//!
//! - Through the stack (`rinha-lb` and two `rinha-api`), under load while the disk fills, the
//!   instances stop acknowledging (503); after the space comes back and the stack restarts, a
//!   statement read before anything new is written may list only records that the device holds
//!   (read with O_DIRECT), with the device's balance. At the end, with the ext4 mounted again
//!   (its page cache dropped), every acknowledged transaction is on the disk exactly once with
//!   the balance it answered, no statement of the whole run listed a transaction the disk lacks,
//!   `espora verify` passes and a new instance opens every account. Run with and without an
//!   ext4 journal.
//! - Two instances, one of which sees the failed fdatasync and is restarted while the other,
//!   idle meanwhile, then takes load: no statement of either lists what the device lacks, and
//!   nothing either acknowledges is missing at the end. Three rounds.
//! - In the library, an append dropped while its failing fdatasync is in flight (a request
//!   future cancelled) still poisons the database: later appends and statements fail as
//!   unavailable, and no statement, not even after reopening, shows the dropped record unless
//!   the device has it. Both I/O back ends.
//! - In the library, a worker started after another process saw a failed fdatasync (its own
//!   descriptions, opened after the error was reported, never hear of it): its statement must
//!   fail as unavailable, not show the record the disk lacks, and its process must be poisoned.
//!   Both I/O back ends.
//!
//! Each test needs root, loop devices and `mkfs.ext4`; without them it
//! prints a `==== SKIPPED` line and passes. The tests run one at a time (they share the
//! machine's two CPUs and their timing matters), each well under a minute (the file in about
//! half a minute).

#[path = "disk/fixture.rs"]
mod fixture;
#[path = "disk/ledger.rs"]
mod ledger;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use espora::layout::{HEADER_SIZE, RECORD_SIZE};
use espora::{AppendError, Backend, Db, Entry, Kind, Options, ReadError, Statement, Transaction};
use rinha_testkit::bins::{api_command, lb_command};
use rinha_testkit::process::Server;
use rinha_testkit::stack::{api_sockets, stop_all};
use rinha_testkit::{assert_none, free_tcp, skip, temp_dir, Addr};

use fixture::{FaultyDisk, Journal};
use ledger::{
    check_acknowledged, check_every_account_opens, check_listings, read_account, read_disk, verify,
    Ledger, Load, Outcome, ACCOUNTS,
};

/// The tmpfs under the loop device: room for the file system's metadata (and its 16 MiB
/// journal) and the records written before the fill; then the filler file takes the rest.
const TMPFS_MIB: u64 = 48;
/// Client threads of the stack's load, and requests per second each.
const CLIENTS: usize = 4;
const RATE_PER_CLIENT: u32 = 40;
/// How long the instances may keep acknowledging after the disk is full: each account's
/// records reach a new block every 32 appends, about a second at this load.
const FAILURE_WAIT: Duration = Duration::from_secs(20);
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The two back ends of espora's syncs, each on the monoio driver it runs on: the worker's
/// ring on io_uring, and helper threads on epoll (`true`).
const BACKENDS: [(&str, bool, Backend); 2] = [
    ("io_uring", false, Backend::IoUring),
    ("threads", true, Backend::Threads),
];

/// Runs `case` on each of [`BACKENDS`]: what each gave, or, where this machine cannot run it,
/// a skip of that part of `test`, saying why.
fn each_backend<T>(
    test: &str,
    mut case: impl FnMut(&'static str, bool, Backend) -> Result<T, String>,
) -> Vec<T> {
    let mut ran = Vec::new();
    for (name, epoll, backend) in BACKENDS {
        match case(name, epoll, backend) {
            Ok(value) => ran.push(value),
            Err(why) => skip(&format!("{test} ({name})"), &why),
        }
    }
    ran
}

static SERIAL: Mutex<()> = Mutex::new(());

/// One case on its faulty disk, one case at a time: each fills a disk and times its load.
struct Case {
    test: &'static str,
    disk: FaultyDisk,
    started: Instant,
    /// Held until the disk is torn down.
    _serial: MutexGuard<'static, ()>,
}

impl Case {
    /// Waits for the case before it to end, then makes the faulty disk of `test`; `None` where
    /// this machine cannot (the test skipped, saying why).
    fn start(test: &'static str, label: &str, journal: Journal) -> Option<Case> {
        let serial = SERIAL.lock().unwrap_or_else(|error| error.into_inner());
        let started = Instant::now();
        let disk = FaultyDisk::create(label, TMPFS_MIB, journal);
        let disk = disk.map_err(|why| skip(test, &why)).ok()?;
        Some(Case {
            test,
            disk,
            started,
            _serial: serial,
        })
    }

    /// Prints how long the case took, and fails it if a problem was found.
    fn finish(&self, problems: &[String]) {
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!("{}: {seconds:.1} s", self.test);
        assert_none(self.test, problems);
    }
}

/// Starts `rinha-api` (one worker) on `data`, listening on `addr`, logging to `log_dir`, and
/// waits until it serves.
fn start_instance(name: &str, data: &Path, addr: &Addr, log_dir: &Path) -> Server {
    Server::start_ready(name, api_command(data, addr), log_dir, addr)
}

/// `rinha-lb` in front of two `rinha-api` over Unix sockets, the data directory on the faulty
/// disk, sockets and logs elsewhere.
struct Stack {
    upstreams: [Addr; 2],
    front: Addr,
    /// The two instances, then the balancer.
    servers: Vec<Server>,
}

impl Stack {
    /// Starts the stack; `generation` tells the logs of each start apart.
    fn start(data: &Path, work: &Path, generation: u32) -> Stack {
        let upstreams = api_sockets(work);
        let mut servers: Vec<Server> = upstreams
            .iter()
            .enumerate()
            .map(|(index, addr)| {
                let name = format!("api{}-start{generation}", index + 1);
                start_instance(&name, data, addr, work)
            })
            .collect();
        let front = free_tcp();
        let mut command = lb_command(&front, &upstreams);
        command.args(["--down-backoff-ms", "200"]);
        let name = format!("lb-start{generation}");
        servers.push(Server::start_ready(&name, command, work, &front));
        Stack {
            upstreams,
            front,
            servers,
        }
    }

    /// SIGTERM to the balancer, then to each instance.
    fn stop(&mut self) {
        for (name, status) in stop_all(&mut self.servers, STOP_WAIT) {
            eprintln!("  {name} exited: {status}");
        }
    }
}

/// Case (a) on an ext4 without a journal, where only data writes reach unbacked blocks.
#[test]
fn through_the_stack_nothing_the_disk_lacks_is_shown_or_acknowledged() {
    through_the_stack(
        "through_the_stack_nothing_the_disk_lacks_is_shown_or_acknowledged",
        Journal::Without,
    );
}

/// Case (a) again on an ext4 with its default journal (data=ordered).
#[test]
fn through_the_stack_on_a_journaled_ext4() {
    through_the_stack("through_the_stack_on_a_journaled_ext4", Journal::Ordered);
}

/// Load through the balancer while the disk fills, until both instances answer 503 and a
/// little after; then the space comes back and the whole stack restarts. What the restarted
/// instances show before anything new is written must be on the device; then more load; then,
/// with the ext4 mounted again, everything is checked against the disk.
fn through_the_stack(test: &'static str, journal: Journal) {
    let Some(mut case) = Case::start(test, "disk-a", journal) else {
        return;
    };
    let work = temp_dir("disk-a-work");
    let data = case.disk.path().join("data");
    let ledger = Ledger::new('a');
    let mut stack = Stack::start(&data, work.path(), 1);
    let front = [("lb", stack.front.clone())];
    let load = Load::start(&ledger, &front, CLIENTS, RATE_PER_CLIENT, "before the fill");
    std::thread::sleep(Duration::from_millis(1500));

    load.set_phase("disk full");
    let filled = case.disk.fill();
    eprintln!(
        "{test}: tmpfs filled with {} KiB more ({} KiB of the disk written); waiting for 503s",
        filled / 1024,
        case.disk.backing_kib()
    );
    // Probe each instance directly: a statement of a process that saw a failed sync is 503.
    let names = ["api1", "api2"];
    let deadline = Instant::now() + FAILURE_WAIT;
    let mut failing = [false; 2];
    while failing.contains(&false) && Instant::now() < deadline {
        for index in 0..2 {
            if !failing[index] {
                let status =
                    ledger.statement(&stack.upstreams[index], names[index], "disk full", 1);
                failing[index] = status == 503;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    load.set_phase("failing");
    std::thread::sleep(Duration::from_secs(1));
    load.stop();
    assert!(
        !failing.contains(&false),
        "{test}: with the disk full, the instances still answered 200 after {FAILURE_WAIT:?} \
         (failing: {failing:?}), so the fault never reached them"
    );

    case.disk.free();
    stack.stop();
    let mut stack = Stack::start(&data, work.path(), 2);
    // Nothing has been written since the restart: every statement must show what the device
    // holds, and nothing else.
    for account in ACCOUNTS {
        for (index, upstream) in stack.upstreams.iter().enumerate() {
            ledger.statement(upstream, names[index], "restarted", account);
        }
        ledger.statement(&stack.front, "lb", "restarted", account);
    }
    let mut problems: Vec<String> =
        check_listings(&ledger.statements_in("restarted"), &read_disk(&data), true)
            .into_iter()
            .map(|problem| format!("right after the restart: {problem}"))
            .collect();

    let front = [("lb", stack.front.clone())];
    let load = Load::start(
        &ledger,
        &front,
        CLIENTS,
        RATE_PER_CLIENT,
        "after the restart",
    );
    std::thread::sleep(Duration::from_secs(2));
    load.stop();
    stack.stop();
    drop(stack);

    case.disk.remount();
    problems.extend(final_checks(&data, work.path(), &ledger));
    ledger.print_summary(test);
    case.finish(&problems);
}

/// With the ext4 mounted again (page cache dropped) and nothing running: every acknowledged
/// transaction on the disk exactly once, no statement of the run listing what the disk lacks,
/// `espora verify` passing, every account opening in a new instance.
fn final_checks(data: &Path, log_dir: &Path, ledger: &Ledger) -> Vec<String> {
    let on_disk = read_disk(data);
    for account in &on_disk {
        eprintln!(
            "  disk after the remount: account {}: {} records, balance {}, {} beyond a gap",
            account.account,
            account.history.len(),
            account.balance(),
            account.orphans.len()
        );
    }
    let mut problems: Vec<String> = verify(data).into_iter().collect();
    problems.extend(check_every_account_opens(data, log_dir, ledger, &on_disk));
    problems.extend(check_listings(&ledger.statements(), &on_disk, false));
    problems.extend(check_acknowledged(&ledger.sent(), &on_disk));
    problems
        .into_iter()
        .map(|problem| format!("after the remount: {problem}"))
        .collect()
}

/// Rounds of case (b).
const ROUNDS: u32 = 3;
/// Requests instance A may answer 200 with the disk full before the test gives up: each
/// account reaches a new block within 32 appends.
const APPENDS_UNTIL_FAILURE_MAX: usize = 1000;

/// Instances A and B on one data directory, no balancer. Each round, the disk fills and only A
/// gets requests until it answers 503 (its fdatasync failed); B stays idle. The space comes
/// back and A is restarted. Nothing is written until both have shown every account: each
/// statement must list only what the device holds. Then B alone takes load, then both. B is
/// restarted at the end of a round in which it answered 503 (a process that saw a failed sync
/// serves nothing until restarted). At the end, with the ext4 mounted again, nothing either
/// acknowledged is missing and no statement listed what the disk lacks.
#[test]
fn an_instance_restarted_after_a_failed_sync_and_its_idle_peer_show_only_the_disk() {
    let test = "an_instance_restarted_after_a_failed_sync_and_its_idle_peer_show_only_the_disk";
    let Some(mut case) = Case::start(test, "disk-b", Journal::Without) else {
        return;
    };
    let work = temp_dir("disk-b-work");
    let data = case.disk.path().join("data");
    let ledger = Ledger::new('b');
    let a_addr = Addr::Unix(work.path().join("a.sock"));
    let b_addr = Addr::Unix(work.path().join("b.sock"));
    let mut a = start_instance("A-start0", &data, &a_addr, work.path());
    let mut b = start_instance("B-start0", &data, &b_addr, work.path());
    let mut problems = Vec::new();
    for round in 1..=ROUNDS {
        let phase = |what: &str| format!("round {round}: {what}");
        for account in ACCOUNTS {
            ledger.transact(&a_addr, "A", &phase("warm-up"), account, 10, 'c');
            ledger.transact(&b_addr, "B", &phase("warm-up"), account, 10, 'c');
        }

        case.disk.fill();
        let mut sent = 0;
        loop {
            let account = ACCOUNTS[sent % ACCOUNTS.len()];
            let outcome = ledger.transact(&a_addr, "A", &phase("disk full"), account, 7, 'c');
            if matches!(&outcome, Outcome::Failed(why) if why == "status 503") {
                break;
            }
            sent += 1;
            assert!(
                sent < APPENDS_UNTIL_FAILURE_MAX,
                "{test}: round {round}: A acknowledged {sent} transactions with the disk full"
            );
        }
        for account in ACCOUNTS {
            ledger.transact(&a_addr, "A", &phase("A failing"), account, 7, 'd');
            ledger.statement(&a_addr, "A", &phase("A failing"), account);
        }

        case.disk.free();
        a.terminate(STOP_WAIT);
        a = start_instance(&format!("A-start{round}"), &data, &a_addr, work.path());
        let shown = phase("after A's restart");
        for account in ACCOUNTS {
            ledger.statement(&a_addr, "A", &shown, account);
            ledger.statement(&b_addr, "B", &shown, account);
        }
        problems.extend(
            check_listings(&ledger.statements_in(&shown), &read_disk(&data), true)
                .into_iter()
                .map(|problem| format!("round {round}, right after A's restart: {problem}")),
        );

        let only_b = [("B", b_addr.clone())];
        let load = Load::start(&ledger, &only_b, 2, RATE_PER_CLIENT, &phase("B under load"));
        std::thread::sleep(Duration::from_millis(1000));
        load.stop();
        let both = [("A", a_addr.clone()), ("B", b_addr.clone())];
        let load = Load::start(
            &ledger,
            &both,
            2,
            RATE_PER_CLIENT,
            &phase("both under load"),
        );
        std::thread::sleep(Duration::from_millis(700));
        load.stop();
        if ledger.answered("B", &phase(""), "status 503") {
            eprintln!("{test}: round {round}: B answered 503, restarting it");
            b.terminate(STOP_WAIT);
            b = start_instance(&format!("B-start{round}"), &data, &b_addr, work.path());
        }
    }
    b.terminate(STOP_WAIT);
    a.terminate(STOP_WAIT);
    drop((a, b));

    case.disk.remount();
    problems.extend(final_checks(&data, work.path(), &ledger));
    ledger.print_summary(test);
    case.finish(&problems);
}

/// The description of the append that is dropped mid-sync.
const DROPPED: &str = "dropped";
/// Records of one page: the ring starts at a page boundary (the header is one page), so after
/// this many appends the next record is the first of a block the disk never held.
const RECORDS_PER_PAGE: usize = 4096 / RECORD_SIZE;
const _: () = assert!(HEADER_SIZE.is_multiple_of(4096));

/// In the library: a page of records appended, the disk filled, then an append polled once
/// (its record written and its fdatasync submitted, which fails) and dropped. The database must
/// be poisoned; statements and appends must fail as unavailable, with the disk full and after
/// the space comes back; and a database opened again on the files (a restart) must not show the
/// dropped record unless the device holds it. For the ring back end on io_uring and the
/// helper-thread back end on epoll.
#[test]
fn an_append_dropped_while_its_failing_sync_is_in_flight_poisons_the_database() {
    let test = "an_append_dropped_while_its_failing_sync_is_in_flight_poisons_the_database";
    let Some(mut case) = Case::start(test, "disk-c", Journal::Without) else {
        return;
    };
    let problems = each_backend(test, |name, epoll, backend| {
        dropped_append(&mut case.disk, name, epoll, backend)
    })
    .concat();
    case.finish(&problems);
}

fn options() -> Options {
    Options {
        accounts: vec![(1, 0)],
        ..Options::default()
    }
}

fn credit(description: &str) -> Entry {
    let transaction = Transaction {
        value: 1,
        kind: Kind::Credit,
        description,
    };
    transaction.validate().expect("a valid credit")
}

/// Runs `future` on a fresh monoio runtime (epoll or io_uring) with timers; `Err` when the
/// runtime cannot be built here.
fn block_on<F: Future>(epoll: bool, future: F) -> Result<F::Output, String> {
    if epoll {
        let runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build();
        let mut runtime = runtime.map_err(|error| format!("no epoll runtime: {error}"))?;
        Ok(runtime.block_on(future))
    } else {
        let runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build();
        let mut runtime = runtime.map_err(|error| format!("no io_uring runtime: {error}"))?;
        Ok(runtime.block_on(future))
    }
}

/// Attempts at dropping the append in flight: on the helper-thread back end the failing sync
/// can end before the append's first poll returns, and then the test starts over on a new file.
const DROP_ATTEMPTS: u32 = 5;

/// Case (c) for one back end; returns the problems found.
fn dropped_append(
    disk: &mut FaultyDisk,
    name: &str,
    epoll: bool,
    backend: Backend,
) -> Result<Vec<String>, String> {
    for attempt in 1..=DROP_ATTEMPTS {
        let data = disk.path().join(format!("{name}-{attempt}"));
        std::fs::create_dir(&data).expect("create a data directory");
        let db = Arc::new(Db::open(&data, options()).expect("open a database on the loop disk"));
        let mut problems = Vec::new();
        let dropped_in_flight = block_on(epoll, async {
            let worker = db.worker(backend).expect("a worker");
            for index in 0..RECORDS_PER_PAGE {
                let description = format!("c{index}");
                let appended = worker.append(1, &credit(&description)).await;
                appended.unwrap_or_else(|error| panic!("{name}: append {description}: {error}"));
            }
            disk.fill();
            let dropped = credit(DROPPED);
            let mut append = Box::pin(worker.append(1, &dropped));
            let first = std::future::poll_fn(|cx| Poll::Ready(append.as_mut().poll(cx))).await;
            if let Poll::Ready(result) = first {
                eprintln!(
                    "{name}: attempt {attempt}: the append ended within its first poll \
                     ({result:?}); again on a new file"
                );
                disk.free();
                return false;
            }
            drop(append);
            // Let the runtime reap the abandoned fdatasync's completion.
            monoio::time::sleep(Duration::from_millis(20)).await;
            // Whether the dropped append's fdatasync ran: if it did, its failure left the page
            // clean and a new description's fdatasync succeeds; if it never started, the page
            // is still dirty and that fdatasync fails now. Only the first case is this test's.
            let path = data.join(espora::file::account_file_name(1));
            let probe = std::fs::OpenOptions::new().write(true).open(&path);
            if let Err(error) = probe.and_then(|file| file.sync_data()) {
                problems.push(format!(
                    "{name}: the append's first poll did not reach its fdatasync (a new \
                     descriptor's fdatasync found its page still dirty: {error}); this test \
                     assumes that one poll of an append on an uncontended file submits its sync"
                ));
                disk.free();
                return true;
            }
            if !db.is_poisoned() {
                problems.push(format!(
                    "{name}: the append dropped while its fdatasync failed (ENOSPC) left the \
                     database unpoisoned"
                ));
            }
            let full = "with the disk full";
            problems.extend(statement_fails(&worker, name, full).await);
            problems.extend(append_fails(&worker, name, "after1", full).await);
            problems.extend(statement_fails(&worker, name, full).await);
            disk.free();
            let freed = "after the space came back";
            problems.extend(append_fails(&worker, name, "after2", freed).await);
            problems.extend(statement_fails(&worker, name, freed).await);
            true
        })?;
        drop(db);
        if dropped_in_flight {
            problems.extend(reopened(&data, name, epoll, backend)?);
            return Ok(problems);
        }
    }
    Ok(vec![format!(
        "{name}: in {DROP_ATTEMPTS} attempts the append's failing sync always ended within its \
         first poll, so no append was dropped in flight"
    )])
}

/// A restart after case (c): the files opened by a new database. The acknowledged page of
/// records must be on the disk, and a statement must show only records the disk holds.
fn reopened(data: &Path, name: &str, epoll: bool, backend: Backend) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let on_disk = read_account(data, 1);
    let dropped_on_disk = on_disk.history.iter().any(|r| r.description() == DROPPED);
    for index in 0..RECORDS_PER_PAGE {
        let description = format!("c{index}");
        if !on_disk
            .history
            .iter()
            .any(|r| r.description() == description)
        {
            problems.push(format!(
                "{name}: acknowledged {description} is not on the disk ({} records)",
                on_disk.history.len()
            ));
        }
    }
    let db = match Db::open(data, options()) {
        Ok(db) => Arc::new(db),
        Err(error) => {
            problems.push(format!("{name}: reopening failed: {error}"));
            return Ok(problems);
        }
    };
    let shown = block_on(epoll, async {
        let worker = db.worker(backend).expect("a worker");
        let mut statement = Statement::default();
        worker
            .statement(1, &mut statement)
            .await
            .map(|()| statement)
    })?;
    match shown {
        Err(error) => problems.push(format!("{name}: after reopening, statement: {error}")),
        Ok(statement) => {
            for record in &statement.records {
                if !on_disk.history.iter().any(|stored| stored == record) {
                    problems.push(format!(
                        "{name}: after reopening, the statement shows seq {} {} that the disk \
                         lacks (the dropped append on the disk: {dropped_on_disk}; the disk's \
                         history ends at seq {})",
                        record.seq,
                        record.description(),
                        on_disk.history.len()
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// A statement must fail as unavailable; one that succeeds is reported, naming the dropped
/// record if it shows it.
async fn statement_fails(worker: &espora::Worker, name: &str, when: &str) -> Vec<String> {
    let mut statement = Statement::default();
    let read = monoio::time::timeout(Duration::from_secs(5), worker.statement(1, &mut statement));
    match read.await {
        Err(_) => vec![format!("{name}: a statement {when} hung")],
        Ok(Err(ReadError::Unavailable(_))) => Vec::new(),
        Ok(Err(error)) => vec![format!(
            "{name}: a statement {when} failed otherwise: {error}"
        )],
        Ok(Ok(())) => {
            let mut problems = vec![format!(
                "{name}: a statement {when} succeeded after the dropped append's failed sync \
                 (balance {}, newest {:?})",
                statement.balance,
                statement.records.first().map(|record| record.description())
            )];
            if let Some(record) = statement
                .records
                .iter()
                .find(|record| record.description() == DROPPED)
            {
                problems.push(format!(
                    "{name}: a statement {when} shows the dropped append's record {DROPPED:?} \
                     (seq {}), whose fdatasync failed",
                    record.seq
                ));
            }
            problems
        }
    }
}

/// An append must fail as unavailable; one that is acknowledged is reported.
async fn append_fails(
    worker: &espora::Worker,
    name: &str,
    description: &str,
    when: &str,
) -> Vec<String> {
    let transaction = credit(description);
    let append = worker.append(1, &transaction);
    match monoio::time::timeout(Duration::from_secs(5), append).await {
        Err(_) => vec![format!("{name}: append {description} {when} hung")],
        Ok(Err(AppendError::Unavailable(_))) => Vec::new(),
        Ok(Err(error)) => vec![format!(
            "{name}: append {description} {when} failed otherwise: {error}"
        )],
        Ok(Ok(appended)) => vec![format!(
            "{name}: append {description} {when} was acknowledged (seq {}, balance {}) after the \
             dropped append's failed sync",
            appended.seq, appended.balance
        )],
    }
}

/// The description of process A's append whose fdatasync fails in case (d).
const UNSYNCED: &str = "unsynced";

/// Case (d): a worker started after another process saw a failed writeback.
///
/// The bug: the kernel reports a writeback error once to each file description that was open
/// when it happened, and a description opened after some description has reported it starts
/// past it, never to hear of it. A process's workers open their own descriptions when they
/// start, which may be long after the process's recovery. So when process C had recovered the
/// file (its workers not started yet), and process A then appended a record whose fdatasync
/// failed (ENOSPC: the page stays in the cache, marked clean, the disk without it), C's worker,
/// started next, never learned of it: its statement waited for A's record to be durable, ran an
/// fdatasync of its own that succeeded (nothing dirty, no error for its new description),
/// raised the shared durable mark over the record and showed it, a record the disk lacks. The
/// description recovery used (open before the error) is now kept, and starting a worker
/// fdatasyncs it once: a failure there poisons C.
///
/// Here A and C are two databases in the test process (each opens its own descriptions, as two
/// processes do). A acknowledges a page of records, C opens the directory, the disk fills, A's
/// next append fails and poisons A; then C starts its worker: its statement and an append must
/// fail as unavailable and C must be poisoned. After the space comes back, both stop and the
/// ext4 is mounted again (its page cache dropped): the acknowledged page is on the disk, the
/// directory opens and its statement shows only what the disk holds, and `espora verify`
/// passes. For the ring back end on io_uring and the helper-thread back end on epoll.
#[test]
fn a_worker_started_after_another_process_saw_a_failed_sync_shows_nothing_unsynced() {
    let test = "a_worker_started_after_another_process_saw_a_failed_sync_shows_nothing_unsynced";
    let Some(mut case) = Case::start(test, "disk-d", Journal::Without) else {
        return;
    };
    let mut problems = Vec::new();
    let ran = each_backend(test, |name, epoll, backend| {
        let (data, found) = late_worker(&mut case.disk, name, epoll, backend)?;
        problems.extend(found);
        Ok((data, name, epoll, backend))
    });
    // Nothing uses the ext4 once the helper threads of the last workers have ended.
    let helpers_gone =
        rinha_testkit::wait_until(Duration::from_secs(10), || espora_threads().is_empty());
    assert!(
        helpers_gone,
        "{test}: espora threads still running: {:?}",
        espora_threads()
    );
    case.disk.remount();
    for (data, name, epoll, backend) in ran {
        if let Some(failed) = verify(&data) {
            problems.push(format!("{name}: after the remount: {failed}"));
        }
        problems.extend(reopened(&data, name, epoll, backend).unwrap_or_else(|why| vec![why]));
    }
    case.finish(&problems);
}

/// Names of this process's threads that espora started (the helper threads of workers on the
/// helper-thread back end).
fn espora_threads() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|comm| comm.trim().to_owned())
        .filter(|comm| comm.starts_with("espora-"))
        .collect()
}

/// Case (d) for one back end, in a data directory of its own; returns it and the problems
/// found. Both databases are closed when it returns.
fn late_worker(
    disk: &mut FaultyDisk,
    name: &str,
    epoll: bool,
    backend: Backend,
) -> Result<(PathBuf, Vec<String>), String> {
    let data = disk.path().join(format!("late-{name}"));
    std::fs::create_dir(&data).expect("create a data directory");
    let a = Arc::new(Db::open(&data, options()).expect("open A on the loop disk"));
    let (c, problems) = block_on(epoll, async {
        let mut problems = Vec::new();
        let worker_a = a.worker(backend).expect("A's worker");
        for index in 0..RECORDS_PER_PAGE {
            let description = format!("c{index}");
            let appended = worker_a.append(1, &credit(&description)).await;
            appended.unwrap_or_else(|error| panic!("{name}: A's append {description}: {error}"));
        }
        // Process C starts: its recovery reads the device now; its worker starts later.
        let c = Arc::new(Db::open(&data, options()).expect("open C on the loop disk"));
        disk.fill();
        // A's next record is the first of a block the disk does not hold: its sync fails.
        let unsynced = credit(UNSYNCED);
        let failed = monoio::time::timeout(Duration::from_secs(5), worker_a.append(1, &unsynced));
        match failed.await {
            Ok(Err(AppendError::Unavailable(_))) if a.is_poisoned() => {}
            other => {
                problems.push(format!(
                    "{name}: with the disk full, A's append {UNSYNCED} gave {other:?} (A \
                     poisoned: {}): the disk did not fail its sync, as this test needs",
                    a.is_poisoned()
                ));
                disk.free();
                return (c, problems);
            }
        }
        // C's worker starts after A saw the error: its own descriptions never hear of it.
        let worker_c = c.worker(backend).expect("C's worker");
        let mut statement = Statement::default();
        let read = monoio::time::timeout(
            Duration::from_secs(5),
            worker_c.statement(1, &mut statement),
        );
        match read.await {
            Err(_) => problems.push(format!("{name}: C's statement hung")),
            Ok(Err(ReadError::Unavailable(_))) => {}
            Ok(Err(error)) => {
                problems.push(format!("{name}: C's statement failed otherwise: {error}"))
            }
            Ok(Ok(())) => {
                let on_disk = read_account(&data, 1);
                let lacking: Vec<String> = statement
                    .records
                    .iter()
                    .filter(|record| !on_disk.history.contains(record))
                    .map(|record| format!("seq {} {:?}", record.seq, record.description()))
                    .collect();
                problems.push(format!(
                    "{name}: C's worker, started after A's fdatasync failed, answered a \
                     statement (balance {}) showing {lacking:?} that the disk lacks (its history \
                     ends at seq {})",
                    statement.balance,
                    on_disk.history.len()
                ));
            }
        }
        if !c.is_poisoned() {
            problems.push(format!(
                "{name}: C is not poisoned after starting a worker once A's fdatasync had failed"
            ));
        }
        problems
            .extend(append_fails(&worker_c, name, "c-after", "in C after A's failed sync").await);
        disk.free();
        (c, problems)
    })?;
    drop((a, c));
    Ok((data, problems))
}
