//! Helpers shared by the integration tests: real `rinha-api` processes on a temporary data
//! directory, and a small blocking HTTP client over TCP or a Unix socket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_rinha-api");

/// How long an instance may take to print its startup line (it creates the account files).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Socket timeout of the test client: a hung server fails the test instead of hanging it.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Which driver the instances are asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// `RINHA_DRIVER` unset: io_uring when the kernel allows it.
    Default,
    /// `RINHA_DRIVER=epoll`.
    Epoll,
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "rinha-api-test-{}-{label}-{unique}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a client connects.
#[derive(Clone, Debug)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A free loopback port: bound, read and released. Another process could take it in between,
/// which the tests accept as a rare flake rather than parse the port from the server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One running `rinha-api` process, killed on drop if still running.
pub struct Instance {
    child: Option<Child>,
    pub tcp: Target,
    pub unix: Target,
    pub startup_line: String,
    stderr_lines: mpsc::Receiver<String>,
}

impl Instance {
    /// Starts an instance on `data_dir`, listening on a free TCP port and on `socket`.
    pub fn start(data_dir: &Path, socket: &Path, driver: Driver) -> Instance {
        let port = free_port();
        let tcp = format!("127.0.0.1:{port}");
        let unix = format!("unix:{}", socket.display());
        let mut command = Command::new(BINARY);
        command
            .args([
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--listen",
                &tcp,
                "--listen",
                &unix,
            ])
            .args(["--workers", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match driver {
            Driver::Default => command.env_remove("RINHA_DRIVER"),
            Driver::Epoll => command.env("RINHA_DRIVER", "epoll"),
        };
        let mut child = command.spawn().expect("spawn rinha-api");
        let stderr = child.stderr.take().unwrap();
        let (sender, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut instance = Instance {
            child: Some(child),
            tcp: Target::Tcp(tcp.parse().unwrap()),
            unix: Target::Unix(socket.to_path_buf()),
            startup_line: String::new(),
            stderr_lines,
        };
        let line = instance
            .stderr_lines
            .recv_timeout(STARTUP_TIMEOUT)
            .unwrap_or_else(|_| {
                panic!("rinha-api printed no startup line within {STARTUP_TIMEOUT:?}")
            });
        assert!(
            line.starts_with("rinha-api "),
            "unexpected first line {line:?}"
        );
        if driver == Driver::Epoll {
            assert!(line.contains(" driver=epoll "), "{line}");
        }
        instance.startup_line = line;
        instance
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("instance already stopped");
        // SAFETY: kill(2) with the pid of a child process we own and have not reaped.
        let sent = unsafe { libc_kill(child.id() as i32, SIGTERM) };
        assert_eq!(sent, 0, "kill(SIGTERM) failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rinha-api did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Lines printed on stderr after the startup line, so far.
    pub fn later_stderr(&self) -> Vec<String> {
        self.stderr_lines.try_iter().collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const SIGTERM: i32 = 15;

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

/// Two instances on one data directory, as deployed behind the balancer.
pub struct Cluster {
    pub a: Instance,
    pub b: Instance,
    pub dir: TempDir,
}

impl Cluster {
    pub fn start(label: &str, driver: Driver) -> Cluster {
        let dir = TempDir::new(label);
        let data = dir.0.join("data");
        std::fs::create_dir_all(&data).unwrap();
        // Both start at once, racing to create the account files.
        let (a_socket, b_socket) = (dir.0.join("a.sock"), dir.0.join("b.sock"));
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| Instance::start(&data, &a_socket, driver));
            let b = scope.spawn(|| Instance::start(&data, &b_socket, driver));
            (a.join().unwrap(), b.join().unwrap())
        });
        Cluster { a, b, dir }
    }
}

/// A connected client stream.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    pub fn open(target: &Target) -> Conn {
        let conn = match target {
            Target::Tcp(addr) => {
                let stream = TcpStream::connect(addr).unwrap();
                stream.set_nodelay(true).unwrap();
                Conn::Tcp(stream)
            }
            Target::Unix(path) => Conn::Unix(UnixStream::connect(path).unwrap()),
        };
        conn.set_read_timeout(Some(CLIENT_TIMEOUT));
        conn
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) {
        match self {
            Conn::Tcp(stream) => stream.set_read_timeout(timeout).unwrap(),
            Conn::Unix(stream) => stream.set_read_timeout(timeout).unwrap(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.write_all(bytes).expect("send");
    }

    /// Reads until the peer closes (or the read timeout passes).
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match self.read(&mut chunk) {
                Ok(0) => return received,
                Ok(count) => received.extend_from_slice(&chunk[..count]),
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                    return received
                }
                Err(error) => panic!("read: {error} after {received:?}"),
            }
        }
    }

    /// True when the server has closed the connection (EOF or reset) within the read timeout.
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(stream) => stream.read(buf),
            Conn::Unix(stream) => stream.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(stream) => stream.write(buf),
            Conn::Unix(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads responses from a connection, keeping bytes that arrived ahead.
pub struct Reader {
    pending: Vec<u8>,
}

impl Reader {
    pub fn new() -> Reader {
        Reader {
            pending: Vec::new(),
        }
    }

    /// Reads one complete response (head and Content-Length body).
    pub fn response(&mut self, conn: &mut Conn) -> Response {
        loop {
            if let Some((response, used)) = parse_response(&self.pending) {
                self.pending.drain(..used);
                return response;
            }
            let mut chunk = [0u8; 8192];
            let count = conn.read(&mut chunk).unwrap_or_else(|e| {
                panic!(
                    "reading a response: {e}; have {:?}",
                    String::from_utf8_lossy(&self.pending)
                )
            });
            assert!(
                count > 0,
                "connection closed; have {:?}",
                String::from_utf8_lossy(&self.pending)
            );
            self.pending.extend_from_slice(&chunk[..count]);
        }
    }
}

/// Parses one response at the start of `bytes`; `None` while incomplete.
pub fn parse_response(bytes: &[u8]) -> Option<(Response, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_bytes = match parsed.parse(bytes).expect("malformed response") {
        httparse::Status::Complete(head_bytes) => head_bytes,
        httparse::Status::Partial => return None,
    };
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let status = parsed.code.unwrap();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    if bytes.len() < head_bytes + length {
        return None;
    }
    let body = bytes[head_bytes..head_bytes + length].to_vec();
    Some((
        Response {
            status,
            headers,
            body,
        },
        head_bytes + length,
    ))
}

/// Sends one request on a new connection and reads its response.
pub fn request(target: &Target, method: &str, path: &str, body: Option<&str>) -> Response {
    let mut conn = Conn::open(target);
    conn.send(&request_bytes(method, path, body));
    Reader::new().response(&mut conn)
}

/// A keep-alive HTTP/1.1 request.
pub fn request_bytes(method: &str, path: &str, body: Option<&str>) -> Vec<u8> {
    let mut bytes = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n").into_bytes();
    if let Some(body) = body {
        bytes.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    bytes.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

pub fn transaction(value: i64, kind: char, description: &str) -> String {
    serde_json::json!({"valor": value, "tipo": kind.to_string(), "descricao": description})
        .to_string()
}

/// Posts a transaction; returns the response.
pub fn post(target: &Target, account: u32, value: i64, kind: char, description: &str) -> Response {
    let body = transaction(value, kind, description);
    request(
        target,
        "POST",
        &format!("/clientes/{account}/transacoes"),
        Some(&body),
    )
}

/// Reads a statement; asserts 200 and returns its JSON.
pub fn statement(target: &Target, account: u32) -> serde_json::Value {
    let response = request(target, "GET", &format!("/clientes/{account}/extrato"), None);
    assert_eq!(response.status, 200, "{response:?}");
    response.json()
}

/// Checks the RFC 3339 UTC form with microseconds: `2024-01-17T02:34:41.217753Z`.
pub fn assert_timestamp(text: &str) {
    let bytes = text.as_bytes();
    let shape = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    assert_eq!(bytes.len(), shape.len(), "timestamp {text:?}");
    for (byte, expected) in bytes.iter().zip(shape.bytes()) {
        match expected {
            b'd' => assert!(byte.is_ascii_digit(), "timestamp {text:?}"),
            other => assert_eq!(*byte, other, "timestamp {text:?}"),
        }
    }
}
