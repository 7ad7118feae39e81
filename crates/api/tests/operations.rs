//! Operating the binary: startup errors, stale Unix sockets, the startup line, the health
//! check, and exit on SIGINT.

mod support;

use std::process::Command;
use std::time::Duration;

use rinha_testkit::process::{self, Signal};
use support::{
    free_tcp, single, temp_dir, Addr, Driver, Instance, Server, BINARY, STARTUP_TIMEOUT,
};

/// Runs the binary to completion (bounded) and returns its status code and stderr.
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(BINARY);
    command.args(args);
    for name in [
        "RINHA_DATA_DIR",
        "RINHA_LISTEN",
        "RINHA_WORKERS",
        "RINHA_DRIVER",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let (code, stderr, _) = process::run(command, Duration::from_secs(30));
    (code, stderr)
}

/// A failure is one line on stderr and a non-zero exit.
#[track_caller]
fn check_fails(args: &[&str], env: &[(&str, &str)], mentions: &str) {
    let (code, stderr) = run(args, env);
    assert_ne!(code, 0, "{args:?} succeeded: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    assert!(stderr.starts_with("rinha-api: "), "{stderr:?}");
    assert!(
        stderr.contains(mentions),
        "{args:?}: {stderr:?} should mention {mentions:?}"
    );
}

/// `--data-dir data --listen listen`, then `more`.
fn flags<'a>(data: &'a str, listen: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    [&["--data-dir", data, "--listen", listen][..], more].concat()
}

#[test]
fn startup_errors() {
    let dir = temp_dir("errors");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let (data, file_arg) = (data.to_str().unwrap(), file.to_str().unwrap());
    let listen = free_tcp().to_string();
    // A missing directory is created, but not below a regular file.
    let below_file = format!("{file_arg}/data");
    check_fails(&flags(&below_file, &listen, &[]), &[], &below_file);
    check_fails(&flags(file_arg, &listen, &[]), &[], "is not a directory");
    check_fails(&flags(data, "localhost", &[]), &[], "localhost");
    check_fails(&flags(data, "127.0.0.1:99999", &[]), &[], "99999");
    check_fails(&flags(data, "unix:", &[]), &[], "unix");
    check_fails(&["--data-dir", data], &[], "--listen");
    check_fails(&["--listen", &listen], &[], "--data-dir");
    check_fails(&flags(data, &listen, &["--workers", "0"]), &[], "workers");
    check_fails(&flags(data, &listen, &["--workers", "two"]), &[], "two");
    let kqueue = [("RINHA_DRIVER", "kqueue")];
    check_fails(&flags(data, &listen, &[]), &kqueue, "kqueue");
    check_fails(&flags(data, &listen, &["--bogus"]), &[], "--bogus");
    // An address already taken by someone else.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    check_fails(&flags(data, &taken, &[]), &[], &taken);
    // A Unix path that is a regular file is not replaced.
    check_fails(&flags(data, &format!("unix:{file_arg}"), &[]), &[], "file");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");
    // The environment is read when flags are absent: here it names an impossible directory.
    let environment = [("RINHA_DATA_DIR", &*below_file), ("RINHA_LISTEN", &listen)];
    check_fails(&[], &environment, &below_file);
}

#[test]
fn help_and_version() {
    let (code, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--data-dir",
        "--listen",
        "--workers",
        "--healthcheck",
        "RINHA_DATA_DIR",
        "RINHA_LISTEN",
        "RINHA_WORKERS",
        "RINHA_DRIVER",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
    let output = Command::new(BINARY).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("rinha-api "));
}

