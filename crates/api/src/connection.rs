//! One accepted connection: its buffers, the loop that answers what it has buffered, the
//! writes, the timeouts and the linger before a close.
//!
//! A connection owns a set of reusable buffers (taken from the worker's pool and given back
//! when it closes) and runs one loop: answer every complete request already buffered, in order,
//! into one write buffer; write that batch with one call; read more. Pipelined requests are
//! therefore answered in order with one write per batch, and a single request costs one read
//! and one write.

use std::rc::Rc;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::time::Instant;
use rinha_rt::{LiveGuard, Stream};

use crate::framing::{Buffered, Framer, Request};
use crate::http::{HttpError, Method};
use crate::json;
use crate::limits::{
    LINGER_BYTES_MAX, LINGER_TIMEOUT, READ_BUFFER_BYTES_MAX, READ_BUFFER_BYTES_MIN,
    REQUEST_TIMEOUT, WRITE_BUFFER_FLUSH_BYTES,
};
use crate::metrics::Route;
use crate::response::{self, Content, Persistence, Response};
use crate::service::{Buffers, Service};

/// What the connection does after answering what it had buffered.
enum Next {
    /// Read more input.
    Read,
    /// Write what is pending and close.
    Close,
    /// Write what is pending, then drain unread input briefly before closing.
    CloseLingering,
}

/// How a read ended.
enum ReadOutcome {
    /// Bytes arrived.
    Data,
    /// The peer closed, or the socket failed.
    Closed,
    /// The deadline passed; the read buffer went with the cancelled read.
    TimedOut,
}

/// What is known of the request at `start` while it is incomplete; reset once the request is
/// answered.
#[derive(Default)]
struct PendingRequest {
    /// Its framing so far.
    framer: Framer,
    /// Whether `100 Continue` was sent.
    continue_sent: bool,
    /// When the request must be complete; set when it is first seen incomplete.
    deadline: Option<Instant>,
}

/// One accepted connection.
pub struct Connection {
    stream: Stream,
    buffers: Buffers,
    /// INVARIANT: `start <= buffers.read.len()`; bytes before it are consumed.
    start: usize,
    /// What is known of the incomplete request at `start`.
    pending: PendingRequest,
    /// Counts this connection in `Service::busy` while it is in the middle of a request.
    busy: Option<LiveGuard>,
    /// Counts this connection as open until it is dropped.
    _open: LiveGuard,
    service: Rc<Service>,
}

impl Connection {
    /// Serves `stream` until it ends, then gives its buffers back to the worker's pool. `open`
    /// counts it among the worker's open connections until then.
    pub async fn serve(stream: Stream, open: LiveGuard, service: Rc<Service>) {
        let _counted = rinha_metrics::OpenConnection::new(&service.metrics);
        let buffers = service.take_buffers();
        let mut connection = Connection {
            stream,
            buffers,
            start: 0,
            pending: PendingRequest::default(),
            busy: None,
            _open: open,
            service,
        };
        let reusable = connection.run().await;
        connection.set_busy(false);
        if reusable {
            connection.service.give_back(connection.buffers);
        }
    }

    /// Serves requests until the connection ends; returns whether the buffers can be reused.
    async fn run(&mut self) -> bool {
        loop {
            let next = self.answer_buffered().await;
            if !self.flush().await {
                return false;
            }
            match next {
                Next::Read => {}
                Next::Close => return true,
                Next::CloseLingering => return self.linger().await,
            }
            let idle = self.start == self.buffers.read.len();
            if idle {
                self.set_busy(false);
                if self.service.draining.get() {
                    return true;
                }
            }
            let deadline = if idle {
                Instant::now() + self.service.idle_timeout
            } else {
                *self
                    .pending
                    .deadline
                    .get_or_insert_with(|| Instant::now() + REQUEST_TIMEOUT)
            };
            match self.read_more(deadline).await {
                ReadOutcome::Data => self.set_busy(true),
                ReadOutcome::Closed => return true,
                ReadOutcome::TimedOut if idle => {
                    // A FIN, so that the client's next request on it is refused at once
                    // instead of vanishing into a socket nobody reads.
                    self.stream.shut_down_now();
                    return false;
                }
                ReadOutcome::TimedOut => {
                    // The read buffer went with the cancelled read; lingering needs one.
                    self.buffers.read = Vec::with_capacity(READ_BUFFER_BYTES_MIN);
                    self.start = 0;
                    self.write_error(HttpError::Timeout);
                    // A slow client is likely still sending: linger so that the unread bytes
                    // do not turn the close into a reset that destroys the 408.
                    return self.flush().await && self.linger().await;
                }
            }
        }
    }

    fn set_busy(&mut self, busy: bool) {
        match (busy, &self.busy) {
            (true, None) => self.busy = Some(self.service.busy.enter()),
            (false, Some(_)) => self.busy = None,
            _ => {}
        }
    }

    /// Answers every complete request in the read buffer, appending the responses.
    async fn answer_buffered(&mut self) -> Next {
        loop {
            let buffers = &mut self.buffers;
            let buffered = self
                .pending
                .framer
                .frame(&buffers.read, self.start, &mut buffers.body);
            let request = match buffered {
                Buffered::Request(request) => request,
                Buffered::Incomplete { expect_continue } => {
                    return self.await_body(expect_continue)
                }
                Buffered::Invalid(error) => return self.reject(error),
            };
            let end = request.end;
            let close = self.answer_one(request).await;
            self.start = end;
            self.pending = PendingRequest::default();
            if close {
                return if self.start == self.buffers.read.len() {
                    Next::Close
                } else {
                    Next::CloseLingering
                };
            }
            if self.buffers.write.len() >= WRITE_BUFFER_FLUSH_BYTES && !self.flush().await {
                return Next::Close;
            }
        }
    }

