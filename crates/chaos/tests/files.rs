//! Torn and corrupt account files, unusable data directories and storage faults, against the
//! real `rinha-api` and `espora` binaries.
//!
//! - A torn newest record (an unacknowledged write cut short) is recovered silently.
//! - Damage inside acknowledged history makes `rinha-api` refuse to start with one line naming
//!   the file and the record, without a panic and without touching the file; `espora verify`
//!   fails and explains it.
//! - A wrong format version, a read-only, unusable or full data directory: one clear error line
//!   and a non-zero exit. Tests that need mount(2) (a read-only or a tiny tmpfs) skip with a
//!   visible message where it is not permitted.
//! - A failed fdatasync (through the storage seam, `RINHA_FAULT_SYNC_FAILS_AFTER`) stops every
//!   acknowledgement (503) and is reported; after a restart nothing acknowledged is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use espora::layout::{header_offset, Description, Record, HEADER_SIZE, RECORD_SIZE};
use espora::Kind;
use rinha_testkit::bins::bins;
use rinha_testkit::http;
use rinha_testkit::process::{self, start_api, Start};
use rinha_testkit::{free_tcp, is_root, skip, temp_dir, Addr, TempDir};

const WAIT: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_secs(5);
/// The credits the seeded account 1 holds, oldest first: balances 100, 300, 600, 1000, 1500.
const SEEDED: [i64; 5] = [100, 200, 300, 400, 500];

/// A data directory whose account 1 holds the `SEEDED` credits, written by a real instance
/// that then stopped cleanly.
fn seeded(dir: &TempDir) -> PathBuf {
    let data = dir.path().join("data");
    let endpoint = Addr::Unix(dir.path().join("seed.sock"));
    let Start::Serving(mut api) = start_api("seed", &data, &endpoint, dir.path(), &[], WAIT) else {
        panic!("the seeding instance did not start");
    };
    for (index, value) in SEEDED.into_iter().enumerate() {
        let response = http::post(&endpoint, 1, value, 'c', &format!("seed{index}"), TIMEOUT)
            .expect("a seeding transaction");
        assert_eq!(response.status, 200);
    }
    assert!(api.terminate(WAIT).success());
    data
}

fn account_file(data: &Path, account: u32) -> PathBuf {
    data.join(format!("account-{account}.espora"))
}

/// Overwrites bytes of a file at `offset`.
fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open an account file");
    file.write_all_at(bytes, offset).expect("patch the file");
    file.sync_all().expect("sync the patch");
}

fn slot_offset(seq: u64) -> u64 {
    // The test files keep the default capacity and never wrap.
    (HEADER_SIZE + (seq as usize - 1) * RECORD_SIZE) as u64
}

fn record(seq: u64, value: i64, balance: i64, description: &str) -> [u8; RECORD_SIZE] {
    Record {
        seq,
        timestamp_us: espora::time::now_us(),
        value,
        balance,
        kind: Kind::Credit,
        description: Description::new(description).expect("a valid description"),
        anchor: seq - 1,
    }
    .encode()
}

fn espora(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let mut command = Command::new(&bins().espora);
    command.args(args);
    let (code, stderr, stdout) = process::run(command, WAIT);
    (code, format!("{stdout}{stderr}"))
}

/// Starting `rinha-api` on `data` must fail: a non-zero exit and exactly one stderr line that
/// mentions each of `mentions`, without a panic.
#[track_caller]
fn check_refused(data: &Path, log_dir: &Path, mentions: &[&str]) {
    let endpoint = free_tcp();
    match start_api("refused", data, &endpoint, log_dir, &[], WAIT) {
        Start::Serving(mut api) => {
            api.kill();
            panic!("rinha-api served {}", data.display());
        }
        Start::Exited(code, log) => {
            assert!(matches!(code, Some(code) if code != 0), "{code:?}: {log}");
            assert_eq!(log.lines().count(), 1, "one error line: {log}");
            assert!(!log.contains("panicked"), "{log}");
            for mention in mentions {
                assert!(log.contains(mention), "{mention:?} missing from: {log}");
            }
            eprintln!("refused as expected: {}", log.trim_end());
        }
    }
}

#[test]
fn torn_newest_record_is_recovered_silently() {
    let dir = temp_dir("torn");
    let data = seeded(&dir);
    let path = account_file(&data, 1);
    // A writer killed in the middle of copying record 6: its first half is there, the rest is
    // still zero, so its checksum fails. It was never acknowledged.
    let torn = record(6, 7, 1507, "torn");
    patch(&path, slot_offset(6), &torn[..RECORD_SIZE / 2]);
    let (code, report) = espora(&["verify".as_ref(), path.as_os_str()]);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("torn"), "{report}");

    let endpoint = Addr::Unix(dir.path().join("api.sock"));
    let Start::Serving(mut api) = start_api("api", &data, &endpoint, dir.path(), &[], WAIT) else {
        panic!("rinha-api refused a file whose only damage is a torn unacknowledged write");
    };
    let statement = http::statement(&endpoint, 1, TIMEOUT).unwrap().json();
    assert_eq!(statement["saldo"]["total"], 1500, "{statement}");
    assert_eq!(statement["ultimas_transacoes"][0]["descricao"], "seed4");
    let response = http::post(&endpoint, 1, 1, 'c', "after", TIMEOUT).unwrap();
    assert_eq!(
        (response.status, response.json()["saldo"].as_i64()),
        (200, Some(1501))
    );
    assert!(api.terminate(WAIT).success());
    assert!(!api.log().contains("panicked"));

    let (code, dump) = espora(&["dump".as_ref(), path.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 0, "{dump}");
    let last: serde_json::Value = serde_json::from_str(dump.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["seq"].as_u64(), last["description"].as_str()),
        (Some(6), Some("after"))
    );
    let (code, report) = espora(&["verify".as_ref(), data.as_os_str()]);
    assert_eq!(code, 0, "{report}");
}

