//! Hostile clients against the whole stack (`rinha-lb` in front of two `rinha-api`):
//! request smuggling attempts get 400 and a closed connection, and slowloris and slow-body
//! clients do not stop a normal client from being served; its latency is measured before and
//! during each attack and printed.
//!
//! One test runs the phases in order, so that the latency figures are not disturbed by the
//! other phases.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rinha_testkit::http::{self, Conn, Reader};
use rinha_testkit::stack::start_stack;
use rinha_testkit::{percentile, tcp, temp_dir, Addr};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Hostile connections per attack, well below every connection cap.
const ATTACKERS: usize = 400;
/// How long an attack lasts: longer than the API's 5-second request timeout.
const ATTACK: Duration = Duration::from_secs(7);
/// Pause between two bytes of a hostile client.
const TRICKLE: Duration = Duration::from_millis(500);
/// The most the 99th percentile of a normal request may take while under attack. A server
/// stopped by the attack would show the 5-second request timeout or failures; the bound is far
/// looser than the figures printed (a few ms) because CI machines are shared and noisy.
const LATENCY_P99_MAX: Duration = Duration::from_secs(1);

#[test]
fn hostile_clients_through_the_balancer() {
    let dir = temp_dir("hostile");
    let (_servers, front) = start_stack(dir.path(), |command| command);
    smuggling(&front);
    let baseline = measure(&front, Duration::from_secs(2));
    report("baseline", &baseline);
    // Slowloris: a request head that never ends, one byte at a time.
    attack(
        &front,
        "slowloris",
        b"POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\n",
        b"X",
    );
    // Slow body: a complete head announcing 60 bytes, then one byte at a time.
    attack(
        &front,
        "slow body",
        b"POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n{",
        b" ",
    );
}

/// Each attempt is followed by a hidden request; the answer must be one 400, then the
/// connection must close, so the hidden request is never run.
fn smuggling(front: &Addr) {
    let hidden = "GET /clientes/2/extrato HTTP/1.1\r\nHost: x\r\n\r\n";
    let post = "POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\n";
    let attempts = smuggling_attempts(post);
    let mut wrong = Vec::new();
    for attempt in &attempts {
        let mut conn = Conn::open(front, TIMEOUT).expect("connect to the balancer");
        conn.write_all(format!("{attempt}{hidden}").as_bytes())
            .expect("send");
        let mut reader = Reader::new();
        let response = reader.next(&mut conn);
        let status = response
            .as_ref()
            .ok()
            .and_then(|r| r.as_ref())
            .map(|r| r.status);
        let closed = reader.pending().is_empty() && conn.closes_without_more();
        if status != Some(400) || !closed {
            wrong.push(format!(
                "{attempt:?}: status {status:?}, closed alone: {closed}"
            ));
        }
    }
    // A length too large for any counter is refused as too large (413), and closed too.
    let huge = format!("{post}Content-Length: 99999999999999999999999\r\n\r\nhello{hidden}");
    let mut conn = Conn::open(front, TIMEOUT).expect("connect to the balancer");
    conn.write_all(huge.as_bytes()).expect("send");
    let mut reader = Reader::new();
    let status = reader.next(&mut conn).ok().flatten().map(|r| r.status);
    if status != Some(413) || !reader.pending().is_empty() || !conn.closes_without_more() {
        wrong.push(format!("{huge:?}: status {status:?}"));
    }
    assert!(
        wrong.is_empty(),
        "smuggling attempts not refused:\n{}",
        wrong.join("\n")
    );
    eprintln!(
        "smuggling: {} attempts answered 400 and closed, one huge length 413 and closed",
        attempts.len()
    );
}

