//! The balancer's settings, from flags and environment.

use std::time::Duration;

use rinha_rt::flags::{at_least_one, ServerArgs};
use rinha_rt::Addr;

use crate::relay::SpliceMode;

/// rinha-lb: layer-4 round-robin TCP balancer (zero-copy splice, io_uring or epoll)
#[derive(clap::Parser, Debug)]
#[command(
    name = "rinha-lb",
    version,
    override_usage = "rinha-lb --listen ADDR --upstream ADDR [--upstream ADDR ...] [options]\n       \
                      rinha-lb --healthcheck ADDR",
    after_help = "ADDR is HOST:PORT (TCP) or unix:/path/to.sock. Each flag falls back to its \
                  environment variable; the flag wins. List variables are comma-separated."
)]
pub struct Args {
    /// Address clients connect to
    #[arg(long, value_name = "ADDR", env = "RINHA_LB_LISTEN")]
    pub listen: Option<String>,
    /// An upstream, repeatable, in round-robin order; host names are resolved once at start
    #[arg(
        long,
        value_name = "ADDR",
        env = "RINHA_LB_UPSTREAMS",
        value_delimiter = ','
    )]
    pub upstream: Vec<String>,
    /// Worker threads, each with its own runtime; default: the CPUs this process may use (the
    /// affinity mask capped by the cgroup CPU quota, rounded up)
    #[arg(long, value_name = "N", env = "RINHA_LB_WORKERS", value_parser = at_least_one)]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Upstream connect timeout
    #[arg(
        long,
        value_name = "MS",
        env = "RINHA_LB_CONNECT_TIMEOUT_MS",
        default_value_t = 1000
    )]
    pub connect_timeout_ms: u64,
    /// Close a connection idle this long
    #[arg(
        long,
        value_name = "MS",
        env = "RINHA_LB_IDLE_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub idle_timeout_ms: u64,
    /// Open connections per worker; beyond it accepting pauses
    #[arg(
        long,
        value_name = "N",
        env = "RINHA_LB_CONNECTIONS_MAX",
        default_value = "16384",
        value_parser = at_least_one
    )]
    pub connections_max: usize,
    /// Close a client and skip its upstream for the back-off when the upstream sends no byte
    /// this long after the client's first bytes reached it (a frozen instance); 0: never
    #[arg(
        long,
        value_name = "MS",
        env = "RINHA_LB_ANSWER_TIMEOUT_MS",
        default_value_t = ANSWER_TIMEOUT_DEFAULT_MS
    )]
    pub answer_timeout_ms: u64,
    /// After SIGTERM, how long relays get to pass on the answers to what they already
    /// forwarded (they read no more from their clients) before the rest are cut
    #[arg(
        long,
        value_name = "MS",
        env = "RINHA_LB_DRAIN_TIMEOUT_MS",
        default_value_t = 3_000
    )]
    pub drain_timeout_ms: u64,
    /// Skip an upstream this long after a failed connect
    #[arg(
        long,
        value_name = "MS",
        env = "RINHA_LB_DOWN_BACKOFF_MS",
        default_value_t = 1000
    )]
    pub down_backoff_ms: u64,
    /// op: the runtime's splice operations (IORING_OP_SPLICE on io_uring, readiness + splice(2)
    /// on epoll); direct: readiness from the runtime, then splice(2); auto: direct on io_uring,
    /// op on epoll
    // Written out in full so that clap reads `auto` (None) as a value of its own instead of
    // taking `Option` to mean an optional flag.
    #[arg(
        long,
        value_name = "auto|op|direct",
        env = "RINHA_LB_SPLICE",
        default_value = "auto",
        value_parser = parse_splice
    )]
    pub splice: std::option::Option<SpliceMode>,
    /// Serve live metrics in the Prometheus text format on HOST:PORT (its own listener, never
    /// the clients' address); off when not given
    #[arg(long, value_name = "ADDR", env = "RINHA_LB_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Connect to ADDR (the balancer's own listen address) and exit 0 when it accepts within
    /// 2 s, 1 otherwise (for container probes)
    #[arg(long, value_name = "ADDR")]
    pub healthcheck: Option<String>,
}

