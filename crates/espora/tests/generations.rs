//! The generations of the shared state, where a review found them wrong (both fixed in the same
//! commit; each test below tells its bug).
//!
//! - **A recovery killed between its two stores.** Every recovery publishes what it found as a
//!   new generation: it stores the durable word, then the head word, each tagged with the new
//!   generation (top 16 bits; the sequence number in the low 48). A recovery killed between the
//!   two stores (an instance restarted with `kill -9` at that moment) leaves the durable word one
//!   generation ahead of the head, and only another recovery ever set the head again (writers
//!   raise it only within its own generation): the next append panicked on an assertion that
//!   the two agree (an abort in release builds: every instance died at its next write), an
//!   append already waiting for its sync spun forever without awaiting (it took the head's
//!   generation for the record's new one, and looked again), and a statement retried until it
//!   gave up as contended. The tests build that state directly in the shared-state file (as the
//!   dying recovery leaves it: the durable word with the next generation and its own sequence
//!   number, the head untouched), then an append, an append that was already waiting, and a
//!   statement must all answer.
//! - **An append that waited while the ring lapped.** After its sync, an append checked that
//!   its slot still held its record, to catch a recovery that put the device's bytes back. But
//!   an append whose task is polled late (a busy executor, a stopped process) can find its slot
//!   taken by a later lap of the ring, written by another process meanwhile: it answered "lost"
//!   and poisoned a healthy process, although its record had been synced.
//!
//! Each runs on both drivers and both back ends (the ring where the kernel has what espora
//! needs). Every wait is bounded: a regression that spins without awaiting blocks its runtime's
//! thread, so the runtime runs on a thread of its own that the test waits for with a deadline.

mod support;

use std::fs::OpenOptions;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::time::{Duration, Instant};

use espora::layout::{shared_offset, TAGGED_SEQ_BITS};
use espora::{AppendError, Backend, Db, Entry, Kind, Options, ReadError, Statement, Unavailable};
use support::block_on_with;

/// Far more than any step here takes (milliseconds) when it works.
const WAIT_MAX: Duration = Duration::from_secs(5);
/// The smallest ring, so that another process laps it quickly.
const RING: u64 = 64;
const VALUE: i64 = 7;
/// Records appended and acknowledged before the state under test is built.
const BEFORE: u64 = 3;

fn options() -> Options {
    Options {
        accounts: vec![(1, 0)],
        ring_records: RING,
        ..Options::default()
    }
}

fn credit(description: &str) -> Entry {
    support::entry(VALUE, Kind::Credit, description)
}

/// Both drivers (false: io_uring, true: epoll), each with the back ends this kernel has.
fn combinations() -> Vec<(bool, Backend)> {
    let backends = match Backend::detect() {
        Backend::IoUring => vec![Backend::IoUring, Backend::Threads],
        _ => vec![Backend::Threads],
    };
    let mut all = Vec::new();
    for epoll in [false, true] {
        for &backend in &backends {
            all.push((epoll, backend));
        }
    }
    all
}

/// Runs `body` on a thread of its own and waits for it at most [`WAIT_MAX`]: a call that spins
/// without awaiting blocks its runtime's thread, where no timer of that runtime fires. On a
/// timeout the thread is left behind (spinning or stuck) and the test fails; a panic in `body`
/// fails the test with its message.
fn within<T: Send + 'static>(what: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(what.chars().take(15).collect())
        .spawn(move || {
            let _ = sender.send(body());
        })
        .expect("spawn a thread");
    match receiver.recv_timeout(WAIT_MAX) {
        Ok(output) => {
            thread.join().expect("the thread ended");
            output
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!(
            "{what}: no answer within {WAIT_MAX:?} (its thread still runs: it spins or hangs)"
        ),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let panic = thread
                .join()
                .expect_err("the thread ended without an answer");
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("{what}: panicked: {message}");
        }
    }
}

/// A tagged word of the shared-state file: (generation, sequence number).
fn unpack(word: u64) -> (u64, u64) {
    (word >> TAGGED_SEQ_BITS, word & ((1 << TAGGED_SEQ_BITS) - 1))
}

fn read_word(file: &std::fs::File, offset: usize) -> u64 {
    let mut bytes = [0u8; 8];
    file.read_exact_at(&mut bytes, offset as u64)
        .expect("read the shared-state file");
    u64::from_le_bytes(bytes)
}

