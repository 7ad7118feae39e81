//! The per-worker server: the state a worker's connections share, how it accepts and drains.
//!
//! Each worker thread runs one [`Service`] on its own monoio runtime. The accept loop and the
//! connection cap are rinha-rt's ([`rinha_rt::accept_until_shutdown`]) with this server's
//! policy; the connections are `connection.rs`'s, the answers `handler.rs`'s.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rinha_rt::{AcceptPolicy, AsyncListener, Gauge, Shutdown, Sockets, WhenFull};

use crate::connection::{Buffers, Connection};
use crate::handler::Handlers;
use crate::http::{self, HTTP_DATE_BYTES};
use crate::ledger::{now_us, Worker};
use crate::limits::{CONNECTIONS_MAX, DRAIN_TIMEOUT, POOLED_BUFFERS_MAX};
use crate::metrics::WorkerMetrics;

/// How long accepting pauses after an error other than a client lost in the queue.
const ACCEPT_PAUSE: Duration = Duration::from_millis(20);

/// How this server accepts; the connection cap is lowered at start to what the open-files limit
/// leaves room for (see [`Service::accept_until_shutdown`]).
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

/// The state one worker thread shares between its connections.
pub struct Service {
    /// The request handlers, over this thread's storage handle.
    pub(crate) handlers: Handlers,
    /// Set once shutdown was asked: responses then say `Connection: close`.
    pub(crate) draining: Cell<bool>,
    /// Open connections, bounded by the worker's cap (at most `CONNECTIONS_MAX`).
    connections: Gauge,
    /// Connections in the middle of a request (input buffered or a response unwritten).
    pub(crate) busy: Gauge,
    /// This worker's live metrics.
    pub(crate) metrics: Arc<WorkerMetrics>,
    /// How long a keep-alive connection may stay idle between requests.
    pub(crate) idle_timeout: Duration,
    /// The `Date` header value and the second it was formatted for.
    date: Cell<(i64, [u8; HTTP_DATE_BYTES])>,
    pool: RefCell<Vec<Buffers>>,
}

impl Service {
    /// A service over this thread's storage handle, which it passes on to the handlers, counting
    /// into this thread's `metrics`, closing connections idle for `idle_timeout`.
    pub fn new(worker: Worker, metrics: Arc<WorkerMetrics>, idle_timeout: Duration) -> Service {
        Service {
            metrics,
            idle_timeout,
            handlers: Handlers::new(worker),
            draining: Cell::new(false),
            connections: Gauge::new(),
            busy: Gauge::new(),
            date: Cell::new((i64::MIN, [0; HTTP_DATE_BYTES])),
            pool: RefCell::new(Vec::new()),
        }
    }

    /// Accepts connections on every listener until `shutdown` fires. A client beyond
    /// `connections_max` open connections (at most `CONNECTIONS_MAX`: the cap the open-files
    /// limit leaves room for, `rinha_rt::cap_connections`) is closed at once.
    pub async fn accept_until_shutdown(
        self: &Rc<Self>,
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
        let service = Rc::clone(self);
        let serve = move |stream, open| Connection::serve(stream, open, Rc::clone(&service));
        rinha_rt::accept_until_shutdown(listeners, policy, &self.connections, shutdown, serve)
            .await;
    }

    /// Stops answering with keep-alive and waits (at most `DRAIN_TIMEOUT`) until no connection
    /// is in the middle of a request. Idle keep-alive connections are then simply dropped.
    pub async fn drain(&self) {
        self.draining.set(true);
        self.busy.drained(DRAIN_TIMEOUT).await;
    }

    /// The current `Date` header value, formatted at most once a second per worker.
    pub(crate) fn http_date(&self) -> [u8; HTTP_DATE_BYTES] {
        let now = now_us().div_euclid(1_000_000);
        let (second, text) = self.date.get();
        if second == now {
            return text;
        }
        let text = http::http_date(now);
        self.date.set((now, text));
        text
    }

    /// Buffers for a new connection, reused from one that closed when the pool has some.
    pub(crate) fn take_buffers(&self) -> Buffers {
        self.pool.borrow_mut().pop().unwrap_or_else(Buffers::new)
    }

    /// Keeps a closed connection's buffers for a later one, up to the pool's size.
    pub(crate) fn give_back(&self, mut buffers: Buffers) {
        let mut pool = self.pool.borrow_mut();
        if pool.len() < POOLED_BUFFERS_MAX {
            buffers.clear();
            pool.push(buffers);
        }
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
