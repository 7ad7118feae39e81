//! A one-shot HTTP/1.1 client: one new TCP connection per request, like a Gatling virtual user
//! that sends one request and ends.
//!
//! The connection is opened, the request written in one `write`, the response read up to the end
//! of its body (`Content-Length`), and the connection closed by the client. The measured time
//! starts before `connect`, as Gatling counts a new connection in the response time.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest response accepted (head and body); a statement is well under 2 KiB.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// The user agent of the reference simulation, so server logs look the same under both tools.
pub const USER_AGENT: &str = "Agente do Caos - 2024/Q1";

/// Where requests go: `http://HOST:PORT`, resolved once.
#[derive(Clone, Debug)]
pub struct Target {
    /// The resolved address (IPv4 preferred, as the stack listens on IPv4).
    pub addr: SocketAddr,
    /// The `Host` header value, as written in the target.
    pub host: String,
}

/// Why a target was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TargetError {
    /// Not of the form `http://HOST:PORT` (an optional trailing `/` is allowed).
    Syntax(String),
    /// The host name did not resolve.
    Unresolved(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Syntax(text) => {
                write!(f, "{text:?} is not http://HOST:PORT")
            }
            TargetError::Unresolved(text) => write!(f, "{text:?} does not resolve"),
        }
    }
}

impl std::error::Error for TargetError {}

impl Target {
    /// Parses `http://HOST:PORT` (or `HOST:PORT`) and resolves it.
    pub fn parse(text: &str) -> Result<Target, TargetError> {
        let host = split_target(text).ok_or_else(|| TargetError::Syntax(text.to_string()))?;
        let resolved: Vec<SocketAddr> = host
            .to_socket_addrs()
            .map_err(|_| TargetError::Unresolved(text.to_string()))?
            .collect();
        let addr = resolved
            .iter()
            .find(|addr| addr.is_ipv4())
            .or_else(|| resolved.first())
            .copied()
            .ok_or_else(|| TargetError::Unresolved(text.to_string()))?;
        Ok(Target {
            addr,
            host: host.to_string(),
        })
    }
}

/// Returns the `HOST:PORT` part of a target, or `None` when the text has another shape.
fn split_target(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("http://").unwrap_or(text);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':')?;
    let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    let host_ok = !host.is_empty() && !host.contains('/') && !host.contains('@');
    (port_ok && host_ok).then_some(rest)
}

/// The request methods the scenario uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`, for statements.
    Get,
    /// `POST` with a JSON body, for transactions.
    Post,
}

/// A complete response.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, exactly `Content-Length` bytes.
    pub body: Vec<u8>,
}

/// Why an exchange produced no response.
#[derive(Debug)]
pub enum ClientError {
    /// The TCP connection could not be opened.
    Connect(io::Error),
    /// Writing the request or reading the response failed.
    Io(io::Error),
    /// The deadline passed before the whole response arrived.
    Timeout,
    /// The server closed the connection before the whole response arrived.
    Truncated,
    /// The bytes received are not an HTTP/1.1 response this client understands.
    Malformed(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(error) => write!(f, "connect: {error}"),
            ClientError::Io(error) => write!(f, "i/o: {error}"),
            ClientError::Timeout => write!(f, "timed out"),
            ClientError::Truncated => write!(f, "connection closed mid-response"),
            ClientError::Malformed(why) => write!(f, "malformed response: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Sends one request on a new connection and reads the whole response; `timeout` bounds the
/// exchange from connect to the last byte.
pub fn exchange(
    target: &Target,
    method: Method,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut stream =
        TcpStream::connect_timeout(&target.addr, timeout).map_err(|error| match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ClientError::Timeout,
            _ => ClientError::Connect(error),
        })?;
    // Requests are small and written at once; Nagle would only delay them.
    stream.set_nodelay(true).map_err(ClientError::Io)?;
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(ClientError::Io)?;
    stream
        .write_all(&request_bytes(target, method, path, body))
        .map_err(io_error)?;
    read_response(&mut stream, deadline)
}

/// Renders the request head and body into one buffer.
fn request_bytes(target: &Target, method: Method, path: &str, body: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let verb = match method {
        Method::Get => "GET",
        Method::Post => "POST",
    };
    out.extend_from_slice(
        format!("{verb} {path} HTTP/1.1\r\nHost: {}\r\n", target.host).as_bytes(),
    );
    out.extend_from_slice(format!("User-Agent: {USER_AGENT}\r\nAccept: */*\r\n").as_bytes());
    match body {
        Some(body) => {
            out.extend_from_slice(
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(body.as_bytes());
        }
        None => out.extend_from_slice(b"\r\n"),
    }
    out
}

/// Reads one response: the head, then `Content-Length` bytes of body.
fn read_response(stream: &mut TcpStream, deadline: Instant) -> Result<Response, ClientError> {
    let mut received: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(response) = parse_complete(&received)? {
            return Ok(response);
        }
        if received.len() >= RESPONSE_BYTES_MAX {
            return Err(ClientError::Malformed(format!(
                "more than {RESPONSE_BYTES_MAX} bytes"
            )));
        }
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(ClientError::Io)?;
        let count = stream.read(&mut chunk).map_err(io_error)?;
        if count == 0 {
            return Err(ClientError::Truncated);
        }
        received.extend_from_slice(&chunk[..count]);
    }
}

/// Returns the response once `bytes` hold all of it, `None` while more is needed.
pub fn parse_complete(bytes: &[u8]) -> Result<Option<Response>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Response::new(&mut headers);
    let head_len = match head.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(ClientError::Malformed(error.to_string())),
    };
    let status = head
        .code
        .ok_or_else(|| ClientError::Malformed("no status code".to_string()))?;
    let mut content_length: Option<usize> = None;
    for header in head.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ClientError::Malformed(
                "transfer-encoding is not expected from this API".to_string(),
            ));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).unwrap_or("");
            let length = text
                .trim()
                .parse::<usize>()
                .map_err(|_| ClientError::Malformed(format!("content-length {text:?}")))?;
            content_length = Some(length);
        }
    }
    let length =
        content_length.ok_or_else(|| ClientError::Malformed("no content-length".to_string()))?;
    let body = &bytes[head_len..];
    if body.len() < length {
        return Ok(None);
    }
    if body.len() > length {
        return Err(ClientError::Malformed(format!(
            "{} bytes after a body of {length}",
            body.len() - length
        )));
    }
    Ok(Some(Response {
        status,
        body: body.to_vec(),
    }))
}

