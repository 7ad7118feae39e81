//! Integration tests of `rinha-lb` as a real process between real sockets. Every behaviour is
//! checked under each driver/splice combination in `support::MODES`, epoll forced included.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rinha_testkit::process::Signal;
use support::{echo_round_trip, free_tcp_addr, payload, temp_dir, Behaviour, Lb, Upstream};
use support::{IO_TIMEOUT, MODES};

/// Binds `addr` without listening: connections to it are refused, and no other socket can take
/// the port until the returned descriptor closes.
fn reserve(addr: &str) -> std::os::fd::OwnedFd {
    use rustix::net::{bind, socket, sockopt, AddressFamily, SocketType};
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let socket = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    sockopt::set_socket_reuseaddr(&socket, true).unwrap();
    bind(&socket, &addr).unwrap();
    socket
}

fn read_marker(lb: &Lb) -> Option<String> {
    let mut stream = lb.connect();
    // The balancer connects an upstream once the client has spoken (see worker::first_bytes).
    stream.write_all(b"?").ok()?;
    let mut text = String::new();
    match stream.read_to_string(&mut text) {
        Ok(_) if !text.is_empty() => Some(text.trim_end().to_string()),
        _ => None,
    }
}

#[test]
fn transfers_are_byte_exact_both_directions() {
    let dir = temp_dir("exact");
    let tcp_a = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    let tcp_b = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    let unix = Upstream::unix(&dir.path().join("echo.sock"), Behaviour::Echo);
    for &(driver, splice) in MODES {
        let lb = Lb::start(
            driver,
            splice,
            &[&tcp_a, &tcp_b, &unix],
            &["--workers", "2"],
        );
        // Sizes around the pipe capacity and well beyond it; each lands on the next upstream.
        for (round, size) in [1usize, 100, 65_535, 65_537, 8 << 20, 3 << 20]
            .into_iter()
            .enumerate()
        {
            let data = payload(size, round as u64 + 7);
            let echoed = echo_round_trip(lb.connect(), &data);
            assert!(
                echoed == data,
                "{driver}/{splice}: {size} bytes came back altered ({} bytes)",
                echoed.len()
            );
        }
        // Several large transfers at once.
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let stream = lb.connect();
                std::thread::spawn(move || {
                    let data = payload(1 << 20, 100 + i);
                    echo_round_trip(stream, &data) == data
                })
            })
            .collect();
        for thread in threads {
            assert!(
                thread.join().unwrap(),
                "{driver}/{splice}: concurrent transfer altered"
            );
        }
    }
}

#[test]
fn half_close_still_gets_the_answer() {
    let upstream = Upstream::tcp("127.0.0.1:0", Behaviour::ReverseAtEof);
    for &(driver, splice) in MODES {
        let lb = Lb::start(driver, splice, &[&upstream], &[]);
        for size in [0usize, 5, 200_000] {
            let data = payload(size, 3);
            let mut stream = lb.connect();
            stream.write_all(&data).unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).unwrap();
            let mut expected = format!("{size}:").into_bytes();
            expected.extend(data.iter().rev());
            assert!(
                answer == expected,
                "{driver}/{splice}: half-close answer wrong for {size} bytes"
            );
        }
    }
}

#[test]
fn round_robin_is_shared_across_workers() {
    let ups: Vec<Upstream> = (0..3)
        .map(|i| Upstream::tcp("127.0.0.1:0", Behaviour::Marker(i)))
        .collect();
    for &(driver, splice) in MODES {
        let lb = Lb::start(driver, splice, &ups, &["--workers", "2"]);
        let got: Vec<String> = (0..12)
            .map(|_| read_marker(&lb).expect("a marker"))
            .collect();
        let expected: Vec<String> = (0..12).map(|i| format!("U{}", i % 3)).collect();
        assert_eq!(got, expected, "{driver}/{splice}");
    }
}

#[test]
fn failover_skips_a_dead_upstream_and_takes_it_back() {
    for &(driver, splice) in MODES {
        let mut ups: Vec<Upstream> = (0..3)
            .map(|i| Upstream::tcp("127.0.0.1:0", Behaviour::Marker(i)))
            .collect();
        let lb = Lb::start(driver, splice, &ups, &["--down-backoff-ms", "300"]);
        assert_eq!(read_marker(&lb).as_deref(), Some("U0"));
        let dead_addr = ups[1].addr.clone();
        ups[1].stop();
        // Story: with many tests running at once, another test's listener was once given the
        // freed port, and the balancer relayed to it. A bound socket that does not listen
        // keeps the port from anyone else and still refuses connections.
        let reserved = reserve(&dead_addr);
        for _ in 0..12 {
            let marker =
                read_marker(&lb).expect("every client is served while one upstream is down");
            assert!(
                marker == "U0" || marker == "U2",
                "{driver}/{splice}: got {marker}"
            );
        }
        drop(reserved);
        ups[1] = Upstream::tcp(&dead_addr, Behaviour::Marker(1));
        std::thread::sleep(Duration::from_millis(400));
        let back = (0..12)
            .filter(|_| read_marker(&lb).as_deref() == Some("U1"))
            .count();
        assert!(
            back >= 3,
            "{driver}/{splice}: revived upstream got {back} of 12 connections"
        );
    }
}

