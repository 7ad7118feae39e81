//! Both servers size their connection cap from the open-files limit: under a small limit the
//! startup line says the cap was lowered and why, a limit that leaves almost no room stops the
//! start, and at the cap the process stays under its limit (no EMFILE) while the clients beyond
//! it get the server's policy for a full worker: the balancer leaves them in the listen backlog
//! until a connection ends, the API closes them at once. The balancer has two caps: relays (six
//! descriptors each) get at most half of the room, and a client that sends beyond the relay cap
//! waits, holding only its socket, until a relay ends; clients that have not been relayed yet
//! hold one descriptor each, up to the connection cap.
//!
//! The story: the balancer's default of 16,384 connections per worker needs about 98,000
//! descriptors per worker (six per relayed connection), far above common limits, and nothing
//! sized it from the limit: under a limit of 40 it accepted clients until accepts and pipes
//! failed with EMFILE, and closed the clients it could not relay unserved.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rinha_rt::{cap_connections, connections_per_worker_fit, DescriptorBudget};
use rinha_testkit::bins::{api_command, bins};
use rinha_testkit::process::{limit_nofile, Server};
use rinha_testkit::{free_tcp, http, tcp, wait_until};
use support::{free_tcp_addr, temp_dir, Behaviour, Lb, Upstream, IO_TIMEOUT, MODES};

/// The balancer's descriptors per relayed connection (`RELAY_DESCRIPTORS` of its main.rs): two
/// sockets and two pipes of two ends; relays get at most half the room.
const LB_RELAY_DESCRIPTORS: u64 = 6;

/// Far more connections per worker than any limit of these tests leaves room for.
const ASKED: usize = 100_000;

/// rinha-api's connections per worker before the limit lowers them
/// (`rinha_api::limits::CONNECTIONS_MAX`).
const API_CONNECTIONS_MAX: usize = 4096;

/// How long a client beyond the cap is watched for an answer it must not get.
const NO_ANSWER_WAIT: Duration = Duration::from_millis(300);

/// The caps the balancer must choose with one listen address and no metrics: connections and
/// relays per worker.
fn lb_caps(nofile: u64, workers: usize) -> (usize, usize) {
    let budget = |per_connection| DescriptorBudget::server(per_connection, 1);
    let relays = cap_connections(
        ASKED,
        Some(nofile),
        budget(2 * LB_RELAY_DESCRIPTORS),
        workers,
    )
    .expect("room for a handful")
    .connections_max;
    let room = connections_per_worker_fit(Some(nofile), budget(1), workers).unwrap();
    let connections = (room - (LB_RELAY_DESCRIPTORS as usize - 1) * relays).min(ASKED);
    (connections, relays)
}

#[test]
fn the_balancers_cap_follows_the_open_files_limit() {
    let upstream = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    let asked = ASKED.to_string();
    for (nofile, workers) in [(100u64, 1usize), (200, 2), (1000, 2)] {
        let extra = [
            "--workers",
            &workers.to_string(),
            "--connections-max",
            &asked,
        ];
        let lb = Lb::start_on(
            &free_tcp_addr(),
            "auto",
            "auto",
            &[&upstream],
            &extra,
            Some(nofile),
        );
        let (connections, relays) = lb_caps(nofile, workers);
        let expected = format!(
            " connections-max={connections} (lowered from {ASKED}: {nofile} open files) \
             relays-max={relays} "
        );
        assert!(lb.startup_line.contains(&expected), "{}", lb.startup_line);
        // Every worker at both caps at once fits in the limit.
        let worst = relays as u64 * LB_RELAY_DESCRIPTORS + (connections - relays) as u64;
        assert!(worst * workers as u64 <= nofile, "{worst} per worker");
        assert!(
            connections > 2 * relays,
            "{connections} connections, {relays} relays"
        );
    }
    // A cap that fits is kept as asked, and never raised to what the limit would allow.
    let lb = Lb::start_on(
        &free_tcp_addr(),
        "auto",
        "auto",
        &[&upstream],
        &["--workers", "1", "--connections-max", "3"],
        Some(1000),
    );
    assert!(
        lb.startup_line
            .contains(" connections-max=3 relays-max=3 splice="),
        "{}",
        lb.startup_line
    );
}

