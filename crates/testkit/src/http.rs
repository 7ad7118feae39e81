//! A deliberately small HTTP/1.1 client over TCP or Unix sockets. It writes whatever bytes a
//! test gives it (well-formed, split at odd places, or hostile) and reads responses framed by
//! `Content-Length`, which is all the API sends. The same [`Conn`] serves the fake servers of
//! the balancer's tests on their accepted connections.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::Addr;

/// Header fields a response may carry; the servers send about five.
const RESPONSE_HEADERS_MAX: usize = 32;

/// One connection, either end.
#[derive(Debug)]
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    /// Connects, with `timeout` for the connect and for every later read and write, so that a
    /// hung server fails the test instead of hanging it. TCP connections send each write at
    /// once (`TCP_NODELAY`): tests that send a request byte by byte would otherwise wait for
    /// delayed acknowledgements.
    pub fn open(addr: &Addr, timeout: Duration) -> io::Result<Conn> {
        let conn = match addr {
            Addr::Tcp(addr) => {
                let stream = TcpStream::connect_timeout(addr, timeout)?;
                stream.set_nodelay(true)?;
                Conn::Tcp(stream)
            }
            Addr::Unix(path) => Conn::Unix(UnixStream::connect(path)?),
        };
        conn.set_timeout(Some(timeout))?;
        Ok(conn)
    }

    /// Another handle on the same connection (for a writer thread beside a reader).
    pub fn try_clone(&self) -> io::Result<Conn> {
        match self {
            Conn::Tcp(stream) => stream.try_clone().map(Conn::Tcp),
            Conn::Unix(stream) => stream.try_clone().map(Conn::Unix),
        }
    }

    /// Sets the timeout of every later read and write (`None`: wait forever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)?;
        match self {
            Conn::Tcp(stream) => stream.set_write_timeout(timeout),
            Conn::Unix(stream) => stream.set_write_timeout(timeout),
        }
    }

    /// Sets the timeout of every later read only.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(stream) => stream.set_read_timeout(timeout),
            Conn::Unix(stream) => stream.set_read_timeout(timeout),
        }
    }

    /// Writes all of `bytes`; a failure fails the test.
    pub fn send(&mut self, bytes: &[u8]) {
        self.write_all(bytes).expect("send");
    }

    /// Closes the writing half (the peer reads end of file).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Conn::Tcp(stream) => stream.shutdown(Shutdown::Write),
            Conn::Unix(stream) => stream.shutdown(Shutdown::Write),
        }
    }

    /// Reads whatever arrives until the peer closes (end of file or reset); any other error,
    /// a timeout included, fails the test.
    pub fn read_until_closed(&mut self) -> Vec<u8> {
        self.try_read_until_closed()
            .unwrap_or_else(|(error, received)| panic!("read: {error} after {received:?}"))
    }

    /// Reads whatever arrives until the peer closes (end of file or reset); any other error,
    /// a timeout included, comes back with what was received before it.
    pub fn try_read_until_closed(&mut self) -> Result<Vec<u8>, (io::Error, Vec<u8>)> {
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match self.read(&mut chunk) {
                Ok(0) => return Ok(received),
                Ok(count) => received.extend_from_slice(&chunk[..count]),
                Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok(received)
                }
                Err(error) => return Err((error, received)),
            }
        }
    }

    /// True when the peer closes the connection (end of file or reset) without sending
    /// anything more, within the read timeout.
    pub fn closes_without_more(&mut self) -> bool {
        let mut chunk = [0u8; 512];
        match self.read(&mut chunk) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => error.kind() == io::ErrorKind::ConnectionReset,
        }
    }
}

impl From<TcpStream> for Conn {
    fn from(stream: TcpStream) -> Conn {
        Conn::Tcp(stream)
    }
}

impl From<UnixStream> for Conn {
    fn from(stream: UnixStream) -> Conn {
        Conn::Unix(stream)
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

/// A response: status, header fields as sent, and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of the first field named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON; a body that is not JSON fails the test.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "a JSON body was expected ({error}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads responses from one connection, keeping the bytes that arrived past the last one
/// (pipelined answers, or bytes a server should not have sent).
#[derive(Debug, Default)]
pub struct Reader {
    pending: Vec<u8>,
}

impl Reader {
    pub fn new() -> Reader {
        Reader::default()
    }

    /// Reads one response. `Ok(None)` when the peer closed before sending any byte of it; an
    /// error when it closed inside one, sent one that does not parse, or the read failed.
    pub fn next(&mut self, conn: &mut Conn) -> io::Result<Option<Response>> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some((response, used)) = parse_response(&self.pending)? {
                self.pending.drain(..used);
                return Ok(Some(response));
            }
            let read = conn.read(&mut chunk)?;
            if read == 0 {
                return if self.pending.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a response",
                    ))
                };
            }
            self.pending.extend_from_slice(&chunk[..read]);
        }
    }

    /// Reads one response; anything else (a close, an error, bytes that do not parse) fails
    /// the test, showing what had arrived.
    pub fn response(&mut self, conn: &mut Conn) -> Response {
        match self.next(conn) {
            Ok(Some(response)) => response,
            Ok(None) => panic!("connection closed before a response"),
            Err(error) => panic!(
                "reading a response: {error}; have {:?}",
                String::from_utf8_lossy(&self.pending)
            ),
        }
    }

    /// Bytes received past the last response read.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }
}