fn shared_file(dir: &Path) -> std::fs::File {
    let path = dir.join(espora::file::shared_file_name(1));
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// The (head, durable) words of account 1, unpacked.
fn words(dir: &Path) -> ((u64, u64), (u64, u64)) {
    let file = shared_file(dir);
    let head = read_word(&file, shared_offset::HEAD);
    let durable = read_word(&file, shared_offset::DURABLE);
    (unpack(head), unpack(durable))
}

/// Leaves the shared-state file of account 1 as a recovery killed between its two stores
/// leaves it: the durable word stored with the next generation (and the sequence number it
/// holds, which covers every acknowledged record), the head word not yet. Nothing else stores
/// these words meanwhile (no sync completes while the test does this), so a `pwrite` of the
/// 8-byte word stands for the recovery's atomic store.
fn die_between_the_two_stores(dir: &Path) {
    let file = shared_file(dir);
    let ((head_generation, head), (generation, durable)) = words(dir);
    assert_eq!(
        head_generation, generation,
        "the words disagree already: head {head} of generation {head_generation}, durable \
         {durable} of generation {generation}"
    );
    let next = (((generation + 1) & 0xffff) << TAGGED_SEQ_BITS) | durable;
    file.write_all_at(&next.to_le_bytes(), shared_offset::DURABLE as u64)
        .expect("store the durable word");
}

/// A new worker of `db`, after it acknowledged [`BEFORE`] records (seq 1..=BEFORE) on a fresh
/// directory.
async fn with_records(db: &Arc<Db>, backend: Backend) -> espora::Worker {
    let worker = db.worker(backend).expect("a worker");
    for index in 0..BEFORE {
        let description = format!("before{index}");
        worker
            .append(1, &credit(&description))
            .await
            .unwrap_or_else(|e| panic!("append {description}: {e}"));
    }
    worker
}

/// After a recovery died between its stores, the next writer (holding the lock) settles the
/// head: its append must be acknowledged as the record after the acknowledged ones, and the two
/// words must agree again.
///
/// The bug: the append's write asserted, under the lock, that the head and durable words have
/// the same generation ("only a recovery starts a generation, and it holds this lock"): true
/// while the recovery lives, false forever once it died between its stores. Every append then
/// panicked (aborted in release), in every process, until someone restarted with a clean open.
#[test]
fn an_append_after_a_recovery_killed_between_its_two_stores_is_acknowledged() {
    for (epoll, backend) in combinations() {
        let what = format!("epoll={epoll} {backend:?}: the append");
        let dir = support::temp_dir();
        let path = dir.path().to_path_buf();
        let db = Arc::new(Db::open(&path, options()).unwrap());
        let appended = within(&what, move || {
            block_on_with(epoll, async move {
                let worker = with_records(&db, backend).await;
                die_between_the_two_stores(&path);
                let appended = worker.append(1, &credit("after")).await;
                (appended, db.is_poisoned())
            })
        });
        let (appended, poisoned) = appended;
        let appended = appended.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            appended.seq,
            BEFORE + 1,
            "{what}: acknowledged as {appended:?}"
        );
        assert_eq!(appended.balance, (BEFORE as i64 + 1) * VALUE, "{what}");
        assert!(!poisoned, "{what}: the database was poisoned");
        let ((head_generation, head), (generation, durable)) = words(dir.path());
        assert_eq!(
            head_generation, generation,
            "{what}: the words still disagree"
        );
        assert!(head > BEFORE && durable > BEFORE, "{what}");
        let (_, records, _) = support::read_history(dir.path(), 1);
        assert_eq!(records.len() as u64, BEFORE + 1, "{what}: {records:?}");
        eprintln!("{what}: acknowledged as seq {}", appended.seq);
    }
}

