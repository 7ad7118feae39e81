//! The I/O driver choice: io_uring when the kernel allows it, epoll otherwise.
//!
//! The probe monoio runs only creates a tiny ring and asks which operations exist. A full-size
//! ring can still fail afterwards (RLIMIT_MEMLOCK on older kernels, a seccomp profile that
//! forbids `io_uring_setup` or answers EPERM), so in `auto` mode a failed build falls back to
//! the epoll driver instead of failing startup.

use std::fmt;
use std::io;

use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

/// Name of the environment variable that forces a driver (the servers' `--driver`).
pub const DRIVER_ENV: &str = "RINHA_DRIVER";

/// io_uring submission queue entries per worker.
const RING_ENTRIES: u32 = 1024;

/// A monoio runtime with timers on either driver.
pub type Runtime = monoio::FusionRuntime<TimeDriver<IoUringDriver>, TimeDriver<LegacyDriver>>;

/// The driver a runtime actually uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// Completion-based io_uring.
    IoUring,
    /// Readiness-based epoll (monoio's legacy driver).
    Epoll,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        })
    }
}

/// What the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DriverPref {
    /// io_uring if it works here, epoll otherwise.
    #[default]
    Auto,
    /// io_uring or fail.
    IoUring,
    /// epoll, even where io_uring works.
    Epoll,
}

/// A driver preference text that is none of the accepted words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverPrefError(pub String);

impl fmt::Display for DriverPrefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // clap's message already quotes the value and names the flag.
        f.write_str("expected auto, io_uring or epoll")
    }
}

impl std::error::Error for DriverPrefError {}

impl DriverPref {
    /// Parses `auto`, `io_uring` (or `iouring`, `uring`) and `epoll` (or `legacy`).
    pub fn parse(text: &str) -> Result<DriverPref, DriverPrefError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(DriverPref::Auto),
            "io_uring" | "iouring" | "uring" => Ok(DriverPref::IoUring),
            "epoll" | "legacy" => Ok(DriverPref::Epoll),
            _ => Err(DriverPrefError(text.to_string())),
        }
    }
}

/// Builds a runtime with timers for the current thread, following `pref`, and says which driver
/// it got.
pub fn build_runtime(pref: DriverPref) -> io::Result<(Runtime, Driver)> {
    match pref {
        DriverPref::Epoll => build_epoll().map(|rt| (rt, Driver::Epoll)),
        DriverPref::IoUring => build_io_uring().map(|rt| (rt, Driver::IoUring)),
        DriverPref::Auto => {
            if monoio::utils::detect_uring() {
                if let Ok(runtime) = build_io_uring() {
                    return Ok((runtime, Driver::IoUring));
                }
            }
            build_epoll().map(|rt| (rt, Driver::Epoll))
        }
    }
}

/// How completions reach the worker thread, cheapest first.
///
/// By default the kernel delivers each completion that finishes outside the submitting thread
/// (a poll that fires in the network stack, an fdatasync on an io-wq thread) as task work with a
/// signal-like notification that interrupts the worker wherever it is. The cooperative modes let
/// the worker pick completions up the next time it enters the kernel, which is always soon: a
/// monoio worker only blocks inside `io_uring_enter`. On the balancer's relay (one readiness poll
/// per read) that halved the CPU spent per proxied keep-alive request (crates/lb/README.md).
#[derive(Clone, Copy, Debug)]
enum RingSetup {
    /// IORING_SETUP_DEFER_TASKRUN + SINGLE_ISSUER (Linux 6.1): completions are processed only
    /// when the worker waits for them. Right for monoio, where one thread owns each ring.
    DeferTaskrun,
    /// IORING_SETUP_COOP_TASKRUN (Linux 5.19): no interrupting notification.
    CoopTaskrun,
    /// The kernel's default, for older kernels.
    Plain,
}

fn build_io_uring() -> io::Result<Runtime> {
    let mut refused = None;
    for setup in [
        RingSetup::DeferTaskrun,
        RingSetup::CoopTaskrun,
        RingSetup::Plain,
    ] {
        let mut ring = io_uring::IoUring::builder();
        match setup {
            RingSetup::DeferTaskrun => {
                ring.setup_single_issuer().setup_defer_taskrun();
            }
            RingSetup::CoopTaskrun => {
                ring.setup_coop_taskrun();
            }
            RingSetup::Plain => {}
        }
        let built = RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(RING_ENTRIES)
            .uring_builder(ring)
            .enable_timer()
            .build();
        match built {
            Ok(runtime) => return Ok(runtime.into()),
            // An older kernel refuses setup flags it does not know with EINVAL; anything else
            // (EPERM from seccomp, ENOMEM from the memlock limit) will not improve further down.
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => refused = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(refused.expect("the plain setup was tried"))
}

fn build_epoll() -> io::Result<Runtime> {
    let runtime = RuntimeBuilder::<LegacyDriver>::new()
        .enable_timer()
        .build()?;
    Ok(runtime.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pref_table() {
        #[track_caller]
        fn check(input: &str, expected: Result<DriverPref, DriverPrefError>) {
            assert_eq!(DriverPref::parse(input), expected, "input {input:?}");
        }
        check("auto", Ok(DriverPref::Auto));
        check("", Ok(DriverPref::Auto));
        check("io_uring", Ok(DriverPref::IoUring));
        check("IO_URING", Ok(DriverPref::IoUring));
        check("epoll", Ok(DriverPref::Epoll));
        check("legacy", Ok(DriverPref::Epoll));
        check("kqueue", Err(DriverPrefError("kqueue".into())));
    }

    #[test]
    fn epoll_runtime_runs_timers() {
        let (mut runtime, driver) = build_runtime(DriverPref::Epoll).unwrap();
        assert_eq!(driver, Driver::Epoll);
        runtime.block_on(async { monoio::time::sleep(std::time::Duration::from_millis(1)).await });
    }

    #[test]
    fn auto_runtime_runs_timers() {
        let (mut runtime, driver) = build_runtime(DriverPref::Auto).unwrap();
        if monoio::utils::detect_uring() {
            assert_eq!(driver, Driver::IoUring);
        }
        runtime.block_on(async { monoio::time::sleep(std::time::Duration::from_millis(1)).await });
    }
}
