//! `rinha-testkit`: the harness of the tests that run the workspace's real binaries, grown
//! from the reliability tests' own (`crates/chaos`, which keeps only its tests):
//! - [`bins`]: the workspace's `rinha-api`, `rinha-lb` and `espora`, built for the test profile;
//! - [`process`]: started servers that are killed when a test ends, however it ends;
//! - [`client`]: a small HTTP/1.1 client over TCP or Unix sockets that can also misbehave;
//! - [`stack`]: two instances behind the balancer, as deployed;
//! - [`TempDir`]: a scratch directory removed at the end.
//!
//! Every test bounds its time and cleans up its processes.

pub mod bins;
pub mod client;
pub mod process;
pub mod stack;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh directory whose name starts with `label`. Unix socket paths must stay
    /// under about 100 bytes, so the name is short.
    pub fn new(label: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("chaos-{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
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
