//! Crash leftovers and damage: torn writes, orphans after a machine crash, corrupt history,
//! failing fdatasync, a lock held forever, and what `espora verify` says about each.

mod common;

use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use common::{block_on, read_history};
use espora::file::{self, account_file_name, Transaction};
use espora::layout::{Description, Record, HEADER_SIZE, RECORD_SIZE};
use espora::shared::Shared;
use espora::{
    AppendError, Db, Faults, Kind, OpenError, Options, ReadError, Statement, Unavailable,
};

const RING: u64 = 64;

/// Creates a directory whose account 1 holds `durable` synced records and then `pending`
/// records written to the page cache but never synced, as if the machine died before the sync.
fn history(durable: u64, pending: u64) -> tempfile::TempDir {
    let dir = common::temp_dir();
    let options = Options {
        ring_records: RING,
        ..Options::default()
    };
    let db = Arc::new(Db::open(dir.path(), options).unwrap());
    block_on(async {
        let worker = db.worker(common::backend()).unwrap();
        for i in 0..durable {
            let description = format!("d{i}");
            let tx = Transaction {
                value: 10,
                kind: Kind::Credit,
                description: &description,
            };
            worker.append(1, &tx).await.unwrap();
        }
    });
    drop(db);
    let (handle, mapping) = file::open_existing(&dir.path().join(account_file_name(1))).unwrap();
    let shared = Shared::open(&dir.path().join(file::shared_file_name(1))).unwrap();
    file::lock_exclusive_blocking(&handle).unwrap();
    for i in 0..pending {
        let description = format!("p{i}");
        let tx = Transaction {
            value: 1,
            kind: Kind::Debit,
            description: &description,
        };
        let entry = tx.validate().unwrap();
        let record = mapping
            .append_locked(&handle, &shared, &entry, file::now_us())
            .unwrap();
        shared.publish_head(record.seq);
    }
    file::unlock(&handle);
    assert_eq!(shared.durable(), durable);
    dir
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
    let db = Arc::new(Db::open(dir, Options::default())?);
    let mut out = Statement::default();
    block_on(async {
        db.worker(common::backend())
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
        let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
        let tx = Transaction {
            value: 1,
            kind: Kind::Credit,
            description: "after",
        };
        let done = db
            .worker(common::backend())
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
        let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
        let worker = db.worker(common::backend()).unwrap();
        for expected in [4, 5, 6, 7] {
            let tx = Transaction {
                value: 1,
                kind: Kind::Credit,
                description: "x",
            };
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
        match Db::open(dir.path(), Options::default()) {
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
        timestamp_us: file::now_us(),
        value: 10,
        balance: 999,
        kind: Kind::Credit,
        description: Description::new("forged").unwrap(),
        anchor: 2,
    };
    write_at(dir.path(), slot_offset(3), &forged.encode());
    let error = Db::open(dir.path(), Options::default())
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
    let message = Db::open(dir.path(), Options::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains("account-1.espora") && message.contains("version 9"),
        "{message}"
    );

    let dir = common::temp_dir();
    std::fs::write(dir.path().join(account_file_name(2)), b"hello").unwrap();
    let message = Db::open(dir.path(), Options::default())
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("account-2.espora"), "{message}");

    let message = Db::open(&dir.path().join("missing"), Options::default())
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn a_failed_fdatasync_stops_every_acknowledgement() {
    let dir = common::temp_dir();
    let options = Options {
        faults: Faults::fail_sync_after(3),
        ..Options::default()
    };
    let db = Arc::new(Db::open(dir.path(), options).unwrap());
    block_on(async {
        let worker = db.worker(common::backend()).unwrap();
        let tx = Transaction {
            value: 5,
            kind: Kind::Credit,
            description: "c",
        };
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
    let dir = common::temp_dir();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let holder = file::open_rw(&account_path(dir.path())).unwrap();
    file::lock_exclusive_blocking(&holder).unwrap();
    block_on(async {
        let worker = db.worker(common::backend()).unwrap();
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
        let tx = Transaction {
            value: 5,
            kind: Kind::Credit,
            description: "c",
        };
        let result = worker.append(1, &tx).await;
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
        assert_eq!(worker.append(1, &tx).await.unwrap().balance, 5);
    });
}

#[test]
fn the_tool_initialises_dumps_and_verifies() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    let tool = env!("CARGO_BIN_EXE_espora");
    for _ in 0..2 {
        let out = Command::new(tool).arg("init").arg(&data).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    block_on(async {
        let db = Arc::new(Db::open(&data, Options::default()).unwrap());
        let worker = db.worker(common::backend()).unwrap();
        for (kind, description) in [
            (Kind::Credit, "toma"),
            (Kind::Debit, "devolve"),
            (Kind::Credit, "aspas\"é"),
        ] {
            worker
                .append(
                    4,
                    &Transaction {
                        value: 7,
                        kind,
                        description,
                    },
                )
                .await
                .unwrap();
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
    assert_eq!(lines[0]["descricao"], "toma");
    assert_eq!(lines[1]["tipo"], "d");
    assert_eq!(lines[2]["descricao"], "aspas\"é");
    assert_eq!(lines[2]["saldo"], 7);
    assert_eq!(lines[2]["seq"], 3);
    let (ok, report) = espora_verify(&data);
    assert!(ok, "{report}");
    assert_eq!(
        report.lines().filter(|l| l.contains(": ok:")).count(),
        5,
        "{report}"
    );
    assert!(
        report.contains("account 4 limit 10000000 records 3"),
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
        .args(["--ring-records", "128"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let size = std::fs::metadata(small.join(account_file_name(1)))
        .unwrap()
        .len();
    assert_eq!(size, (HEADER_SIZE + 128 * RECORD_SIZE) as u64);
    let usage = Command::new(tool).arg("frobnicate").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

/// Story: a request future can be dropped while it waits for an fdatasync (a client that
/// disconnects, a timeout around the handler). The first version kept the file marked "sync in
/// flight" forever after that, and every later append on the worker hung. Both sync paths must
/// recover: the next append must complete.
#[test]
fn an_append_dropped_while_its_sync_is_in_flight_does_not_wedge_the_worker() {
    let dir = common::temp_dir();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    for epoll in [false, true] {
        common::block_on_with(epoll, async {
            let worker = db.worker(common::backend()).unwrap();
            for round in 0..50u64 {
                let description = format!("r{round}");
                let tx = Transaction {
                    value: 1,
                    kind: Kind::Credit,
                    description: &description,
                };
                // Poll the append a few times, then drop it, possibly mid-sync.
                let mut append = Box::pin(worker.append(1, &tx));
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
                let tx = Transaction {
                    value: 1,
                    kind: Kind::Credit,
                    description: "after",
                };
                let after = worker.append(1, &tx);
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
