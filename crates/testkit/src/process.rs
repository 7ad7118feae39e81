//! Server processes started by a test: their stderr goes to a log file, and whatever is still
//! running when the test ends (even by a failed assertion) is killed and reaped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// One started process.
pub struct Server {
    pub name: String,
    child: Child,
    log: PathBuf,
    /// Set once the child was reaped, so that its pid (maybe reused) is never signalled again.
    exited: Option<ExitStatus>,
}

impl Server {
    /// Starts `command` with stdin closed, stdout discarded and stderr to `<log_dir>/<name>.log`.
    pub fn start(name: &str, mut command: Command, log_dir: &Path) -> Server {
        let log = log_dir.join(format!("{name}.log"));
        let stderr = File::create(&log).expect("create a log file");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        Server {
            name: name.to_owned(),
            child,
            log,
            exited: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("wait for a child");
        }
        self.exited
    }

    /// Sends `signal` (unless the process already exited).
    pub fn signal(&mut self, signal: Signal) {
        if self.try_wait().is_some() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32).expect("a child pid");
        let _ = kill_process(pid, signal);
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) -> ExitStatus {
        self.signal(Signal::KILL);
        self.wait(Duration::from_secs(10))
            .expect("a killed process exits")
    }

    /// SIGTERM, then wait at most `wait` for the exit (then SIGKILL and panic).
    pub fn terminate(&mut self, wait: Duration) -> ExitStatus {
        self.signal(Signal::TERM);
        match self.wait(wait) {
            Some(status) => status,
            None => {
                self.kill();
                panic!(
                    "{} did not stop within {wait:?} of SIGTERM; log:\n{}",
                    self.name,
                    self.log()
                );
            }
        }
    }

    /// Waits at most `wait` for the process to exit on its own.
    pub fn wait(&mut self, wait: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident memory in KiB (VmRSS), when the process still runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command to completion with a bound on its time; returns the exit code (-1 for a
/// signal) and its stderr and stdout.
pub fn run(mut command: Command, wait: Duration) -> (i32, String, String) {
    command.stdin(Stdio::null());
    command.stdout(Stdio::piped());
    command.stderr(Stdio::piped());
    let child = command.spawn().expect("start a command");
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = done.send(());
        output
    });
    if finished.recv_timeout(wait).is_err() {
        if let Some(pid) = Pid::from_raw(pid as i32) {
            let _ = kill_process(pid, Signal::KILL);
        }
        let _ = waiter.join();
        panic!("{command:?} did not finish within {wait:?}");
    }
    let output = waiter
        .join()
        .expect("the waiter thread")
        .expect("wait for the command");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// How a server start ended: serving, or exited with a code (`None`: killed by a signal) and
/// its stderr.
pub enum Start {
    Serving(Server),
    Exited(Option<i32>, String),
}

/// Starts one `rinha-api` (one worker) on `data` listening on `endpoint`, with extra
/// environment, and waits until it serves a statement or exits (at most `wait`; then it is
/// killed and the test fails).
pub fn start_api(
    name: &str,
    data: &Path,
    endpoint: &crate::client::Endpoint,
    log_dir: &Path,
    env: &[(&str, &str)],
    wait: Duration,
) -> Start {
    let mut command = Command::new(&crate::bins::bins().api);
    command.arg("--data-dir").arg(data);
    command.args(["--listen", &endpoint.flag(), "--workers", "1"]);
    command.envs(env.iter().copied());
    let mut server = Server::start(name, command, log_dir);
    let deadline = Instant::now() + wait;
    loop {
        if let Some(status) = server.try_wait() {
            return Start::Exited(status.code(), server.log());
        }
        if crate::client::is_ready(endpoint) {
            return Start::Serving(server);
        }
        if Instant::now() >= deadline {
            let log = server.log();
            server.kill();
            panic!("{name} neither served nor exited within {wait:?}: {log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
