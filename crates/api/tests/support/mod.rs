//! What the api's integration tests add to `rinha-testkit`: real `rinha-api` instances with
//! their startup line, two of them on one data directory, and client calls that fail the test
//! with context instead of returning errors.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub use rinha_testkit::http::{post_request, request_bytes, statement_request};
pub use rinha_testkit::http::{Conn, Reader, Response};
pub use rinha_testkit::process::Server;
pub use rinha_testkit::{free_tcp, temp_dir, Addr, TempDir};

pub const BINARY: &str = env!("CARGO_BIN_EXE_rinha-api");

/// How long an instance may take to print its startup line (it creates the account files).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

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

/// One running `rinha-api` process (two workers), killed when dropped if still running.
pub struct Instance {
    pub server: Server,
    pub tcp: Addr,
    pub unix: Addr,
    pub startup_line: String,
}

impl Instance {
    /// Starts an instance on `data_dir`, listening on a free TCP port and on `socket`, and
    /// waits for its startup line. Its stderr goes to a log named after the socket, beside it.
    pub fn start(data_dir: &Path, socket: &Path, driver: Driver) -> Instance {
        Instance::start_with(data_dir, socket, driver, |_| {})
    }

    /// Like [`Instance::start`], with `prepare` adding to the command (flags, environment).
    pub fn start_with(
        data_dir: &Path,
        socket: &Path,
        driver: Driver,
        prepare: impl FnOnce(&mut Command),
    ) -> Instance {
        let tcp = free_tcp();
        let unix = Addr::Unix(socket.to_path_buf());
        let mut command = Command::new(BINARY);
        command.arg("--data-dir").arg(data_dir);
        command.args(["--listen", &tcp.to_string(), "--listen", &unix.to_string()]);
        command.args(["--workers", "2"]);
        match driver {
            Driver::Default => command.env_remove("RINHA_DRIVER"),
            Driver::Epoll => command.env("RINHA_DRIVER", "epoll"),
        };
        prepare(&mut command);
        let name = socket.file_stem().expect("a socket file name");
        let log_dir = socket.parent().expect("a socket directory");
        let mut server = Server::start(&name.to_string_lossy(), command, log_dir);
        let line = server.startup_line("rinha-api", STARTUP_TIMEOUT);
        if driver == Driver::Epoll {
            assert!(line.contains(" driver=epoll "), "{line}");
        }
        Instance {
            server,
            tcp,
            unix,
            startup_line: line,
        }
    }

    /// Lines printed on stderr after the startup line, so far.
    pub fn later_stderr(&self) -> Vec<String> {
        self.server.lines().into_iter().skip(1).collect()
    }
}

/// One instance on a fresh data directory (`<dir>/data`, its socket `<dir>/<label>.sock`), and
/// the directory, to be dropped after it.
pub fn single(label: &str, driver: Driver) -> (Instance, TempDir) {
    let dir = temp_dir(label);
    let socket = dir.path().join(format!("{label}.sock"));
    (
        Instance::start(&dir.path().join("data"), &socket, driver),
        dir,
    )
}

/// Two instances on one data directory, as deployed behind the balancer.
pub struct Cluster {
    pub a: Instance,
    pub b: Instance,
    pub dir: TempDir,
}

impl Cluster {
    /// Starts both at once on `<label dir>/data`.
    pub fn start(label: &str, driver: Driver) -> Cluster {
        let dir = temp_dir(label);
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        // Both start at once, racing to create the account files.
        let (a_socket, b_socket) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| Instance::start(&data, &a_socket, driver));
            let b = scope.spawn(|| Instance::start(&data, &b_socket, driver));
            (a.join().unwrap(), b.join().unwrap())
        });
        Cluster { a, b, dir }
    }

    /// Each instance over each of its listeners, alternating instances: A over TCP, B over
    /// Unix, A over Unix, B over TCP.
    pub fn targets(&self) -> [&Addr; 4] {
        [&self.a.tcp, &self.b.unix, &self.a.unix, &self.b.tcp]
    }
}

/// A connection to `target` with the client timeout; a refused connect fails the test.
pub fn open(target: &Addr) -> Conn {
    Conn::open(target, CLIENT_TIMEOUT).unwrap_or_else(|error| panic!("connect {target}: {error}"))
}

/// Sends the request `bytes` on a new connection and reads its response.
pub fn exchange(target: &Addr, bytes: &[u8]) -> Response {
    let mut conn = open(target);
    conn.send(bytes);
    Reader::new().response(&mut conn)
}

/// Sends one request on a new connection and reads its response.
pub fn request(target: &Addr, method: &str, path: &str, body: Option<&str>) -> Response {
    exchange(target, &request_bytes(method, path, body))
}

/// Posts a transaction; returns the response.
pub fn post(target: &Addr, account: u32, value: i64, kind: char, description: &str) -> Response {
    exchange(target, &post_request(account, value, kind, description))
}

/// Reads a statement; asserts 200 and returns its JSON.
pub fn statement(target: &Addr, account: u32) -> serde_json::Value {
    let response = exchange(target, &statement_request(account));
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