/// An append already written and waiting for its sync when the recovery dies between its
/// stores must still be acknowledged (its record is in the page cache, and no recovery put
/// other bytes in its slot), or at worst fail; it must answer.
///
/// The bug: after its sync, the waiter saw the durable word in a newer generation, found its
/// record still in its slot, and adopted the generation of the head word, to wait there; but
/// the head word was the old generation, so the wait ended at once with "new generation" again,
/// and again: the task spun without ever awaiting, and its worker thread (every request on it)
/// hung at 100% CPU.
#[test]
fn an_append_waiting_when_a_recovery_dies_between_its_two_stores_finishes() {
    for (epoll, backend) in combinations() {
        let what = format!("epoll={epoll} {backend:?}: the waiting append");
        let dir = support::temp_dir();
        let path = dir.path().to_path_buf();
        let db = Arc::new(Db::open(&path, options()).unwrap());
        let (appended, poisoned) = within(&what, move || {
            block_on_with(epoll, async move {
                let worker = with_records(&db, backend).await;
                let transaction = credit("waiting");
                let mut append = pin!(worker.append(1, &transaction));
                // One poll: the record is written and published, and its sync is in flight.
                let first = std::future::poll_fn(|cx| Poll::Ready(append.as_mut().poll(cx))).await;
                assert!(
                    first.is_pending(),
                    "the append ended within its first poll: {first:?}"
                );
                die_between_the_two_stores(&path);
                let appended = append.await;
                (appended, db.is_poisoned())
            })
        });
        assert!(
            !poisoned,
            "{what}: the database was poisoned ({appended:?})"
        );
        match appended {
            Ok(appended) => {
                assert_eq!(
                    appended.seq,
                    BEFORE + 1,
                    "{what}: acknowledged as {appended:?}"
                );
                let (_, records, _) = support::read_history(dir.path(), 1);
                let record = records.iter().find(|r| r.seq == appended.seq);
                assert_eq!(
                    record.map(|r| r.description()),
                    Some("waiting"),
                    "{what}: the acknowledged record is not in the history"
                );
                eprintln!("{what}: acknowledged as seq {}", appended.seq);
            }
            Err(error) => eprintln!("{what}: failed without harm: {error}"),
        }
    }
}

/// A statement read after a recovery died between its stores must answer, with every record
/// acknowledged before it.
///
/// The bug: the statement read the head word (old generation) and waited for it to be durable;
/// the durable word's generation differed, so the wait answered "new generation" at once, and
/// the statement read the same head again, sixteen times, then gave up as contended. No
/// statement was served until a writer came along, and a writer panicked (see above).
#[test]
fn a_statement_after_a_recovery_killed_between_its_two_stores_answers() {
    for (epoll, backend) in combinations() {
        let what = format!("epoll={epoll} {backend:?}: the statement");
        let dir = support::temp_dir();
        let path = dir.path().to_path_buf();
        let db = Arc::new(Db::open(&path, options()).unwrap());
        let read = within(&what, move || {
            block_on_with(epoll, async move {
                let worker = with_records(&db, backend).await;
                die_between_the_two_stores(&path);
                let mut statement = Statement::default();
                let read = worker.statement(1, &mut statement).await;
                read.map(|()| statement).map_err(|e| e.to_string())
            })
        });
        let statement = read.unwrap_or_else(|e| panic!("{what}: {e}"));
        let seqs: Vec<u64> = statement.records.iter().map(|r| r.seq).collect();
        let expected: Vec<u64> = (1..=BEFORE).rev().collect();
        assert_eq!(seqs, expected, "{what}: the acknowledged records");
        assert_eq!(statement.balance, BEFORE as i64 * VALUE, "{what}");
        eprintln!("{what}: answered with {} records", seqs.len());
    }
}

