//! The per-worker server: accept loops, connections, and the request handler.
//!
//! Each worker thread runs one [`Service`] on its own monoio runtime. A connection owns a set of
//! reusable buffers (taken from the worker's pool and given back when it closes) and runs one
//! loop: answer every complete request already buffered, in order, into one write buffer; write
//! that batch with one call; read more. Pipelined requests are therefore answered in order with
//! one write per batch, and a single request costs one read and one write.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::time::Instant;
use rinha_rt::{AsyncListener, Shutdown, Stream};

use crate::body::{parse_transaction, BodyError};
use crate::http::{
    self, ChunkedState, Framing, HttpError, Method, Persistence, Progress, Status, HTTP_DATE_BYTES,
};
use crate::json;
use crate::ledger::{now_us, AppendError, Invalid, ReadError, Statement, Worker};
use crate::limits::{
    CONNECTIONS_MAX, DRAIN_TIMEOUT, HEAD_BYTES_MAX, IDLE_TIMEOUT, LINGER_BYTES_MAX, LINGER_TIMEOUT,
    POOLED_BUFFERS_MAX, READ_BUFFER_BYTES_MAX, READ_BUFFER_BYTES_MIN, REQUEST_TIMEOUT,
    WRITE_BUFFER_FLUSH_BYTES,
};
use crate::route::{route, Resource};

/// The state one worker thread shares between its connections.
pub struct Service {
    worker: Worker,
    /// Set once shutdown was asked: responses then say `Connection: close`.
    draining: Cell<bool>,
    /// Open connections, bounded by `CONNECTIONS_MAX`.
    connections: Cell<usize>,
    /// Connections in the middle of a request (input buffered or a response unwritten).
    busy: Cell<usize>,
    /// Whether a storage failure was already reported on stderr.
    unavailable_reported: Cell<bool>,
    /// The `Date` header value and the second it was formatted for.
    date: Cell<(i64, [u8; HTTP_DATE_BYTES])>,
    pool: RefCell<Vec<Buffers>>,
}

/// The reusable buffers of one connection.
struct Buffers {
    /// Received bytes not yet consumed start at `Connection::start`.
    read: Vec<u8>,
    /// Responses not yet written.
    write: Vec<u8>,
    /// A decoded chunked body.
    body: Vec<u8>,
    /// The JSON body of the response being built.
    json: Vec<u8>,
    /// The statement being read.
    statement: Statement,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            read: Vec::with_capacity(READ_BUFFER_BYTES_MIN),
            write: Vec::with_capacity(READ_BUFFER_BYTES_MIN),
            body: Vec::new(),
            json: Vec::with_capacity(READ_BUFFER_BYTES_MIN),
            statement: Statement::default(),
        }
    }
}