/// `auto` leaves the choice to the driver ([`SpliceMode::default_for`]).
fn parse_splice(text: &str) -> Result<Option<SpliceMode>, String> {
    match text {
        "auto" => Ok(None),
        mode => mode.parse().map(Some),
    }
}

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
    /// Connections per worker relaying at once (each holds an upstream socket and two pipes);
    /// a client that sends its first bytes beyond it is turned away. `--connections-max` unless
    /// the open-files limit lowers it.
    pub relays_per_worker_max: usize,
    /// How long an upstream that failed a connect is skipped.
    pub down_backoff: Duration,
    /// How soon an upstream must send its first byte after the client's first bytes reached
    /// it; `None`: no bound but the idle timeout.
    pub answer_timeout: Option<Duration>,
    /// After SIGTERM, how long relays get to finish.
    pub drain_timeout: Duration,
    /// Most upstreams tried for one client.
    pub attempts_max: usize,
    /// How splices are issued; `None` picks per driver ([`SpliceMode::default_for`]).
    pub splice: Option<SpliceMode>,
}

/// The default answer timeout: well above the slowest answer an instance gives while it works.
/// rinha-api answers 503 after waiting 2 s for an account's lock; a durable write on this
/// project's disks takes 0.2-3 ms at the median and tail, tens of ms at worst under load (see
/// BENCHMARKS.md), and a slow network disk's flush stays far below a second. An instance silent
/// for 5 s is frozen or dying.
const ANSWER_TIMEOUT_DEFAULT_MS: u64 = 5_000;

/// How long startup keeps retrying upstream host names that do not resolve yet (containers
/// started together register their names in DNS a moment apart).
const RESOLVE_WAIT_MAX: Duration = Duration::from_secs(30);

impl Config {
    /// Builds the configuration from the parsed flags, resolving the addresses.
    pub fn from_args(args: &Args) -> Result<Config, String> {
        // Required unless --healthcheck is given, which clap would only express by naming
        // healthcheck in a string.
        let listen = args
            .listen
            .as_deref()
            .ok_or("missing --listen (or RINHA_LB_LISTEN)")?;
        let listen = parse_addr("--listen", listen)?;
        if args.upstream.is_empty() {
            return Err("missing --upstream (or RINHA_LB_UPSTREAMS)".to_string());
        }
        let mut upstreams = Vec::new();
        for text in &args.upstream {
            upstreams.push(parse_addr("--upstream", text)?);
        }
        Ok(Config {
            listen,
            attempts_max: upstreams.len().min(crate::upstreams::PLAN_MAX),
            upstreams,
            workers: args.workers,
            connect_timeout: Duration::from_millis(args.connect_timeout_ms),
            idle_timeout: Duration::from_millis(args.idle_timeout_ms),
            connections_per_worker_max: args.connections_max,
            relays_per_worker_max: args.connections_max,
            down_backoff: Duration::from_millis(args.down_backoff_ms),
            answer_timeout: (args.answer_timeout_ms > 0)
                .then(|| Duration::from_millis(args.answer_timeout_ms)),
            drain_timeout: Duration::from_millis(args.drain_timeout_ms),
            splice: args.splice,
        })
    }
}

fn parse_addr(flag: &str, text: &str) -> Result<Addr, String> {
    let started = std::time::Instant::now();
    loop {
        match Addr::parse(text) {
            Ok(addr) => return Ok(addr),
            Err(rinha_rt::AddrError::Unresolved(_)) if started.elapsed() < RESOLVE_WAIT_MAX => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => return Err(format!("invalid {flag} {text:?}: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_documents_these_flags() {
        let readme = include_str!("../../../README.md");
        rinha_rt::flags::table::assert_documented::<super::Args>(
            readme,
            &["rinha-lb", "both servers"],
        );
    }
}
