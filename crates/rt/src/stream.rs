//! A connected stream over TCP or a Unix socket, usable wherever monoio expects a stream.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::as_fd::{AsReadFd, AsWriteFd, SharedFdWrapper};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::BufResult;

use crate::addr::Addr;

/// A connected TCP or Unix stream attached to the current worker's runtime.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(monoio::net::TcpStream),
    /// Unix domain socket.
    Unix(monoio::net::UnixStream),
}

impl Stream {
    /// Connects to `addr` from inside a worker. TCP streams get TCP_NODELAY, since every user
    /// of this crate sends small request/response messages.
    pub async fn connect(addr: &Addr) -> io::Result<Stream> {
        match addr {
            Addr::Tcp(socket_addr) => {
                let stream = monoio::net::TcpStream::connect_addr(*socket_addr).await?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
            Addr::Unix(path) => monoio::net::UnixStream::connect(path)
                .await
                .map(Stream::Unix),
        }
    }

    /// Sets TCP_NODELAY on TCP streams; Unix streams have no such option and ignore it.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_nodelay(nodelay),
            Stream::Unix(_) => Ok(()),
        }
    }

    /// Waits until the stream is readable. On io_uring this is one poll operation; call it only
    /// where the next operation would otherwise fail with WouldBlock (see monoio's notes).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.readable(false).await,
            Stream::Unix(stream) => stream.readable(false).await,
        }
    }

    /// Shuts both directions down at once, without waiting: the peer sees the end of the
    /// stream, and every operation still pending on the socket completes (a pending poll, read
    /// or write would otherwise keep it, and its descriptor, until the peer sends or reads).
    /// Every timeout calls it before letting a connection go, so that a timed-out socket is
    /// closed when dropped. An error (already shut down, reset) changes nothing.
    pub fn shut_down_now(&self) {
        let _ = rustix::net::shutdown(self.as_fd(), rustix::net::Shutdown::Both);
    }

    /// Waits until the stream is writable; the same caveats as [`Stream::readable`] apply.
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.writable(false).await,
            Stream::Unix(stream) => stream.writable(false).await,
        }
    }

    /// True for a TCP stream.
    pub fn is_tcp(&self) -> bool {
        matches!(self, Stream::Tcp(_))
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(stream) => stream.as_raw_fd(),
            Stream::Unix(stream) => stream.as_raw_fd(),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the stream owns this descriptor and keeps it open for as long as the borrow,
        // which cannot outlive `self`, lasts.
        unsafe { BorrowedFd::borrow_raw(self.as_raw_fd()) }
    }
}

impl AsReadFd for Stream {
    fn as_reader_fd(&mut self) -> &SharedFdWrapper {
        match self {
            Stream::Tcp(stream) => stream.as_reader_fd(),
            Stream::Unix(stream) => stream.as_reader_fd(),
        }
    }
}

impl AsWriteFd for Stream {
    fn as_writer_fd(&mut self) -> &SharedFdWrapper {
        match self {
            Stream::Tcp(stream) => stream.as_writer_fd(),
            Stream::Unix(stream) => stream.as_writer_fd(),
        }
    }
}

impl AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Tcp(stream) => stream.read(buf).await,
            Stream::Unix(stream) => stream.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Tcp(stream) => stream.readv(buf).await,
            Stream::Unix(stream) => stream.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Tcp(stream) => stream.write(buf).await,
            Stream::Unix(stream) => stream.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Tcp(stream) => stream.writev(buf).await,
            Stream::Unix(stream) => stream.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.flush().await,
            Stream::Unix(stream) => stream.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.shutdown().await,
            Stream::Unix(stream) => stream.shutdown().await,
        }
    }
}
