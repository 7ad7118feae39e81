//! Crash leftovers and damage: torn writes, orphans after a machine crash, corrupt history,
//! failing fdatasync, a lock held forever, and what `espora verify` says about each.

mod support;

use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use espora::file::{self, account_file_name};
use espora::layout::{Description, Record, HEADER_SIZE, RECORD_SIZE};
use espora::shared::{Shared, Tagged};
use espora::{
    AppendError, Db, Faults, Kind, OpenError, Options, ReadError, Statement, Unavailable,
};
use support::{block_on, read_history};

const RING: u64 = 64;

/// Creates a directory whose account 1 holds `durable` synced records and then `pending`
/// records written to the page cache but never synced, as if the machine died before the sync.
fn history(durable: u64, pending: u64) -> tempfile::TempDir {
    let dir = support::temp_dir();
    let options = Options {
        ring_records: RING,
        ..support::options()
    };
    let db = Arc::new(Db::open(dir.path(), options).unwrap());
    block_on(async {
        let worker = db.worker(support::backend()).unwrap();
        for i in 0..durable {
            let description = format!("d{i}");
            let tx = support::entry(10, Kind::Credit, &description);
            worker.append(1, &tx).await.unwrap();
        }
    });
    drop(db);
    append_unsynced(dir.path(), pending);
    let shared = Shared::open(&dir.path().join(file::shared_file_name(1))).unwrap();
    assert_eq!(shared.durable().seq, durable);
    dir
}

/// Writes `count` debits of 1 to account 1 under its lock, as a writer does, and never syncs
/// them: what a machine crash leaves in the page cache.
fn append_unsynced(dir: &Path, count: u64) {
    let (handle, mapping) = file::open_existing(&dir.join(account_file_name(1))).unwrap();
    let shared = Shared::open(&dir.join(file::shared_file_name(1))).unwrap();
    file::lock_exclusive_blocking(&handle).unwrap();
    for i in 0..count {
        let description = format!("p{i}");
        let entry = support::entry(1, Kind::Debit, &description);
        let (record, generation) = mapping
            .append_locked(&handle, &shared, &entry, espora::time::now_us())
            .unwrap();
        shared.publish_head(Tagged {
            generation,
            seq: record.seq,
        });
    }
    file::unlock(&handle);
}

fn account_path(dir: &Path) -> std::path::PathBuf {
    dir.join(account_file_name(1))
}

fn slot_offset(seq: u64) -> u64 {
    (HEADER_SIZE as u64) + ((seq - 1) % RING) * RECORD_SIZE as u64
}

