//! HTTP/1.x request framing and response writing.
//!
//! Parsing works on the bytes received so far and keeps "incomplete" apart from "invalid", as
//! httparse does: the caller reads more on [`Progress::Partial`] and answers the error's status
//! (then closes) on `Err`. Any ambiguity about where a request ends is an error, never a guess,
//! because a server and a client that disagree on framing is how requests get smuggled.

use crate::json;
use crate::limits::{BODY_BYTES_MAX, CHUNKED_WIRE_BYTES_MAX, HEADERS_MAX, HEAD_BYTES_MAX};

/// The outcome of parsing bytes that may not hold a whole message yet.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress<T> {
    /// The message is complete.
    Complete(T),
    /// More bytes are needed.
    Partial,
}

/// Request methods the routes care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// Any other method; no route accepts it.
    Other,
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// By `Content-Length` (zero when the header is absent).
    Length(usize),
    /// By `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head, borrowing from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'b> {
    /// The request method.
    pub method: Method,
    /// The request target without its query string.
    pub path: &'b str,
    /// Whether the request is HTTP/1.0 (otherwise HTTP/1.1).
    pub http_1_0: bool,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Whether the client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// How the body is delimited.
    pub framing: Framing,
    /// Length of the head in bytes, blank line included.
    pub head_bytes: usize,
}

/// Why a request cannot be served; each answers its status and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The request head exceeds `HEAD_BYTES_MAX`.
    HeadTooLarge,
    /// The request has more than `HEADERS_MAX` header fields.
    TooManyHeaders,
    /// The request line or a header field is not valid HTTP/1.x syntax.
    Malformed,
    /// The protocol is not HTTP/1.0 or HTTP/1.1.
    UnsupportedVersion,
    /// A `Content-Length` is not a decimal number, or two of them differ.
    InvalidContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` are present: ambiguous framing.
    LengthAndTransferEncoding,
    /// A transfer coding other than one `chunked`.
    UnsupportedTransferEncoding,
    /// The body exceeds `BODY_BYTES_MAX` (or its chunked form `CHUNKED_WIRE_BYTES_MAX`).
    BodyTooLarge,
    /// The chunked encoding of the body is malformed.
    InvalidChunk,
    /// An `Expect` other than `100-continue`.
    ExpectationFailed,
    /// The request did not arrive within `REQUEST_TIMEOUT`.
    Timeout,
}

impl HttpError {
    /// The status answering this error.
    pub fn status(self) -> Status {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => Status::HeaderFieldsTooLarge,
            HttpError::Malformed
            | HttpError::InvalidContentLength
            | HttpError::LengthAndTransferEncoding
            | HttpError::InvalidChunk => Status::BadRequest,
            HttpError::UnsupportedVersion => Status::VersionNotSupported,
            HttpError::UnsupportedTransferEncoding => Status::NotImplemented,
            HttpError::BodyTooLarge => Status::ContentTooLarge,
            HttpError::ExpectationFailed => Status::ExpectationFailed,
            HttpError::Timeout => Status::RequestTimeout,
        }
    }

    /// A short human-readable message for the error body.
    pub fn message(self) -> &'static str {
        match self {
            HttpError::HeadTooLarge => "request head too large",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::Malformed => "malformed request",
            HttpError::UnsupportedVersion => "unsupported HTTP version",
            HttpError::InvalidContentLength => "invalid Content-Length",
            HttpError::LengthAndTransferEncoding => "Content-Length with Transfer-Encoding",
            HttpError::UnsupportedTransferEncoding => "unsupported Transfer-Encoding",
            HttpError::BodyTooLarge => "request body too large",
            HttpError::InvalidChunk => "malformed chunked body",
            HttpError::ExpectationFailed => "unsupported expectation",
            HttpError::Timeout => "request timeout",
        }
    }
}

/// Response statuses the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    ContentTooLarge,
    ExpectationFailed,
    UnprocessableContent,
    HeaderFieldsTooLarge,
    NotImplemented,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    /// The status line, without the trailing CRLF.
    pub fn line(self) -> &'static [u8] {
        match self {
            Status::Ok => b"HTTP/1.1 200 OK",
            Status::BadRequest => b"HTTP/1.1 400 Bad Request",
            Status::NotFound => b"HTTP/1.1 404 Not Found",
            Status::MethodNotAllowed => b"HTTP/1.1 405 Method Not Allowed",
            Status::RequestTimeout => b"HTTP/1.1 408 Request Timeout",
            Status::ContentTooLarge => b"HTTP/1.1 413 Content Too Large",
            Status::ExpectationFailed => b"HTTP/1.1 417 Expectation Failed",
            Status::UnprocessableContent => b"HTTP/1.1 422 Unprocessable Content",
            Status::HeaderFieldsTooLarge => b"HTTP/1.1 431 Request Header Fields Too Large",
            Status::NotImplemented => b"HTTP/1.1 501 Not Implemented",
            Status::ServiceUnavailable => b"HTTP/1.1 503 Service Unavailable",
            Status::VersionNotSupported => b"HTTP/1.1 505 HTTP Version Not Supported",
        }
    }
}

/// The interim response sent when a client expects `100 Continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the `Connection` header of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 default: nothing to say.
    Default,
    /// `Connection: keep-alive`, for HTTP/1.0 clients that asked for it.
    KeepAlive,
    /// `Connection: close`: the server closes after this response.
    Close,
}

