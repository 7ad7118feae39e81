//! Where the request at the start of a connection's unconsumed input ends.
//!
//! A [`Framer`] keeps what earlier reads already learnt of an incomplete request (its parsed
//! head, how much of an unfinished head was searched, the progress of a chunked body), so that
//! each read only looks at the new bytes.

use std::ops::Range;

use crate::http::{self, ChunkedState, Framing, HttpError, Method, Progress};
use crate::limits::HEAD_BYTES_MAX;
use crate::route::{route, Resource};

/// A request's facts, copied out of the head so the read buffer can be borrowed again.
#[derive(Clone, Copy)]
pub struct RequestLine {
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
pub enum Framed {
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
pub struct FramedRequest {
    /// The request line's facts.
    pub line: RequestLine,
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
    head: Option<HeadInfo>,
    /// Bytes of an incomplete head already searched for its blank line.
    head_scanned: usize,
    /// Progress of a chunked body.
    chunked: ChunkedState,
}

/// The facts of a complete head.
#[derive(Clone, Copy)]
struct HeadInfo {
    line: RequestLine,
    head_bytes: usize,
    expect_continue: bool,
    framing: Framing,
}

impl Framer {
    /// Finds the extent of the request that starts at `read[start..]`, decoding a chunked body
    /// into `body` on the way. Positions in the result are indices into `read`.
    pub fn frame(&mut self, read: &[u8], start: usize, body: &mut Vec<u8>) -> Framed {
        let head = match self.head {
            Some(head) => head,
            None => match self.parse_head(&read[start..]) {
                Ok(Some(head)) => *self.head.insert(head),
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
        let body_start = start + head.head_bytes;
        let wire = &read[body_start..];
        let line = head.line;
        match head.framing {
            Framing::Length(length) if wire.len() >= length => Framed::Request(FramedRequest {
                line,
                body: Some(body_start..body_start + length),
                end: body_start + length,
            }),
            Framing::Length(_) => incomplete,
            Framing::Chunked => match http::decode_chunked(wire, body, &mut self.chunked) {
                Ok(Progress::Complete(wire_bytes)) => Framed::Request(FramedRequest {
                    line,
                    body: None,
                    end: body_start + wire_bytes,
                }),
                Ok(Progress::Partial) => incomplete,
                Err(error) => Framed::Invalid(error),
            },
        }
    }

    /// Parses the head at the start of `pending`, if it has arrived whole.
    fn parse_head(&mut self, pending: &[u8]) -> Result<Option<HeadInfo>, HttpError> {
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
}
