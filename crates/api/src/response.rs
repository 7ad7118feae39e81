//! Response writing: statuses, the `Date` header value, and whole responses with a JSON body,
//! appended to a connection's write buffer without allocating.

use std::fmt::Write as _;

use crate::json;

/// Response statuses the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    // INVARIANT: in the order of `Status::ALL`.
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
    /// Every status, in declaration order (the metrics count them in this order).
    pub const ALL: [Status; 12] = [
        Status::Ok,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::ContentTooLarge,
        Status::ExpectationFailed,
        Status::UnprocessableContent,
        Status::HeaderFieldsTooLarge,
        Status::NotImplemented,
        Status::ServiceUnavailable,
        Status::VersionNotSupported,
    ];

    /// The three-digit code.
    pub fn code(self) -> &'static str {
        std::str::from_utf8(&self.line()[9..12]).expect("an ASCII status line")
    }

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

/// What follows the head of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    /// This JSON body, announced by `Content-Length`.
    Json(&'a [u8]),
    /// Nothing, and no `Content-Length` either: the answer to a HEAD request, whose
    /// `Content-Length` would have to be the length a GET would get (RFC 9110, 8.6 and 9.3.2).
    Omitted,
}

/// One response, as [`write_response`] writes it.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// The status line.
    pub status: Status,
    /// The `Connection` header.
    pub persistence: Persistence,
    /// The `Allow` header, if any (a 405's).
    pub allow: Option<&'a str>,
    /// The `Date` header value.
    pub date: &'a [u8; HTTP_DATE_BYTES],
    /// What follows the head.
    pub content: Content<'a>,
}

/// Length of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const HTTP_DATE_BYTES: usize = 29;

/// Formats `unix_seconds` as the IMF-fixdate of the `Date` header (RFC 9110, section 5.6.7),
/// with the `httpdate` crate, into a fixed array: nothing is allocated.
pub fn http_date(unix_seconds: i64) -> [u8; HTTP_DATE_BYTES] {
    let seconds = u64::try_from(unix_seconds).unwrap_or(0);
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    let mut out = Fixed {
        bytes: [0u8; HTTP_DATE_BYTES],
        len: 0,
    };
    // An IMF-fixdate is always 29 ASCII bytes, for every year httpdate accepts (1970..=9999).
    write!(out, "{}", httpdate::HttpDate::from(when)).expect("a 29-byte IMF-fixdate");
    assert_eq!(out.len, HTTP_DATE_BYTES);
    out.bytes
}

/// A `fmt::Write` into a fixed array that refuses to overflow.
struct Fixed<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> std::fmt::Write for Fixed<N> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Appends `response` to `out`: its head, always with `Content-Type: application/json`, then
/// its content.
pub fn write_response(out: &mut Vec<u8>, response: &Response<'_>) {
    out.extend_from_slice(response.status.line());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(response.date);
    out.extend_from_slice(b"\r\nContent-Type: application/json");
    if let Content::Json(body) = response.content {
        out.extend_from_slice(b"\r\nContent-Length: ");
        json::write_u64(out, body.len() as u64);
    }
    match response.persistence {
        Persistence::Default => {}
        Persistence::KeepAlive => out.extend_from_slice(b"\r\nConnection: keep-alive"),
        Persistence::Close => out.extend_from_slice(b"\r\nConnection: close"),
    }
    if let Some(allow) = response.allow {
        out.extend_from_slice(b"\r\nAllow: ");
        out.extend_from_slice(allow.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    if let Content::Json(body) = response.content {
        out.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    #[test]
    fn responses() {
        /// `expected` is what follows the bytes already in the buffer.
        #[track_caller]
        fn check(
            status: Status,
            persistence: Persistence,
            allow: Option<&str>,
            content: Content<'_>,
            expected: &str,
        ) {
            let date = b"Sun, 06 Nov 1994 08:49:37 GMT";
            let mut out = b"previous".to_vec();
            write_response(&mut out, &Response { status, persistence, allow, date, content });
            assert_eq!(std::str::from_utf8(&out).unwrap(), format!("previous{expected}"));
        }
        use Content::*;
        use Persistence::*;
        check(Status::Ok, Default, None, Json(b"{}"), "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
        check(Status::Ok, KeepAlive, None, Json(b""), "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
        check(Status::MethodNotAllowed, Close, Some("GET"), Json(b"{}"), "HTTP/1.1 405 Method Not Allowed\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\nAllow: GET\r\n\r\n{}");
        check(Status::UnprocessableContent, Default, None, Json(b"{}"), "HTTP/1.1 422 Unprocessable Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
        // The answer to a HEAD: no content, and no Content-Length (it would have to be a GET's).
        check(Status::MethodNotAllowed, Default, Some("GET"), Omitted, "HTTP/1.1 405 Method Not Allowed\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: application/json\r\nAllow: GET\r\n\r\n");
    }

    #[rustfmt::skip]
    #[test]
    fn dates() {
        #[track_caller]
        fn check(unix_seconds: i64, expected: &str) {
            let date = http_date(unix_seconds);
            assert_eq!(std::str::from_utf8(&date).unwrap(), expected, "seconds {unix_seconds}");
        }
        // The example of RFC 9110.
        check(784_111_777,   "Sun, 06 Nov 1994 08:49:37 GMT");
        check(0,             "Thu, 01 Jan 1970 00:00:00 GMT");
        check(86_399,        "Thu, 01 Jan 1970 23:59:59 GMT");
        check(86_400,        "Fri, 02 Jan 1970 00:00:00 GMT");
        check(951_782_400,   "Tue, 29 Feb 2000 00:00:00 GMT");
        check(1_705_458_881, "Wed, 17 Jan 2024 02:34:41 GMT");
        check(1_735_689_599, "Tue, 31 Dec 2024 23:59:59 GMT");
        // A clock set before the epoch (httpdate starts there) shows as the epoch.
        check(-1,            "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
