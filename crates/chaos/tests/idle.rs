//! 10,000 idle connections through the balancer must not stop service.
//!
//! The servers start with the small soft open-files limit of a Debian login shell (1024, the
//! hard limit left as it is), as they would under an init system or a shell that does not raise
//! it: each server must raise its own limit (`rinha_rt::raise_nofile_limit`). The test process
//! raises its own limit to hold the connections. Each instance runs one worker, as in the
//! compose stack.
//!
//! The story: the first run of this test found two bugs. `rinha-api` never raised its soft
//! limit (the balancer did), so each instance stopped accepting at about 1,000 descriptors; and
//! the balancer connected an upstream for every client at accept time, so 10,000 idle clients
//! filled the instances' connection caps (4,096 per worker) and every later client was turned
//! away: 0 of the normal requests succeeded. Now `rinha-api` raises its limit and the balancer
//! connects an upstream only once the client sent its first bytes.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use rinha_testkit::http;
use rinha_testkit::process::{limit_nofile, Server};
use rinha_testkit::stack::start_stack;
use rinha_testkit::{percentile, raise_nofile, skip, tcp, temp_dir, Addr, TempDir};

const IDLE_CONNECTIONS: usize = 10_000;
const WAIT: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_secs(5);
/// The soft open-files limit the servers start with.
const SERVER_SOFT_NOFILE: u64 = 1024;

/// Starts `command` with the soft open-files limit lowered to `SERVER_SOFT_NOFILE`.
fn with_small_nofile(mut command: Command) -> Command {
    limit_nofile(&mut command, SERVER_SOFT_NOFILE, None);
    command
}

#[test]
fn ten_thousand_idle_connections_do_not_stop_service() {
    let limit = raise_nofile(IDLE_CONNECTIONS as u64 + 1_000);
    if limit < IDLE_CONNECTIONS as u64 + 200 {
        let why = format!("the hard open-files limit allows only {limit} descriptors");
        return skip("ten_thousand_idle_connections_do_not_stop_service", &why);
    }
    let dir = temp_dir("idle");
    let (mut servers, front) = start_servers(&dir);
    let addr = tcp(&front);
    let started = Instant::now();
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    while idle.len() < IDLE_CONNECTIONS {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(stream) => idle.push(stream),
            Err(error) => panic!("idle connection {} failed: {error}", idle.len() + 1),
        }
    }
    eprintln!(
        "{IDLE_CONNECTIONS} idle connections opened in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // Let the balancer connect its upstream side of each.
    std::thread::sleep(Duration::from_secs(1));

    let (mut latencies, failures) = measure(&front);
    latencies.sort();
    let still_open = idle.iter().filter(|stream| is_open(stream)).count();
    eprintln!(
        "with {IDLE_CONNECTIONS} idle connections: {} normal requests ok, {} failed, p50 {:.2} ms, \
         p99 {:.2} ms; {still_open} idle connections still open",
        latencies.len(),
        failures.len(),
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
    );
    for server in &mut servers {
        eprintln!("{}: RSS {} KiB", server.name, server.rss_kib().unwrap_or(0));
        assert!(
            server.is_running(),
            "{} died: {}",
            server.name,
            server.log()
        );
    }
    assert!(
        failures.is_empty(),
        "normal requests failed: {:?}",
        &failures[..failures.len().min(10)]
    );
    // The balancer's idle timeout (60 s by default) is far away: a silent client is kept, at
    // the price of one descriptor (a balancer that held pipes for them ran out and closed 6,010).
    assert_eq!(
        still_open, IDLE_CONNECTIONS,
        "idle connections closed before their idle timeout"
    );
    // A stopped service shows failures or the 5-second timeout; the figures printed are a few
    // ms, the bound is loose for shared CI machines.
    assert!(percentile(&latencies, 99.0) < Duration::from_secs(1));
    drop(idle);
    for server in &mut servers {
        assert!(server.terminate(WAIT).success(), "{}", server.log());
    }
}

/// Starts two instances and the balancer, each with the small soft open-files limit, and
/// checks that each raised it.
fn start_servers(dir: &TempDir) -> (Vec<Server>, Addr) {
    let (servers, front) = start_stack(dir.path(), with_small_nofile);
    for server in &servers {
        let limit = nofile_of(server.pid());
        eprintln!("{}: open-files limit {limit}", server.name);
        assert!(
            limit.parse::<u64>().is_ok_and(|n| n > SERVER_SOFT_NOFILE) || limit == "unlimited",
            "{} did not raise its open-files limit from {SERVER_SOFT_NOFILE}",
            server.name
        );
    }

    (servers, front)
}

/// Normal requests on new connections for 3 s: the latencies of the answered ones, and the
/// failures.
fn measure(front: &Addr) -> (Vec<Duration>, Vec<String>) {
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let measuring = Instant::now();
    let mut index = 0u64;
    while measuring.elapsed() < Duration::from_secs(3) {
        index += 1;
        let sent = Instant::now();
        let response = if index.is_multiple_of(3) {
            http::statement(front, 4, TIMEOUT)
        } else {
            http::post(front, 4, 1, 'c', "idle", TIMEOUT)
        };
        match response {
            Ok(response) if response.status == 200 => latencies.push(sent.elapsed()),
            Ok(response) => failures.push(format!("status {}", response.status)),
            Err(error) => failures.push(error.to_string()),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (latencies, failures)
}

/// The soft open-files limit of a running process.
fn nofile_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3).map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Whether the peer has not closed `stream` (nothing to read, no end of file).
fn is_open(stream: &TcpStream) -> bool {
    let _ = stream.set_nonblocking(true);
    let mut buf = [0u8; 64];
    let open = matches!(
        std::io::Read::read(&mut &*stream, &mut buf),
        Err(ref error) if error.kind() == std::io::ErrorKind::WouldBlock
    );
    let _ = stream.set_nonblocking(false);
    open
}
