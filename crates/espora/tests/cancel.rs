//! Cancellation at every poll point: an append or a statement is polled N times and dropped,
//! for every N, on both back ends and both drivers, with syncs succeeding and with syncs failing.
//! After each drop, later calls must get their own answers and never hang, nothing may be
//! acknowledged that a successful fdatasync did not cover (the fault seam's witness records what
//! each sync really covered), and a failed sync that nobody waits for any more must still poison.
//!
//! A second database on the same directory stands for another process: it appends all along
//! with crawling syncs, so that the futures under test sleep on its sync claim and on the lock,
//! and are dropped in the middle of those waits too.

mod support;

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use espora::file::Entry;
use espora::{AppendError, Backend, Db, Faults, Kind, Options, ReadError, Statement};
use support::block_on_with;

/// Drop points tried per call: more than any call here needs.
const POLLS_MAX: usize = 40;
/// Longer than any call may take here: past it the call hangs.
const CALL_WAIT_MAX: Duration = Duration::from_secs(5);
const RING: u64 = 256;

/// Polls `future` at most `polls` times, letting the runtime run between polls; `None` if it
/// was dropped unfinished.
async fn poll_then_drop<F: Future>(future: F, polls: usize) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut left = polls;
    std::future::poll_fn(move |cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending if left <= 1 => Poll::Ready(None),
        Poll::Pending => {
            left -= 1;
            Poll::Pending
        }
    })
    .await
}

async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    match monoio::time::timeout(CALL_WAIT_MAX, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} hung for {CALL_WAIT_MAX:?}"),
    }
}

fn options(faults: Faults) -> Options {
    Options {
        accounts: vec![(1, 1_000_000)],
        ring_records: RING,
        faults,
        ..Options::default()
    }
}

fn credit(description: &str) -> Entry {
    support::entry(3, Kind::Credit, description)
}

/// The back ends to test on this kernel: the ring only where it has what espora needs.
fn backends() -> Vec<Backend> {
    match Backend::detect() {
        Backend::IoUring => vec![Backend::IoUring, Backend::Threads],
        _ => vec![Backend::Threads],
    }
}

/// Another process: appends until told to stop, its syncs crawling so that others wait for
/// them.
fn start_neighbour(
    dir: &Path,
    faults: Faults,
    epoll: bool,
    backend: Backend,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let faults = faults.with_sync_delay(Duration::from_millis(2));
    let db = Arc::new(Db::open(dir, options(faults)).unwrap());
    std::thread::spawn(move || {
        block_on_with(epoll, async move {
            let worker = db.worker(backend).unwrap();
            let mut acknowledged = 0;
            while !stop.load(Ordering::Relaxed) {
                let description = format!("n{acknowledged}");
                if worker.append(1, &credit(&description)).await.is_ok() {
                    acknowledged += 1;
                }
            }
            acknowledged
        })
    })
}

/// Checks an acknowledged append against the witness and the file.
#[track_caller]
fn check_acknowledged(db: &Db, faults: &Faults, seq: u64, description: &str) {
    let covered = faults.covered(1);
    assert!(
        seq <= covered,
        "seq {seq} acknowledged, but the syncs so far covered only up to {covered}"
    );
    let path = db.dir().join(espora::file::account_file_name(1));
    let (_, mapping) = espora::file::open_existing(&path).unwrap();
    let record = mapping.read_record(seq).expect("the acknowledged record");
    assert_eq!(
        record.description(),
        description,
        "seq {seq} holds another record"
    );
}

/// Checks a statement: only covered records, the newest acknowledged one among them.
#[track_caller]
fn check_statement(faults: &Faults, statement: &Statement, acknowledged: u64) {
    let covered = faults.covered(1);
    let newest = statement.records.first().map_or(0, |r| r.seq);
    assert!(
        newest <= covered,
        "the statement shows seq {newest}, the syncs covered only up to {covered}"
    );
    assert!(
        newest >= acknowledged,
        "the statement misses seq {acknowledged}, acknowledged before it began"
    );
    assert_eq!(
        statement.balance,
        statement.records.first().map_or(0, |r| r.balance)
    );
}

