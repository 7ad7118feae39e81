//! `gatling/run.sh` without Gatling, which cannot be downloaded here: a fake bundle whose
//! `bin/gatling.sh` records how it was called, does to its home what Gatling's compiler does, and
//! leaves the `simulation.log` a case gives it; a fake `java`; a small HTTP server for the
//! warm-up. The cases check:
//!
//! - the exit status of every outcome in the table of `gatling/README.md` (a run that passed,
//!   KO requests, requests never sent, inconsistencies as the official scoring counts them,
//!   Gatling failing, bad usage, missing tools, an API that never answers), each row able to fail
//!   on its own;
//! - that the simulation is compiled in a home of the run's own, never in the install;
//! - `--download` against a local `file://` repository laid out like Maven Central: a good
//!   checksum unpacks the bundle, a wrong or missing one, or a broken archive, unpacks nothing.
//!
//! The simulation logs are written with rinha-scenario's request names and check names, which
//! `tests/gatling_twin.rs` holds equal to the simulation's.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rinha_scenario::{call, load, scenario};
use rinha_testkit::process::run;
use rinha_testkit::source::repo_root;
use rinha_testkit::{temp_dir, TempDir};

/// run.sh's exit statuses, as gatling/README.md documents them.
const PASSED: i32 = 0;
const USAGE: i32 = 2;
const NOT_READY: i32 = 3;
const MISSING: i32 = 4;
const GATLING_FAILED: i32 = 5;
const DOWNLOAD_FAILED: i32 = 6;
const KO: i32 = 7;
const INCONSISTENT: i32 = 8;

/// The tools run.sh needs besides what the fakes stand in for.
const TOOLS: [&str; 4] = ["bash", "curl", "sha1sum", "unzip"];

/// Bound on one run of run.sh.
const RUN_WAIT: Duration = Duration::from_secs(60);

/// Every variable run.sh reads, removed from its environment unless a case sets it.
const RUN_SH_VARIABLES: [&str; 8] = [
    "GATLING_HOME",
    "JAVA_HOME",
    "RINHA_TARGET",
    "RINHA_RAMP_SECONDS",
    "RINHA_HOLD_SECONDS",
    "RINHA_WAIT_SECONDS",
    "RINHA_RESULTS_DIR",
    "RINHA_MAVEN_URL",
];

/// The bundle `--download` fetches, and its path in a Maven repository.
const BUNDLE: &str = "gatling-charts-highcharts-bundle-3.10.3";
const BUNDLE_PATH: &str = "io/gatling/highcharts/gatling-charts-highcharts-bundle/3.10.3";

/// Stands in for the bundle's `bin/gatling.sh`: records its environment's GATLING_HOME and its
/// arguments, writes into GATLING_HOME/target and the `-bf` directory as Gatling's compiler does
/// (the classes, and the incremental-compilation cache no option moves), leaves FAKE_LOG as the
/// run's simulation.log under `-rf`, and exits FAKE_STATUS.
const FAKE_GATLING: &str = r#"#!/usr/bin/env bash
set -eu
{ echo "GATLING_HOME=$GATLING_HOME"; printf 'arg=%s\n' "$@"; } >"$FAKE_RECORD"
results="" binaries=""
while [ $# -gt 0 ]; do
    case $1 in
        -rf) results=$2; shift 2 ;;
        -bf) binaries=$2; shift 2 ;;
        *) shift ;;
    esac
done
for part in lib conf user-files/lib user-files/resources; do
    [ -d "$GATLING_HOME/$part" ] || { echo "fake gatling: no $GATLING_HOME/$part" >&2; exit 1; }
done
mkdir -p "$GATLING_HOME/target" "$binaries"
: >"$GATLING_HOME/target/inc_compile.zip"
: >"$binaries/CrebitosSimulation.class"
if [ -n "${FAKE_LOG:-}" ]; then
    mkdir -p "$results/crebitossimulation-20240101000000000"
    cp "$FAKE_LOG" "$results/crebitossimulation-20240101000000000/simulation.log"
fi
exit "${FAKE_STATUS:-0}"
"#;

