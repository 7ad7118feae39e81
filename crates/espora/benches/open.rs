//! The time to open a full data directory: `cargo bench -p espora --bench open`.
//!
//! Writes five account files whose rings are full (65,536 records each by default, `RECORDS`
//! to change it) into a temp dir on the file system of `TMPDIR`, then opens the directory
//! several times and prints each time and the median: warm (the files in the page cache, as
//! when an instance restarts beside a running one) and cold (their pages dropped first with
//! `POSIX_FADV_DONTNEED`, as after a reboot). The files are made with the format's encoders
//! only, so the same bench runs against an earlier build for a side-by-side figure.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use espora::layout::{Description, Header, Kind, Record, FORMAT_VERSION, RECORD_SIZE};
use espora::{Db, Options};

const ACCOUNTS: u32 = 5;
const OPENS: usize = 7;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let records: u64 = std::env::var("RECORDS").map_or(65_536, |n| n.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        accounts: (1..=ACCOUNTS).map(|id| (id, 1_000_000)).collect(),
        ring_records: records,
        ..Options::default()
    };
    for id in 1..=ACCOUNTS {
        write_full(dir.path(), id, records);
    }
    // The first open binds the shared-state files; the ones measured find them bound.
    drop(Db::open(dir.path(), options.clone()).unwrap());
    for cold in [false, true] {
        let mut times: Vec<Duration> = (0..OPENS)
            .map(|_| {
                if cold {
                    drop_cache(dir.path());
                }
                let started = Instant::now();
                let db = Db::open(dir.path(), options.clone()).unwrap();
                let took = started.elapsed();
                drop(db);
                took
            })
            .collect();
        times.sort();
        println!(
            "open of {ACCOUNTS} accounts x {records} records ({}): median {:.1} ms, min {:.1}, \
             max {:.1} ({OPENS} opens)",
            if cold { "cold" } else { "warm" },
            ms(times[OPENS / 2]),
            ms(times[0]),
            ms(times[OPENS - 1]),
        );
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// An account file whose ring is full: seq 1..=records, credits of 1 cent, each anchored on the
/// record before it.
fn write_full(dir: &std::path::Path, id: u32, records: u64) {
    let header = Header {
        version: FORMAT_VERSION,
        account_id: id,
        limit: 1_000_000,
        capacity: records,
        created_us: 1_700_000_000_000_000,
    };
    let file = File::create(dir.join(espora::file::account_file_name(id))).unwrap();
    file.write_all_at(&header.encode(), 0).unwrap();
    let mut ring = Vec::with_capacity(records as usize * RECORD_SIZE);
    for seq in 1..=records {
        let record = Record {
            seq,
            timestamp_us: 1_700_000_000_000_000 + seq as i64,
            value: 1,
            balance: seq as i64,
            kind: Kind::Credit,
            description: Description::new("bench").unwrap(),
            anchor: seq - 1,
        };
        ring.extend_from_slice(&record.encode());
    }
    file.write_all_at(&ring, header.slot_offset(1) as u64)
        .unwrap();
    file.sync_all().unwrap();
}

fn drop_cache(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = File::open(entry.unwrap().path()).unwrap();
        file.sync_all().unwrap();
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    }
}