#[test]
fn no_upstream_answering_closes_the_client_promptly() {
    for &(driver, splice) in MODES {
        let mut upstream = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
        upstream.stop();
        let lb = Lb::start(driver, splice, &[&upstream], &[]);
        for _ in 0..3 {
            let started = Instant::now();
            let mut stream = lb.connect();
            stream.write_all(b"?").unwrap();
            let mut buf = [0u8; 16];
            let read = stream.read(&mut buf);
            assert!(
                matches!(read, Ok(0) | Err(_)),
                "{driver}/{splice}: expected close, got {read:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{driver}/{splice}: slow close"
            );
        }
    }
}

fn reset_with_linger_zero(stream: std::net::TcpStream) {
    rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO)).unwrap();
    drop(stream);
}

#[test]
fn thousands_of_resets_leave_the_balancer_healthy() {
    let firehose = Upstream::tcp("127.0.0.1:0", Behaviour::Firehose);
    for &(driver, splice) in MODES {
        let mut lb = Lb::start(driver, splice, &[&firehose], &["--workers", "2"]);
        let baseline = lb.open_fds();
        for round in 0..2000 {
            let mut stream = lb.connect();
            let _ = stream.write_all(b"?");
            if round % 2 == 0 {
                // Mid-stream: data is flowing towards this client when it resets.
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
            }
            reset_with_linger_zero(stream);
        }
        assert!(lb.is_running(), "{driver}/{splice}: balancer died");
        // Still serving: a fresh client receives a full megabyte.
        let mut stream = lb.connect();
        stream.write_all(b"?").unwrap();
        let mut got = vec![0u8; 1 << 20];
        stream.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|&b| b == b'x'));
        reset_with_linger_zero(stream);
        // Every reset connection is eventually closed: no descriptor leak.
        let deadline = Instant::now() + Duration::from_secs(5);
        while lb.open_fds() > baseline + 8 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            lb.open_fds() <= baseline + 8,
            "{driver}/{splice}: {} fds open, baseline {baseline}",
            lb.open_fds()
        );
    }
}

#[test]
fn unix_listener_and_upstream_with_stale_socket_file() {
    let dir = temp_dir("unix");
    let upstream = Upstream::unix(&dir.path().join("up.sock"), Behaviour::Echo);
    for &(driver, splice) in MODES {
        let listen_path = dir.path().join("lb.sock");
        // A socket file left behind by a killed balancer must not stop the next one.
        let _ = std::fs::remove_file(&listen_path);
        drop(std::os::unix::net::UnixListener::bind(&listen_path).unwrap());
        let listen = format!("unix:{}", listen_path.display());
        let lb = Lb::start_on(&listen, driver, splice, &[&upstream], &[], None);
        assert!(
            lb.startup_line.contains(&format!("listen={listen}")),
            "{}",
            lb.startup_line
        );
        for size in [10usize, 1 << 20] {
            let data = payload(size, 9);
            let stream = UnixStream::connect(&listen_path).unwrap();
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let received = echo_round_trip(stream, &data);
            assert!(received == data, "{driver}/{splice}: unix transfer altered");
        }
        drop(lb);
    }
}

#[test]
fn idle_connections_are_closed() {
    let upstream = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    for &(driver, splice) in MODES {
        let lb = Lb::start(driver, splice, &[&upstream], &["--idle-timeout-ms", "300"]);
        let mut stream = lb.connect();
        stream.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).unwrap();
        let started = Instant::now();
        let read = stream.read(&mut buf);
        let waited = started.elapsed();
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "{driver}/{splice}: {read:?}"
        );
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(3),
            "{driver}/{splice}: closed after {waited:?}"
        );
    }
}

