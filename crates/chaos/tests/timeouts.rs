//! Every timeout closes its socket, on both I/O drivers.
//!
//! The story: on io_uring, monoio dropped a timed-out operation without cancelling it (the
//! workspace built it without `async-cancel`), and the operation kept its socket open until the
//! kernel completed it, perhaps never. Clients that connected to the balancer and stayed silent
//! were "closed" by its idle timeout and left the connection count, but their sockets stayed:
//! under `--nofile 300`, four waves of 90 silent clients took the balancer from 101 to 300
//! descriptors, and a normal client's request then timed out (71 of 360 silent clients were
//! ever closed; on epoll all 360 were, with 11 descriptors open after every wave). The API's
//! write timeout left the sockets of clients that never read, and a connect to an upstream that
//! never answers stayed in SYN-SENT for two minutes. Now the operations are cancelled
//! (`async-cancel`) and every timeout shuts its socket down before letting it go. A keep-alive
//! connection idle past the API's idle timeout got no FIN either, so a request sent on it
//! afterwards vanished: end of file, no answer.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rinha_testkit::bins::{api_command, lb_command};
use rinha_testkit::process::{limit_nofile, Server, READY_WAIT};
use rinha_testkit::{free_tcp, http, tcp, temp_dir, wait_until, Addr, TempDir};

const DRIVERS: [&str; 2] = ["io_uring", "epoll"];
const REQUEST_WAIT: Duration = Duration::from_secs(10);

/// One `rinha-api` named `name` with one worker on `driver` serving `addr`, on a data directory
/// of its own in `dir`, with `args` besides; returns once it answers.
fn start_api(dir: &TempDir, name: &str, driver: &str, addr: &Addr, args: &[&str]) -> Server {
    let mut command = api_command(&dir.path().join(format!("data-{name}")), addr);
    command.args(["--driver", driver]).args(args);
    Server::start_ready(name, command, dir.path(), addr)
}

/// Whether the peer closed `stream` by `deadline`: end of file or a reset.
fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // One last look without waiting.
            stream.set_nonblocking(true).unwrap();
            let ended = match stream.read(&mut buffer) {
                Ok(0) => true,
                Ok(_) => false,
                Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
            };
            stream.set_nonblocking(false).unwrap();
            return ended;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Clients that connect to the balancer and never send are closed by its idle timeout: their
