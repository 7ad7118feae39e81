//! The balancer's settings, from flags and environment.

use std::time::Duration;

use rinha_rt::flags::{FlagError, FlagKind, FlagSpec, Flags};
use rinha_rt::Addr;

use crate::relay::SpliceMode;

/// Every flag `rinha-lb` accepts.
pub const FLAGS: &[FlagSpec] = &[
    FlagSpec {
        name: "listen",
        env: Some("RINHA_LB_LISTEN"),
        kind: FlagKind::Value,
    },
    FlagSpec {
        name: "upstream",
        env: Some("RINHA_LB_UPSTREAMS"),
        kind: FlagKind::Repeated,
    },
    FlagSpec {
        name: "workers",
        env: Some("RINHA_LB_WORKERS"),
        kind: FlagKind::Value,
    },
    FlagSpec {
        name: "connect-timeout-ms",
        env: Some("RINHA_LB_CONNECT_TIMEOUT_MS"),
        kind: FlagKind::Value,
    },
    FlagSpec {
        name: "idle-timeout-ms",
        env: Some("RINHA_LB_IDLE_TIMEOUT_MS"),
        kind: FlagKind::Value,
    },
    FlagSpec {
        name: "connections-max",
        env: Some("RINHA_LB_CONNECTIONS_MAX"),
        kind: FlagKind::Value,
    },
    FlagSpec {
        name: "down-backoff-ms",
        env: Some("RINHA_LB_DOWN_BACKOFF_MS"),
        kind: FlagKind::Value,
    },
    FlagSpec {
        name: "healthcheck",
        env: None,
        kind: FlagKind::Value,
    },
    FlagSpec {
        name: "splice",
        env: Some("RINHA_LB_SPLICE"),
        kind: FlagKind::Value,
    },
];

/// The `--help` text.
pub const USAGE: &str = "\
rinha-lb: layer-4 round-robin TCP balancer (zero-copy splice, io_uring or epoll)

usage: rinha-lb --listen ADDR --upstream ADDR [--upstream ADDR ...] [options]
       rinha-lb --healthcheck ADDR

ADDR is HOST:PORT (TCP) or unix:/path/to.sock. Every flag falls back to the environment
variable in brackets; the flag wins. List variables are comma-separated.

  --listen ADDR              address clients connect to          [RINHA_LB_LISTEN]
  --upstream ADDR            an upstream, repeatable, in order    [RINHA_LB_UPSTREAMS]
  --workers N                worker threads (default: CPUs usable by this process,
                             the affinity mask capped by the cgroup quota)  [RINHA_LB_WORKERS]
  --connect-timeout-ms MS    upstream connect timeout (default 1000)  [RINHA_LB_CONNECT_TIMEOUT_MS]
  --idle-timeout-ms MS       close a connection idle this long (default 60000)
                                                                  [RINHA_LB_IDLE_TIMEOUT_MS]
  --connections-max N        open connections per worker (default 16384)
                                                                  [RINHA_LB_CONNECTIONS_MAX]
  --down-backoff-ms MS       skip an upstream this long after a failed connect (default 1000)
                                                                  [RINHA_LB_DOWN_BACKOFF_MS]
  --splice auto|op|direct    op: monoio splice operations (IORING_OP_SPLICE on io_uring,
                             readiness + splice(2) on epoll); direct: readiness from the
                             runtime, then splice(2). auto (default): direct on io_uring,
                             op on epoll                          [RINHA_LB_SPLICE]
  --healthcheck ADDR         connect to ADDR (the balancer's own listen address) and exit 0
                             when it accepts within 2 s, 1 otherwise (for container probes)
  -h, --help                 this text
  --version                  version

Environment only: RINHA_DRIVER=auto|io_uring|epoll chooses the I/O driver (default auto:
io_uring when the kernel allows it, epoll otherwise).
";

/// The balancer's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where clients connect.
    pub listen: Addr,
    /// The upstreams, in round-robin order.
    pub upstreams: Vec<Addr>,
    /// Worker threads; `None` means the usable CPU count.
    pub workers: Option<usize>,
    /// How long one upstream connect may take.
    pub connect_timeout: Duration,
    /// A connection with no traffic this long is closed.
    pub idle_timeout: Duration,
    /// Open connections per worker; beyond it accepting pauses.
    pub connections_per_worker_max: usize,
    /// How long an upstream that failed a connect is skipped.
    pub down_backoff: Duration,
    /// Most upstreams tried for one client.
    pub attempts_max: usize,
    /// How splices are issued; `None` picks per driver ([`SpliceMode::default_for`]).
    pub splice: Option<SpliceMode>,
}

/// How long startup keeps retrying upstream host names that do not resolve yet (containers
/// started together register their names in DNS a moment apart).
const RESOLVE_WAIT_MAX: Duration = Duration::from_secs(30);

impl Config {
    /// Builds the configuration from parsed flags.
    pub fn from_flags(flags: &Flags) -> Result<Config, FlagError> {
        let listen = parse_addr(flags, "listen", flags.required("listen")?)?;
        let mut upstreams = Vec::new();
        for text in flags.required_values("upstream")? {
            upstreams.push(parse_addr(flags, "upstream", text)?);
        }
        let millis = |name: &str, default: u64| -> Result<Duration, FlagError> {
            Ok(Duration::from_millis(
                flags.parsed::<u64>(name)?.unwrap_or(default),
            ))
        };
        let workers = flags.parsed::<usize>("workers")?;
        if workers == Some(0) {
            return Err(invalid(flags, "workers", "0", "must be at least 1"));
        }
        let connections_per_worker_max = flags.parsed::<usize>("connections-max")?.unwrap_or(16384);
        if connections_per_worker_max == 0 {
            return Err(invalid(flags, "connections-max", "0", "must be at least 1"));
        }
        Ok(Config {
            listen,
            attempts_max: upstreams.len().min(crate::upstreams::PLAN_MAX),
            upstreams,
            workers,
            connect_timeout: millis("connect-timeout-ms", 1000)?,
            idle_timeout: millis("idle-timeout-ms", 60_000)?,
            connections_per_worker_max,
            down_backoff: millis("down-backoff-ms", 1000)?,
            splice: match flags.value("splice") {
                None | Some("auto") => None,
                Some(_) => flags.parsed::<SpliceMode>("splice")?,
            },
        })
    }
}

fn parse_addr(flags: &Flags, name: &str, text: &str) -> Result<Addr, FlagError> {
    let started = std::time::Instant::now();
    loop {
        match Addr::parse(text) {
            Ok(addr) => return Ok(addr),
            Err(rinha_rt::AddrError::Unresolved(_)) if started.elapsed() < RESOLVE_WAIT_MAX => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => return Err(invalid(flags, name, text, &error.to_string())),
        }
    }
}

fn invalid(flags: &Flags, name: &str, value: &str, reason: &str) -> FlagError {
    FlagError::Invalid {
        source: flags.source(name).to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}