#[test]
fn damaged_acknowledged_history_refuses_to_start() {
    // A flipped bit in the middle of history, in the newest (durable) record, and a record
    // rewritten with a valid checksum but a balance that does not chain.
    check_damage(2, |path| patch(path, slot_offset(2) + 17, &[0x40]));
    check_damage(5, |path| patch(path, slot_offset(5) + 40, b"X"));
    check_damage(3, |path| {
        patch(path, slot_offset(3), &record(3, 300, 999, "seed2"))
    });
}

#[track_caller]
fn check_damage(seq: u64, damage: impl Fn(&Path)) {
    let dir = temp_dir("damage");
    let data = seeded(&dir);
    let path = account_file(&data, 1);
    damage(&path);
    let before = std::fs::read(&path).unwrap();
    check_refused(
        &data,
        dir.path(),
        &["account-1.espora", &format!("seq {seq}")],
    );
    // No silent repair: the damaged file is exactly as it was.
    assert!(
        std::fs::read(&path).unwrap() == before,
        "rinha-api changed the file"
    );
    let (code, report) = espora(&["verify".as_ref(), data.as_os_str()]);
    assert_ne!(code, 0, "{report}");
    assert!(
        report.contains("account-1.espora: FAILED") && report.contains(&format!("seq {seq}")),
        "{report}"
    );
    eprintln!(
        "espora verify explains: {}",
        report.lines().next().unwrap_or("")
    );
}

#[test]
fn wrong_format_version_refuses_to_start() {
    let dir = temp_dir("version");
    let data = seeded(&dir);
    let path = account_file(&data, 4);
    // A file of a later format: version 3 with a matching header checksum.
    let mut header = std::fs::read(&path).unwrap()[..header_offset::IMMUTABLE_END].to_vec();
    header[header_offset::VERSION..header_offset::VERSION + 4].copy_from_slice(&3u32.to_le_bytes());
    let checksum = crc32c::crc32c(&header[..header_offset::CHECKSUM]);
    header[header_offset::CHECKSUM..header_offset::CHECKSUM + 4]
        .copy_from_slice(&checksum.to_le_bytes());
    patch(&path, 0, &header);
    check_refused(&data, dir.path(), &["account-4.espora", "version 3"]);
    let (code, report) = espora(&["verify".as_ref(), data.as_os_str()]);
    assert_ne!(code, 0, "{report}");
    assert!(report.contains("version 3"), "{report}");
}

#[test]
fn unusable_data_directories_fail_with_one_line() {
    let dir = temp_dir("unusable");
    // The data directory is a regular file.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    check_refused(&file, dir.path(), &["plain-file"]);
    // An account file cut short.
    let short = dir.path().join("short");
    std::fs::create_dir(&short).unwrap();
    std::fs::write(account_file(&short, 3), [0u8; 100]).unwrap();
    check_refused(&short, dir.path(), &["account-3.espora"]);
    // An account file of the right size that is not an espora file.
    let alien = dir.path().join("alien");
    std::fs::create_dir(&alien).unwrap();
    std::fs::write(
        account_file(&alien, 2),
        vec![0x5a; HEADER_SIZE + 65_536 * RECORD_SIZE],
    )
    .unwrap();
    check_refused(
        &alien,
        dir.path(),
        &["account-2.espora", "not an espora file"],
    );
    // An account "file" that is a directory.
    let odd = dir.path().join("odd");
    std::fs::create_dir_all(account_file(&odd, 5)).unwrap();
    check_refused(&odd, dir.path(), &["account-5.espora"]);
    // A missing directory (and its parents) is created, as `espora init` does.
    let missing = dir.path().join("not/yet/there");
    let endpoint = Addr::Unix(dir.path().join("m.sock"));
    let Start::Serving(mut api) = start_api("missing", &missing, &endpoint, dir.path(), &[], WAIT)
    else {
        panic!("rinha-api did not create a missing data directory");
    };
    assert!(api.terminate(WAIT).success());
    assert!(account_file(&missing, 1).is_file());
}

/// A tmpfs mounted for one test on `point`, in `dir` (which also holds the logs), unmounted
/// when dropped.
struct Mount {
    point: PathBuf,
    dir: TempDir,
}

