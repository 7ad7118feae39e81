//! `rinha-lb` binary: flags, listeners, workers, signals.

use std::sync::Arc;

use rinha_lb::config::{Args, Config};
use rinha_lb::relay::SpliceMode;
use rinha_lb::{run_worker, Balancer};
use rinha_rt::{flags, LaunchOptions};

const NAME: &str = "rinha-lb";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() {
    let args: Args = flags::parse_or_exit();
    if let Some(target) = &args.healthcheck {
        let addr = rinha_rt::Addr::parse(target).unwrap_or_else(|e| flags::exit_usage(NAME, &e));
        match probe(&addr) {
            Ok(()) => std::process::exit(0),
            Err(error) => {
                eprintln!("{NAME}: {addr}: {error}");
                std::process::exit(1);
            }
        }
    }
    let config = Config::from_args(&args).unwrap_or_else(|e| flags::exit_usage(NAME, &e));
    let driver = args.server.driver;
    let workers = config.workers.unwrap_or_else(rinha_rt::cpus_available);
    rinha_rt::raise_nofile_limit();
    rinha_rt::reserve_descriptor_table(rinha_rt::DESCRIPTOR_TABLE_RESERVED);
    let listeners = match rinha_rt::bind_listeners(std::slice::from_ref(&config.listen), workers) {
        Ok(listeners) => listeners,
        Err(error) => {
            eprintln!("{NAME}: {error}");
            std::process::exit(1);
        }
    };
    let mut options = LaunchOptions::new(NAME, workers);
    options.driver = driver;
    // The workers' drain, and a second to end their runtimes.
    options.shutdown_grace = config.drain_timeout + std::time::Duration::from_secs(1);
    let listen = vec![config.listen.clone()];
    let upstreams = rinha_rt::join_addrs(&config.upstreams);
    let splice = config.splice;
    let balancer = Arc::new(Balancer::new(config));
    if let Some(addr) = args.metrics {
        serve_metrics(addr, &balancer);
    }
    let result = rinha_rt::launch(
        options,
        listeners,
        move |context| run_worker(context, Arc::clone(&balancer)),
        |driver| {
            let splice = splice.unwrap_or(SpliceMode::default_for(driver));
            let extra = format!("upstreams={upstreams} splice={splice}");
            rinha_rt::print_startup_line(NAME, VERSION, driver, workers, &listen, &extra);
        },
    );
    if let Err(error) = result {
        eprintln!("{NAME}: {error}");
        std::process::exit(1);
    }
}

/// Binds the metrics listener (a bad address fails start-up) and answers scrapes from a thread
/// of its own.
fn serve_metrics(addr: std::net::SocketAddr, balancer: &Arc<Balancer>) {
    let fail = |error: std::io::Error| -> ! {
        eprintln!("{NAME}: --metrics {addr}: {error}");
        std::process::exit(1);
    };
    let listener = std::net::TcpListener::bind(addr).unwrap_or_else(|e| fail(e));
    let balancer = Arc::clone(balancer);
    let render = Arc::new(move || balancer.metrics.render(&balancer.upstreams));
    rinha_metrics::serve(listener, "rinha-lb-metrics", render).unwrap_or_else(|e| fail(e));
}

/// How long `--healthcheck` waits for the connection.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A layer-4 probe: the balancer is healthy when its listener accepts a connection. It says
/// nothing about the upstreams, which the balancer itself fails over between.
fn probe(addr: &rinha_rt::Addr) -> std::io::Result<()> {
    match addr {
        rinha_rt::Addr::Tcp(socket_addr) => {
            std::net::TcpStream::connect_timeout(socket_addr, PROBE_TIMEOUT).map(drop)
        }
        rinha_rt::Addr::Unix(path) => std::os::unix::net::UnixStream::connect(path).map(drop),
    }
}