#[rustfmt::skip]
#[test]
fn every_outcome_of_a_run_has_its_exit_status() {
    let Some(fake) = Fake::new("every_outcome_of_a_run_has_its_exit_status") else { return };
    // KO records in the words of Gatling 3.10: `extractor(path).find.validator, message`.
    let debit_ko = request(load::DEBITS, "status.find.in(200,422), but actually found 500");
    let below = "saldo -100001 is below -limite (-100000)";
    let credit_below = request(load::CREDITS, &format!("jmesPath(saldo).find.{}, {below}", call::TRANSACTION_WITHIN_LIMIT));
    let statement_below = request(load::STATEMENTS, &format!("jmesPath(saldo.total).find.{}, {below}", call::STATEMENT_WITHIN_LIMIT));
    let total_wrong = request(scenario::VALIDATIONS, &format!("{}(-25), but actually found -24", call::EXACT_TOTAL));
    let unbuilt = format!("ERROR\t{}: Failed to build request: No attribute named 'saldo' is defined \t1700000000005\n", scenario::VALIDATIONS);
    let with = |records: &[&str]| Some(clean_log() + &records.concat());

    // what; simulation.log (None: Gatling leaves none), Gatling's status; run.sh's, what it prints
    check_run(&fake, "every request OK",                     with(&[]),                                  0, PASSED,         "passed: 5 requests, all OK");
    check_run(&fake, "a status KO",                          with(&[&debit_ko]),                         0, KO,             "FAILED: 1 KO of 6 requests, 0 not sent");
    check_run(&fake, "a request never sent",                 with(&[&unbuilt]),                          0, KO,             "FAILED: 0 KO of 5 requests, 1 not sent");
    check_run(&fake, "a transaction below its limit",        with(&[&credit_below]),                     0, INCONSISTENT,   "them: 1 (1 ConsistenciaSaldoLimite, 0 jmesPath");
    check_run(&fake, "a statement below its limit and a KO", with(&[&statement_below, &debit_ko]),       0, INCONSISTENT,   "FAILED: 1 inconsistencies, 2 KO of 7 requests");
    check_run(&fake, "a wrong exact total",                  with(&[&total_wrong]),                      0, INCONSISTENT,   "(0 ConsistenciaSaldoLimite, 1 jmesPath(saldo.total).find.is)");
    check_run(&fake, "a KO, and Gatling exited 1",           with(&[&debit_ko]),                         1, KO,             "FAILED: 1 KO of 6 requests");
    check_run(&fake, "Gatling failed before running",        None,                                       1, GATLING_FAILED, "left no simulation.log (Gatling exit status 1)");
    // Gatling's own status for failed assertions is 2, run.sh's for bad usage.
    check_run(&fake, "Gatling exited 2 after a clean run",   with(&[]),                                  2, GATLING_FAILED, "Gatling exited with status 2");
    check_run(&fake, "a log without requests",               Some(RUN_RECORD.to_string()),               0, GATLING_FAILED, "holds no request");
}

/// Runs run.sh once, Gatling leaving `log` (`None`: no simulation.log) and exiting
/// `gatling_status`; run.sh must exit `expected` and print `says`, and nothing may be written into
/// the install.
fn check_run(
    fake: &Fake,
    what: &str,
    log: Option<String>,
    gatling_status: i32,
    expected: i32,
    says: &str,
) {
    let results = fake.dir.path().join("results").join(what.replace(' ', "-"));
    let log_file = fake.dir.path().join("simulation.log");
    let mut command = fake.command(&results);
    command.env("FAKE_STATUS", gatling_status.to_string());
    if let Some(log) = log {
        fs::write(&log_file, log).expect("write the simulation log");
        command.env("FAKE_LOG", &log_file);
    }
    let (code, stderr, stdout) = run(command, RUN_WAIT);
    let output = format!("{stdout}{stderr}");
    assert_eq!(code, expected, "{what}: exit status\n{output}");
    assert!(output.contains(says), "{what}: no {says:?} in\n{output}");
    assert!(
        !fake.install.join("target").exists(),
        "{what}: Gatling wrote into its install"
    );
}

