//! Every limit of the server in one place. The unit is the last word of each name.

use std::time::Duration;

/// Largest request head (request line and header fields, with the blank line) accepted; a
/// larger one answers 431.
pub const HEAD_BYTES_MAX: usize = 8 * 1024;

/// Largest request body accepted, after chunked decoding; a larger one answers 413 without the
/// server reading it.
pub const BODY_BYTES_MAX: usize = 4 * 1024;

/// Largest chunked body on the wire (sizes, extensions, CRLFs and trailers included). A body of
/// `BODY_BYTES_MAX` bytes sent one byte per chunk takes six bytes a chunk, so this leaves room for
/// any honest client while bounding the read buffer.
pub const CHUNKED_WIRE_BYTES_MAX: usize = 8 * BODY_BYTES_MAX;

/// Longest chunk-size line (size and extensions) or trailer line of a chunked body. A line is
/// scanned again on each read until it ends, so its bound is what keeps a body trickling in
/// byte by byte from costing more than linear time.
pub const CHUNK_LINE_BYTES_MAX: usize = 256;

/// Most header fields in one request; more answer 431.
pub const HEADERS_MAX: usize = 64;

/// Largest read buffer of a connection: one complete request always fits in it.
pub const READ_BUFFER_BYTES_MAX: usize = HEAD_BYTES_MAX + CHUNKED_WIRE_BYTES_MAX;

/// Initial read buffer size; it grows (up to `READ_BUFFER_BYTES_MAX`) only for large requests.
pub const READ_BUFFER_BYTES_MIN: usize = 2 * 1024;

/// Pending pipelined responses are written out once they reach this size, so a client that
/// pipelines many requests without reading cannot make the server buffer without bound.
pub const WRITE_BUFFER_FLUSH_BYTES: usize = 64 * 1024;

/// Open connections per worker thread; connections accepted beyond it are closed at once. At
/// start it is lowered to what the open-files limit leaves room for (`rinha_rt::cap_connections`
/// with the descriptor figures below).
pub const CONNECTIONS_MAX: usize = 4096;

/// Descriptors one open connection holds: its socket.
pub const CONNECTION_DESCRIPTORS: u64 = 1;

/// Descriptors the storage holds per account for the whole process: the account file's
/// description that recovery used, kept open (espora's `Db`), and the shared-state file.
pub const STORAGE_ACCOUNT_DESCRIPTORS: u64 = 2;

/// Descriptors each worker's storage handle holds per account: its own description of the
/// account file (so that its flocks exclude the other workers) and the copy its I/O lane syncs
/// through (espora's `Db::worker`).
pub const STORAGE_WORKER_ACCOUNT_DESCRIPTORS: u64 = 2;

/// Descriptors each worker's storage handle waits on: its io_uring and the copy its runtime
/// polls, or with helper threads the two ends of their wake-up socket pair.
pub const STORAGE_WORKER_WAIT_DESCRIPTORS: u64 = 2;

/// Connection buffers each worker keeps for reuse once their connections close.
pub const POOLED_BUFFERS_MAX: usize = 256;

/// A request, head and body, must arrive within this time of its first byte (slowloris: 408).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// An idle keep-alive connection is closed after this time without a request, unless
/// `--idle-timeout-ms` says otherwise (tests shorten it).
pub const IDLE_TIMEOUT_DEFAULT_MS: u64 = 60_000;

/// After SIGTERM, connections still busy after this time are abandoned and the worker exits.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(4);

/// After SIGTERM, how long the main thread waits for the workers before the process exits
/// anyway: their drain, then the time to end their runtimes.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

const _: () = assert!(
    DRAIN_TIMEOUT.as_millis() + rinha_rt::RUNTIME_END_MARGIN.as_millis()
        <= SHUTDOWN_GRACE.as_millis(),
    "the drain and the runtime's end must fit in the shutdown grace"
);

/// After an error response, unread input is drained for at most this long before closing, so
/// the kernel does not reset the connection before the client has read the response.
pub const LINGER_TIMEOUT: Duration = Duration::from_millis(500);

/// At most this many bytes are drained while lingering.
pub const LINGER_BYTES_MAX: usize = 64 * 1024;
