//! The per-worker server: how it accepts connections and how it drains.
//!
//! Each worker thread runs one [`Server`] on its own monoio runtime. The accept loop and the
//! connection cap are rinha-rt's ([`rinha_rt::accept_until_shutdown`]) with this server's
//! policy; each connection accepted is served by `connection.rs`, over the state the worker's
//! connections share (`service.rs`), and answered by `handler.rs`.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rinha_rt::{AcceptPolicy, AsyncListener, LiveCount, Shutdown, Sockets, WhenFull};

use crate::connection::Connection;
use crate::ledger::Worker;
use crate::limits::{CONNECTIONS_MAX, DRAIN_TIMEOUT};
use crate::metrics::WorkerMetrics;
use crate::service::Service;

/// How long accepting pauses after an error other than a client lost in the queue.
const ACCEPT_PAUSE: Duration = Duration::from_millis(20);

/// How this server accepts; the connection cap is lowered at start to what the open-files limit
/// leaves room for (see [`Server::accept_until_shutdown`]).
const ACCEPT: AcceptPolicy = AcceptPolicy {
    connections_max: CONNECTIONS_MAX,
    when_full: WhenFull::Close,
    sockets: Sockets::Runtime,
    pause_after: accept_pause,
    // A client that arrives during the drain is refused at once (a balancer then tries the
    // other instance) instead of waiting in the backlog until the process exits, which is what
    // closing alone did on io_uring.
    shut_listeners: true,
};

/// One worker thread's server: its connections and what they share.
pub struct Server {
    /// What the connections share, lent to each.
    service: Rc<Service>,
    /// Open connections, bounded by the worker's cap (at most `CONNECTIONS_MAX`).
    connections: LiveCount,
}

impl Server {
    /// A server over this thread's storage handle, which it passes on to the handlers, counting
    /// into this thread's `metrics`, closing connections idle for `idle_timeout`.
    pub fn new(worker: Worker, metrics: Arc<WorkerMetrics>, idle_timeout: Duration) -> Server {
        Server {
            service: Rc::new(Service::new(worker, metrics, idle_timeout)),
            connections: LiveCount::new(),
        }
    }

    /// Accepts connections on every listener until `shutdown` fires. A client beyond
    /// `connections_max` open connections (at most `CONNECTIONS_MAX`: the cap the open-files
    /// limit leaves room for, `rinha_rt::cap_connections`) is closed at once.
    pub async fn accept_until_shutdown(
        &self,
        listeners: Vec<AsyncListener>,
        shutdown: &Shutdown,
        connections_max: usize,
    ) {
        assert!(
            (1..=CONNECTIONS_MAX).contains(&connections_max),
            "a worker's cap is lowered, never raised: {connections_max}"
        );
        let policy = AcceptPolicy {
            connections_max,
            ..ACCEPT
        };
        let service = Rc::clone(&self.service);
        let serve = move |stream, open| Connection::serve(stream, open, Rc::clone(&service));
        rinha_rt::accept_until_shutdown(listeners, policy, &self.connections, shutdown, serve)
            .await;
    }

    /// Stops answering with keep-alive and waits (at most `DRAIN_TIMEOUT`) until no connection
    /// is in the middle of a request. Idle keep-alive connections are then simply dropped.
    pub async fn drain(&self) {
        self.service.draining.set(true);
        self.service.busy.drained(DRAIN_TIMEOUT).await;
    }
}

/// Accept errors are transient (a connection reset before accept, a full file table): keep
/// accepting, after a pause when the cause is a shortage that a spin would not cure.
fn accept_pause(error: &io::Error) -> Option<Duration> {
    match error.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => None,
        _ => Some(ACCEPT_PAUSE),
    }
}