/// sockets too, not only their count. Four waves of 90 under a limit of 300 descriptors, one
/// every 1.6 s against a 1 s timeout: a normal request after each wave is answered, every
/// silent client sees its connection end, and the balancer's descriptors come back to where
/// they started.
#[test]
fn silent_clients_are_closed_by_the_balancers_idle_timeout() {
    const WAVES: usize = 4;
    const SILENT_PER_WAVE: usize = 90;
    const NOFILE: u64 = 300;
    let dir = temp_dir("timeouts-silent");
    let mut problems = Vec::new();
    for driver in DRIVERS {
        let upstream = Addr::Unix(dir.path().join(format!("api-{driver}.sock")));
        let mut api = start_api(&dir, &format!("api-{driver}"), driver, &upstream, &[]);
        let front = free_tcp();
        let mut command = lb_command(&front, &[upstream]);
        command.args(["--driver", driver, "--idle-timeout-ms", "1000"]);
        command.args(["--connections-max", "100"]);
        limit_nofile(&mut command, NOFILE, Some(NOFILE));
        let mut lb = Server::start_ready(&format!("lb-{driver}"), command, dir.path(), &front);
        assert_eq!(
            http::statement(&front, 1, REQUEST_WAIT).unwrap().status,
            200
        );
        let baseline = lb.open_fds();
        let mut silent = Vec::new();
        let mut highest = baseline;
        for wave in 1..=WAVES {
            for _ in 0..SILENT_PER_WAVE {
                silent.push(TcpStream::connect(tcp(&front)).unwrap());
            }
            let until = Instant::now() + Duration::from_millis(1600);
            while Instant::now() < until {
                highest = highest.max(lb.open_fds());
                std::thread::sleep(Duration::from_millis(50));
            }
            match http::statement(&front, 1, REQUEST_WAIT) {
                Ok(response) if response.status == 200 => {}
                Ok(response) => problems.push(format!(
                    "{driver}: wave {wave}: a normal request got {}",
                    response.status
                )),
                Err(error) => problems.push(format!(
                    "{driver}: wave {wave}: a normal request failed: {error}"
                )),
            }
        }
        // Clients beyond the connection cap wait in the listen backlog until earlier ones are
        // closed, one timeout per hundred.
        let deadline = Instant::now() + Duration::from_secs(10);
        let open = silent
            .iter_mut()
            .map(|stream| closed_by(stream, deadline))
            .filter(|&closed| !closed)
            .count();
        if open > 0 {
            problems.push(format!(
                "{driver}: {open} of {} silent clients were never closed",
                silent.len()
            ));
        }
        drop(silent);
        // A pipe set or two may have joined the pool meanwhile (four descriptors each).
        let settled = wait_until(Duration::from_secs(3), || lb.open_fds() <= baseline + 8);
        eprintln!(
            "{driver}: descriptors {baseline} at the start, at most {highest} during the waves, \
             {} at the end",
            lb.open_fds()
        );
        if !settled {
            problems.push(format!(
                "{driver}: the balancer holds {} descriptors after the silent clients, {baseline} \
                 before them",
                lb.open_fds()
            ));
        }
        lb.terminate(Duration::from_secs(5));
        api.terminate(Duration::from_secs(10));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// A connect to an upstream that never answers (its listen backlog is full, so the kernel drops
/// the SYNs) times out, and its socket goes with it: no half-open connects pile up in SYN-SENT
/// for the minutes the kernel would retry them.
#[test]
fn a_timed_out_upstream_connect_leaves_no_socket_behind() {
    const REQUESTS: usize = 9;
    let dir = temp_dir("timeouts-connect");
    let mut problems = Vec::new();
    for driver in DRIVERS {
        // A listener whose backlog is full: one connection waits in it, never accepted.
        let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
        rustix::net::listen(&black_hole, 0).unwrap();
        let hole = black_hole.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..2 {
            let mut filler = TcpStream::connect_timeout(&hole, Duration::from_millis(300));
            if let Ok(stream) = filler.as_mut() {
                stream.set_nonblocking(true).unwrap();
            }
            fillers.push(filler);
        }
        let front = free_tcp();
        let mut command = lb_command(&front, &[Addr::Tcp(hole)]);
        command.args(["--driver", driver, "--connect-timeout-ms", "200"]);
        command.args(["--down-backoff-ms", "1"]);
        let name = format!("lb-connect-{driver}");
        let mut lb = Server::start(&name, command, dir.path());
        assert!(
            wait_until(READY_WAIT, || TcpStream::connect(tcp(&front)).is_ok()),
            "{name} did not start: {}",
            lb.log()
        );
        for _ in 0..REQUESTS {
            let mut client = TcpStream::connect(tcp(&front)).unwrap();
            client.write_all(&http::statement_request(1)).unwrap();
            let _ = client.shutdown(Shutdown::Write);
            if !closed_by(&mut client, Instant::now() + Duration::from_secs(5)) {
                problems.push(format!(
                    "{driver}: a client was not closed after the timeout"
                ));
            }
        }
        let syn_sent = || syn_sent_to(hole.port());
        if !wait_until(Duration::from_secs(2), || syn_sent() == 0) {
            problems.push(format!(
                "{driver}: {} connects to the silent upstream still in SYN-SENT after {REQUESTS} \
                 requests",
                syn_sent()
            ));
        }
        lb.terminate(Duration::from_secs(5));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Sockets of this machine in SYN-SENT towards `port` on 127.0.0.1 (`/proc/net/tcp`).
fn syn_sent_to(port: u16) -> usize {
    const SYN_SENT: &str = "02";
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[2] == remote && fields[3] == SYN_SENT
        })
        .count()
}

/// The API's write timeout: clients that pipeline requests and never read their answers are
/// closed after it (the client sees the end), and the instance's descriptors come back.
#[test]
fn clients_that_never_read_are_closed_by_the_apis_write_timeout() {
    const CLIENTS: usize = 5;
    /// Statements of ten transactions (about 1 KB each): more than the kernel's buffers hold
    /// both ways (about 10 MB), so that the instance's writes block.
    const REQUESTS_EACH: usize = 10_000;
    let dir = temp_dir("timeouts-write");
    let mut problems = Vec::new();
    for driver in DRIVERS {
        let front = free_tcp();
        let mut api = start_api(&dir, &format!("api-write-{driver}"), driver, &front, &[]);
        for index in 0..10 {
            let posted = http::post(&front, 1, 1, 'c', &format!("t{index}"), REQUEST_WAIT);
            assert_eq!(posted.unwrap().status, 200);
        }
        let baseline = api.quiet_fds();
        let pipelined = http::statement_request(1).repeat(REQUESTS_EACH);
        let clients: Vec<TcpStream> = (0..CLIENTS)
            .map(|_| TcpStream::connect(tcp(&front)).unwrap())
            .collect();
        // Each client sends everything it can and reads nothing: once the instance's writes
        // block, it stops reading, and the client's own writes block until the instance
        // gives up on it.
        let senders: Vec<_> = clients
            .iter()
            .map(|client| {
                let mut client = client.try_clone().unwrap();
                let pipelined = pipelined.clone();
                std::thread::spawn(move || {
                    client
                        .set_write_timeout(Some(Duration::from_secs(20)))
                        .unwrap();
                    let _ = client.write_all(&pipelined);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(2));
        let during = api.open_fds();
        // The write timeout is 5 s from the write that blocked.
        let settled = wait_until(Duration::from_secs(20), || api.open_fds() <= baseline);
        eprintln!(
            "{driver}: descriptors {baseline} at the start, {during} with the clients, {} after \
             the write timeout",
            api.open_fds()
        );
        if !settled {
            problems.push(format!(
                "{driver}: rinha-api holds {} descriptors after the write timeout, {baseline} \
                 before the clients",
                api.open_fds()
            ));
        }
        for sender in senders {
            sender.join().unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (index, mut client) in clients.into_iter().enumerate() {
            if !closed_by(&mut client, deadline) {
                problems.push(format!(
                    "{driver}: client {index} never saw its connection end"
                ));
            }
        }
        assert_eq!(
            http::statement(&front, 1, REQUEST_WAIT).unwrap().status,
            200
        );
        api.terminate(Duration::from_secs(10));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The API's idle timeout: a keep-alive connection idle past it is closed with a FIN (the client
/// sees the end at once, and a request it sends afterwards gets a reset or an end, never
/// silence); the request timeout: a request that never completes gets its 408 and the close.
/// Either way the instance's descriptors come back.
#[test]
fn the_apis_idle_and_request_timeouts_close_their_sockets() {
    let dir = temp_dir("timeouts-idle");
    let mut problems = Vec::new();
    for driver in DRIVERS {
        let front = free_tcp();
        let name = format!("api-idle-{driver}");
        let mut api = start_api(&dir, &name, driver, &front, &["--idle-timeout-ms", "500"]);
        let baseline = api.quiet_fds();

        // Idle: one request answered, then nothing for longer than the timeout.
        let mut conn = http::Conn::open(&front, Duration::from_secs(5)).unwrap();
        conn.send(&http::statement_request(1));
        let answered = http::Reader::new().response(&mut conn);
        assert_eq!(answered.status, 200);
        let started = Instant::now();
        let ended = conn.closes_without_more();
        let after = started.elapsed();
        if !ended || after > Duration::from_secs(3) {
            problems.push(format!(
                "{driver}: an idle keep-alive connection was not closed ({ended}) after {after:?}"
            ));
        }
        // A request on the closed connection is refused, not swallowed: the write or the
        // read fails, or the read sees the end, at once.
        let _ = conn.write_all(&http::statement_request(1));
        let mut byte = [0u8; 1];
        let refused = match std::io::Read::read(&mut conn, &mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => {
                error.kind() != std::io::ErrorKind::WouldBlock
                    && error.kind() != std::io::ErrorKind::TimedOut
            }
        };
        if !refused {
            problems.push(format!(
                "{driver}: a request after the idle timeout was swallowed"
            ));
        }
        drop(conn);

        // Request timeout: a head that never ends gets 408 after 5 s, then the close.
        let mut conn = http::Conn::open(&front, Duration::from_secs(10)).unwrap();
        conn.send(b"GET /clientes/1/extrato HTTP/1.1\r\nHost: x\r\n");
        let response = http::Reader::new().next(&mut conn);
        match response {
            Ok(Some(response)) if response.status == 408 => {
                if !conn.closes_without_more() {
                    problems.push(format!("{driver}: the 408 was not followed by the close"));
                }
            }
            other => problems.push(format!(
                "{driver}: a request that never ended got {other:?}"
            )),
        }
        drop(conn);
        if !wait_until(Duration::from_secs(3), || api.open_fds() <= baseline) {
            problems.push(format!(
                "{driver}: rinha-api holds {} descriptors after its timeouts, {baseline} before",
                api.open_fds()
            ));
        }
        api.terminate(Duration::from_secs(10));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