/// Appends a complete response with a JSON `body` to `out`. `allow` adds an `Allow` header.
pub fn write_response(
    out: &mut Vec<u8>,
    status: Status,
    persistence: Persistence,
    allow: Option<&str>,
    body: &[u8],
) {
    out.extend_from_slice(status.line());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    json::write_u64(out, body.len() as u64);
    match persistence {
        Persistence::Default => {}
        Persistence::KeepAlive => out.extend_from_slice(b"\r\nConnection: keep-alive"),
        Persistence::Close => out.extend_from_slice(b"\r\nConnection: close"),
    }
    if let Some(allow) = allow {
        out.extend_from_slice(b"\r\nAllow: ");
        out.extend_from_slice(allow.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// The header fields that decide framing and persistence, gathered from a head.
#[derive(Default)]
struct FramingFields {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

/// Parses the request head at the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Result<Progress<Head<'_>>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    let window = &buf[..buf.len().min(HEAD_BYTES_MAX)];
    let head_bytes = match request.parse(window) {
        Ok(httparse::Status::Complete(head_bytes)) => head_bytes,
        Ok(httparse::Status::Partial) if window.len() == HEAD_BYTES_MAX => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Progress::Partial),
        Err(httparse::Error::Version) => return Err(HttpError::UnsupportedVersion),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(_) => return Err(HttpError::Malformed),
    };
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        unreachable!("httparse fills every request line field of a complete head");
    };
    let http_1_0 = version == 0;
    let mut fields = FramingFields::default();
    for header in request.headers.iter() {
        read_field(&mut fields, header.name, header.value)?;
    }
    let framing = match (fields.content_length, fields.transfer_encoding) {
        (Some(_), true) => return Err(HttpError::LengthAndTransferEncoding),
        // HTTP/1.0 has no chunked coding; a 1.0 message carrying one is faulty framing.
        (None, true) if http_1_0 => return Err(HttpError::Malformed),
        (None, true) if !fields.chunked => return Err(HttpError::UnsupportedTransferEncoding),
        (None, true) => Framing::Chunked,
        (Some(length), false) if length > BODY_BYTES_MAX as u64 => {
            return Err(HttpError::BodyTooLarge)
        }
        (Some(length), false) => Framing::Length(length as usize),
        (None, false) => Framing::Length(0),
    };
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    let keep_alive = if http_1_0 {
        fields.keep_alive && !fields.close
    } else {
        !fields.close
    };
    Ok(Progress::Complete(Head {
        method,
        path,
        http_1_0,
        keep_alive,
        // A server must ignore a 100-continue expectation of an HTTP/1.0 request.
        expect_continue: fields.expect_continue && !http_1_0,
        framing,
        head_bytes,
    }))
}

/// Records what one header field says about framing and persistence.
fn read_field(fields: &mut FramingFields, name: &str, value: &[u8]) -> Result<(), HttpError> {
    if name.eq_ignore_ascii_case("content-length") {
        let length = parse_content_length(value)?;
        if fields
            .content_length
            .is_some_and(|previous| previous != length)
        {
            return Err(HttpError::InvalidContentLength);
        }
        fields.content_length = Some(length);
    } else if name.eq_ignore_ascii_case("transfer-encoding") {
        fields.transfer_encoding = true;
        for coding in value.split(|&byte| byte == b',').map(trim) {
            // Only a single `chunked` is understood; `chunked` twice, or any other coding,
            // would need decoding the server does not do.
            if !coding.eq_ignore_ascii_case(b"chunked") || fields.chunked {
                return Err(HttpError::UnsupportedTransferEncoding);
            }
            fields.chunked = true;
        }
    } else if name.eq_ignore_ascii_case("connection") {
        for option in value.split(|&byte| byte == b',').map(trim) {
            fields.close |= option.eq_ignore_ascii_case(b"close");
            fields.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
        }
    } else if name.eq_ignore_ascii_case("expect") {
        if !trim(value).eq_ignore_ascii_case(b"100-continue") {
            return Err(HttpError::ExpectationFailed);
        }
        fields.expect_continue = true;
    }
    Ok(())
}

/// Parses a `Content-Length` value: a decimal number, or a list of equal decimal numbers (which
/// RFC 9110 allows a recipient to accept). A number too large for `u64` saturates, and so is
/// rejected later as too large.
fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    let mut length = None;
    for item in value.split(|&byte| byte == b',').map(trim) {
        if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
            return Err(HttpError::InvalidContentLength);
        }
        let parsed = item.iter().fold(0u64, |total, &digit| {
            total
                .saturating_mul(10)
                .saturating_add(u64::from(digit - b'0'))
        });
        if length.is_some_and(|previous| previous != parsed) {
            return Err(HttpError::InvalidContentLength);
        }
        length = Some(parsed);
    }
    length.ok_or(HttpError::InvalidContentLength)
}