/// Process A's append is polled once (its record written and published, its sync submitted)
/// and then not polled while process B, another database on the same directory, appends two
/// rings' worth. Polled again, A's append must be acknowledged (its sync succeeded, no recovery
/// ran), or at worst fail without harm; A must not be poisoned and must go on serving.
///
/// The bug: the append checked, after its sync, that its slot still held its record (meant to
/// catch a recovery that put the device's bytes back); the ring had gone round, so the slot
/// held B's later record, and the append answered "lost" and poisoned process A, although
/// nothing was wrong. Any instance whose executor stalled while the other wrote a ring's worth
/// stopped serving for good.
#[test]
fn an_append_that_waited_while_the_ring_lapped_is_acknowledged_without_poisoning() {
    for (epoll, backend) in combinations() {
        let what = format!("epoll={epoll} {backend:?}: the late append");
        let dir = support::temp_dir();
        let a = Arc::new(Db::open(dir.path(), options()).unwrap());
        let b = Arc::new(Db::open(dir.path(), options()).unwrap());
        let (go, wait_for_go) = mpsc::channel::<()>();
        let lapped = Arc::new(AtomicBool::new(false));
        let other = {
            let (b, lapped) = (Arc::clone(&b), Arc::clone(&lapped));
            std::thread::spawn(move || {
                wait_for_go.recv().expect("the go");
                let acknowledged = block_on_with(epoll, async move {
                    let worker = b.worker(backend).expect("B's worker");
                    for index in 0..2 * RING {
                        let description = format!("b{index}");
                        let appended = worker.append(1, &credit(&description)).await;
                        appended.unwrap_or_else(|e| panic!("B's append {description}: {e}"));
                    }
                    2 * RING
                });
                lapped.store(true, Ordering::Release);
                acknowledged
            })
        };
        let result = within(&what, {
            let a = Arc::clone(&a);
            move || {
                block_on_with(epoll, async move {
                    let worker = a.worker(backend).expect("A's worker");
                    let transaction = credit("late");
                    let mut append = pin!(worker.append(1, &transaction));
                    let first =
                        std::future::poll_fn(|cx| Poll::Ready(append.as_mut().poll(cx))).await;
                    assert!(
                        first.is_pending(),
                        "the append ended within its first poll: {first:?}"
                    );
                    // The task is not polled (its runtime runs, reaping completions) while B
                    // laps the ring.
                    go.send(()).expect("B waits");
                    let started = Instant::now();
                    while !lapped.load(Ordering::Acquire) {
                        assert!(started.elapsed() < WAIT_MAX, "B never finished");
                        monoio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let late = append.await;
                    let poisoned_by_it = a.is_poisoned();
                    // A serves on: an append and a statement.
                    let next = worker.append(1, &credit("next")).await;
                    let mut statement = Statement::default();
                    let read = worker.statement(1, &mut statement).await;
                    (late, poisoned_by_it, next, read, statement)
                })
            }
        });
        let b_acknowledged = other.join().expect("B's thread");
        let (late, poisoned_by_it, next, read, statement) = result;
        assert!(
            !poisoned_by_it,
            "{what}: process A was poisoned by its late append ({late:?})"
        );
        match &late {
            Ok(appended) => assert_eq!(appended.seq, 1, "{what}: acknowledged as {appended:?}"),
            Err(AppendError::Unavailable(Unavailable::Lost { seq })) => {
                panic!("{what}: answered lost (seq {seq}) although no recovery ran")
            }
            Err(error) => eprintln!("{what}: failed without harm: {error}"),
        }
        let next = next.unwrap_or_else(|e| panic!("{what}: A's next append: {e}"));
        assert_eq!(next.seq, 2 * RING + 2, "{what}: A's next append");
        assert!(
            matches!(read, Ok(())),
            "{what}: A's statement: {:?}",
            read.map_err(|e: ReadError| e.to_string())
        );
        assert_eq!(statement.records.first().map(|r| r.seq), Some(next.seq));
        assert_eq!(statement.balance, next.balance, "{what}");
        assert!(!a.is_poisoned() && !b.is_poisoned(), "{what}: poisoned");
        eprintln!(
            "{what}: {} after B acknowledged {b_acknowledged}",
            match &late {
                Ok(appended) => format!("acknowledged as seq {}", appended.seq),
                Err(error) => format!("failed: {error}"),
            }
        );
    }
}

/// A recovery's reset never lowers the durable mark of the generation before it: a sync of that
/// generation may complete between the recovery's scan (which read the mark) and its reset,
/// acknowledging appends over it, and a head settled at the new mark (after the recovery died
/// between its two stores) must still cover them.
///
/// The bug (found by a review): the reset stored the mark the scan had found, say 3, while 4
/// and 5 had been acknowledged meanwhile; the recovery then died before storing the head, the
/// next lock holder settled the head at 3, and a statement answered without 4 and 5.
#[test]
fn a_reset_keeps_the_durable_mark_that_syncs_raised_after_the_scan() {
    let dir = support::temp_dir();
    let db = Arc::new(Db::open(dir.path(), options()).unwrap());
    block_on_with(false, async {
        let worker = with_records(&db, Backend::Threads).await;
        for index in 0..2 {
            worker
                .append(1, &credit(&format!("after{index}")))
                .await
                .unwrap();
        }
    });
    let newest = BEFORE + 2;
    let ((generation, _), (_, durable)) = words(dir.path());
    assert_eq!(durable, newest);
    // The recovery's scan had read the mark when it was BEFORE.
    let (_, mapping) =
        espora::file::open_existing(&dir.path().join(espora::file::account_file_name(1))).unwrap();
    let shared =
        espora::shared::Shared::open(&dir.path().join(espora::file::shared_file_name(1))).unwrap();
    let next = shared.reset(mapping.header(), newest, BEFORE);
    assert_eq!(u64::from(next), (generation + 1) & 0xffff);
    let ((_, head), (_, durable)) = words(dir.path());
    assert_eq!(
        (head, durable),
        (newest, newest),
        "the reset lowered the mark"
    );
    // Settled at the mark, the head covers every acknowledged record.
    assert_eq!(shared.settle_locked().0.seq, newest);
    let mut statement = Statement::default();
    block_on_with(false, async {
        let worker = db.worker(Backend::Threads).unwrap();
        worker.statement(1, &mut statement).await.unwrap();
    });
    assert_eq!(statement.records.first().map(|r| r.seq), Some(newest));
}