#[test]
fn a_limit_with_no_room_stops_either_server_at_start() {
    let dir = temp_dir("nofile-stop");
    let upstream = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    let mut lb = Command::new(env!("CARGO_BIN_EXE_rinha-lb"));
    lb.args(["--listen", &free_tcp_addr(), "--upstream", &upstream.addr]);
    lb.args(["--workers", "2"]);
    limit_nofile(&mut lb, 40, Some(40));
    let mut api = Command::new(&bins().api);
    api.arg("--data-dir").arg(dir.path().join("data"));
    api.args(["--listen", &free_tcp().to_string(), "--workers", "2"]);
    limit_nofile(&mut api, 50, Some(50));
    for (name, command) in [("rinha-lb", lb), ("rinha-api", api)] {
        let (code, stderr, _) = rinha_testkit::process::run(command, IO_TIMEOUT);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        assert!(
            stderr.starts_with(&format!("{name}: the open-files limit (")),
            "{name}: {stderr}"
        );
        assert!(stderr.contains("per worker, fewer than 4"), "{stderr}");
    }
    // Nothing was created: the API stopped before its data directory.
    assert!(!dir.path().join("data").exists());
}

/// Samples a process's descriptor count (`open_fds`, from /proc) every few milliseconds on a
/// thread of its own while `body` runs, and returns the highest count seen with what `body`
/// returned.
fn highest_fds_during<T>(
    open_fds: impl Fn() -> usize + Sync,
    body: impl FnOnce() -> T,
) -> (usize, T) {
    /// Stops the sampler however `body` ends: a failed assertion in it must fail the test, not
    /// leave the scope waiting for the sampler forever.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let done = AtomicBool::new(false);
    let highest = AtomicUsize::new(0);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                highest.fetch_max(open_fds(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let _stop = Stop(&done);
        body()
    });
    (highest.load(Ordering::Relaxed), result)
}

/// A client that sent `byte` and got it back from the echo upstream: its connection is relayed,
/// holding both sockets and both pipes.
fn relayed_client(lb: &Lb, byte: u8) -> TcpStream {
    let mut stream = lb.connect();
    stream.write_all(&[byte]).unwrap();
    let mut echo = [0u8; 1];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(echo, [byte]);
    stream
}

/// Whether `stream` gets no byte (and no end of stream) within `wait`.
fn unanswered(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    let silent = matches!(
        stream.read(&mut byte),
        Err(ref error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    );
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    silent
}

#[test]
fn at_the_balancers_caps_further_clients_wait_and_no_descriptor_runs_out() {
    const NOFILE: u64 = 100;
    const FURTHER: usize = 5;
    let upstream = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    let (connections, relays) = lb_caps(NOFILE, 1);
    for &(driver, splice) in MODES {
        let asked = ASKED.to_string();
        let mut lb = Lb::start_on(
            &free_tcp_addr(),
            driver,
            splice,
            &[&upstream],
            &["--workers", "1", "--connections-max", &asked],
            Some(NOFILE),
        );
        assert!(
            lb.startup_line.contains(&format!(
                " connections-max={connections} (lowered from {ASKED}: {NOFILE} open files) \
                 relays-max={relays} "
            )),
            "{driver}/{splice}: {}",
            lb.startup_line
        );
        let (highest, (mut further, silent)) = highest_fds_during(
            || lb.open_fds(),
            || {
                // Every relay taken, six descriptors each.
                let holders: Vec<TcpStream> =
                    (0..relays).map(|i| relayed_client(&lb, i as u8)).collect();
                // A client that sends now waits for a relay, holding its socket only.
                let mut extra = lb.connect();
                extra.write_all(b"x").unwrap();
                assert!(
                    unanswered(&mut extra, NO_ANSWER_WAIT),
                    "{driver}/{splice}: a client beyond the relay cap of {relays} was served"
                );
                // Silent clients take the rest of the connection cap, one descriptor each.
                let silent: Vec<TcpStream> =
                    (relays + 1..connections).map(|_| lb.connect()).collect();
                // Beyond it clients wait in the listen backlog: connected, their bytes
                // unanswered.
                let mut further: Vec<TcpStream> = (0..FURTHER)
                    .map(|i| {
                        let mut stream = lb.connect();
                        stream.write_all(&[b'a' + i as u8]).unwrap();
                        stream
                    })
                    .collect();
                for (i, stream) in further.iter_mut().enumerate() {
                    assert!(
                        unanswered(stream, NO_ANSWER_WAIT),
                        "{driver}/{splice}: client {i} beyond the cap of {connections} was served"
                    );
                }
                let open = lb.open_fds();
                assert!(
                    open >= relays * LB_RELAY_DESCRIPTORS as usize && open < NOFILE as usize,
                    "{driver}/{splice}: {open} descriptors at the caps under {NOFILE}"
                );
                // The holders leave: the client waiting for a relay gets one, and each holder's
                // connection lets a client of the backlog in, relayed in turn.
                drop(holders);
                further.insert(0, extra);
                (further, silent)
            },
        );
        eprintln!(
            "{driver}/{splice}: caps {connections}/{relays}, at most {highest} descriptors of \
             {NOFILE}"
        );
        assert!(
            highest < NOFILE as usize,
            "{driver}/{splice}: {highest} descriptors open under a limit of {NOFILE}"
        );
        for (i, stream) in further.iter_mut().enumerate() {
            let mut echo = [0u8; 1];
            stream.read_exact(&mut echo).unwrap_or_else(|error| {
                panic!("{driver}/{splice}: waiting client {i} not served: {error}")
            });
            let sent = if i == 0 { b'x' } else { b'a' + i as u8 - 1 };
            assert_eq!(echo, [sent], "{driver}/{splice}");
        }
        drop(further);
        drop(silent);
        // A normal client afterwards is served at once.
        let started = Instant::now();
        drop(relayed_client(&lb, b'z'));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{driver}/{splice}"
        );
        assert!(lb.is_running(), "{driver}/{splice}: died at its caps");
        assert_eq!(
            lb.terminate(IO_TIMEOUT).code(),
            Some(0),
            "{driver}/{splice}: exit code"
        );
    }
}

