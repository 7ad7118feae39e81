//! `rinha-api`: one API instance. See `--help` and the configuration table of README.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rinha_api::healthcheck;
use rinha_api::ledger::{Backend, Db, Faults, Options};
use rinha_api::limits::{
    CONNECTIONS_MAX, CONNECTION_DESCRIPTORS, IDLE_TIMEOUT_DEFAULT_MS, SHUTDOWN_GRACE,
    STORAGE_ACCOUNT_DESCRIPTORS, STORAGE_WORKER_ACCOUNT_DESCRIPTORS,
    STORAGE_WORKER_WAIT_DESCRIPTORS,
};
use rinha_api::metrics::{Metrics, WorkerMetrics};
use rinha_api::server::Server;
use rinha_rt::flags::{at_least_one, ServerArgs};
use rinha_rt::{Addr, DescriptorBudget, LaunchOptions, WorkerContext};

const PROGRAM: &str = "rinha-api";
const FAULT_ENV: &str = "RINHA_FAULT_SYNC_FAILS_AFTER";
const STATS_ENV: &str = "RINHA_API_STATS";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// rinha-api: the crebitos HTTP API over the espora storage engine
#[derive(clap::Parser, Debug)]
#[command(
    name = PROGRAM,
    version,
    override_usage = "rinha-api --data-dir DIR --listen ADDR [--listen ADDR ...] [--workers N]\n       \
                      rinha-api --healthcheck ADDR",
    after_help = AFTER_HELP
)]
struct Args {
    /// Directory of the account files, created (with the five seeded accounts) on first start
    #[arg(long, value_name = "DIR", env = "RINHA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to serve, HOST:PORT or unix:/path/to.sock; repeatable (the variable: a
    /// comma-separated list)
    #[arg(long, value_name = "ADDR", env = "RINHA_LISTEN", value_delimiter = ',')]
    listen: Vec<String>,
    /// Worker threads, each with its own runtime; default: the CPUs this process may use (the
    /// affinity mask capped by the cgroup CPU quota, rounded up)
    #[arg(long, value_name = "N", env = "RINHA_WORKERS", value_parser = at_least_one)]
    workers: Option<usize>,
    #[command(flatten)]
    server: ServerArgs,
    /// Serve live metrics in the Prometheus text format on HOST:PORT (its own listener, never
    /// an API address); off when not given
    #[arg(long, value_name = "ADDR", env = "RINHA_METRICS")]
    metrics: Option<std::net::SocketAddr>,
    /// Close a keep-alive connection idle this long between requests
    #[arg(
        long,
        value_name = "MS",
        env = "RINHA_IDLE_TIMEOUT_MS",
        default_value_t = IDLE_TIMEOUT_DEFAULT_MS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    idle_timeout_ms: u64,
    /// Ask GET /clientes/1/extrato on ADDR, exit 0 on a 200 and 1 otherwise
    #[arg(long, value_name = "ADDR")]
    healthcheck: Option<String>,
}

const AFTER_HELP: &str = "\
Each flag falls back to its environment variable; the flag wins.

Environment only:
  RINHA_API_STATS=1   print the storage counters (appends, fdatasyncs) on stderr at a clean
                      exit, for benchmarks (bench/run.sh reads them)
  RINHA_FAULT_SYNC_FAILS_AFTER=N
                      testing only: every fdatasync after the first N fails, to check that
                      the server stops acknowledging (503) once durability is lost

Stops on SIGTERM or SIGINT after finishing the requests in flight.";

