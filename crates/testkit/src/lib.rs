//! `rinha-testkit`: the one harness of the tests that run the workspace's real binaries (the
//! integration tests of `rinha-api`, `rinha-lb` and `rinha-scenario`, and the reliability tests
//! of `rinha-chaos`).
//!
//! - [`bins`]: the workspace's `rinha-api`, `rinha-lb` and `espora`, built for the test profile;
//! - [`process`]: started servers whose stderr goes to a log file, stopped by signal (rustix)
//!   and killed when a test ends, however it ends; commands run with a bound on their time;
//! - [`http`]: a small HTTP/1.1 client over TCP or Unix sockets that writes whatever bytes a
//!   test gives it, well-formed or hostile, and one response parser;
//! - [`metrics`]: scrapes of a server's `--metrics` listener and the samples in them;
//! - [`stack`]: two instances behind the balancer, as deployed;
//! - [`source`]: the repository's own files as text (Rust split into code and comments), for the
//!   tests that check the repository itself: `tests/layers.rs` and `tests/citations.rs`;
//! - [`temp_dir`]: a scratch directory removed at the end, with a name short enough for Unix
//!   socket paths; [`description`]: unique transaction descriptions; [`XorShift`]: numbers
//!   from a seed; [`skip`] and [`assert_none`]: how tests report; [`tests!`]: one `#[test]` per
//!   driver or mode.
//!
//! Addresses are [`rinha_rt::Addr`], the type the servers' `--listen` and `--upstream` flags
//! parse, so that what a test connects to and what it passes on a command line are one value.
//!
//! The in-process helpers of the storage engine (`crates/espora/tests/support`) are not here:
//! they open files in the test's own process and start no binary.

pub mod bins;
pub mod http;
pub mod metrics;
pub mod process;
pub mod source;
pub mod stack;

use std::time::{Duration, Instant};

pub use rinha_rt::Addr;
pub use tempfile::TempDir;

/// A unique transaction description, at most 10 characters: `prefix` and `number` in base 36
/// (lower case), zero-padded to 9 digits, so that a test can tell each record on disk by it.
pub fn description(prefix: char, number: u64) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut text = Vec::new();
    let mut rest = number;
    loop {
        text.push(digits[(rest % 36) as usize]);
        rest /= 36;
        if rest == 0 {
            break;
        }
    }
    text.reverse();
    let digits = String::from_utf8(text).expect("ASCII");
    format!("{prefix}{digits:0>9}")
}

/// A fresh directory under the system temp dir whose name starts with `rinha-<label>-`,
/// removed when dropped. Unix socket paths must stay under about 100 bytes, so the name keeps
/// to the label and a few random characters.
pub fn temp_dir(label: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("rinha-{label}-"))
        .tempdir()
        .expect("create a temp dir")
}

/// A loopback TCP address on a port that was free a moment ago: bound, read and released.
/// Another process could take the port in between, which the tests accept as a rare flake
/// rather than have every server report the port it got.
pub fn free_tcp() -> Addr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    Addr::Tcp(listener.local_addr().expect("local address"))
}

/// The socket address of a TCP `addr`; a Unix one fails the test.
pub fn tcp(addr: &Addr) -> std::net::SocketAddr {
    match addr {
        Addr::Tcp(addr) => *addr,
        Addr::Unix(path) => panic!("a TCP address was expected, not {}", path.display()),
    }
}

/// Polls `ready` every 20 ms until it is true or `wait` has passed; returns whether it became
/// true.
pub fn wait_until(wait: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value at `percent` (0..=100) of sorted `values`, or zero when there are none.
pub fn percentile(sorted: &[Duration], percent: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((percent / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Raises this process's soft open-files limit to at least `wanted` (up to the hard limit) and
/// returns the soft limit now in force.
pub fn raise_nofile(wanted: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if limit.current.is_some_and(|current| current < wanted) {
        limit.current = Some(wanted.min(hard));
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Whether this process runs as root (some tests need mount(2)).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Says on stderr that `test` is skipped and why (the machine cannot run it); the test then
/// returns and passes.
pub fn skip(test: &str, why: &str) {
    eprintln!("==== SKIPPED {test}: {why} ====");
}

/// Fails the test if there is any problem: all of them on stderr, one per line, and the first
/// ones in the panic message.
pub fn assert_none(test: &str, problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    for problem in problems {
        eprintln!("PROBLEM: {problem}");
    }
    let shown: Vec<&str> = problems.iter().take(25).map(String::as_str).collect();
    panic!(
        "{test}: {} problem(s) (all printed above as PROBLEM lines), the first {}:\n  {}",
        problems.len(),
        shown.len(),
        shown.join("\n  ")
    );
}

/// The xorshift64 generator (Marsaglia, 2003): the same numbers from the same seed (not zero),
/// without a dependency.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// One `#[test]` per row `name => check;`: a check run once per driver or mode, each run a test
/// of its own (so that they run side by side and a failure names its driver).
#[macro_export]
macro_rules! tests {
    ($($name:ident => $check:expr;)+) => {
        $(
            #[test]
            fn $name() {
                $check;
            }
        )+
    };
}
