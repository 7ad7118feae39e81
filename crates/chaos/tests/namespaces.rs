//! Two containers on one volume, started together: both open the same data directory.
//!
//! The bug: espora makes each new file (an account file, a shared-state file) under a temporary
//! name beside it and links it into place. The temporary names were the pid and a counter (the
//! shared-state file) or the pid and the microseconds (the account file). Processes in separate
//! PID namespaces, as containers are, have the same pids: both containers' servers run as pid 1,
//! so two of them starting together on one volume chose the same temporary name. The second
//! one's `O_EXCL` create failed, and its clean-up then removed the *first* one's temporary file
//! before that one could link it into place: both starts failed (the first with ENOENT at
//! `link`), and an orchestrator restarting both together could repeat it. Temporary names now
//! carry a random part, and a creator removes only the file it made itself.
//!
//! The test starts two processes, each as pid 1 of a PID namespace of its own (`unshare --pid
//! --fork`, util-linux), which open databases on the same directories at the same instants: fresh
//! directories (both create the account files, then the shared-state files), and directories
//! whose account files exist but whose shared-state files do not (both create those at once,
//! right after opening the account files: there the names met most often, in a quarter of the
//! trials or more). Every open must succeed, and the files must be whole (the account files of
//! their full size and sound, the shared-state files of theirs, no temporary file left behind)
//! and open again.
//!
//! A child is this test binary run again (under `unshare`) with `RINHA_NS_CHILD_DIRS` set: for
//! each directory in turn it waits for the agreed instant, opens the database and says so on
//! stdout. Needs root (for `unshare --pid`) and `unshare`; without them it prints a
//! `==== SKIPPED` line and passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use espora::layout::{HEADER_SIZE, RECORD_SIZE, SHARED_SIZE};
use espora::{Db, Options};
use rinha_testkit::{assert_none, is_root, skip, temp_dir, TempDir};

const TEST: &str = "two_processes_as_pid_1_opening_one_directory_together_both_start";
/// Set in a child: the data directories (`:`-separated), the instant to open the first (µs
/// since the epoch) and the time between two opens (µs).
const CHILD_DIRS: &str = "RINHA_NS_CHILD_DIRS";
const CHILD_AT: &str = "RINHA_NS_CHILD_AT";
const CHILD_STEP: &str = "RINHA_NS_CHILD_STEP";
/// Pairs of processes started for each kind of directory, and directories each pair opens.
const STARTS: usize = 5;
const TRIALS_PER_START: usize = 8;
/// How far ahead the first instant is set: room for both children to be running by then.
const START_LEAD: Duration = Duration::from_millis(100);
/// Time between two opens of a child: more than an open takes here (a few milliseconds, most
/// of it the fsyncs of a fresh directory's files).
const STEP: Duration = Duration::from_millis(25);
/// Far more than a child takes.
const CHILD_WAIT_MAX: Duration = Duration::from_secs(20);
const ACCOUNTS: [u32; 5] = [1, 2, 3, 4, 5];
const RING: u64 = 64;

fn options() -> Options {
    Options {
        accounts: ACCOUNTS.iter().map(|&id| (id, 1000)).collect(),
        ring_records: RING,
        ..Options::default()
    }
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_micros()
}

fn env_us(name: &str) -> u128 {
    let value = std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    value.parse().unwrap_or_else(|_| panic!("{name}: {value}"))
}

/// What a child does: for each directory, wait for its instant, open it, and report
/// `CHILD pid=<pid> trial=<index> late=<bool> opened` (or `FAILED: <error>`).
fn child(dirs: &str) {
    let (at, step) = (env_us(CHILD_AT), env_us(CHILD_STEP));
    let pid = std::process::id();
    for (trial, dir) in dirs.split(':').enumerate() {
        let instant = at + trial as u128 * step;
        let late = now_us() > instant;
        while now_us() < instant {
            std::hint::spin_loop();
        }
        match Db::open(Path::new(dir), options()) {
            Ok(_) => println!("CHILD pid={pid} trial={trial} late={late} opened"),
            Err(error) => println!("CHILD pid={pid} trial={trial} late={late} FAILED: {error}"),
        }
    }
}

