//! What a worker's connections share: the handlers over its storage handle, whether it drains,
//! how many connections are busy, its metrics, the `Date` header value and a pool of
//! connection buffers.
//!
//! One [`Service`] per worker thread, made by the accept loop (`server.rs`) and lent to every
//! connection it accepts (`connection.rs`); neither of those is known here.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use rinha_rt::LiveCount;

use crate::handler::{Handlers, Scratch};
use crate::ledger::{now_us, Worker};
use crate::limits::{POOLED_BUFFERS_MAX, READ_BUFFER_BYTES_MIN};
use crate::metrics::WorkerMetrics;
use crate::response::{http_date, HTTP_DATE_BYTES};

/// The state one worker thread shares between its connections.
pub struct Service {
    /// The request handlers, over this thread's storage handle.
    pub(crate) handlers: Handlers,
    /// Set once shutdown was asked: responses then say `Connection: close`.
    pub(crate) draining: Cell<bool>,
    /// Connections in the middle of a request (input buffered or a response unwritten).
    pub(crate) busy: LiveCount,
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
            busy: LiveCount::new(),
            date: Cell::new((i64::MIN, [0; HTTP_DATE_BYTES])),
            pool: RefCell::new(Vec::new()),
        }
    }

    /// The current `Date` header value, formatted at most once a second per worker.
    pub(crate) fn http_date(&self) -> [u8; HTTP_DATE_BYTES] {
        let now = now_us().div_euclid(1_000_000);
        let (second, text) = self.date.get();
        if second == now {
            return text;
        }
        let text = http_date(now);
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

/// The reusable buffers of one connection, lent by the pool of its worker's [`Service`].
pub struct Buffers {
    /// Received bytes not yet consumed start at `Connection::start`.
    pub(crate) read: Vec<u8>,
    /// Responses not yet written.
    pub(crate) write: Vec<u8>,
    /// A decoded chunked body.
    pub(crate) body: Vec<u8>,
    /// The JSON body of the response being built.
    pub(crate) json: Vec<u8>,
    /// What the handlers keep between requests.
    pub(crate) scratch: Scratch,
}

impl Buffers {
    /// Fresh buffers, sized for a typical request.
    pub fn new() -> Buffers {
        Buffers {
            read: Vec::with_capacity(READ_BUFFER_BYTES_MIN),
            write: Vec::with_capacity(READ_BUFFER_BYTES_MIN),
            body: Vec::new(),
            json: Vec::with_capacity(READ_BUFFER_BYTES_MIN),
            scratch: Scratch::default(),
        }
    }

    /// Forgets the bytes of the connection that used these buffers, keeping their capacity.
    pub fn clear(&mut self) {
        self.read.clear();
        self.write.clear();
    }
}
