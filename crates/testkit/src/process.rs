//! Server processes started by a test: their stderr goes to a log file, they are stopped with
//! signals sent through rustix, and whatever is still running when the test ends (even by a
//! failed assertion) is killed and reaped, its log printed when the test failed.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid};

use crate::Addr;

/// The signals [`Server::signal`] and [`Server::stop`] send, so that tests need not depend on
/// rustix themselves.
pub use rustix::process::Signal;

/// How long a server may take to answer after start (it creates the account files).
pub const READY_WAIT: Duration = Duration::from_secs(20);

/// One started process.
pub struct Server {
    /// The name its log file and messages carry.
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

    /// Starts `command` as [`Server::start`] does and waits until `addr` answers a statement;
    /// a process that exits first, or does not answer within [`READY_WAIT`], fails the test.
    pub fn start_ready(name: &str, command: Command, log_dir: &Path, addr: &Addr) -> Server {
        let mut server = Server::start(name, command, log_dir);
        if let Err(code) = server.wait_ready(addr, READY_WAIT) {
            panic!(
                "{name} exited ({code:?}) before serving {addr}: {}",
                server.log()
            );
        }
        server
    }

    /// Waits at most `wait` until `addr` answers a statement with 200; `Err` with the exit code
    /// (`None`: killed by a signal) when the process exits first. A process that does neither
    /// is killed and fails the test.
    pub fn wait_ready(&mut self, addr: &Addr, wait: Duration) -> Result<(), Option<i32>> {
        let ready = |_: &Server| crate::http::is_ready(addr).then_some(());
        self.wait_for(wait, "serve", ready)
            .map_err(|status| status.code())
    }

    /// Polls `done` every 10 ms until it gives a value, or the process exits (`Err`), or `wait`
    /// has passed: then the process is killed and the test fails, saying what it did not do.
    fn wait_for<T>(
        &mut self,
        wait: Duration,
        what: &str,
        mut done: impl FnMut(&Server) -> Option<T>,
    ) -> Result<T, ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(value) = done(self) {
                return Ok(value);
            }
            if let Some(status) = self.try_wait() {
                return Err(status);
            }
            if Instant::now() >= deadline {
                let log = self.log();
                self.kill();
                panic!("{} did not {what} within {wait:?}: {log}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The complete lines the process wrote on stderr so far. A line still being written (one
    /// `eprintln!` may take several writes) is left out until its newline arrives.
    pub fn lines(&self) -> Vec<String> {
        let log = self.log();
        let complete = log.rfind('\n').map_or("", |end| &log[..end]);
        complete.lines().map(str::to_owned).collect()
    }

    /// Waits at most `wait` for the first complete stderr line (the servers' startup line) and
    /// returns it. A process that exits first, or stays silent, fails the test (and is killed).
    pub fn first_line(&mut self, wait: Duration) -> String {
        let first = self.wait_for(wait, "print a line", |server| {
            server.lines().into_iter().next()
        });
        first.unwrap_or_else(|status| {
            let log = self.log();
            panic!(
                "{} exited ({status}) before its first line: {log}",
                self.name
            )
        })
    }

    /// Waits at most `wait` for the startup line of `program` (`<program> <version> ...`, the
    /// first line both servers print) and returns it; any other first line fails the test.
    pub fn startup_line(&mut self, program: &str, wait: Duration) -> String {
        let line = self.first_line(wait);
        assert!(
            line.starts_with(&format!("{program} ")),
            "{}: not a startup line of {program}: {line:?}",
            self.name
        );
        line
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
        let _ = kill_process(Pid::from_child(&self.child), signal);
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) -> ExitStatus {
        self.signal(Signal::KILL);
        self.wait(Duration::from_secs(10))
            .expect("a killed process exits")
    }

    /// SIGTERM, then wait at most `wait` for the exit (then SIGKILL and panic).
    pub fn terminate(&mut self, wait: Duration) -> ExitStatus {
        self.stop(Signal::TERM, wait)
    }

    /// Sends `signal`, then waits at most `wait` for the exit (then SIGKILL and panic).
    pub fn stop(&mut self, signal: Signal, wait: Duration) -> ExitStatus {
        self.signal(signal);
        match self.wait(wait) {
            Some(status) => status,
            None => {
                self.kill();
                panic!(
                    "{} did not stop within {wait:?} of {signal:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
        }
    }

    /// Waits at most `wait` for the process to exit on its own.
    pub fn wait(&mut self, wait: Duration) -> Option<ExitStatus> {
        crate::wait_until(wait, || self.try_wait().is_some());
        self.try_wait()
    }

    /// Resident memory in KiB (VmRSS), when the process still runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// How many descriptors the process has open (zero once it is gone).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }

    /// The fewest descriptors the process holds over half a second, once it is quiet:
    /// connections that clients closed may still be on their way out.
    pub fn quiet_fds(&self) -> usize {
        (0..10)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(50));
                self.open_fds()
            })
            .min()
            .unwrap_or(0)
    }

    /// CPU time (user and system) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("the process's /proc stat");
        // The fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks = |index: usize| fields[index].parse::<u64>().expect("a tick count");
        // Linux reports these in clock ticks of 10 ms (USER_HZ is 100 on every architecture
        // the project builds for).
        Duration::from_millis((ticks(11) + ticks(12)) * 10)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The log file is in a directory the test removes; show it while it can still be read.
        if std::thread::panicking() {
            eprintln!("---- stderr of {} ----\n{}", self.name, self.log());
        }
    }
}

/// Sets the open-files limit `command` starts with: the soft limit to `soft` and, when given,
/// the hard limit to `hard` (otherwise the hard limit is inherited).
pub fn limit_nofile(command: &mut Command, soft: u64, hard: Option<u64>) {
    // SAFETY: the closure runs in the child between fork and exec; it only makes the
    // getrlimit and setrlimit system calls, which are async-signal-safe and allocate nothing.
    unsafe {
        command.pre_exec(move || {
            use rustix::process::{getrlimit, setrlimit, Resource};
            let mut limit = getrlimit(Resource::Nofile);
            limit.current = Some(soft);
            if hard.is_some() {
                limit.maximum = hard;
            }
            setrlimit(Resource::Nofile, limit).map_err(std::io::Error::from)
        });
    }
}

/// Runs a command to completion with a bound on its time; returns the exit code (-1 for a
/// signal) and its stderr and stdout.
pub fn run(mut command: Command, wait: Duration) -> (i32, String, String) {
    command.stdin(Stdio::null());
    command.stdout(Stdio::piped());
    command.stderr(Stdio::piped());
    let child = command.spawn().expect("start a command");
    let pid = Pid::from_child(&child);
    let (done, finished) = std::sync::mpsc::channel();
    // The waiter drains both pipes while the child runs, so a chatty child never blocks on a
    // full pipe.
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = done.send(());
        output
    });
    if finished.recv_timeout(wait).is_err() {
        let _ = kill_process(pid, Signal::KILL);
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

/// Starts one `rinha-api` (one worker) on `data` listening on `addr`, with extra
/// environment, and waits until it serves a statement or exits (at most `wait`; then it is
/// killed and the test fails).
pub fn start_api(
    name: &str,
    data: &Path,
    addr: &Addr,
    log_dir: &Path,
    env: &[(&str, &str)],
    wait: Duration,
) -> Start {
    let mut command = crate::bins::api_command(data, addr);
    command.envs(env.iter().copied());
    let mut server = Server::start(name, command, log_dir);
    match server.wait_ready(addr, wait) {
        Ok(()) => Start::Serving(server),
        Err(code) => Start::Exited(code, server.log()),
    }
}