/// Syncs succeed: drop an append, then a statement, after every number of polls; after each
/// drop a whole append and a whole statement must answer correctly.
fn every_poll_point_with_syncs_succeeding(epoll: bool, backend: Backend) {
    let dir = support::temp_dir();
    let faults = Faults::default().with_witness();
    let db = Arc::new(Db::open(dir.path(), options(faults.clone())).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let neighbour = start_neighbour(
        dir.path(),
        faults.clone(),
        epoll,
        backend,
        Arc::clone(&stop),
    );
    let finished = block_on_with(epoll, async {
        let worker = db.worker(backend).unwrap();
        let mut finished_early = 0;
        for polls in 1..=POLLS_MAX {
            let dropped = format!("d{polls}");
            let tx = credit(&dropped);
            if let Some(result) = poll_then_drop(worker.append(1, &tx), polls).await {
                let appended = result.unwrap();
                check_acknowledged(&db, &faults, appended.seq, &dropped);
                finished_early += 1;
            }
            let mut statement = Statement::default();
            if let Some(result) = poll_then_drop(worker.statement(1, &mut statement), polls).await {
                result.unwrap();
                check_statement(&faults, &statement, 0);
            }
            let description = format!("w{polls}");
            let appended = bounded(
                "an append after a drop",
                worker.append(1, &credit(&description)),
            )
            .await
            .unwrap_or_else(|e| panic!("an append after dropping at poll {polls}: {e}"));
            check_acknowledged(&db, &faults, appended.seq, &description);
            let mut statement = Statement::default();
            bounded(
                "a statement after a drop",
                worker.statement(1, &mut statement),
            )
            .await
            .unwrap_or_else(|e| panic!("a statement after dropping at poll {polls}: {e}"));
            check_statement(&faults, &statement, appended.seq);
        }
        finished_early
    });
    stop.store(true, Ordering::Relaxed);
    let neighbour_acks = neighbour.join().unwrap();
    eprintln!(
        "epoll={epoll} {backend:?}: {finished} of {POLLS_MAX} appends finished before their drop \
         point; the neighbour acknowledged {neighbour_acks}"
    );
    assert!(!db.is_poisoned());
    assert!(neighbour_acks > 0, "the neighbour never appended");
    let (scan, _, _) = support::read_history(dir.path(), 1);
    assert!(scan.newest >= POLLS_MAX as u64);
}

/// Every sync fails: an append dropped after N polls, on a fresh database each time. If it got
/// as far as submitting its fdatasync, the failure must poison the database even though nobody
/// waits for it; and nothing is ever acknowledged or shown.
fn every_poll_point_with_syncs_failing(epoll: bool, backend: Backend) {
    let mut poisoned_by_a_dropped_sync = 0;
    for polls in 1..=POLLS_MAX {
        let dir = support::temp_dir();
        let faults = Faults::fail_sync_after(0).with_witness();
        let db = Arc::new(Db::open(dir.path(), options(faults.clone())).unwrap());
        block_on_with(epoll, async {
            let worker = db.worker(backend).unwrap();
            let tx = credit("dropped");
            let finished = poll_then_drop(worker.append(1, &tx), polls).await;
            if let Some(result) = &finished {
                assert!(
                    matches!(result, Err(AppendError::Unavailable(_))),
                    "acknowledged with every sync failing: {result:?}"
                );
            }
            if finished.is_none() && db.stats().syncs > 0 {
                // The sync was submitted: its failure arrives and poisons, awaited or not.
                bounded("the dropped sync's result", async {
                    while !db.is_poisoned() {
                        monoio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
                .await;
                poisoned_by_a_dropped_sync += 1;
            }
            let after = bounded("an append after a drop", worker.append(1, &credit("after"))).await;
            assert!(
                matches!(after, Err(AppendError::Unavailable(_))),
                "acknowledged with every sync failing: {after:?}"
            );
            let mut statement = Statement::default();
            let read = bounded("a statement", worker.statement(1, &mut statement)).await;
            assert!(
                matches!(read, Err(ReadError::Unavailable(_))),
                "a statement of unsynced records answered: {:?}",
                statement.records
            );
        });
        assert!(db.is_poisoned());
        assert_eq!(faults.covered(1), 0);
    }
    eprintln!(
        "epoll={epoll} {backend:?}: {poisoned_by_a_dropped_sync} of {POLLS_MAX} drops left a \
         failing sync behind, and it poisoned"
    );
    assert!(
        poisoned_by_a_dropped_sync > 0,
        "no drop point fell while a sync was in flight"
    );
}

#[test]
fn dropped_calls_never_shift_answers_or_acknowledge_unsynced_records() {
    for epoll in [false, true] {
        for backend in backends() {
            every_poll_point_with_syncs_succeeding(epoll, backend);
        }
    }
}

#[test]
fn a_sync_that_fails_after_its_call_was_dropped_still_poisons() {
    for epoll in [false, true] {
        for backend in backends() {
            every_poll_point_with_syncs_failing(epoll, backend);
        }
    }
}