#[test]
fn the_simulation_is_compiled_outside_the_install() {
    let Some(fake) = Fake::new("the_simulation_is_compiled_outside_the_install") else {
        return;
    };
    let results = fake.dir.path().join("results");
    let log_file = fake.dir.path().join("simulation.log");
    fs::write(&log_file, clean_log()).expect("write the simulation log");
    let mut command = fake.command(&results);
    command.env("FAKE_LOG", &log_file);
    let (code, stderr, stdout) = run(command, RUN_WAIT);
    assert_eq!(code, PASSED, "{stdout}{stderr}");

    let record = fs::read_to_string(&fake.record).expect("the fake Gatling ran");
    let value = |prefix: &str| {
        record
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{record}"))
            .to_string()
    };
    let arguments: Vec<&str> = record
        .lines()
        .filter_map(|line| line.strip_prefix("arg="))
        .collect();
    let after = |option: &str| {
        let at = arguments.iter().position(|argument| *argument == option);
        at.and_then(|at| arguments.get(at + 1))
            .unwrap_or_else(|| panic!("no {option} VALUE in {arguments:?}"))
            .to_string()
    };
    let run_dir = PathBuf::from(after("-rf"));
    assert_eq!(
        run_dir.parent(),
        Some(results.as_path()),
        "one directory per run"
    );
    let home = PathBuf::from(value("GATLING_HOME="));
    assert!(
        home.starts_with(&run_dir),
        "Gatling's home {home:?} is not the run's own"
    );
    assert!(
        PathBuf::from(after("-bf")).starts_with(&run_dir),
        "classes outside the run: {arguments:?}"
    );
    assert_eq!(
        PathBuf::from(after("-sf")),
        repo_root().join("gatling/simulations")
    );
    assert_eq!(after("-s"), "crebitos.CrebitosSimulation");
    assert!(
        !fake.install.join("target").exists(),
        "Gatling wrote into its install"
    );
    // What the compiler wrote goes when the run ends; the report stays.
    let left: Vec<String> = fs::read_dir(&run_dir)
        .expect("the run directory stays")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        left,
        ["crebitossimulation-20240101000000000"],
        "left in the run directory"
    );
}

#[rustfmt::skip]
#[test]
fn bad_usage_and_missing_tools_stop_before_gatling() {
    let Some(fake) = Fake::new("bad_usage_and_missing_tools_stop_before_gatling") else { return };
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_target = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let no_java = fake.dir.path().join("no-java");
    let a_file = fake.dir.path().join("a-file");
    fs::write(&a_file, "").expect("write a file");
    let under_a_file = a_file.join("results");
    let never = [("RINHA_TARGET", Path::new(&closed_target)), ("RINHA_WAIT_SECONDS", Path::new("0"))];
    let set = |name, value: &str| [(name, Path::new(value).to_path_buf())];

    // what; arguments, environment over the fake's; run.sh's status, what it prints
    check_usage(&fake, "an unknown argument",            &["--frobnicate"],         &[],                                                    USAGE,     "unknown argument '--frobnicate'");
    check_usage(&fake, "--download without DIR",         &["--download"],           &[],                                                    USAGE,     "--download needs a directory");
    check_usage(&fake, "--download and an option",       &["--download", "--help"], &[],                                                    USAGE,     "--download needs a directory");
    check_usage(&fake, "a ramp with a unit",             &[],                       &set("RINHA_RAMP_SECONDS", "20s"),                      USAGE,     "RINHA_RAMP_SECONDS must be a whole number");
    check_usage(&fake, "a hold of 0",                    &[],                       &set("RINHA_HOLD_SECONDS", "0"),                        USAGE,     "RINHA_HOLD_SECONDS must be a whole number");
    check_usage(&fake, "a target with a path",           &[],                       &set("RINHA_TARGET", "http://localhost:9999/clientes"), USAGE,     "RINHA_TARGET must be http://HOST:PORT");
    check_usage(&fake, "results that cannot be created", &[],                       &[("RINHA_RESULTS_DIR", under_a_file)],                 USAGE,     "RINHA_RESULTS_DIR: cannot create");
    check_usage(&fake, "no GATLING_HOME",                &[],                       &set("GATLING_HOME", ""),                               MISSING,   "fetch one with: ");
    check_usage(&fake, "a GATLING_HOME without Gatling", &[],                       &[("GATLING_HOME", fake.dir.path().to_path_buf())],     MISSING,   "bin/gatling.sh not found");
    check_usage(&fake, "a JAVA_HOME without java",       &[],                       &[("JAVA_HOME", no_java)],                              MISSING,   "bin/java is missing");
    check_usage(&fake, "an API that never answers",      &[],                       &never.map(|(name, value)| (name, value.to_path_buf())), NOT_READY, "did not answer twice");
    check_usage(&fake, "--help",                         &["--help"],               &[],                                                    PASSED,    "8  inconsistencies were counted");
}

