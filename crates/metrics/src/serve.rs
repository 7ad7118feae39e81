//! The scrape listener: a thread of its own, blocking I/O, one request per connection. It never
//! touches a worker's runtime, so a scrape works even while the workers are saturated, and the
//! workers pay nothing for it but the relaxed adds of their counters.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Longest request head a scraper may send.
const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// How long the listener rests after a failed accept (descriptors or memory exhausted).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How long a scraper may take to send its request or read the answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Renders the current text of every metric.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// A running scrape listener.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
}

impl MetricsServer {
    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Starts answering scrapes on `listener` (already bound, so that a bad address fails at
/// start-up, before any worker runs) from a thread named `name`.
pub fn serve(listener: TcpListener, name: &str, render: Render) -> io::Result<MetricsServer> {
    let local_addr = listener.local_addr()?;
    // The thread starts with every signal blocked (a new thread inherits the mask), so that the
    // process's signals (SIGTERM, and the SIGUSR1 with which the servers' workers wake their
    // main thread) are never delivered to it, where their default action would end the process.
    let _blocked = SignalsBlocked::new();
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(128 * 1024)
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    // A scraper that misbehaves costs its own connection, nothing else.
                    Ok(stream) => drop(answer(stream, &render)),
                    // Out of descriptors or memory: let the process recover before retrying.
                    Err(_) => std::thread::sleep(ACCEPT_ERROR_PAUSE),
                }
            }
        })?;
    Ok(MetricsServer { local_addr })
}

/// Blocks every signal in the calling thread until dropped, then restores its mask.
struct SignalsBlocked {
    previous: libc::sigset_t,
}

impl SignalsBlocked {
    fn new() -> SignalsBlocked {
        // SAFETY: sigset_t is plain data that sigfillset and pthread_sigmask initialise; both
        // calls only read and write the sets passed by pointer, which live on this stack.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
            SignalsBlocked { previous }
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`, a set initialised by pthread_sigmask.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}

fn answer(mut stream: TcpStream, render: &Render) -> io::Result<()> {
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() > REQUEST_BYTES_MAX {
            return respond(&mut stream, "431 Request Header Fields Too Large", "");
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    match (parts.next(), parts.next()) {
        (Some(b"GET"), Some(b"/metrics" | b"/")) => respond(&mut stream, "200 OK", &render()),
        (Some(b"GET"), Some(_)) => respond(&mut stream, "404 Not Found", "not found\n"),
        _ => respond(&mut stream, "405 Method Not Allowed", "only GET\n"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn answers_scrapes_and_nothing_else() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = serve(listener, "test-metrics", Arc::new(|| "up 1\n".to_string())).unwrap();
        let addr = server.local_addr();
        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("version=0.0.4") && ok.ends_with("\r\n\r\nup 1\n"),
            "{ok}"
        );
        assert!(get(addr, "GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(get(addr, &huge).starts_with("HTTP/1.1 431"));
        // A client that connects and leaves does not stop the listener.
        drop(TcpStream::connect(addr).unwrap());
        assert!(get(addr, "GET / HTTP/1.0\r\n\r\n").contains("up 1"));
    }
}
