//! Where the request at the start of a connection's unconsumed input ends.
//!
//! A [`Framer`] keeps what earlier reads already learnt of an incomplete request (its parsed
//! head, how much of an unfinished head was searched, the progress of a chunked body), so that
//! each read only looks at the new bytes. It tells what the input holds as [`Buffered`]: a
//! whole [`Request`], the start of one, or bytes that are not one.

use std::ops::Range;

use crate::chunked::{decode_chunked, ChunkedState};
use crate::http::{self, BodyLength, HttpError, Method, Progress};
use crate::limits::HEAD_BYTES_MAX;
use crate::route::{route, Resource};

/// What a request's answer depends on, copied out of its head (method and version from the
/// request line, persistence from the fields, the resource routed from the path) so that the
/// read buffer can be borrowed again.
#[derive(Clone, Copy)]
pub struct RequestFacts {
    /// The method.
    pub method: Method,
    /// What the path names.
    pub resource: Resource,
    /// The request said `HTTP/1.0`.
    pub http_1_0: bool,
    /// The client asked to keep the connection open (or did not ask to close it).
    pub keep_alive: bool,
}

/// What the read buffer holds at the request's start.
pub enum Buffered {
    /// A whole request.
    Request(Request),
    /// The start of a request (or nothing): more input is needed.
    Incomplete {
        /// Whether the client waits for `100 Continue` before sending the rest.
        expect_continue: bool,
    },
    /// Bytes that are not a valid request.
    Invalid(HttpError),
}

/// A complete request in the read buffer: what its answer depends on, and its extent.
pub struct Request {
    /// What its answer depends on.
    pub facts: RequestFacts,
    /// The body's range in the read buffer, or `None` when it was decoded into the body buffer
    /// given to [`Framer::frame`].
    pub body: Option<Range<usize>>,
    /// Where the next request starts.
    pub end: usize,
}

/// What is known of the incomplete request at the start of the unconsumed input; reset (with
/// `Framer::default()`) once that request is answered.
#[derive(Default)]
pub struct Framer {
    /// The parsed head, once complete.
    head: Option<KnownHead>,
    /// Bytes of an incomplete head already searched for its blank line.
    head_scanned: usize,
    /// Progress of a chunked body.
    chunked: ChunkedState,
}

/// What the framer keeps of a complete head while the rest of its request arrives.
#[derive(Clone, Copy)]
struct KnownHead {
    facts: RequestFacts,
    head_bytes: usize,
    expect_continue: bool,
    body_length: BodyLength,
}

impl Framer {
    /// Finds the extent of the request that starts at `read[start..]`, decoding a chunked body
    /// into `body` on the way. Positions in the result are indices into `read`.
    pub fn frame(&mut self, read: &[u8], start: usize, body: &mut Vec<u8>) -> Buffered {
        let head = match self.head {
            Some(head) => head,
            None => match self.parse_head(&read[start..]) {
                Ok(Some(head)) => *self.head.insert(head),
                Ok(None) => {
                    return Buffered::Incomplete {
                        expect_continue: false,
                    }
                }
                Err(error) => return Buffered::Invalid(error),
            },
        };
        let incomplete = Buffered::Incomplete {
            expect_continue: head.expect_continue,
        };
        let body_start = start + head.head_bytes;
        let wire = &read[body_start..];
        let facts = head.facts;
        match head.body_length {
            BodyLength::Bytes(length) if wire.len() >= length => Buffered::Request(Request {
                facts,
                body: Some(body_start..body_start + length),
                end: body_start + length,
            }),
            BodyLength::Bytes(_) => incomplete,
            BodyLength::Chunked => match decode_chunked(wire, body, &mut self.chunked) {
                Ok(Progress::Complete(wire_bytes)) => Buffered::Request(Request {
                    facts,
                    body: None,
                    end: body_start + wire_bytes,
                }),
                Ok(Progress::Partial) => incomplete,
                Err(error) => Buffered::Invalid(error),
            },
        }
    }

    /// Parses the head at the start of `pending`, if it has arrived whole.
    fn parse_head(&mut self, pending: &[u8]) -> Result<Option<KnownHead>, HttpError> {
        // Once a first look found the head incomplete (and not invalid so far), it is parsed
        // again only when its blank line may have arrived: a head trickling in byte by byte
        // then costs linear time, not quadratic.
        let scanned = self.head_scanned;
        if scanned > 0 && pending.len() < HEAD_BYTES_MAX && !http::may_end_head(pending, scanned) {
            self.head_scanned = pending.len();
            return Ok(None);
        }
        let head = match http::parse_head(pending)? {
            Progress::Complete(head) => head,
            Progress::Partial => {
                self.head_scanned = pending.len();
                return Ok(None);
            }
        };
        Ok(Some(KnownHead {
            facts: RequestFacts {
                method: head.method,
                resource: route(head.path),
                http_1_0: head.http_1_0,
                keep_alive: head.keep_alive,
            },
            head_bytes: head.head_bytes,
            expect_continue: head.expect_continue,
            body_length: head.body_length,
        }))
    }
}