/// Runs run.sh once with `arguments` and `environment` over the fake's; it must exit `expected`
/// and print `says`, without starting Gatling.
fn check_usage(
    fake: &Fake,
    what: &str,
    arguments: &[&str],
    environment: &[(&str, PathBuf)],
    expected: i32,
    says: &str,
) {
    let mut command = fake.command(&fake.dir.path().join("results"));
    command.args(arguments);
    for (name, value) in environment {
        command.env(name, value);
    }
    let (code, stderr, stdout) = run(command, RUN_WAIT);
    let output = format!("{stdout}{stderr}");
    assert_eq!(code, expected, "{what}: exit status\n{output}");
    assert!(output.contains(says), "{what}: no {says:?} in\n{output}");
    assert!(!fake.record.exists(), "{what}: Gatling was started");
}

#[rustfmt::skip]
#[test]
fn download_unpacks_only_a_bundle_that_matches_its_published_checksum() {
    if missing_tools("download_unpacks_only_a_bundle_that_matches_its_published_checksum") {
        return;
    }
    let dir = temp_dir("gatling-download");
    let script = format!("#!/bin/sh\necho fake Gatling {BUNDLE}\n");
    let bundle = stored_zip(&[(&format!("{BUNDLE}/bin/gatling.sh"), script.as_bytes()), (&format!("{BUNDLE}/lib/gatling.jar"), b"jar")]);
    let elsewhere = stored_zip(&[("gatling/bin/gatling.sh", script.as_bytes())]);
    let digest = sha1_hex(dir.path(), &bundle);
    let named = format!("{}  {BUNDLE}-bundle.zip\n", digest.to_uppercase());
    let elsewhere_digest = sha1_hex(dir.path(), &elsewhere);
    let zeros = "0".repeat(40);

    // what; the archive and its .sha1 in the repository (None: absent); run.sh's status, what it prints
    check_download(&dir, "the published checksum",                   Some(&bundle[..]),    Some(&digest[..]),           PASSED,          "(SHA-1 ");
    check_download(&dir, "the checksum and a file name, in capitals", Some(&bundle[..]),    Some(&named[..]),            PASSED,          "(SHA-1 ");
    check_download(&dir, "a wrong checksum",                          Some(&bundle[..]),    Some(&zeros[..]),            DOWNLOAD_FAILED, "checksum mismatch");
    check_download(&dir, "no checksum published",                     Some(&bundle[..]),    None,                        DOWNLOAD_FAILED, "-bundle.zip.sha1");
    check_download(&dir, "no bundle",                                 None,                 None,                        DOWNLOAD_FAILED, "could not fetch");
    check_download(&dir, "an archive of another layout",              Some(&elsewhere[..]), Some(&elsewhere_digest[..]), DOWNLOAD_FAILED, "the archive holds no");
}

/// Runs `run.sh --download` once, against a repository holding `archive` and `checksum` (its
/// .sha1) when given: it must exit `expected` and print `says`; only a success may unpack the
/// bundle, executable, and a second call then keeps it.
fn check_download(
    dir: &TempDir,
    what: &str,
    archive: Option<&[u8]>,
    checksum: Option<&str>,
    expected: i32,
    says: &str,
) {
    let case = what.replace([' ', ','], "-");
    let repository = dir.path().join(format!("repository-{case}"));
    let folder = repository.join(BUNDLE_PATH);
    fs::create_dir_all(&folder).expect("create the repository");
    let zip = folder.join(format!("{BUNDLE}-bundle.zip"));
    if let Some(archive) = archive {
        fs::write(&zip, archive).expect("write the archive");
    }
    if let Some(checksum) = checksum {
        fs::write(zip.with_extension("zip.sha1"), checksum).expect("write the checksum");
    }
    let into = dir.path().join(format!("into-{case}"));
    let (code, output) = download(&repository, &into);
    assert_eq!(code, expected, "{what}: exit status\n{output}");
    assert!(output.contains(says), "{what}: no {says:?} in\n{output}");
    let home = into.join(BUNDLE);
    if expected == PASSED {
        let mode = fs::metadata(home.join("bin/gatling.sh"))
            .expect("the bundle was unpacked")
            .permissions()
            .mode();
        assert_ne!(mode & 0o111, 0, "{what}: bin/gatling.sh is not executable");
        let told = format!("GATLING_HOME={}", home.display());
        assert!(output.contains(&told), "{what}: no {told} in\n{output}");
        // A second call finds the bundle and fetches nothing.
        fs::remove_file(&zip).expect("remove the archive");
        let (code, output) = download(&repository, &into);
        assert_eq!(code, PASSED, "{what}, again:\n{output}");
        assert!(output.contains("already there"), "{what}, again:\n{output}");
    } else {
        assert!(!home.exists(), "{what}: unpacked anyway");
    }
    let staging = fs::read_dir(&into)
        .expect("DIR was created")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(".download"))
        .count();
    assert_eq!(
        staging, 0,
        "{what}: the download's staging directory stayed"
    );
}