/// Requests whose framing some parser along the way could read differently; `post` is the
/// start of a head.
fn smuggling_attempts(post: &str) -> Vec<String> {
    let chunked_body = "5\r\nhello\r\n0\r\n\r\n";
    vec![
        // CL.TE and TE.CL: both framings given.
        format!("{post}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_body}"),
        format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{chunked_body}"),
        // Two lengths that differ, in two fields or one list.
        format!("{post}Content-Length: 5\r\nContent-Length: 50\r\n\r\nhello"),
        format!("{post}Content-Length: 5, 50\r\n\r\nhello"),
        // Lengths that some parsers read differently.
        format!("{post}Content-Length: +5\r\n\r\nhello"),
        format!("{post}Content-Length: 0x5\r\n\r\nhello"),
        format!("{post}Content-Length: -1\r\n\r\nhello"),
        format!("{post}Content-Length: 5 5\r\n\r\nhello"),
        // Obfuscated field names and folded values.
        format!("{post}Content-Length : 5\r\n\r\nhello"),
        format!("{post}Transfer-Encoding : chunked\r\n\r\n{chunked_body}"),
        format!("{post}Transfer-Encoding:\r\n chunked\r\n\r\n{chunked_body}"),
        format!("{post} Transfer-Encoding: chunked\r\n\r\n{chunked_body}"),
        // Transfer codings whose last coding is not chunked: the length cannot be known
        // (RFC 9112, section 6.3: 400, then close).
        format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n{chunked_body}"),
        format!("{post}Transfer-Encoding: identity\r\n\r\nhello"),
        format!("{post}Transfer-Encoding: xchunked\r\n\r\n{chunked_body}"),
        format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n{chunked_body}"),
        // Chunked applied twice, and chunked in HTTP/1.0.
        format!("{post}Transfer-Encoding: chunked, chunked\r\n\r\n{chunked_body}"),
        format!(
            "POST /clientes/1/transacoes HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_body}"
        ),
        // Broken chunk framing.
        format!("{post}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        format!("{post}Transfer-Encoding: chunked\r\n\r\n5\r\nhello!!\r\n0\r\n\r\n"),
        format!("{post}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
        // Bytes that do not belong in a head.
        format!("{post}X-Null: a\0b\r\nContent-Length: 5\r\n\r\nhello"),
        format!("POST /clientes/1/transacoes HTTP/1.1\rContent-Length: 5\r\n\r\nhello"),
    ]
}

/// Normal requests, one after another on new connections, for `period`; returns the latency
/// of each. Every request must be answered 200 (or 422 for a debit beyond the limit).
fn measure(front: &Addr, period: Duration) -> Vec<Duration> {
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut index = 0u64;
    while started.elapsed() < period {
        index += 1;
        let sent = Instant::now();
        let response = if index.is_multiple_of(3) {
            http::statement(front, 3, TIMEOUT)
        } else {
            let kind = if index % 3 == 1 { 'c' } else { 'd' };
            http::post(front, 3, 1, kind, "normal", TIMEOUT)
        };
        let status = response.map(|r| r.status);
        assert!(
            matches!(status, Ok(200) | Ok(422)),
            "a normal request failed: {status:?}"
        );
        latencies.push(sent.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    latencies
}

fn report(label: &str, latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let p99 = percentile(&sorted, 99.0);
    eprintln!(
        "{label}: {} normal requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sorted.len(),
        percentile(&sorted, 50.0).as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        sorted.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    p99
}

/// Opens `ATTACKERS` connections that send `opening` and then one `trickle` byte every
/// `TRICKLE` for `ATTACK`, while a normal client is measured. The server must keep serving
/// the normal client and must close the hostile connections after its request timeout.
fn attack(front: &Addr, label: &str, opening: &[u8], trickle: &'static [u8]) {
    let mut hostile: Vec<TcpStream> = (0..ATTACKERS)
        .map(|_| {
            let mut stream = TcpStream::connect(tcp(front)).expect("a hostile connection");
            stream.write_all(opening).expect("the opening bytes");
            stream
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let attacker = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut open = vec![true; hostile.len()];
            while started.elapsed() < ATTACK && !done.load(Ordering::Relaxed) {
                for (stream, open) in hostile.iter_mut().zip(open.iter_mut()) {
                    if *open && stream.write_all(trickle).is_err() {
                        *open = false;
                    }
                }
                std::thread::sleep(TRICKLE);
            }
            // A connection the server closed failed a write, or reads to its end now (after
            // the server's 408, when it sent one).
            hostile
                .iter()
                .zip(open)
                .filter(|(stream, open)| !open || is_closed(stream))
                .count()
        })
    };
    // Let the attack settle, then measure while it goes on.
    std::thread::sleep(Duration::from_millis(500));
    let latencies = measure(front, ATTACK - Duration::from_secs(2));
    done.store(true, Ordering::Relaxed);
    let closed = attacker.join().expect("the attacker thread");
    let p99 = report(
        &format!("during {label} ({ATTACKERS} connections)"),
        &latencies,
    );
    eprintln!("{label}: {closed} of {ATTACKERS} hostile connections were closed by the server");
    assert!(p99 <= LATENCY_P99_MAX, "{label}: p99 {p99:?}");
    assert!(
        closed * 10 >= ATTACKERS * 9,
        "{label}: only {closed} of {ATTACKERS} hostile connections were closed after {ATTACK:?}"
    );
}

/// Whether the peer closed `stream`: reads (and discards) what arrived until end of file, or
/// until nothing more comes for 50 ms (still open).
fn is_closed(mut stream: &TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 1024];
    loop {
        match std::io::Read::read(&mut stream, &mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) => {
                return !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}