#[test]
fn at_the_apis_cap_further_clients_are_closed_and_no_descriptor_runs_out() {
    const NOFILE: u64 = 60;
    let dir = temp_dir("nofile-api");
    let addr = free_tcp();
    let mut command = api_command(&dir.path().join("data"), &addr);
    limit_nofile(&mut command, NOFILE, Some(NOFILE));
    let mut api = Server::start("rinha-api", command, dir.path());
    let line = api.startup_line("rinha-api", Duration::from_secs(30));
    let cap: usize = line
        .split(" connections-max=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|cap| cap.parse().ok())
        .unwrap_or_else(|| panic!("no cap in {line:?}"));
    assert!(
        line.ends_with(&format!(
            " connections-max={cap} (lowered from {API_CONNECTIONS_MAX}: {NOFILE} open files)"
        )),
        "{line}"
    );
    assert!((4..NOFILE as usize).contains(&cap), "{line}");
    assert!(wait_until(IO_TIMEOUT, || http::is_ready(&addr)));
    let socket_addr = tcp(&addr);
    // The readiness probe's connection closes a moment after it ends.
    let baseline = settled_fds(&api);
    let (highest, ()) = highest_fds_during(
        || api.open_fds(),
        || {
            // The cap reached with idle keep-alive connections, each accepted by the server.
            let holders: Vec<TcpStream> = (0..cap)
                .map(|_| TcpStream::connect(socket_addr).unwrap())
                .collect();
            assert!(
                wait_until(IO_TIMEOUT, || api.open_fds() >= baseline + cap),
                "{} descriptors, {baseline} before {cap} clients: {}",
                api.open_fds(),
                fd_listing(api.pid())
            );
            let open = api.open_fds();
            assert!(open < NOFILE as usize, "{open} descriptors at the cap");
            // Beyond the cap a client is accepted and closed at once.
            let mut further = TcpStream::connect(socket_addr).unwrap();
            further.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let mut byte = [0u8; 1];
            let read = further.read(&mut byte);
            assert!(
                matches!(read, Ok(0))
                    || read
                        .as_ref()
                        .is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
                "a client beyond the cap: {read:?}"
            );
            // Once they leave, a normal client is served.
            drop(holders);
            assert!(wait_until(IO_TIMEOUT, || api.open_fds() <= baseline));
            let response = http::statement(&addr, 1, IO_TIMEOUT).expect("a statement");
            assert_eq!(response.status, 200);
        },
    );
    eprintln!("rinha-api: cap {cap}, at most {highest} descriptors of {NOFILE}");
    assert!(
        highest < NOFILE as usize,
        "{highest} descriptors open under a limit of {NOFILE}"
    );
    assert!(api.terminate(IO_TIMEOUT).success(), "{}", api.log());
}

/// A server's descriptor count once it stays the same for 100 ms.
fn settled_fds(server: &Server) -> usize {
    let mut last = server.open_fds();
    let settled = wait_until(IO_TIMEOUT, || {
        std::thread::sleep(Duration::from_millis(100));
        let now = server.open_fds();
        std::mem::replace(&mut last, now) == now
    });
    assert!(settled, "{} descriptors and changing", server.open_fds());
    last
}

/// What each open descriptor of a process is, for a failure message.
fn fd_listing(pid: u32) -> String {
    let mut listing = Vec::new();
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in entries.flatten() {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            let name = entry.file_name();
            listing.push(format!("{}={}", name.to_string_lossy(), target.display()));
        }
    }
    listing.sort();
    listing.join(" ")
}