/// Parses one response at the start of `bytes`: `Ok(None)` until it is complete. The servers
/// only ever send HTTP/1.1 with a UTF-8 head and at most one length, so anything else is
/// invalid rather than read generously.
pub fn parse_response(bytes: &[u8]) -> io::Result<Option<(Response, usize)>> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut fields = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
    let mut parsed = httparse::Response::new(&mut fields);
    let head_bytes = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(head_bytes)) => head_bytes,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(invalid(format!("malformed response head: {error}"))),
    };
    if parsed.version != Some(1) {
        return Err(invalid("not an HTTP/1.1 response".into()));
    }
    if std::str::from_utf8(&bytes[..head_bytes]).is_err() {
        return Err(invalid("non-UTF-8 response head".into()));
    }
    let status = parsed.code.expect("a complete head has a status");
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|field| {
            let value = String::from_utf8_lossy(field.value).into_owned();
            (field.name.to_owned(), value)
        })
        .collect();
    let mut length = None;
    for (_, value) in headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
    {
        let parsed: usize = value
            .trim()
            .parse()
            .map_err(|_| invalid(format!("Content-Length {value:?}")))?;
        if length.is_some_and(|length| length != parsed) {
            return Err(invalid("two different Content-Length values".into()));
        }
        length = Some(parsed);
    }
    let end = head_bytes + length.unwrap_or(0);
    if bytes.len() < end {
        return Ok(None);
    }
    let body = bytes[head_bytes..end].to_vec();
    let response = Response {
        status,
        headers,
        body,
    };
    Ok(Some((response, end)))
}

/// Bytes of one keep-alive request; `body` adds `Content-Type: application/json` and its
/// `Content-Length`.
pub fn request_bytes(method: &str, path: &str, body: Option<&str>) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
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

/// The JSON body of a transaction, fields in the contract's order; the description is
/// escaped as JSON, so that quotes, backslashes and control characters arrive as given.
pub fn transaction(value: i64, kind: char, description: &str) -> String {
    let description = serde_json::Value::from(description);
    format!(r#"{{"valor":{value},"tipo":"{kind}","descricao":{description}}}"#)
}

/// One request on a new connection, as the reference load test sends them.
pub fn exchange(addr: &Addr, request: &[u8], timeout: Duration) -> io::Result<Response> {
    let mut conn = Conn::open(addr, timeout)?;
    conn.write_all(request)?;
    Reader::new()
        .next(&mut conn)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed without a response"))
}

/// Bytes of a keep-alive POST of a transaction to `account`.
pub fn post_request(account: u32, value: i64, kind: char, description: &str) -> Vec<u8> {
    let body = transaction(value, kind, description);
    let path = format!("/clientes/{account}/transacoes");
    request_bytes("POST", &path, Some(&body))
}

/// Bytes of a keep-alive GET of `account`'s statement.
pub fn statement_request(account: u32) -> Vec<u8> {
    request_bytes("GET", &format!("/clientes/{account}/extrato"), None)
}

/// POSTs a transaction on a new connection.
pub fn post(
    addr: &Addr,
    account: u32,
    value: i64,
    kind: char,
    description: &str,
    timeout: Duration,
) -> io::Result<Response> {
    let request = post_request(account, value, kind, description);
    exchange(addr, &request, timeout)
}

/// GETs a statement on a new connection.
pub fn statement(addr: &Addr, account: u32, timeout: Duration) -> io::Result<Response> {
    exchange(addr, &statement_request(account), timeout)
}

/// Whether `addr` answers a statement with 200.
pub fn is_ready(addr: &Addr) -> bool {
    statement(addr, 1, Duration::from_secs(1)).is_ok_and(|response| response.status == 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `parse_response` gives for some bytes: incomplete, invalid, or the status, the
    /// body and how many bytes it used.
    #[derive(Debug, PartialEq)]
    enum Parsed {
        Partial,
        Invalid,
        Complete(u16, Vec<u8>, usize),
    }

    #[track_caller]
    fn check(bytes: &[u8], expected: Parsed) {
        let got = match parse_response(bytes) {
            Ok(None) => Parsed::Partial,
            Err(error) => {
                assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
                Parsed::Invalid
            }
            Ok(Some((response, used))) => Parsed::Complete(response.status, response.body, used),
        };
        assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(bytes));
    }

    #[test]
    fn responses() {
        use Parsed::*;
        check(b"", Partial);
        check(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", Partial);
        check(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{", Partial);
        check(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            Complete(200, b"{}".to_vec(), 40),
        );
        // Bytes past the body belong to the next response.
        check(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\nHTTP/1.1",
            Complete(404, Vec::new(), 45),
        );
        check(
            b"HTTP/1.1 100 Continue\r\n\r\n",
            Complete(100, Vec::new(), 25),
        );
        check(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            Complete(200, b"x".to_vec(), 58),
        );
        check(b"HTTP/1.0 200 OK\r\n\r\n", Invalid);
        check(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", Invalid);
        check(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
            Invalid,
        );
        check(b"HTTP/1.1 200 OK\r\nX: \xff\r\n\r\n", Invalid);
        check(b"hello\r\n\r\n", Invalid);
    }

    #[test]
    fn requests() {
        assert_eq!(
            request_bytes("GET", "/clientes/1/extrato", None),
            b"GET /clientes/1/extrato HTTP/1.1\r\nHost: test\r\n\r\n"
        );
        assert_eq!(
            request_bytes("POST", "/p", Some("{}")),
            b"POST /p HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
              Content-Length: 2\r\n\r\n{}"
        );
        assert_eq!(
            transaction(5, 'd', "a\"b\\c\td"),
            r#"{"valor":5,"tipo":"d","descricao":"a\"b\\c\td"}"#
        );
    }
}