/// Strips optional whitespace (spaces and tabs) from both ends.
fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let start = bytes
        .iter()
        .position(|byte| !is_space(byte))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|byte| !is_space(byte))
        .map_or(start, |last| last + 1);
    &bytes[start..end]
}

/// Decodes the chunked body at the start of `wire` into `body` (cleared first). On completion
/// returns how many wire bytes the body took, trailers included; trailer fields are ignored.
pub fn decode_chunked(wire: &[u8], body: &mut Vec<u8>) -> Result<Progress<usize>, HttpError> {
    body.clear();
    let mut position = 0;
    loop {
        let rest = &wire[position..];
        // httparse takes an empty size line as zero; a size must have at least one digit.
        if rest.first().is_some_and(|byte| !byte.is_ascii_hexdigit()) {
            return Err(HttpError::InvalidChunk);
        }
        let (line_bytes, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(parsed)) => parsed,
            Ok(httparse::Status::Partial) => return partial_chunked(wire),
            Err(httparse::InvalidChunkSize) => return Err(HttpError::InvalidChunk),
        };
        position += line_bytes;
        if size == 0 {
            break;
        }
        if size > (BODY_BYTES_MAX - body.len()) as u64 {
            return Err(HttpError::BodyTooLarge);
        }
        let data_end = position + size as usize;
        if wire.len() < data_end + 2 {
            return partial_chunked(wire);
        }
        if &wire[data_end..data_end + 2] != b"\r\n" {
            return Err(HttpError::InvalidChunk);
        }
        body.extend_from_slice(&wire[position..data_end]);
        position = data_end + 2;
    }
    // The trailer section: header lines up to an empty line.
    loop {
        let Some(line_bytes) = wire[position..].windows(2).position(|pair| pair == b"\r\n") else {
            return partial_chunked(wire);
        };
        let line = &wire[position..position + line_bytes];
        position += line_bytes + 2;
        if line.is_empty() {
            break;
        }
        if !line.contains(&b':') {
            return Err(HttpError::InvalidChunk);
        }
    }
    if position > CHUNKED_WIRE_BYTES_MAX {
        return Err(HttpError::BodyTooLarge);
    }
    Ok(Progress::Complete(position))
}

/// An unfinished chunked body is worth waiting for only while it fits its wire limit.
fn partial_chunked(wire: &[u8]) -> Result<Progress<usize>, HttpError> {
    if wire.len() >= CHUNKED_WIRE_BYTES_MAX {
        Err(HttpError::BodyTooLarge)
    } else {
        Ok(Progress::Partial)
    }
}
