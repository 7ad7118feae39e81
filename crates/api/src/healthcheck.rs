//! `rinha-api --healthcheck ADDR`: a container health probe that needs no shell or curl.
//!
//! It asks `GET /clientes/1/extrato` on `ADDR` and succeeds only on a 200, so it checks the whole
//! path: accept, parse, storage read and response.

use std::io::{Read, Write};
use std::time::Duration;

use rinha_rt::Addr;

/// How long the probe waits for each of connect, write and read.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

const REQUEST: &[u8] =
    b"GET /clientes/1/extrato HTTP/1.1\r\nHost: healthcheck\r\nConnection: close\r\n\r\n";

/// Most bytes read while looking for the status line.
const STATUS_LINE_BYTES_MAX: usize = 256;

/// Probes `addr`; `Err` says why it is not healthy.
pub fn probe(addr: &Addr) -> Result<(), String> {
    let status_line = match addr {
        Addr::Tcp(socket_addr) => {
            let stream = std::net::TcpStream::connect_timeout(socket_addr, PROBE_TIMEOUT)
                .map_err(|error| format!("cannot connect to {addr}: {error}"))?;
            exchange(
                stream,
                |s| s.set_read_timeout(Some(PROBE_TIMEOUT)),
                |s| s.set_write_timeout(Some(PROBE_TIMEOUT)),
            )
        }
        Addr::Unix(path) => {
            let stream = std::os::unix::net::UnixStream::connect(path)
                .map_err(|error| format!("cannot connect to {addr}: {error}"))?;
            exchange(
                stream,
                |s| s.set_read_timeout(Some(PROBE_TIMEOUT)),
                |s| s.set_write_timeout(Some(PROBE_TIMEOUT)),
            )
        }
    }
    .map_err(|error| format!("{addr}: {error}"))?;
    if status_line.starts_with("HTTP/1.1 200 ") {
        Ok(())
    } else {
        Err(format!("{addr}: answered {status_line:?}"))
    }
}

/// Sends the request and returns the status line of the answer.
fn exchange<S: Read + Write>(
    mut stream: S,
    read_timeout: impl Fn(&S) -> std::io::Result<()>,
    write_timeout: impl Fn(&S) -> std::io::Result<()>,
) -> std::io::Result<String> {
    read_timeout(&stream)?;
    write_timeout(&stream)?;
    stream.write_all(REQUEST)?;
    let mut received = Vec::with_capacity(STATUS_LINE_BYTES_MAX);
    let mut chunk = [0u8; STATUS_LINE_BYTES_MAX];
    while !received.windows(2).any(|pair| pair == b"\r\n") && received.len() < STATUS_LINE_BYTES_MAX
    {
        let count = stream.read(&mut chunk)?;
        if count == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..count]);
    }
    let line_end = received
        .windows(2)
        .position(|pair| pair == b"\r\n")
        .unwrap_or(received.len());
    Ok(String::from_utf8_lossy(&received[..line_end]).into_owned())
}