/// A fake Gatling install, a fake JDK and a warm-up server, in a temporary directory.
struct Fake {
    dir: TempDir,
    install: PathBuf,
    java_home: PathBuf,
    record: PathBuf,
    target: String,
}

impl Fake {
    /// `None` when a tool run.sh needs is missing: `test` is then skipped.
    fn new(test: &str) -> Option<Fake> {
        if missing_tools(test) {
            return None;
        }
        let dir = temp_dir("gatling-run");
        let install = dir.path().join(BUNDLE);
        for part in [
            "bin",
            "lib",
            "conf",
            "user-files/lib",
            "user-files/resources",
        ] {
            fs::create_dir_all(install.join(part)).expect("create the fake install");
        }
        executable(&install.join("bin/gatling.sh"), FAKE_GATLING);
        let java_home = dir.path().join("jdk");
        fs::create_dir_all(java_home.join("bin")).expect("create the fake JDK");
        executable(&java_home.join("bin/java"), "#!/bin/sh\nexit 0\n");
        // Read only, as under /opt: nothing of a run may need to write there (as root the
        // permission does not stop a write, so the cases also look for what was written).
        fs::set_permissions(&install, fs::Permissions::from_mode(0o555)).expect("chmod");
        let record = dir.path().join("gatling-call");
        let target = serve_statements();
        Some(Fake {
            dir,
            install,
            java_home,
            record,
            target,
        })
    }

    /// run.sh with the fakes, the warm-up server and results under `results`.
    fn command(&self, results: &Path) -> Command {
        let _ = fs::remove_file(&self.record);
        let mut command = run_sh();
        command
            .env("GATLING_HOME", &self.install)
            .env("JAVA_HOME", &self.java_home)
            .env("RINHA_TARGET", &self.target)
            .env("RINHA_RAMP_SECONDS", "1")
            .env("RINHA_HOLD_SECONDS", "1")
            .env("RINHA_WAIT_SECONDS", "5")
            .env("RINHA_RESULTS_DIR", results)
            .env("FAKE_RECORD", &self.record);
        command
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        // Writable again, so that the temporary directory can be removed by a user other than root.
        let _ = fs::set_permissions(&self.install, fs::Permissions::from_mode(0o755));
    }
}

/// `bash gatling/run.sh`, with none of the variables it reads inherited.
fn run_sh() -> Command {
    let mut command = Command::new("bash");
    command.arg(repo_root().join("gatling/run.sh"));
    for name in RUN_SH_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// `run.sh --download into` against the Maven repository at `repository`: the status, and
/// stdout and stderr together.
fn download(repository: &Path, into: &Path) -> (i32, String) {
    let mut command = run_sh();
    command.arg("--download").arg(into).env(
        "RINHA_MAVEN_URL",
        format!("file://{}", repository.display()),
    );
    let (code, stderr, stdout) = run(command, RUN_WAIT);
    (code, format!("{stdout}{stderr}"))
}

/// Whether a tool run.sh needs is missing; then `test` is skipped, and says so.
fn missing_tools(test: &str) -> bool {
    let missing: Vec<&str> = TOOLS
        .into_iter()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|output| output.status.success())
        })
        .collect();
    if missing.is_empty() {
        return false;
    }
    eprintln!(
        "==== SKIPPED {test}: gatling/run.sh needs {} (scripts/setup.sh ci installs it) ====",
        missing.join(", ")
    );
    true
}