fn write_at(dir: &Path, offset: u64, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(account_path(dir))
        .unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

fn statement(dir: &Path) -> Result<Statement, OpenError> {
    let db = Arc::new(Db::open(dir, support::options())?);
    let mut out = Statement::default();
    block_on(async {
        db.worker(support::backend())
            .unwrap()
            .statement(1, &mut out)
            .await
            .unwrap()
    });
    Ok(out)
}

fn espora_verify(target: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_espora"))
        .arg("verify")
        .arg(target)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn torn_unacknowledged_newest_record_is_recovered_silently() {
    // Record 6 was written but its sync never completed; half of it reached the disk.
    let dir = history(5, 1);
    write_at(dir.path(), slot_offset(6) + 64, &[0xAB; 64]);
    let (ok, report) = espora_verify(&account_path(dir.path()));
    assert!(ok, "{report}");
    assert!(report.contains("torn"), "{report}");
    let statement = statement(dir.path()).unwrap();
    assert_eq!(statement.balance, 50);
    assert_eq!(statement.records[0].seq, 5);
    // The next append takes the torn slot's place.
    block_on(async {
        let db = Arc::new(Db::open(dir.path(), support::options()).unwrap());
        let tx = support::entry(1, Kind::Credit, "after");
        let done = db
            .worker(support::backend())
            .unwrap()
            .append(1, &tx)
            .await
            .unwrap();
        assert_eq!((done.seq, done.balance), (6, 51));
    });
    assert!(espora_verify(dir.path()).0);
}

#[test]
fn complete_unsynced_records_written_before_a_kill_are_kept() {
    // A process killed after writing (the page cache keeps its writes) but before its sync:
    // the records are whole and chained, so the history continues through them.
    let dir = history(3, 2);
    let statement = statement(dir.path()).unwrap();
    assert_eq!(statement.balance, 28);
    assert_eq!(statement.records[0].seq, 5);
}

#[test]
fn records_beyond_a_gap_left_by_a_machine_crash_are_erased_and_reported() {
    // Records 4, 5 and 6 were never synced; after the crash only 5 and 6 made it to disk.
    let dir = history(3, 3);
    write_at(dir.path(), slot_offset(4), &[0u8; RECORD_SIZE]);
    let (ok, report) = espora_verify(&account_path(dir.path()));
    assert!(ok, "{report}");
    assert!(report.contains("2 unacknowledged leftover"), "{report}");
    let statement = statement(dir.path()).unwrap();
    assert_eq!((statement.balance, statement.records[0].seq), (30, 3));
    let (scan, _, _) = read_history(dir.path(), 1);
    assert!(scan.orphans.is_empty(), "recovery erased the orphans");
    // A later writer must not adopt an erased orphan as its successor.
    block_on(async {
        let db = Arc::new(Db::open(dir.path(), support::options()).unwrap());
        let worker = db.worker(support::backend()).unwrap();
        for expected in [4, 5, 6, 7] {
            let tx = support::entry(1, Kind::Credit, "x");
            assert_eq!(worker.append(1, &tx).await.unwrap().seq, expected);
        }
    });
    assert!(espora_verify(dir.path()).0);
}

#[test]
fn damage_inside_acknowledged_history_refuses_to_open_and_verify_names_it() {
    let cases: [(&str, u64, usize); 3] = [
        ("flipped byte in an old record", 2, 40),
        ("flipped byte in the newest durable record", 5, 3),
        ("flipped checksum", 3, RECORD_SIZE - 1),
    ];
    for (story, seq, byte) in cases {
        let dir = history(5, 0);
        let path = account_path(dir.path());
        let mut bytes = [0u8; 1];
        std::fs::File::open(&path)
            .unwrap()
            .read_exact_at(&mut bytes, slot_offset(seq) + byte as u64)
            .unwrap();
        write_at(
            dir.path(),
            slot_offset(seq) + byte as u64,
            &[bytes[0] ^ 0x10],
        );
        match Db::open(dir.path(), support::options()) {
            Err(e @ OpenError::Corrupt { .. }) => {
                let message = e.to_string();
                assert!(message.contains("account-1.espora"), "{story}: {message}");
                assert!(
                    message.contains(&format!("seq {seq}")),
                    "{story}: {message}"
                );
            }
            Err(e) => panic!("{story}: wrong error {e}"),
            Ok(_) => panic!("{story}: opened a damaged file"),
        }
        let (ok, report) = espora_verify(dir.path());
        assert!(!ok, "{story}: {report}");
        assert!(
            report.contains("account-1.espora: FAILED") && report.contains(&format!("seq {seq}")),
            "{story}: {report}"
        );
    }
}

#[test]
fn a_balance_chain_that_does_not_add_up_is_corruption() {
    // A record with a valid checksum whose balance does not follow from its predecessor: only
    // a bug could write it, and it must not be served.
    let dir = history(4, 0);
    let forged = Record {
        seq: 3,
        timestamp_us: espora::time::now_us(),
        value: 10,
        balance: 999,
        kind: Kind::Credit,
        description: Description::new("forged").unwrap(),
        anchor: 2,
    };
    write_at(dir.path(), slot_offset(3), &forged.encode());
    let error = Db::open(dir.path(), support::options())
        .err()
        .expect("must refuse");
    assert!(
        error.to_string().contains("balance chain broken"),
        "{error}"
    );
    assert!(!espora_verify(dir.path()).0);
}

#[test]
fn wrong_format_version_and_foreign_files_give_one_clear_error() {
    let dir = history(1, 0);
    write_at(dir.path(), 8, &[9, 0, 0, 0]);
    let message = Db::open(dir.path(), support::options())
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains("account-1.espora") && message.contains("version 9"),
        "{message}"
    );

    let dir = support::temp_dir();
    std::fs::write(dir.path().join(account_file_name(2)), b"hello").unwrap();
    let message = Db::open(dir.path(), support::options())
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("account-2.espora"), "{message}");

    let message = Db::open(&dir.path().join("missing"), support::options())
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn a_failed_fdatasync_stops_every_acknowledgement() {
    let dir = support::temp_dir();
    let options = Options {
        faults: Faults::fail_sync_after(3),
        ..support::options()
    };
    let db = Arc::new(Db::open(dir.path(), options).unwrap());
    block_on(async {
        let worker = db.worker(support::backend()).unwrap();
        let tx = support::entry(5, Kind::Credit, "c");
        for _ in 0..3 {
            worker.append(1, &tx).await.unwrap();
        }
        let failed = worker.append(1, &tx).await;
        assert!(
            matches!(failed, Err(AppendError::Unavailable(Unavailable::Sync(_)))),
            "{failed:?}"
        );
        for account in [1, 2] {
            let after = worker.append(account, &tx).await;
            assert!(
                matches!(after, Err(AppendError::Unavailable(Unavailable::Poisoned))),
                "{after:?}"
            );
        }
        let mut out = Statement::default();
        let read = worker.statement(2, &mut out).await;
        assert!(
            matches!(read, Err(ReadError::Unavailable(Unavailable::Poisoned))),
            "{read:?}"
        );
    });
    assert!(db.is_poisoned());
}

#[test]
fn a_lock_held_too_long_fails_the_append_without_blocking_the_thread() {
    let dir = support::temp_dir();
    let db = Arc::new(Db::open(dir.path(), support::options()).unwrap());
    let holder = file::open_rw(&account_path(dir.path())).unwrap();
    file::lock_exclusive_blocking(&holder).unwrap();
    block_on(async {
        let worker = db.worker(support::backend()).unwrap();
        // Another task of the same thread keeps running while the append waits for the lock.
        let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let counter = std::rc::Rc::clone(&ticks);
        monoio::spawn(async move {
            loop {
                counter.set(counter.get() + 1);
                monoio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        });
        let started = Instant::now();
        let entry = support::entry(5, Kind::Credit, "c");
        let result = worker.append(1, &entry).await;
        assert!(
            matches!(
                result,
                Err(AppendError::Unavailable(Unavailable::Lock(None)))
            ),
            "{result:?}"
        );
        assert!(started.elapsed().as_secs_f64() > 1.0);
        assert!(
            ticks.get() > 20,
            "the thread was blocked: {} ticks",
            ticks.get()
        );
        // Once the holder lets go, appends proceed.
        file::unlock(&holder);
        assert_eq!(worker.append(1, &entry).await.unwrap().balance, 5);
    });
}

#[test]
fn the_tool_initialises_dumps_and_verifies() {
    let dir = support::temp_dir();
    let data = dir.path().join("data");
    let tool = env!("CARGO_BIN_EXE_espora");
    for _ in 0..2 {
        let out = Command::new(tool)
            .arg("init")
            .arg(&data)
            .args(support::ACCOUNTS.map(|(id, limit)| format!("--account={id}:{limit}")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    block_on(async {
        let db = Arc::new(Db::open(&data, support::options()).unwrap());
        let worker = db.worker(support::backend()).unwrap();
        for (kind, description) in [
            (Kind::Credit, "toma"),
            (Kind::Debit, "devolve"),
            (Kind::Credit, "aspas\"é"),
        ] {
            let entry = support::entry(7, kind, description);
            worker.append(4, &entry).await.unwrap();
        }
    });
    let out = Command::new(tool)
        .args(["dump", "--json"])
        .arg(data.join(account_file_name(4)))
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["description"], "toma");
    assert_eq!(lines[1]["kind"], "d");
    assert_eq!(lines[2]["description"], "aspas\"é");
    assert_eq!(lines[2]["balance"], 7);
    assert_eq!(lines[2]["seq"], 3);
    assert_eq!(lines[2]["account"], 4);
    let (ok, report) = espora_verify(&data);
    assert!(ok, "{report}");
    assert_eq!(
        report.lines().filter(|l| l.contains(": ok:")).count(),
        5,
        "{report}"
    );
    assert!(
        report.contains("account 4 limit 5000000 records 3"),
        "{report}"
    );
    let bad = Command::new(tool)
        .args(["verify", "/nonexistent/dir"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let small = dir.path().join("small");
    let out = Command::new(tool)
        .arg("init")
        .arg(&small)
        .args(["--account", "1:0", "--ring-records", "128"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let size = std::fs::metadata(small.join(account_file_name(1)))
        .unwrap()
        .len();
    assert_eq!(size, (HEADER_SIZE + 128 * RECORD_SIZE) as u64);
    let usage = Command::new(tool).arg("frobnicate").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    // espora knows no accounts of its own: init must be told which, verify finds them.
    let unnamed = Command::new(tool).arg("init").arg(&small).output().unwrap();
    assert_eq!(unnamed.status.code(), Some(2), "{unnamed:?}");
    let bad_account = Command::new(tool)
        .args(["init", "--account", "1:-5"])
        .arg(&small)
        .output()
        .unwrap();
    assert_eq!(bad_account.status.code(), Some(2), "{bad_account:?}");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, report) = espora_verify(&empty);
    assert!(!ok && report.contains("no account files"), "{report}");
}

/// Story: a request future can be dropped while it waits for an fdatasync (a client that
/// disconnects, a timeout around the handler). The first version kept the file marked "sync in
/// flight" forever after that, and every later append on the worker hung. Both sync paths must
/// recover: the next append must complete.
#[test]
fn an_append_dropped_while_its_sync_is_in_flight_does_not_wedge_the_worker() {
    let dir = support::temp_dir();
    let db = Arc::new(Db::open(dir.path(), support::options()).unwrap());
    for epoll in [false, true] {
        support::block_on_with(epoll, async {
            let worker = db.worker(support::backend()).unwrap();
            for round in 0..50u64 {
                let description = format!("r{round}");
                let entry = support::entry(1, Kind::Credit, &description);
                // Poll the append a few times, then drop it, possibly mid-sync.
                let mut append = Box::pin(worker.append(1, &entry));
                for _ in 0..(round % 4) {
                    let ready = std::future::poll_fn(|cx| {
                        std::task::Poll::Ready(append.as_mut().poll(cx).is_ready())
                    })
                    .await;
                    if ready {
                        break;
                    }
                    monoio::time::sleep(std::time::Duration::from_micros(200)).await;
                }
                drop(append);
                let entry = support::entry(1, Kind::Credit, "after");
                let after = worker.append(1, &entry);
                let done = monoio::time::timeout(std::time::Duration::from_secs(5), after)
                    .await
                    .expect("append after a dropped one must not hang");
                done.unwrap();
            }
        });
    }
    let (scan, _, _) = read_history(dir.path(), 1);
    assert!(scan.newest >= 100);
}

/// Reads `len` bytes of account 1's file at `offset`.
fn read_at(dir: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    std::fs::File::open(account_path(dir))
        .unwrap()
        .read_exact_at(&mut bytes, offset)
        .unwrap();
    bytes
}

/// Story: the first version decided where a wrapped ring's history starts by looking only at
/// the slot right after the newest record. A power loss that cut several unsynced writes (here
/// 101 and 102 lost, their slots back to records 37 and 38 of the previous lap, 103 on disk)
/// made it start the history at 38 and report a broken chain: the machine could not restart.
#[test]
fn a_wrapped_ring_whose_newest_writes_a_power_loss_cut_recovers() {
    let dir = history(100, 0);
    let before: Vec<Vec<u8>> = [37, 38]
        .iter()
        .map(|&seq| read_at(dir.path(), slot_offset(seq), RECORD_SIZE))
        .collect();
    append_unsynced(dir.path(), 3);
    // The power loss: the writes of 101 and 102 never reached the disk, and the shared-state
    // file, never synced, is gone.
    write_at(dir.path(), slot_offset(101), &before[0]);
    write_at(dir.path(), slot_offset(102), &before[1]);
    std::fs::remove_file(dir.path().join(file::shared_file_name(1))).unwrap();
    let (ok, report) = espora_verify(&account_path(dir.path()));
    assert!(ok, "{report}");
    assert!(report.contains("(seq 40..=100)"), "{report}");
    let statement = statement(dir.path()).unwrap();
    assert_eq!(statement.records[0].seq, 100);
    assert_eq!(statement.balance, 1000);
    let (scan, _, _) = read_history(dir.path(), 1);
    assert!(scan.orphans.is_empty(), "recovery erased the leftovers");
    assert_eq!((scan.oldest, scan.newest), (40, 100));
}

/// Damage inside a wrapped ring's history, far from where cut writes could reach, is still
/// corruption, not a crash leftover.
#[test]
fn records_missing_inside_a_wrapped_history_are_corruption() {
    let dir = history(100, 0);
    write_at(dir.path(), slot_offset(70) + 5, &[0xEE]);
    std::fs::remove_file(dir.path().join(file::shared_file_name(1))).unwrap();
    match Db::open(dir.path(), support::options()) {
        Err(e @ OpenError::Corrupt { .. }) => {
            assert!(e.to_string().contains("seq 70"), "{e}");
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened a damaged file"),
    }
}

#[test]
fn creation_without_fallocate_writes_the_file_out() {
    let dir = support::temp_dir();
    let options = Options {
        ring_records: 1024,
        faults: Faults::default().with_fallocate_refused(),
        ..support::options()
    };
    let db = Arc::new(Db::open(dir.path(), options).unwrap());
    let path = account_path(dir.path());
    let metadata = std::fs::metadata(&path).unwrap();
    let size = (HEADER_SIZE + 1024 * RECORD_SIZE) as u64;
    assert_eq!(metadata.len(), size);
    // Every block is allocated, as fallocate would have done: no later write can hit a hole.
    use std::os::unix::fs::MetadataExt;
    assert!(
        metadata.blocks() * 512 >= size,
        "{} blocks",
        metadata.blocks()
    );
    block_on(async {
        let worker = db.worker(support::backend()).unwrap();
        let tx = support::entry(3, Kind::Credit, "fuse");
        assert_eq!(worker.append(1, &tx).await.unwrap().balance, 3);
    });
    drop(db);
    let (ok, report) = espora_verify(dir.path());
    assert!(ok, "{report}");
}

/// Child of the test below: creation under a 1 MiB file-size limit, which the write-out of an
/// 8 MiB file exceeds.
#[test]
fn child_creates_under_a_file_size_limit() {
    if std::env::var_os("ESPORA_CHILD").is_none() {
        return;
    }
    let limit = rustix::process::Rlimit {
        current: Some(1 << 20),
        maximum: None,
    };
    rustix::process::setrlimit(rustix::process::Resource::Fsize, limit).unwrap();
    // SAFETY: ignoring SIGXFSZ turns the limit into EFBIG errors instead of a kill; nothing else
    // in this single-threaded child handles signals.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = std::path::PathBuf::from(std::env::var("DIR").unwrap());
    let options = Options {
        faults: Faults::default().with_fallocate_refused(),
        ..support::options()
    };
    let error = Db::open(&dir, options).err().expect("creation must fail");
    println!("ERROR {error}");
}

#[test]
fn a_failed_write_out_names_the_path() {
    let dir = support::temp_dir();
    let child = support::spawn_child(
        "child_creates_under_a_file_size_limit",
        &[("DIR", dir.path().display().to_string())],
    );
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("ERROR "))
        .expect("an error line");
    assert!(line.contains(&dir.path().display().to_string()), "{line}");
    assert!(
        line.contains("write out") && line.contains("os error 27"),
        "{line}"
    );
    // Nothing half-made is left under an account file's name.
    assert!(!account_path(dir.path()).exists());
}

/// A file of the first format (version 1) is refused at open and by the tool, with a message
/// that says what to do, and is left as it was.
#[test]
fn a_version_1_file_is_refused_with_what_to_do() {
    use espora::layout::header_offset;
    let dir = history(5, 0);
    let path = account_path(dir.path());
    let (_, mapping) = file::open_existing(&path).unwrap();
    let mut header = mapping.header().encode();
    drop(mapping);
    header[header_offset::VERSION..][..4].copy_from_slice(&1u32.to_le_bytes());
    let checksum = crc32c::crc32c(&header[..header_offset::CHECKSUM]);
    header[header_offset::CHECKSUM..][..4].copy_from_slice(&checksum.to_le_bytes());
    write_at(dir.path(), 0, &header);
    let before = std::fs::read(&path).unwrap();
    let error = Db::open(dir.path(), support::options())
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(
        message.contains("format version 1 is no longer read") && message.contains("empty"),
        "{message}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    let (ok, report) = espora_verify(&path);
    assert!(!ok && report.contains("format version 1"), "{report}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file was changed"
    );
}

/// With a ring of 64, at most 16 records may wait for a sync: 40 tasks appending while every
/// sync crawls for 5 ms never get further ahead of the durable mark than that.
#[test]
fn at_most_a_quarter_of_the_ring_waits_for_a_sync() {
    let dir = support::temp_dir();
    let options = Options {
        ring_records: RING,
        faults: Faults::default().with_sync_delay(std::time::Duration::from_millis(5)),
        ..support::options()
    };
    let db = Arc::new(Db::open(dir.path(), options).unwrap());
    let shared = Arc::new(Shared::open(&dir.path().join(file::shared_file_name(1))).unwrap());
    let widest = block_on(async {
        let worker = std::rc::Rc::new(db.worker(support::backend()).unwrap());
        let done = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut tasks = Vec::new();
        for task in 0..40 {
            let worker = std::rc::Rc::clone(&worker);
            let done = std::rc::Rc::clone(&done);
            tasks.push(monoio::spawn(async move {
                for i in 0..5 {
                    let description = format!("t{task}.{i}");
                    let tx = support::entry(1, Kind::Credit, &description);
                    worker.append(1, &tx).await.unwrap();
                }
                done.set(done.get() + 1);
            }));
        }
        let mut widest = 0;
        while done.get() < 40 {
            widest = widest.max(shared.head().seq - shared.durable().seq);
            monoio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
        for task in tasks {
            task.await;
        }
        widest
    });
    eprintln!("widest gap between head and durable: {widest}");
    assert!(widest <= RING / 4, "{widest} records waited for a sync");
    assert!(
        widest >= RING / 4 - 2,
        "the window was never reached ({widest})"
    );
    drop(db);
    let (scan, _, _) = read_history(dir.path(), 1);
    assert_eq!(scan.newest, 200);
}

/// A writer killed between its `pwrite` and publishing leaves records the head hint does not
/// name. With a ring of 64 and 16 such records after the durable mark, the next writer adopts
/// them and is refused by the window: it must announce what it adopted, so that the sync it
/// waits for covers it, and go on after one or two syncs (it used to sync the stale head in a
/// tight loop forever).
#[test]
fn a_writer_refused_by_the_window_is_woken_once_the_window_reopens() {
    let dir = support::temp_dir();
    let options = Options {
        ring_records: RING,
        ..support::options()
    };
    let db = Arc::new(Db::open(dir.path(), options).unwrap());
    // Written under the lock, never published: the head hint stays at 0.
    let (handle, mapping) = file::open_existing(&account_path(dir.path())).unwrap();
    let shared = Shared::open(&dir.path().join(file::shared_file_name(1))).unwrap();
    file::lock_exclusive_blocking(&handle).unwrap();
    for i in 0..RING / 4 {
        let description = format!("k{i}");
        let tx = support::entry(1, Kind::Credit, &description);
        mapping
            .append_locked(&handle, &shared, &tx, espora::time::now_us())
            .unwrap();
    }
    file::unlock(&handle);
    assert_eq!((shared.head().seq, shared.durable().seq), (0, 0));
    let appended = block_on(async {
        let worker = db.worker(support::backend()).unwrap();
        let entry = support::entry(1, Kind::Credit, "after");
        let append = worker.append(1, &entry);
        monoio::time::timeout(std::time::Duration::from_secs(5), append)
            .await
            .expect("the writer refused by the window never went on")
            .unwrap()
    });
    assert_eq!(
        (appended.seq, appended.balance),
        (RING / 4 + 1, RING as i64 / 4 + 1)
    );
    let syncs = db.stats().syncs;
    assert!(
        (1..=2).contains(&syncs),
        "{syncs} fdatasyncs for one append"
    );
}

/// One database stands for each of two processes. While one's sync crawls (20 ms, below the
/// takeover bound), the other's statement sleeps on the shared sync word; it must wake when
/// that sync ends, not on a timer.
#[test]
fn a_statement_waiting_for_another_processes_sync_wakes_when_it_ends() {
    let dir = support::temp_dir();
    let slow = Options {
        faults: Faults::default().with_sync_delay(std::time::Duration::from_millis(20)),
        ..support::options()
    };
    let writer = Arc::new(Db::open(dir.path(), slow).unwrap());
    let reader = Arc::new(Db::open(dir.path(), support::options()).unwrap());
    let shared = Shared::open(&dir.path().join(file::shared_file_name(2))).unwrap();
    let mut lags = Vec::new();
    for round in 0..7 {
        let writing = {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                block_on(async {
                    let worker = writer.worker(support::backend()).unwrap();
                    let description = format!("w{round}");
                    let tx = support::entry(1, Kind::Credit, &description);
                    worker.append(2, &tx).await.unwrap();
                    Instant::now()
                })
            })
        };
        while shared
            .sync_claim()
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            std::thread::yield_now();
        }
        let read_at = block_on(async {
            let worker = reader.worker(support::backend()).unwrap();
            let mut out = Statement::default();
            worker.statement(2, &mut out).await.unwrap();
            assert_eq!(out.records[0].description(), format!("w{round}"));
            Instant::now()
        });
        let written_at = writing.join().unwrap();
        lags.push(read_at.saturating_duration_since(written_at));
    }
    lags.sort();
    eprintln!("wake-up after the other's sync ended: {lags:?}");
    let median = lags[lags.len() / 2];
    assert!(
        median < std::time::Duration::from_millis(1),
        "woken {median:?} after the sync ended"
    );
    assert_eq!(reader.stats().syncs, 0, "the reader synced itself");
}