#[test]
fn connection_cap_pauses_accepting() {
    let upstream = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    let lb = Lb::start(
        "auto",
        "auto",
        &[&upstream],
        &["--workers", "1", "--connections-max", "1"],
    );
    let mut first = lb.connect();
    first.write_all(b"a").unwrap();
    let mut buf = [0u8; 1];
    first.read_exact(&mut buf).unwrap();
    // The second client is queued by the kernel but not served while the first is open.
    let mut second = lb.connect();
    second.write_all(b"b").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(second.read(&mut buf).is_err(), "served beyond the cap");
    drop(first);
    second.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"b");
}

#[test]
fn startup_line_and_sigterm() {
    let upstream = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    for &(driver, splice) in MODES {
        let mut lb = Lb::start(driver, splice, &[&upstream], &["--workers", "2"]);
        let listen = lb.listen.clone();
        let line = &lb.startup_line;
        assert!(line.starts_with("rinha-lb "), "{line}");
        assert!(line.contains(" workers=2 "), "{line}");
        assert!(line.contains(&format!(" listen={listen} ")), "{line}");
        assert!(
            line.contains(&format!("upstreams={}", upstream.addr)),
            "{line}"
        );
        if driver == "epoll" {
            assert!(line.contains(" driver=epoll "), "{line}");
            assert!(line.ends_with(" splice=op"), "{line}");
        } else if line.contains(" driver=io_uring ") && splice == "auto" {
            assert!(line.ends_with(" splice=direct"), "{line}");
        }
        assert_eq!(
            lb.terminate(IO_TIMEOUT).code(),
            Some(0),
            "{driver}/{splice}: exit code after SIGTERM"
        );
    }
}

/// A draining balancer accepts no new client, passes on the answers to what an open
/// connection already sent, reads nothing more from it, and closes it once the upstream has
/// answered and closed (the half-close tells the upstream no more is coming).
#[test]
fn draining_balancer_refuses_new_clients_and_finishes_open_ones() {
    let upstream = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    for &(driver, splice) in MODES {
        let mut lb = Lb::start(driver, splice, &[&upstream], &["--workers", "2"]);
        let mut open = lb.connect();
        open.write_all(b"before").unwrap();
        let mut answer = [0u8; 6];
        open.read_exact(&mut answer).unwrap();
        lb.signal(Signal::TERM);
        std::thread::sleep(Duration::from_millis(300));
        // Every worker's listening socket is out of service.
        for _ in 0..8 {
            let refused = std::net::TcpStream::connect(&lb.listen);
            assert!(
                refused.is_err(),
                "{driver}/{splice}: a draining balancer accepted a new client"
            );
        }
        // Bytes sent after the drain started are not passed on; the connection ends cleanly.
        let _ = open.write_all(b"after!");
        open.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut rest = Vec::new();
        let ended = std::io::Read::read_to_end(&mut open, &mut rest);
        assert!(
            ended.is_ok() && rest.is_empty(),
            "{driver}/{splice}: after the drain started the open connection got {rest:?}, {ended:?}"
        );
        drop(open);
        assert_eq!(
            lb.terminate(IO_TIMEOUT).code(),
            Some(0),
            "{driver}/{splice}: exit code"
        );
    }
}

#[test]
fn usage_errors_exit_with_code_2() {
    #[track_caller]
    fn check(args: &[&str], env: &[(&str, &str)]) {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rinha-lb"));
        command
            .args(args)
            .env_remove("RINHA_LB_LISTEN")
            .env_remove("RINHA_LB_UPSTREAMS");
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "args {args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line of error: {stderr}");
    }
    check(&["--bogus"], &[]);
    check(&["--listen", "127.0.0.1:1"], &[]);
    check(&["--listen", "nonsense", "--upstream", "127.0.0.1:1"], &[]);
    check(
        &[
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "127.0.0.1:1",
            "--workers",
            "x",
        ],
        &[],
    );
    check(
        &["--listen", "127.0.0.1:1", "--upstream", "127.0.0.1:1"],
        &[("RINHA_DRIVER", "kqueue")],
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_rinha-lb"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("RINHA_LB_UPSTREAMS"));
}

