//! Listening sockets, bound once in the main thread and handed to the workers.
//!
//! Every worker gets its own TCP listener on the same port (SO_REUSEPORT), so the kernel spreads
//! new connections over the workers and no accept is shared across threads. A Unix socket
//! path can be bound only once, so its listener is duplicated for each worker instead; the
//! workers then race on one accept queue, which is fine for the loads we see.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::Path;

use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::addr::Addr;
use crate::stream::Stream;

/// Pending connections the kernel may queue per listener before refusing new ones.
pub const LISTEN_BACKLOG_MAX: i32 = 4096;

/// Permissions of a Unix socket file: any local user (or container sharing the directory) may
/// connect.
const UNIX_SOCKET_MODE: u32 = 0o666;

/// A bound, listening, nonblocking socket not yet attached to any runtime.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener with SO_REUSEADDR and SO_REUSEPORT.
    Tcp(std::net::TcpListener),
    /// A Unix domain socket listener.
    Unix(StdUnixListener),
}

/// Why binding a listen address failed.
#[derive(Debug)]
pub enum BindError {
    /// Another live process already serves this address.
    InUse(Addr),
    /// The Unix socket path exists and is not a socket, so it is not ours to replace.
    NotASocket(Addr),
    /// Any other operating system error while creating, binding or listening.
    Io(Addr, io::Error),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::InUse(addr) => write!(f, "cannot listen on {addr}: address in use"),
            BindError::NotASocket(addr) => {
                write!(
                    f,
                    "cannot listen on {addr}: path exists and is not a socket"
                )
            }
            BindError::Io(addr, error) => write!(f, "cannot listen on {addr}: {error}"),
        }
    }
}

impl std::error::Error for BindError {}

/// Binds every address once per worker. The result has one entry per worker, each holding one
/// listener per address in the order given.
pub fn bind_listeners(addrs: &[Addr], workers: usize) -> Result<Vec<Vec<Listener>>, BindError> {
    assert!(workers >= 1);
    let mut per_worker: Vec<Vec<Listener>> = (0..workers).map(|_| Vec::new()).collect();
    for addr in addrs {
        match addr {
            Addr::Tcp(socket_addr) => {
                let first = bind_tcp(*socket_addr).map_err(|e| tcp_error(addr, e))?;
                // Port 0 picks a port for the first socket; the others must share that port.
                let bound = first
                    .local_addr()
                    .map_err(|e| BindError::Io(addr.clone(), e))?;
                per_worker[0].push(Listener::Tcp(first));
                for slot in per_worker.iter_mut().skip(1) {
                    let listener = bind_tcp(bound).map_err(|e| tcp_error(addr, e))?;
                    slot.push(Listener::Tcp(listener));
                }
            }
            Addr::Unix(path) => {
                let listener = bind_unix(addr, path)?;
                for slot in per_worker.iter_mut().skip(1) {
                    let copy = listener
                        .try_clone()
                        .map_err(|e| BindError::Io(addr.clone(), e))?;
                    slot.push(Listener::Unix(copy));
                }
                per_worker[0].push(Listener::Unix(listener));
            }
        }
    }
    Ok(per_worker)
}

fn tcp_error(addr: &Addr, error: io::Error) -> BindError {
    if error.kind() == io::ErrorKind::AddrInUse {
        BindError::InUse(addr.clone())
    } else {
        BindError::Io(addr.clone(), error)
    }
}

/// Creates one nonblocking TCP listener with SO_REUSEADDR and SO_REUSEPORT.
pub fn bind_tcp(socket_addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let family = if socket_addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let fd: OwnedFd = rustix::net::socket_with(family, SocketType::STREAM, flags, None)?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::sockopt::set_socket_reuseport(&fd, true)?;
    rustix::net::bind(&fd, &socket_addr)?;
    rustix::net::listen(&fd, LISTEN_BACKLOG_MAX)?;
    Ok(std::net::TcpListener::from(fd))
}

/// Binds a Unix socket path, replacing a stale socket file left by a killed process.
fn bind_unix(addr: &Addr, path: &Path) -> Result<StdUnixListener, BindError> {
    remove_stale_socket(addr, path)?;
    let io_error = |e: io::Error| BindError::Io(addr.clone(), e);
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let fd: OwnedFd =
        rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)
            .map_err(|e| io_error(e.into()))?;
    let unix_addr = rustix::net::SocketAddrUnix::new(path).map_err(|e| io_error(e.into()))?;
    rustix::net::bind(&fd, &unix_addr).map_err(|e| {
        if e == rustix::io::Errno::ADDRINUSE {
            BindError::InUse(addr.clone())
        } else {
            io_error(e.into())
        }
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(UNIX_SOCKET_MODE))
        .map_err(io_error)?;
    rustix::net::listen(&fd, LISTEN_BACKLOG_MAX).map_err(|e| io_error(e.into()))?;
    Ok(StdUnixListener::from(fd))
}

/// A socket file whose owner died refuses connections; that one is ours to remove. A socket
/// that still answers belongs to a live process, and a non-socket file is not ours at all.
fn remove_stale_socket(addr: &Addr, path: &Path) -> Result<(), BindError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(BindError::Io(addr.clone(), error)),
    };
    if !metadata.file_type().is_socket() {
        return Err(BindError::NotASocket(addr.clone()));
    }
    match StdUnixStream::connect(path) {
        Ok(_) => Err(BindError::InUse(addr.clone())),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(BindError::Io(addr.clone(), e)),
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(BindError::Io(addr.clone(), error)),
    }
}