impl Mount {
    /// Mounts a tmpfs of `size` (e.g. "2m") on a new directory for `test`; `None` where this
    /// machine does not let it (not root, or mount(2) not permitted here): `test` is skipped.
    fn tmpfs(test: &str, size: &str) -> Option<Mount> {
        if !is_root() {
            skip(test, "not running as root");
            return None;
        }
        let dir = temp_dir("tmpfs");
        let point = dir.path().join("mnt");
        std::fs::create_dir_all(&point).unwrap();
        let mut mount = Command::new("mount");
        let options = format!("size={size},rw");
        mount
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(&point);
        match process::run(mount, WAIT) {
            (0, _, _) => Some(Mount { point, dir }),
            (code, stderr, _) => {
                skip(test, &format!("mount exited {code}: {}", stderr.trim()));
                None
            }
        }
    }

    fn remount(&self, options: &str) {
        let mut mount = Command::new("mount");
        mount
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.point);
        let (code, stderr, _) = process::run(mount, WAIT);
        assert_eq!(code, 0, "remount {options}: {stderr}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

#[test]
fn read_only_data_directory_fails_with_one_line() {
    let Some(mount) = Mount::tmpfs("read_only_data_directory_fails_with_one_line", "64m") else {
        return;
    };
    // Empty and read-only: the files cannot be created.
    let empty = mount.point.join("empty");
    std::fs::create_dir(&empty).unwrap();
    // Initialised, then read-only: the files cannot be opened for writing.
    let ready = mount.point.join("ready");
    let (code, report) = espora(&[
        "init".as_ref(),
        ready.as_os_str(),
        "--account".as_ref(),
        "1:100000".as_ref(),
    ]);
    assert_eq!(code, 0, "{report}");
    mount.remount("ro");
    let log_dir = mount.dir.path();
    check_refused(&empty, log_dir, &["Read-only file system"]);
    check_refused(
        &ready,
        log_dir,
        &["account-1.espora", "Read-only file system"],
    );
}

#[test]
fn full_disk_at_creation_fails_with_one_line() {
    // Five account files take 40 MiB; 2 MiB holds none.
    let Some(mount) = Mount::tmpfs("full_disk_at_creation_fails_with_one_line", "2m") else {
        return;
    };
    let data = mount.point.join("data");
    check_refused(&data, mount.dir.path(), &["No space left on device"]);
    // Nothing half-made is left under an account file name.
    for account in 1..=5 {
        assert!(!account_file(&data, account).exists(), "account {account}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .map(|entries| {
            entries
                .map_while(Result::ok)
                .map(|entry| entry.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn failed_sync_stops_acknowledgements_and_loses_nothing() {
    let dir = temp_dir("sync");
    let data = dir.path().join("data");
    let endpoint = Addr::Unix(dir.path().join("api.sock"));
    let faulty = [("RINHA_FAULT_SYNC_FAILS_AFTER", "3")];
    let Start::Serving(mut api) = start_api("faulty", &data, &endpoint, dir.path(), &faulty, WAIT)
    else {
        panic!("the faulty instance did not start");
    };
    let mut acknowledged = Vec::new();
    let mut statuses = Vec::new();
    for index in 0..12 {
        let description = format!("s{index}");
        let response = http::post(&endpoint, 2, 10, 'c', &description, TIMEOUT).unwrap();
        statuses.push(response.status);
        if response.status == 200 {
            acknowledged.push(description);
        }
    }
    // At most three syncs succeeded; after the first failure nothing is acknowledged again.
    let first_failure = statuses.iter().position(|&status| status != 200).unwrap();
    assert!(first_failure <= 3, "{statuses:?}");
    assert!(
        statuses[first_failure..]
            .iter()
            .all(|&status| status == 503),
        "{statuses:?}"
    );
    let statement = http::statement(&endpoint, 2, TIMEOUT).unwrap();
    assert_eq!(
        statement.status, 503,
        "a statement cannot be proved durable"
    );
    assert!(
        api.is_running(),
        "the instance must keep running and answering"
    );
    let log = api.log();
    assert!(log.contains("fdatasync"), "the failure is reported: {log}");
    api.kill();

    // Restarted without the fault: every acknowledged transaction is there.
    let Start::Serving(mut api) = start_api("healed", &data, &endpoint, dir.path(), &[], WAIT)
    else {
        panic!("the instance did not restart");
    };
    let statement = http::statement(&endpoint, 2, TIMEOUT).unwrap().json();
    assert!(statement["saldo"]["total"].as_i64().unwrap() >= 10 * acknowledged.len() as i64);
    assert!(api.terminate(WAIT).success());
    let path = account_file(&data, 2);
    let (code, dump) = espora(&["dump".as_ref(), path.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 0, "{dump}");
    for description in &acknowledged {
        let quoted = format!("\"description\":\"{description}\"");
        assert_eq!(dump.matches(&quoted).count(), 1, "{description}: {dump}");
    }
    let (code, report) = espora(&["verify".as_ref(), data.as_os_str()]);
    assert_eq!(code, 0, "{report}");
    eprintln!(
        "sync fault: statuses {statuses:?}; {} acknowledged, all found after restart",
        acknowledged.len()
    );
}