    /// Answers one complete request into the write buffer; returns whether to close after it.
    async fn answer_one(&mut self, request: Request) -> bool {
        let started = Instant::now();
        let buffers = &mut self.buffers;
        let body = match request.body {
            Some(range) => &buffers.read[range],
            None => &buffers.body[..],
        };
        let facts = request.facts;
        let answer = self
            .service
            .handlers
            .answer(
                facts.method,
                facts.resource,
                body,
                &mut buffers.json,
                &mut buffers.scratch,
            )
            .await;
        let route = Route::of(facts.resource);
        self.service
            .metrics
            .answered(route, answer.status, started.elapsed());
        let close = !facts.keep_alive || answer.close || self.service.draining.get();
        let persistence = match (close, facts.http_1_0) {
            (true, _) => Persistence::Close,
            (false, true) => Persistence::KeepAlive,
            (false, false) => Persistence::Default,
        };
        let content = match facts.method {
            Method::Head => Content::Omitted,
            _ => Content::Json(&buffers.json),
        };
        let response = Response {
            status: answer.status,
            persistence,
            allow: answer.allow,
            date: &self.service.http_date(),
            content,
        };
        response::write_response(&mut buffers.write, &response);
        close
    }

    /// The body of the request at `start` is incomplete: send `100 Continue` if it is awaited.
    fn await_body(&mut self, expect_continue: bool) -> Next {
        if expect_continue && !self.pending.continue_sent {
            self.pending.continue_sent = true;
            self.buffers.write.extend_from_slice(response::CONTINUE);
        }
        Next::Read
    }

    /// Answers a framing error; the connection closes after it, since where the next request
    /// would start is unknown.
    fn reject(&mut self, error: HttpError) -> Next {
        self.write_error(error);
        Next::CloseLingering
    }

    fn write_error(&mut self, error: HttpError) {
        self.service.metrics.rejected(error.status());
        let buffers = &mut self.buffers;
        buffers.json.clear();
        json::write_error(&mut buffers.json, error.message());
        let response = Response {
            status: error.status(),
            persistence: Persistence::Close,
            allow: None,
            date: &self.service.http_date(),
            // The connection closes after a framing error, so a body cannot be mistaken for
            // the next response even if the request was a HEAD.
            content: Content::Json(&buffers.json),
        };
        response::write_response(&mut buffers.write, &response);
    }

    /// Writes the pending responses in one call (the kernel may split it); false on failure.
    async fn flush(&mut self) -> bool {
        if self.buffers.write.is_empty() {
            return true;
        }
        let pending = std::mem::take(&mut self.buffers.write);
        let write = self.stream.write_all(pending);
        match monoio::time::timeout(REQUEST_TIMEOUT, write).await {
            Ok((result, mut written)) => {
                written.clear();
                self.buffers.write = written;
                result.is_ok()
            }
            // The client stopped reading; the buffer went with the cancelled write. The
            // shutdown ends the write wherever the cancellation does not reach it.
            Err(_elapsed) => {
                self.stream.shut_down_now();
                false
            }
        }
    }

    /// Reads more input after the unconsumed bytes, until `deadline`.
    async fn read_more(&mut self, deadline: Instant) -> ReadOutcome {
        let read = &mut self.buffers.read;
        if self.start > 0 {
            read.drain(..self.start);
            self.start = 0;
        }
        if read.len() == read.capacity() {
            // The parser rejects anything that would not fit `READ_BUFFER_BYTES_MAX`, so a full
            // buffer below that size only needs to grow. A full buffer at that size would be a
            // bug in the limits; the connection is dropped rather than the process aborted.
            if read.capacity() >= READ_BUFFER_BYTES_MAX {
                debug_assert!(false, "a pending request outgrew READ_BUFFER_BYTES_MAX");
                return ReadOutcome::Closed;
            }
            let grown = (read.capacity() * 2).clamp(READ_BUFFER_BYTES_MIN, READ_BUFFER_BYTES_MAX);
            read.reserve_exact(grown - read.len());
        }
        let buffer = std::mem::take(read);
        let filled = buffer.len();
        let reading = self.stream.read(buffer.slice_mut(filled..));
        match monoio::time::timeout_at(deadline, reading).await {
            Ok((result, slice)) => {
                self.buffers.read = slice.into_inner();
                match result {
                    Ok(0) | Err(_) => ReadOutcome::Closed,
                    Ok(_) => ReadOutcome::Data,
                }
            }
            Err(_elapsed) => ReadOutcome::TimedOut,
        }
    }

    /// Closes the sending side, then reads and discards input for a short while, so that the
    /// response is not destroyed by a reset caused by unread input (the kernel answers close()
    /// with RST when received bytes were never read). Returns whether the buffers are intact.
    async fn linger(&mut self) -> bool {
        if self.stream.shutdown().await.is_err() {
            return true;
        }
        let deadline = Instant::now() + LINGER_TIMEOUT;
        let mut drained = 0;
        while drained < LINGER_BYTES_MAX {
            self.buffers.read.clear();
            self.start = 0;
            match self.read_more(deadline).await {
                ReadOutcome::Data => drained += self.buffers.read.len(),
                ReadOutcome::Closed => return true,
                ReadOutcome::TimedOut => {
                    self.stream.shut_down_now();
                    return false;
                }
            }
        }
        true
    }
}
