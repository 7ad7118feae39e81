//! `rinha-rt`: the process bootstrap shared by `rinha-api` and `rinha-lb`.
//!
//! It knows how to start a thread-per-core server and nothing about what the server says:
//! no HTTP, no storage. A binary uses it in this order:
//!
//! 1. [`flags::parse_or_exit`] reads flags with environment fallbacks;
//! 2. [`cpus_available`] gives the default worker count (affinity mask capped by the cgroup
//!    CPU quota);
//! 3. [`bind_listeners`] binds every listen address once per worker in the main thread, so
//!    "address in use" fails startup before any thread exists;
//! 4. [`launch`] starts one thread per worker, each with its own monoio runtime (io_uring, or
//!    epoll when io_uring is refused or `RINHA_DRIVER=epoll`), prints the startup line through
//!    the callback, waits for SIGTERM/SIGINT and stops the workers through [`Shutdown`];
//! 5. each worker runs [`accept_until_shutdown`] on its listeners, with its server's
//!    [`AcceptPolicy`] (connection cap, accept errors), then drains by waiting, bounded, for a
//!    [`LiveCount`] of its connections or requests to reach zero.
//!
//! Architecture invariant: this crate has no knowledge of HTTP, accounts or balancing.

mod accept;
mod addr;
mod cpus;
mod driver;
pub mod flags;
mod launch;
mod limits;
mod listen;
mod signals;
mod stream;

pub use accept::{accept_until_shutdown, AcceptPolicy, LiveCount, LiveGuard, Sockets, WhenFull};
pub use addr::{join_addrs, Addr, AddrError};
pub use cpus::{cpus_available, parse_cfs, parse_cpu_max};
pub use driver::{build_runtime, Driver, DriverPref, DriverPrefError, Runtime, DRIVER_ENV};
pub use launch::{
    launch, spawn_workers, LaunchError, LaunchOptions, Shutdown, WorkerContext, Workers,
    RUNTIME_END_MARGIN,
};
pub use limits::{
    cap_connections, connections_per_worker_fit, raise_nofile_limit, reserve_descriptor_table,
    ConnectionsCap, DescriptorBudget, DescriptorShortage, CONNECTIONS_PER_WORKER_MIN,
    DESCRIPTOR_TABLE_RESERVED, LISTENER_DESCRIPTORS, MARGIN_DESCRIPTORS, METRICS_DESCRIPTORS,
    RUNTIME_DESCRIPTORS, STDIO_DESCRIPTORS,
};
pub use listen::{
    bind_listeners, bind_tcp, AsyncListener, BindError, Listener, LISTEN_BACKLOG_MAX,
};
pub use stream::Stream;

/// The startup line: `<name> <version> driver=<d> workers=<n> listen=<a,b> <extra>`.
pub fn startup_line(
    name: &str,
    version: &str,
    driver: Driver,
    workers: usize,
    listen: &[Addr],
    extra: &str,
) -> String {
    let mut line = format!(
        "{name} {version} driver={driver} workers={workers} listen={}",
        join_addrs(listen)
    );
    if !extra.is_empty() {
        line.push(' ');
        line.push_str(extra);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_line_table() {
        #[track_caller]
        fn check(extra: &str, expected: &str) {
            let listen = [
                Addr::parse("127.0.0.1:9999").unwrap(),
                Addr::parse("unix:/s").unwrap(),
            ];
            assert_eq!(
                startup_line("rinha-lb", "0.1.0", Driver::IoUring, 2, &listen, extra),
                expected
            );
        }
        check(
            "",
            "rinha-lb 0.1.0 driver=io_uring workers=2 listen=127.0.0.1:9999,unix:/s",
        );
        check(
            "upstreams=a:1",
            "rinha-lb 0.1.0 driver=io_uring workers=2 listen=127.0.0.1:9999,unix:/s upstreams=a:1",
        );
    }
}