impl Service {
    /// A service over this thread's storage handle.
    pub fn new(worker: Worker) -> Service {
        Service {
            worker,
            draining: Cell::new(false),
            connections: Cell::new(0),
            busy: Cell::new(0),
            unavailable_reported: Cell::new(false),
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
    fn http_date(&self) -> [u8; HTTP_DATE_BYTES] {
        let now = now_us().div_euclid(1_000_000);
        let (second, text) = self.date.get();
        if second == now {
            return text;
        }
        let text = http::http_date(now);
        self.date.set((now, text));
        text
    }

    fn take_buffers(&self) -> Buffers {
        self.pool.borrow_mut().pop().unwrap_or_else(Buffers::new)
    }

    fn give_back(&self, mut buffers: Buffers) {
        let mut pool = self.pool.borrow_mut();
        if pool.len() < POOLED_BUFFERS_MAX {
            buffers.read.clear();
            buffers.write.clear();
            pool.push(buffers);
        }
    }

    fn report_unavailable(&self, error: &dyn std::fmt::Display) {
        if !self.unavailable_reported.replace(true) {
            eprintln!("rinha-api: storage unavailable, answering 503: {error}");
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

/// A request's facts, copied out of the head so the read buffer can be borrowed again.
#[derive(Clone, Copy)]
struct RequestLine {
    method: Method,
    resource: Resource,
    http_1_0: bool,
    keep_alive: bool,
}

/// What is known of the request at `start` while it is incomplete, so that each read only
/// looks at the new bytes; reset once the request is answered.
#[derive(Default)]
struct PendingRequest {
    /// The parsed head, once complete.
    head: Option<HeadInfo>,
    /// Bytes of an incomplete head already searched for its blank line.
    head_scanned: usize,
    /// Progress of a chunked body.
    chunked: ChunkedState,
    /// Whether `100 Continue` was sent.
    continue_sent: bool,
    /// When the request must be complete; set when it is first seen incomplete.
    deadline: Option<Instant>,
}

/// The facts of a complete head.
#[derive(Clone, Copy)]
struct HeadInfo {
    line: RequestLine,
    head_bytes: usize,
    expect_continue: bool,
    framing: Framing,
}

/// What the read buffer holds at `start`.
enum Framed {
    /// A whole request.
    Request(FramedRequest),
    /// The start of a request (or nothing): more input is needed.
    Incomplete {
        /// Whether the client waits for `100 Continue` before sending the rest.
        expect_continue: bool,
    },
    /// Bytes that are not a valid request.
    Invalid(HttpError),
}

/// The extent of a complete request in the read buffer.
struct FramedRequest {
    line: RequestLine,
    /// The body's range in the read buffer, or `None` when it was decoded into `Buffers::body`.
    body: Option<std::ops::Range<usize>>,
    /// Where the next request starts.
    end: usize,
}

/// One accepted connection.
struct Connection {
    stream: Stream,
    buffers: Buffers,
    /// INVARIANT: `start <= buffers.read.len()`; bytes before it are consumed.
    start: usize,
    /// What is known of the incomplete request at `start`.
    pending: PendingRequest,
    /// Whether this connection counts in `Service::busy`.
    busy: bool,
    service: Rc<Service>,
}

impl Connection {
    async fn serve(stream: Stream, service: Rc<Service>) {
        let buffers = service.take_buffers();
        let mut connection = Connection {
            stream,
            buffers,
            start: 0,
            pending: PendingRequest::default(),
            busy: false,
            service,
        };
        let reusable = connection.run().await;
        connection.set_busy(false);
        let service = Rc::clone(&connection.service);
        service.connections.set(service.connections.get() - 1);
        if reusable {
            service.give_back(connection.buffers);
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
                Instant::now() + IDLE_TIMEOUT
            } else {
                *self
                    .pending
                    .deadline
                    .get_or_insert_with(|| Instant::now() + REQUEST_TIMEOUT)
            };
            match self.read_more(deadline).await {
                ReadOutcome::Data => self.set_busy(true),
                ReadOutcome::Closed => return true,
                ReadOutcome::TimedOut if idle => return false,
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
        if self.busy != busy {
            self.busy = busy;
            let count = self.service.busy.get();
            self.service
                .busy
                .set(if busy { count + 1 } else { count - 1 });
        }
    }

    /// Answers every complete request in the read buffer, appending the responses.
    async fn answer_buffered(&mut self) -> Next {
        loop {
            let request = match self.frame_next() {
                Framed::Request(request) => request,
                Framed::Incomplete { expect_continue } => return self.await_body(expect_continue),
                Framed::Invalid(error) => return self.reject(error),
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

    /// Finds the extent of the request at `start`, decoding a chunked body on the way.
    fn frame_next(&mut self) -> Framed {
        let head = match self.pending.head {
            Some(head) => head,
            None => match self.parse_pending_head() {
                Ok(Some(head)) => *self.pending.head.insert(head),
                Ok(None) => {
                    return Framed::Incomplete {
                        expect_continue: false,
                    }
                }
                Err(error) => return Framed::Invalid(error),
            },
        };
        let incomplete = Framed::Incomplete {
            expect_continue: head.expect_continue,
        };
        let body_start = self.start + head.head_bytes;
        let wire = &self.buffers.read[body_start..];
        let line = head.line;
        match head.framing {
            Framing::Length(length) if wire.len() >= length => Framed::Request(FramedRequest {
                line,
                body: Some(body_start..body_start + length),
                end: body_start + length,
            }),
            Framing::Length(_) => incomplete,
            Framing::Chunked => {
                let chunked = &mut self.pending.chunked;
                match http::decode_chunked(wire, &mut self.buffers.body, chunked) {
                    Ok(Progress::Complete(wire_bytes)) => Framed::Request(FramedRequest {
                        line,
                        body: None,
                        end: body_start + wire_bytes,
                    }),
                    Ok(Progress::Partial) => incomplete,
                    Err(error) => Framed::Invalid(error),
                }
            }
        }
    }

    /// Parses the head of the request at `start`, if it has arrived whole.
    fn parse_pending_head(&mut self) -> Result<Option<HeadInfo>, HttpError> {
        let pending = &self.buffers.read[self.start..];
        // Once a first look found the head incomplete (and not invalid so far), it is parsed
        // again only when its blank line may have arrived: a head trickling in byte by byte
        // then costs linear time, not quadratic.
        let scanned = self.pending.head_scanned;
        if scanned > 0 && pending.len() < HEAD_BYTES_MAX && !http::may_end_head(pending, scanned) {
            self.pending.head_scanned = pending.len();
            return Ok(None);
        }
        let head = match http::parse_head(pending)? {
            Progress::Complete(head) => head,
            Progress::Partial => {
                self.pending.head_scanned = pending.len();
                return Ok(None);
            }
        };
        Ok(Some(HeadInfo {
            line: RequestLine {
                method: head.method,
                resource: route(head.path),
                http_1_0: head.http_1_0,
                keep_alive: head.keep_alive,
            },
            head_bytes: head.head_bytes,
            expect_continue: head.expect_continue,
            framing: head.framing,
        }))
    }

    /// Answers one framed request into the write buffer; returns whether to close after it.
    async fn answer_one(&mut self, request: FramedRequest) -> bool {
        let buffers = &mut self.buffers;
        let body = match request.body {
            Some(range) => &buffers.read[range],
            None => &buffers.body[..],
        };
        let line = request.line;
        let answer = answer(
            &self.service,
            line,
            body,
            &mut buffers.json,
            &mut buffers.statement,
        )
        .await;
        let close = !line.keep_alive || answer.close || self.service.draining.get();
        let persistence = match (close, line.http_1_0) {
            (true, _) => Persistence::Close,
            (false, true) => Persistence::KeepAlive,
            (false, false) => Persistence::Default,
        };
        http::write_response(
            &mut buffers.write,
            answer.status,
            persistence,
            answer.allow,
            &self.service.http_date(),
            &buffers.json,
        );
        close
    }

    /// The body of the request at `start` is incomplete: send `100 Continue` if it is awaited.
    fn await_body(&mut self, expect_continue: bool) -> Next {
        if expect_continue && !self.pending.continue_sent {
            self.pending.continue_sent = true;
            self.buffers.write.extend_from_slice(http::CONTINUE);
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
        let buffers = &mut self.buffers;
        buffers.json.clear();
        json::write_error(&mut buffers.json, error.message());
        http::write_response(
            &mut buffers.write,
            error.status(),
            Persistence::Close,
            None,
            &self.service.http_date(),
            &buffers.json,
        );
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
            // The client stopped reading; the buffer went with the cancelled write.
            Err(_elapsed) => false,
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
                ReadOutcome::TimedOut => return false,
            }
        }
        true
    }
}

/// The outcome of one request.
struct Answer {
    status: Status,
    allow: Option<&'static str>,
    /// Close the connection after this response.
    close: bool,
}

impl Answer {
    fn status(status: Status) -> Answer {
        Answer {
            status,
            allow: None,
            close: false,
        }
    }
}

/// Answers one request: writes the JSON body into `json` and returns the status.
async fn answer(
    service: &Service,
    line: RequestLine,
    body: &[u8],
    json: &mut Vec<u8>,
    statement: &mut Statement,
) -> Answer {
    json.clear();
    let (account_id, allowed) = match line.resource {
        Resource::Transactions(id) => (id, Method::Post),
        Resource::Statement(id) => (id, Method::Get),
        Resource::NoSuchAccount => return not_found(json, "account not found"),
        Resource::NotFound => return not_found(json, "not found"),
    };
    // An unknown account answers 404 whatever the method or body: the resource does not exist.
    if service.worker.db().limit(account_id).is_none() {
        return not_found(json, "account not found");
    }
    if line.method != allowed {
        json::write_error(json, "method not allowed");
        return Answer {
            status: Status::MethodNotAllowed,
            allow: line.resource.allow(),
            close: false,
        };
    }
    match line.resource {
        Resource::Transactions(_) => append(service, account_id, body, json).await,
        _ => read_statement(service, account_id, json, statement).await,
    }
}

fn not_found(json: &mut Vec<u8>, message: &str) -> Answer {
    json::write_error(json, message);
    Answer::status(Status::NotFound)
}

async fn append(service: &Service, account_id: u32, body: &[u8], json: &mut Vec<u8>) -> Answer {
    let transaction = match parse_transaction(body) {
        Ok(transaction) => transaction,
        Err(error) => {
            json::write_error(
                json,
                match error {
                    BodyError::Syntax => "body is not a JSON document",
                    BodyError::Invalid => "invalid transaction: valor, tipo or descricao",
                },
            );
            return Answer::status(Status::UnprocessableContent);
        }
    };
    match service
        .worker
        .append(account_id, &transaction.as_transaction())
        .await
    {
        Ok(appended) => {
            json::write_appended(json, appended.limit, appended.balance);
            Answer::status(Status::Ok)
        }
        Err(AppendError::UnknownAccount) => not_found(json, "account not found"),
        Err(AppendError::LimitExceeded) => rejected(json, "limit exceeded"),
        Err(AppendError::Overflow) => rejected(json, "balance overflow"),
        Err(AppendError::Invalid(Invalid::Value)) => {
            rejected(json, "valor must be a positive integer")
        }
        Err(AppendError::Invalid(Invalid::Description)) => {
            rejected(json, "descricao must have 1 to 10 characters")
        }
        Err(AppendError::Unavailable(error)) => unavailable(service, json, &error),
    }
}

fn rejected(json: &mut Vec<u8>, message: &str) -> Answer {
    json::write_error(json, message);
    Answer::status(Status::UnprocessableContent)
}

fn unavailable(service: &Service, json: &mut Vec<u8>, error: &dyn std::fmt::Display) -> Answer {
    service.report_unavailable(error);
    json::write_error(json, "storage unavailable");
    Answer {
        status: Status::ServiceUnavailable,
        allow: None,
        close: true,
    }
}

async fn read_statement(
    service: &Service,
    account_id: u32,
    json: &mut Vec<u8>,
    statement: &mut Statement,
) -> Answer {
    match service.worker.statement(account_id, statement).await {
        Ok(()) => {
            json::write_statement(json, statement, now_us());
            Answer::status(Status::Ok)
        }
        Err(ReadError::UnknownAccount) => not_found(json, "account not found"),
        Err(ReadError::Unavailable(error)) => unavailable(service, json, &error),
    }
}
