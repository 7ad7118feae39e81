//! The reference scenario against the real stack: `rinha-lb` on loopback TCP in front of two
//! `rinha-api` processes over Unix sockets, sharing one fresh data directory.
//!
//! The ramp and hold are compressed (15 s each) but the peak rates are the reference's, every
//! request opens a new connection, and the run must end with zero failed checks and zero
//! inconsistencies. Afterwards the stack is stopped with SIGTERM (each process must exit 0) and
//! `espora verify` must find every account file sound.
//!
//! The binaries are the workspace's own, found and built for this test's profile by the
//! reliability harness (`rinha_testkit::bins`).

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rinha_scenario::{scenario, Config, Target};
use rinha_testkit::bins::Bins;

/// Compressed load phase: 15 s of ramp, 15 s at the reference peak rates.
const RAMP: Duration = Duration::from_secs(15);
const HOLD: Duration = Duration::from_secs(15);

/// How long the stack may take to answer its first statement.
const READY_WAIT_MAX: Duration = Duration::from_secs(20);

/// How long a process may take to stop after SIGTERM.
const STOP_WAIT_MAX: Duration = Duration::from_secs(10);

#[test]
fn reference_scenario_passes_against_the_real_stack() {
    let bins = rinha_testkit::bins::bins();
    let dir = TempDir::new();
    let data = dir.path.join("data");
    std::fs::create_dir(&data).expect("create the data directory");
    let lb_addr = free_loopback_addr();
    let mut stack = start_stack(bins, &dir.path, &data, &lb_addr);

    let config = Config {
        target: Target::parse(&format!("http://{lb_addr}")).expect("loopback target"),
        ramp: RAMP,
        hold: HOLD,
        threads: 256,
        timeout: Duration::from_secs(10),
        seed: 20_240_101,
        load_only: false,
    };
    scenario::wait_ready(&config.target, READY_WAIT_MAX).expect("the stack never became ready");
    scenario::check_fresh(&config).expect("a fresh data directory has fresh accounts");
    let started = Instant::now();
    let report = scenario::run(&config);
    // Written to the stderr stream itself, not through eprintln!, so that the percentiles show in
    // the output of a passing `cargo test` too (the harness captures only the print macros).
    let _ = writeln!(
        std::io::stderr(),
        "\n{report}\nscenario elapsed: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(report.passed(), "the scenario failed:\n{report}");
    // Phases 1 to 3 send 123 requests (122 validations and the 404); the load phase one per user.
    let planned = rinha_scenario::load::plan(&config).len() as u64;
    assert_eq!(
        report.all.count,
        123 + planned,
        "every user sent its requests"
    );

    for (name, status) in stack.stop_all() {
        assert!(
            status.success(),
            "{name} did not exit 0 after SIGTERM: {status}"
        );
    }
    let verify = Command::new(&bins.espora)
        .arg("verify")
        .arg(&data)
        .output()
        .expect("run espora verify");
    let summary = String::from_utf8_lossy(&verify.stdout);
    eprintln!("{summary}");
    assert!(
        verify.status.success(),
        "espora verify failed: {summary}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// Starts two instances on `data`, listening on Unix sockets in `dir`, and the balancer on
/// `lb_addr` in front of them.
fn start_stack(bins: &Bins, dir: &Path, data: &Path, lb_addr: &str) -> Stack {
    let mut stack = Stack::default();
    for name in ["api01", "api02"] {
        let socket = format!("unix:{}", dir.join(format!("{name}.sock")).display());
        let mut command = Command::new(&bins.api);
        command.arg("--data-dir").arg(data);
        command.args(["--listen", &socket, "--workers", "1"]);
        stack.start(name, command);
    }
    let mut lb = Command::new(&bins.lb);
    lb.args(["--listen", lb_addr, "--workers", "1"]);
    for name in ["api01", "api02"] {
        let socket = format!("unix:{}", dir.join(format!("{name}.sock")).display());
        lb.args(["--upstream", &socket]);
    }
    stack.start("lb", lb);
    stack
}

fn free_loopback_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").to_string()
}

/// The started processes; whatever is still running is killed when the test ends, even by a
/// failed assertion.
#[derive(Default)]
struct Stack {
    children: Vec<(&'static str, Child)>,
}

impl Stack {
    fn start(&mut self, name: &'static str, mut command: Command) {
        command.stdin(Stdio::null());
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        self.children.push((name, child));
    }

    /// Sends SIGTERM to every process (balancer first) and waits for each exit status.
    fn stop_all(&mut self) -> Vec<(&'static str, ExitStatus)> {
        let mut children = std::mem::take(&mut self.children);
        children.reverse();
        let mut statuses = Vec::new();
        for (name, mut child) in children {
            let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child pid");
            rustix::process::kill_process(pid, rustix::process::Signal::TERM)
                .unwrap_or_else(|error| panic!("cannot signal {name}: {error}"));
            let deadline = Instant::now() + STOP_WAIT_MAX;
            let status = loop {
                if let Some(status) = child.try_wait().expect("wait for a child") {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("{name} did not stop within {STOP_WAIT_MAX:?} of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            statuses.push((name, status));
        }
        statuses
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A directory under the system temp dir, removed at the end.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("rinha-scenario-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