/// Whether `unshare --pid --fork` works here; `Err` says why not.
fn unshare_works() -> Result<(), String> {
    let output = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run unshare (util-linux): {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "unshare --pid --fork fails here ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// This test binary again, as pid 1 of a new PID namespace, opening `dirs` from `at` on.
fn spawn(dirs: &[PathBuf], at: u128) -> Child {
    let exe = std::env::current_exe().expect("the test binary");
    let joined = std::env::join_paths(dirs).expect("directories without ':'");
    let mut command = Command::new("unshare");
    command.args(["--pid", "--fork", "--kill-child"]).arg(exe);
    command.args([
        TEST,
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ]);
    command
        .env(CHILD_DIRS, joined)
        .env(CHILD_AT, at.to_string());
    command.env(CHILD_STEP, STEP.as_micros().to_string());
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    command.stderr(Stdio::piped());
    command.spawn().expect("spawn unshare")
}

/// Waits for a child (killing it past [`CHILD_WAIT_MAX`]); its `CHILD` lines, one per
/// directory it reached, or what went wrong.
fn report(mut child: Child, started: Instant) -> Result<Vec<String>, String> {
    loop {
        match child.try_wait().expect("wait for a child") {
            Some(_) => break,
            None if started.elapsed() > CHILD_WAIT_MAX => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {CHILD_WAIT_MAX:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    let output = child.wait_with_output().expect("a child's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<String> = stdout
        .lines()
        .filter(|line| line.starts_with("CHILD "))
        .map(str::to_owned)
        .collect();
    if output.status.success() {
        Ok(lines)
    } else {
        Err(format!(
            "exited {}: {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The files of `dir` after a trial: every account file of its full size and sound (its
/// header, an empty ring), every shared-state file of its size, no temporary file left.
fn check_whole(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for id in ACCOUNTS {
        let path = dir.join(espora::file::account_file_name(id));
        let size = std::fs::metadata(&path).map(|m| m.len());
        let whole = (HEADER_SIZE + RECORD_SIZE * RING as usize) as u64;
        if size.as_ref().ok() != Some(&whole) {
            problems.push(format!("{}: size {size:?}, not {whole}", path.display()));
            continue;
        }
        match espora::file::open_existing(&path) {
            Ok((_, mapping)) => {
                if mapping.header().account_id != id || mapping.header().capacity != RING {
                    problems.push(format!("{}: header {:?}", path.display(), mapping.header()));
                }
                if let Err(corruption) = espora::verify::scan(&mapping, 0) {
                    problems.push(format!("{}: {corruption}", path.display()));
                }
            }
            Err(error) => problems.push(format!("{}: {error}", path.display())),
        }
        let shared = dir.join(espora::file::shared_file_name(id));
        let size = std::fs::metadata(&shared).map(|m| m.len());
        if size.as_ref().ok() != Some(&(SHARED_SIZE as u64)) {
            problems.push(format!("{}: size {size:?}", shared.display()));
        }
    }
    for entry in std::fs::read_dir(dir).expect("list the directory") {
        let name = entry.expect("an entry").file_name();
        if name.to_string_lossy().contains(".tmp.") {
            problems.push(format!(
                "a temporary file is left: {}",
                name.to_string_lossy()
            ));
        }
    }
    problems
}

/// A directory for one trial: fresh, or with the account files but no shared-state files.
fn prepare(existing: bool) -> TempDir {
    let scratch = temp_dir("namespaces");
    if existing {
        let dir = scratch.path();
        drop(Db::open(dir, options()).expect("create the account files"));
        for id in ACCOUNTS {
            let shared = dir.join(espora::file::shared_file_name(id));
            std::fs::remove_file(&shared).expect("remove a shared-state file");
        }
    }
    scratch
}

/// Two processes, each pid 1 of its own PID namespace, open the same directories at the same
/// instants: fresh directories, and directories with the account files but no shared-state
/// files. Every open must succeed, and the files must be whole.
#[test]
fn two_processes_as_pid_1_opening_one_directory_together_both_start() {
    if let Ok(dirs) = std::env::var(CHILD_DIRS) {
        return child(&dirs);
    }
    if !is_root() {
        return skip(TEST, "not running as root (unshare --pid needs it)");
    }
    if let Err(why) = unshare_works() {
        return skip(TEST, &why);
    }
    let started = Instant::now();
    let mut problems = Vec::new();
    let (mut trials, mut late) = (0, 0);
    for existing in [false, true] {
        let kind = match existing {
            false => "a fresh directory",
            true => "account files without shared-state files",
        };
        for start in 1..=STARTS {
            let scratch: Vec<TempDir> = (0..TRIALS_PER_START).map(|_| prepare(existing)).collect();
            let dirs: Vec<PathBuf> = scratch.iter().map(|d| d.path().to_path_buf()).collect();
            let at = now_us() + START_LEAD.as_micros();
            let spawned = Instant::now();
            let children = [spawn(&dirs, at), spawn(&dirs, at)];
            let reports = children.map(|child| report(child, spawned));
            for (index, reported) in reports.iter().enumerate() {
                let process = index + 1;
                let lines = match reported {
                    Ok(lines) => lines,
                    Err(why) => {
                        problems.push(format!("{kind}, start {start}: process {process}: {why}"));
                        continue;
                    }
                };
                for (trial, dir) in dirs.iter().enumerate() {
                    let what = format!("{kind} ({}), process {process}", dir.display());
                    let marker = format!(" trial={trial} ");
                    match lines.iter().find(|line| line.contains(&marker)) {
                        Some(line) if line.ends_with(" opened") => {
                            assert!(
                                line.starts_with("CHILD pid=1 "),
                                "{what}: the child did not run as pid 1 of a PID namespace: {line}"
                            );
                            late += usize::from(line.contains("late=true"));
                        }
                        Some(line) => problems.push(format!("{what} did not start: {line}")),
                        None => problems.push(format!("{what} never reported: {lines:?}")),
                    }
                }
            }
            for dir in &dirs {
                trials += 1;
                for problem in check_whole(dir) {
                    problems.push(format!("{kind}, afterwards: {problem}"));
                }
                if let Err(error) = Db::open(dir, options()) {
                    problems.push(format!("{kind}, opening it again: {error}"));
                }
            }
        }
    }
    eprintln!(
        "{TEST}: {trials} directories opened by two processes at once in {:.1} s ({late} opens \
         began after their instant), {} problem(s)",
        started.elapsed().as_secs_f64(),
        problems.len()
    );
    assert_none(TEST, &problems);
}