#[test]
fn descriptor_exhaustion_pauses_accepting_without_spinning() {
    let upstream = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    for &(driver, splice) in MODES {
        let mut lb = Lb::start_on(
            &free_tcp_addr(),
            driver,
            splice,
            &[&upstream],
            &["--workers", "1"],
            Some(64),
        );
        // Far more clients than 64 descriptors allow: each relayed one costs six (the caps
        // leave room for 4 relays and 31 connections; the rest wait in the backlog).
        let clients: Vec<_> = (0..60)
            .map(|_| {
                let mut stream = lb.connect();
                stream.write_all(b"x").unwrap();
                stream
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let before = lb.cpu_time();
        std::thread::sleep(Duration::from_secs(1));
        let used = lb.cpu_time() - before;
        assert!(
            used < Duration::from_millis(300),
            "{driver}/{splice}: {used:?} of CPU in 1 s while out of descriptors"
        );
        assert!(
            lb.is_running(),
            "{driver}/{splice}: died out of descriptors"
        );
        drop(clients);
        // Once descriptors are free again, new clients are served. Clients still queued from
        // the flood are accepted first, and one accepted while descriptors were short is closed
        // unserved (a reset, as its request was never read), so allow a few attempts.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut stream = lb.connect();
            let served = stream.write_all(b"after").is_ok() && {
                let mut buf = [0u8; 5];
                stream.read_exact(&mut buf).is_ok() && &buf == b"after"
            };
            if served {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{driver}/{splice}: not serving after descriptors freed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn healthcheck_says_whether_the_listener_accepts() {
    fn probe(target: &str) -> Option<i32> {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_rinha-lb"))
            .args(["--healthcheck", target])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        status.code()
    }
    // A killed process's io_uring is torn down by the kernel in the background, and an accept
    // still in flight keeps the listener open until then, so the failure may take a moment.
    #[track_caller]
    fn check(target: &str, expected: i32) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while probe(target) != Some(expected) {
            assert!(
                Instant::now() < deadline,
                "healthcheck {target} never gave {expected}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let upstream = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    let lb = Lb::start("auto", "auto", &[&upstream], &[]);
    let listen = lb.listen.clone();
    check(&listen, 0);
    drop(lb);
    check(&listen, 1);
}

/// A sample of the balancer's metrics: every one it exports is a whole number.
fn sample(text: &str, series: &str) -> u64 {
    rinha_testkit::metrics::sample(text, series) as u64
}

/// Scraped while clients go through: accepted connections, picks per upstream in round-robin
/// order, bytes both ways; then a failed upstream shows as failures and down.
#[test]
fn metrics_count_connections_picks_bytes_and_failures_under_load() {
    const CLIENTS: usize = 40;
    const PAYLOAD: usize = 1000;
    let a = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    let mut b = Upstream::tcp("127.0.0.1:0", Behaviour::Echo);
    let metrics = free_tcp_addr();
    let mut lb = Lb::start(
        "auto",
        "auto",
        &[&a, &b],
        &["--workers", "1", "--metrics", &metrics],
    );
    let metrics: rinha_testkit::Addr = metrics.parse().unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let stream = lb.connect();
            std::thread::spawn(move || {
                let sent = payload(PAYLOAD, i as u64);
                assert_eq!(echo_round_trip(stream, &sent), sent);
            })
        })
        .collect();
    let during = rinha_testkit::metrics::scrape(&metrics);
    assert!(
        during.contains("# TYPE rinha_lb_connections_open gauge"),
        "{during}"
    );
    for client in clients {
        client.join().unwrap();
    }
    let text = rinha_testkit::metrics::scrape(&metrics);
    let accepted = sample(&text, "rinha_lb_connections_accepted_total");
    assert_eq!(accepted, CLIENTS as u64);
    let picks = |upstream: &Upstream| {
        sample(
            &text,
            &format!(
                "rinha_lb_upstream_picks_total{{upstream=\"{}\"}}",
                upstream.addr
            ),
        )
    };
    assert_eq!((picks(&a), picks(&b)), (20, 20), "{text}");
    let bytes = (CLIENTS * PAYLOAD) as u64;
    assert_eq!(
        sample(&text, r#"rinha_lb_bytes_total{direction="to_upstreams"}"#),
        bytes
    );
    assert_eq!(
        sample(&text, r#"rinha_lb_bytes_total{direction="to_clients"}"#),
        bytes
    );
    assert_eq!(sample(&text, "rinha_lb_connections_open"), 0);
    b.stop();
    for i in 0..4 {
        let sent = payload(10, i);
        assert_eq!(echo_round_trip(lb.connect(), &sent), sent);
    }
    let text = rinha_testkit::metrics::scrape(&metrics);
    let down = format!("rinha_lb_upstream_down{{upstream=\"{}\"}}", b.addr);
    assert_eq!(sample(&text, &down), 1, "{text}");
    let failures = format!(
        "rinha_lb_upstream_failures_total{{upstream=\"{}\"}}",
        b.addr
    );
    assert!(sample(&text, &failures) >= 1, "{text}");
    assert_eq!(sample(&text, "rinha_lb_unserved_total"), 0);
    assert_eq!(
        lb.terminate(IO_TIMEOUT).code(),
        Some(0),
        "exit code with a metrics listener"
    );
}