fn main() {
    // Every client connection is a descriptor: be bounded by the operator's hard limit, not by
    // a small default soft limit (1024 under many shells and init systems). The reliability
    // tests (crates/chaos/tests/idle.rs) found this instance stuck at 1024 while the balancer,
    // which raised its own, kept handing it connections.
    let nofile = rinha_rt::raise_nofile_limit();
    rinha_rt::reserve_descriptor_table(rinha_rt::DESCRIPTOR_TABLE_RESERVED);
    let args: Args = rinha_rt::flags::parse_or_exit();
    if let Some(target) = &args.healthcheck {
        let addr = Addr::parse(target).unwrap_or_else(|error| fail(&error));
        match healthcheck::probe(&addr) {
            Ok(()) => std::process::exit(0),
            Err(error) => fail(&error),
        }
    }
    // Required unless --healthcheck is given, which clap would only express by naming
    // healthcheck in a string.
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| usage(&"missing --data-dir (or RINHA_DATA_DIR)"));
    if args.listen.is_empty() {
        usage(&"missing --listen (or RINHA_LISTEN)");
    }
    let listen: Vec<Addr> = args
        .listen
        .iter()
        .map(|text| {
            Addr::parse(text).unwrap_or_else(|error| fail(&format!("--listen {text}: {error}")))
        })
        .collect();
    let workers = rinha_rt::flags::worker_count(args.workers);
    let driver = args.server.driver;
    // Each worker serves what the open-files limit leaves room for, at most CONNECTIONS_MAX.
    let budget = descriptor_budget(listen.len(), args.metrics.is_some());
    let cap = rinha_rt::cap_connections(CONNECTIONS_MAX, nofile, budget, workers)
        .unwrap_or_else(|error| fail(&error));
    let connections_max = cap.connections_max;
    let idle_timeout = Duration::from_millis(args.idle_timeout_ms);
    // A missing directory is created (with its parents), as `espora init` does; anything that
    // still cannot be a data directory fails startup with one line.
    if data_dir.exists() && !data_dir.is_dir() {
        fail(&format!(
            "data directory {} exists and is not a directory",
            data_dir.display()
        ));
    }
    if let Err(error) = std::fs::create_dir_all(&data_dir) {
        fail(&format!(
            "cannot create data directory {}: {error}",
            data_dir.display()
        ));
    }
    let db = Db::open(&data_dir, storage_options())
        .unwrap_or_else(|error| fail(&format!("cannot open data directory: {error}")));
    let db = Arc::new(db);
    let counted = Arc::clone(&db);
    let metrics = Arc::new(Metrics::new(Arc::clone(&db)));
    if let Some(addr) = args.metrics {
        serve_metrics(addr, &metrics);
    }
    let listeners = rinha_rt::bind_listeners(&listen, workers).unwrap_or_else(|error| fail(&error));
    let options = LaunchOptions {
        name: PROGRAM.to_string(),
        workers,
        driver,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    // Decided once for every worker: espora waits on an io_uring of its own where the kernel
    // has what it needs (Linux 6.7 or newer, io_uring allowed), on helper threads otherwise.
    let backend = Backend::detect();
    let extra = format!(
        "data_dir={} espora={} {cap}",
        data_dir.display(),
        backend.name()
    );
    let launched = rinha_rt::launch(
        options,
        listeners,
        move |context| {
            let db = Arc::clone(&db);
            run_worker(
                context,
                db,
                metrics.worker(),
                backend,
                connections_max,
                idle_timeout,
            )
        },
        |driver| {
            let line = rinha_rt::startup_line(PROGRAM, VERSION, driver, workers, &listen, &extra);
            eprintln!("{line}");
        },
    );
    if let Err(error) = launched {
        fail(&error);
    }
    print_stats(&counted);
}

/// With `RINHA_API_STATS=1`, one line of storage counters at a clean exit: fdatasyncs per
/// append is how well group commit shares syncs, which only the process itself can count
/// (io_uring fsyncs are not system calls that strace or perf could see). Off by default, so
/// that a server stays quiet unless something goes wrong.
fn print_stats(db: &Db) {
    if std::env::var(STATS_ENV).is_ok_and(|value| value == "1") {
        let stats = db.stats();
        eprintln!(
            "{PROGRAM}: stopped: appends={} fdatasyncs={} synced_records={} lock_sleeps={} \
             sync_sleeps={} takeovers={}",
            stats.appends,
            stats.syncs,
            stats.synced_records,
            stats.lock_sleeps,
            stats.sync_sleeps,
            stats.takeovers
        );
    }
}

