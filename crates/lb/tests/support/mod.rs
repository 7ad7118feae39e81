//! Test support: the balancer as a child process (a `rinha-testkit` server) and small upstream
//! servers on threads.

#![allow(dead_code)]

use std::borrow::Borrow;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use rinha_testkit::http::Conn;
use rinha_testkit::process::{limit_nofile, Server};
use rinha_testkit::XorShift;
pub use rinha_testkit::{temp_dir, TempDir};

/// Bounds every blocking socket operation of a test, so a bug fails the test instead of
/// hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The driver/splice combinations each behaviour is checked under: the default on io_uring
/// (direct splice), io_uring splice operations, and epoll forced (monoio's splice operation).
pub const MODES: &[(&str, &str)] = &[("auto", "auto"), ("auto", "op"), ("epoll", "auto")];

/// A running balancer, killed on drop: its [`Server`] (which it dereferences to), its listen
/// address and its startup line.
pub struct Lb {
    server: Server,
    pub listen: String,
    pub startup_line: String,
    /// Holds the balancer's log; declared after `server` so that it outlives the process.
    _logs: TempDir,
}

impl Lb {
    /// Starts `rinha-lb` with `RINHA_DRIVER=driver` and `--splice splice` on a free TCP port in
    /// front of `upstreams`, plus `extra` flags, and waits for its startup line.
    pub fn start(
        driver: &str,
        splice: &str,
        upstreams: &[impl Borrow<Upstream>],
        extra: &[&str],
    ) -> Lb {
        Lb::start_on(&free_tcp_addr(), driver, splice, upstreams, extra, None)
    }

    /// Like [`Lb::start`], listening on `listen`, with the open-files limit (soft and hard) set
    /// to `nofile` if given.
    pub fn start_on(
        listen: &str,
        driver: &str,
        splice: &str,
        upstreams: &[impl Borrow<Upstream>],
        extra: &[&str],
        nofile: Option<u64>,
    ) -> Lb {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rinha-lb"));
        command
            .env("RINHA_DRIVER", driver)
            .args(["--listen", listen, "--splice", splice]);
        for upstream in upstreams {
            command.args(["--upstream", &upstream.borrow().addr]);
        }
        command.args(extra);
        if let Some(limit) = nofile {
            limit_nofile(&mut command, limit, Some(limit));
        }
        let logs = temp_dir("lb");
        let mut server = Server::start("rinha-lb", command, logs.path());
        let startup_line = server.startup_line("rinha-lb", IO_TIMEOUT);
        Lb {
            server,
            listen: listen.to_string(),
            startup_line,
            _logs: logs,
        }
    }

    /// Connects a client over TCP (the listen address must be TCP).
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.listen).expect("connect to rinha-lb");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }
}

impl Deref for Lb {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

impl DerefMut for Lb {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

/// A free loopback TCP address, as the text the balancer's flags take.
pub fn free_tcp_addr() -> String {
    rinha_testkit::free_tcp().to_string()
}

/// What an upstream does with each connection.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Writes back every byte read; on end of stream shuts down its write side.
    Echo,
    /// Writes `U<id>\n`, shuts down its write side, then drains until end of stream.
    Marker(u8),
    /// Reads until end of stream, then answers `<length>:<reversed bytes>` and closes; only a
    /// relay that propagates half-close lets the client see the answer.
    ReverseAtEof,
    /// Writes an endless stream of bytes until the peer goes away.
    Firehose,
}

fn handle(mut conn: Conn, behaviour: Behaviour) {
    let mut buf = vec![0u8; 64 * 1024];
    match behaviour {
        Behaviour::Echo => loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = conn.shutdown_write();
                    return;
                }
                Ok(n) => {
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        },
        Behaviour::Marker(id) => {
            let _ = conn.write_all(&[b'U', b'0' + id, b'\n']);
            let _ = conn.shutdown_write();
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    return;
                }
            }
        }
        Behaviour::ReverseAtEof => {
            let mut all = Vec::new();
            loop {
                match conn.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                    Err(_) => return,
                }
            }
            all.reverse();
            let mut answer = format!("{}:", all.len()).into_bytes();
            answer.extend_from_slice(&all);
            let _ = conn.write_all(&answer);
        }
        Behaviour::Firehose => {
            let chunk = vec![b'x'; 16 * 1024];
            while conn.write_all(&chunk).is_ok() {}
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// A connection waiting to be accepted, blocking with the I/O timeout (Linux does not pass
    /// the listener's `O_NONBLOCK` on to it).
    fn accept(&self) -> Option<Conn> {
        let conn = match self {
            Listener::Tcp(l) => Conn::from(l.accept().ok()?.0),
            Listener::Unix(l) => Conn::from(l.accept().ok()?.0),
        };
        conn.set_timeout(Some(IO_TIMEOUT)).unwrap();
        Some(conn)
    }
}

/// An upstream server on a thread. `stop` (or drop) closes its listener, so later connects
/// are refused, and stops serving.
pub struct Upstream {
    /// The address text to give the balancer (`127.0.0.1:port` or `unix:/path`).
    pub addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// A TCP upstream on `addr` ("127.0.0.1:0" for any port).
    pub fn tcp(addr: &str, behaviour: Behaviour) -> Upstream {
        let listener = TcpListener::bind(addr).expect("bind upstream");
        let text = listener.local_addr().unwrap().to_string();
        Upstream::run(text, Listener::Tcp(listener), behaviour)
    }

    /// A Unix socket upstream at `path`.
    pub fn unix(path: &std::path::Path, behaviour: Behaviour) -> Upstream {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind unix upstream");
        let text = format!("unix:{}", path.display());
        Upstream::run(text, Listener::Unix(listener), behaviour)
    }

    fn run(addr: String, listener: Listener, behaviour: Behaviour) -> Upstream {
        match &listener {
            Listener::Tcp(l) => l.set_nonblocking(true).unwrap(),
            Listener::Unix(l) => l.set_nonblocking(true).unwrap(),
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Some(conn) => drop(std::thread::spawn(move || handle(conn, behaviour))),
                        None => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            })
        };
        Upstream {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Closes the listener: new connections to this upstream are refused from now on.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes `payload` on one thread while reading the echo on this one; returns what came back.
pub fn echo_round_trip(stream: impl Into<Conn>, payload: &[u8]) -> Vec<u8> {
    let mut reader = stream.into();
    let mut writer = reader.try_clone().unwrap();
    let owned = payload.to_vec();
    let write_thread = std::thread::spawn(move || {
        writer.write_all(&owned).unwrap();
        writer.shutdown_write().unwrap();
    });
    let mut received = Vec::with_capacity(payload.len());
    reader.read_to_end(&mut received).expect("read echo");
    write_thread.join().unwrap();
    received
}

/// Deterministic pseudo-random bytes (xorshift), so a misplaced byte cannot hide in a pattern.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut random = XorShift(seed | 1);
    (0..len).map(|_| (random.next_u64() >> 24) as u8).collect()
}