fn remaining(deadline: Instant) -> Result<Duration, ClientError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ClientError::Timeout);
    }
    Ok(left)
}

fn io_error(error: io::Error) -> ClientError {
    match error.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ClientError::Timeout,
        _ => ClientError::Io(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `parse_complete` should say: a status and body, "need more", or an error.
    #[derive(Debug, PartialEq)]
    enum Expect {
        Done(u16, &'static str),
        More,
        Error,
    }

    #[track_caller]
    fn check(input: &str, expected: Expect) {
        let got = match parse_complete(input.as_bytes()) {
            Ok(Some(response)) => Expect::Done(
                response.status,
                String::from_utf8(response.body).unwrap().leak(),
            ),
            Ok(None) => Expect::More,
            Err(_) => Expect::Error,
        };
        assert_eq!(got, expected, "input {input:?}");
    }

    #[test]
    fn response_framing() {
        use Expect::*;
        check("", More);
        check("HTTP/1.1 200 OK\r\nContent-Len", More);
        check("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{", More);
        check(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            Done(200, "{}"),
        );
        check(
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            Done(404, ""),
        );
        check("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", Error);
        check("HTTP/1.1 200 OK\r\n\r\n", Error);
        check("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", Error);
        check(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Error,
        );
        check("garbage\r\n\r\n", Error);
    }

    #[test]
    fn target_syntax() {
        let cases: &[(&str, Option<&str>)] = &[
            ("http://localhost:9999", Some("localhost:9999")),
            ("http://127.0.0.1:9999/", Some("127.0.0.1:9999")),
            ("127.0.0.1:80", Some("127.0.0.1:80")),
            ("http://localhost", None),
            ("http://localhost:99999x", None),
            ("http://a/b:1", None),
            ("http://:80", None),
        ];
        for (input, expected) in cases {
            assert_eq!(split_target(input), *expected, "input {input:?}");
        }
        let target = Target::parse("http://localhost:9999").unwrap();
        assert!(target.addr.is_ipv4(), "{:?}", target.addr);
        assert_eq!(target.host, "localhost:9999");
    }

    #[test]
    fn request_rendering() {
        let target = Target::parse("127.0.0.1:1").unwrap();
        let post = request_bytes(&target, Method::Post, "/clientes/1/transacoes", Some("{}"));
        let text = String::from_utf8(post).unwrap();
        assert!(text.starts_with("POST /clientes/1/transacoes HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"), "{text}");
        let get = request_bytes(&target, Method::Get, "/clientes/1/extrato", None);
        assert!(String::from_utf8(get).unwrap().ends_with("*/*\r\n\r\n"));
    }
}