/// The first record of every simulation.log.
const RUN_RECORD: &str = "RUN\tcrebitos.CrebitosSimulation\tcrebitossimulation\t1700000000000\tcrebitos: reference load test\t3.10.3\n";

/// A log of one OK request of each official name, and one more validation.
fn clean_log() -> String {
    let mut log = RUN_RECORD.to_string();
    let names = [
        scenario::VALIDATIONS,
        scenario::VALIDATIONS,
        load::DEBITS,
        load::CREDITS,
        load::STATEMENTS,
    ];
    for name in names {
        log += &format!("USER\t{name}\tSTART\t1700000000000\n");
        log += &request(name, "");
    }
    log
}

/// A REQUEST record as Gatling 3.10 writes it: no group, then OK, or KO with `message` (the
/// first failed check's).
fn request(name: &str, message: &str) -> String {
    let (status, message) = if message.is_empty() {
        ("OK", " ")
    } else {
        ("KO", message)
    };
    format!("REQUEST\t\t{name}\t1700000000001\t1700000000003\t{status}\t{message}\n")
}

/// Answers every request with a 200 until the test ends; returns its http://HOST:PORT.
fn serve_statements() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && matches!(stream.read(&mut byte), Ok(1)) {
                head.push(byte[0]);
            }
            let body = r#"{"saldo":{"total":0,"limite":100000,"data_extrato":"x"},"ultimas_transacoes":[]}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    target
}

fn executable(path: &Path, text: &str) {
    fs::write(path, text).expect("write a script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The SHA-1 of `bytes` in hex, by `sha1sum` (which run.sh checks with too) on a file in `dir`.
fn sha1_hex(dir: &Path, bytes: &[u8]) -> String {
    let file = dir.join("to-digest");
    fs::write(&file, bytes).expect("write");
    let output = Command::new("sha1sum")
        .arg(&file)
        .output()
        .expect("run sha1sum");
    assert!(output.status.success());
    let digest = String::from_utf8_lossy(&output.stdout)[..40].to_string();
    fs::remove_file(&file).expect("remove");
    digest
}

/// A zip archive of `files` (path, contents), stored without compression: local headers, then the
/// central directory and its end record (PKWARE's APPNOTE, sections 4.3.7, 4.3.12 and 4.3.16).
fn stored_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut archive = Vec::new();
    let mut directory = Vec::new();
    for (name, contents) in files {
        let offset = archive.len() as u32;
        let crc = crc32(contents);
        let size = contents.len() as u32;
        // Version 1.0, no flags, stored, time and date 0, then CRC and sizes.
        let common = |record: &mut Vec<u8>| {
            record.extend_from_slice(&[10, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            record.extend_from_slice(&crc.to_le_bytes());
            record.extend_from_slice(&size.to_le_bytes());
            record.extend_from_slice(&size.to_le_bytes());
            record.extend_from_slice(&(name.len() as u16).to_le_bytes());
            record.extend_from_slice(&0u16.to_le_bytes());
        };
        archive.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut archive);
        archive.extend_from_slice(name.as_bytes());
        archive.extend_from_slice(contents);

        directory.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        directory.extend_from_slice(&[20, 3]); // made by version 2.0 on Unix
        common(&mut directory);
        // No comment, disk 0, no internal attributes, Unix mode rw-r--r-- (not executable: run.sh
        // must make bin/*.sh so), then where the local header starts.
        directory.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        directory.extend_from_slice(&(0o100_644u32 << 16).to_le_bytes());
        directory.extend_from_slice(&offset.to_le_bytes());
        directory.extend_from_slice(name.as_bytes());
    }
    let directory_offset = archive.len() as u32;
    let entries = files.len() as u16;
    archive.extend_from_slice(&directory);
    archive.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    archive.extend_from_slice(&[0, 0, 0, 0]);
    archive.extend_from_slice(&entries.to_le_bytes());
    archive.extend_from_slice(&entries.to_le_bytes());
    archive.extend_from_slice(&(directory.len() as u32).to_le_bytes());
    archive.extend_from_slice(&directory_offset.to_le_bytes());
    archive.extend_from_slice(&0u16.to_le_bytes());
    archive
}

/// CRC-32 (IEEE, reflected), bit by bit: the archives here are a few bytes.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc32_of_a_known_string() {
    // The check value of CRC-32/ISO-HDLC.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}
