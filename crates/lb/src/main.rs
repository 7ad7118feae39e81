//! `rinha-lb` binary: flags, listeners, workers, signals.

use std::sync::Arc;

use rinha_lb::config::{Args, Config};
use rinha_lb::relay::SpliceMode;
use rinha_lb::{run_worker, Balancer};
use rinha_rt::{flags, ConnectionsCap, DescriptorBudget, LaunchOptions};

const NAME: &str = "rinha-lb";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Descriptors a relayed connection holds, in either splice mode: the client's socket, the
/// upstream's, and two pipes of two ends each, one per direction (`relay::PipeSet`: monoio
/// pipes in `op` mode, raw nonblocking ones in `direct` mode). The worker's pool of clean pipe
/// sets adds nothing: a set is made only when the pool is empty, so the sets in existence never
/// outnumber the relays that held one at the same time, which the relay cap bounds.
const RELAY_DESCRIPTORS: u64 = 6;

/// Descriptors a client that has not sent its first bytes yet holds: its socket.
const WAITING_CLIENT_DESCRIPTORS: u64 = 1;

/// Descriptors set aside per relay when the open-files limit is shared out: its own, and as
/// many again for clients still waiting to send (one each). Relays get at most half of the
/// room, so that thousands of silent clients never leave no room for relays (they hold no
/// pipes), nor relays none for them.
const RELAY_SHARE_DESCRIPTORS: u64 = 2 * RELAY_DESCRIPTORS;

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
    let mut config = Config::from_args(&args).unwrap_or_else(|e| flags::exit_usage(NAME, &e));
    let driver = args.server.driver;
    let workers = flags::worker_count(config.workers);
    let nofile = rinha_rt::raise_nofile_limit();
    // Each worker serves what the open-files limit leaves room for, at most --connections-max:
    // beyond it accepting pauses, and beyond the relay cap a client that sends is turned away,
    // where running out of descriptors would fail clients at random.
    let budget = |per_connection| {
        let budget = DescriptorBudget::server(per_connection, 1);
        match args.metrics {
            Some(_) => budget.with_metrics(),
            None => budget,
        }
    };
    let asked = config.connections_per_worker_max;
    let relays = rinha_rt::cap_connections(asked, nofile, budget(RELAY_SHARE_DESCRIPTORS), workers)
        .unwrap_or_else(|error| {
            eprintln!("{NAME}: {error}");
            std::process::exit(1);
        })
        .connections_max;
    // The room at one descriptor per connection, less what the relays hold beyond their socket.
    let room =
        rinha_rt::connections_per_worker_fit(nofile, budget(WAITING_CLIENT_DESCRIPTORS), workers);
    let relays_extra = (RELAY_DESCRIPTORS - WAITING_CLIENT_DESCRIPTORS) as usize * relays;
    let cap = ConnectionsCap {
        connections_max: room.map_or(asked, |room| room.saturating_sub(relays_extra).min(asked)),
        asked,
        nofile,
    };
    config.connections_per_worker_max = cap.connections_max;
    config.relays_per_worker_max = relays;
    rinha_rt::reserve_descriptor_table(rinha_rt::DESCRIPTOR_TABLE_RESERVED);
    let listeners = match rinha_rt::bind_listeners(std::slice::from_ref(&config.listen), workers) {
        Ok(listeners) => listeners,
        Err(error) => {
            eprintln!("{NAME}: {error}");
            std::process::exit(1);
        }
    };
    let options = LaunchOptions {
        name: NAME.to_string(),
        workers,
        driver,
        shutdown_grace: config.drain_timeout + rinha_rt::RUNTIME_END_MARGIN,
    };
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
            let extra = format!("upstreams={upstreams} {cap} relays-max={relays} splice={splice}");
            eprintln!(
                "{}",
                rinha_rt::startup_line(NAME, VERSION, driver, workers, &listen, &extra)
            );
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