impl Listener {
    /// The address this listener is bound to (with the real port when port 0 was asked).
    pub fn local_addr(&self) -> io::Result<Addr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().map(Addr::Tcp),
            Listener::Unix(listener) => {
                let local = listener.local_addr()?;
                let path = local.as_pathname().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "unnamed unix socket")
                })?;
                Ok(Addr::Unix(path.to_path_buf()))
            }
        }
    }

    /// Attaches the listener to the current thread's monoio runtime. Call inside the worker.
    pub fn into_monoio(self) -> io::Result<AsyncListener> {
        match self {
            Listener::Tcp(listener) => {
                monoio::net::TcpListener::from_std(listener).map(AsyncListener::Tcp)
            }
            Listener::Unix(listener) => {
                monoio::net::UnixListener::from_std(listener).map(AsyncListener::Unix)
            }
        }
    }
}

/// A listener attached to a worker's runtime.
#[derive(Debug)]
pub enum AsyncListener {
    /// TCP.
    Tcp(monoio::net::TcpListener),
    /// Unix domain socket.
    Unix(monoio::net::UnixListener),
}

impl AsyncListener {
    /// Accepts one connection. Errors are returned as they come (EMFILE, ECONNABORTED...); the
    /// caller decides whether to pause, retry or stop.
    pub async fn accept(&self) -> io::Result<Stream> {
        match self {
            AsyncListener::Tcp(listener) => listener.accept().await.map(|(s, _)| Stream::Tcp(s)),
            AsyncListener::Unix(listener) => listener.accept().await.map(|(s, _)| Stream::Unix(s)),
        }
    }

    /// Accepts one connection as a nonblocking socket: accept4(2) is called directly and the
    /// runtime is only asked for readiness when the queue is empty, so a busy listener costs one
    /// system call per connection. For callers that drive the socket themselves with readiness
    /// waits and nonblocking system calls (the balancer's splice); on io_uring, monoio's own
    /// operations expect the blocking sockets [`AsyncListener::accept`] returns. Errors as
    /// [`AsyncListener::accept`].
    pub async fn accept_nonblocking(&self) -> io::Result<Stream> {
        loop {
            match rustix::net::accept_with(self, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
                Ok(fd) => {
                    return match self {
                        AsyncListener::Tcp(_) => {
                            monoio::net::TcpStream::from_std(std::net::TcpStream::from(fd))
                                .map(Stream::Tcp)
                        }
                        AsyncListener::Unix(_) => monoio::net::UnixStream::from_std(
                            std::os::unix::net::UnixStream::from(fd),
                        )
                        .map(Stream::Unix),
                    }
                }
                Err(rustix::io::Errno::AGAIN) => match self {
                    AsyncListener::Tcp(listener) => listener.readable(false).await?,
                    AsyncListener::Unix(listener) => listener.readable(false).await?,
                },
                Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
    }
}

impl AsFd for AsyncListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        let raw = match self {
            AsyncListener::Tcp(listener) => listener.as_raw_fd(),
            AsyncListener::Unix(listener) => listener.as_raw_fd(),
        };
        // SAFETY: the monoio listener owns the descriptor for as long as `self` lives, which
        // bounds the borrow (monoio offers only `AsRawFd`).
        unsafe { BorrowedFd::borrow_raw(raw) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rinha-rt-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("s.sock")
    }

    #[test]
    fn tcp_port_zero_is_shared_by_all_workers() {
        let addr = Addr::parse("127.0.0.1:0").unwrap();
        let sets = bind_listeners(&[addr], 3).unwrap();
        assert_eq!(sets.len(), 3);
        let ports: Vec<Addr> = sets
            .iter()
            .map(|set| set[0].local_addr().unwrap())
            .collect();
        assert_ne!(ports[0], Addr::parse("127.0.0.1:0").unwrap());
        assert!(ports.iter().all(|p| *p == ports[0]));
    }

    #[test]
    fn unix_stale_socket_is_replaced_and_live_one_is_refused() {
        let path = temp_path("stale");
        let addr = Addr::Unix(path.clone());
        // A listener that is dropped leaves its file behind, as a killed process would.
        drop(StdUnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let sets = bind_listeners(std::slice::from_ref(&addr), 2).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666);
        // While it lives, a second bind must say the address is in use.
        match bind_listeners(std::slice::from_ref(&addr), 1) {
            Err(BindError::InUse(_)) => {}
            other => panic!("expected InUse, got {other:?}"),
        }
        assert_eq!(sets[1][0].local_addr().unwrap(), addr);
        drop(sets);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn unix_path_that_is_a_file_is_not_removed() {
        let path = temp_path("file");
        std::fs::write(&path, b"data").unwrap();
        let addr = Addr::Unix(path.clone());
        match bind_listeners(std::slice::from_ref(&addr), 1) {
            Err(BindError::NotASocket(_)) => {}
            other => panic!("expected NotASocket, got {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn tcp_in_use_is_reported() {
        // A plain listener without SO_REUSEPORT blocks our bind.
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = Addr::Tcp(holder.local_addr().unwrap());
        match bind_listeners(&[addr], 1) {
            Err(BindError::InUse(_)) => {}
            other => panic!("expected InUse, got {other:?}"),
        }
    }
}
