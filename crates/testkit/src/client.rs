//! A deliberately small HTTP/1.1 client over TCP or Unix sockets. It writes whatever bytes a
//! test gives it (well-formed or hostile) and reads one response framed by `Content-Length`,
//! which is all the API sends.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Where a server listens.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Endpoint {
    /// The address as the servers' `--listen` and `--upstream` flags take it.
    pub fn flag(&self) -> String {
        match self {
            Endpoint::Tcp(addr) => addr.to_string(),
            Endpoint::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    /// A loopback TCP endpoint on a port that was free a moment ago.
    pub fn free_tcp() -> Endpoint {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        Endpoint::Tcp(listener.local_addr().expect("local address"))
    }
}

/// One connection.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    /// Connects, with `timeout` for the connect and for every later read and write.
    pub fn open(endpoint: &Endpoint, timeout: Duration) -> io::Result<Conn> {
        let conn = match endpoint {
            Endpoint::Tcp(addr) => Conn::Tcp(TcpStream::connect_timeout(addr, timeout)?),
            Endpoint::Unix(path) => Conn::Unix(UnixStream::connect(path)?),
        };
        conn.set_timeout(Some(timeout))?;
        Ok(conn)
    }

    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(stream) => {
                stream.set_read_timeout(timeout)?;
                stream.set_write_timeout(timeout)
            }
            Conn::Unix(stream) => {
                stream.set_read_timeout(timeout)?;
                stream.set_write_timeout(timeout)
            }
        }
    }

    /// Closes the writing half (the peer reads end of file).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Conn::Tcp(stream) => stream.shutdown(Shutdown::Write),
            Conn::Unix(stream) => stream.shutdown(Shutdown::Write),
        }
    }

    /// Reads one response. `Ok(None)` when the peer closed before sending any byte.
    pub fn read_response(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<Response>> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((response, used)) = parse_response(buf)? {
                buf.drain(..used);
                return Ok(Some(response));
            }
            let read = self.read(&mut chunk)?;
            if read == 0 {
                return if buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a response",
                    ))
                };
            }
            buf.extend_from_slice(&chunk[..read]);
        }
    }

    /// After a response: true when the server closes the connection without sending anything
    /// more (within the connection's timeout).
    pub fn closes_without_more(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 512];
        match self.read(&mut chunk) {
            Ok(0) => Ok(true),
            Ok(_) => Ok(false),
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => Ok(true),
            Err(error) => Err(error),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(stream) => stream.read(buf),
            Conn::Unix(stream) => stream.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(stream) => stream.write(buf),
            Conn::Unix(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "a JSON body was expected ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Parses one response at the start of `bytes`: `Ok(None)` until it is complete.
pub fn parse_response(bytes: &[u8]) -> io::Result<Option<(Response, usize)>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let Some(head_end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&bytes[..head_end]).map_err(|_| invalid("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(status_line))?;
    let mut length = 0usize;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid("Content-Length"))?;
            }
        }
    }
    let body_start = head_end + 4;
    if bytes.len() < body_start + length {
        return Ok(None);
    }
    let body = bytes[body_start..body_start + length].to_vec();
    Ok(Some((Response { status, body }, body_start + length)))
}

/// Bytes of one request; `body` makes it a POST with `Content-Length`.
pub fn request_bytes(method: &str, path: &str, body: Option<&str>) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: chaos\r\n");
    if let Some(body) = body {
        text.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        text.push_str("\r\n");
    }
    text.into_bytes()
}

/// One request on a new connection, as the reference load test does.
pub fn exchange(endpoint: &Endpoint, request: &[u8], timeout: Duration) -> io::Result<Response> {
    let mut conn = Conn::open(endpoint, timeout)?;
    conn.write_all(request)?;
    let mut buf = Vec::new();
    conn.read_response(&mut buf)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed without a response"))
}

/// The JSON body of a transaction.
pub fn transaction(value: i64, kind: char, description: &str) -> String {
    format!(r#"{{"valor":{value},"tipo":"{kind}","descricao":"{description}"}}"#)
}

/// POST a transaction on a new connection.
pub fn post(
    endpoint: &Endpoint,
    account: u32,
    value: i64,
    kind: char,
    description: &str,
    timeout: Duration,
) -> io::Result<Response> {
    let body = transaction(value, kind, description);
    let path = format!("/clientes/{account}/transacoes");
    exchange(
        endpoint,
        &request_bytes("POST", &path, Some(&body)),
        timeout,
    )
}

/// GET a statement on a new connection.
pub fn statement(endpoint: &Endpoint, account: u32, timeout: Duration) -> io::Result<Response> {
    let path = format!("/clientes/{account}/extrato");
    exchange(endpoint, &request_bytes("GET", &path, None), timeout)
}

/// Whether the endpoint answers a statement with 200.
pub fn is_ready(endpoint: &Endpoint) -> bool {
    statement(endpoint, 1, Duration::from_secs(1)).is_ok_and(|response| response.status == 200)
}
