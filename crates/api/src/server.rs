//! The per-worker server: the state a worker's connections share, and its accept loops.
//!
//! Each worker thread runs one [`Service`] on its own monoio runtime. The connections are
//! [`crate::connection`]'s, the answers [`crate::handler`]'s.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use monoio::time::Instant;
use rinha_rt::{AsyncListener, Shutdown, Stream};

use crate::connection::{Buffers, Connection};
use crate::handler::Handlers;
use crate::http::{self, HTTP_DATE_BYTES};
use crate::ledger::{now_us, Worker};
use crate::limits::{CONNECTIONS_MAX, DRAIN_TIMEOUT, POOLED_BUFFERS_MAX};

/// The state one worker thread shares between its connections.
pub struct Service {
    /// The request handlers, over this thread's storage handle.
    pub(crate) handlers: Handlers,
    /// Set once shutdown was asked: responses then say `Connection: close`.
    pub(crate) draining: Cell<bool>,
    /// Open connections, bounded by `CONNECTIONS_MAX`.
    pub(crate) connections: Cell<usize>,
    /// Connections in the middle of a request (input buffered or a response unwritten).
    pub(crate) busy: Cell<usize>,
    /// The `Date` header value and the second it was formatted for.
    date: Cell<(i64, [u8; HTTP_DATE_BYTES])>,
    pool: RefCell<Vec<Buffers>>,
}

impl Service {
    /// A service over this thread's storage handle, which it passes on to the handlers.
    pub fn new(worker: Worker) -> Service {
        Service {
            handlers: Handlers::new(worker),
            draining: Cell::new(false),
            connections: Cell::new(0),
            busy: Cell::new(0),
            date: Cell::new((i64::MIN, [0; HTTP_DATE_BYTES])),
            pool: RefCell::new(Vec::new()),
        }
    }

    /// Accepts connections on `listener` until `shutdown` fires.
    pub async fn accept_loop(self: Rc<Self>, listener: AsyncListener, shutdown: Shutdown) {
        let stop = shutdown.wait();
        let mut stop = std::pin::pin!(stop);
        loop {
            monoio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(stream) => self.admit(stream),
                    Err(error) => accept_failed(error).await,
                },
                _ = &mut stop => return,
            }
        }
    }

    /// Starts serving an accepted connection, or closes it at once when the worker is full.
    fn admit(self: &Rc<Self>, stream: Stream) {
        if self.connections.get() >= CONNECTIONS_MAX {
            // Closing is kinder than queueing: the client learns at once and may retry, and the
            // worker's memory stays bounded.
            return;
        }
        // Responses are written whole; Nagle's algorithm would only delay them.
        let _ = stream.set_nodelay(true);
        // Counted here, not when the task first runs, so a burst of accepts respects the cap.
        self.connections.set(self.connections.get() + 1);
        monoio::spawn(Connection::serve(stream, Rc::clone(self)));
    }

    /// Stops answering with keep-alive and waits (at most `DRAIN_TIMEOUT`) until no connection
    /// is in the middle of a request. Idle keep-alive connections are then simply dropped.
    pub async fn drain(&self) {
        self.draining.set(true);
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.busy.get() > 0 && Instant::now() < deadline {
            monoio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
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
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    monoio::time::sleep(std::time::Duration::from_millis(20)).await;
}