#[test]
fn stale_socket_environment_and_healthcheck() {
    let dir = temp_dir("ops");
    // The data directory does not exist yet: it is created on first start.
    let data = dir.path().join("fresh").join("data");
    let socket = dir.path().join("api.sock");
    // A socket file left behind by a killed instance.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let mut instance = Instance::start(&data, &socket, Driver::Default);
    let line = &instance.startup_line;
    assert!(
        line.starts_with(&format!("rinha-api {} driver=", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert!(line.contains(" workers=2 "), "{line}");
    assert!(
        line.contains(&format!("unix:{}", socket.display())),
        "{line}"
    );
    assert!(
        line.contains(&format!("data_dir={}", data.display())),
        "{line}"
    );
    assert!(
        line.contains("driver=io_uring") || line.contains("driver=epoll"),
        "{line}"
    );
    assert!(
        line.contains(" espora=io_uring") || line.contains(" espora=threads"),
        "{line}"
    );
    assert_eq!(
        support::statement(&instance.unix, 1)["saldo"]["limite"],
        100000
    );
    // The health check passes on both addresses, and fails where nothing listens.
    let tcp = rinha_testkit::tcp(&instance.tcp);
    assert_eq!(run(&["--healthcheck", &tcp.to_string()], &[]).0, 0);
    assert_eq!(
        run(
            &["--healthcheck", &format!("unix:{}", socket.display())],
            &[]
        )
        .0,
        0
    );
    let closed = free_tcp().to_string();
    check_fails(&["--healthcheck", &closed], &[], &closed);
    // No per-request logging: nothing on stderr after the startup line.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(instance.later_stderr(), Vec::<String>::new());
    assert!(instance.server.terminate(Duration::from_secs(10)).success());
    // The health check of a stopped instance fails.
    assert_ne!(run(&["--healthcheck", &tcp.to_string()], &[]).0, 0);
}

#[test]
fn configured_by_environment_and_stopped_by_sigint() {
    let dir = temp_dir("env");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let tcp = rinha_testkit::tcp(&free_tcp());
    let socket = dir.path().join("env.sock");
    let listen = format!("{tcp},unix:{}", socket.display());
    let mut command = Command::new(BINARY);
    command
        .env("RINHA_DATA_DIR", &data)
        .env("RINHA_LISTEN", &listen)
        .env("RINHA_WORKERS", "1")
        .env("RINHA_DRIVER", "epoll");
    let mut server = Server::start("env", command, dir.path());
    let line = server.first_line(STARTUP_TIMEOUT);
    assert!(line.contains("driver=epoll workers=1 "), "{line}");
    assert!(line.contains(&listen), "{line}");
    let target = Addr::Tcp(tcp);
    assert_eq!(support::statement(&target, 3)["saldo"]["limite"], 1_000_000);
    assert_eq!(
        support::statement(&Addr::Unix(socket), 3)["saldo"]["total"],
        0
    );
    let status = server.stop(Signal::INT, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

/// Once an fdatasync fails, nothing more is acknowledged: every later transaction answers 503,
/// on every connection, and the failure is reported once per worker on stderr.
#[test]
fn failed_sync_stops_acknowledgements() {
    let dir = temp_dir("fault");
    let (data, socket) = (dir.path().join("data"), dir.path().join("fault.sock"));
    let mut instance = Instance::start_with(&data, &socket, Driver::Default, |command| {
        command.env("RINHA_FAULT_SYNC_FAILS_AFTER", "5");
    });
    let target = instance.tcp.clone();
    let mut statuses = Vec::new();
    for index in 0..20 {
        statuses.push(support::post(&target, 1, 1, 'c', &format!("f{index}")).status);
    }
    let acknowledged = statuses.iter().take_while(|&&status| status == 200).count();
    assert!(acknowledged <= 5, "{statuses:?}");
    assert!(
        statuses[acknowledged..].iter().all(|&status| status == 503),
        "{statuses:?}"
    );
    // Whatever a statement shows, it never includes more than was acknowledged.
    let response = support::request(&target, "GET", "/clientes/1/extrato", None);
    if response.status == 200 {
        assert!(response.json()["saldo"]["total"].as_i64().unwrap() <= acknowledged as i64 + 1);
    } else {
        assert_eq!(response.status, 503);
    }
    let reported = instance.later_stderr();
    // Once per worker thread at most.
    assert!((1..=2).contains(&reported.len()), "{reported:?}");
    assert!(
        reported
            .iter()
            .all(|line| line.contains("storage unavailable")),
        "{reported:?}"
    );
    instance.server.kill();
}

/// A draining instance refuses new clients at once, on TCP and on its Unix socket, so that a
/// balancer tries the other instance; it still finishes the request it is in the middle of.
/// Story: on io_uring the listeners stayed open during the drain (an accept of the runtime was
/// still in flight) and new clients waited in the backlog, unanswered, until the process exited.
#[test]
fn a_draining_instance_refuses_new_clients_and_finishes_the_open_request() {
    for driver in [Driver::Default, Driver::Epoll] {
        let (mut instance, dir) = single("drain", driver);
        let (tcp, socket) = (
            rinha_testkit::tcp(&instance.tcp),
            dir.path().join("drain.sock"),
        );
        let body = br#"{"valor": 5, "tipo": "c", "descricao": "drain"}"#;
        let head = format!(
            "POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        let mut open = support::open(&instance.tcp);
        open.send(head.as_bytes());
        open.send(&body[..10]);
        std::thread::sleep(Duration::from_millis(100));
        instance.server.signal(Signal::TERM);
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..8 {
            assert!(
                std::net::TcpStream::connect(tcp).is_err(),
                "{driver:?}: a draining instance accepted a TCP client"
            );
            assert!(
                std::os::unix::net::UnixStream::connect(&socket).is_err(),
                "{driver:?}: a draining instance accepted a Unix client"
            );
        }
        assert!(
            instance.server.is_running(),
            "{driver:?}: exited before the drain"
        );
        open.send(&body[10..]);
        let answer = support::Reader::new().response(&mut open);
        assert_eq!(answer.status, 200, "{driver:?}: {answer:?}");
        drop(open);
        let status = instance
            .server
            .wait(Duration::from_secs(10))
            .expect("exits after the drain");
        assert!(status.success(), "{driver:?}: {status:?}");
    }
}