/// Storage options: the challenge's accounts and statement length, and the fault injection of
/// the integration tests (the only configurable part).
fn storage_options() -> Options {
    let mut options = Options {
        accounts: rinha_api::contract::ACCOUNTS.to_vec(),
        statement_records: rinha_api::contract::STATEMENT_TRANSACTIONS,
        ..Options::default()
    };
    if let Ok(text) = std::env::var(FAULT_ENV) {
        let successful_syncs = text
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|error| usage(&format!("{FAULT_ENV}={text:?}: {error}")));
        options.faults = Faults::fail_sync_after(successful_syncs);
    }
    options
}

/// The descriptors this server holds: one per connection; per worker, a listener per address,
/// the client accepted beyond the cap only to be closed (one per listener at a time), its
/// runtime and its storage handle; for the process, standard I/O, the margin, the storage's
/// per-account files and the metrics listener when there is one.
fn descriptor_budget(listen_addresses: usize, metrics: bool) -> DescriptorBudget {
    let accounts = rinha_api::contract::ACCOUNTS.len() as u64;
    let addresses = listen_addresses as u64;
    let server = DescriptorBudget::server(CONNECTION_DESCRIPTORS, listen_addresses);
    let server = if metrics {
        server.with_metrics()
    } else {
        server
    };
    DescriptorBudget {
        worker_descriptors: server.worker_descriptors
            + addresses
            + accounts * STORAGE_WORKER_ACCOUNT_DESCRIPTORS
            + STORAGE_WORKER_WAIT_DESCRIPTORS,
        process_descriptors: server.process_descriptors + accounts * STORAGE_ACCOUNT_DESCRIPTORS,
        ..server
    }
}

/// One worker: its storage handle, an accept loop per address (at most `connections_max`
/// connections open), then the drain at shutdown.
async fn run_worker(
    context: WorkerContext,
    db: Arc<Db>,
    metrics: Arc<WorkerMetrics>,
    backend: Backend,
    connections_max: usize,
    idle_timeout: Duration,
) -> Result<(), String> {
    // espora waits for the disk and for the other instances on its own io_uring, polled by
    // whichever driver the runtime has, or on helper threads where io_uring is refused.
    let worker = match db.worker(backend) {
        Ok(worker) => worker,
        // The probe at start made a ring; this one was refused (a memory-lock limit reached
        // by the rings of several workers, say): this worker waits on helper threads instead.
        Err(error) if backend == Backend::IoUring => {
            eprintln!(
                "{PROGRAM}: worker {}: espora's io_uring refused ({error}); helper threads \
                 instead",
                context.index
            );
            db.worker(Backend::Threads)
                .map_err(|error| format!("cannot open the account files: {error}"))?
        }
        Err(error) => return Err(format!("cannot open the account files: {error}")),
    };
    let server = Server::new(worker, metrics, idle_timeout);
    let mut listeners = Vec::with_capacity(context.listeners.len());
    for listener in context.listeners {
        let listener = listener
            .into_monoio()
            .map_err(|error| format!("cannot attach listener: {error}"))?;
        listeners.push(listener);
    }
    server
        .accept_until_shutdown(listeners, &context.shutdown, connections_max)
        .await;
    server.drain().await;
    Ok(())
}

/// Binds the metrics listener (a bad address fails start-up) and answers scrapes from a thread
/// of its own.
fn serve_metrics(addr: std::net::SocketAddr, metrics: &Arc<Metrics>) {
    let listener = std::net::TcpListener::bind(addr)
        .unwrap_or_else(|error| fail(&format!("--metrics {addr}: {error}")));
    let metrics = Arc::clone(metrics);
    rinha_metrics::serve(
        listener,
        "rinha-api-metrics",
        Arc::new(move || metrics.render()),
    )
    .unwrap_or_else(|error| fail(&format!("--metrics {addr}: {error}")));
}

/// Prints one error line and exits with status 1.
fn fail(error: &dyn std::fmt::Display) -> ! {
    eprintln!("{PROGRAM}: {error}");
    std::process::exit(1);
}

/// Prints a usage error and exits with status 2.
fn usage(error: &dyn std::fmt::Display) -> ! {
    rinha_rt::flags::exit_usage(PROGRAM, error)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_documents_these_flags() {
        let readme = include_str!("../../../README.md");
        rinha_rt::flags::table::assert_documented::<super::Args>(
            readme,
            &["rinha-api", "both servers"],
        );
    }
}
